//! Identity. Every browser gets a session: a signed random token (`digest::TokenKey`)
//! in an HttpOnly, SameSite=Lax cookie, set on the first request and read on the
//! WebSocket upgrade. Only tokens this deployment signed name a session: a forged or
//! foreign one is treated as no token, and the request gets a fresh guest session.
//! It belongs to a guest until the student signs up or in (`crate::account`), which
//! replaces it. No user id ever appears in a URL.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::cookies::cookie_values;
use crate::db::{Db, StoreError};
use crate::error::AppError;
use crate::i18n::Lang;
use crate::net::behind_https;
use crate::protocol::ErrorCode;
use crate::render::escape;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "tutor_session";
/// Over https the cookie carries the `__Host-` prefix: a browser accepts such a cookie
/// only from this very host, Secure and for the whole site, so a neighbouring
/// subdomain cannot plant a session of its choosing.
pub const SECURE_SESSION_COOKIE: &str = "__Host-tutor_session";
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

/// What a request's cookies say about its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieSession {
    Absent,
    One(String),
    /// Two session cookies: someone planted one beside ours. Refused, never guessed.
    Several,
}

/// The session cookie of a request: `__Host-tutor_session` when the request is
/// secure, `tutor_session` otherwise (the other name is ignored).
pub fn cookie_session(headers: &HeaderMap, secure: bool) -> CookieSession {
    let name = if secure { SECURE_SESSION_COOKIE } else { SESSION_COOKIE };
    let mut values = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|cookies| cookie_values(cookies, name));
    match (values.next(), values.next()) {
        (None, _) => CookieSession::Absent,
        (Some(token), None) => CookieSession::One(token.to_string()),
        (Some(_), Some(_)) => CookieSession::Several,
    }
}

/// Whether cookies for this request are Secure: the setting, or a proxy that says https.
pub fn is_secure(headers: &HeaderMap, secure_cookies: bool) -> bool {
    secure_cookies || behind_https(headers)
}

/// A browser always sends `Origin` on a WebSocket upgrade and on a cross-site POST; a
/// page on another site must not ride on the student's cookie. Requests without
/// `Origin` are not from a browser page on another site (browsers add it to every
/// cross-origin POST and upgrade) and carry no victim's cookie, so they pass.
///
/// When the request came over https (the `secure_cookies` setting, or a proxy saying
/// so), the page's own origin must be `https://` too: a plain-http page on the same
/// host name is another origin.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String], secure_cookies: bool) -> bool {
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
    let authority = if is_secure(headers, secure_cookies) {
        origin.strip_prefix("https://")
    } else {
        origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"))
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// True when a server function was posted by a plain HTML form (no JavaScript): the
/// browser wants a page back, so the function redirects to one.
pub fn from_plain_form() -> bool {
    leptos::prelude::use_context::<axum::http::request::Parts>().is_some_and(|parts| {
        parts
            .headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
    })
}

/// The session of the request a server function is serving: the one the middleware
/// verified (or just minted) for it.
pub fn current_session() -> Option<GuestSession> {
    let parts = leptos::prelude::use_context::<axum::http::request::Parts>()?;
    parts.extensions.get::<GuestSession>().cloned()
}

/// The user behind a request's session, once looked up (see [`session_user`]).
#[derive(Clone, Default)]
struct SessionUserCell(std::sync::Arc<tokio::sync::OnceCell<Option<String>>>);

/// The user of the request's session (`None`: it owns nothing yet). Looked up once per
/// request: a page's server render calls several server functions (the sidebar, the
/// conversation, who is signed in), and each needs it.
pub async fn session_user(db: &Db) -> Result<Option<String>, StoreError> {
    let Some(session) = current_session() else { return Ok(None) };
    let cell = leptos::prelude::use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<SessionUserCell>().cloned());
    match cell {
        Some(cell) => cell.0.get_or_try_init(|| db.find_user(&session.0)).await.cloned(),
        None => db.find_user(&session.0).await,
    }
}

