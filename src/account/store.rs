//! Sessions, accounts and sign-in throttling: the SQL behind `crate::auth` and the
//! account server functions. Session tokens are stored hashed (SHA-256): a leaked
//! table is not a set of live cookies.

use std::collections::HashSet;

use sqlx::Row;

use crate::db::{
    new_id, now_ms, take_address_event, values_placeholders, AddressEvent, Backend, Db, StoreError, DAY_MS,
};

/// How long an account's session lasts unused; it slides while used.
pub const ACCOUNT_SESSION_MS: i64 = 30 * DAY_MS;
/// Failed sign-ins are kept this long at most.
const LOGIN_FAILURE_KEEP_MS: i64 = DAY_MS;

/// The form a session token is stored in.
pub fn hash_token(token: &str) -> String {
    crate::digest::sha256_hex(token.as_bytes())
}

impl Db {
    /// The user a session token belongs to, if it has one yet (and, for an account's
    /// session, if it has not expired). An account session used in the second half
    /// of its life is renewed: expiry slides while the student keeps coming back.
    pub async fn find_user(&self, token: &str) -> Result<Option<String>, StoreError> {
        let now = now_ms();
        let token_hash = hash_token(token);
        let row = sqlx::query(
            "SELECT user_id, expires_at FROM sessions WHERE token_hash = $1 \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(&token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let user: String = row.try_get(0)?;
        if let Some(expires_at) = row.try_get::<Option<i64>, _>(1)? {
            if expires_at - now < ACCOUNT_SESSION_MS / 2 {
                sqlx::query("UPDATE sessions SET expires_at = $1 WHERE token_hash = $2")
                    .bind(now + ACCOUNT_SESSION_MS)
                    .bind(&token_hash)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(Some(user))
    }

    /// The account a session is signed in to: `(user id, username)`.
    pub async fn account_of(&self, token: &str) -> Result<Option<(String, String)>, StoreError> {
        let Some(user) = self.find_user(token).await? else { return Ok(None) };
        Ok(self.username_of(&user).await?.map(|name| (user, name)))
    }

    /// The username of a user with an account (`None` for a guest).
    pub async fn username_of(&self, user: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT username FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| r.try_get::<Option<String>, _>(0).ok().flatten()))
    }

    /// Makes an account. A guest browser's user becomes the account, so its
    /// conversations are the account's; the session is replaced by a new one (a
    /// token known before sign-up is worth nothing after): `new_token` names it.
    /// Returns whether the replaced session was another account's.
    pub async fn create_account(
        &self,
        token: &str,
        username: &str,
        password_hash: &str,
        new_token: &str,
    ) -> Result<bool, AccountError> {
        let now = now_ms();
        let key = username.to_lowercase();
        let mut tx = self.begin_write().await?;
        let holder = holder_of_session(&mut tx, token, now).await?;
        let user_id = match &holder {
            Some(SessionHolder::Guest(guest)) => guest.clone(),
            _ => {
                let id = new_id();
                sqlx::query("INSERT INTO users (id, created_at) VALUES ($1, $2)")
                    .bind(&id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                id
            }
        };
        let named = sqlx::query(
            "UPDATE users SET username = $1, username_key = $2, password_hash = $3 WHERE id = $4",
        )
        .bind(username)
        .bind(&key)
        .bind(password_hash)
        .bind(&user_id)
        .execute(&mut *tx)
        .await;
        match named {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(AccountError::Taken),
            other => other?,
        };
        self.replace_session(&mut tx, token, new_token, &user_id, now).await?;
        tx.commit().await?;
        Ok(matches!(holder, Some(SessionHolder::Account)))
    }

    /// The account behind a username (any case): `(user id, password hash)`.
    pub async fn account_by_name(&self, username: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT id, password_hash FROM users WHERE username_key = $1")
            .bind(username.to_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Signs a browser in: a new session for the account replaces its old one, and
    /// the conversations (and question budget) it had as a guest move to the account.
    /// Returns whether the replaced session was another account's.
    pub async fn sign_in(&self, token: &str, account: &str, new_token: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let holder = holder_of_session(&mut tx, token, now).await?;
        if let Some(SessionHolder::Guest(guest)) = &holder {
            sqlx::query("UPDATE conversations SET user_id = $1 WHERE user_id = $2")
                .bind(account)
                .bind(guest)
                .execute(&mut *tx)
                .await?;
            // Signing in does not refill the question budget: the account takes the
            // guest's debt when it is the larger.
            let guest_full_at: i64 = sqlx::query("SELECT questions_full_at FROM users WHERE id = $1")
                .bind(guest)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            sqlx::query("UPDATE users SET questions_full_at = $1 WHERE id = $2 AND questions_full_at < $1")
                .bind(guest_full_at)
                .bind(account)
                .execute(&mut *tx)
                .await?;
        }
        self.replace_session(&mut tx, token, new_token, account, now).await?;
        tx.commit().await?;
        Ok(matches!(holder, Some(SessionHolder::Account)))
    }

    async fn replace_session(
        &self,
        tx: &mut sqlx::AnyConnection,
        old_token: &str,
        new_token: &str,
        user_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(hash_token(old_token))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash_token(new_token))
        .bind(user_id)
        .bind(now)
        .bind(now + ACCOUNT_SESSION_MS)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Ends a session on the server: its cookie no longer names anyone.
    pub async fn sign_out(&self, token: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(hash_token(token))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Reserves a sign-in attempt as a failure before its password is verified: the
    /// count and the reservation are one step, so parallel guesses cannot all pass the
    /// count. Refused when `name_key` has `per_name` failures, or `address_key` has
    /// `per_address`, since `since`. A success takes its reservation back
    /// ([`Db::sign_in_succeeded`]).
    pub async fn reserve_sign_in(
        &self,
        name_key: &str,
        address_key: &str,
        since: i64,
        (per_name, per_address): (i64, i64),
    ) -> Result<Option<String>, StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // In one order, so two attempts never wait on each other's second lock.
            let mut keys = [name_key, address_key];
            keys.sort_unstable();
            for key in keys {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(format!("login:{key}"))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for (key, limit) in [(name_key, per_name), (address_key, per_address)] {
            let failures: i64 = sqlx::query("SELECT COUNT(*) FROM login_failures WHERE key = $1 AND at > $2")
                .bind(key)
                .bind(since)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if failures >= limit {
                return Ok(None);
            }
        }
        let attempt = new_id();
        for key in [name_key, address_key] {
            sqlx::query("INSERT INTO login_failures (key, at, attempt_id) VALUES ($1, $2, $3)")
                .bind(key)
                .bind(now)
                .bind(&attempt)
                .execute(&mut *tx)
                .await?;
        }
        // Old failures are kept a day at most.
        sqlx::query("DELETE FROM login_failures WHERE at < $1")
            .bind(now - LOGIN_FAILURE_KEEP_MS)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(attempt))
    }

    /// A sign-in that verified: its reservation goes, and so do the earlier failures
    /// for the name from this address.
    pub async fn sign_in_succeeded(&self, attempt: &str, name_key: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM login_failures WHERE attempt_id = $1 OR key = $2")
            .bind(attempt)
            .bind(name_key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes a sign-up from the address's hourly budget; `Some(seconds)` when spent.
    pub async fn take_signup(&self, address: &str, per_hour: u32) -> Result<Option<u64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let refused =
            take_address_event(&mut tx, self.backend, address, AddressEvent::SignUp, per_hour, now_ms())
                .await?;
        tx.commit().await?;
        Ok(refused)
    }

    /// The session's user, made now if it has none (a student's is made with their
    /// first question instead, in the same transaction: `Db::begin_answer`). A new
    /// guest is taken from the client address's hourly budget of new guests
    /// (`guests_per_hour`, 0: none).
    pub async fn ensure_user(&self, token: &str, address: &str, guests_per_hour: u32) -> Result<String, GuestError> {
        if let Some(user) = self.find_user(token).await? {
            return Ok(user);
        }
        let user_id = new_id();
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        match insert_guest(&mut tx, self.backend, &NewGuest { token, user_id: &user_id, address, guests_per_hour, questions_full_at: 0 }, now)
            .await?
        {
            GuestInsert::Made => {}
            GuestInsert::AddressFull { retry_after } => return Err(GuestError::TooMany { retry_after }),
            GuestInsert::SessionHasUser => {
                // Another tab of the same browser won the race: use its user.
                tx.rollback().await?;
                return Ok(self
                    .find_user(token)
                    .await?
                    .ok_or(StoreError::Sqlx(sqlx::Error::RowNotFound))?);
            }
        }
        tx.commit().await?;
        self.wrote();
        self.wrote();
        Ok(user_id)
    }
}

/// A guest user to make for a session that has none.
pub(crate) struct NewGuest<'a> {
    pub token: &'a str,
    pub user_id: &'a str,
    /// The client address, and its budget of new guests an hour (0: no limit).
    pub address: &'a str,
    pub guests_per_hour: u32,
    /// Where the new user's question budget starts (`chat::budget`; 0: full).
    pub questions_full_at: i64,
}

/// What [`insert_guest`] came to.
pub(crate) enum GuestInsert {
    Made,
    /// The address started its hour's budget of new guests.
    AddressFull { retry_after: u64 },
    /// The session names a user already (another tab made it a moment ago): roll back
    /// and use that one.
    SessionHasUser,
}

/// Makes a guest and gives it the session, inside the caller's write transaction:
/// [`Db::ensure_user`] on its own, and a first question (`chat::store`) together with
/// its conversation, so a new student's arrival is one transaction, not two.
pub(crate) async fn insert_guest(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    guest: &NewGuest<'_>,
    now: i64,
) -> Result<GuestInsert, sqlx::Error> {
    insert_guest_users(tx, &[(guest.user_id, guest.questions_full_at)], now).await?;
    let key = hash_token(guest.token);
    if insert_guest_sessions(tx, &[(&key, guest.user_id)], now).await?.is_empty() {
        return Ok(GuestInsert::SessionHasUser);
    }
    // Taken last: a tab that lost the race to make the session's user is not refused
    // by an address at its limit, it asks as the user the other tab made.
    let refused =
        take_address_event(tx, backend, guest.address, AddressEvent::NewGuest, guest.guests_per_hour, now).await?;
    Ok(match refused {
        Some(retry_after) => GuestInsert::AddressFull { retry_after },
        None => GuestInsert::Made,
    })
}

/// New guest users, (id, where its question budget starts) each, in one statement.
/// No guest number yet: numbering here would make every new guest of a class wait
/// for every other's commit (`number_guests` gives it, off this path).
pub(crate) async fn insert_guest_users(
    tx: &mut sqlx::AnyConnection,
    users: &[(&str, i64)],
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO users (id, created_at, questions_full_at) VALUES {}",
        values_placeholders(users.len(), 3)
    );
    // A class's groups come in many sizes; they are not kept prepared.
    let mut query = sqlx::query(&sql).persistent(users.len() == 1);
    for (id, questions_full_at) in users {
        query = query.bind(*id).bind(now).bind(*questions_full_at);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// New guests' sessions, (token hash, user id) each, in one statement; returns the
/// token hashes of the sessions made. An account's session that expired names nobody
/// now: the browser carries on as a fresh guest under the same (signed) token, its
/// row taken over. A live row is left alone (another tab made its user a moment ago).
pub(crate) async fn insert_guest_sessions(
    tx: &mut sqlx::AnyConnection,
    sessions: &[(&str, &str)],
    now: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    // In the order of their keys: two instances' transactions inserting some of the
    // same sessions would otherwise wait for each other's rows in opposite orders
    // (PostgreSQL).
    let mut rows = sessions.to_vec();
    rows.sort_unstable();
    let sql = format!(
        "INSERT INTO sessions (token_hash, user_id, created_at) VALUES {} \
         ON CONFLICT (token_hash) DO UPDATE \
         SET user_id = excluded.user_id, created_at = excluded.created_at, expires_at = NULL \
         WHERE sessions.expires_at IS NOT NULL AND sessions.expires_at <= excluded.created_at \
         RETURNING token_hash",
        values_placeholders(rows.len(), 3)
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql).persistent(rows.len() == 1);
    for (key, user_id) in rows {
        query = query.bind(key).bind(user_id).bind(now);
    }
    Ok(query.fetch_all(&mut *tx).await?.into_iter().collect())
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("username taken")]
    Taken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a session got no user.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The address started its hour's budget of new guests.
    #[error("too many new guests from this address")]
    TooMany { retry_after: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for GuestError {
    fn from(error: sqlx::Error) -> Self {
        GuestError::Store(error.into())
    }
}

impl From<sqlx::Error> for AccountError {
    fn from(error: sqlx::Error) -> Self {
        AccountError::Store(error.into())
    }
}

/// What one cleanup removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StaleGone {
    /// Expired account sessions.
    pub sessions: u64,
    pub guests: u64,
    /// The token hashes of every session deleted (expired, and the idle guests'): their
    /// open sockets are told.
    pub ended: Vec<String>,
}

/// Guests deleted per transaction: a long cleanup does not hold the writer for long.
const CLEANUP_BATCH: i64 = 200;

impl Db {
    /// Deletes expired account sessions, and guests (no username) whose last activity
    /// — their creation or a conversation's last change — is `guest_idle_days` old,
    /// with their sessions, conversations, messages and rate-limit records. What it
    /// deleted goes into `gone` as each transaction commits, so a batch that fails
    /// leaves the earlier batches' sessions there for their sockets to be told.
    pub async fn delete_stale_sessions(&self, now: i64, guest_idle_days: u32, gone: &mut StaleGone) -> Result<(), StoreError> {
        let expired: Vec<String> =
            sqlx::query("DELETE FROM sessions WHERE expires_at IS NOT NULL AND expires_at <= $1 RETURNING token_hash")
                .bind(now)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|row| row.try_get::<String, _>(0))
                .collect::<Result<_, _>>()?;
        gone.sessions += expired.len() as u64;
        gone.ended.extend(expired);
        if guest_idle_days == 0 {
            return Ok(());
        }
        let cutoff = now - i64::from(guest_idle_days) * DAY_MS;
        loop {
            let mut tx = self.begin_write().await?;
            // Oldest first: each pass makes the same batches, whatever order the
            // database keeps its rows in (a guest that cannot be deleted stops every
            // pass at its batch; the warning in the log says so each hour).
            let idle: Vec<String> = sqlx::query(
                "SELECT u.id FROM users u WHERE u.username IS NULL AND u.created_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.user_id = u.id AND c.updated_at >= $1) \
                 ORDER BY u.created_at, u.id LIMIT $2",
            )
            .bind(cutoff)
            .bind(CLEANUP_BATCH)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
            // Each table in one statement for the whole batch: the writer a class's
            // questions wait for is held for eight statements, not eight a guest.
            let mut ended = Vec::new();
            if !idle.is_empty() {
                let users = crate::db::in_list(1, idle.len());
                let conversations = format!("SELECT id FROM conversations WHERE user_id IN {users}");
                let messages = format!(
                    "SELECT m.id FROM messages m JOIN conversations c ON c.id = m.conversation_id \
                     WHERE c.user_id IN {users}"
                );
                for statement in [
                    format!("DELETE FROM feedback WHERE message_id IN ({messages})"),
                    format!("DELETE FROM escalations WHERE conversation_id IN ({conversations})"),
                    format!("DELETE FROM answer_sources WHERE message_id IN ({messages})"),
                    format!("DELETE FROM messages WHERE conversation_id IN ({conversations})"),
                    format!("DELETE FROM search_terms WHERE conversation_id IN ({conversations})"),
                    format!("DELETE FROM conversations WHERE user_id IN {users}"),
                    format!("DELETE FROM sessions WHERE user_id IN {users} RETURNING token_hash"),
                    format!("DELETE FROM users WHERE id IN {users}"),
                ] {
                    let mut query = sqlx::query(&statement).persistent(false);
                    for user in &idle {
                        query = query.bind(user);
                    }
                    // The sessions' statement returns their keys, the others nothing.
                    for row in query.fetch_all(&mut *tx).await? {
                        ended.push(row.try_get::<String, _>(0)?);
                    }
                }
            }
            tx.commit().await?;
            gone.ended.append(&mut ended);
            gone.guests += idle.len() as u64;
            if (idle.len() as i64) < CLEANUP_BATCH {
                return Ok(());
            }
        }
    }
}

/// Reads a teacher's view tries this often to find every guest in it numbered; a
/// guest that arrives between the numbering and the read is numbered on the next try.
const NUMBERED_READ_TRIES: usize = 3;

impl Db {
    /// Gives every guest still without one its number ("Guest 17"), oldest first,
    /// after the highest so far. Guests are created without a number: numbering them
    /// as they arrive made a class's arrival queue on one lock (docs/storage.md). Run
    /// before every read that shows guests to a teacher, so none is shown unnumbered;
    /// waits for guests whose row a question holds. Returns how many it numbered.
    pub async fn number_guests(&self) -> Result<u64, StoreError> {
        self.number_pending_guests(false).await
    }

    /// The same, once a second in the background (`chat::takeover`'s sweep), for
    /// the guests whose rows are free now: a row a question is writing is left for
    /// the next second, so no student waits for the numbering.
    pub async fn number_guests_in_background(&self) -> Result<u64, StoreError> {
        self.number_pending_guests(true).await
    }

    async fn number_pending_guests(&self, skip_busy_rows: bool) -> Result<u64, StoreError> {
        // The partial index `users_unnumbered` answers this from nothing when no
        // guest waits, which is nearly always: no write transaction then.
        let pending = sqlx::query("SELECT 1 FROM users WHERE guest_no IS NULL AND username IS NULL LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        if pending.is_none() {
            return Ok(0);
        }
        let lock = match (self.backend, skip_busy_rows) {
            (Backend::Sqlite, _) => "",
            (Backend::Postgres, false) => "FOR UPDATE",
            (Backend::Postgres, true) => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE users SET guest_no = numbered.n FROM ( \
                 SELECT id, (SELECT COALESCE(MAX(guest_no), 0) FROM users) \
                            + ROW_NUMBER() OVER (ORDER BY created_at, id) AS n \
                 FROM (SELECT id, created_at FROM users WHERE guest_no IS NULL AND username IS NULL {lock}) AS pending \
             ) AS numbered WHERE users.id = numbered.id"
        );
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Two numberings at once (two instances, or a teacher's read beside the
            // sweep) would both start after the same highest number. Only numberings
            // take this lock; SQLite's write transactions are one at a time already.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('users.guest_no'))")
                .execute(&mut *tx)
                .await?;
        }
        let numbered = sqlx::query(&sql).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        // Not counted in `writes`: it happens at a moment of the sweep's choosing, so
        // counting it would make a count of what a question wrote depend on timing.
        Ok(numbered)
    }

    /// Runs a teacher's `read` with every guest it shows numbered: numbers the
    /// waiting guests, reads, and if `unnumbered` finds a guest that arrived in
    /// between, numbers and reads again.
    pub(crate) async fn with_guest_numbers<T, F, Fut>(
        &self,
        read: F,
        unnumbered: impl Fn(&T) -> bool,
    ) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut tries = 0;
        loop {
            self.number_guests().await?;
            let seen = read().await?;
            tries += 1;
            if tries == NUMBERED_READ_TRIES || !unnumbered(&seen) {
                return Ok(seen);
            }
        }
    }
}

/// The guest user (no username) a session belongs to, if it is a guest's.
/// Who a session names: a guest, or an account (whose session has not expired).
enum SessionHolder {
    Guest(String),
    Account,
}

async fn holder_of_session(conn: &mut sqlx::AnyConnection, token: &str, now: i64) -> Result<Option<SessionHolder>, StoreError> {
    let row = sqlx::query(
        "SELECT u.id, u.username FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND (s.expires_at IS NULL OR s.expires_at > $2)",
    )
    .bind(hash_token(token))
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(match row.try_get::<Option<String>, _>(1)? {
        None => SessionHolder::Guest(row.try_get(0)?),
        Some(_) => SessionHolder::Account,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hashed() {
        let h = hash_token("abc");
        assert_eq!(h.len(), 64);
        assert_ne!(h, "abc");
    }
}
