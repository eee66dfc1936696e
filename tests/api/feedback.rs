//! Feedback on answers (issue #11): 👍 / 👎 with reasons and a comment, changed and
//! withdrawn, only on one's own finished answers, also as a plain HTML form.

use crate::helpers::*;

async fn rate(app: &TestApp, cookie: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let (status, body) = app.call(cookie, "feedback/rate", form).await;
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
}

/// The rating stored on the conversation's answer, as the history returns it.
async fn stored(app: &TestApp, cookie: &str, conversation: &str) -> Option<Feedback> {
    app.load(cookie, conversation).await.unwrap().messages[1].feedback.clone()
}

#[tokio::test]
async fn a_student_rates_an_answer_changes_the_rating_and_withdraws_it() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let answer = ask_in(&mut s.ws, "[tokens=3] what is SSE?", None).await;
    let id = answer.message_id.as_str();

    let (status, body) = rate(&app, &s.cookie, &[("message_id", id), ("rating", "up")]).await;
    assert_eq!(status, 200, "{body}");
    let up = stored(&app, &s.cookie, &answer.conversation_id).await.unwrap();
    assert_eq!(serde_json::to_value(&up).unwrap()["rating"], "up");

    let form = [
        ("message_id", id),
        ("rating", "down"),
        ("wrong", "on"),
        ("too_long", "on"),
        ("comment", "  The example uses the wrong event name.  "),
    ];
    let (status, body) = rate(&app, &s.cookie, &form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rating"], "down");
    let down = serde_json::to_value(stored(&app, &s.cookie, &answer.conversation_id).await.unwrap()).unwrap();
    assert_eq!(down["rating"], "down");
    assert_eq!(down["reasons"], serde_json::json!(["wrong", "too_long"]));
    assert_eq!(down["comment"], "The example uses the wrong event name.");

    let (status, body) = rate(&app, &s.cookie, &[("message_id", id), ("rating", "none")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::Value::Null);
    assert_eq!(stored(&app, &s.cookie, &answer.conversation_id).await, None);

    // A rated conversation deletes cleanly, rating and all.
    rate(&app, &s.cookie, &[("message_id", id), ("rating", "up")]).await;
    let (status, body) = app.call(&s.cookie, "history/delete", &[("id", answer.conversation_id.as_str())]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn only_ones_own_finished_answers_can_be_rated() {
    let app = spawn_app().await;
    let mut owner = app.student().await;
    let answer = ask_in(&mut owner.ws, "[tokens=2] mine", None).await;
    let other = app.student().await;
    let (status, body) = rate(&app, &other.cookie, &[("message_id", &answer.message_id), ("rating", "down")]).await;
    assert_ne!(status, 200);
    assert_eq!(body["code"], "not_found", "someone else's answer is not found");
    // A question is not an answer; a made-up id is nothing.
    let question = app.load(&owner.cookie, &answer.conversation_id).await.unwrap().messages[0].id.clone();
    for id in [question.as_str(), "no-such-message"] {
        let (_, body) = rate(&app, &owner.cookie, &[("message_id", id), ("rating", "up")]).await;
        assert_eq!(body["code"], "not_found", "{id}");
    }
    // Bad input is refused and stores nothing.
    let (_, body) = rate(&app, &owner.cookie, &[("message_id", &answer.message_id), ("rating", "sideways")]).await;
    assert_eq!(body["code"], "bad_request");
    let long = "x".repeat(501);
    let (_, body) =
        rate(&app, &owner.cookie, &[("message_id", &answer.message_id), ("rating", "down"), ("comment", &long)]).await;
    assert_eq!(body["code"], "comment_too_long");
    assert_eq!(app.load(&owner.cookie, &answer.conversation_id).await.unwrap().messages[1].feedback, None);
}

#[tokio::test]
async fn the_rating_form_works_without_javascript() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let answer = ask_in(&mut s.ws, "[tokens=2] rate me without scripts", None).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client
        .post(format!("http://{}/api/feedback/rate", app.addr))
        .header("cookie", &s.cookie)
        .header("origin", format!("http://{}", app.addr))
        .header("accept", "text/html,application/xhtml+xml")
        .form(&[("message_id", answer.message_id.as_str()), ("rating", "down"), ("unclear", "on"), ("comment", "lost me")])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let location = response.headers().get("location").unwrap().to_str().unwrap().to_string();
    assert_eq!(location, format!("/c/{}#{}", answer.conversation_id, answer.message_id));
    // The conversation's page shows the rating, its reason ticked and the comment.
    let html = app.page(&s.cookie, &format!("/c/{}", answer.conversation_id)).await;
    assert!(html.contains(r#"data-rating="down""#), "{html}");
    assert!(html.contains(r#"name="unclear" value="on" checked"#), "the reason is ticked");
    assert!(html.contains("lost me"), "the comment is shown");
}