/// Server functions refuse requests from other origins (CSRF).
pub fn check_same_origin() -> Result<(), AppError> {
    let Some(parts) = leptos::prelude::use_context::<axum::http::request::Parts>() else {
        return Ok(()); // called during server rendering, not over HTTP
    };
    let (allowed, secure) = leptos::prelude::use_context::<crate::state::AppState>()
        .map(|s| (s.settings.allowed_origins.clone(), s.settings.secure_cookies))
        .unwrap_or_default();
    if origin_allowed(&parts.headers, &allowed, secure) {
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
    if secure {
        format!("{SECURE_SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={COOKIE_MAX_AGE_S}; Secure")
    } else {
        format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={COOKIE_MAX_AGE_S}")
    }
}

/// Gives every request a session: the cookie's, if this deployment signed it, else a
/// new guest session that the response sets. Two session cookies are refused.
pub async fn session_layer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let secure = is_secure(request.headers(), state.settings.secure_cookies);
    match cookie_session(request.headers(), secure) {
        CookieSession::Several => {
            tracing::warn!("request refused: two session cookies");
            return (
                StatusCode::BAD_REQUEST,
                "Two session cookies were sent: clear this site's cookies and reload.",
            )
                .into_response();
        }
        CookieSession::One(token) if state.session_key.verify(&token) => {
            request.extensions_mut().insert(GuestSession(token));
            request.extensions_mut().insert(SessionUserCell::default());
            return next.run(request).await;
        }
        CookieSession::One(_) => tracing::debug!("unsigned session token: a fresh guest session"),
        CookieSession::Absent => {}
    }
    let token = match state.session_key.mint() {
        Ok(token) => token,
        Err(e) => {
            // Without randomness we cannot mint a safe token; serve the page without one.
            tracing::error!(error = %e, "cannot generate a session token");
            return next.run(request).await;
        }
    };
    request.extensions_mut().insert(GuestSession(token.clone()));
    request.extensions_mut().insert(SessionUserCell::default());
    let mut response = next.run(request).await;
    // A sign-in or sign-up in this very request set the session it made: that one
    // stands (a browser keeps the last Set-Cookie of a name).
    let name = if secure { SECURE_SESSION_COOKIE } else { SESSION_COOKIE };
    let already_set = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|c| c.starts_with(name) && c[name.len()..].starts_with('=')));
    if !already_set {
        if let Ok(value) = HeaderValue::from_str(&session_cookie(&token, secure)) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Server functions (`/api/…`) called faster than a person could from one client
/// address wait their turn before any work is done; a call that would wait more than
/// a few seconds is refused with 429 and `Retry-After` instead of held.
pub async fn throttle_calls(State(state): State<AppState>, request: Request, next: Next) -> Response {
    const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
    if state.settings.calls_per_second_per_address == 0 || !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let address =
        crate::net::request_client_key(request.extensions(), request.headers(), &state.settings.trusted_proxies);
    let Some(wait) = state.call_buckets.take_within(&address, tokio::time::Instant::now(), LONGEST_WAIT) else {
        // As a server function's own error, so the page shows "rate limited", not
        // "internal".
        let error = AppError::new(ErrorCode::RateLimited, "Too many requests; slow down.").retry_after(5);
        let mut refused = call_refused(request.headers(), StatusCode::TOO_MANY_REQUESTS, error);
        refused.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return refused;
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    next.run(request).await
}

/// The largest server-function request body: the longest form (an FAQ entry, 4,000 +
/// 20,000 characters, percent-encoded Cyrillic) fits four times over. server_fn reads
/// a body whole and sets no limit of its own.
pub const MAX_CALL_BODY_BYTES: usize = 512 * 1024;

/// Server functions' bodies, read here so that they are bounded, and refused when
/// they carry a U+0000: PostgreSQL cannot store one, so a title or a comment holding
/// it would fail as `internal` at every try instead of saying what is wrong.
pub async fn guard_call_bodies(request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_CALL_BODY_BYTES).await else {
        let message = format!("a request body over {MAX_CALL_BODY_BYTES} bytes");
        return call_refused(&parts.headers, StatusCode::PAYLOAD_TOO_LARGE, AppError::new(ErrorCode::TooLarge, message));
    };
    if holds_nul(&bytes) || holds_nul(parts.uri.query().unwrap_or("").as_bytes()) {
        let refusal = AppError::new(ErrorCode::BadRequest, "text must not contain the NUL character (U+0000)");
        return call_refused(&parts.headers, StatusCode::BAD_REQUEST, refusal);
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// A NUL byte, or its percent-encoding (in a form or a query `%00` encodes nothing else).
fn holds_nul(bytes: &[u8]) -> bool {
    bytes.contains(&0) || bytes.windows(3).any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// An error as a server function returns one, for the page to read its code. A form
/// sent without JavaScript is a navigation (the browser asks for a page): it gets a
/// short page in the reader's language that says what went wrong and leads back,
/// not a JSON text on a blank screen.
fn call_refused(request: &HeaderMap, status: StatusCode, error: AppError) -> Response {
    if wants_a_page(request) {
        let cookies = request.get(header::COOKIE).and_then(|v| v.to_str().ok());
        let accept_language = request.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
        let page = refusal_page(Lang::negotiate(cookies, accept_language), error.code, &back_link(request));
        let html = HeaderValue::from_static("text/html; charset=utf-8");
        return (status, [(header::CONTENT_TYPE, html)], page).into_response();
    }
    let body = serde_json::to_string(&error).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// A browser's navigation asks for HTML first; the page's own calls do not.
fn wants_a_page(request: &HeaderMap) -> bool {
    let accept = request.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    // `q=0` says "not this one".
    let refused = |param: &str| {
        param
            .split_once('=')
            .is_some_and(|(key, q)| key.trim().eq_ignore_ascii_case("q") && q.trim().parse::<f32>() == Ok(0.0))
    };
    accept.split(',').any(|kind| {
        let mut parts = kind.split(';');
        parts.next().is_some_and(|media| media.trim().eq_ignore_ascii_case("text/html")) && !parts.any(refused)
    })
}

/// Where the refusal page leads back to: the page the form was on, when the Referer
/// names this site; else the chat. Only a path of this site: one that starts `//` or
/// `/\` would be read by a browser as another host.
fn back_link(request: &HeaderMap) -> String {
    let host = request.get(header::HOST).and_then(|v| v.to_str().ok());
    let referer = request
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<axum::http::Uri>().ok());
    let path = match (host, &referer) {
        (Some(host), Some(referer)) if referer.authority().is_some_and(|a| a.as_str() == host) => {
            referer.path_and_query().map(|p| p.as_str())
        }
        _ => None,
    };
    match path {
        Some(path) if path.starts_with('/') && !path[1..].starts_with(['/', '\\']) => path.to_string(),
        _ => "/".to_string(),
    }
}

fn refusal_page(lang: Lang, code: ErrorCode, back: &str) -> String {
    let t = lang.t();
    let mut page = format!(
        "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title></head>\
         <body><main class=\"refused\" data-code=\"{}\"><h1>",
        lang.code(),
        t.product,
        code.as_str()
    );
    let what = match code {
        // The code's own text speaks of a question; a form can be anything.
        ErrorCode::TooLarge => t.refused_too_large,
        code => t.error_text(code),
    };
    escape(what, &mut page);
    page.push_str("</h1><p>");
    escape(t.refused_nothing_saved, &mut page);
    page.push_str("</p><p><a href=\"");
    escape(back, &mut page);
    page.push_str("\">");
    escape(t.refused_go_back, &mut page);
    page.push_str("</a></p></main></body></html>");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_from(host: &str, referer: Option<&str>, accept: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        if let Some(referer) = referer {
            headers.insert(header::REFERER, HeaderValue::from_str(referer).unwrap());
        }
        headers
    }

    #[test]
    fn a_refusal_page_leads_back_only_within_this_site() {
        let back = |host: &str, referer: Option<&str>| back_link(&request_from(host, referer, "text/html"));
        assert_eq!(back("tutor.example", Some("https://tutor.example/c/abc?x=1")), "/c/abc?x=1");
        assert_eq!(back("127.0.0.1:3000", Some("http://127.0.0.1:3000/teach")), "/teach");
        assert_eq!(back("[::1]:3000", Some("http://[::1]:3000/faq")), "/faq");
        assert_eq!(back("tutor.example", Some("https://tutor.example")), "/");
        assert_eq!(back("tutor.example", None), "/");
        assert_eq!(back("tutor.example", Some("https://elsewhere.example/c/abc")), "/");
        assert_eq!(back("tutor.example", Some("https://user@tutor.example/c")), "/");
        assert_eq!(back("tutor.example", Some("https://tutor.example.evil/c")), "/");
        // Paths a browser reads as another host.
        assert_eq!(back("tutor.example", Some("https://tutor.example//evil.example/x")), "/");
        assert_eq!(back("tutor.example", Some("https://tutor.example/\\evil.example/x")), "/");
    }

    #[test]
    fn only_a_request_that_asks_for_html_gets_a_page() {
        let wants = |accept: &str| wants_a_page(&request_from("h", None, accept));
        assert!(wants("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"));
        assert!(wants("Text/HTML"));
        assert!(wants("application/json, text/html;q=0.5"));
        assert!(!wants("application/json"));
        assert!(!wants("*/*"));
        assert!(!wants("text/html;q=0"));
        assert!(!wants("text/html; q=0.0"));
        assert!(!wants(""));
    }

    #[test]
    fn a_nul_is_found_raw_or_percent_encoded_only() {
        assert!(holds_nul(b"title=a%00b"));
        assert!(holds_nul(b"title=a\0b"));
        assert!(!holds_nul(b"title=100%25+sure&n=%2500"));
        assert!(!holds_nul(b"title=%5Cu0000"));
    }

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_cookie_named_for_the_scheme_is_read_and_two_are_refused() {
        assert_eq!(cookie_session(&HeaderMap::new(), false), CookieSession::Absent);
        let plain = with_cookie("lang=ru; tutor_session=abc");
        assert_eq!(cookie_session(&plain, false), CookieSession::One("abc".into()));
        // Over https only the __Host- cookie counts: a plain one could be planted.
        assert_eq!(cookie_session(&plain, true), CookieSession::Absent);
        let host = with_cookie("__Host-tutor_session=def");
        assert_eq!(cookie_session(&host, true), CookieSession::One("def".into()));
        let two = with_cookie("tutor_session=abc; tutor_session=evil");
        assert_eq!(cookie_session(&two, false), CookieSession::Several);
        let mut split = with_cookie("tutor_session=abc");
        split.append(header::COOKIE, HeaderValue::from_static("tutor_session=evil"));
        assert_eq!(cookie_session(&split, false), CookieSession::Several);
    }

    #[test]
    fn origin_rules() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:3000".parse().unwrap());
        assert!(origin_allowed(&h, &[], false), "no Origin: not a browser");
        h.insert(header::ORIGIN, "http://127.0.0.1:3000".parse().unwrap());
        assert!(origin_allowed(&h, &[], false));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!origin_allowed(&h, &[], false));
        assert!(origin_allowed(&h, &["http://evil.example".to_string()], false));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!origin_allowed(&h, &[], false));
        h.insert(header::ORIGIN, "http://127.0.0.1:3000.evil.example".parse().unwrap());
        assert!(!origin_allowed(&h, &[], false));
        // Over https the scheme must match too.
        h.insert(header::ORIGIN, "http://127.0.0.1:3000".parse().unwrap());
        assert!(!origin_allowed(&h, &[], true));
        h.insert(header::ORIGIN, "https://127.0.0.1:3000".parse().unwrap());
        assert!(origin_allowed(&h, &[], true));
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert(header::ORIGIN, "http://127.0.0.1:3000".parse().unwrap());
        assert!(!origin_allowed(&h, &[], false), "a proxy said https");
    }

    #[test]
    fn cookie_flags() {
        let c = session_cookie("abc", false);
        assert!(c.starts_with("tutor_session=abc;"));
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && !c.contains("Secure"));
        let secure = session_cookie("abc", true);
        assert!(secure.starts_with("__Host-tutor_session=abc;") && secure.contains("; Secure"));
        assert!(secure.contains("Path=/") && !secure.contains("Domain"));
    }
}
