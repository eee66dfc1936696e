//! Every HTML page carries a Content-Security-Policy that lets only our own scripts run
//! (the hydration script by its nonce) and forbids framing, plus nosniff and a
//! referrer policy; every other response carries the last two (issue #10).

use crate::helpers::*;

#[tokio::test]
async fn every_html_page_carries_a_policy_whose_nonce_is_on_its_scripts() {
    let app = spawn_app().await;
    let mut nonces = Vec::new();
    for path in ["/", "/c/not-a-conversation", "/lessons", "/lessons/no-such-lesson", "/signin", "/signup", "/no-such-page"] {
        let response = app.http.get(format!("http://{}{path}", app.addr)).send().await.unwrap();
        let headers = response.headers().clone();
        let html = response.text().await.unwrap();
        let policy = headers
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no Content-Security-Policy"))
            .to_str()
            .unwrap()
            .to_string();
        assert!(policy.contains("frame-ancestors 'none'"), "{path}: {policy}");
        assert!(policy.contains("object-src 'none'") && policy.contains("base-uri 'none'"), "{path}: {policy}");
        assert!(!policy.contains("unsafe-inline") && !policy.contains("'unsafe-eval'"), "{path}: {policy}");
        let nonce = policy
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap_or_else(|| panic!("{path}: no nonce in {policy}"))
            .to_string();
        // Every inline script of the page carries it; none goes without.
        let scripts = html.matches("<script").count();
        assert!(scripts > 0, "{path}: no hydration script");
        assert_eq!(html.matches(&format!("nonce=\"{nonce}\"")).count(), scripts, "{path}: a script without the nonce");
        assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff", "{path}");
        assert!(headers.get("referrer-policy").is_some(), "{path}");
        nonces.push(nonce);
    }
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 7, "a fresh nonce for every response");
    // Not a page: still no sniffing.
    let api = app.http.post(format!("http://{}/api/history/list", app.addr)).send().await.unwrap();
    assert_eq!(api.headers().get("x-content-type-options").unwrap(), "nosniff");
}
