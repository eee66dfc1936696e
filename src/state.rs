//! The server's shared state: what every request handler, server function and socket
//! reaches for. It sits below everything that uses it — capabilities take it (or a
//! piece of it, through `FromRef`) and never import the router that assembles it.
//! Every field is a cheap handle, so a clone is a few reference counts.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use tokio::sync::{watch, Semaphore};

use crate::account::hashing::PasswordHashing;
use crate::account::store::StaleGone;
use crate::chat::bus::Bus;
use crate::chat::limits::{Connections, SessionEnd};
use crate::chat::live::LiveAnswers;
use crate::db::{database_url, Db, StoreError};
use crate::digest::TokenKey;
use crate::error::AppError;
use crate::faq::matcher::FaqIndex;
use crate::lessons::index::{IndexError, LessonIndex};
use crate::metrics::Metrics;
use crate::protocol::ErrorCode;
use crate::settings::{Settings, DEFAULT_BASE_URL};
use crate::throttle::Buckets;
use crate::upstream::UpstreamClient;

/// Cloned into every request and every open socket (whose memory it is part of), so
/// what is larger than a pointer sits behind an `Arc`.
#[derive(Clone, FromRef)]
pub struct AppState {
    #[from_ref(skip)]
    pub leptos_options: Arc<LeptosOptions>,
    pub settings: Arc<Settings>,
    /// The client holds its settings (the system prompt among them) by value.
    pub upstream: Arc<UpstreamClient>,
    /// True when no model endpoint and no key were configured: answers are excerpts
    /// from the lessons (lesson mode).
    pub lesson_mode: bool,
    /// The course's lessons, indexed for retrieval; also serves the lesson pages.
    pub lessons: Arc<LessonIndex>,
    /// The course FAQ's endorsed questions, for matching new ones; reloaded when the
    /// database's FAQ version moves (docs/faq.md).
    pub faq: Arc<FaqIndex>,
    /// Flips to `true` when the server shuts down, so open sockets close with 1001
    /// (clients then reconnect) instead of holding the shutdown open.
    pub shutdown: Arc<watch::Sender<bool>>,
    pub db: Arc<Db>,
    /// New students' first questions waiting to share a write transaction.
    pub arrivals: Arc<crate::chat::arrivals::Arrivals>,
    /// Answers being streamed by this instance; they outlive their sockets.
    pub live: Arc<LiveAnswers>,
    /// Frames for a student's open sockets that no answer carries (a teacher's reply).
    pub notices: Arc<crate::chat::notices::Notices>,
    /// Between instances: answers followed elsewhere, a student's events, takeovers.
    pub bus: Arc<Bus>,
    /// Marks the answers this instance streams, for crash recovery (docs/storage.md).
    pub instance_id: Arc<str>,
    /// One permit per answer streamed at once (`max_concurrent_answers`).
    pub answer_slots: Arc<Semaphore>,
    /// Open chat sockets per session (`max_connections_per_user`), keyed by the
    /// token's hash: a sign-out on another instance names the session by it.
    pub connections: Arc<Connections>,
    /// Answers streaming per client address (`answers_at_once_per_address`).
    #[from_ref(skip)]
    pub answers_per_address: Arc<Connections>,
    /// Open chat sockets per client address (`connections_per_address`): a session
    /// is free to make, so the per-session cap alone does not bound one address.
    #[from_ref(skip)]
    pub sockets_per_address: Arc<Connections>,
    /// Signs the session tokens this deployment issues (docs/security.md).
    pub session_key: Arc<TokenKey>,
    /// argon2id, one hash per core at once (`password_hash_queue` more may wait).
    pub password_hashing: Arc<PasswordHashing>,
    /// Server-function calls per client address (`calls_per_second_per_address`).
    pub call_buckets: Arc<Buckets>,
    /// This instance's `/metrics` (docs/deploy.md).
    pub metrics: Arc<Metrics>,
}

