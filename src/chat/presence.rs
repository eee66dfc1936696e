//! A student's open sockets counted across instances (#12): one row per socket in
//! `open_sockets`, and a heartbeat per instance in `instances` so the sockets of a
//! killed instance stop counting within seconds. The count and the insert share one
//! write transaction (on PostgreSQL under an advisory lock on the session), so two
//! instances cannot both grant a session's last place.

use crate::account::store::hash_token;
use crate::db::{new_id, now_ms, Backend, Db, StoreError};

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
    /// `cap` open on live instances; returns the socket's row id, or `None` if full.
    pub async fn try_open_socket(&self, session_token: &str, instance: &str, cap: usize) -> Result<Option<String>, StoreError> {
        let key = hash_token(session_token);
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
        let inserted = match self.backend() {
            // One statement is atomic by itself: no BEGIN and COMMIT to hand to SQLite's
            // thread, two of the three round trips of every page's socket.
            Backend::Sqlite => {
                let _turn = self.write_turn().await;
                insert.execute(&self.pool).await?.rows_affected()
            }
            // Upgrades of one session on several instances take turns on its lock; the
            // statement starts after it is granted, so it sees the sockets of every
            // upgrade that held the lock before it.
            Backend::Postgres => {
                let mut tx = self.begin_write().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(&key)
                    .execute(&mut *tx)
                    .await?;
                let inserted = insert.execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                inserted
            }
        };
        Ok((inserted > 0).then_some(id))
    }

    pub async fn close_socket(&self, id: &str) -> Result<(), StoreError> {
        // A class leaving together is a burst of these: in turn, like the opens.
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM open_sockets WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }
}
