//! Requests to the teacher, their SQL. A student can ask only about a finished answer
//! of their own; a teacher reads a conversation only where `readable_by_teachers`
//! allows (a request makes its conversation readable).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Queue, Request, TeacherView};
use crate::db::{new_id, now_ms, retry_position_race, Db, StoreError};
use crate::history::store::{append_message, message_from_row, own_finished_answer};
use crate::history::{MessageRole, MessageStatus, StoredMessage, TeacherRequest};
use crate::teacher::store::readable_by_teachers;
use crate::teacher::StudentName;

/// Messages of a conversation a teacher reads at once (the newest).
const TEACHER_READ_LIMIT: i64 = 500;

/// The columns of a [`Request`], for a query joining `escalations e`, `conversations c`
/// and `users u`; the asked-about answer's question is its parent message.
const REQUEST_COLUMNS: &str = "e.id, e.conversation_id, c.title, u.username, u.guest_no, e.message_id, \
     COALESCE((SELECT q.content FROM messages q JOIN messages a ON a.id = e.message_id \
               WHERE q.id = a.parent_id), ''), \
     e.note, e.status, e.created_at, e.closed_at";

/// A teacher's reply, stored: whose conversation it went to, and the message.
pub struct StoredReply {
    pub student: String,
    pub conversation_id: String,
    pub asked_about: String,
    pub message: StoredMessage,
}

impl Db {
    /// Sends the answer's conversation to the teacher. Asking again about the same
    /// answer changes nothing and tells where the first request stands. Returns the
    /// conversation and that state; `None`: not a finished answer of this user's.
    pub async fn ask_teacher(
        &self,
        user_id: &str,
        message_id: &str,
        note: &str,
    ) -> Result<Option<(String, TeacherRequest)>, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some((conversation, _)) = own_finished_answer(&mut tx, user_id, message_id).await? else {
            return Ok(None);
        };
        sqlx::query(
            "INSERT INTO escalations (id, conversation_id, message_id, note, status, created_at) \
             VALUES ($1, $2, $3, $4, 'open', $5) ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(new_id())
        .bind(&conversation)
        .bind(message_id)
        .bind(note)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let status: String = sqlx::query("SELECT status FROM escalations WHERE message_id = $1")
            .bind(message_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        tx.commit().await?;
        self.wrote();
        Ok(TeacherRequest::parse(&status).map(|status| (conversation, status)))
    }

    /// Open requests, oldest first, then the most recently closed; with counts. Every
    /// guest among them numbered.
    pub async fn teacher_queue(&self, page: u32, limit: u32) -> Result<Queue, StoreError> {
        self.with_guest_numbers(
            || self.read_queue(page, limit),
            |queue| queue.requests.iter().any(|request| request.student.unnumbered()),
        )
        .await
    }

    async fn read_queue(&self, page: u32, limit: u32) -> Result<Queue, StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM escalations e \
             JOIN conversations c ON c.id = e.conversation_id JOIN users u ON u.id = c.user_id \
             ORDER BY CASE WHEN e.status = 'open' THEN 0 ELSE 1 END, \
                      CASE WHEN e.status = 'open' THEN e.created_at ELSE -e.closed_at END, e.id \
             LIMIT $1 OFFSET $2"
        );
        let offset = i64::from(page.max(1) - 1) * i64::from(limit);
        let requests = sqlx::query(&sql)
            .bind(i64::from(limit))
            .bind(offset)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(request_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut queue = Queue { requests, page, ..Queue::default() };
        for row in sqlx::query("SELECT status, COUNT(*) FROM escalations GROUP BY status")
            .fetch_all(&self.pool)
            .await?
        {
            let (status, count): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
            match TeacherRequest::parse(&status) {
                Some(TeacherRequest::Open) => queue.open = count,
                Some(TeacherRequest::Answered) => queue.answered = count,
                Some(TeacherRequest::Resolved) => queue.resolved = count,
                None => {}
            }
        }
        Ok(queue)
    }

    /// A conversation for a teacher to read, if the privacy rule lets them; its
    /// student numbered if a guest.
    pub async fn conversation_for_teacher(&self, conversation_id: &str, read_all: bool) -> Result<Option<TeacherView>, StoreError> {
        self.with_guest_numbers(
            || self.read_conversation_for_teacher(conversation_id, read_all),
            |view| {
                view.as_ref().is_some_and(|view| {
                    view.student.unnumbered() || view.requests.iter().any(|request| request.student.unnumbered())
                })
            },
        )
        .await
    }

