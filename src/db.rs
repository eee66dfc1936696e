//! The database handle every store shares: one pool for SQLite (embedded default) and
//! PostgreSQL (production) through sqlx's `Any` driver, the migrations, and the
//! helpers the stores have in common. The SQL itself lives beside each capability:
//! `account/store.rs` (sessions, accounts, throttling), `history/store.rs`
//! (conversations, messages), `chat/store.rs` (answers, quota, crash recovery) —
//! each an `impl Db` block of its own. See docs/storage.md.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

use crate::error::AppError;

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
    pub(crate) pool: AnyPool,
    /// Where it is: the instances' bus listens on the same PostgreSQL database.
    url: String,
    /// What this process's instances of one SQLite database meet by (their bus, their
    /// socket counts): the file's canonical path, so two spellings of it are one.
    meeting_point: String,
    pub(crate) backend: Backend,
    /// Statements that changed data, for tests and docs/BENCHMARKS.md.
    writes: AtomicU64,
    /// Answer-row writes and the commits that stored them (`write_answers`), for
    /// tests of batching.
    answer_rows: AtomicU64,
    answer_commits: AtomicU64,
    /// SQLite: one write transaction of this process at a time, in arrival order.
    write_queue: std::sync::Arc<tokio::sync::Mutex<()>>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
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
            // sqlx pings a connection each time it leaves the pool: for SQLite a round
            // trip to the connection's thread before every statement, for nothing (a
            // file does not drop the connection). PostgreSQL keeps the check: a
            // restarted server leaves dead connections in the pool.
            .test_before_acquire(backend == Backend::Postgres)
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
        let meeting_point = match sqlite_file(url) {
            // The file exists now: the pool has opened it.
            Some(file) => match tokio::fs::canonicalize(&file).await {
                Ok(path) => path.display().to_string(),
                Err(_) => url.to_string(),
            },
            None => url.to_string(),
        };
        Ok(Db {
            pool,
            url: url.to_string(),
            meeting_point,
            backend,
            writes: AtomicU64::new(0),
            answer_rows: AtomicU64::new(0),
            answer_commits: AtomicU64::new(0),
            write_queue: Default::default(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where this process's instances of the database meet (see the field).
    pub fn meeting_point(&self) -> &str {
        &self.meeting_point
    }

    /// Sends several notifications in one statement (one round trip), in order, on a
    /// pooled connection. Equal (channel, payload) pairs in one statement are
    /// delivered once (PostgreSQL's rule within a transaction).
    pub async fn notify_many(&self, notifications: &[(String, String)]) -> Result<(), StoreError> {
        notify_many(&self.pool, notifications).await
    }

    /// A connection of its own, outside the pool: the bus's publisher sends on one,
    /// so its notifications never wait for a pooled connection behind a class's
    /// questions (docs/storage.md, "The bus").
    pub async fn own_connection(&self) -> Result<sqlx::AnyConnection, StoreError> {
        use sqlx::Connection;
        Ok(sqlx::AnyConnection::connect(&self.url).await?)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// One round trip to the database, for `/readyz`: a pool that cannot hand out a
    /// connection, or a server that does not answer, fails it.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// A transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred one that read first could not upgrade when another
    /// writer got in between, and would fail at once instead of waiting its turn.
    ///
    /// On SQLite the transactions of this process also queue for [`Db::write_turn`]
    /// first, so they do not meet at the file's lock: a writer that finds it taken
    /// sleeps in SQLite's busy handler (1, 2, 5 … 100 ms, and a newcomer can overtake
    /// it), which piled a class's arrivals up into seconds (docs/BENCHMARKS.md).
    pub(crate) async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                let turn = self.write_turn().await;
                let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                Ok(WriteTx { tx, _turn: turn })
            }
            Backend::Postgres => Ok(WriteTx { tx: self.pool.begin().await?, _turn: None }),
        }
    }

    /// This process's turn to write on SQLite, for a single statement that needs no
    /// transaction of its own (see [`Db::begin_write`]); `None` on PostgreSQL.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self.backend {
            Backend::Sqlite => Some(self.write_queue.clone().lock_owned().await),
            Backend::Postgres => None,
        }
    }

    /// (answer-row writes, commits) so far.
    pub fn answer_commits(&self) -> (u64, u64) {
        (
            self.answer_rows.load(Ordering::Relaxed),
            self.answer_commits.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn wrote(&self) {
        self.wrote_n(1);
    }

    pub(crate) fn wrote_n(&self, statements: u64) {
        self.writes.fetch_add(statements, Ordering::Relaxed);
    }

    /// One commit that stored `rows` answer rows.
    pub(crate) fn counted_answer_commit(&self, rows: u64) {
        self.wrote_n(rows);
        self.answer_rows.fetch_add(rows, Ordering::Relaxed);
        self.answer_commits.fetch_add(1, Ordering::Relaxed);
    }
}

/// A write transaction ([`Db::begin_write`]); on SQLite it holds this process's turn
/// to write until it commits or is dropped.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// [`Db::notify_many`] on any connection (the publisher's own, or the pool).
pub async fn notify_many<'c, E>(executor: E, notifications: &[(String, String)]) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    if notifications.is_empty() {
        return Ok(());
    }
    let calls: Vec<String> =
        (0..notifications.len()).map(|i| format!("pg_notify(${}, ${})", 2 * i + 1, 2 * i + 2)).collect();
    let sql = format!("SELECT {}", calls.join(", "));
    let mut query = sqlx::query(&sql);
    for (channel, payload) in notifications {
        query = query.bind(channel.as_str()).bind(payload.as_str());
    }
    query.execute(executor).await?;
    Ok(())
}

