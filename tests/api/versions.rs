//! Versions of questions and answers (issue #14, part 1): regenerate the last answer,
//! edit a question and send it again, switch between versions; the model receives
//! exactly the branch on screen, the page is rendered with it, and each version keeps
//! its own rating. Runs on SQLite and PostgreSQL like every API test.

use serde_json::json;

use crate::helpers::*;

async fn regenerate(ws: &mut Ws, answer_id: &str) -> Answer {
    send_json(ws, json!({"type": "regenerate", "message_id": answer_id})).await;
    read_answer(ws).await
}

async fn edit(ws: &mut Ws, question_id: &str, question: &str) -> Answer {
    send_json(ws, json!({"type": "edit", "message_id": question_id, "question": question})).await;
    read_answer(ws).await
}

async fn show_version(app: &TestApp, cookie: &str, conversation: &str, message_id: &str) -> (u16, String) {
    app.call(cookie, "history/show-version", &[("id", conversation), ("message_id", message_id)]).await
}

/// The conversation as the page shows it: (role, text) of each message on the branch.
async fn branch(app: &TestApp, cookie: &str, conversation: &str) -> Vec<(MessageRole, String)> {
    let view = app.load(cookie, conversation).await.unwrap();
    view.messages.iter().map(|m| (m.role, m.content.clone())).collect()
}

/// What the model was sent last: each turn's role and text (system prompt and sources
/// left out).
fn sent_turns(app: &TestApp) -> Vec<(String, String)> {
    let sent = app.last_request();
    without_sources(&sent)
        .into_iter()
        .filter(|m| m.role != "system")
        .map(|m| (m.role.clone(), m.content.clone()))
        .collect()
}

fn turn(role: &str, text: &str) -> (String, String) {
    (role.to_string(), text.to_string())
}

