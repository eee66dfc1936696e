//! The teacher role and the course overview's SQL (one query for both backends).

use sqlx::Row;

use super::{InstructionChange, RatingSummary, TutorNotes};
use crate::feedback::{Feedback, Rating, Reason};
use crate::db::{new_id, now_ms, Backend, Db, StoreError, DAY_MS};

pub const TEACHER_ROLE: &str = "teacher";

/// What `teacher add` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeacherAdded {
    Created,
    /// A student's account made a teacher (its password replaced, and its sessions
    /// signed out, when one was given).
    Promoted { password_replaced: bool },
    AlreadyTeacher { password_replaced: bool },
    /// The name is a student's account, and the operator did not say to promote it.
    ExistsAsStudent,
}

/// The conversations their students shared with the teacher, as a subquery: those
/// they asked the teacher about, and those with an answer rated 👎 with "share this
/// conversation" ticked.
pub const SHARED_CONVERSATIONS: &str = "SELECT conversation_id FROM escalations \
     UNION SELECT fm.conversation_id FROM feedback f JOIN messages fm ON fm.id = f.message_id \
     WHERE f.shared = 1 AND f.rating = 'down'";

/// An SQL condition on a conversation aliased `c`: may a teacher read its text? Only
/// where its student shared it ([`SHARED_CONVERSATIONS`]), unless the course's setting
/// `teachers_read_all_conversations` opens them all. Everything else, teachers see
/// only as numbers. (The subquery is not correlated: it runs once per query.)
pub fn readable_by_teachers(read_all: bool) -> String {
    if read_all {
        "(1 = 1)".to_string()
    } else {
        format!("(c.id IN ({SHARED_CONVERSATIONS}))")
    }
}

impl Db {
    /// Makes `username` a teacher: creates the account with `password_hash`, or, for
    /// an existing one, promotes it only when `promote_existing` says the operator
    /// knows it is the teacher's own (a student may have signed up with the teacher's
    /// name first). A given hash replaces an existing account's password and signs out
    /// every session it has. `Ok(None)`: no such account and no password to create it.
    pub async fn add_teacher(
        &self,
        username: &str,
        password_hash: Option<&str>,
        promote_existing: bool,
    ) -> Result<Option<TeacherAdded>, StoreError> {
        let key = username.to_lowercase();
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query("SELECT id, role FROM users WHERE username_key = $1")
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| Ok::<_, sqlx::Error>((row.try_get::<String, _>(0)?, row.try_get::<Option<String>, _>(1)?)))
            .transpose()?;
        let added = match existing {
            // `promote` is for an account that exists: a mistyped name makes none.
            None if promote_existing => None,
            None => match password_hash {
                Some(hash) => {
                    sqlx::query(
                        "INSERT INTO users (id, created_at, username, username_key, password_hash, role) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(new_id())
                    .bind(now_ms())
                    .bind(username)
                    .bind(&key)
                    .bind(hash)
                    .bind(TEACHER_ROLE)
                    .execute(&mut *tx)
                    .await?;
                    Some(TeacherAdded::Created)
                }
                None => None,
            },
            Some((_, role)) if role.as_deref() != Some(TEACHER_ROLE) && !promote_existing => {
                Some(TeacherAdded::ExistsAsStudent)
            }
            Some((user, role)) => {
                let was_teacher = role.as_deref() == Some(TEACHER_ROLE);
                sqlx::query("UPDATE users SET role = $1 WHERE id = $2").bind(TEACHER_ROLE).bind(&user).execute(&mut *tx).await?;
                if let Some(hash) = password_hash {
                    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2").bind(hash).bind(&user).execute(&mut *tx).await?;
                    sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(&user).execute(&mut *tx).await?;
                }
                let password_replaced = password_hash.is_some();
                Some(if was_teacher {
                    TeacherAdded::AlreadyTeacher { password_replaced }
                } else {
                    TeacherAdded::Promoted { password_replaced }
                })
            }
        };
        tx.commit().await?;
        Ok(added)
    }