/// Per-address budgets: which kind of event a row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressEvent {
    SignUp,
    NewGuest,
    Question,
}

impl AddressEvent {
    /// The window its budget counts over: sign-ups and new guests an hour, questions
    /// a minute.
    pub(crate) fn window_ms(self) -> i64 {
        match self {
            AddressEvent::SignUp | AddressEvent::NewGuest => 3_600_000,
            AddressEvent::Question => 60_000,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            AddressEvent::SignUp => "signup",
            AddressEvent::NewGuest => "guest",
            AddressEvent::Question => "question",
        }
    }
}

/// Takes one event from an address's budget of `limit` per window, inside the
/// caller's write transaction (so a refused request stores nothing else either).
/// `Ok(None)`: taken; `Ok(Some(s))`: the budget is spent, free again in `s` seconds.
pub(crate) async fn take_address_event(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    address: &str,
    event: AddressEvent,
    limit: u32,
    now: i64,
) -> Result<Option<u64>, sqlx::Error> {
    if limit == 0 {
        return Ok(None);
    }
    let mut budget = AddressBudget::read(conn, backend, address, event, limit, now).await?;
    if !budget.has_room() {
        return Ok(Some(budget.retry_after(now)));
    }
    budget.take(now);
    insert_address_events(conn, &[(address, event, now)]).await?;
    Ok(None)
}

/// One address's budget of one kind of event, as read inside a write transaction:
/// several requests (a class's arrivals sharing a transaction) can be granted from
/// it in turn, and the granted events stored in one statement.
pub(crate) struct AddressBudget {
    limit: usize,
    window_ms: i64,
    /// The newest `limit` events, newest first (those granted here included).
    recent: Vec<i64>,
}

impl AddressBudget {
    /// Prunes the address's old events of this kind and reads the rest. On PostgreSQL
    /// the budget is locked first (an advisory lock for the transaction), so parallel
    /// requests cannot all see the last free place; SQLite's write transactions are
    /// serialised already. Lock budgets in one order (kind, then address) everywhere:
    /// two transactions taking two locks each in different orders could deadlock.
    pub(crate) async fn read(
        conn: &mut sqlx::AnyConnection,
        backend: Backend,
        address: &str,
        event: AddressEvent,
        limit: u32,
        now: i64,
    ) -> Result<AddressBudget, sqlx::Error> {
        use sqlx::Row;
        let kind = event.as_str();
        let window_ms = event.window_ms();
        if backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("{kind}:{address}"))
                .execute(&mut *conn)
                .await?;
        }
        // Old events of this address and kind are pruned as they fall out of the window.
        sqlx::query("DELETE FROM address_events WHERE address = $1 AND kind = $2 AND at <= $3")
            .bind(address)
            .bind(kind)
            .bind(now - window_ms)
            .execute(&mut *conn)
            .await?;
        let rows = sqlx::query("SELECT at FROM address_events WHERE address = $1 AND kind = $2 ORDER BY at DESC LIMIT $3")
            .bind(address)
            .bind(kind)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
        let recent = rows.iter().map(|row| row.try_get::<i64, _>(0)).collect::<Result<Vec<_>, _>>()?;
        Ok(AddressBudget { limit: limit as usize, window_ms, recent })
    }

    pub(crate) fn has_room(&self) -> bool {
        self.recent.len() < self.limit
    }

    /// Seconds until the oldest of the window's events falls out of it.
    pub(crate) fn retry_after(&self, now: i64) -> u64 {
        let oldest = self.recent.last().copied().unwrap_or(now);
        let free_in_ms = (oldest + self.window_ms - now).max(1);
        ((free_in_ms + 999) / 1000) as u64
    }

    /// Counts an event granted at `now` (the caller stores it).
    pub(crate) fn take(&mut self, now: i64) {
        self.recent.insert(0, now);
        self.recent.truncate(self.limit);
    }
}

