//! Conversations and their messages. Every read that takes an id from a client is
//! scoped by the caller's user id, so someone else's conversation looks exactly like
//! a missing one. See docs/storage.md.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{
    ConversationPage, ConversationSummary, ConversationView, MessageRole, MessageStatus,
    StoredMessage, TeacherRequest,
};
use super::versions::{branch_leaf, fill_versions};
use crate::db::{new_id, now_ms, retry_position_race, Db, StoreError};

impl Db {
    pub async fn create_conversation(
        &self,
        user_id: &str,
        title: &str,
    ) -> Result<ConversationSummary, StoreError> {
        let summary = ConversationSummary {
            id: new_id(),
            title: title.to_string(),
            updated_at: now_ms(),
        };
        let mut conn = self.pool.acquire().await?;
        insert_conversations(&mut conn, &[(&summary.id, user_id, &summary.title)], summary.updated_at).await?;
        self.wrote();
        Ok(summary)
    }

    pub async fn find_conversation(
        &self,
        user_id: &str,
        conversation_id: &str,
    ) -> Result<Option<ConversationSummary>, StoreError> {
        let row = sqlx::query(
            "SELECT id, title, updated_at FROM conversations WHERE id = $1 AND user_id = $2",
        )
        .bind(conversation_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(summary_from_row).transpose()?)
    }

