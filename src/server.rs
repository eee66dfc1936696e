//! The top floor: router assembly, start-up and graceful shutdown. `main.rs` and the
//! integration tests both build the app through [`build_app`]. Nothing imports this
//! module but them.

use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::Uri;
use axum::routing::get;
use axum::{middleware, Extension, Router};
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::time::Instant;

use crate::app::{shell, App};
use crate::auth::GuestSession;
use crate::net::{serve, shutdown_signal, ServeLimits};
use crate::settings::Settings;
use crate::state::{AppState, StateError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Leptos configuration: {0}")]
    Config(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot listen on {addr}: {source} (is another server running there? set TUTOR_BIND)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
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
    // cargo-leptos tells the server about hashed file names through the environment
    // only when it runs it; a binary started on its own (an operator, the browser
    // tests) finds the hash file the build wrote beside it.
    if std::env::var_os("LEPTOS_HASH_FILES").is_none() {
        options.hash_files = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(options.hash_file.as_ref())))
            .is_some_and(|file| file.is_file());
    }
    Ok(options)
}

pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let shell_options = LeptosOptions::clone(&state.leptos_options);
    let context_state = state.clone();
    let not_found = leptos_axum::file_and_error_handler::<AppState, _>(shell);
    let not_found_other_methods = not_found.clone();
    // A teacher's download; anyone else gets what a missing address gets.
    let export = move |uri: Uri, State(state): State<AppState>, session: Option<Extension<GuestSession>>, request: Request| {
        let not_found = not_found.clone();
        async move {
            let session = session.map(|Extension(session)| session);
            let headers = request.headers().clone();
            match crate::teacher::export::export_csv(&state, session.as_ref(), uri.query(), &headers).await {
                Some(response) => response,
                None => not_found(uri, State(state), request).await,
            }
        }
    };
    // A conversation's Markdown for its owner; anyone else gets what a missing one gets.
    let not_found_md = leptos_axum::file_and_error_handler::<AppState, _>(shell);
    let not_found_md_other_methods = not_found_md.clone();
    let export_md = move |uri: Uri,
                          Path(id): Path<String>,
                          State(state): State<AppState>,
                          session: Option<Extension<GuestSession>>,
                          request: Request| {
        let not_found = not_found_md.clone();
        async move {
            let session = session.map(|Extension(session)| session);
            let headers = request.headers().clone();
            match crate::history::export::export_markdown(&state, session.as_ref(), &id, &headers).await {
                Some(response) => response,
                None => not_found(uri, State(state), request).await,
            }
        }
    };
    Router::new()
        .route("/teach/export.csv", get(export).fallback(not_found_other_methods))
        .route("/c/{id}/export.md", get(export_md).fallback(not_found_md_other_methods))
        .route("/ws/chat", get(crate::chat::socket::ws_handler))
        .route("/ws/chat/{client}", get(crate::chat::socket::ws_handler))
        .leptos_routes_with_context(
            &state,
            routes,
            move || {
                provide_context(context_state.clone());
                provide_context(crate::page::LessonMode(context_state.lesson_mode));
                provide_context(crate::page::TeachersReadAll(
                    context_state.settings.teachers_read_all_conversations,
                ));
            },
            move || shell(shell_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(middleware::map_response(crate::static_files::html_no_cache))
        .layer(middleware::from_fn(crate::auth::guard_call_bodies))
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth::throttle_calls))
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth::session_layer))
        // Merged after the session layer, so that it does not wrap them: probes and
        // static files mint no cookie.
        .merge(crate::probes::router())
        .merge(crate::static_files::router(&state.leptos_options))
        .layer(middleware::map_response(crate::net::security_headers))
        .with_state(state)
}

/// Builds the whole app: what `main` serves and what `spawn_app` tests.
pub async fn build_app(
    settings: Settings,
    leptos_options: LeptosOptions,
) -> Result<(Router, AppState), StartError> {
    let state = AppState::build(settings, leptos_options).await?;
    crate::chat::takeover::spawn_sweeper(state.clone());
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
    if let Some(problem) = crate::static_files::linked_wasm_problem(&options) {
        tracing::error!("{problem}");
    }
    let (app, state) = build_app(settings, options).await?;
    tracing::info!("Tutor Chat listening on http://{local}");
    let grace = state.settings.shutdown_grace;
    let signalled = state.clone();
    let shutdown = async move {
        shutdown_signal().await;
        // Sockets with no answer to finish close now (1001: clients reconnect
        // elsewhere); the others close when their answer ends.
        signalled.shutdown.send_replace(true);
    };
    serve(listener, app, serve_limits(&state.settings), shutdown)
        .await
        .map_err(StartError::Serve)?;
    finish_answers(&state, grace).await;
    Ok(())
}

/// The accept loop's limits, from the settings.
pub fn serve_limits(settings: &Settings) -> ServeLimits {
    ServeLimits {
        header_read_timeout: settings.header_read_timeout,
        connections_per_address: settings.connections_per_address,
        trusted_proxies: settings.trusted_proxies.clone(),
    }
}

/// Shutdown: running answers get `grace` to finish; the rest end now, stored as
/// `interrupted` with their text so far. Then the sockets that followed them close.
pub async fn finish_answers(state: &AppState, grace: Duration) {
    let running = state.live.len();
    if running > 0 {
        tracing::info!(running, grace_ms = grace.as_millis() as u64, "letting running answers finish");
    }
    if !state.live.wait_idle(Instant::now() + grace).await {
        tracing::warn!(cut = state.live.len(), "grace period over: storing the rest as interrupted");
        state.live.interrupt_all();
        state.live.wait_idle(Instant::now() + Duration::from_secs(10)).await;
    }
    // Their followers send the last frame and close; give them a moment.
    state.connections.wait_closed(Instant::now() + Duration::from_secs(2)).await;
    tracing::info!("stopped");
}