/// What leptos_axum's handlers extract.
impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        LeptosOptions::clone(&state.leptos_options)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Lessons(#[from] IndexError),
    #[error("lesson indexing stopped: {0}")]
    Indexing(String),
    #[error("cannot open the database: {0}")]
    Database(#[from] StoreError),
    #[error("session secret {path}: {source}")]
    SessionSecret { path: String, source: std::io::Error },
}

impl AppState {
    /// Opens everything the server holds: the model client, the lesson index (brought
    /// in step with the lessons folder), the database (migrated), the instances' bus.
    /// Answers an earlier crash cut off are taken over by `chat::takeover`'s sweeper,
    /// which the server starts.
    pub async fn build(settings: Settings, leptos_options: LeptosOptions) -> Result<AppState, StateError> {
        // No key and no endpoint: a fresh install answers from the lessons themselves.
        let lesson_mode = settings.upstream.base_url.is_none() && settings.upstream.api_key.is_none();
        if lesson_mode {
            tracing::warn!(
                "no OPENAI_API_KEY and no OPENAI_BASE_URL: lesson mode, answers are excerpts from the lessons"
            );
        }
        let base_url = settings
            .upstream
            .base_url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        let upstream = UpstreamClient::new(base_url, settings.upstream.clone())?;
        let session_key = Arc::new(session_key(&settings)?);
        let lessons = open_lessons(&settings).await?;
        let url = database_url(settings.database_url.as_deref(), &settings.data_dir);
        let db = Db::connect(&url, settings.db_max_connections).await?;
        let instance_id = settings
            .instance_id
            .clone()
            .unwrap_or_else(|| leptos_options.site_addr.to_string());
        let answer_slots = Arc::new(Semaphore::new(settings.max_concurrent_answers));
        tracing::info!(backend = ?db.backend(), "history database ready");
        let faq = Arc::new(FaqIndex::new());
        if let Err(error) = faq.refresh(&db).await {
            tracing::warn!(%error, "course FAQ not loaded; tried again with the next question");
        }
        // Sockets counted for this instance before it restarted are gone; it is alive.
        db.forget_sockets_of(&instance_id).await?;
        db.instance_alive(&instance_id, crate::db::now_ms()).await?;
        let db = Arc::new(db);
        let instance_id: Arc<str> = instance_id.into();
        let notices = Arc::new(crate::chat::notices::Notices::default());
        let metrics = Arc::new(Metrics::new());
        let connections = Arc::new(Connections::default());
        let bus = crate::chat::bus::Bus::start(db.clone(), &instance_id, notices.clone(), connections.clone(), metrics.clone());
        let live = LiveAnswers::new(db.clone(), bus.clone(), instance_id.clone(), settings.answer_lease, metrics.clone());
        let settings_queue = settings.password_hash_queue;
        let calls_per_second = settings.calls_per_second_per_address;
        spawn_cleanup(&db, &bus, settings.guest_idle_days);
        Ok(AppState {
            leptos_options: Arc::new(leptos_options),
            settings: Arc::new(settings),
            upstream: Arc::new(upstream),
            lesson_mode,
            lessons,
            faq,
            shutdown: Arc::new(watch::channel(false).0),
            live,
            metrics,
            notices,
            bus,
            db,
            arrivals: Default::default(),
            instance_id,
            answer_slots,
            connections,
            answers_per_address: Arc::new(Connections::default()),
            sockets_per_address: Arc::new(Connections::default()),
            session_key,
            password_hashing: Arc::new(PasswordHashing::new(settings_queue)),
            call_buckets: Arc::new(Buckets::new(calls_per_second.saturating_mul(4), calls_per_second)),
        })
    }
}

/// The state, for a server function: the router provides it to every request.
pub fn app_state() -> Result<AppState, AppError> {
    leptos::prelude::use_context::<AppState>()
        .ok_or_else(|| AppError::new(ErrorCode::Internal, "server state missing"))
}

/// The key session tokens are signed with: the `session_secret` setting, else a random
/// secret kept in the data directory (created on first start, readable by us only).
fn session_key(settings: &Settings) -> Result<TokenKey, StateError> {
    if let Some(secret) = &settings.session_secret {
        return Ok(TokenKey::from_secret(secret.as_bytes()));
    }
    let path = settings.data_dir.join("session-secret");
    let failed = |source| StateError::SessionSecret {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => Ok(TokenKey::from_secret(secret.trim().as_bytes())),
        // Another instance may have created it a moment ago and still be writing it.
        Ok(_) if recent(&path) => {
            std::thread::sleep(std::time::Duration::from_millis(200));
            match std::fs::read_to_string(&path) {
                Ok(secret) if !secret.trim().is_empty() => Ok(TokenKey::from_secret(secret.trim().as_bytes())),
                _ => Err(failed(std::io::Error::other("the file is empty"))),
            }
        }
        Ok(_) => Err(failed(std::io::Error::other(
            "the file is empty: delete it (every session then starts over) or set session_secret",
        ))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&settings.data_dir).map_err(failed)?;
            let secret = crate::digest::random_hex::<32>()
                .map_err(|e| failed(std::io::Error::other(e.to_string())))?;
            match write_private(&path, &secret) {
                Ok(()) => Ok(TokenKey::from_secret(secret.as_bytes())),
                // Another instance on the same data directory wrote it first: use theirs.
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => session_key(settings),
                Err(error) => Err(failed(error)),
            }
        }
        Err(source) => Err(failed(source)),
    }
}