#[tokio::test]
async fn regenerate_and_edit_make_versions_and_the_model_reads_the_branch_on_screen() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    // `[stamp]`: every answer's text differs, so versions can be told apart.
    let q1 = "[tokens=3] [stamp] What is SSE?";
    let q2 = "[tokens=3] [stamp] And WebSocket?";
    let a1 = ask_in(&mut s.ws, q1, None).await;
    let conversation = a1.conversation_id.clone();
    let a2 = ask_in(&mut s.ws, q2, Some(&conversation)).await;
    let q1_id = a1.question_id.clone().expect("start names the question");
    let q2_id = a2.question_id.clone().expect("start names the question");

    // Regenerate the last answer: a new version of it, from the conversation before it.
    let a2b = regenerate(&mut s.ws, &a2.message_id).await;
    assert_eq!(a2b.end.map(|e| e.1), Some(EndReason::Complete), "{:?}", a2b.error);
    assert_eq!(a2b.replaces.as_deref(), Some(a2.message_id.as_str()));
    assert_eq!(a2b.question_id.as_deref(), Some(q2_id.as_str()), "the same question, asked again");
    assert_eq!(a2b.conversation_id, conversation);
    assert_ne!(a2b.text(), a2.text());
    assert_eq!(
        sent_turns(&app),
        vec![turn("user", q1), turn("assistant", &a1.text()), turn("user", q2)],
        "the model gets the conversation before the answer, not the answer it replaces"
    );
    let view = app.load(&s.cookie, &conversation).await.unwrap();
    assert_eq!(
        branch(&app, &s.cookie, &conversation).await,
        vec![
            (MessageRole::User, q1.to_string()),
            (MessageRole::Assistant, a1.text()),
            (MessageRole::User, q2.to_string()),
            (MessageRole::Assistant, a2b.text()),
        ]
    );
    assert_eq!(view.messages[3].versions, vec![a2.message_id.clone(), a2b.message_id.clone()]);
    assert!(view.messages[2].versions.is_empty(), "the question has one version");

    // Edit the first question: the conversation goes on from the new text alone.
    let q1b = "[tokens=2] [stamp] What is SSE, briefly?";
    let b1 = edit(&mut s.ws, &q1_id, q1b).await;
    assert_eq!(b1.end.map(|e| e.1), Some(EndReason::Complete), "{:?}", b1.error);
    assert_eq!(b1.replaces.as_deref(), Some(q1_id.as_str()));
    assert_eq!(sent_turns(&app), vec![turn("user", q1b)], "nothing of the other branch reaches the model");
    let view = app.load(&s.cookie, &conversation).await.unwrap();
    assert_eq!(
        branch(&app, &s.cookie, &conversation).await,
        vec![(MessageRole::User, q1b.to_string()), (MessageRole::Assistant, b1.text())]
    );
    let q1b_id = b1.question_id.clone().unwrap();
    assert_eq!(view.messages[0].versions, vec![q1_id.clone(), q1b_id.clone()]);

    // Back to the first version of the question: the branch below it comes back, with
    // its newest answer.
    let (status, body) = show_version(&app, &s.cookie, &conversation, &q1_id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        branch(&app, &s.cookie, &conversation).await,
        vec![
            (MessageRole::User, q1.to_string()),
            (MessageRole::Assistant, a1.text()),
            (MessageRole::User, q2.to_string()),
            (MessageRole::Assistant, a2b.text()),
        ]
    );
    // And the first version of the answer.
    let (status, body) = show_version(&app, &s.cookie, &conversation, &a2.message_id).await;
    assert_eq!(status, 200, "{body}");
    let view = app.load(&s.cookie, &conversation).await.unwrap();
    assert_eq!(view.messages[3].content, a2.text());
    assert_eq!(view.messages[3].versions, vec![a2.message_id.clone(), a2b.message_id.clone()]);
    assert_eq!(view.messages[0].versions, vec![q1_id.clone(), q1b_id.clone()]);

    // The page, rendered on the server, shows that branch and where each fork stands.
    let html = app.page(&s.cookie, &format!("/c/{conversation}")).await;
    assert!(html.contains(&a2.text()), "the chosen answer is on the page");
    assert!(!html.contains(&a2b.text()), "the other version is not");
    assert!(!html.contains("What is SSE, briefly?"), "nor the other question");
    assert!(html.contains("1 / 2"), "the switchers say which version is shown");

    // The next question continues from the version on screen.
    let q3 = "[tokens=2] third";
    let a3 = ask_in(&mut s.ws, q3, Some(&conversation)).await;
    assert_eq!(a3.end.map(|e| e.1), Some(EndReason::Complete));
    assert_eq!(
        sent_turns(&app),
        vec![
            turn("user", q1),
            turn("assistant", &a1.text()),
            turn("user", q2),
            turn("assistant", &a2.text()),
            turn("user", q3),
        ]
    );

    // The export is the branch on screen too.
    let markdown = app.page(&s.cookie, &format!("/c/{conversation}/export.md")).await;
    assert!(markdown.contains(a2.text().trim()) && !markdown.contains(a2b.text().trim()), "{markdown}");
}

#[tokio::test]
async fn each_version_keeps_its_own_rating() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let first = ask(&mut s.ws, "[tokens=3] [stamp] what is SSE?").await;
    let (status, body) = app
        .call(&s.cookie, "feedback/rate", &[("message_id", &first.message_id), ("rating", "down"), ("wrong", "on")])
        .await;
    assert_eq!(status, 200, "{body}");
    let second = regenerate(&mut s.ws, &first.message_id).await;
    assert_eq!(second.end.map(|e| e.1), Some(EndReason::Complete), "{:?}", second.error);
    let view = app.load(&s.cookie, &first.conversation_id).await.unwrap();
    assert_eq!(view.messages[1].id, second.message_id);
    assert!(view.messages[1].feedback.is_none(), "a new version starts unrated");
    let (status, body) = app
        .call(&s.cookie, "feedback/rate", &[("message_id", &second.message_id), ("rating", "up")])
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = show_version(&app, &s.cookie, &first.conversation_id, &first.message_id).await;
    assert_eq!(status, 200, "{body}");
    let view = app.load(&s.cookie, &first.conversation_id).await.unwrap();
    let rating = serde_json::to_value(view.messages[1].feedback.clone().unwrap()).unwrap();
    assert_eq!(rating["rating"], "down", "the first version kept its 👎");
}

