//! Identity. Every browser gets a session: a random 256-bit token in an HttpOnly,
//! SameSite=Lax cookie, set on the first page load and read on the WebSocket upgrade.
//! It belongs to a guest until the student signs up or in (`crate::account`), which
//! replaces it. No user id ever appears in a URL.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::cookies::cookie_value;
use crate::error::AppError;
use crate::net::behind_https;
use crate::protocol::ErrorCode;

pub const SESSION_COOKIE: &str = "tutor_session";
const TOKEN_BYTES: usize = 32;
/// The browser keeps the cookie a year; the server decides how long the session it
/// names is good for (`account::store::ACCOUNT_SESSION_MS` for accounts).
const COOKIE_MAX_AGE_S: u64 = 365 * 24 * 3_600;

/// The guest session a request belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSession(pub String);

impl GuestSession {
    /// A short, non-secret label for logs: never log the token itself.
    pub fn log_label(&self) -> &str {
        &self.0[..8]
    }
}

pub fn new_token() -> Result<String, getrandom::Error> {
    crate::digest::random_hex::<TOKEN_BYTES>()
}

pub fn is_well_formed(token: &str) -> bool {
    token.len() == TOKEN_BYTES * 2 && token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The session named by the request's cookie, if it is well formed.
pub fn session_from_headers(headers: &HeaderMap) -> Option<GuestSession> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|cookies| cookie_value(cookies, SESSION_COOKIE))
        .filter(|token| is_well_formed(token))
        .map(|token| GuestSession(token.to_string()))
}

/// A browser always sends `Origin` on a WebSocket upgrade and on a cross-site POST; a
/// page on another site must not ride on the student's cookie. Requests without
/// `Origin` are not from a browser page on another site (browsers add it to every
/// cross-origin POST and upgrade) and carry no victim's cookie, so they pass.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// The session of the request a server function is serving: the one the middleware
/// resolved (or just minted) for it.
pub fn current_session() -> Option<GuestSession> {
    let parts = leptos::prelude::use_context::<axum::http::request::Parts>()?;
    parts
        .extensions
        .get::<GuestSession>()
        .cloned()
        .or_else(|| session_from_headers(&parts.headers))
}

/// Server functions refuse requests from other origins (CSRF).
pub fn check_same_origin() -> Result<(), AppError> {
    let Some(parts) = leptos::prelude::use_context::<axum::http::request::Parts>() else {
        return Ok(()); // called during server rendering, not over HTTP
    };
    let allowed = leptos::prelude::use_context::<crate::state::AppState>()
        .map(|s| s.settings.allowed_origins.clone())
        .unwrap_or_default();
    if origin_allowed(&parts.headers, &allowed) {
        Ok(())
    } else {
        tracing::warn!(origin = ?parts.headers.get(header::ORIGIN), "server function refused: foreign origin");
        Err(AppError::code(ErrorCode::ForeignOrigin))
    }
}

/// The request's session, for a server function that needs one.
pub fn require_session() -> Result<GuestSession, AppError> {
    current_session().ok_or_else(|| AppError::code(ErrorCode::NoSession))
}

pub fn session_cookie(token: &str, secure: bool) -> String {
    let mut cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={COOKIE_MAX_AGE_S}"
    );
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// Gives every request a session: the cookie's, or a new one that the response sets.
pub async fn session_layer(
    State(secure_cookies): State<bool>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(session) = session_from_headers(request.headers()) {
        request.extensions_mut().insert(session);
        return next.run(request).await;
    }
    let token = match new_token() {
        Ok(token) => token,
        Err(e) => {
            // Without randomness we cannot mint a safe token; serve the page without one.
            tracing::error!(error = %e, "cannot generate a session token");
            return next.run(request).await;
        }
    };
    let behind_https = behind_https(request.headers());
    request.extensions_mut().insert(GuestSession(token.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&session_cookie(&token, secure_cookies || behind_https)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_well_formed() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert!(is_well_formed(&a));
        assert_eq!(a.len() * 4, 256);
    }

    #[test]
    fn malformed_cookies_are_not_sessions() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("tutor_session=../../etc"));
        assert_eq!(session_from_headers(&headers), None);
        let token = new_token().unwrap();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("lang=ru; tutor_session={token}")).unwrap(),
        );
        assert_eq!(session_from_headers(&headers), Some(GuestSession(token)));
    }

    #[test]
    fn origin_rules() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:3000".parse().unwrap());
        assert!(origin_allowed(&h, &[]), "no Origin: not a browser");
        h.insert(header::ORIGIN, "http://127.0.0.1:3000".parse().unwrap());
        assert!(origin_allowed(&h, &[]));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!origin_allowed(&h, &[]));
        assert!(origin_allowed(&h, &["http://evil.example".to_string()]));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!origin_allowed(&h, &[]));
        h.insert(header::ORIGIN, "http://127.0.0.1:3000.evil.example".parse().unwrap());
        assert!(!origin_allowed(&h, &[]));
    }

    #[test]
    fn cookie_flags() {
        let c = session_cookie("abc", false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && !c.contains("Secure"));
        assert!(session_cookie("abc", true).ends_with("; Secure"));
    }
}
