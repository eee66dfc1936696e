//! Limits (issue #4): the question budget across reconnects and instances (its refill
//! is in budget.rs), answers at once server-wide, sockets and conversations per student.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

fn expect_rate_limited(answer: &Answer) -> u64 {
    match answer.error {
        Some((ErrorCode::RateLimited, Some(retry_after))) => {
            assert!((1..=60).contains(&retry_after), "retry_after {retry_after}");
            assert!(answer.message_id.is_empty() && answer.chunks.is_empty(), "nothing started");
            retry_after
        }
        ref other => panic!("expected rate_limited with retry_after, got {other:?}"),
    }
}

#[tokio::test]
async fn the_rate_limit_holds_across_reconnects_and_instances_and_a_refusal_costs_nothing() {
    let app = spawn_app_with(|s| {
        s.question_budget = 3;
        s.question_refill = Duration::from_secs(60);
    })
    .await;
    let mut s = app.student().await;
    let first = ask_in(&mut s.ws, "[tokens=2] one", None).await;
    let id = first.conversation_id.clone();
    for q in ["[tokens=2] two", "[tokens=2] three"] {
        assert_eq!(ask_in(&mut s.ws, q, Some(&id)).await.end.map(|e| e.1), Some(EndReason::Complete));
    }
    let calls = app.fake.requests().len();
    expect_rate_limited(&ask_in(&mut s.ws, "[tokens=2] four", Some(&id)).await);
    assert!(matches!(next_frame(&mut s.ws).await, ServerFrame::Budget { remaining: 0, .. }), "the refusal's budget");
    // The same connection still works for everything else.
    send_json(&mut s.ws, json!({"type": "ping", "t": 1})).await;
    assert!(matches!(next_frame(&mut s.ws).await, ServerFrame::Pong { .. }));

    // A reconnect (a new tab) is the same student: still refused.
    let origin = format!("http://{}", app.addr);
    let mut again = app.try_connect(Some(&s.cookie), Some(&origin)).await.unwrap();
    next_frame(&mut again).await;
    expect_rate_limited(&ask_in(&mut again, "[tokens=2] five", None).await);

    // Another instance on the same database: still refused.
    let database_url = app.state.settings.database_url.clone();
    let other = spawn_app_with(|s| {
        s.question_budget = 3;
        s.question_refill = Duration::from_secs(60);
        s.database_url = database_url;
    })
    .await;
    let other_origin = format!("http://{}", other.addr);
    let mut elsewhere = other.try_connect(Some(&s.cookie), Some(&other_origin)).await.unwrap();
    next_frame(&mut elsewhere).await;
    expect_rate_limited(&ask_in(&mut elsewhere, "[tokens=2] six", Some(&id)).await);

    // Refused questions cost no model call and store nothing.
    assert_eq!(app.fake.requests().len(), calls);
    assert!(other.fake.requests().is_empty());
    let view = app.load(&s.cookie, &id).await.unwrap();
    assert_eq!(view.messages.len(), 6, "three questions and three answers, nothing else");
    assert_eq!(app.list(&s.cookie).await.items.len(), 1, "no conversation for the refused new chat");

    // Deleting the conversation does not hand the quota back.
    let (status, _) = app.call(&s.cookie, "history/delete", &[("id", &id)]).await;
    assert_eq!(status, 200);
    expect_rate_limited(&ask_in(&mut s.ws, "[tokens=2] seven", None).await);

    // Someone else is not limited by this student.
    let mut other_student = app.student().await;
    assert_eq!(ask_in(&mut other_student.ws, "[tokens=2] hi", None).await.end.map(|e| e.1), Some(EndReason::Complete));
}

#[tokio::test]
async fn a_server_wide_cap_on_answers_at_once_answers_busy_and_stores_nothing() {
    let app = spawn_app_with(|s| s.max_concurrent_answers = 1).await;
    let mut a = app.student().await;
    let mut b = app.student().await;
    send_json(&mut a.ws, json!({"type": "ask", "question": "[tokens=40] [delay=25] a long one"})).await;
    let ServerFrame::Start { message_id, .. } = next_frame(&mut a.ws).await else { panic!("no start") };
    let refused = ask_in(&mut b.ws, "[tokens=2] me too", None).await;
    assert_eq!(refused.error, Some((ErrorCode::ServerBusy, Some(5))));
    assert!(app.list(&b.cookie).await.items.is_empty(), "the refused question was not stored");
    // When the first answer ends, its place is free.
    let first = read_rest(&mut a.ws, message_id).await;
    assert_eq!(first.end.map(|e| e.1), Some(EndReason::Complete));
    let later = ask_in(&mut b.ws, "[tokens=2] me too", None).await;
    assert_eq!(later.end.map(|e| e.1), Some(EndReason::Complete));
}

#[tokio::test]
async fn open_sockets_per_user_are_capped_and_a_closed_one_frees_its_place() {
    let app = spawn_app_with(|s| s.max_connections_per_user = 2).await;
    let cookie = app.session_cookie().await;
    let origin = format!("http://{}", app.addr);
    let first = app.try_connect(Some(&cookie), Some(&origin)).await.unwrap();
    let _second = app.try_connect(Some(&cookie), Some(&origin)).await.unwrap();
    // Refused once open, so that the page can tell why (a browser cannot read the
    // status of a refused upgrade).
    assert_eq!(app.open_or_refused(Some(&cookie)).await.err(), Some(TOO_MANY_CONNECTIONS));
    // Another student is not affected.
    let other_cookie = app.session_cookie().await;
    app.try_connect(Some(&other_cookie), Some(&origin)).await.unwrap();
    // Closing one tab frees a place (the server notices the close).
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if app.open_or_refused(Some(&cookie)).await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the closed socket's place was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn conversations_per_user_are_capped_and_old_ones_can_still_be_continued() {
    let app = spawn_app_with(|s| s.max_conversations_per_user = 2).await;
    let mut s = app.student().await;
    let one = ask_in(&mut s.ws, "[tokens=1] one", None).await;
    ask_in(&mut s.ws, "[tokens=1] two", None).await;
    let third = ask_in(&mut s.ws, "[tokens=1] three", None).await;
    assert_eq!(third.error.map(|e| e.0), Some(ErrorCode::LimitReached));
    assert_eq!(app.list(&s.cookie).await.items.len(), 2);
    let more = ask_in(&mut s.ws, "[tokens=1] more", Some(&one.conversation_id)).await;
    assert_eq!(more.end.map(|e| e.1), Some(EndReason::Complete));
    // Deleting one makes room.
    let (status, _) = app.call(&s.cookie, "history/delete", &[("id", &one.conversation_id)]).await;
    assert_eq!(status, 200);
    assert_eq!(ask_in(&mut s.ws, "[tokens=1] new", None).await.end.map(|e| e.1), Some(EndReason::Complete));
}