#[tokio::test]
async fn versions_are_refused_with_a_reason_and_change_nothing() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let a1 = ask(&mut s.ws, "[tokens=2] one").await;
    let conversation = a1.conversation_id.clone();
    let a2 = ask_in(&mut s.ws, "[tokens=2] two", Some(&conversation)).await;
    let before = branch(&app, &s.cookie, &conversation).await;
    let calls = app.fake.requests().len();

    let not_last = regenerate(&mut s.ws, &a1.message_id).await;
    assert_eq!(not_last.error.map(|e| e.0), Some(ErrorCode::BadRequest), "only the last answer");
    let question = a1.question_id.clone().unwrap();
    let wrong_kind = regenerate(&mut s.ws, &question).await;
    assert_eq!(wrong_kind.error.map(|e| e.0), Some(ErrorCode::NotFound), "a question is not regenerated");
    let wrong_kind = edit(&mut s.ws, &a2.message_id, "[tokens=2] new").await;
    assert_eq!(wrong_kind.error.map(|e| e.0), Some(ErrorCode::NotFound), "an answer is not edited");
    send_json(&mut s.ws, json!({"type": "edit", "message_id": question, "question": "   "})).await;
    assert!(matches!(next_frame(&mut s.ws).await, ServerFrame::Error { code: ErrorCode::BadRequest, .. }));

    // Someone else's messages are not there at all.
    let mut other = app.student().await;
    let _ = ask(&mut other.ws, "[tokens=1] mine").await;
    let theirs = regenerate(&mut other.ws, &a2.message_id).await;
    assert_eq!(theirs.error.map(|e| e.0), Some(ErrorCode::NotFound));
    let theirs = edit(&mut other.ws, &question, "[tokens=1] hijack").await;
    assert_eq!(theirs.error.map(|e| e.0), Some(ErrorCode::NotFound));
    let (status, body) = show_version(&app, &other.cookie, &conversation, &a2.message_id).await;
    assert!(status != 200 && body.contains("not_found"), "{status} {body}");
    let (status, body) = show_version(&app, &s.cookie, &conversation, "no-such-message").await;
    assert!(status != 200 && body.contains("not_found"), "{status} {body}");

    // While an answer is being written (in another tab), no fork above it.
    let origin = format!("http://{}", app.addr);
    let mut tab = app.try_connect(Some(&s.cookie), Some(&origin)).await.unwrap();
    next_frame(&mut tab).await;
    send_json(&mut s.ws, json!({"type": "ask", "question": "[tokens=50] [delay=30] three", "conversation_id": conversation}))
        .await;
    let ServerFrame::Start { message_id: streaming, .. } = next_frame(&mut s.ws).await else { panic!("no start") };
    let busy = edit(&mut tab, &question, "[tokens=1] one, edited").await;
    assert_eq!(busy.error.map(|e| e.0), Some(ErrorCode::Busy), "an answer is still being written");
    let rest = read_rest(&mut s.ws, streaming).await;
    assert_eq!(rest.end.map(|e| e.1), Some(EndReason::Complete));

    // Two questions were asked since (the other student's and "three"); no refusal called the model.
    assert_eq!(app.fake.requests().len(), calls + 2, "refusals cost no model call");
    let after = branch(&app, &s.cookie, &conversation).await;
    assert_eq!(&after[..4], &before[..], "the refusals changed nothing");
}

#[tokio::test]
async fn a_regenerate_takes_a_question_from_the_budget() {
    let app = spawn_app_with(|s| {
        s.question_budget = 2;
        s.question_refill = std::time::Duration::from_secs(600);
    })
    .await;
    let mut s = app.student().await;
    let first = ask(&mut s.ws, "[tokens=2] one").await;
    assert!(first.error.is_none());
    let again = regenerate(&mut s.ws, &first.message_id).await;
    assert!(again.error.is_none(), "{:?}", again.error);
    let refused = regenerate(&mut s.ws, &again.message_id).await;
    assert_eq!(refused.error.map(|e| e.0), Some(ErrorCode::RateLimited), "the budget is spent by the regenerate");
    let view = app.load(&s.cookie, &first.conversation_id).await.unwrap();
    assert_eq!(view.messages[1].versions.len(), 2, "the refused regenerate made no version");
}

#[tokio::test]
async fn a_failed_answer_can_be_asked_again() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let failed = ask(&mut s.ws, "[fault=500] [tokens=2] one").await;
    assert_eq!(failed.error.map(|e| e.0), Some(ErrorCode::UpstreamUnavailable));
    // Asked again: a new version (the test model fails this question every time, so
    // this one fails too; with a real model a retry is the point).
    let again = regenerate(&mut s.ws, &failed.message_id).await;
    assert_eq!(again.error.map(|e| e.0), Some(ErrorCode::UpstreamUnavailable));
    assert_ne!(again.message_id, failed.message_id);
    let view = app.load(&s.cookie, &failed.conversation_id).await.unwrap();
    assert_eq!(view.messages.len(), 2);
    assert_eq!(view.messages[1].versions, vec![failed.message_id.clone(), again.message_id.clone()]);
}

