//! A conversation downloaded as Markdown (issue #14, part 4): the exact document for
//! what the test asked and was answered, only for the conversation's owner.

use crate::helpers::*;

/// `YYYY-MM-DD HH:MM UTC`, counted here year by year (not with the app's own helper).
fn utc(unix_ms: i64) -> String {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let secs = unix_ms.div_euclid(1000);
    let (mut day, minutes) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) / 60);
    let mut year = 1970;
    while day >= if leap(year) { 366 } else { 365 } {
        day -= if leap(year) { 366 } else { 365 };
        year += 1;
    }
    let months = [31, if leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 0;
    while day >= months[month] {
        day -= months[month];
        month += 1;
    }
    format!("{year:04}-{:02}-{:02} {:02}:{:02} UTC", month + 1, day + 1, minutes / 60, minutes % 60)
}

async fn download(app: &TestApp, cookie: Option<&str>, path: &str, language: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = app.http.get(format!("http://{}{path}", app.addr)).header("accept-language", language);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn the_owner_downloads_the_exact_markdown_of_the_conversation() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let q1 = "[tokens=5] [cite=1] What is a token bucket?";
    let q2 = "[tokens=3] And how does it refill?";
    let a1 = ask(&mut s.ws, q1).await;
    let id = a1.conversation_id.clone();
    let a2 = ask_in(&mut s.ws, q2, Some(&id)).await;
    assert!(!a1.sources.is_empty(), "the lessons gave the answer sources to link");

    // The dates are the server's; everything else is what was sent and received.
    let stored = app.load(&s.cookie, &id).await.unwrap().messages;
    assert_eq!(stored.len(), 4);
    let mut expected = format!("# {q1}\n\n_Exported from Tutor Chat_\n");
    let sent = [("Question", q1.to_string(), &[][..]), ("Answer", a1.text(), &a1.sources[..]), ("Question", q2.to_string(), &[][..]), ("Answer", a2.text(), &a2.sources[..])];
    for ((who, text, sources), message) in sent.iter().zip(&stored) {
        expected.push_str(&format!("\n## {who} · {}\n\n{}\n", utc(message.created_at), text.trim_end()));
        if !sources.is_empty() {
            expected.push_str("\nSources:\n\n");
            for source in sources.iter() {
                expected.push_str(&format!(
                    "{}. [{} — {}](http://{}/lessons/{}#{})\n",
                    source.n, source.lesson_title, source.section, app.addr, source.lesson, source.anchor
                ));
            }
        }
    }

    let path = format!("/c/{id}/export.md");
    let (status, headers, body) = download(&app, Some(&s.cookie), &path, "en").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/markdown; charset=utf-8");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"tokens-5-cite-1-what-is-a-token-bucket.md\""),
        "{disposition}"
    );
    assert_eq!(body, expected);

    // In Russian for a Russian browser.
    let (_, _, russian) = download(&app, Some(&s.cookie), &path, "ru").await;
    assert!(russian.contains("\n## Вопрос · ") && russian.contains("\n## Ответ · ") && russian.contains("\nИсточники:\n"), "{russian}");

    // The conversation page links to it.
    let page = app.page(&s.cookie, &format!("/c/{id}")).await;
    assert!(page.contains(&format!("href=\"{path}\"")), "no download link on the page");

    // Anyone else gets exactly what a missing conversation gets: the 404 page.
    let other = app.student().await;
    let missing = format!("/c/{}/export.md", "0".repeat(36));
    for cookie in [Some(other.cookie.as_str()), None] {
        let (missing_status, _, missing_body) = download(&app, cookie, &missing, "en").await;
        assert_eq!(missing_status, 404);
        let (status, headers, body) = download(&app, cookie, &path, "en").await;
        assert_eq!(status, 404);
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
        assert_eq!(without_nonce(&body), without_nonce(&missing_body), "not the owner looks exactly like missing");
        assert!(!body.contains("token bucket"));
    }
}

/// A page with its per-response script nonce blanked, to compare two responses.
fn without_nonce(page: &str) -> String {
    let Some(start) = page.find("nonce=\"").map(|at| at + "nonce=\"".len()) else {
        return page.to_string();
    };
    let end = start + page[start..].find('"').unwrap();
    page.replace(&page[start..end], "NONCE")
}
