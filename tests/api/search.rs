//! Searching one's conversations (issue #14, part 3): by words of titles, questions and
//! answers, with the lessons' Russian and English stemming, newest first, paged, and
//! only ever the student's own.

use crate::helpers::*;

async fn search_page(app: &TestApp, cookie: &str, query: &str, cursor: Option<&str>) -> ConversationPage {
    let mut form = vec![("query", query)];
    if let Some(cursor) = cursor {
        form.push(("cursor", cursor));
    }
    let (status, body) = app.call(cookie, "history/search", &form).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The ids found, newest first (the first page).
async fn found(app: &TestApp, cookie: &str, query: &str) -> Vec<String> {
    let page = search_page(app, cookie, query, None).await;
    assert!(page.next_cursor.is_none(), "one page expected for {query:?}");
    page.items.into_iter().map(|c| c.id).collect()
}

#[tokio::test]
async fn words_of_titles_questions_and_answers_find_the_students_own_conversations_in_both_languages() {
    let app = spawn_app().await;
    let mut ann = app.student().await;
    let streaming = ask(&mut ann.ws, "[tokens=2] How do streaming replies reach the browser?").await.conversation_id;
    let russian = ask(&mut ann.ws, "[tokens=2] Как работают потоковые ответы сервера?").await.conversation_id;
    // Sixteen words of the test model's answer end with "arrives."
    let bucket = ask(&mut ann.ws, "[tokens=16] What is a token bucket?").await.conversation_id;
    ask_in(&mut ann.ws, "[tokens=2] And its refill rate?", Some(&bucket)).await;
    let mut bob = app.student().await;
    let bobs = ask(&mut bob.ws, "[tokens=2] My own streaming question, and the bucket one").await.conversation_id;

    // English word forms meet ("streamed" ~ "streaming"); Bob's never shows to Ann.
    assert_eq!(found(&app, &ann.cookie, "streamed").await, [streaming.clone()]);
    assert_eq!(found(&app, &bob.cookie, "streamed").await, [bobs.clone()]);
    // Russian word forms meet ("потоковый ответ" ~ "потоковые ответы").
    assert_eq!(found(&app, &ann.cookie, "потоковый ответ").await, [russian.clone()]);
    assert_eq!(found(&app, &ann.cookie, "СЕРВЕРОМ").await, [russian.clone()]);
    // An answer's words, and a later question's, find their conversation.
    assert_eq!(found(&app, &ann.cookie, "arriving").await, [bucket.clone()]);
    assert_eq!(found(&app, &ann.cookie, "refills").await, [bucket.clone()]);
    // Every word must be there.
    assert!(found(&app, &ann.cookie, "streaming bucket").await.is_empty());
    assert_eq!(found(&app, &bob.cookie, "streaming bucket").await, [bobs.clone()]);
    // Newest first: every answer starts "WebSocket keeps"; the bucket was continued last.
    assert_eq!(found(&app, &ann.cookie, "keeping").await, [bucket.clone(), russian.clone(), streaming.clone()]);
    // Only stop words, or nothing: nothing to find.
    assert!(found(&app, &ann.cookie, "the and").await.is_empty());
    assert!(found(&app, &ann.cookie, "   ").await.is_empty());

    // A renamed title is found by its new words, no longer by its old ones.
    let (status, _) = app.call(&ann.cookie, "history/rename", &[("id", &streaming), ("title", "Zeppelin notes")]).await;
    assert_eq!(status, 200);
    assert_eq!(found(&app, &ann.cookie, "zeppelins").await, [streaming.clone()]);
    let (status, _) = app.call(&ann.cookie, "history/rename", &[("id", &streaming), ("title", "Airship notes")]).await;
    assert_eq!(status, 200);
    assert!(found(&app, &ann.cookie, "zeppelin").await.is_empty());
    assert_eq!(found(&app, &ann.cookie, "streamed").await, [streaming.clone()], "its messages are still found");
    // A deleted conversation is not found.
    let (status, _) = app.call(&ann.cookie, "history/delete", &[("id", &russian)]).await;
    assert_eq!(status, 200);
    assert!(found(&app, &ann.cookie, "потоковый").await.is_empty());

    // A browser that never asked anything finds nothing, even Ann's words.
    let stranger = app.session_cookie().await;
    assert!(found(&app, &stranger, "streamed").await.is_empty());
    // A search over 200 characters is refused with a code, not a panic.
    let (status, body) = app.call(&ann.cookie, "history/search", &[("query", &"a".repeat(201))]).await;
    assert_ne!(status, 200, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["code"], "bad_request", "{body}");
}

#[tokio::test]
async fn results_come_a_page_at_a_time_newest_first() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let mut asked = Vec::new();
    for n in 0..23 {
        asked.push(ask(&mut s.ws, &format!("[tokens=1] Paging question number {n}")).await.conversation_id);
    }
    asked.reverse();
    let first = search_page(&app, &s.cookie, "pages", None).await;
    assert_eq!(first.items.len(), 20);
    let cursor = first.next_cursor.clone().expect("a second page");
    let second = search_page(&app, &s.cookie, "pages", Some(&cursor)).await;
    assert!(second.next_cursor.is_none());
    let all: Vec<String> = first.items.into_iter().chain(second.items).map(|c| c.id).collect();
    assert_eq!(all, asked, "every conversation once, newest first");
}