/// The network drops after a `regenerate` or an `edit` went out and before its `start`
/// came back: the page sends the same frame (its `ask_id`) on the next connection. One
/// version is made and answered once, and the frame sent again follows it, named as the
/// new version it is (`replaces`), so the page reads the conversation again.
#[tokio::test]
async fn a_version_sent_again_after_a_drop_is_made_once() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let question = "[tokens=20] [delay=10] [stamp] What is SSE?";
    let first = ask_in(&mut s.ws, question, None).await;
    let question_id = first.question_id.clone().unwrap();
    let conversation = first.conversation_id.clone();
    let model_calls = |app: &TestApp, text: &str| {
        app.fake.requests().iter().filter(|r| r.messages.iter().any(|m| m.content.contains(text))).count()
    };

    // Regenerate: its `start` was on the way when the connection dropped. The frame sent
    // again finds its answer's target already off the branch, and follows the new one.
    let regenerate = json!({"type": "regenerate", "message_id": first.message_id, "ask_id": "v-1"});
    let (student, begun, again, text) = send_again_after_its_start(&app, s, regenerate).await;
    s = student;
    let begun = begun.message_id;
    assert_eq!(again.message_id, begun, "the version begun, followed");
    assert_eq!(again.replaces.as_deref(), Some(first.message_id.as_str()));
    assert_eq!(again.question_id.as_deref(), Some(question_id.as_str()));
    assert_eq!(again.end.map(|e| e.1), Some(EndReason::Complete));
    assert_eq!(text, app.last_request().answer, "the whole answer, once");
    assert_eq!(model_calls(&app, question), 2, "the first answer and one version");
    let view = app.load(&s.cookie, &conversation).await.unwrap();
    assert_eq!(view.messages[1].versions, vec![first.message_id.clone(), begun.clone()]);

    // Sent once more after the student went back to the first answer: its target is on
    // the branch again, so the fork is allowed, and the stored key alone finds the
    // version begun (the transaction rolls back; the budget and branch are as they were).
    let (status, body) = show_version(&app, &s.cookie, &conversation, &first.message_id).await;
    assert_eq!(status, 200, "{body}");
    send_json(&mut s.ws, json!({"type": "regenerate", "message_id": first.message_id, "ask_id": "v-1"})).await;
    let (again, _) = follow_the_ask_sent_again(&mut s.ws).await;
    assert_eq!((again.message_id.as_str(), again.replaces.as_deref()), (begun.as_str(), Some(first.message_id.as_str())));
    assert_eq!(model_calls(&app, question), 2, "still one version");
    let view = app.load(&s.cookie, &conversation).await.unwrap();
    assert_eq!(view.messages[1].versions, vec![first.message_id.clone(), begun.clone()]);
    assert_eq!(view.messages[1].id, first.message_id, "the branch the student chose");

    // Edit: the same, for a new version of the question.
    let edited = "[tokens=20] [delay=10] What is SSE, briefly?";
    let edit = json!({"type": "edit", "message_id": question_id, "question": edited, "ask_id": "v-2"});
    let (student, begun, again, text) = send_again_after_its_start(&app, s, edit).await;
    s = student;
    let begun = begun.question_id.unwrap();
    assert_eq!(again.question_id.as_deref(), Some(begun.as_str()), "the edited question begun, followed");
    assert_eq!(again.replaces.as_deref(), Some(question_id.as_str()));
    assert_eq!(again.end.map(|e| e.1), Some(EndReason::Complete));
    assert_eq!(model_calls(&app, edited), 1, "one model request");
    assert_eq!(text, app.last_request().answer);
    let view = app.load(&s.cookie, &conversation).await.unwrap();
    assert_eq!(branch(&app, &s.cookie, &conversation).await, vec![(MessageRole::User, edited.into()), (MessageRole::Assistant, text)]);
    assert_eq!(view.messages[0].versions, vec![question_id.clone(), begun]);
}