/// Stores granted budget events, (address, kind, at) each, in one statement.
pub(crate) async fn insert_address_events(
    conn: &mut sqlx::AnyConnection,
    events: &[(&str, AddressEvent, i64)],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO address_events (address, kind, at) VALUES {}",
        values_placeholders(events.len(), 3)
    );
    let mut query = sqlx::query(&sql).persistent(events.len() == 1);
    for (address, event, at) in events {
        query = query.bind(*address).bind(event.as_str()).bind(*at);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

impl Db {
    /// Deletes budget events older than the longest window (an hour): an address seen
    /// once would otherwise keep its rows for ever.
    pub async fn prune_address_events(&self, now: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM address_events WHERE at <= $1")
            .bind(now - LONGEST_BUDGET_WINDOW_MS)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

/// The placeholders of a multi-row `VALUES` list, `($1, $2), ($3, $4)` for 2 × 2:
/// several rows in one statement, one round trip.
pub(crate) fn values_placeholders(rows: usize, columns: usize) -> String {
    let rows: Vec<String> = (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=columns).map(|c| format!("${}", row * columns + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    rows.join(", ")
}

/// `($first, …)`: `count` placeholders for an `IN` list.
pub(crate) fn in_list(first: usize, count: usize) -> String {
    let params: Vec<String> = (first..first + count).map(|n| format!("${n}")).collect();
    format!("({})", params.join(", "))
}

/// A day in Unix milliseconds, for every day-sized window and UTC-day count.
pub const DAY_MS: i64 = 86_400_000;

/// The longest window a per-address budget counts over (`AddressEvent::window_ms`).
const LONGEST_BUDGET_WINDOW_MS: i64 = 3_600_000;

/// What a client may be told when the database fails: never the database's text.
impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        AppError::internal("database operation failed", error)
    }
}

/// An append takes the conversation's next position. Two tabs appending at once can
/// pick the same one; the unique index refuses the second, which simply tries again.
pub(crate) async fn retry_position_race<T, E, Fut>(mut attempt: impl FnMut() -> Fut) -> Result<T, E>
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

pub(crate) trait PositionRace {
    fn is_position_race(&self) -> bool;
}

impl PositionRace for StoreError {
    fn is_position_race(&self) -> bool {
        matches!(self, StoreError::Sqlx(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

/// The file an SQLite URL names (`None` for an in-memory database).
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|pair| pair == "mode=memory") {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

fn sqlite_parent_dir(url: &str) -> Option<std::path::PathBuf> {
    sqlite_file(url)?
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The write turn is first come, first served: twenty writers that queued behind
    /// a transaction commit in the order they asked, none in SQLite's busy handler.
    #[tokio::test(flavor = "current_thread")]
    async fn sqlite_writers_take_turns_in_the_order_they_asked() {
        let temp = tempfile::Builder::new().prefix("tutor-write-turn-").tempdir().unwrap();
        let dir = temp.path();
        let db = std::sync::Arc::new(Db::connect(&database_url(None, dir), 20).await.unwrap());
        let first = db.begin_write().await.unwrap();
        let mut writers = Vec::new();
        for i in 0..20i64 {
            let db = db.clone();
            writers.push(tokio::spawn(async move {
                let mut tx = db.begin_write().await.unwrap();
                sqlx::query("INSERT INTO instances (id, seen_at) VALUES ($1, $2)")
                    .bind(format!("writer-{i}"))
                    .bind(i)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }));
            // This writer asks for its turn before the next one is started.
            tokio::task::yield_now().await;
        }
        first.commit().await.unwrap();
        for writer in writers {
            writer.await.unwrap();
        }
        let order: Vec<i64> = sqlx::query_scalar("SELECT seen_at FROM instances WHERE id LIKE 'writer-%' ORDER BY rowid")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        assert_eq!(order, (0..20).collect::<Vec<i64>>());
    }

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
    fn sqlite_url_file() {
        let file = |url| sqlite_file(url).map(|path| path.display().to_string());
        assert_eq!(file("sqlite:///abs/x.db"), Some("/abs/x.db".into()));
        assert_eq!(file("sqlite://data/x.db?mode=rwc"), Some("data/x.db".into()));
        assert_eq!(file("sqlite:data/x.db"), Some("data/x.db".into()));
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("sqlite://x.db?mode=memory&cache=shared"), None);
        assert_eq!(file("postgres://localhost/x"), None);
    }
}
