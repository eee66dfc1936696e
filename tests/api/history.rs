//! Conversation history (issue #3): every question and answer is kept with its
//! status, comes back paged, can be renamed and deleted, is private to its owner, and
//! is sent back to the model within the context budget.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn every_question_and_answer_is_kept_and_comes_back() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let first = ask_in(&mut s.ws, "[tokens=5] What is SSE?\nPlease explain.", None).await;
    let second = ask_in(&mut s.ws, "[tokens=3] And WebSocket?", Some(&first.conversation_id)).await;
    assert_eq!(second.conversation_id, first.conversation_id);

    let page = app.list(&s.cookie).await;
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].title, "[tokens=5] What is SSE?", "title from the first line");
    let view = app.load(&s.cookie, &first.conversation_id).await.unwrap();
    let got: Vec<(MessageRole, &str, MessageStatus)> = view
        .messages
        .iter()
        .map(|m| (m.role, m.content.as_str(), m.status))
        .collect();
    let first_text = first.text();
    let second_text = second.text();
    assert_eq!(
        got,
        vec![
            (MessageRole::User, "[tokens=5] What is SSE?\nPlease explain.", MessageStatus::Complete),
            (MessageRole::Assistant, first_text.as_str(), MessageStatus::Complete),
            (MessageRole::User, "[tokens=3] And WebSocket?", MessageStatus::Complete),
            (MessageRole::Assistant, second_text.as_str(), MessageStatus::Complete),
        ]
    );
    assert_eq!(view.messages[1].id, first.message_id);

    // A fresh connection (a reload) continues the same conversation; the model gets it all.
    let mut again = app.student().await;
    again.ws = {
        let origin = format!("http://{}", app.addr);
        let mut ws = app.try_connect(Some(&s.cookie), Some(&origin)).await.unwrap();
        next_frame(&mut ws).await;
        ws
    };
    let third = ask_in(&mut again.ws, "[tokens=2] third", Some(&first.conversation_id)).await;
    assert_eq!(third.end.map(|e| e.1), Some(EndReason::Complete));
    let sent = app.last_request();
    let turns = without_sources(&sent);
    assert_eq!(turns.len(), 1 + 4 + 1, "system + four earlier turns + question");
    assert_eq!(turns[2].content, first_text);
}

