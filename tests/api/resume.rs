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
