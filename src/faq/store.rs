//! The course FAQ's SQL: endorsed entries, the version every change bumps (so each
//! instance knows when to reload its matcher), and the mark on an answer that was an
//! entry given without the model. One query text for both backends.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::FaqEntry;
use crate::db::{new_id, now_ms, Db, StoreError};

/// What an answer offers to be endorsed: its question, its text, its sources (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endorsable {
    pub question: String,
    pub answer: String,
    pub sources_json: Option<String>,
}

const BUMP_VERSION: &str = "UPDATE faq_version SET version = version + 1 WHERE id = 'faq'";

impl Db {
    /// The FAQ's version: it changes with every endorsement, edit and withdrawal.
    pub async fn faq_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT version FROM faq_version WHERE id = 'faq'")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get(0)?,
            None => 0,
        })
    }

    /// Every endorsed entry, oldest endorsement first.
    pub async fn faq_entries(&self) -> Result<Vec<FaqEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, message_id, question, answer, sources, endorsed_by, updated_at \
             FROM faq_entries ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(entry_from_row).collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    pub async fn faq_entry(&self, id: &str) -> Result<Option<FaqEntry>, StoreError> {
        let row = sqlx::query(
            "SELECT id, message_id, question, answer, sources, endorsed_by, updated_at \
             FROM faq_entries WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(entry_from_row).transpose()?)
    }

    /// An answer as it stands, with the question it answered; `None` when no answer
    /// has that id or the teacher may not read its conversation (`read_all`: the
    /// course opens every conversation to teachers): endorsing would publish it.
    pub async fn endorsable(&self, message_id: &str, read_all: bool) -> Result<Option<Endorsable>, StoreError> {
        let sql = format!(
            "SELECT m.parent_id, m.content, m.sources FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.id = $1 AND m.role = 'assistant' AND {}",
            crate::teacher::store::readable_by_teachers(read_all)
        );
        let Some(row) = sqlx::query(&sql)
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        // An answer's parent is its question.
        let question_id: String = row.try_get(0)?;
        let question: Option<String> = sqlx::query("SELECT content FROM messages WHERE id = $1 AND role = 'user'")
        .bind(&question_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
        Ok(Some(Endorsable {
            question: question.unwrap_or_default(),
            answer: row.try_get(1)?,
            sources_json: row.try_get(2)?,
        }))
    }

    /// Endorses an answer with this wording; endorsing it again replaces the wording.
    /// Returns the entry's id.
    pub async fn save_endorsement(
        &self,
        message_id: &str,
        question: &str,
        answer: &str,
        sources_json: Option<&str>,
        endorsed_by: &str,
    ) -> Result<String, StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        // One statement, so that two teachers endorsing the same answer at once both
        // succeed (a look first, then an insert, had the later one fail on the unique
        // index); an entry endorsed again keeps its id and sources.
        let id: String = sqlx::query_scalar(
            "INSERT INTO faq_entries (id, message_id, question, answer, sources, endorsed_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (message_id) DO UPDATE SET question = excluded.question, answer = excluded.answer, \
             endorsed_by = excluded.endorsed_by, updated_at = excluded.updated_at \
             RETURNING id",
        )
        .bind(new_id())
        .bind(message_id)
        .bind(question)
        .bind(answer)
        .bind(sources_json)
        .bind(endorsed_by)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(BUMP_VERSION).execute(&mut *tx).await?;
        tx.commit().await?;
        self.wrote_n(2);
        Ok(id)
    }

    /// New wording for an entry; false when there is no such entry.
    pub async fn edit_endorsement(&self, id: &str, question: &str, answer: &str, endorsed_by: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query("UPDATE faq_entries SET question = $1, answer = $2, endorsed_by = $3, updated_at = $4 WHERE id = $5")
            .bind(question)
            .bind(answer)
            .bind(endorsed_by)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 1 {
            sqlx::query(BUMP_VERSION).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.wrote_n(2);
        Ok(changed == 1)
    }

    /// Takes an entry out of the FAQ; false when there is no such entry. Answers it
    /// gave keep their text (and a badge whose link no longer finds it).
    pub async fn withdraw_endorsement(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let removed = sqlx::query("DELETE FROM faq_entries WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed == 1 {
            sqlx::query(BUMP_VERSION).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.wrote_n(2);
        Ok(removed == 1)
    }

    /// Marks an answer as the FAQ entry `faq_id`, given without the model.
    pub async fn mark_faq_answer(&self, message_id: &str, faq_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE messages SET faq_id = $1 WHERE id = $2")
            .bind(faq_id)
            .bind(message_id)
            .execute(&self.pool)
            .await?;
        self.wrote();
        Ok(())
    }
}

fn entry_from_row(row: &AnyRow) -> Result<FaqEntry, sqlx::Error> {
    Ok(FaqEntry {
        id: row.try_get(0)?,
        message_id: row.try_get(1)?,
        question: row.try_get(2)?,
        answer: row.try_get(3)?,
        // Unreadable JSON shows the answer without its source links.
        sources: row
            .try_get::<Option<String>, _>(4)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default(),
        endorsed_by: row.try_get(5)?,
        updated_at: row.try_get(6)?,
    })
}
