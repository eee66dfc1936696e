//! The teacher role and the course overview's SQL (one query for both backends).

use sqlx::Row;

use crate::db::{new_id, now_ms, Db, StoreError};

pub const TEACHER_ROLE: &str = "teacher";
const DAY_MS: i64 = 86_400_000;

/// What `teacher add` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeacherAdded {
    Created,
    Promoted,
}

impl Db {
    /// Makes `username` a teacher: promotes the account, or creates it with
    /// `password_hash`. A given hash also replaces an existing account's password.
    /// `Ok(None)`: no such account and no password to create it with.
    pub async fn add_teacher(&self, username: &str, password_hash: Option<&str>) -> Result<Option<TeacherAdded>, StoreError> {
        let key = username.to_lowercase();
        let mut tx = self.begin_write().await?;
        let promoted = sqlx::query("UPDATE users SET role = $1 WHERE username_key = $2")
            .bind(TEACHER_ROLE)
            .bind(&key)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let added = if promoted == 1 {
            if let Some(hash) = password_hash {
                sqlx::query("UPDATE users SET password_hash = $1 WHERE username_key = $2")
                    .bind(hash)
                    .bind(&key)
                    .execute(&mut *tx)
                    .await?;
            }
            Some(TeacherAdded::Promoted)
        } else if let Some(hash) = password_hash {
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
        } else {
            None
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
}
