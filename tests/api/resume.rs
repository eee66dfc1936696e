//! Resuming after a dropped connection: a snapshot of what was written meanwhile,
//! then the live chunks with no gap and no repeat.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_reconnecting_client_resumes_the_answer_without_losing_a_token() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    send_json(&mut s.ws, json!({"question": "[tokens=60] [delay=25] keep going"})).await;
    let mut message_id = String::new();
    let mut text = String::new();
    let mut last_seq;
    loop {
        match next_frame(&mut s.ws).await {
            ServerFrame::Start { message_id: m, .. } => message_id = m,
            ServerFrame::Chunk { content, seq, .. } => {
                text.push_str(&content);
                last_seq = seq;
                if seq == 10 {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(s.ws); // the network drops
    tokio::time::sleep(Duration::from_millis(300)).await; // tokens keep coming meanwhile

    let origin = format!("http://{}", app.addr);
    let mut ws = app.try_connect(Some(&s.cookie), Some(&origin)).await.unwrap();
    assert!(matches!(next_frame(&mut ws).await, ServerFrame::Hello { .. }));
    send_json(&mut ws, json!({"type": "resume", "message_id": message_id})).await;
    match next_frame(&mut ws).await {
        ServerFrame::Snapshot { content, seq, status, live, .. } => {
            assert!(content.starts_with(&text), "the snapshot holds what we saw");
            assert!(seq > last_seq, "and what was written while we were away");
            assert_eq!((status, live), (MessageStatus::Streaming, true));
            text = content;
            last_seq = seq;
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
    loop {
        match next_frame(&mut ws).await {
            ServerFrame::Chunk { content, seq, .. } => {
                assert_eq!(seq, last_seq + 1, "no gap, no repeat after the snapshot");
                last_seq = seq;
                text.push_str(&content);
            }
            ServerFrame::End { seq, reason, .. } => {
                assert_eq!((seq, reason), (60, EndReason::Complete));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(text, app.last_request().answer);

    // Resuming a finished answer gives its stored text; someone else's is not found.
    send_json(&mut ws, json!({"type": "resume", "message_id": message_id})).await;
    match next_frame(&mut ws).await {
        ServerFrame::Snapshot { content, status, live, seq, .. } => {
            assert_eq!((content.as_str(), status, live, seq), (text.as_str(), MessageStatus::Complete, false, 60));
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
    let mut stranger = app.student().await;
    let _ = ask_in(&mut stranger.ws, "[tokens=1] hi", None).await;
    send_json(&mut stranger.ws, json!({"type": "resume", "message_id": message_id})).await;
    match next_frame(&mut stranger.ws).await {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::NotFound),
        other => panic!("expected not_found, got {other:?}"),
    }
}

/// A page that resumes an answer that failed (it reconnected, or reloaded) reads why,
/// as the page that watched it fail did, not "the connection dropped".
#[tokio::test]
async fn resuming_a_failed_answer_says_how_it_failed() {
    let app = spawn_app().await;
    let mut student = app.student().await;
    let failed = ask(&mut student.ws, "[tokens=10] [fault=drop] q").await;
    assert_eq!(failed.error.map(|(code, _)| code), Some(ErrorCode::UpstreamUnavailable));
    let mut again = app.socket(&student.cookie).await;
    send_json(&mut again, serde_json::json!({"type": "resume", "message_id": failed.message_id})).await;
    match next_frame(&mut again).await {
        ServerFrame::Snapshot { status, live, code, .. } => {
            assert_eq!((status, live, code), (MessageStatus::Error, false, Some(ErrorCode::UpstreamUnavailable)));
        }
        other => panic!("expected the failed answer's snapshot, got {other:?}"),
    }
}

/// The student's stored questions, in all their conversations.
async fn questions_stored(app: &TestApp, cookie: &str) -> Vec<String> {
    let mut questions = Vec::new();
    for conversation in app.list(cookie).await.items {
        let view = app.load(cookie, &conversation.id).await.unwrap();
        questions.extend(view.messages.into_iter().filter(|m| m.role == MessageRole::User).map(|m| m.content));
    }
    questions
}

/// The network drops after the `start` of a question was sent and before it arrived:
/// the page sends the same `ask` (its `ask_id`) on the next connection. The server
/// asks nothing twice: it sends that answer's `start` again and follows it. Even with
/// the question budget spent by the first, and only for the same student.
#[tokio::test]
async fn an_ask_sent_again_after_a_drop_follows_the_answer_the_first_began() {
    let app = spawn_app_with(|s| s.question_budget = 1).await;
    let s = app.student().await;
    let ask = json!({"type": "ask", "question": "[tokens=40] [delay=25] asked once", "ask_id": "a-1"});
    let (s, first, again, text) = send_again_after_its_start(&app, s, ask.clone()).await;
    let first = (first.conversation_id, first.message_id, first.question_id);
    assert_eq!((again.conversation_id.clone(), again.message_id.clone(), again.question_id.clone()), first);
    assert_eq!(again.end, Some((40, EndReason::Complete)));
    assert_eq!(text, app.last_request().answer, "the whole answer, once");
    assert_eq!(app.fake.requests().len(), 1, "one model request");
    assert_eq!(questions_stored(&app, &s.cookie).await, ["[tokens=40] [delay=25] asked once"]);
    let view = app.load(&s.cookie, &first.0).await.unwrap();
    assert_eq!(view.messages[0].ask_id.as_deref(), Some("a-1"), "the page tells the question by its name");
    assert_eq!(view.messages[1].ask_id, None);

    // Another student's `ask_id` is theirs alone: the same one asks anew.
    let mut stranger = app.student().await;
    send_json(&mut stranger.ws, ask).await;
    let theirs = read_answer(&mut stranger.ws).await;
    assert!(theirs.error.is_none(), "{:?}", theirs.error);
    assert_ne!(theirs.message_id, first.1);
    assert_eq!(app.fake.requests().len(), 2);
}

/// The connection drops right after the `ask` went out, before anything came back,
/// and the page sends it again at once: whichever of the two the server stores first,
/// the question is stored and answered once (the store's unique `ask_key` decides
/// when both are under way together).
#[tokio::test]
async fn an_ask_whose_connection_dropped_at_once_is_asked_once() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let _ = ask(&mut s.ws, "[tokens=1] a first question, so the student exists").await;
    for round in 0..3 {
        let question = format!("[tokens=12] [delay=10] round {round}");
        let ask = json!({"type": "ask", "question": question, "ask_id": format!("drop-{round}")});
        send_json(&mut s.ws, ask.clone()).await;
        drop(s.ws);
        s.ws = app.socket(&s.cookie).await;
        send_json(&mut s.ws, ask).await;
        let (again, text) = follow_the_ask_sent_again(&mut s.ws).await;
        assert_eq!(again.end, Some((12, EndReason::Complete)), "round {round}");
        let sent: Vec<_> = app.fake.requests().into_iter().filter(|r| r.messages.iter().any(|m| m.content.contains(&question))).collect();
        assert_eq!(sent.len(), 1, "round {round}: one model request");
        assert_eq!(text, sent[0].answer, "round {round}");
        let stored = questions_stored(&app, &s.cookie).await;
        assert_eq!(stored.iter().filter(|q| **q == question).count(), 1, "round {round}: {stored:?}");
    }
}
