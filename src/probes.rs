//! What an orchestrator and a scraper ask the server (docs/deploy.md):
//! `/healthz` (the process answers), `/readyz` (it can serve: database reachable,
//! lesson index open, not shutting down) and `/metrics` (Prometheus text).
//!
//! These routes sit outside the session layer (no cookie is minted for a probe) and
//! answer without touching any student's data. `/metrics` says how busy the course is
//! and which errors it meets, which is nobody's business on the internet: it answers
//! only this machine (a loopback peer that came through no proxy) unless
//! `metrics_token` is set, and then anyone presenting it as a bearer token.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};

use crate::state::AppState;

/// How long `/readyz` waits for the database before calling it unreachable: a probe
/// must answer well inside an orchestrator's timeout (often 1–5 s).
const DATABASE_PROBE: Duration = Duration::from_secs(2);

/// The three routes, to merge into the app's router outside its session layer.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// What `/readyz` found, as JSON: each check, so an operator sees which one failed.
#[derive(serde::Serialize)]
struct Readiness {
    ready: bool,
    database: bool,
    shutting_down: bool,
    /// The index opens before the server listens; its size says it holds the course.
    lesson_sections: u64,
}

async fn readyz(State(state): State<AppState>) -> Response {
    let shutting_down = *state.shutdown.borrow();
    let database = match tokio::time::timeout(DATABASE_PROBE, state.db.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: the database does not answer");
            false
        }
        Err(_) => {
            tracing::warn!("readiness: the database took over {DATABASE_PROBE:?}");
            false
        }
    };
    let readiness = Readiness {
        ready: database && !shutting_down,
        database,
        shutting_down,
        lesson_sections: state.lessons.sections(),
    };
    let status = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, no_store(), Json(readiness)).into_response()
}

async fn metrics(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(peer))| peer.ip());
    if !may_scrape(state.settings.metrics_token.as_deref(), peer, &headers) {
        return (
            StatusCode::FORBIDDEN,
            "Metrics are for this machine, or for a scraper with the metrics_token.",
        )
            .into_response();
    }
    let text = state.metrics.render(state.connections.total(), state.live.len());
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE))],
        no_store(),
        text,
    )
        .into_response()
}

fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

/// With a token: the request must carry it as a bearer token, from anywhere. Without:
/// only a loopback peer with no proxy's forwarding headers (a reverse proxy on this
/// machine passing an internet request on is not "this machine").
fn may_scrape(token: Option<&str>, peer: Option<IpAddr>, headers: &HeaderMap) -> bool {
    match token {
        Some(token) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| same_secret(given.trim(), token)),
        None => {
            let forwarded = ["x-forwarded-for", "forwarded", "x-real-ip"].iter().any(|h| headers.contains_key(*h));
            peer.is_some_and(|ip| ip.is_loopback()) && !forwarded
        }
    }
}

/// Compares two secrets in time that does not depend on where they differ: hashed
/// first, so the lengths do not leak either.
fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(expected.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn who_may_scrape() {
        let local = Some(IpAddr::from([127, 0, 0, 1]));
        let remote = Some(IpAddr::from([203, 0, 113, 9]));
        assert!(may_scrape(None, local, &HeaderMap::new()));
        assert!(may_scrape(None, Some("::1".parse().unwrap()), &HeaderMap::new()));
        assert!(!may_scrape(None, remote, &HeaderMap::new()));
        assert!(!may_scrape(None, None, &HeaderMap::new()));
        assert!(!may_scrape(None, local, &headers(&[("x-forwarded-for", "203.0.113.9")])), "through a proxy");
        let bearer = headers(&[("authorization", "Bearer s3cret")]);
        assert!(may_scrape(Some("s3cret"), remote, &bearer));
        assert!(!may_scrape(Some("s3cret"), local, &HeaderMap::new()), "a token, once set, is asked of all");
        assert!(!may_scrape(Some("other"), remote, &bearer));
        assert!(!may_scrape(Some("s3cret"), remote, &headers(&[("authorization", "Basic s3cret")])));
    }
}
