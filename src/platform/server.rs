//! The server's twin of the platform helpers: it reads the request and sets the
//! response; what only a browser can do (the address bar, cookies from script, page
//! loads) does nothing here. A build with neither `ssr` nor `hydrate` (`cargo check`
//! alone, an editor) has no request: there the two request helpers answer the defaults.

use leptos::prelude::*;

use crate::i18n::Lang;
use crate::page::{LessonMode, TeachersReadAll};

/// The page language, from the request: the `lang` cookie, then Accept-Language.
#[cfg(feature = "ssr")]
pub fn page_lang() -> Lang {
    use axum::http::header;
    let parts = use_context::<axum::http::request::Parts>();
    let header_str = |name| {
        parts
            .as_ref()
            .and_then(|p| p.headers.get(name))
            .and_then(|v| v.to_str().ok())
    };
    Lang::negotiate(header_str(header::COOKIE), header_str(header::ACCEPT_LANGUAGE))
}

#[cfg(not(feature = "ssr"))]
pub fn page_lang() -> Lang {
    Lang::default()
}

/// The server knows no reader's time zone: pages say UTC until the browser's twin
/// rewrites the moment in its own.
pub fn local_date_time(_unix_ms: i64) -> Option<String> {
    None
}

/// Whether answers are lesson excerpts: the router provides it (pages rendered
/// without it, such as the fallback's 404, say no).
pub fn lesson_mode() -> bool {
    use_context::<LessonMode>().is_some_and(|mode| mode.0)
}

/// Whether teachers read every conversation: the router provides it.
pub fn teachers_read_all() -> bool {
    use_context::<TeachersReadAll>().is_some_and(|read_all| read_all.0)
}

/// Answers the request being rendered with 404.
#[cfg(feature = "ssr")]
pub fn set_status_not_found() {
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::NOT_FOUND);
    }
}

#[cfg(not(feature = "ssr"))]
pub fn set_status_not_found() {}

/// Sends the page's Content-Security-Policy: only our own scripts run — the
/// hydration script by the nonce Leptos put on it, the rest from our origin — and no
/// page may frame this one. `dev` lets `cargo leptos watch`'s reload socket through.
#[cfg(feature = "ssr")]
pub fn send_page_policy(dev: bool) {
    let (Some(nonce), Some(response)) = (leptos::nonce::use_nonce(), use_context::<leptos_axum::ResponseOptions>())
    else {
        return;
    };
    let reload = if dev { " ws: wss:" } else { "" };
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'{reload}; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(value) = axum::http::HeaderValue::from_str(&policy) {
        response.insert_header(axum::http::header::CONTENT_SECURITY_POLICY, value);
    }
}

#[cfg(not(feature = "ssr"))]
pub fn send_page_policy(_dev: bool) {}

/// The address bar is the browser's.
pub fn show_url(_path: &str) {}

/// The language cookie is set by the browser when the student switches.
pub fn remember_lang(_lang: Lang) {}

/// Only a browser loads pages.
pub fn load_page(_path: &str) {}

/// Only a browser loads pages.
pub fn reload_page() {}

/// A tab's storage is the browser's.
pub fn keep_unsent_ask(_ask_json: Option<&str>) {}

/// A tab's storage is the browser's: nothing on the server.
pub fn take_unsent_ask() -> Option<String> {
    None
}

/// Keys are the browser's.
pub fn keep_tab_inside(
    _ev: &leptos::ev::KeyboardEvent,
    _container: &leptos::web_sys::Element,
    _first_stop: &leptos::web_sys::HtmlElement,
) {
}

/// The path the page was requested at.
#[cfg(feature = "ssr")]
pub fn request_path() -> String {
    use_context::<axum::http::request::Parts>().map_or_else(|| "/".to_string(), |parts| parts.uri.path().to_string())
}

#[cfg(not(feature = "ssr"))]
pub fn request_path() -> String {
    "/".to_string()
}