    /// Newest first. The cursor is the last item's `updated_at:id`.
    pub async fn list_conversations(
        &self,
        user_id: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ConversationPage, StoreError> {
        let fetch = i64::from(limit) + 1;
        let rows = match cursor.and_then(parse_conversation_cursor) {
            Some((updated_at, id)) => {
                sqlx::query(
                    "SELECT id, title, updated_at FROM conversations \
                     WHERE user_id = $1 AND (updated_at < $2 OR (updated_at = $2 AND id < $3)) \
                     ORDER BY updated_at DESC, id DESC LIMIT $4",
                )
                .bind(user_id)
                .bind(updated_at)
                .bind(id)
                .bind(fetch)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT id, title, updated_at FROM conversations WHERE user_id = $1 \
                     ORDER BY updated_at DESC, id DESC LIMIT $2",
                )
                .bind(user_id)
                .bind(fetch)
                .fetch_all(&self.pool)
                .await?
            }
        };
        let mut items = rows
            .iter()
            .map(summary_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|c| format!("{}:{}", c.updated_at, c.id))
        } else {
            None
        };
        Ok(ConversationPage { items, next_cursor })
    }

    /// One page of a conversation's messages, oldest to newest, ending just before
    /// `before` (a position), or at the newest message.
    pub async fn load_conversation(
        &self,
        user_id: &str,
        conversation_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Option<ConversationView>, StoreError> {
        let Some(summary) = self.find_conversation(user_id, conversation_id).await? else {
            return Ok(None);
        };
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(
            // The page is picked first and joined after, so a plan that reads the whole
            // conversation (PostgreSQL before its statistics exist) joins 51 rows, not all.
            "SELECT m.id, m.position, m.role, m.content, m.status, m.error_code, m.created_at, m.sources, \
             f.rating, f.reasons, f.comment, f.shared, e.status, m.faq_id, m.seams, m.parent_id, m.ask_key \
             FROM (SELECT * FROM messages WHERE conversation_id = $1 AND on_branch = 1 AND position < $2 \
                   ORDER BY position DESC LIMIT $3) m \
             LEFT JOIN feedback f ON f.message_id = m.id \
             LEFT JOIN escalations e ON e.message_id = m.id \
             ORDER BY m.position DESC",
        )
        .bind(conversation_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut *conn)
        .await?;
        let mut with_parents = rows
            .iter()
            .map(|row| Ok((message_from_row(row)?, row.try_get::<String, _>("parent_id")?)))
            .collect::<Result<Vec<(StoredMessage, String)>, sqlx::Error>>()?;
        fill_versions(&mut conn, conversation_id, &mut with_parents).await?;
        let mut messages: Vec<StoredMessage> = with_parents.into_iter().map(|(message, _)| message).collect();
        let has_older = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        messages.reverse();
        let older_cursor = if has_older {
            messages.first().map(|m| m.position)
        } else {
            None
        };
        Ok(Some(ConversationView {
            id: summary.id,
            title: summary.title,
            messages,
            older_cursor,
        }))
    }

    pub async fn rename_conversation(
        &self,
        user_id: &str,
        conversation_id: &str,
        title: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE conversations SET title = $1 WHERE id = $2 AND user_id = $3")
            .bind(title)
            .bind(conversation_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if done == 1 {
            // The old title's words go: the conversation is indexed anew on its owner's
            // next search (history/search.rs).
            sqlx::query("DELETE FROM search_terms WHERE conversation_id = $1")
                .bind(conversation_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE messages SET search_indexed = 0 WHERE conversation_id = $1")
                .bind(conversation_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.wrote();
        Ok(done == 1)
    }

    /// Deletes the conversation and its messages in one transaction.
    pub async fn delete_conversation(
        &self,
        user_id: &str,
        conversation_id: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        // The conversation's row first, locked (on PostgreSQL) by a no-op update, as
        // a teacher's reply locks it first too: taking the request and the
        // conversation in one order, the two cannot deadlock.
        let owned = sqlx::query("UPDATE conversations SET updated_at = updated_at WHERE id = $1 AND user_id = $2")
            .bind(conversation_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !owned {
            return Ok(false);
        }
        sqlx::query("DELETE FROM feedback WHERE message_id IN (SELECT id FROM messages WHERE conversation_id = $1)")
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM escalations WHERE conversation_id = $1")
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM answer_sources WHERE message_id IN (SELECT id FROM messages WHERE conversation_id = $1)")
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM messages WHERE conversation_id = $1")
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM search_terms WHERE conversation_id = $1")
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM conversations WHERE id = $1")
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.wrote();
        Ok(true)
    }

    /// Appends a message at the conversation's next position and marks the
    /// conversation as updated, in one transaction.
    pub async fn add_message(
        &self,
        conversation_id: &str,
        role: MessageRole,
        content: &str,
        status: MessageStatus,
        owner_instance: Option<&str>,
    ) -> Result<StoredMessage, StoreError> {
        retry_position_race(|| {
            self.try_add_message(conversation_id, role, content, status, owner_instance)
        })
        .await
    }

    async fn try_add_message(
        &self,
        conversation_id: &str,
        role: MessageRole,
        content: &str,
        status: MessageStatus,
        owner_instance: Option<&str>,
    ) -> Result<StoredMessage, StoreError> {
        let mut tx = self.begin_write().await?;
        let message = append_message(&mut tx, conversation_id, role, content, status, owner_instance).await?;
        tx.commit().await?;
        self.wrote();
        Ok(message)
    }
}

/// Appends a message at the conversation's next position and marks the conversation
/// as updated, in the caller's transaction (which retries on a position race).
pub(crate) async fn append_message(
    conn: &mut sqlx::AnyConnection,
    conversation_id: &str,
    role: MessageRole,
    content: &str,
    status: MessageStatus,
    owner_instance: Option<&str>,
) -> Result<StoredMessage, StoreError> {
    let now = now_ms();
    let id = new_id();
    // First, so that on PostgreSQL the conversation's row is locked before the branch's
    // end is read (a version switch or a question at the same time waits its turn).
    touch_conversation(&mut *conn, conversation_id, now).await?;
    let position = next_position(&mut *conn, conversation_id).await?;
    let parent_id = branch_leaf(&mut *conn, conversation_id).await?;
    insert_message(
        &mut *conn,
        &NewMessageRow {
            id: &id,
            conversation_id,
            parent_id: &parent_id,
            position,
            role,
            content,
            status,
            owner_instance,
            sources: None,
            retrieval_score: None,
            created_at: now,
            ask_key: None,
        },
    )
    .await?;
    Ok(StoredMessage {
        id,
        position,
        role,
        content: content.to_string(),
        status,
        error_code: None,
        created_at: now,
        sources: Vec::new(),
        feedback: None,
        teacher_request: None,
        faq_id: None,
        seams: Vec::new(),
        versions: Vec::new(),
        ask_id: None,
    })
}

/// Marks a conversation as changed at `now` (the sidebar lists newest first).
pub(crate) async fn touch_conversation(conn: &mut sqlx::AnyConnection, conversation_id: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(conversation_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A finished answer in one of `user_id`'s own conversations: its conversation and
/// when it was asked. `None` for anyone else's answer, a question, or one still
/// streaming (what a rating or a request to the teacher may be about).
pub(crate) async fn own_finished_answer(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    message_id: &str,
) -> Result<Option<(String, i64)>, StoreError> {
    let row = sqlx::query(
        "SELECT c.id, m.created_at FROM messages m JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.id = $1 AND c.user_id = $2 AND m.role = 'assistant' AND m.status <> 'streaming'",
    )
    .bind(message_id)
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|row| Ok::<_, sqlx::Error>((row.try_get(0)?, row.try_get(1)?))).transpose()?)
}

pub(crate) async fn next_position(conn: &mut sqlx::AnyConnection, conversation_id: &str) -> Result<i64, StoreError> {
    Ok(sqlx::query("SELECT COALESCE(MAX(position), 0) + 1 FROM messages WHERE conversation_id = $1")
        .bind(conversation_id)
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?)
}

/// A message row as inserted.
pub(crate) struct NewMessageRow<'a> {
    pub id: &'a str,
    pub conversation_id: &'a str,
    /// The message this one follows ('' for none): see `history::versions`.
    pub parent_id: &'a str,
    pub position: i64,
    pub role: MessageRole,
    pub content: &'a str,
    pub status: MessageStatus,
    pub owner_instance: Option<&'a str>,
    /// The sources an answer may cite, as JSON.
    pub sources: Option<&'a str>,
    /// An answer's best lesson match, for the dashboard's content gaps.
    pub retrieval_score: Option<i64>,
    pub created_at: i64,
    /// "{user id}:{ask_id}" of the frame that made the row (see the `ask_ids`
    /// migration): on a question, or on a regenerated answer.
    pub ask_key: Option<&'a str>,
}

pub(crate) async fn insert_message(conn: &mut sqlx::AnyConnection, row: &NewMessageRow<'_>) -> Result<(), StoreError> {
    insert_messages(conn, std::slice::from_ref(row)).await?;
    Ok(())
}

/// Several messages in one statement (a question and its answer): one round trip.
/// Returns how many it stored: a row whose `ask_key` is taken is left out (the same
/// question asked again), which the caller checks.
pub(crate) async fn insert_messages(conn: &mut sqlx::AnyConnection, rows: &[NewMessageRow<'_>]) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "INSERT INTO messages (id, conversation_id, position, role, content, status, \
         owner_instance, sources, retrieval_score, created_at, parent_id, ask_key) VALUES {} \
         ON CONFLICT (ask_key) WHERE ask_key IS NOT NULL DO NOTHING",
        crate::db::values_placeholders(rows.len(), 12)
    );
    // A question and its answer are two rows; a class's shared transaction has more, in
    // many sizes, which are not kept prepared (sqlx keeps 100 statements a connection).
    let mut query = sqlx::query(&sql).persistent(rows.len() <= 2);
    for row in rows {
        query = query
            .bind(row.id)
            .bind(row.conversation_id)
            .bind(row.position)
            .bind(row.role.as_str())
            .bind(row.content)
            .bind(row.status.as_str())
            .bind(row.owner_instance)
            .bind(row.sources)
            .bind(row.retrieval_score)
            .bind(row.created_at)
            .bind(row.parent_id)
            .bind(row.ask_key);
    }
    Ok(query.execute(&mut *conn).await?.rows_affected())
}

/// New conversations, (id, user id, title) each, in one statement, made and updated
/// `now`.
pub(crate) async fn insert_conversations(
    conn: &mut sqlx::AnyConnection,
    conversations: &[(&str, &str, &str)],
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES {}",
        crate::db::values_placeholders(conversations.len(), 5)
    );
    // A class's groups come in many sizes; they are not kept prepared.
    let mut query = sqlx::query(&sql).persistent(conversations.len() == 1);
    for (id, user_id, title) in conversations {
        query = query.bind(*id).bind(*user_id).bind(*title).bind(now).bind(now);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

pub(crate) fn parse_conversation_cursor(cursor: &str) -> Option<(i64, &str)> {
    let (updated_at, id) = cursor.split_once(':')?;
    Some((updated_at.parse().ok()?, id))
}

// Rows are read with `try_get`: a column that does not decode is an error, not a panic.
pub(crate) fn summary_from_row(row: &AnyRow) -> Result<ConversationSummary, sqlx::Error> {
    Ok(ConversationSummary {
        id: row.try_get(0)?,
        title: row.try_get(1)?,
        updated_at: row.try_get(2)?,
    })
}

pub(crate) fn message_from_row(row: &AnyRow) -> Result<StoredMessage, sqlx::Error> {
    Ok(StoredMessage {
        id: row.try_get(0)?,
        position: row.try_get(1)?,
        role: MessageRole::parse(&row.try_get::<String, _>(2)?),
        content: row.try_get(3)?,
        status: MessageStatus::parse(&row.try_get::<String, _>(4)?),
        error_code: row
            .try_get::<Option<String>, _>(5)?
            .map(|code| crate::protocol::ErrorCode::parse(&code)),
        created_at: row.try_get(6)?,
        // Unreadable JSON (hand-edited rows) shows the answer without its sources.
        sources: row
            .try_get::<Option<String>, _>(7)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default(),
        feedback: match row.try_get::<Option<String>, _>(8)? {
            Some(rating) => crate::feedback::Feedback::from_columns(
                &rating,
                &row.try_get::<Option<String>, _>(9)?.unwrap_or_default(),
                row.try_get::<Option<String>, _>(10)?.unwrap_or_default(),
            )
            .map(|feedback| feedback.shared(row.try_get::<Option<i64>, _>(11).ok().flatten() == Some(1))),
            None => None,
        },
        teacher_request: row.try_get::<Option<String>, _>(12)?.as_deref().and_then(TeacherRequest::parse),
        // By name, and absent from queries that do not select it.
        faq_id: row.try_get::<Option<String>, _>("faq_id").ok().flatten(),
        seams: row
            .try_get::<Option<String>, _>("seams")
            .ok()
            .flatten()
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default(),
        versions: Vec::new(),
        // By name too: only the student's own page selects it.
        ask_id: row
            .try_get::<Option<String>, _>("ask_key")
            .ok()
            .flatten()
            .and_then(|key| key.rsplit_once(':').map(|(_, ask_id)| ask_id.to_string())),
    })
}
