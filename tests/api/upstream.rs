//! The model endpoint misbehaving: every upstream fault and timeout becomes its own
//! error code, and the same connection answers the next question.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn each_upstream_fault_has_its_code_and_the_connection_answers_next() {
    let app = spawn_app().await;
    let mut ws = app.connect().await;
    let faults = [
        ("401", ErrorCode::UpstreamUnauthorized),
        ("429", ErrorCode::RateLimited),
        ("500", ErrorCode::UpstreamUnavailable),
        ("drop", ErrorCode::UpstreamUnavailable),
        ("malformed", ErrorCode::UpstreamUnavailable),
        ("stream_error", ErrorCode::UpstreamUnavailable),
        ("not_sse", ErrorCode::UpstreamUnavailable),
        // A whole answer, but not labelled as an event stream: refused, not shown.
        ("wrong_type", ErrorCode::UpstreamUnavailable),
        ("slow", ErrorCode::Timeout),
    ];
    for (fault, code) in faults {
        let answer = ask(&mut ws, &format!("[tokens=10] [fault={fault}] q")).await;
        let (got, retry_after) = answer.error.unwrap_or_else(|| panic!("{fault}: no error"));
        assert_eq!(got, code, "fault {fault}");
        if fault == "429" {
            assert_eq!(retry_after, Some(7), "Retry-After is passed on");
        }
        if fault == "drop" || fault == "malformed" {
            // Tokens before the fault were delivered, in order.
            assert_eq!(answer.chunks.len(), 5, "fault {fault}");
            assert_seq_in_order(&answer);
        }
        let next = ask(&mut ws, "[tokens=3] still there?").await;
        assert_eq!(next.end, Some((3, EndReason::Complete)), "after {fault}");
    }
}

/// PostgreSQL refuses U+0000 in text, so a model's NUL failed every write of its
/// answer there. It is streamed and stored as U+FFFD, on both backends alike.
#[tokio::test]
async fn a_nul_from_the_model_is_streamed_and_stored_as_a_replacement_character() {
    let app = spawn_app().await;
    let mut student = app.student().await;
    let answer = ask(&mut student.ws, "[tokens=6] [fault=nul] q").await;
    assert_eq!(answer.end.map(|(_, reason)| reason), Some(EndReason::Complete), "{answer:?}");
    let streamed = answer.text();
    assert!(streamed.contains(" a\u{FFFD}b") && !streamed.contains('\0'), "{streamed:?}");
    let stored = app.load(&student.cookie, &answer.conversation_id).await.unwrap();
    let last = stored.messages.last().unwrap();
    assert_eq!((last.content.as_str(), last.status), (streamed.as_str(), MessageStatus::Complete));
}

/// Usage counts that are no `u32` (too large, fractional) do not turn a finished
/// answer into an error, and are not believed: the answer's tokens are estimated, as
/// for a stream with no report (the course's daily budget adds them up).
#[tokio::test]
async fn odd_usage_counts_from_the_model_leave_the_answer_complete_and_estimated() {
    let app = spawn_app().await;
    let mut ws = app.connect().await;
    let answer = ask(&mut ws, "[tokens=4] [fault=odd_usage] q").await;
    assert_eq!(answer.error, None);
    assert_eq!(answer.end, Some((4, EndReason::Complete)));
    let pool = sqlx::AnyPool::connect(app.state.db.url()).await.unwrap();
    let (prompt, completion): (i64, i64) =
        sqlx::query_as("SELECT prompt_tokens, completion_tokens FROM messages WHERE id = $1")
            .bind(&answer.message_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!((1..100_000).contains(&prompt) && (1..1_000).contains(&completion), "{prompt} / {completion}");
    pool.close().await;
}

#[tokio::test]
async fn a_wrong_key_is_upstream_unauthorized() {
    let app = spawn_app_with(|s| s.upstream.api_key = Some("wrong".into())).await;
    let mut ws = app.connect().await;
    let answer = ask(&mut ws, "hello").await;
    assert_eq!(answer.error, Some((ErrorCode::UpstreamUnauthorized, None)));
}

#[tokio::test]
async fn an_unreachable_upstream_is_unavailable() {
    let app = spawn_app_with(|s| s.upstream.base_url = Some("http://127.0.0.1:9/v1".into())).await;
    let mut ws = app.connect().await;
    let answer = ask(&mut ws, "hello").await;
    assert_eq!(answer.error.map(|e| e.0), Some(ErrorCode::UpstreamUnavailable));
}

#[tokio::test]
async fn token_gap_and_total_timeouts() {
    // A gap six times the tokens' own, so that a loaded machine's pause is not one.
    let app = spawn_app_with(|s| s.upstream.token_gap_timeout = Duration::from_millis(600)).await;
    let mut ws = app.connect().await;
    let answer = ask(&mut ws, "[tokens=4] [delay=2000] q").await;
    assert_eq!(answer.error.map(|e| e.0), Some(ErrorCode::Timeout));
    assert_eq!(answer.chunks.len(), 1, "the first token came before the gap");

    // Tokens that keep coming are no gap, however long the answer takes in all.
    let answer = ask(&mut ws, "[tokens=12] [delay=100] q").await;
    assert!(answer.error.is_none(), "{:?}", answer.error);
    assert_eq!(answer.chunks.len(), 12);

    let app = spawn_app_with(|s| s.upstream.total_timeout = Duration::from_millis(500)).await;
    let mut ws = app.connect().await;
    let answer = ask(&mut ws, "[tokens=50] [delay=100] q").await;
    assert_eq!(answer.error.map(|e| e.0), Some(ErrorCode::Timeout));
}
