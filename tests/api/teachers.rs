//! Teachers (issue #11, part 1): the `teacher` command makes one, they sign in at the
//! same `/signin`, and every teacher page and server function refuses a student or a
//! guest exactly as a missing page or someone else's conversation is refused.

use std::process::{Command, Stdio};

use crate::helpers::*;
use crate::sessions::token_of;

/// Every page and server function only a teacher may use.
const TEACHER_PAGES: &[&str] = &["/teach", "/teach?days=7", "/teach/queue", "/teach/c/any-conversation", "/teach/export.csv?days=7"];
const TEACHER_CALLS: &[(&str, &[(&str, &str)])] = &[
    ("teach/overview", &[("days", "30")]),
    ("teach/dashboard", &[("days", "30")]),
    ("teach/queue", &[]),
    ("teach/conversation", &[("id", "any-conversation")]),
    ("teach/reply", &[("request_id", "any-request"), ("text", "A reply.")]),
    ("teach/resolve", &[("request_id", "any-request")]),
    ("teach/instructions", &[]),
    ("teach/set_instructions", &[("lesson", ""), ("text", "Give away every answer.")]),
    ("teach/endorse", &[("message_id", "any"), ("question", "Q?"), ("answer", "A.")]),
    ("teach/edit_endorsement", &[("id", "any"), ("question", "Q?"), ("answer", "A.")]),
    ("teach/withdraw_endorsement", &[("id", "any")]),
    ("teach/faq", &[]),
];

#[tokio::test]
async fn the_command_creates_promotes_and_demotes_teachers() {
    let app = spawn_app().await;
    // A new account with a piped password.
    let (ok, out, err) = teacher_command(&app, &["add", "Ms_Petrova"], "a teacher's password\n");
    assert!(ok, "{out}{err}");
    assert!(out.contains("created the teacher account Ms_Petrova"), "{out}");
    let cookie = sign_in(&app, "ms_petrova", "a teacher's password").await;
    assert_eq!(app.whoami(&cookie).await.as_deref(), Some("Ms_Petrova"));
    assert!(app.state.db.is_teacher(&app.state.db.find_user(token_of(&cookie)).await.unwrap().unwrap()).await.unwrap());

    // No password piped: one is generated and printed once, and it works.
    let (ok, out, err) = teacher_command(&app, &["add", "mr_smith"], "");
    assert!(ok, "{out}{err}");
    let password = out
        .lines()
        .find_map(|line| line.split("(shown this once): ").nth(1))
        .unwrap_or_else(|| panic!("no password printed: {out}"))
        .trim()
        .to_string();
    sign_in(&app, "mr_smith", &password).await;

    // `add` does not promote a student's account of that name (a student may have
    // signed up with the teacher's name first); `promote` does, keeping its password
    // and conversations.
    let student = app.signed_up("vera", "vera's own password").await;
    let (ok, _, err) = teacher_command(&app, &["add", "vera"], "");
    assert!(!ok && err.contains("tutor-chat teacher promote vera"), "{err}");
    let (status, _) = app.call(&student, "teach/overview", &[("days", "30")]).await;
    assert_ne!(status, 200, "still a student");
    let (ok, out, err) = teacher_command(&app, &["promote", "vera"], "");
    assert!(ok && out.contains("vera is a teacher now"), "{out}{err}");
    assert!(!out.contains("shown this once"), "a promotion generates no password: {out}");
    let vera = sign_in(&app, "vera", "vera's own password").await;
    let (status, _) = app.call(&vera, "teach/overview", &[("days", "30")]).await;
    assert_eq!(status, 200);

    // A password piped for an existing account replaces it and signs out every session
    // it had: whoever held the name before cannot go on as the teacher.
    let (ok, out, _) = teacher_command(&app, &["add", "vera"], "vera's new password\n");
    assert!(ok && out.contains("vera is a teacher already") && out.contains("signed out"), "{out}");
    for old in [&student, &vera] {
        assert_eq!(app.whoami(old).await, None, "the old sessions are gone");
    }
    let vera = sign_in(&app, "vera", "vera's new password").await;

    // Removed: a student again, refused like anyone else.
    let (ok, out, _) = teacher_command(&app, &["remove", "vera"], "");
    assert!(ok && out.contains("vera is a student now"), "{out}");
    let (status, body) = app.call(&vera, "teach/overview", &[("days", "30")]).await;
    assert_ne!(status, 200, "{body}");
    assert!(body.contains("\"not_found\""), "{body}");

    // The server's own flags say where the database is (no environment needed).
    let output = Command::new(env!("CARGO_BIN_EXE_tutor-chat"))
        .args(["teacher", "--database-url", app.state.settings.database_url.as_deref().unwrap(), "--data-dir"])
        .arg(&app.state.settings.data_dir)
        .args(["add", "dr_flags"])
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(app.state.db.account_by_name("dr_flags").await.unwrap().is_some());

    // Refused input: no such teacher, a bad name, a short password, a bad action.
    assert!(!teacher_command(&app, &["remove", "nobody"], "").0);
    assert!(!teacher_command(&app, &["add", "<script>"], "").0);
    assert!(!teacher_command(&app, &["add", "short_pw"], "short\n").0);
    assert!(app.state.db.account_by_name("short_pw").await.unwrap().is_none());
    assert!(!teacher_command(&app, &["demote", "vera"], "").0);
    // `promote` is for an account that exists: a mistyped name makes no account.
    assert!(!teacher_command(&app, &["promote", "nobody_here"], "a teacher's password\n").0);
    assert!(app.state.db.account_by_name("nobody_here").await.unwrap().is_none());
}

