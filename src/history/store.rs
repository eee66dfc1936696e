//! The history store: every SQL statement of the app, for SQLite and PostgreSQL alike
//! through sqlx's `Any` driver (docs/storage.md). Every read that takes an id from a
//! client is scoped by the caller's user id, so someone else's conversation looks
//! exactly like a missing one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use super::{
    ConversationPage, ConversationSummary, ConversationView, MessageRole, MessageStatus,
    StoredMessage,
};
use crate::protocol::{ErrorCode, Usage};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("unsupported DATABASE_URL scheme (use sqlite: or postgres:): {0}")]
    Scheme(String),
    #[error("the answer writer stopped before storing this")]
    WriterGone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// Statements that changed data, for tests and docs/BENCHMARKS.md.
    writes: AtomicU64,
    /// Answer-row writes and the commits that stored them (`write_answers`), for
    /// tests of batching.
    answer_rows: AtomicU64,
    answer_commits: AtomicU64,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The database a settings value names: `DATABASE_URL` if set, else an SQLite file in
/// the data directory.
pub fn database_url(explicit: Option<&str>, data_dir: &std::path::Path) -> String {
    match explicit {
        Some(url) => url.to_string(),
        None => format!("sqlite://{}?mode=rwc", data_dir.join("tutor-chat.db").display()),
    }
}

