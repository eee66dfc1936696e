//! Asking over the chat socket: answers stream in order and equal what the model
//! sent, one answer at a time per socket, `stop`, earlier turns as context, bad input
//! and foreign origins refused without closing a usable connection.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

#[tokio::test]
async fn answer_streams_in_order_and_equals_what_the_upstream_sent() {
    let app = spawn_app().await;
    let mut ws = app.connect().await;
    let answer = ask(&mut ws, "[tokens=12] What is a WebSocket?").await;
    assert_eq!(answer.error, None);
    assert_eq!(answer.chunks.len(), 12);
    assert_seq_in_order(&answer);
    assert_eq!(answer.end, Some((12, EndReason::Complete)));
    let sent = app.last_request();
    assert!(sent.completed);
    assert_eq!(answer.text(), sent.answer);
    assert_eq!(sent.authorization.as_deref(), Some("Bearer test-key"));
    assert_eq!(sent.model, "fake-model");
    assert_eq!(sent.messages[0].role, "system");
    assert_eq!(sent.messages.last().unwrap().content, "[tokens=12] What is a WebSocket?");
}

#[tokio::test]
async fn the_lesson_client_protocol_works_unchanged() {
    let app = spawn_app().await;
    let mut ws = app.connect().await;
    // Exactly what the course lesson's client sends and reads.
    send_json(&mut ws, json!({"question": "Explain SSE"})).await;
    let mut text = String::new();
    loop {
        let Message::Text(frame) = next_message(&mut ws).await else {
            panic!("text frames only");
        };
        let frame: Value = serde_json::from_str(frame.as_str()).unwrap();
        match frame["type"].as_str().unwrap() {
            "chunk" => text.push_str(frame["content"].as_str().unwrap()),
            "end" => break,
            "error" => panic!("error: {}", frame["message"]),
            _ => {} // frames the lesson client does not know are ignored by it
        }
    }
    assert_eq!(text, app.last_request().answer);
    assert!(!text.is_empty());
}