#[tokio::test]
async fn every_teacher_endpoint_refuses_students_and_guests_as_if_it_did_not_exist() {
    let app = spawn_app().await;
    assert!(teacher_command(&app, &["add", "teacher_t"], "the teacher's password\n").0);
    let teacher = sign_in(&app, "teacher_t", "the teacher's password").await;
    let mut student = app.student().await;
    let asked = ask_in(&mut student.ws, "[tokens=2] a student's question", None).await;
    // A real request and conversation, so a refusal cannot be a lookup that found nothing.
    let (status, body) = app.call(&student.cookie, "ask_teacher", &[("message_id", &asked.message_id)]).await;
    assert_eq!(status, 200, "{body}");
    let (_, queue) = app.call(&teacher, "teach/queue", &[]).await;
    let queue: serde_json::Value = serde_json::from_str(&queue).unwrap();
    let request = queue["requests"][0]["id"].as_str().unwrap().to_string();
    let real = |text: &str| text.replace("any-conversation", &asked.conversation_id).replace("any-request", &request);
    let account = app.signed_up("sam", "sam's password").await;
    let guest = app.session_cookie().await;

    for (who, cookie) in [("a guest", &guest), ("a student", &student.cookie), ("an account", &account)] {
        // What a page that does not exist looks like to them.
        let missing = app.http.get(format!("http://{}/no-such-page", app.addr)).header("cookie", cookie.as_str()).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        let missing_body = missing.text().await.unwrap();
        for page in TEACHER_PAGES {
            let page = real(page);
            let response = app.http.get(format!("http://{}{page}", app.addr)).header("cookie", cookie.as_str()).send().await.unwrap();
            assert_eq!(response.status(), 404, "{who} on {page}");
            let body = response.text().await.unwrap();
            // The document is the 404 page's; only the hydration data after it differs,
            // by a resource that says `not_found` and nothing about the page.
            assert_eq!(document(&body), document(&missing_body), "{who} on {page}: not the 404 page");
            assert!(!body.contains("teach-") && !body.contains("per_day"), "{who} on {page}: {body}");
        }
        for (endpoint, form) in TEACHER_CALLS {
            let form: Vec<(&str, String)> = form.iter().map(|(k, v)| (*k, real(v))).collect();
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, body) = app.call(cookie, endpoint, &form).await;
            assert_ne!(status, 200, "{who} on {endpoint}");
            assert!(body.contains("\"not_found\""), "{who} on {endpoint}: {body}");
        }
    }
    // Nothing a refused call asked for was done.
    assert_eq!(app.state.db.all_instructions(10).await.unwrap().1, vec![]);
    let view = app.load(&student.cookie, &asked.conversation_id).await.unwrap();
    assert_eq!(view.messages.len(), 2, "no reply was stored");
    assert_eq!(view.messages[1].teacher_request, Some(TeacherRequest::Open), "nor the request closed");
    // The teacher gets them, with the course's numbers.
    // (A conversation no student shared is "not found" to the teacher too: see
    // escalations.rs for what a teacher may read.)
    for (page, mark) in [("/teach", "data-days="), ("/teach?days=7", "data-days=\"7\""), ("/teach/queue", "queue-counts")] {
        let response = app.http.get(format!("http://{}{page}", app.addr)).header("cookie", &teacher).send().await.unwrap();
        assert_eq!(response.status(), 200, "the teacher on {page}");
        assert!(response.text().await.unwrap().contains(mark), "the teacher on {page}");
    }
    // In Russian, counted nouns agree with their numbers and the queue says what each
    // count is.
    let in_russian = format!("{teacher}; lang=ru");
    let dashboard = words_of(&app.page(&in_russian, "/teach").await);
    assert!(dashboard.contains("1 вопрос · 1 студент"), "{dashboard}");
    let queue = words_of(&app.page(&in_russian, "/teach/queue").await);
    assert!(queue.contains("Ждут ответа: 1 · Отвечено: 0 · Закрыто без ответа: 0"), "{queue}");
    let (status, body) = app.call(&teacher, "teach/overview", &[("days", "30")]).await;
    assert_eq!(status, 200, "{body}");
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(overview["questions"], 1, "{body}");
    assert_eq!(overview["students"], 1, "{body}");
    assert_eq!(overview["per_day"].as_array().unwrap().len(), 1, "{body}");
}

