//! Server assembly: state, routes, start-up and graceful shutdown. `main.rs` and the
//! integration tests both build the app through [`build_app`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRef;
use axum::routing::get;
use axum::{middleware, Router};
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};

use crate::app::{shell, App};
use crate::settings::Settings;
use crate::upstream::fake::{FakeConfig, FakeUpstream};
use crate::upstream::UpstreamClient;

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub settings: Arc<Settings>,
    pub upstream: UpstreamClient,
    /// True when no model endpoint was configured and the built-in demo model answers.
    pub demo_mode: bool,
    /// Flips to `true` when the server shuts down, so open sockets close with 1001
    /// (clients then reconnect) instead of holding the shutdown open.
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    pub db: Arc<crate::history::store::Db>,
    /// Answers being streamed by this instance; they outlive their sockets.
    pub live: Arc<crate::chat::live::LiveAnswers>,
    /// Marks the answers this instance streams, for crash recovery (docs/storage.md).
    pub instance_id: String,
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
    #[error("cannot start the demo model: {0}")]
    Demo(std::io::Error),
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
    let (base_url, demo_mode) = match &settings.upstream.base_url {
        Some(url) => (url.clone(), false),
        None if settings.upstream.api_key.is_some() => {
            (crate::settings::DEFAULT_BASE_URL.to_string(), false)
        }
        None => {
            // No key and no endpoint: answer with the built-in demo model, in-process on a
            // loopback port, so a fresh install streams something real at once.
            let fake = FakeUpstream::new(FakeConfig::default());
            let addr = fake
                .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .map_err(StartError::Demo)?;
            tracing::warn!(
                "no OPENAI_API_KEY and no OPENAI_BASE_URL: answering with the built-in demo model"
            );
            (format!("http://{addr}/v1"), true)
        }
    };
    let upstream = UpstreamClient::new(base_url, settings.upstream.clone())?;
    let url = crate::history::store::database_url(settings.database_url.as_deref(), &settings.data_dir);
    let db = crate::history::store::Db::connect(&url, settings.db_max_connections).await?;
    let instance_id = settings
        .instance_id
        .clone()
        .unwrap_or_else(|| leptos_options.site_addr.to_string());
    let recovered = db.recover_interrupted(&instance_id).await?;
    if recovered > 0 {
        tracing::warn!(recovered, "answers cut by an earlier crash marked interrupted");
    }
    tracing::info!(backend = ?db.backend(), "history database ready");
    Ok(AppState {
        leptos_options,
        settings: Arc::new(settings),
        upstream,
        demo_mode,
        shutdown: Arc::new(tokio::sync::watch::channel(false).0),
        db: Arc::new(db),
        live: Arc::new(crate::chat::live::LiveAnswers::default()),
        instance_id,
    })
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
            move || provide_context(context_state.clone()),
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
    axum::serve(without_nagle(listener), app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            state.shutdown.send_replace(true);
        })
        .await
        .map_err(StartError::Serve)
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