    async fn read_conversation_for_teacher(&self, conversation_id: &str, read_all: bool) -> Result<Option<TeacherView>, StoreError> {
        let sql = format!(
            "SELECT c.id, c.title, u.username, u.guest_no FROM conversations c JOIN users u ON u.id = c.user_id \
             WHERE c.id = $1 AND {}",
            readable_by_teachers(read_all)
        );
        let Some(row) = sqlx::query(&sql).bind(conversation_id).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let (id, title): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        let student = StudentName::from_columns(row.try_get(2)?, row.try_get(3)?);
        let rows = sqlx::query(
            "SELECT m.id, m.position, m.role, m.content, m.status, m.error_code, m.created_at, m.sources, \
             f.rating, f.reasons, f.comment, f.shared, e.status, m.faq_id, m.parent_id \
             FROM messages m LEFT JOIN feedback f ON f.message_id = m.id \
             LEFT JOIN escalations e ON e.message_id = m.id \
             WHERE m.conversation_id = $1 \
               AND (m.on_branch = 1 \
                    OR m.id IN (SELECT message_id FROM escalations WHERE conversation_id = $1) \
                    OR m.id IN (SELECT reply_id FROM escalations WHERE conversation_id = $1) \
                    OR m.id IN (SELECT a.parent_id FROM escalations x JOIN messages a ON a.id = x.message_id \
                                WHERE x.conversation_id = $1)) \
             ORDER BY m.position DESC LIMIT $2",
        )
        .bind(&id)
        .bind(TEACHER_READ_LIMIT)
        .fetch_all(&self.pool)
        .await?;
        let mut messages = rows.iter().map(message_from_row).collect::<Result<Vec<_>, _>>()?;
        let mut parents = rows.iter().map(|row| row.try_get::<String, _>(14)).collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        parents.reverse();
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM escalations e \
             JOIN conversations c ON c.id = e.conversation_id JOIN users u ON u.id = c.user_id \
             WHERE e.conversation_id = $1 ORDER BY e.created_at"
        );
        let requests = sqlx::query(&sql)
            .bind(&id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(request_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(TeacherView { id, title, student, messages, parents, requests }))
    }

    /// Stores the teacher's reply at the end of the request's conversation and marks
    /// the request answered. A later reply to the same request adds another message;
    /// the time to the first one is kept. `None`: no such request.
    pub async fn reply_to_request(&self, request_id: &str, teacher: &str, text: &str) -> Result<Option<StoredReply>, StoreError> {
        retry_position_race(|| self.try_reply(request_id, teacher, text)).await
    }

    async fn try_reply(&self, request_id: &str, teacher: &str, text: &str) -> Result<Option<StoredReply>, StoreError> {
        let mut tx = self.begin_write().await?;
        // The conversation's row first, locked (on PostgreSQL), as its deletion locks it
        // first too: one order, no deadlock. Deleted meanwhile: no such request.
        let locked = sqlx::query(
            "UPDATE conversations SET updated_at = updated_at \
             WHERE id IN (SELECT conversation_id FROM escalations WHERE id = $1)",
        )
        .bind(request_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if locked == 0 {
            return Ok(None);
        }
        let found = sqlx::query(
            "SELECT e.conversation_id, e.message_id, c.user_id FROM escalations e \
             JOIN conversations c ON c.id = e.conversation_id WHERE e.id = $1",
        )
        .bind(request_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(found) = found else { return Ok(None) };
        let (conversation_id, asked_about, student): (String, String, String) =
            (found.try_get(0)?, found.try_get(1)?, found.try_get(2)?);
        let message =
            append_message(&mut tx, &conversation_id, MessageRole::Teacher, text, MessageStatus::Complete, None).await?;
        sqlx::query(
            // The first reply closes it, whoever resolved it before: the time to a
            // reply (the dashboard's median) and who gave it are the first reply's.
            "UPDATE escalations SET status = 'answered', reply_id = $1, \
             closed_by = CASE WHEN status = 'answered' THEN closed_by ELSE $2 END, \
             closed_at = CASE WHEN status = 'answered' THEN closed_at ELSE $3 END WHERE id = $4",
        )
        .bind(&message.id)
        .bind(teacher)
        .bind(message.created_at)
        .bind(request_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.wrote_n(3);
        Ok(Some(StoredReply { student, conversation_id, asked_about, message }))
    }

    /// Closes an open request without a reply; returns its conversation, `None` when
    /// there is no open request by that id.
    pub async fn resolve_request(&self, request_id: &str, teacher: &str) -> Result<Option<String>, StoreError> {
        let closed = sqlx::query(
            "UPDATE escalations SET status = 'resolved', closed_by = $1, closed_at = $2 \
             WHERE id = $3 AND status = 'open' RETURNING conversation_id",
        )
        .bind(teacher)
        .bind(now_ms())
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        self.wrote();
        Ok(closed.map(|row| row.try_get(0)).transpose()?)
    }
}

fn request_from_row(row: &AnyRow) -> Result<Request, sqlx::Error> {
    Ok(Request {
        id: row.try_get(0)?,
        conversation_id: row.try_get(1)?,
        title: row.try_get(2)?,
        student: StudentName::from_columns(row.try_get(3)?, row.try_get(4)?),
        asked_about: row.try_get(5)?,
        question: row.try_get(6)?,
        note: row.try_get(7)?,
        status: TeacherRequest::parse(&row.try_get::<String, _>(8)?).unwrap_or(TeacherRequest::Open),
        created_at: row.try_get(9)?,
        closed_at: row.try_get(10)?,
    })
}
