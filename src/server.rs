//! Server assembly: state, routes, start-up and graceful shutdown. `main.rs` and the
//! integration tests both build the app through [`build_app`].

use std::sync::Arc;

use axum::extract::FromRef;
use axum::routing::get;
use axum::{middleware, Router};
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};

use crate::app::{shell, App};
use crate::settings::Settings;
use crate::lessons::index::LessonIndex;
use crate::upstream::UpstreamClient;

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub settings: Arc<Settings>,
    pub upstream: UpstreamClient,
    /// True when no model endpoint and no key were configured: answers are excerpts
    /// from the lessons (lesson mode).
    pub lesson_mode: bool,
    /// The course's lessons, indexed for retrieval; also serves the lesson pages.
    pub lessons: Arc<crate::lessons::index::LessonIndex>,
    /// Flips to `true` when the server shuts down, so open sockets close with 1001
    /// (clients then reconnect) instead of holding the shutdown open.
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    pub db: Arc<crate::history::store::Db>,
    /// Answers being streamed by this instance; they outlive their sockets.
    pub live: Arc<crate::chat::live::LiveAnswers>,
    /// Marks the answers this instance streams, for crash recovery (docs/storage.md).
    pub instance_id: String,
    /// One permit per answer streamed at once (`max_concurrent_answers`).
    pub answer_slots: Arc<tokio::sync::Semaphore>,
    /// Open chat sockets per user (`max_connections_per_user`).
    pub connections: Arc<crate::chat::limits::Connections>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Leptos configuration: {0}")]
    Config(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Lessons(#[from] crate::lessons::index::IndexError),
    #[error("cannot listen on {addr}: {source} (is another server running there? set TUTOR_BIND)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("cannot open the database: {0}")]
    Database(#[from] crate::history::store::StoreError),
}

/// Streaming is many tiny writes; with Nagle's algorithm each one can wait for the
/// peer's delayed ACK (about 40 ms). Every listener of ours turns it off.
pub fn without_nagle(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    fn set_nodelay(stream: &mut tokio::net::TcpStream) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    }
    listener.tap_io(set_nodelay as fn(&mut tokio::net::TcpStream))
}

/// Leptos's own options come from the environment cargo-leptos sets; a binary started
/// by hand gets the same defaults.
pub fn leptos_options() -> Result<LeptosOptions, StartError> {
    let mut options = leptos::config::get_configuration(None)
        .map_err(|e| StartError::Config(e.to_string()))?
        .leptos_options;
    if options.output_name.is_empty() {
        options.output_name = "tutor-chat".into();
    }
    Ok(options)
}

pub async fn build_state(
    settings: Settings,
    leptos_options: LeptosOptions,
) -> Result<AppState, StartError> {
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
        .unwrap_or_else(|| crate::settings::DEFAULT_BASE_URL.to_string());
    let upstream = UpstreamClient::new(base_url, settings.upstream.clone())?;
    let lessons = open_lessons(&settings).await?;
    let url = crate::history::store::database_url(settings.database_url.as_deref(), &settings.data_dir);
    let db = crate::history::store::Db::connect(&url, settings.db_max_connections).await?;
    let instance_id = settings
        .instance_id
        .clone()
        .unwrap_or_else(|| leptos_options.site_addr.to_string());
    let answer_slots = Arc::new(tokio::sync::Semaphore::new(settings.max_concurrent_answers));
    let recovered = db.recover_interrupted(&instance_id).await?;
    if recovered > 0 {
        tracing::warn!(recovered, "answers cut by an earlier crash marked interrupted");
    }
    tracing::info!(backend = ?db.backend(), "history database ready");
    let db = Arc::new(db);
    Ok(AppState {
        leptos_options,
        settings: Arc::new(settings),
        upstream,
        lesson_mode,
        lessons,
        shutdown: Arc::new(tokio::sync::watch::channel(false).0),
        live: crate::chat::live::LiveAnswers::new(db.clone()),
        db,
        instance_id,
        answer_slots,
        connections: Arc::new(crate::chat::limits::Connections::default()),
    })
}

/// Opens the lesson index beside the database and brings it in step with the lessons
/// folder. Files that are not lessons are logged and skipped; a missing folder only
/// means answers come without sources.
async fn open_lessons(settings: &Settings) -> Result<Arc<LessonIndex>, StartError> {
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
        Ok::<_, crate::lessons::index::IndexError>(index)
    })
    .await
    .map_err(|e| StartError::Config(format!("lesson indexing stopped: {e}")))??;
    Ok(Arc::new(opened))
}

pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let shell_options = state.leptos_options.clone();
    let context_state = state.clone();
    let secure_cookies = state.settings.secure_cookies;
    Router::new()
        .route("/ws/chat", get(crate::chat::socket::ws_handler))
        .route("/healthz", get(|| async { "ok" }))
        .leptos_routes_with_context(
            &state,
            routes,
            move || {
                provide_context(context_state.clone());
                provide_context(crate::page::LessonMode(context_state.lesson_mode));
            },
            move || shell(shell_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(middleware::from_fn_with_state(
            secure_cookies,
            crate::auth::session_layer,
        ))
        .with_state(state)
}

/// Builds the whole app: what `main` serves and what `spawn_app` tests.
pub async fn build_app(
    settings: Settings,
    leptos_options: LeptosOptions,
) -> Result<(Router, AppState), StartError> {
    let state = build_state(settings, leptos_options).await?;
    Ok((router(state.clone()), state))
}

pub async fn run(settings: Settings) -> Result<(), StartError> {
    let mut options = leptos_options()?;
    let addr = settings
        .bind
        .clone()
        .unwrap_or_else(|| options.site_addr.to_string());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(StartError::Serve)?;
    options.site_addr = local;
    let (app, state) = build_app(settings, options).await?;
    tracing::info!("Tutor Chat listening on http://{local}");
    let grace = state.settings.shutdown_grace;
    let signalled = state.clone();
    // Peer addresses reach handlers (sign-in throttling per address).
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(without_nagle(listener), app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Sockets with no answer to finish close now (1001: clients reconnect
            // elsewhere); the others close when their answer ends.
            signalled.shutdown.send_replace(true);
        })
        .await
        .map_err(StartError::Serve)?;
    finish_answers(&state, grace).await;
    Ok(())
}

/// Shutdown: running answers get `grace` to finish; the rest end now, stored as
/// `interrupted` with their text so far. Then the sockets that followed them close.
pub async fn finish_answers(state: &AppState, grace: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    let running = state.live.len();
    if running > 0 {
        tracing::info!(running, grace_ms = grace.as_millis() as u64, "letting running answers finish");
    }
    if !state.live.wait_idle(deadline).await {
        tracing::warn!(cut = state.live.len(), "grace period over: storing the rest as interrupted");
        state.live.interrupt_all();
        let stored_by = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        state.live.wait_idle(stored_by).await;
    }
    // Their followers send the last frame and close; give them a moment.
    let closed_by = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while state.connections.total() > 0 && tokio::time::Instant::now() < closed_by {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tracing::info!("stopped");
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