impl Db {
    /// Connects, prepares SQLite (WAL, foreign keys) and runs the migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Scheme(url.split(':').next().unwrap_or("").into()));
        };
        if backend == Backend::Sqlite {
            if let Some(dir) = sqlite_parent_dir(url) {
                std::fs::create_dir_all(&dir).map_err(|source| StoreError::DataDir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // In WAL mode NORMAL sync survives an app crash (kill -9), which
                        // is what checkpoints guard against, without an fsync per commit.
                        // (sqlx already sets foreign_keys = ON and a 5 s busy timeout.)
                        sqlx::Executor::execute(conn, "PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets readers work beside the writer. It is a property of the file,
            // so setting it once is enough.
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Db {
            pool,
            backend,
            writes: AtomicU64::new(0),
            answer_rows: AtomicU64::new(0),
            answer_commits: AtomicU64::new(0),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// A transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred one that read first could not upgrade when another
    /// writer got in between, and would fail at once instead of waiting its turn.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// (answer-row writes, commits) so far.
    pub fn answer_commits(&self) -> (u64, u64) {
        (
            self.answer_rows.load(Ordering::Relaxed),
            self.answer_commits.load(Ordering::Relaxed),
        )
    }

    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

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
        let row = sqlx::query("SELECT username FROM users WHERE id = $1")
            .bind(&user)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .and_then(|r| r.try_get::<Option<String>, _>(0).ok().flatten())
            .map(|name| (user, name)))
    }

    /// Makes an account. A guest browser's user becomes the account, so its
    /// conversations are the account's; the session is replaced by a new one (a
    /// token known before sign-up is worth nothing after): `new_token` names it.
    pub async fn create_account(
        &self,
        token: &str,
        username: &str,
        password_hash: &str,
        new_token: &str,
    ) -> Result<(), AccountError> {
        let now = now_ms();
        let key = username.to_lowercase();
        let mut tx = self.begin_write().await.map_err(StoreError::from)?;
        let user_id = match guest_of_session(&mut tx, token).await? {
            Some(guest) => guest,
            None => {
                let id = new_id();
                sqlx::query("INSERT INTO users (id, created_at) VALUES ($1, $2)")
                    .bind(&id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
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
            other => other.map_err(StoreError::from)?,
        };
        self.replace_session(&mut tx, token, new_token, &user_id, now).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
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
    /// the conversations (and rate-limit record) it had as a guest move to the account.
    pub async fn sign_in(&self, token: &str, account: &str, new_token: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        if let Some(guest) = guest_of_session(&mut tx, token).await? {
            for table in ["conversations", "question_events"] {
                sqlx::query(&format!("UPDATE {table} SET user_id = $1 WHERE user_id = $2"))
                    .bind(account)
                    .bind(&guest)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        self.replace_session(&mut tx, token, new_token, account, now).await?;
        tx.commit().await?;
        Ok(())
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

    /// Failed sign-ins per key since `since` (Unix ms).
    pub async fn login_failures(&self, key: &str, since: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM login_failures WHERE key = $1 AND at > $2")
            .bind(key)
            .bind(since)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    pub async fn record_login_failure(&self, keys: &[String]) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        for key in keys {
            sqlx::query("INSERT INTO login_failures (key, at) VALUES ($1, $2)")
                .bind(key)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        // Old failures are kept a day at most.
        sqlx::query("DELETE FROM login_failures WHERE at < $1")
            .bind(now - 86_400_000)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The session's user, created with its first question (page views create nothing).
    pub async fn ensure_user(&self, token: &str) -> Result<String, StoreError> {
        if let Some(user) = self.find_user(token).await? {
            return Ok(user);
        }
        let user_id = new_id();
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO users (id, created_at) VALUES ($1, $2)")
            .bind(&user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(hash_token(token))
        .bind(&user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Another tab of the same browser won the race: use its user.
            tx.rollback().await?;
            return self
                .find_user(token)
                .await?
                .ok_or_else(|| StoreError::Sqlx(sqlx::Error::RowNotFound));
        }
        tx.commit().await?;
        self.wrote();
        self.wrote();
        Ok(user_id)
    }

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
        sqlx::query(
            "INSERT INTO conversations (id, user_id, title, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(&summary.id)
        .bind(user_id)
        .bind(&summary.title)
        .bind(summary.updated_at)
        .execute(&self.pool)
        .await?;
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
        let rows = sqlx::query(
            "SELECT id, position, role, content, status, error_code, created_at, sources \
             FROM messages WHERE conversation_id = $1 AND position < $2 \
             ORDER BY position DESC LIMIT $3",
        )
        .bind(conversation_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut messages = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<StoredMessage>, _>>()?;
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
        let done = sqlx::query("UPDATE conversations SET title = $1 WHERE id = $2 AND user_id = $3")
            .bind(title)
            .bind(conversation_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
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
        let owned = sqlx::query("SELECT 1 FROM conversations WHERE id = $1 AND user_id = $2")
            .bind(conversation_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !owned {
            return Ok(false);
        }
        sqlx::query("DELETE FROM messages WHERE conversation_id = $1")
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
        let now = now_ms();
        let id = new_id();
        let mut tx = self.begin_write().await?;
        let position = next_position(&mut tx, conversation_id).await?;
        insert_message(&mut tx, &id, conversation_id, position, role, content, status, owner_instance, None, now)
            .await?;
        sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.wrote();
        Ok(StoredMessage {
            id,
            position,
            role,
            content: content.to_string(),
            status,
            error_code: None,
            created_at: now,
            sources: Vec::new(),
        })
    }

    pub async fn finish_message(
        &self,
        message_id: &str,
        content: &str,
        chunk_seq: u64,
        status: MessageStatus,
        error_code: Option<ErrorCode>,
        usage: Option<Usage>,
    ) -> Result<(), StoreError> {
        self.write_answers(&[AnswerWrite::Finish {
            message_id: message_id.into(),
            content: content.into(),
            chunk_seq,
            status,
            error_code,
            usage,
            finished_at: now_ms(),
        }])
        .await
    }

    /// Writes changes to answer rows in one transaction: with a thousand answers
    /// streaming, one commit a second instead of a thousand.
    pub async fn write_answers(&self, writes: &[AnswerWrite]) -> Result<(), StoreError> {
        match writes {
            [] => return Ok(()),
            [one] => {
                one.query().execute(&self.pool).await?;
            }
            many => {
                let mut tx = self.begin_write().await?;
                for write in many {
                    write.query().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        self.writes.fetch_add(writes.len() as u64, Ordering::Relaxed);
        self.answer_rows.fetch_add(writes.len() as u64, Ordering::Relaxed);
        self.answer_commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Everything a question needs before the model is called, in one write
    /// transaction: the conversation (found for this user, or created), its earlier
    /// turns within the budget, the question, and the answer's row (`streaming`).
    /// One transaction instead of four keeps the first token quick when a whole class
    /// asks at once.
    pub async fn begin_answer(&self, new: &NewAnswer<'_>) -> Result<BegunAnswer, BeginError> {
        retry_position_race(|| self.try_begin_answer(new)).await
    }

    /// The student's latest questions in one of their conversations, newest first:
    /// retrieval reads them with the new question. Empty for someone else's.
    pub async fn recent_questions(
        &self,
        user_id: &str,
        conversation_id: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.content FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE c.id = $1 AND c.user_id = $2 AND m.role = 'user' \
             ORDER BY m.position DESC LIMIT $3",
        )
        .bind(conversation_id)
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| row.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    async fn try_begin_answer(&self, new: &NewAnswer<'_>) -> Result<BegunAnswer, BeginError> {
        let NewAnswer {
            user_id,
            conversation_id,
            question,
            budget_chars,
            owner_instance,
            sources_json,
            questions_per_minute,
            max_conversations,
        } = *new;
        let now = now_ms();
        let mut tx = self.begin_write().await.map_err(StoreError::from)?;
        let mut writes = 3;
        if questions_per_minute > 0 {
            self.take_question_quota(&mut tx, user_id, questions_per_minute, now).await?;
            writes += 1;
        }
        let conversation_id = match conversation_id {
            Some(id) => {
                let owned = sqlx::query("SELECT 1 FROM conversations WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::from)?
                    .is_some();
                if !owned {
                    return Err(BeginError::NotFound);
                }
                id.to_string()
            }
            None => {
                let kept: i64 = sqlx::query("SELECT COUNT(*) FROM conversations WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await
                    .and_then(|row| row.try_get(0))
                    .map_err(StoreError::from)?;
                if kept >= i64::from(max_conversations) {
                    return Err(BeginError::TooManyConversations { limit: max_conversations });
                }
                let id = new_id();
                sqlx::query(
                    "INSERT INTO conversations (id, user_id, title, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $4)",
                )
                .bind(&id)
                .bind(user_id)
                .bind(super::title_from_question(question))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                writes += 1;
                id
            }
        };
        let (turns, context_truncated) = context_turns_in(&mut tx, &conversation_id, budget_chars).await?;
        let position = next_position(&mut tx, &conversation_id).await?;
        let question_id = new_id();
        let answer_id = new_id();
        for (id, at, role, content, status, owner, sources) in [
            (&question_id, position, MessageRole::User, question, MessageStatus::Complete, None, None),
            (&answer_id, position + 1, MessageRole::Assistant, "", MessageStatus::Streaming, Some(owner_instance), sources_json),
        ] {
            insert_message(&mut tx, id, &conversation_id, at, role, content, status, owner, sources, now).await?;
        }
        sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&conversation_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        self.writes.fetch_add(writes, Ordering::Relaxed);
        Ok(BegunAnswer {
            conversation_id,
            answer_id,
            turns,
            context_truncated,
        })
    }

    /// The per-user rate limit, a sliding window of one minute kept in the database so
    /// that it holds across reconnects, tabs and instances. Runs inside the question's
    /// write transaction: a refused question stores nothing. On PostgreSQL the user's
    /// row is locked first, so two instances cannot both grant the last question
    /// (SQLite's write transactions are serialised already).
    async fn take_question_quota(
        &self,
        tx: &mut sqlx::AnyConnection,
        user_id: &str,
        per_minute: u32,
        now: i64,
    ) -> Result<(), BeginError> {
        const WINDOW_MS: i64 = 60_000;
        const KEEP_MS: i64 = 3_600_000;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::from)?;
        }
        let rows = sqlx::query(
            "SELECT at FROM question_events WHERE user_id = $1 AND at > $2 ORDER BY at ASC",
        )
        .bind(user_id)
        .bind(now - WINDOW_MS)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        if rows.len() >= per_minute as usize {
            // Asking works again when the oldest question of the window leaves it.
            let oldest: i64 = rows[rows.len() - per_minute as usize].try_get(0).map_err(StoreError::from)?;
            let wait_ms = (oldest + WINDOW_MS - now).max(1);
            return Err(BeginError::RateLimited {
                retry_after: (wait_ms as u64).div_ceil(1000),
            });
        }
        sqlx::query("DELETE FROM question_events WHERE user_id = $1 AND at < $2")
            .bind(user_id)
            .bind(now - KEEP_MS)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        sqlx::query("INSERT INTO question_events (user_id, at) VALUES ($1, $2)")
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// After a crash, rows this instance left `streaming` can never finish: mark them
    /// `interrupted`, keeping their checkpointed text.
    pub async fn recover_interrupted(&self, instance: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE messages SET status = 'interrupted', finished_at = $1, owner_instance = NULL \
             WHERE status = 'streaming' AND owner_instance = $2",
        )
        .bind(now_ms())
        .bind(instance)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done)
    }

    /// One answer as stored (status, text, last chunk's seq), if it is this user's.
    pub async fn message_for_user(
        &self,
        user_id: &str,
        message_id: &str,
    ) -> Result<Option<(MessageStatus, String, u64)>, StoreError> {
        let row = sqlx::query(
            "SELECT m.status, m.content, m.chunk_seq FROM messages m \
             JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.id = $1 AND c.user_id = $2",
        )
        .bind(message_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some((
            MessageStatus::parse(&r.try_get::<String, _>(0)?),
            r.try_get::<String, _>(1)?,
            u64::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
        )))
    }

}

/// An account session lives this long unused; using it slides the expiry.
pub const ACCOUNT_SESSION_MS: i64 = 30 * 24 * 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("username taken")]
    Taken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A change to the row of an answer being streamed.
#[derive(Debug, Clone)]
pub enum AnswerWrite {
    /// The text so far. Never moves it backwards: a late checkpoint cannot overwrite a
    /// newer one or the final text.
    Checkpoint {
        message_id: String,
        content: String,
        chunk_seq: u64,
    },
    /// The final text and how the answer ended.
    Finish {
        message_id: String,
        content: String,
        chunk_seq: u64,
        status: MessageStatus,
        error_code: Option<ErrorCode>,
        usage: Option<Usage>,
        finished_at: i64,
    },
}

impl AnswerWrite {
    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        match self {
            AnswerWrite::Checkpoint {
                message_id,
                content,
                chunk_seq,
            } => sqlx::query(
                "UPDATE messages SET content = $1, chunk_seq = $2 \
                 WHERE id = $3 AND status = 'streaming' AND chunk_seq < $2",
            )
            .bind(content.as_str())
            .bind(*chunk_seq as i64)
            .bind(message_id.as_str()),
            AnswerWrite::Finish {
                message_id,
                content,
                chunk_seq,
                status,
                error_code,
                usage,
                finished_at,
            } => sqlx::query(
                "UPDATE messages SET content = $1, chunk_seq = $2, status = $3, error_code = $4, \
                 finished_at = $5, prompt_tokens = $6, completion_tokens = $7, owner_instance = NULL \
                 WHERE id = $8 AND status = 'streaming'",
            )
            .bind(content.as_str())
            .bind(*chunk_seq as i64)
            .bind(status.as_str())
            .bind(error_code.map(|c| c.as_str()))
            .bind(*finished_at)
            .bind(usage.map(|u| i64::from(u.prompt_tokens)))
            .bind(usage.map(|u| i64::from(u.completion_tokens)))
            .bind(message_id.as_str()),
        }
    }
}

/// A question to store, with what decides whether it may be asked.
#[derive(Debug, Clone, Copy)]
pub struct NewAnswer<'a> {
    pub user_id: &'a str,
    /// `None` starts a new conversation.
    pub conversation_id: Option<&'a str>,
    pub question: &'a str,
    /// Characters of earlier turns to send to the model.
    pub budget_chars: usize,
    pub owner_instance: &'a str,
    /// The answer's sources, as JSON.
    pub sources_json: Option<&'a str>,
    /// 0: no limit.
    pub questions_per_minute: u32,
    pub max_conversations: u32,
}

/// What [`Db::begin_answer`] stored and found.
#[derive(Debug)]
pub struct BegunAnswer {
    pub conversation_id: String,
    pub answer_id: String,
    /// Earlier turns for the model, oldest first.
    pub turns: Vec<(MessageRole, String)>,
    pub context_truncated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    /// No such conversation for this user (someone else's answers the same).
    #[error("conversation not found")]
    NotFound,
    /// The user asked their quota of questions in the last minute; asking works again
    /// in `retry_after` seconds.
    #[error("too many questions")]
    RateLimited { retry_after: u64 },
    /// The user keeps as many conversations as allowed; a new one is refused.
    #[error("too many conversations")]
    TooManyConversations { limit: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An append takes the conversation's next position. Two tabs appending at once can
/// pick the same one; the unique index refuses the second, which simply tries again.
async fn retry_position_race<T, E, Fut>(mut attempt: impl FnMut() -> Fut) -> Result<T, E>
where
    E: PositionRace,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if e.is_position_race() && tries < 5 => tries += 1,
            other => return other,
        }
    }
}

trait PositionRace {
    fn is_position_race(&self) -> bool;
}

impl PositionRace for StoreError {
    fn is_position_race(&self) -> bool {
        matches!(self, StoreError::Sqlx(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

impl PositionRace for BeginError {
    fn is_position_race(&self) -> bool {
        matches!(self, BeginError::Store(e) if e.is_position_race())
    }
}

/// The guest user (no username) a session belongs to, if it is a guest's.
async fn guest_of_session(conn: &mut sqlx::AnyConnection, token: &str) -> Result<Option<String>, StoreError> {
    let row = sqlx::query(
        "SELECT u.id FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND u.username IS NULL",
    )
    .bind(hash_token(token))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
}

async fn next_position(conn: &mut sqlx::AnyConnection, conversation_id: &str) -> Result<i64, StoreError> {
    Ok(sqlx::query("SELECT COALESCE(MAX(position), 0) + 1 FROM messages WHERE conversation_id = $1")
        .bind(conversation_id)
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?)
}

#[allow(clippy::too_many_arguments)]
async fn insert_message(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    conversation_id: &str,
    position: i64,
    role: MessageRole,
    content: &str,
    status: MessageStatus,
    owner_instance: Option<&str>,
    sources: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, position, role, content, status, \
         owner_instance, sources, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(conversation_id)
    .bind(position)
    .bind(role.as_str())
    .bind(content)
    .bind(status.as_str())
    .bind(owner_instance)
    .bind(sources)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The conversation's earlier turns that fit the budget (in characters), oldest first,
/// and whether older ones were left out. Only finished text is sent.
async fn context_turns_in(
    conn: &mut sqlx::AnyConnection,
    conversation_id: &str,
    budget_chars: usize,
) -> Result<(Vec<(MessageRole, String)>, bool), StoreError> {
    const SCAN_LIMIT: i64 = 200;
    let rows = sqlx::query(
        "SELECT role, content FROM messages WHERE conversation_id = $1 \
         AND status <> 'error' AND content <> '' ORDER BY position DESC LIMIT $2",
    )
    .bind(conversation_id)
    .bind(SCAN_LIMIT)
    .fetch_all(&mut *conn)
    .await?;
    let mut used = 0usize;
    let mut turns = Vec::new();
    let mut truncated = false;
    for row in &rows {
        let content: String = row.try_get(1)?;
        let cost = content.chars().count();
        if used + cost > budget_chars {
            truncated = true;
            break;
        }
        used += cost;
        turns.push((MessageRole::parse(&row.try_get::<String, _>(0)?), content));
    }
    if !truncated && rows.len() as i64 == SCAN_LIMIT {
        truncated = true;
    }
    // The model needs a conversation that starts with the student.
    while turns.last().is_some_and(|(role, _)| *role == MessageRole::Assistant) {
        turns.pop();
        truncated = true;
    }
    turns.reverse();
    Ok((turns, truncated))
}

fn sqlite_parent_dir(url: &str) -> Option<std::path::PathBuf> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_path_buf())
}

fn parse_conversation_cursor(cursor: &str) -> Option<(i64, &str)> {
    let (updated_at, id) = cursor.split_once(':')?;
    Some((updated_at.parse().ok()?, id))
}

// Rows are read with `try_get`: a column that does not decode is an error, not a panic.
fn summary_from_row(row: &AnyRow) -> Result<ConversationSummary, sqlx::Error> {
    Ok(ConversationSummary {
        id: row.try_get(0)?,
        title: row.try_get(1)?,
        updated_at: row.try_get(2)?,
    })
}

fn message_from_row(row: &AnyRow) -> Result<StoredMessage, sqlx::Error> {
    Ok(StoredMessage {
        id: row.try_get(0)?,
        position: row.try_get(1)?,
        role: MessageRole::parse(&row.try_get::<String, _>(2)?),
        content: row.try_get(3)?,
        status: MessageStatus::parse(&row.try_get::<String, _>(4)?),
        error_code: row
            .try_get::<Option<String>, _>(5)?
            .and_then(|c| serde_json::from_value(serde_json::Value::String(c)).ok()),
        created_at: row.try_get(6)?,
        // Unreadable JSON (hand-edited rows) shows the answer without its sources.
        sources: row
            .try_get::<Option<String>, _>(7)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_url_parent_dir() {
        assert_eq!(
            sqlite_parent_dir("sqlite://data/x.db?mode=rwc"),
            Some(std::path::PathBuf::from("data"))
        );
        assert_eq!(sqlite_parent_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_parent_dir("sqlite://x.db"), None);
    }

    #[test]
    fn tokens_are_hashed() {
        let h = hash_token("abc");
        assert_eq!(h.len(), 64);
        assert_ne!(h, "abc");
    }
}