    /// Makes a teacher a student again (the account stays); false when no teacher has
    /// that name.
    pub async fn remove_teacher(&self, username: &str) -> Result<bool, StoreError> {
        let removed = sqlx::query("UPDATE users SET role = NULL WHERE username_key = $1 AND role = $2")
            .bind(username.to_lowercase())
            .bind(TEACHER_ROLE)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed == 1)
    }

    pub async fn is_teacher(&self, user_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM users WHERE id = $1 AND role = $2")
            .bind(user_id)
            .bind(TEACHER_ROLE)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Questions and distinct students per UTC day since `since` (Unix ms), oldest
    /// first, and the totals over the period: `(day since epoch, questions, students)`.
    pub async fn questions_per_day(&self, since: i64) -> Result<(Vec<(i64, i64, i64)>, i64, i64), StoreError> {
        let rows = sqlx::query(
            "SELECT m.created_at / $2 AS day, COUNT(*), COUNT(DISTINCT c.user_id) \
             FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.role = 'user' AND m.created_at >= $1 \
             GROUP BY m.created_at / $2 ORDER BY day",
        )
        .bind(since)
        .bind(DAY_MS)
        .fetch_all(&self.pool)
        .await?;
        let per_day = rows
            .iter()
            .map(|row| Ok((row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?, row.try_get::<i64, _>(2)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let total = sqlx::query(
            "SELECT COUNT(*), COUNT(DISTINCT c.user_id) FROM messages m \
             JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.role = 'user' AND m.created_at >= $1",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok((per_day, total.try_get(0)?, total.try_get(1)?))
    }

    /// How the answers asked since `since` ended: `(status, count)`, most first.
    pub async fn answer_endings(&self, since: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM messages WHERE role = 'assistant' AND created_at >= $1 \
             GROUP BY status ORDER BY n DESC, status",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    /// The ratings of answers asked since `since`.
    pub async fn rating_summary(&self, since: i64) -> Result<RatingSummary, StoreError> {
        // Counted by (rating, reasons) in SQL: a handful of rows, however many ratings.
        let rows = sqlx::query(
            "SELECT rating, reasons, COUNT(*) FROM feedback WHERE answer_at >= $1 GROUP BY rating, reasons",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut summary = RatingSummary {
            reasons: Reason::ALL.iter().map(|r| (r.as_str().to_string(), 0)).collect(),
            ..RatingSummary::default()
        };
        for row in &rows {
            let (rating, reasons, count): (String, String, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let Some(feedback) = Feedback::from_columns(&rating, &reasons, String::new()) else { continue };
            match feedback.rating {
                Rating::Up => summary.up += count,
                Rating::Down => summary.down += count,
            }
            for reason in feedback.reasons {
                if let Some(slot) = summary.reasons.iter_mut().find(|(name, _)| name == reason.as_str()) {
                    slot.1 += count;
                }
            }
        }
        Ok(summary)
    }

    /// Records new instructions for `scope` ('' = the course, else a lesson slug); an
    /// empty text clears them. The earlier versions stay, with who wrote them.
    pub async fn set_instructions(&self, scope: &str, text: &str, changed_by: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Two saves of one scope at once would read the same last change.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("instructions:{scope}"))
                .execute(&mut *tx)
                .await?;
        }
        // Strictly later than the scope's last change, so "the newest" is never a tie.
        let last: Option<i64> = sqlx::query("SELECT MAX(changed_at) FROM tutor_instructions WHERE scope = $1")
            .bind(scope)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let at = last.map_or(now_ms(), |last| now_ms().max(last + 1));
        sqlx::query(
            "INSERT INTO tutor_instructions (id, scope, text, changed_by, changed_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(new_id())
        .bind(scope)
        .bind(text)
        .bind(changed_by)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.wrote();
        Ok(())
    }

    /// The instructions in force for a question whose sources come from `lessons`:
    /// the course's, and the notes on those lessons (one query).
    pub async fn tutor_notes(&self, lessons: &[String]) -> Result<TutorNotes, StoreError> {
        let placeholders: Vec<String> = (0..=lessons.len()).map(|i| format!("${}", i + 1)).collect();
        let sql = format!(
            "SELECT t.scope, t.text FROM tutor_instructions t WHERE t.scope IN ({}) \
             AND t.changed_at = (SELECT MAX(changed_at) FROM tutor_instructions u WHERE u.scope = t.scope) \
             ORDER BY t.scope",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql).bind("");
        for lesson in lessons {
            query = query.bind(lesson.as_str());
        }
        let mut notes = TutorNotes::default();
        for row in query.fetch_all(&self.pool).await? {
            let (scope, text): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            if text.is_empty() {
                continue;
            }
            if scope.is_empty() {
                notes.course = Some(text);
            } else {
                notes.lessons.push((scope, text));
            }
        }
        Ok(notes)
    }

    /// Every scope's instructions in force, and the latest `limit` changes.
    pub async fn all_instructions(&self, limit: u32) -> Result<(TutorNotes, Vec<InstructionChange>), StoreError> {
        let current = sqlx::query(
            "SELECT t.scope, t.text FROM tutor_instructions t \
             WHERE t.changed_at = (SELECT MAX(changed_at) FROM tutor_instructions u WHERE u.scope = t.scope) \
             ORDER BY t.scope",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut notes = TutorNotes::default();
        for row in current {
            let (scope, text): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            match (scope.is_empty(), text.is_empty()) {
                (_, true) => {}
                (true, false) => notes.course = Some(text),
                (false, false) => notes.lessons.push((scope, text)),
            }
        }
        let changes = sqlx::query(
            "SELECT scope, text, changed_by, changed_at FROM tutor_instructions ORDER BY changed_at DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(InstructionChange {
                scope: row.try_get(0)?,
                text: row.try_get(1)?,
                changed_by: row.try_get(2)?,
                changed_at: row.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok((notes, changes))
    }
}
