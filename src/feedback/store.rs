//! Ratings' SQL. A rating is accepted only for a finished answer in one of the
//! student's own conversations; anyone else's answer is "not found".

use sqlx::Row;

use super::Feedback;
use crate::db::{now_ms, Db, StoreError};

impl Db {
    /// Sets (or, with `None`, withdraws) the student's rating of an answer. Returns the
    /// answer's conversation, or `None` when the answer is not a finished answer of
    /// this user's.
    pub async fn rate_answer(
        &self,
        user_id: &str,
        message_id: &str,
        feedback: Option<&Feedback>,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin_write().await?;
        let conversation = sqlx::query(
            "SELECT c.id, m.created_at FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.id = $1 AND c.user_id = $2 AND m.role = 'assistant' AND m.status <> 'streaming'",
        )
        .bind(message_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(conversation) = conversation else { return Ok(None) };
        let (conversation, answer_at): (String, i64) = (conversation.try_get(0)?, conversation.try_get(1)?);
        match feedback {
            // One statement either way: two tabs rating at once cannot collide.
            Some(feedback) => {
                sqlx::query(
                    "INSERT INTO feedback (message_id, rating, reasons, comment, updated_at, shared, answer_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (message_id) DO UPDATE SET rating = excluded.rating, reasons = excluded.reasons, \
                     comment = excluded.comment, updated_at = excluded.updated_at, shared = excluded.shared",
                )
                .bind(message_id)
                .bind(feedback.rating.as_str())
                .bind(feedback.reasons_text())
                .bind(&feedback.comment)
                .bind(now_ms())
                .bind(i64::from(feedback.share && feedback.rating == super::Rating::Down))
                .bind(answer_at)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM feedback WHERE message_id = $1")
                    .bind(message_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        self.wrote();
        Ok(Some(conversation))
    }
}
