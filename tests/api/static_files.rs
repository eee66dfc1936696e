//! The page's files as a slow phone gets them (issue #13 item 5): hashed files under
//! `/pkg` cached as immutable, the precompressed copy the browser accepts (brotli
//! before gzip), no session cookie for a static file; HTML pages `no-cache`.
//!
//! The site folder is made by the test: a hashed WASM name with distinct `.br` and
//! `.gz` copies, so the body says which copy the server chose.

use std::path::PathBuf;

use crate::helpers::*;

const WASM: &str = "tutor-chat.Q2xhdWRlIHdhcyBoZXJl.wasm";

fn site(hashed: bool) -> PathBuf {
    let root = fresh_data_dir().join("site");
    let pkg = root.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    let name = if hashed { WASM } else { "tutor-chat.wasm" };
    std::fs::write(pkg.join(name), b"\0asm plain").unwrap();
    std::fs::write(pkg.join(format!("{name}.br")), b"brotli copy").unwrap();
    std::fs::write(pkg.join(format!("{name}.gz")), b"gzip copy").unwrap();
    std::fs::write(root.join("favicon.ico"), b"icon").unwrap();
    root
}

async fn app_serving(root: PathBuf, hashed: bool) -> TestApp {
    spawn_app_with_options(
        |_| {},
        |options| {
            options.site_root = root.display().to_string().into();
            options.hash_files = hashed;
        },
    )
    .await
}

async fn get(app: &TestApp, path: &str, accept_encoding: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(format!("http://{}{path}", app.addr));
    if let Some(encodings) = accept_encoding {
        request = request.header("accept-encoding", encodings);
    }
    request.send().await.unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn hashed_files_are_immutable_precompressed_and_cookieless() {
    let app = app_serving(site(true), true).await;
    let path = format!("/pkg/{WASM}");
    for (accepts, encoding, body) in [
        (Some("gzip, deflate, br"), Some("br"), "brotli copy"),
        (Some("gzip"), Some("gzip"), "gzip copy"),
        (None, None, "\0asm plain"),
    ] {
        let response = get(&app, &path, accepts).await;
        assert_eq!(response.status(), 200, "{accepts:?}");
        assert_eq!(header(&response, "content-encoding"), encoding, "{accepts:?}");
        assert_eq!(header(&response, "content-type"), Some("application/wasm"));
        assert_eq!(header(&response, "cache-control"), Some("public, max-age=31536000, immutable"));
        assert_eq!(header(&response, "vary"), Some("accept-encoding"));
        assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
        assert!(response.headers().get("set-cookie").is_none(), "a static file mints no session");
        assert_eq!(response.text().await.unwrap(), body);
    }
    // A missing file is a plain 404 that no cache may keep.
    let missing = get(&app, "/pkg/tutor-chat.AAAA.wasm", Some("br")).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(header(&missing, "cache-control"), Some("no-cache"));
    assert!(missing.headers().get("set-cookie").is_none());
    // The favicon keeps its name: cached a day, not forever.
    let icon = get(&app, "/favicon.ico", None).await;
    assert_eq!(icon.status(), 200);
    assert_eq!(header(&icon, "cache-control"), Some("public, max-age=86400"));
    assert!(icon.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn html_pages_are_revalidated_and_unhashed_builds_are_not_cached_for_good() {
    let app = app_serving(site(false), false).await;
    for path in ["/", "/signin", "/no-such-page"] {
        let page = get(&app, path, Some("br")).await;
        assert!(header(&page, "content-type").unwrap().starts_with("text/html"), "{path}");
        assert_eq!(header(&page, "cache-control"), Some("no-cache"), "{path}");
    }
    // A debug build's fixed names must never be cached as immutable.
    let wasm = get(&app, "/pkg/tutor-chat.wasm", Some("br")).await;
    assert_eq!(wasm.status(), 200);
    assert_eq!(header(&wasm, "cache-control"), Some("no-cache"));
    assert_eq!(header(&wasm, "content-encoding"), Some("br"));
}
