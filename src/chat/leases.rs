//! The SQL of answers that outlive their instance (docs/storage.md, "Answers cut by a
//! crash"): leases renewed with the checkpoints, finding the answers whose lease
//! lapsed, taking one over (at most one instance wins: the claim is conditional on
//! the generation it read) and reading what a follower on another instance needs.

use sqlx::Row;

use super::store::context_turns_from;
use crate::db::{Db, StoreError};
use crate::history::{MessageRole, MessageStatus};
use crate::protocol::ErrorCode;

/// A streaming answer whose owner stopped renewing it (or released it).
#[derive(Debug, Clone)]
pub struct LapsedAnswer {
    pub id: String,
    pub conversation_id: String,
    pub position: i64,
    pub content: String,
    pub chunk_seq: u64,
    pub generation: u64,
    pub continued: u64,
    /// Released by a shutdown (0), not cut by a crash.
    pub released: bool,
    pub seams: Vec<usize>,
    pub faq_id: Option<String>,
    pub created_at: i64,
}

/// What a continuation sends the model before the partial answer.
#[derive(Debug, Clone)]
pub struct ContinuationContext {
    pub user_id: String,
    pub question: String,
    pub turns: Vec<(MessageRole, String)>,
}

/// A stored answer as a follower on another instance needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowedAnswer {
    pub status: MessageStatus,
    pub content: String,
    pub seq: u64,
    pub generation: u64,
    /// The instance streaming it, while one does.
    pub owner: Option<String>,
    /// How it failed, if it ended in error.
    pub error_code: Option<ErrorCode>,
}

