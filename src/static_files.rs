//! The page's files: the WASM, its JS glue and the stylesheet under `/pkg`, and the
//! public files at the site's root (`favicon.ico`), served the way a slow phone needs
//! them (docs/page.md):
//!
//! - precompressed: the release build writes `.br` and `.gz` beside every file
//!   (`bash .ci/release-build`: `cargo leptos build --release --precompress --split`),
//!   and the smallest one the browser accepts is sent as it is, no compressing per
//!   request;
//! - cached for good when their names carry their content's hash (cargo-leptos's
//!   `hash-files`): `Cache-Control: public, max-age=31536000, immutable`, so a warm
//!   page load asks for none of them again; a build without hashes (a debug build)
//!   gets `no-cache` instead, so a rebuilt file is never served stale;
//! - outside the session layer: a static file never mints a session cookie.
//!
//! HTML pages, whose links change with every release, are `no-cache` ([`html_no_cache`]).

use std::path::Path;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response};
use axum::middleware::{self, Next};
use axum::Router;
use leptos::config::LeptosOptions;
use tower_http::services::{ServeDir, ServeFile};

/// For a file whose name changes when its content does.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For a public file with a fixed name (the favicon): a day, then revalidated.
pub const PUBLIC_DAY: &str = "public, max-age=86400";
/// Revalidate every time (ETag / Last-Modified make that a 304).
pub const NO_CACHE: &str = "no-cache";

/// `/pkg/…` and the site root's own files, for the app's router to merge outside its
/// session layer. A file that is missing is a plain 404 (the page's 404 is for people).
pub fn router<S: Clone + Send + Sync + 'static>(options: &LeptosOptions) -> Router<S> {
    let site_root = Path::new(options.site_root.as_ref());
    let pkg_dir = site_root.join(options.site_pkg_dir.as_ref());
    let pkg_cache = if options.hash_files { IMMUTABLE } else { NO_CACHE };
    let pkg = ServeDir::new(pkg_dir).precompressed_br().precompressed_gzip();
    let mut router = Router::new().nest_service(
        &format!("/{}", options.site_pkg_dir),
        Router::new().fallback_service(pkg).layer(middleware::from_fn(move |request, next| {
            cache_for(pkg_cache, request, next)
        })),
    );
    for name in public_files(site_root) {
        let file = ServeFile::new(site_root.join(&name)).precompressed_br().precompressed_gzip();
        router = router.route_service(
            &format!("/{name}"),
            Router::new()
                .fallback_service(file)
                .layer(middleware::from_fn(|request, next| cache_for(PUBLIC_DAY, request, next))),
        );
    }
    router
}

/// Says what is wrong when the page would link WASM that is not there: a hashed build
/// in the site folder, but no `hash.txt` beside the binary (so the page links the
/// unhashed name), or the reverse. Every page would load without its app.
pub fn linked_wasm_problem(options: &LeptosOptions) -> Option<String> {
    let pkg = Path::new(options.site_root.as_ref()).join(options.site_pkg_dir.as_ref());
    let names: Vec<String> = std::fs::read_dir(&pkg)
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.starts_with(options.output_name.as_ref()) && name.ends_with(".wasm"))
        .collect();
    let plain = format!("{}.wasm", options.output_name);
    let hashed_only = !names.is_empty() && !names.contains(&plain);
    match (options.hash_files, hashed_only) {
        (false, true) => Some(format!(
            "{} holds content-hashed files ({}) but no hash file ({}) is beside this binary: \
             pages will link {plain}, which does not exist. Copy the build's hash.txt next to the binary.",
            pkg.display(),
            names.join(", "),
            options.hash_file
        )),
        (true, false) if names.contains(&plain) => Some(format!(
            "file hashing is on but {} holds the unhashed {plain}: is hash.txt from another build?",
            pkg.display()
        )),
        _ => None,
    }
}

/// The site root's plain files (the `assets-dir` copied there), not their `.br`/`.gz`
/// twins. Read once at start-up: a file added later is served by the app's fallback
/// (with a session cookie and no cache policy, as before this module).
fn public_files(site_root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(site_root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| !name.ends_with(".br") && !name.ends_with(".gz") && !name.contains(['{', '}', '*']))
        // Files with an extension only (never a page's path such as `faq`, whose route
        // would collide), and no hidden ones.
        .filter(|name| name.contains('.') && !name.starts_with('.'))
        .collect()
}

/// Sets `cache` on a file that was found (200, 206, 304) and says the body depends on
/// `Accept-Encoding`, so a shared cache keeps the brotli and the gzip copies apart.
async fn cache_for(cache: &'static str, request: Request<Body>, next: Next) -> Response<Body> {
    let mut response = next.run(request).await;
    let status = response.status();
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if status.is_success() || status == axum::http::StatusCode::NOT_MODIFIED {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    } else {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    }
    response
}

/// HTML pages: `no-cache` unless the page set its own policy. A page names this
/// release's hashed files, so a cached page would load the last release's WASM.
pub async fn html_no_cache(mut response: axum::response::Response) -> axum::response::Response {
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    if is_html && !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A site root holding `files`; removed when the returned folder is dropped.
    fn options_for(files: &[&str], hash_files: bool) -> (LeptosOptions, tempfile::TempDir) {
        let dir = tempfile::Builder::new().prefix("tutor-static-").tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        for file in files {
            std::fs::write(root.join("pkg").join(file), b"x").unwrap();
        }
        let mut options = LeptosOptions::builder().output_name("tutor-chat").build();
        options.site_root = root.display().to_string().into();
        options.hash_files = hash_files;
        (options, dir)
    }

    fn problem(files: &[&str], hash_files: bool) -> Option<String> {
        let (options, _dir) = options_for(files, hash_files);
        linked_wasm_problem(&options)
    }

    #[test]
    fn a_hashed_build_without_its_hash_file_is_reported() {
        let hashed = ["tutor-chat.abc.wasm", "tutor-chat.abc.wasm.br"];
        assert!(problem(&hashed, false).unwrap().contains("hash.txt"));
        assert_eq!(problem(&hashed, true), None);
        assert_eq!(problem(&["tutor-chat.wasm"], false), None);
        assert!(problem(&["tutor-chat.wasm"], true).is_some());
        assert_eq!(problem(&[], false), None, "no build yet: nothing to say");
    }
}