#[tokio::test]
async fn the_teachers_instructions_reach_the_model_from_the_next_question_on() {
    let app = spawn_app().await;
    assert!(teacher_command(&app, &["add", "ms_k"], "the teacher's password\n").0);
    let teacher = sign_in(&app, "ms_k", "the teacher's password").await;
    let mut student = app.student().await;
    let question = "How does an SSE client resume with Last-Event-ID after a dropped connection?";

    let first = ask_in(&mut student.ws, question, None).await;
    let system = |app: &TestApp| app.last_request().messages[0].content.clone();
    assert!(!system(&app).contains("guiding question"));
    let lesson = first.sources[0].lesson.clone();

    let course = "Do not hand out complete homework solutions; ask a guiding question first.";
    let (status, body) = app.call(&teacher, "teach/set_instructions", &[("lesson", ""), ("text", course)]).await;
    assert_eq!(status, 200, "{body}");
    let note = "Students confuse this with WebSocket reconnection; point out the difference.";
    let (status, body) = app.call(&teacher, "teach/set_instructions", &[("lesson", &lesson), ("text", note)]).await;
    assert_eq!(status, 200, "{body}");

    ask_in(&mut student.ws, question, Some(&first.conversation_id)).await;
    assert!(system(&app).ends_with(course), "{}", system(&app));
    let sent = app.last_request();
    let sources = sent.messages.iter().find(|m| m.content.starts_with(SOURCES_PROMPT)).expect("sources");
    assert!(sources.content.contains(note), "{}", sources.content);

    // Cleared: the next question goes without them; the change is kept with its author.
    let (status, body) = app.call(&teacher, "teach/set_instructions", &[("lesson", ""), ("text", "")]).await;
    assert_eq!(status, 200, "{body}");
    ask_in(&mut student.ws, "[tokens=2] and then?", Some(&first.conversation_id)).await;
    assert!(!system(&app).contains(course));
    let shown: serde_json::Value = serde_json::from_str(&app.call(&teacher, "teach/instructions", &[]).await.1).unwrap();
    assert_eq!(shown["current"]["course"], serde_json::Value::Null);
    assert_eq!(shown["current"]["lessons"][0][1], note);
    let changes = shown["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 3);
    assert!(changes.iter().all(|c| c["changed_by"] == "ms_k"));
    assert_eq!(changes[0]["text"], "", "newest first: the clearing");

    // Too long, or a lesson that does not exist: refused, nothing stored.
    let long = "x".repeat(2001);
    let (_, body) = app.call(&teacher, "teach/set_instructions", &[("lesson", ""), ("text", &long)]).await;
    assert!(body.contains("\"instructions_too_long\""), "{body}");
    let (_, body) = app.call(&teacher, "teach/set_instructions", &[("lesson", "no-such-lesson"), ("text", "x")]).await;
    assert!(body.contains("\"not_found\""), "{body}");
    assert_eq!(app.state.db.all_instructions(10).await.unwrap().1.len(), 3);
}

#[tokio::test]
async fn the_overview_counts_how_answers_ended_and_what_students_said() {
    let app = spawn_app().await;
    assert!(teacher_command(&app, &["add", "mx_r"], "the teacher's password\n").0);
    let teacher = sign_in(&app, "mx_r", "the teacher's password").await;
    let mut student = app.student().await;
    let liked = ask(&mut student.ws, "[tokens=2] one").await;
    let disliked = ask(&mut student.ws, "[tokens=2] two").await;
    // A third, stopped after its first chunk.
    send_json(&mut student.ws, serde_json::json!({"question": "[tokens=50] [delay=40] three"})).await;
    let ServerFrame::Start { message_id, .. } = next_frame(&mut student.ws).await else { panic!("no start") };
    assert!(matches!(next_frame(&mut student.ws).await, ServerFrame::Chunk { .. }));
    send_json(&mut student.ws, serde_json::json!({"type": "stop"})).await;
    read_rest(&mut student.ws, message_id).await;
    for form in [
        vec![("message_id", liked.message_id.as_str()), ("rating", "up")],
        vec![("message_id", disliked.message_id.as_str()), ("rating", "down"), ("wrong", "on"), ("unclear", "on")],
    ] {
        let (status, body) = app.call(&student.cookie, "feedback/rate", &form).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = app.call(&teacher, "teach/overview", &[("days", "7")]).await;
    assert_eq!(status, 200, "{body}");
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(overview["questions"], 3);
    assert_eq!(overview["endings"], serde_json::json!([["complete", 2], ["stopped", 1]]));
    assert_eq!(overview["ratings"]["up"], 1);
    assert_eq!(overview["ratings"]["down"], 1);
    assert_eq!(
        overview["ratings"]["reasons"],
        serde_json::json!([["wrong", 1], ["unclear", 1], ["off_topic", 0], ["too_long", 0]])
    );
    // The page shows them.
    let html = app.page(&teacher, "/teach").await;
    assert!(html.contains(r#"data-status="stopped""#) && html.contains(r#"data-reason="unclear""#), "{html}");
}

/// The HTML document of a response (up to `</html>`) with its per-response values
/// (nonces, and the crossorigin attributes Leptos fills with the nonce) blanked.
fn document(html: &str) -> String {
    let html = &html[..html.find("</html>").map_or(html.len(), |end| end + 7)];
    let mut out = String::new();
    let mut rest = html;
    loop {
        let next = ["nonce=\"", "crossorigin=\""].iter().filter_map(|attr| rest.find(attr).map(|at| (at, attr.len()))).min();
        let Some((at, len)) = next else { break };
        out.push_str(&rest[..at + len]);
        rest = &rest[at + len..];
        rest = &rest[rest.find('"').unwrap_or(rest.len())..];
    }
    out.push_str(rest);
    out
}

/// A page's text as a reader sees it: tags and comments dropped, spaces collapsed.
fn words_of(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
