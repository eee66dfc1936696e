//! A student's open sockets counted across instances (#12): on PostgreSQL one row per
//! socket in `open_sockets`, and a heartbeat per instance in `instances` so the
//! sockets of a killed instance stop counting within seconds. The count and the insert
//! share one write transaction under an advisory lock on the session, so two instances
//! cannot both grant a session's last place. On SQLite every instance of the database
//! is in this process (a deployment has one; tests run several), so they count in
//! memory: no write to the single writer per socket opened or closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::limits::{ConnectionGuard, Connections};
use crate::account::store::hash_token;
use crate::db::{new_id, now_ms, Backend, Db, StoreError};

/// A socket's place among its session's open sockets on every instance.
pub enum SocketPlace {
    /// Its row in `open_sockets` (PostgreSQL), deleted when the socket ends.
    Row(String),
    /// Its place in the count of this process's instances (SQLite), freed on drop.
    InProcess(ConnectionGuard),
}

/// An instance that has not said it is alive for this long is taken for dead.
pub const INSTANCE_SILENT_MS: i64 = 5_000;

impl Db {
    /// This instance is alive (once a second).
    pub async fn instance_alive(&self, instance: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO instances (id, seen_at) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(instance)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// At start: the sockets this instance had before it restarted are gone.
    pub async fn forget_sockets_of(&self, instance: &str) -> Result<u64, StoreError> {
        let gone = sqlx::query("DELETE FROM open_sockets WHERE instance_id = $1")
            .bind(instance)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(gone)
    }

    /// Records a socket of the session on `instance` unless the session already has
    /// `cap` open on live instances; returns its place, or `None` if full.
    pub async fn try_open_socket(&self, session_token: &str, instance: &str, cap: usize) -> Result<Option<SocketPlace>, StoreError> {
        let key = hash_token(session_token);
        if self.backend() == Backend::Sqlite {
            return Ok(in_process_sockets(self.meeting_point()).try_open(&key, cap).map(SocketPlace::InProcess));
        }
        let now = now_ms();
        // The count and the insert are one statement: a round trip less per socket.
        let id = new_id();
        let insert = sqlx::query(
            "INSERT INTO open_sockets (id, session_key, instance_id, opened_at) \
             SELECT $1, $2, $3, $4 WHERE (SELECT COUNT(*) FROM open_sockets s JOIN instances i ON i.id = s.instance_id \
                                          WHERE s.session_key = $2 AND i.seen_at > $5) < $6",
        )
        .bind(&id)
        .bind(&key)
        .bind(instance)
        .bind(now)
        .bind(now - INSTANCE_SILENT_MS)
        .bind(i64::try_from(cap).unwrap_or(i64::MAX));
        // Upgrades of one session on several instances take turns on its lock; the
        // statement starts after it is granted, so it sees the sockets of every upgrade
        // that held the lock before it.
        let mut tx = self.begin_write().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        let inserted = insert.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok((inserted > 0).then_some(SocketPlace::Row(id)))
    }

    pub async fn close_socket(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM open_sockets WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }
}

/// The sockets of every instance on one SQLite database, by session, in this process.
/// An entry lives while a socket holds a place in it.
fn in_process_sockets(url: &str) -> Arc<Connections> {
    static COUNTS: OnceLock<Mutex<HashMap<String, Weak<Connections>>>> = OnceLock::new();
    let mut counts = COUNTS.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(count) = counts.get(url).and_then(Weak::upgrade) {
        return count;
    }
    counts.retain(|_, count| count.strong_count() > 0);
    let count = Arc::new(Connections::default());
    counts.insert(url.to_string(), Arc::downgrade(&count));
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two spellings of one SQLite file are one database: a session's sockets on an
    /// instance opened with either count together.
    #[tokio::test]
    async fn sockets_count_together_whatever_the_files_spelling() {
        let temp = tempfile::Builder::new().prefix("tutor-presence-").tempdir().unwrap();
        let dir = temp.path();
        let plain = format!("sqlite://{}?mode=rwc", dir.join("tutor-chat.db").display());
        let roundabout = format!("sqlite:{}?mode=rwc", dir.join(".").join("tutor-chat.db").display());
        let one = Db::connect(&plain, 2).await.unwrap();
        let other = Db::connect(&roundabout, 2).await.unwrap();
        assert_ne!(one.url(), other.url());
        let first = one.try_open_socket("a session", "one", 1).await.unwrap();
        assert!(first.is_some());
        assert!(other.try_open_socket("a session", "other", 1).await.unwrap().is_none(), "the cap is the session's");
        drop(first);
        assert!(other.try_open_socket("a session", "other", 1).await.unwrap().is_some());
    }
}
