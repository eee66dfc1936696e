//! The question budget (issue #14, part 2): a token bucket per student in the
//! database, shown as a meter. The app's clock is a manual one here, so "one back
//! every 6 s" is tested to the millisecond without sleeping.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

const START: i64 = 1_900_000_000_000;

fn budget(remaining: u32, next_refill_ms: u64) -> ServerFrame {
    ServerFrame::Budget {
        remaining,
        capacity: 2,
        refill_ms: 6_000,
        next_refill_ms,
    }
}

async fn two_every_six(clock: &Clock, database_url: Option<String>) -> TestApp {
    spawn_app_with(|s| {
        s.question_budget = 2;
        s.question_refill = Duration::from_secs(6);
        s.clock = clock.clone();
        if database_url.is_some() {
            s.database_url = database_url;
        }
    })
    .await
}

/// The next `budget` frame, passing over the frames of an answer on the way.
/// The next frame that is not another tab's doing (`conversation_changed`: every tab
/// of the student hears the others' questions).
async fn next_own_frame(ws: &mut Ws) -> ServerFrame {
    loop {
        match next_frame(ws).await {
            ServerFrame::ConversationChanged { .. } => continue,
            frame => return frame,
        }
    }
}

async fn next_budget(ws: &mut Ws) -> ServerFrame {
    loop {
        match next_frame(ws).await {
            frame @ ServerFrame::Budget { .. } => return frame,
            ServerFrame::Start { .. } | ServerFrame::Chunk { .. } | ServerFrame::End { .. } | ServerFrame::ConversationChanged { .. } => {}
            other => panic!("expected a budget frame, got {other:?}"),
        }
    }
}

/// Asks and reads the answer to its end and the budget it left (in either order).
async fn ask_with_budget(ws: &mut Ws, question: &str, conversation_id: Option<&str>) -> (Answer, ServerFrame) {
    let mut answer = ask_in(ws, question, conversation_id).await;
    let left = match answer.budgets.pop() {
        Some(left) => left,
        None => next_budget(ws).await,
    };
    (answer, left)
}

#[tokio::test]
async fn the_budget_refills_on_the_clock_and_every_socket_and_instance_sees_the_same_count() {
    let clock = Clock::manual(START);
    let app = two_every_six(&clock, None).await;
    let cookie = app.session_cookie().await;
    let mut a = app.socket(&cookie).await;
    assert_eq!(next_own_frame(&mut a).await, budget(2, 0), "a new student's budget is full");

    let (first, left) = ask_with_budget(&mut a, "[tokens=2] one", None).await;
    assert_eq!(first.end.map(|e| e.1), Some(EndReason::Complete));
    assert_eq!(left, budget(1, 6_000));
    let id = first.conversation_id.clone();

    // A second tab starts from the server's count.
    let mut b = app.socket(&cookie).await;
    assert_eq!(next_own_frame(&mut b).await, budget(1, 6_000));

    // 2.5 s later the second tab asks: both tabs see the budget it left.
    clock.advance(2_500);
    let (_, left) = ask_with_budget(&mut b, "[tokens=2] two", Some(&id)).await;
    assert_eq!(left, budget(0, 3_500));
    assert_eq!(next_budget(&mut a).await, budget(0, 3_500), "the other tab's meter moves too");

    // Empty: the first tab is refused, with the seconds until the next question and
    // the exact milliseconds for the meter; nothing is stored, no model call.
    let calls = app.fake.requests().len();
    send_json(&mut a, json!({"type": "ask", "question": "[tokens=2] three", "conversation_id": id})).await;
    match next_own_frame(&mut a).await {
        ServerFrame::Error { code: ErrorCode::RateLimited, retry_after: Some(4), message_id: None, .. } => {}
        other => panic!("expected rate_limited with retry_after 4, got {other:?}"),
    }
    assert_eq!(next_own_frame(&mut a).await, budget(0, 3_500));
    assert_eq!(app.fake.requests().len(), calls);

    // One millisecond short of the refill: still refused.
    clock.advance(3_499);
    send_json(&mut a, json!({"type": "ask", "question": "[tokens=2] three", "conversation_id": id})).await;
    assert!(matches!(next_own_frame(&mut a).await, ServerFrame::Error { code: ErrorCode::RateLimited, retry_after: Some(1), .. }));
    assert_eq!(next_own_frame(&mut a).await, budget(0, 1));

    // At 6 s one question is back; asking it leaves none, the next a full refill away.
    clock.advance(1);
    let (third, left) = ask_with_budget(&mut a, "[tokens=2] three", Some(&id)).await;
    assert_eq!(third.end.map(|e| e.1), Some(EndReason::Complete));
    assert_eq!(left, budget(0, 6_000));
    assert_eq!(next_budget(&mut b).await, budget(0, 6_000));
    let view = app.load(&cookie, &id).await.unwrap();
    assert_eq!(view.messages.len(), 6, "three questions and answers; the refused ones left nothing");

    // Another instance on the same database (and clock) counts the same budget.
    let other = two_every_six(&clock, app.state.settings.database_url.clone()).await;
    let mut elsewhere = other.socket(&cookie).await;
    assert_eq!(next_frame(&mut elsewhere).await, budget(0, 6_000));
    // Idle long enough, the budget is full again, and no fuller.
    clock.advance(60_000);
    let mut later = other.socket(&cookie).await;
    assert_eq!(next_frame(&mut later).await, budget(2, 0));

    // Another student has a budget of their own.
    let mut stranger = app.student().await;
    assert_eq!(next_frame(&mut stranger.ws).await, budget(2, 0));
}

#[tokio::test]
async fn without_a_budget_no_meter_is_sent() {
    let mut s = spawn_app_with(|s| s.question_budget = 0).await.student().await;
    // The first frame after hello is the answer's own.
    send_json(&mut s.ws, json!({"type": "ask", "question": "[tokens=1] hi"})).await;
    let ServerFrame::Start { message_id, .. } = next_frame(&mut s.ws).await else {
        panic!("expected the answer's start");
    };
    let rest = read_rest(&mut s.ws, message_id).await;
    assert!(rest.budgets.is_empty() && rest.end.is_some());
}

#[tokio::test]
async fn signing_in_does_not_refill_the_budget() {
    let clock = Clock::manual(START);
    let app = two_every_six(&clock, None).await;
    app.signed_up("budget-ann", "a long enough password").await;
    // Another browser, as a guest, spends the budget, then signs in to the account.
    let guest = app.session_cookie().await;
    let mut ws = app.socket(&guest).await;
    assert_eq!(next_frame(&mut ws).await, budget(2, 0));
    ask_with_budget(&mut ws, "[tokens=1] one", None).await;
    let (_, left) = ask_with_budget(&mut ws, "[tokens=1] two", None).await;
    assert_eq!(left, budget(0, 6_000));
    let (status, cookie, body) = app
        .account_form(&guest, "signin", &[("username", "budget-ann"), ("password", "a long enough password")])
        .await;
    assert!(status < 400, "{body}");
    let mut signed_in = app.socket(&cookie.expect("a new session")).await;
    assert_eq!(next_frame(&mut signed_in).await, budget(0, 6_000), "the guest's spent budget came along");
}