#[tokio::test]
async fn stop_error_and_disconnect_are_stored_with_their_status() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let failed = ask_in(&mut s.ws, "[fault=500] q", None).await;
    assert_eq!(failed.error.map(|e| e.0), Some(ErrorCode::UpstreamUnavailable));
    let conversation = failed.conversation_id.clone();

    send_json(&mut s.ws, json!({"type":"ask","question":"[tokens=100] [delay=20] long","conversation_id":conversation})).await;
    let mut received = String::new();
    loop {
        match next_frame(&mut s.ws).await {
            ServerFrame::Chunk { content, seq, .. } => {
                received.push_str(&content);
                if seq == 5 {
                    send_json(&mut s.ws, json!({"type":"stop"})).await;
                }
            }
            ServerFrame::End { reason, .. } => {
                assert_eq!(reason, EndReason::Stopped);
                break;
            }
            _ => {}
        }
    }
    send_json(&mut s.ws, json!({"type":"ask","question":"[tokens=200] [delay=20] leaving","conversation_id":conversation})).await;
    let mut cut = String::new();
    loop {
        if let ServerFrame::Chunk { content, seq, .. } = next_frame(&mut s.ws).await {
            cut.push_str(&content);
            if seq == 10 {
                break;
            }
        }
    }
    drop(s.ws); // the tab closes mid-answer: the answer goes on and is stored whole

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let view = app.load(&s.cookie, &conversation).await.unwrap();
        let statuses: Vec<MessageStatus> = view.messages.iter().map(|m| m.status).collect();
        if statuses.last() == Some(&MessageStatus::Complete) {
            assert_eq!(
                statuses,
                [
                    MessageStatus::Complete,
                    MessageStatus::Error,
                    MessageStatus::Complete,
                    MessageStatus::Stopped,
                    MessageStatus::Complete,
                    MessageStatus::Complete
                ]
            );
            assert_eq!(view.messages[1].error_code, Some(ErrorCode::UpstreamUnavailable));
            assert!(view.messages[3].content.starts_with(&received));
            let kept = &view.messages[5].content;
            assert!(kept.starts_with(&cut));
            assert_eq!(kept, &app.last_request().answer, "every token, though nobody watched");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never completed: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn another_students_conversation_answers_like_a_missing_one() {
    let app = spawn_app().await;
    let mut alice = app.student().await;
    let mut bob = app.student().await;
    let hers = ask_in(&mut alice.ws, "[tokens=3] alice's secret", None).await;
    let _ = ask_in(&mut bob.ws, "[tokens=3] bob's own", None).await;
    let missing = uuid::Uuid::new_v4().to_string();

    for id in [&hers.conversation_id, &missing] {
        let load = app.call(&bob.cookie, "history/load", &[("id", id)]).await;
        let rename = app
            .call(&bob.cookie, "history/rename", &[("id", id), ("title", "mine now")])
            .await;
        let delete = app.call(&bob.cookie, "history/delete", &[("id", id)]).await;
        for (status, body) in [&load, &rename, &delete] {
            assert_ne!(*status, 200);
            assert!(body.contains("Conversation not found."), "{body}");
            assert!(!body.contains("alice"));
        }
    }
    // Exactly the same answers for hers and for one that does not exist.
    let a = app.call(&bob.cookie, "history/load", &[("id", &hers.conversation_id)]).await;
    let b = app.call(&bob.cookie, "history/load", &[("id", &missing)]).await;
    assert_eq!(a, b);

    let calls_before = app.fake.requests().len();
    let refused = ask_in(&mut bob.ws, "[tokens=3] let me in", Some(&hers.conversation_id)).await;
    assert_eq!(refused.error.map(|e| e.0), Some(ErrorCode::NotFound));
    assert_eq!(app.fake.requests().len(), calls_before, "no model call");

    let bobs = app.list(&bob.cookie).await;
    assert_eq!(bobs.items.len(), 1);
    assert_ne!(bobs.items[0].id, hers.conversation_id);
    let view = app.load(&alice.cookie, &hers.conversation_id).await.unwrap();
    assert_eq!(view.title, "[tokens=3] alice's secret", "untouched by bob");
    assert_eq!(view.messages.len(), 2);

    // A browser that never asked anything owns nothing, and creates nothing by looking.
    let stranger = app.session_cookie().await;
    assert!(app.list(&stranger).await.items.is_empty());
    assert!(app.load(&stranger, &hers.conversation_id).await.is_err());
}

#[tokio::test]
async fn rename_and_delete_a_conversation() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let answer = ask_in(&mut s.ws, "[tokens=2] hello", None).await;
    let id = answer.conversation_id.as_str();
    let (status, body) = app
        .call(&s.cookie, "history/rename", &[("id", id), ("title", "  Streaming basics ")])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.list(&s.cookie).await.items[0].title, "Streaming basics");
    let (status, body) = app.call(&s.cookie, "history/rename", &[("id", id), ("title", "  ")]).await;
    assert_ne!(status, 200);
    assert!(body.contains("cannot be empty"), "{body}");

    let (status, _) = app.call(&s.cookie, "history/delete", &[("id", id)]).await;
    assert_eq!(status, 200);
    assert!(app.list(&s.cookie).await.items.is_empty());
    assert!(app.load(&s.cookie, id).await.is_err());
    let gone = ask_in(&mut s.ws, "[tokens=2] still here?", Some(id)).await;
    assert_eq!(gone.error.map(|e| e.0), Some(ErrorCode::NotFound));
}

/// Server functions read their bodies whole: a body over the limit is refused before
/// it is read on, and text holding U+0000 (which PostgreSQL cannot store) is a clear
/// `bad_request` instead of `internal`; nothing changes, and the next call works.
#[tokio::test]
async fn server_functions_refuse_huge_bodies_and_nul_characters() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let answer = ask_in(&mut s.ws, "[tokens=2] hello", None).await;
    let id = answer.conversation_id.as_str();
    let title = app.list(&s.cookie).await.items[0].title.clone();

    let padding = "x".repeat(1024 * 1024);
    let (status, body) = app.call(&s.cookie, "history/rename", &[("id", id), ("title", &padding)]).await;
    assert_eq!((status, code_of(&body).as_str()), (413, "too_large"), "{body}");
    let (status, body) = app.call(&s.cookie, "history/rename", &[("id", id), ("title", "before\0after")]).await;
    assert_eq!((status, code_of(&body).as_str()), (400, "bad_request"), "{body}");
    assert_eq!(app.list(&s.cookie).await.items[0].title, title, "nothing was renamed");

    let (status, body) = app.call(&s.cookie, "history/rename", &[("id", id), ("title", "after all")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.list(&s.cookie).await.items[0].title, "after all");
}

