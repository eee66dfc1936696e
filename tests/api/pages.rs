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
    // q=0 refuses a language.
    let refused = get(vec![("accept-language", "de, ru;q=0")]).await;
    assert!(refused.contains(r#"lang="en""#));
}

/// A missing page says so in the reader's language, with the way back.
#[tokio::test]
async fn a_missing_page_says_so_in_the_readers_language() {
    let app = spawn_app().await;
    for (cookie, words, back) in [("lang=ru", "Такой страницы нет.", "Вернуться в чат"), ("lang=en", "There is no such page.", "Back to the chat")] {
        let response = app.http.get(format!("http://{}/no/such/page", app.addr)).header("cookie", cookie).send().await.unwrap();
        assert_eq!(response.status(), 404);
        let html = response.text().await.unwrap();
        assert!(html.contains(words) && html.contains(back), "{cookie}: {html}");
    }
}

/// A conversation's page, rendered again and again, always finishes. Before the chat
/// state knew the address's conversation from the start, the chat page set it during
/// the render, the sidebar above re-read it after the page's owner was gone, and one
/// render in a few hundred panicked and never finished its response.
// Several worker threads, as the binary runs: the race needs one to render while another
// disposes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_page_renders_to_the_end_every_time() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let first = ask(&mut s.ws, "[tokens=3] What is SSE?").await;
    for n in 0..4 {
        let _ = ask(&mut s.ws, &format!("[tokens=2] another conversation {n}")).await;
    }
    let path = format!("/c/{}", first.conversation_id);
    for _ in 0..300 {
        let html = app.page(&s.cookie, &path).await;
        // A hung render would time the request out (30 s) and fail here.
        assert!(html.contains("</html>") && html.contains("What is SSE?"), "an unfinished page");
    }
}