impl Db {
    /// Extends the leases of the answers `instance` streams to `until`; returns their
    /// ids. One it streams that is missing was taken over (or deleted) meanwhile.
    pub async fn renew_leases(&self, instance: &str, until: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "UPDATE messages SET lease_until = $1 WHERE status = 'streaming' AND owner_instance = $2 RETURNING id",
        )
        .bind(until)
        .bind(instance)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| row.try_get::<String, _>(0).map_err(StoreError::from)).collect()
    }

    /// Streaming answers no instance holds: lease lapsed (a row's lease is implied as
    /// `created_at + lease_ms` until first renewed), released, or — `own_before` —
    /// left by this very instance before it restarted.
    pub async fn lapsed_answers(
        &self,
        now: i64,
        lease_ms: i64,
        own_before: Option<(&str, i64)>,
        limit: i64,
    ) -> Result<Vec<LapsedAnswer>, StoreError> {
        let (instance, before) = own_before.unwrap_or(("", i64::MIN));
        let rows = sqlx::query(
            "SELECT id, conversation_id, position, content, chunk_seq, generation, continued, \
             lease_until, seams, faq_id, created_at FROM messages \
             WHERE status = 'streaming' AND (COALESCE(lease_until, created_at + $2) < $1 \
             OR (owner_instance = $3 AND created_at < $4)) ORDER BY created_at LIMIT $5",
        )
        .bind(now)
        .bind(lease_ms)
        .bind(instance)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LapsedAnswer {
                    id: row.try_get(0)?,
                    conversation_id: row.try_get(1)?,
                    position: row.try_get(2)?,
                    content: row.try_get(3)?,
                    chunk_seq: u64::try_from(row.try_get::<i64, _>(4)?).unwrap_or(0),
                    generation: u64::try_from(row.try_get::<i64, _>(5)?).unwrap_or(0),
                    continued: u64::try_from(row.try_get::<i64, _>(6)?).unwrap_or(0),
                    released: row.try_get::<Option<i64>, _>(7)? == Some(0),
                    seams: row
                        .try_get::<Option<String>, _>(8)?
                        .and_then(|json| serde_json::from_str(&json).ok())
                        .unwrap_or_default(),
                    faq_id: row.try_get(9)?,
                    created_at: row.try_get(10)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Takes a lapsed answer over for `instance`, if no other instance did since it
    /// was read; true when this one won. The seam goes where its stored text ends.
    pub async fn claim_answer(&self, answer: &LapsedAnswer, instance: &str, lease_until: i64) -> Result<bool, StoreError> {
        let mut seams = answer.seams.clone();
        if !answer.content.is_empty() && seams.last() != Some(&answer.content.len()) {
            seams.push(answer.content.len());
        }
        let seams = (!seams.is_empty()).then(|| serde_json::to_string(&seams).unwrap_or_default());
        let claimed = sqlx::query(
            "UPDATE messages SET owner_instance = $1, lease_until = $2, generation = generation + 1, \
             continued = continued + $3, seams = $4 WHERE id = $5 AND status = 'streaming' AND generation = $6",
        )
        .bind(instance)
        .bind(lease_until)
        .bind(i64::from(!answer.released))
        .bind(seams)
        .bind(&answer.id)
        .bind(answer.generation as i64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.wrote();
        Ok(claimed == 1)
    }

    /// Ends a lapsed answer as `interrupted` (continued often enough, or too old), if
    /// nobody took it since it was read; true when this call ended it.
    pub async fn interrupt_lapsed(&self, answer: &LapsedAnswer, now: i64) -> Result<bool, StoreError> {
        let ended = sqlx::query(
            "UPDATE messages SET status = 'interrupted', error_code = 'interrupted', finished_at = $1, \
             owner_instance = NULL, generation = generation + 1 \
             WHERE id = $2 AND status = 'streaming' AND generation = $3",
        )
        .bind(now)
        .bind(&answer.id)
        .bind(answer.generation as i64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.wrote();
        Ok(ended == 1)
    }

    /// The question an answer replies to, its student, and the turns before it.
    pub async fn continuation_context(&self, answer: &LapsedAnswer, budget_chars: usize) -> Result<Option<ContinuationContext>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        // The answer's question is its parent; the turns before it, its ancestors.
        let row = sqlx::query(
            "SELECT c.user_id, q.content, q.parent_id FROM messages a JOIN messages q ON q.id = a.parent_id \
             JOIN conversations c ON c.id = a.conversation_id WHERE a.id = $1 AND q.role = 'user'",
        )
        .bind(&answer.id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let question_parent: String = row.try_get(2)?;
        let (turns, _) = context_turns_from(&mut conn, &question_parent, budget_chars).await?;
        Ok(Some(ContinuationContext { user_id: row.try_get(0)?, question: row.try_get(1)?, turns }))
    }

    /// An answer of `user` as a follower on another instance needs it.
    pub async fn followed_answer(&self, user_id: &str, message_id: &str) -> Result<Option<FollowedAnswer>, StoreError> {
        let row = sqlx::query(
            "SELECT m.status, m.content, m.chunk_seq, m.generation, m.owner_instance, m.error_code FROM messages m \
             JOIN conversations c ON c.id = m.conversation_id WHERE m.id = $1 AND c.user_id = $2",
        )
        .bind(message_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(followed_from_row).transpose()
    }

    /// An answer's stored state, whoever's it is (for operators and tests).
    pub async fn answer_state(&self, message_id: &str) -> Result<Option<FollowedAnswer>, StoreError> {
        let row = sqlx::query(
            "SELECT status, content, chunk_seq, generation, owner_instance, error_code FROM messages WHERE id = $1",
        )
            .bind(message_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(followed_from_row).transpose()
    }
}

fn followed_from_row(row: &sqlx::any::AnyRow) -> Result<FollowedAnswer, StoreError> {
    Ok(FollowedAnswer {
        status: MessageStatus::parse(&row.try_get::<String, _>(0)?),
        content: row.try_get(1)?,
        seq: u64::try_from(row.try_get::<i64, _>(2)?).unwrap_or(0),
        generation: u64::try_from(row.try_get::<i64, _>(3)?).unwrap_or(0),
        owner: row.try_get(4)?,
        error_code: row
            .try_get::<Option<String>, _>(5)?
            .map(|code| ErrorCode::parse(&code)),
    })
}
