//! Ratings' SQL. A rating is accepted only for a finished answer in one of the
//! student's own conversations; anyone else's answer is "not found".

use crate::history::store::own_finished_answer;

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
        let Some((conversation, answer_at)) = own_finished_answer(&mut tx, user_id, message_id).await? else {
            return Ok(None);
        };
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
