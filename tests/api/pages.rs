//! The chat page itself: server-rendered HTML a browser can use before any script
//! runs, the guest session it hands out, and the language it picks.

use crate::helpers::*;

#[tokio::test]
async fn page_is_server_rendered_and_sets_a_guest_session() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("http://{}/", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = session_set_cookie(response.headers()).unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let token = cookie["tutor_session=".len()..].split(';').next().unwrap();
    assert!(token.len() >= 32, "at least 128 bits of hex");
    let html = response.text().await.unwrap();
    assert!(html.contains("<textarea"), "composer is in the HTML");
    assert!(html.contains("Tutor Chat"));
    assert!(html.contains(r#"lang="en""#));

    // A returning browser keeps its session: no new cookie.
    let again = app
        .http
        .get(format!("http://{}/", app.addr))
        .header("cookie", format!("tutor_session={token}"))
        .send()
        .await
        .unwrap();
    assert!(again.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn page_language_follows_accept_language_and_cookie() {
    let app = spawn_app().await;
    let get = |headers: Vec<(&'static str, &'static str)>| {
        let mut request = app.http.get(format!("http://{}/", app.addr));
        for (k, v) in headers {
            request = request.header(k, v);
        }
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let ru = get(vec![("accept-language", "ru-RU,ru;q=0.9,en;q=0.5")]).await;
    assert!(ru.contains(r#"lang="ru""#));
    assert!(ru.contains("Задайте вопрос по курсу"));
    let en = get(vec![("accept-language", "ru-RU"), ("cookie", "lang=en")]).await;
    assert!(en.contains(r#"lang="en""#));
    assert!(en.contains("Ask a question about the course"));
}