#[tokio::test]
async fn bad_input_gets_an_error_and_the_connection_stays_usable() {
    let app = spawn_app_with(|s| {
        s.max_frame_bytes = 2048;
        s.max_question_chars = 100;
    })
    .await;
    let mut ws = app.connect().await;
    let cases: Vec<(Message, ErrorCode)> = vec![
        (Message::Text("{not json".into()), ErrorCode::BadRequest),
        (Message::Text(r#"{"type":"dance"}"#.into()), ErrorCode::BadRequest),
        (Message::Text(r#"{"type":"ask"}"#.into()), ErrorCode::BadRequest),
        (Message::Text(r#"{"question":""}"#.into()), ErrorCode::BadRequest),
        (Message::Binary(vec![0, 159, 146, 150].into()), ErrorCode::BadRequest),
        // U+0000, which PostgreSQL cannot store: refused before anything is stored.
        (Message::Text(r#"{"question":"hi\u0000there"}"#.into()), ErrorCode::BadRequest),
        (Message::Text(r#"{"type":"resume","message_id":"m\u0000"}"#.into()), ErrorCode::BadRequest),
        (
            Message::Text(json!({"question": "x".repeat(101)}).to_string().into()),
            ErrorCode::TooLarge,
        ),
        (
            Message::Text(json!({"question": "x".repeat(5000)}).to_string().into()),
            ErrorCode::TooLarge,
        ),
    ];
    for (message, code) in cases {
        ws.send(message.clone()).await.unwrap();
        match next_frame(&mut ws).await {
            ServerFrame::Error {
                code: got,
                message_id: None,
                ..
            } => assert_eq!(got, code, "{message:?}"),
            other => panic!("{message:?} gave {other:?}"),
        }
    }
    assert!(app.fake.requests().is_empty(), "refused input costs no upstream call");
    let answer = ask(&mut ws, "[tokens=2] ok?").await;
    assert_eq!(answer.end, Some((2, EndReason::Complete)));
}

#[tokio::test]
async fn a_frame_over_the_hard_limit_closes_with_1009() {
    let app = spawn_app_with(|s| {
        s.max_frame_bytes = 1024;
        s.hard_frame_bytes = 8 * 1024;
    })
    .await;
    let mut ws = app.connect().await;
    let huge = json!({"question": "x".repeat(20_000)}).to_string();
    ws.send(Message::Text(huge.into())).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame.map(|f| f.code),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(closed, Some(CloseCode::Size));
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_a_missing_session_is_made() {
    let app = spawn_app_with(|s| s.allowed_origins = vec!["https://course.example".into()]).await;
    let cookie = app.session_cookie().await;
    let refused = app
        .try_connect(Some(&cookie), Some("http://evil.example"))
        .await
        .unwrap_err();
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected HTTP 403, got {other}"),
    }
    assert!(app
        .try_connect(Some(&cookie), Some("https://course.example"))
        .await
        .is_ok());
    // No cookie from the page's own origin: a fresh guest session (issue #10/#14),
    // not a refusal; `sessions.rs` checks the cookie it sets.
    let origin = format!("http://{}", app.addr);
    assert!(app.try_connect(None, Some(&origin)).await.is_ok());
}

#[tokio::test]
async fn one_answer_at_a_time_and_stop() {
    let app = spawn_app().await;
    let mut ws = app.connect().await;
    send_json(&mut ws, json!({"question": "[tokens=10] [delay=50] first"})).await;
    send_json(&mut ws, json!({"question": "second"})).await;
    let mut busy = false;
    let mut answer = Answer::default();
    loop {
        match next_frame(&mut ws).await {
            ServerFrame::Error {
                code: ErrorCode::Busy,
                message_id: None,
                ..
            } => busy = true,
            ServerFrame::Start { message_id, .. } => answer.message_id = message_id,
            ServerFrame::Chunk { content, seq, .. } => answer.chunks.push((seq, content)),
            ServerFrame::End { seq, reason, .. } => {
                answer.end = Some((seq, reason));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(busy, "the second question got `busy`");
    assert_eq!(answer.end, Some((10, EndReason::Complete)), "the first answer was untouched");
    assert_eq!(app.fake.requests().len(), 1, "`busy` cost no upstream call");

    send_json(&mut ws, json!({"question": "[tokens=100] [delay=30] long"})).await;
    let mut chunks = 0;
    loop {
        match next_frame(&mut ws).await {
            ServerFrame::Start { .. } => {}
            ServerFrame::Chunk { .. } => {
                chunks += 1;
                if chunks == 3 {
                    send_json(&mut ws, json!({"type": "stop"})).await;
                }
            }
            ServerFrame::End { reason, seq, .. } => {
                assert_eq!(reason, EndReason::Stopped);
                assert!(seq >= 3 && seq < 100);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let next = ask(&mut ws, "[tokens=2] after stop").await;
    assert_eq!(next.end, Some((2, EndReason::Complete)));
}

/// A stop sent right behind the question (Esc pressed before the first token) still
/// stops the answer: the writer may not have started watching for it yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_right_behind_the_question_stops_it() {
    let app = spawn_app().await;
    let mut ws = app.connect().await;
    for round in 0..10 {
        send_json(&mut ws, json!({"question": format!("[tokens=60] [delay=50] round {round}")})).await;
        send_json(&mut ws, json!({"type": "stop"})).await;
        let answer = read_answer(&mut ws).await;
        let (seq, reason) = answer.end.expect("the answer ended");
        assert_eq!(reason, EndReason::Stopped, "round {round}");
        assert!(seq < 60, "round {round}: stopped early, not after all {seq} chunks");
    }
}

#[tokio::test]
async fn earlier_turns_of_the_conversation_reach_the_model() {
    let app = spawn_app().await;
    let mut ws = app.connect().await;
    let first = ask(&mut ws, "[tokens=4] What is SSE?").await;
    send_json(
        &mut ws,
        json!({"type": "ask", "question": "And WebSocket?", "conversation_id": first.conversation_id}),
    )
    .await;
    let second = read_answer(&mut ws).await;
    assert_eq!(second.conversation_id, first.conversation_id);
    let sent = app.last_request();
    let turns = without_sources(&sent);
    let roles: Vec<&str> = turns.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(turns[1].content, "[tokens=4] What is SSE?");
    assert_eq!(turns[2].content, first.text());
}

#[tokio::test]
async fn concurrent_clients_never_see_each_others_tokens() {
    let app = spawn_app().await;
    let mut clients = Vec::new();
    for name in ["alpha", "bravo", "charlie", "delta"] {
        let mut ws = app.connect().await;
        clients.push(tokio::spawn(async move {
            let answer = ask(&mut ws, &format!("[tokens=30] [delay=3] [prefix={name}] hi")).await;
            (name, answer)
        }));
    }
    for client in clients {
        let (name, answer) = client.await.unwrap();
        assert_eq!(answer.end, Some((30, EndReason::Complete)));
        assert_seq_in_order(&answer);
        for (i, (_, content)) in answer.chunks.iter().enumerate() {
            assert_eq!(content, &format!("{name}{i} "));
        }
    }
}