fn code_of(body: &str) -> String {
    let error: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not an error body: {body}"));
    error["code"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn server_functions_refuse_a_foreign_origin() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let answer = ask_in(&mut s.ws, "[tokens=2] hello", None).await;
    for (endpoint, form) in [
        ("history/list", vec![]),
        ("history/load", vec![("id", answer.conversation_id.as_str())]),
        ("history/delete", vec![("id", answer.conversation_id.as_str())]),
    ] {
        let (status, body) = app
            .call_from(&s.cookie, endpoint, &form, "http://evil.example")
            .await;
        assert_ne!(status, 200, "{endpoint}");
        assert!(body.contains("other sites are refused"), "{body}");
    }
    assert_eq!(app.list(&s.cookie).await.items.len(), 1, "nothing was deleted");
}

#[tokio::test]
async fn conversations_and_messages_are_cursor_paged() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let first = ask_in(&mut s.ws, "[tokens=1] seed", None).await;
    let user = app
        .state
        .db
        .find_user(s.cookie.trim_start_matches("tutor_session="))
        .await
        .unwrap()
        .unwrap();
    for i in 0..64 {
        app.state.db.create_conversation(&user, &format!("c{i}")).await.unwrap();
    }
    for i in 0..118 {
        app.state
            .db
            .add_message(&first.conversation_id, MessageRole::User, &format!("m{i}"), MessageStatus::Complete, None)
            .await
            .unwrap();
    }
    // 65 conversations: pages of 30, newest first, no repeats.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let form: Vec<(&str, &str)> = cursor.as_deref().map(|c| vec![("cursor", c)]).unwrap_or_default();
        let (status, body) = app.call(&s.cookie, "history/list", &form).await;
        assert_eq!(status, 200, "{body}");
        let page: ConversationPage = serde_json::from_str(&body).unwrap();
        assert!(page.items.len() <= 30);
        seen.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 65);
    for pair in seen.windows(2) {
        assert!((pair[0].updated_at, &pair[0].id) > (pair[1].updated_at, &pair[1].id));
    }
    // 120 messages: newest page first (50), then older pages, each oldest-to-newest.
    let newest = app.load(&s.cookie, &first.conversation_id).await.unwrap();
    assert_eq!(newest.messages.len(), 50);
    assert_eq!(newest.messages.last().unwrap().content, "m117");
    let mut all = newest.messages.clone();
    let mut before = newest.older_cursor;
    while let Some(position) = before {
        let (status, body) = app
            .call(
                &s.cookie,
                "history/load",
                &[("id", &first.conversation_id), ("before", &position.to_string())],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let page: ConversationView = serde_json::from_str(&body).unwrap();
        let mut older = page.messages;
        older.extend(all);
        all = older;
        before = page.older_cursor;
    }
    assert_eq!(all.len(), 120);
    let positions: Vec<i64> = all.iter().map(|m| m.position).collect();
    assert_eq!(positions, (1..=120).collect::<Vec<_>>());
}

#[tokio::test]
async fn older_turns_beyond_the_budget_are_left_out_and_flagged() {
    // 13 tokens ≈ 52 characters: the first turn is 50, the first two 87.
    let app = spawn_app_with(|s| s.context_token_budget = 13).await;
    let mut s = app.student().await;
    let first = ask_in(&mut s.ws, "[prefix=a] [tokens=3] first question here", None).await;
    assert!(!first.context_truncated);
    let id = first.conversation_id.clone();
    let second = ask_in(&mut s.ws, "[prefix=b] [tokens=3] second", Some(&id)).await;
    assert!(!second.context_truncated, "the first turn fits");
    let third = ask_in(&mut s.ws, "[prefix=c] [tokens=3] third", Some(&id)).await;
    assert!(third.context_truncated, "the first turn no longer fits");
    let sent = app.last_request();
    let contents: Vec<&str> = without_sources(&sent).iter().skip(1).map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["[prefix=b] [tokens=3] second", "b0 b1 b2 ", "[prefix=c] [tokens=3] third"]);
}