/// Modified in the last few seconds.
fn recent(path: &std::path::Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|at| at.elapsed().ok())
        .is_some_and(|age| age < std::time::Duration::from_secs(5))
}

/// Writes a file only its owner can read (on Unix).
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// Once an hour (and at start): expired sessions go, and guests idle for
/// `guest_idle_days` go with their conversations. The task holds the state's parts
/// weakly: a test's app dropped takes its cleanup with it.
fn spawn_cleanup(db: &Arc<Db>, bus: &Arc<Bus>, guest_idle_days: u32) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(3_600);
    let (db, bus) = (Arc::downgrade(db), Arc::downgrade(bus));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            let (Some(db), Some(bus)) = (db.upgrade(), bus.upgrade()) else {
                return;
            };
            clean_up_stale(&db, &bus, guest_idle_days).await;
        }
    });
}

/// One pass of the cleanup. The sockets still open for a deleted session, on this
/// instance and the others, are told `session_ended` and closed, as after a sign-out:
/// a tab left open for the idle days, or a signed-in tab whose session expired, would
/// otherwise show a conversation that is gone or no longer theirs.
async fn clean_up_stale(db: &Db, bus: &Bus, guest_idle_days: u32) {
    if let Err(error) = db.prune_address_events(crate::db::now_ms()).await {
        tracing::warn!(%error, "address budget cleanup failed; tried again in an hour");
    }
    let mut gone = StaleGone::default();
    let deleted = db.delete_stale_sessions(crate::db::now_ms(), guest_idle_days, &mut gone).await;
    // Also after a failure: the batches committed before it deleted these sessions.
    for key in &gone.ended {
        bus.end_session(key, SessionEnd::SignedOut);
    }
    if gone.sessions + gone.guests > 0 {
        tracing::info!(sessions = gone.sessions, guests = gone.guests, "stale sessions deleted");
    }
    if let Err(error) = deleted {
        tracing::warn!(%error, "session cleanup failed; tried again in an hour");
    }
}

impl AppState {
    /// Runs the hourly cleanup now (tests; an operator's tool could too).
    pub async fn clean_up_stale(&self) {
        clean_up_stale(&self.db, &self.bus, self.settings.guest_idle_days).await;
    }
}

/// Opens the lesson index beside the database and brings it in step with the lessons
/// folder. Files that are not lessons are logged and skipped; a missing folder only
/// means answers come without sources.
async fn open_lessons(settings: &Settings) -> Result<Arc<LessonIndex>, StateError> {
    let index_dir = settings.data_dir.join("lesson-index");
    let lessons_dir = settings.lessons_dir.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let index = LessonIndex::open(&index_dir)?;
        match index.sync(&lessons_dir, &mut |_| {}) {
            Ok(report) => tracing::info!(
                lessons = report.indexed.len() + report.unchanged,
                reindexed = report.indexed.len(),
                removed = report.removed.len(),
                skipped = report.skipped.len(),
                sections = index.sections(),
                "lesson index ready"
            ),
            Err(error) => tracing::warn!(%error, "lessons not indexed; answers will have no sources"),
        }
        Ok::<_, IndexError>(index)
    })
    .await
    .map_err(|e| StateError::Indexing(e.to_string()))??;
    Ok(Arc::new(opened))
}
