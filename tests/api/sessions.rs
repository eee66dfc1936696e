//! Sessions are the deployment's own (issue #10): only a token this deployment signed
//! names a session, so a forged cookie buys nothing but a fresh guest; two session
//! cookies are refused; an expired account session carries on as a guest; a client
//! with no cookie at all (the course lesson's) gets a guest session on the WebSocket
//! upgrade itself. (The cleanup of stale sessions: `cleanup.rs`.)

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::*;

/// A token of the right shape that this deployment never signed.
fn forged_token() -> String {
    (0..128).map(|i| b"0123456789abcdef"[(i * 7 + 3) % 16] as char).collect()
}

#[tokio::test]
async fn a_forged_token_is_no_session_and_reads_nothing() {
    let app = spawn_app().await;
    let mut student = app.student().await;
    ask_in(&mut student.ws, "[tokens=2] my own question", None).await;

    // A page load with a forged cookie gets a fresh session cookie instead.
    let forged = format!("tutor_session={}", forged_token());
    let response = app.http.get(format!("http://{}/", app.addr)).header("cookie", &forged).send().await.unwrap();
    let issued = new_session_cookie(response.headers()).expect("a fresh session for a forged cookie");
    assert_ne!(issued, forged);

    // Asking with the forged cookie works, as a new guest under a new cookie...
    let (mut ws, response) = tokio_tungstenite::connect_async({
        let mut request = format!("ws://{}/ws/chat", app.addr).into_client_request().unwrap();
        request.headers_mut().insert("cookie", HeaderValue::from_str(&forged).unwrap());
        request
    })
    .await
    .unwrap();
    let guest_cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("tutor_session="))
        .expect("the upgrade sets the fresh guest's cookie");
    assert!(matches!(next_frame(&mut ws).await, ServerFrame::Hello { .. }));
    let asked = ask_in(&mut ws, "[tokens=2] asked under a forged cookie", None).await;
    assert_eq!(app.list(&guest_cookie).await.items[0].id, asked.conversation_id);

    // ...and the forged cookie itself never becomes a session: it lists nothing, not
    // the question just asked under it, nor anyone else's.
    assert!(app.list(&forged).await.items.is_empty());
    assert!(app.load(&forged, &asked.conversation_id).await.is_err());
    let user = app.state.db.find_user(&forged_token()).await.unwrap();
    assert_eq!(user, None, "no session row was stored for a token we never issued");
}

#[tokio::test]
async fn two_session_cookies_are_refused() {
    let app = spawn_app().await;
    let mine = app.session_cookie().await;
    let other = app.session_cookie().await;
    for target in ["/", "/api/history/list"] {
        let response = app
            .http
            .post(format!("http://{}{target}", app.addr))
            .header("cookie", format!("{mine}; {other}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{target}");
    }
    // One of them alone is fine.
    assert!(app.list(&mine).await.items.is_empty());
}

#[tokio::test]
async fn over_https_the_cookie_is_host_prefixed_and_a_plain_one_is_ignored() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("http://{}/", app.addr))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let set = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("__Host-tutor_session="))
        .expect("a __Host- cookie over https");
    assert!(set.contains("; Secure") && set.contains("Path=/") && !set.contains("Domain"), "{set}");
    let host_cookie = set.split(';').next().unwrap().to_string();
    // The __Host- cookie names the session; a plain one beside it (planted by a
    // neighbouring subdomain, say) is not read.
    let planted = app.session_cookie().await;
    let again = app
        .http
        .get(format!("http://{}/", app.addr))
        .header("x-forwarded-proto", "https")
        .header("cookie", format!("{planted}; {host_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert!(again.headers().get("set-cookie").is_none(), "the __Host- session was kept");
}

#[tokio::test]
async fn an_expired_account_session_asks_again_as_a_guest() {
    let app = spawn_app().await;
    let cookie = app.signed_up("gina", "gina's password").await;
    let mut ws = app.socket(&cookie).await;
    let before = ask_in(&mut ws, "[tokens=2] asked while signed in", None).await;
    drop(ws);
    expire_session(&app, &cookie).await;

    let mut ws = app.socket(&cookie).await;
    let after = ask_in(&mut ws, "[tokens=2] asked after the session expired", None).await;
    assert_eq!(after.end.map(|(_, reason)| reason), Some(EndReason::Complete), "not `internal`");
    assert_ne!(after.conversation_id, before.conversation_id);
    // A guest now: the account's conversation is not theirs to see.
    assert_eq!(app.whoami(&cookie).await, None);
    let listed: Vec<String> = app.list(&cookie).await.items.into_iter().map(|c| c.id).collect();
    assert_eq!(listed, vec![after.conversation_id]);
}

#[tokio::test]
async fn a_client_written_as_in_the_course_lesson_works_without_a_cookie() {
    let app = spawn_app().await;
    // No cookie, any path segment, the untyped `{"question": ...}` frame.
    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{}/ws/chat/student-1", app.addr))
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
        .expect("the upgrade starts a guest session and sets its cookie");
    assert!(matches!(next_frame(&mut ws).await, ServerFrame::Hello { .. }));
    send_json(&mut ws, serde_json::json!({"question": "[tokens=3] hello"})).await;
    let answer = read_answer(&mut ws).await;
    assert_eq!(answer.chunks.len(), 3);
    assert_eq!(answer.end.map(|(_, reason)| reason), Some(EndReason::Complete));
    // The path segment is not an identity: the session is, and it has the conversation.
    assert_eq!(app.list(&cookie).await.items[0].id, answer.conversation_id);
}

/// What the course lesson's client does, and nothing more: connect to
/// `/ws/chat/{its user id}` with no cookie, send `{"question"}`, join the `chunk`
/// contents until `end`, ignore every other frame type. Returns the text and the
/// cookie the upgrade set.
async fn lesson_client(app: &TestApp, user_id: &str, origin: Option<&str>, question: &str) -> (String, String) {
    let mut request = format!("ws://{}/ws/chat/{user_id}", app.addr).into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    let cookie = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    send_json(&mut ws, serde_json::json!({ "question": question })).await;
    let mut text = String::new();
    loop {
        let tokio_tungstenite::tungstenite::Message::Text(frame) = next_message(&mut ws).await else {
            panic!("the lesson's client reads text frames only");
        };
        let frame: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
        match frame["type"].as_str() {
            Some("chunk") => text.push_str(frame["content"].as_str().unwrap()),
            Some("end") => return (text, cookie),
            Some("error") => panic!("error frame: {frame}"),
            _ => {} // hello, start, pong: not the lesson's, ignored as it ignores them
        }
    }
}

#[tokio::test]
async fn the_lesson_client_works_from_a_script_and_from_the_page_origin() {
    let app = spawn_app().await;
    // A script (no Origin, as Python's websockets sends none) and a page served from
    // this site (its own Origin): each is a new guest with the whole answer.
    let page_origin = format!("http://{}", app.addr);
    let mut cookies = Vec::new();
    for (user, origin) in [("student-1", None), ("student-1", Some(page_origin.as_str()))] {
        let (text, cookie) = lesson_client(&app, user, origin, "[tokens=5] What is a WebSocket?").await;
        assert_eq!(text, app.last_request().answer);
        assert_eq!(text.split_whitespace().count(), 5, "{text}");
        let history = app.list(&cookie).await;
        assert_eq!(history.items.len(), 1, "the answer is in this guest's history");
        cookies.push(cookie);
    }
    // The same path segment twice is still two guests: the URL names no one.
    assert_ne!(cookies[0], cookies[1]);
    // A page on another site may not open it, cookie or not (docs/security.md).
    let mut foreign = format!("ws://{}/ws/chat/student-1", app.addr).into_client_request().unwrap();
    foreign.headers_mut().insert("origin", HeaderValue::from_static("http://evil.example"));
    match tokio_tungstenite::connect_async(foreign).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected HTTP 403, got {:?}", other.map(|(_, r)| r.status())),
    }
}

#[tokio::test]
async fn without_a_setting_the_secret_is_kept_in_the_data_folder_and_survives_a_restart() {
    let data_dir = fresh_data_dir();
    let first = spawn_app_with(|s| {
        s.session_secret = None;
        s.data_dir = data_dir.clone();
    })
    .await;
    let mut student = first.student().await;
    let asked = ask_in(&mut student.ws, "[tokens=2] before the restart", None).await;
    let secret = data_dir.join("session-secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the server may read the secret");
    }
    // The same data folder and database after a restart: the cookie still works.
    let database_url = first.state.settings.database_url.clone();
    let restarted = spawn_app_with(|s| {
        s.session_secret = None;
        s.data_dir = data_dir.clone();
        s.database_url = database_url.clone();
    })
    .await;
    assert_eq!(restarted.list(&student.cookie).await.items[0].id, asked.conversation_id);
    // A deployment with another secret does not accept it.
    let stranger = spawn_app_with(|s| {
        s.session_secret = Some("another deployment".into());
        s.database_url = database_url;
    })
    .await;
    assert!(stranger.list(&student.cookie).await.items.is_empty());
}

#[tokio::test]
async fn a_sign_in_that_is_a_browsers_first_request_keeps_its_account_cookie() {
    // No cookie yet: the session layer makes a guest for the request, and the sign-in
    // replaces it. The browser must be left with the account's cookie, not the guest's.
    let app = spawn_app().await;
    app.signed_up("una", "una's password").await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client
        .post(format!("http://{}/api/account/signin", app.addr))
        .header("origin", format!("http://{}", app.addr))
        .header("accept", "text/html")
        .form(&[("username", "una"), ("password", "una's password")])
        .send()
        .await
        .unwrap();
    let cookies: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|c| c.starts_with("tutor_session="))
        .collect();
    assert_eq!(cookies.len(), 1, "one session cookie: {cookies:?}");
    let cookie = cookies[0].split(';').next().unwrap().to_string();
    assert_eq!(app.whoami(&cookie).await.as_deref(), Some("una"));
}

pub(crate) fn token_of(cookie: &str) -> &str {
    cookie.split_once('=').map(|(_, token)| token).unwrap()
}

pub(crate) async fn pool(app: &TestApp) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = app.state.settings.database_url.clone().unwrap();
    sqlx::AnyPool::connect(&url).await.unwrap()
}

pub(crate) async fn expire_session(app: &TestApp, cookie: &str) {
    sqlx::query("UPDATE sessions SET expires_at = $1 WHERE token_hash = $2")
        .bind(now_ms() - 1)
        .bind(hash_token(token_of(cookie)))
        .execute(&pool(app).await)
        .await
        .unwrap();
}

#[tokio::test]
async fn signing_out_ends_the_sessions_sockets_here_and_elsewhere() {
    let app = spawn_app().await;
    let cookie = app.signed_up("olga", "olga's password").await;
    let mut here = app.socket(&cookie).await;
    ask_in(&mut here, "[tokens=2] before signing out", None).await;
    // A second instance on the same database, with a socket of the same session.
    let database_url = app.state.settings.database_url.clone();
    let other = spawn_app_with(|s| s.database_url = database_url).await;
    let mut elsewhere = other.socket(&cookie).await;
    assert_eq!(ask_in(&mut elsewhere, "[tokens=2] from the other instance", None).await.error, None);

    // A socket the other instance opened after the question, which it has not used.
    let mut quiet_elsewhere = other.socket(&cookie).await;

    let (status, body) = app.call(&cookie, "account/signout", &[]).await;
    assert_eq!(status, 200, "{body}");
    // Every socket of the session is told and closed at once: this instance's
    // directly, the other instance's through the bus (without asking anything first).
    for socket in [&mut here, &mut elsewhere, &mut quiet_elsewhere] {
        expect_session_ended_and_closed(socket).await;
    }
    // Nothing was asked of the model after the sign-out.
    let calls = other.fake.requests().len();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(other.fake.requests().len(), calls, "no model call");
}

#[tokio::test]
async fn a_socket_that_outlives_its_session_is_refused_its_questions_and_resumes() {
    // A sign-out whose word never reached this socket (another instance's bus message
    // lost): the session's row is gone, the socket is still open.
    let app = spawn_app().await;
    let cookie = app.signed_up("pavel", "pavel's password").await;
    let mut ws = app.socket(&cookie).await;
    let asked = ask_in(&mut ws, "[tokens=2] before the session ends", None).await;
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(hash_token(token_of(&cookie)))
        .execute(&pool(&app).await)
        .await
        .unwrap();

    let calls = app.fake.requests().len();
    let refused = ask_in(&mut ws, "[tokens=2] after the session ended", None).await;
    assert_eq!(refused.error.map(|e| e.0), Some(ErrorCode::SessionEnded));
    assert_eq!(app.fake.requests().len(), calls, "no model call");
    send_json(&mut ws, serde_json::json!({"type": "resume", "message_id": asked.message_id})).await;
    assert!(matches!(next_frame(&mut ws).await, ServerFrame::Error { code: ErrorCode::SessionEnded, .. }));
}

/// The socket hears `session_ended` (after any of its student's events) and is closed
/// with 1008 within 5 s.
pub(crate) async fn expect_session_ended_and_closed(ws: &mut Ws) {
    let told = told_and_closed(ws, 1008).await;
    assert!(matches!(told, ServerFrame::Error { code: ErrorCode::SessionEnded, .. }), "{told:?}");
}

/// The first frame after the student's events (tabs, budget), once the socket has
/// been closed with `close_code`; each within 5 s.
async fn told_and_closed(ws: &mut Ws, close_code: u16) -> ServerFrame {
    let told = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), next_frame(ws)).await {
            Ok(ServerFrame::ConversationChanged { .. } | ServerFrame::Budget { .. } | ServerFrame::Chunk { .. }) => continue,
            Ok(other) => break other,
            Err(_) => panic!("the socket was told nothing within 5 s"),
        }
    };
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), next_message(ws)).await.unwrap() {
            tokio_tungstenite::tungstenite::Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), close_code, "after {told:?}");
                break;
            }
            _ => continue,
        }
    }
    told
}

/// Signing in in one tab moves the browser's other tabs to the account: their sockets,
/// on this instance and on another, are told `session_changed` (not `session_ended`)
/// and closed with 1012; reconnected with the browser's cookie, a tab follows the
/// answer it was streaming as a guest to its end and asks on in that conversation,
/// both the account's now.
#[tokio::test]
async fn signing_in_moves_the_browsers_other_tabs_to_the_account() {
    let app = spawn_app().await;
    app.signed_up("rita", "rita's password").await; // on another computer, earlier
    let guest = app.session_cookie().await;
    let mut here = app.socket(&guest).await;
    // Opened first: the answer below must still stream after the sign-in.
    let database_url = app.state.settings.database_url.clone();
    let other = spawn_app_with(|s| s.database_url = database_url).await;
    let mut elsewhere = other.socket(&guest).await;
    send_json(&mut here, serde_json::json!({"question": "[tokens=100] [delay=50] asked as a guest"})).await;
    let ServerFrame::Start { conversation_id, message_id, .. } = next_frame(&mut here).await else {
        panic!("no start")
    };

    let (_, account, body) =
        app.account_form(&guest, "signin", &[("username", "rita"), ("password", "rita's password")]).await;
    let account = account.unwrap_or_else(|| panic!("sign-in failed: {body}"));
    for socket in [&mut here, &mut elsewhere] {
        expect_session_changed_and_closed(socket).await;
    }
    let mut back = app.socket(&account).await;
    send_json(&mut back, serde_json::json!({"type": "resume", "message_id": message_id})).await;
    let ended = loop {
        match next_frame(&mut back).await {
            ServerFrame::Snapshot { live, .. } => assert!(live, "the answer still streams: followed live"),
            ServerFrame::Chunk { .. } | ServerFrame::Budget { .. } | ServerFrame::ConversationChanged { .. } => {}
            ServerFrame::End { reason, .. } => break reason,
            other => panic!("the answer begun as a guest was not followed: {other:?}"),
        }
    };
    assert_eq!(ended, EndReason::Complete);
    let again = ask_in(&mut back, "[tokens=2] asked again after signing in", Some(&conversation_id)).await;
    assert_eq!(again.error, None);
    assert_eq!(again.conversation_id, conversation_id);
    assert_eq!(app.whoami(&account).await.as_deref(), Some("rita"));
}

/// Signing in to another account over an account's session is not a move: that
/// session's other tabs show what the new account cannot open, so they are told the
/// session ended, as after a sign-out.
#[tokio::test]
async fn signing_in_over_another_account_ends_its_other_tabs() {
    let app = spawn_app().await;
    app.signed_up("uma", "uma's password").await;
    let tom = app.signed_up("tom", "tom's password").await;
    let mut toms_tab = app.socket(&tom).await;
    ask_in(&mut toms_tab, "[tokens=2] asked as tom", None).await;
    let (_, uma, body) = app.account_form(&tom, "signin", &[("username", "uma"), ("password", "uma's password")]).await;
    assert!(uma.is_some(), "sign-in failed: {body}");
    expect_session_ended_and_closed(&mut toms_tab).await;
}

/// Signing up is signing in as a new account: the other tabs move to it the same way.
#[tokio::test]
async fn signing_up_moves_the_browsers_other_tabs_to_the_new_account() {
    let app = spawn_app().await;
    let guest = app.session_cookie().await;
    let mut other_tab = app.socket(&guest).await;
    ask_in(&mut other_tab, "[tokens=2] asked as a guest", None).await;
    let (_, account, body) =
        app.account_form(&guest, "signup", &[("username", "sasha"), ("password", "sasha's password")]).await;
    assert!(account.is_some(), "sign-up failed: {body}");
    expect_session_changed_and_closed(&mut other_tab).await;
    // A tab that reconnects before its browser holds the account's cookie (a slow
    // sign-in response) is sent on again, not let in as the replaced session.
    let mut too_early = app.socket(&guest).await;
    expect_session_changed_and_closed(&mut too_early).await;
}

/// The socket hears `session_changed` and is closed with 1012, "reconnect", within 5 s.
async fn expect_session_changed_and_closed(ws: &mut Ws) {
    assert_eq!(told_and_closed(ws, 1012).await, ServerFrame::SessionChanged);
}

/// The next notice from the student's other tabs (the budget meter passed over).
async fn next_change(ws: &mut Ws) -> ServerFrame {
    loop {
        match next_frame(ws).await {
            ServerFrame::Budget { .. } => continue,
            frame => return frame,
        }
    }
}

#[tokio::test]
async fn a_tab_opened_before_the_first_question_hears_it_and_then_what_follows() {
    use tutor_chat::protocol::ConversationChange;
    let app = spawn_app_with(|s| s.question_budget = 5).await;
    let cookie = app.session_cookie().await;
    // Two tabs of a new guest: no user yet, the first question makes one.
    let mut idle_tab = app.socket(&cookie).await;
    let mut asking_tab = app.socket(&cookie).await;
    let first = ask(&mut asking_tab, "[tokens=2] the first question").await;
    // The meter as the idle tab showed it, then as it is after the question.
    let before = next_frame(&mut idle_tab).await;
    let ServerFrame::Budget { remaining: full, .. } = before else { panic!("expected the budget, got {before:?}") };
    let after = next_frame(&mut idle_tab).await;
    let ServerFrame::Budget { remaining, .. } = after else { panic!("expected the budget the question left, got {after:?}") };
    assert_eq!(remaining + 1, full, "the idle tab's meter counts the other tab's question");
    match next_change(&mut idle_tab).await {
        ServerFrame::ConversationChanged { conversation_id, change: ConversationChange::Asked, message_id, .. } => {
            assert_eq!(conversation_id, first.conversation_id);
            assert_eq!(message_id.as_deref(), Some(first.message_id.as_str()));
        }
        other => panic!("the tab opened first heard {other:?}"),
    }
    // From then on it hears the student's own notices: a rename in the other tab.
    let (status, _) = app
        .call(&cookie, "history/rename", &[("id", first.conversation_id.as_str()), ("title", "Sockets")])
        .await;
    assert_eq!(status, 200);
    match next_change(&mut idle_tab).await {
        ServerFrame::ConversationChanged { conversation_id, change: ConversationChange::Renamed, title, .. } => {
            assert_eq!(conversation_id, first.conversation_id);
            assert_eq!(title.as_deref(), Some("Sockets"));
        }
        other => panic!("expected the rename, got {other:?}"),
    }
    // A second question in the asking tab reaches it through the student's own feed.
    send_json(
        &mut asking_tab,
        serde_json::json!({"type": "ask", "question": "[tokens=2] and another", "conversation_id": first.conversation_id}),
    )
    .await;
    match next_change(&mut idle_tab).await {
        ServerFrame::ConversationChanged { change: ConversationChange::Asked, .. } => {}
        other => panic!("expected the second question, got {other:?}"),
    }
}

/// A new student's first question makes their guest in the question's own
/// transaction: two tabs of one browser asking their first questions at the same
/// moment still become one student, each tab answered.
#[tokio::test]
async fn two_tabs_asking_their_first_questions_at_once_are_one_student() {
    let app = spawn_app().await;
    for round in 0..4 {
        let cookie = app.session_cookie().await;
        let (mut first, mut second) = (app.socket(&cookie).await, app.socket(&cookie).await);
        let questions = [format!("[tokens=2] round {round}, first tab"), format!("[tokens=2] round {round}, second tab")];
        let (a, b) = tokio::join!(ask_in(&mut first, &questions[0], None), ask_in(&mut second, &questions[1], None));
        for answer in [&a, &b] {
            assert_eq!(answer.error, None, "round {round}");
            assert_eq!(answer.end.map(|(_, reason)| reason), Some(EndReason::Complete), "round {round}");
        }
        let mut listed: Vec<String> = app.list(&cookie).await.items.into_iter().map(|c| c.id).collect();
        let mut asked = vec![a.conversation_id, b.conversation_id];
        listed.sort();
        asked.sort();
        assert_eq!(listed, asked, "round {round}: both conversations are the one student's");
    }
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&pool(&app).await).await.unwrap();
    assert_eq!(users, 4, "one guest per browser");
}

/// Another writer (an instance on the same PostgreSQL) makes the session's user after
/// this instance's first-question transaction looked and before it inserted the
/// session: the insert waits for that row, finds it taken, and the transaction is
/// rolled back and the student asked again as that user, with no guest of ours left
/// behind. On SQLite writers take turns, so the question waits for the other writer
/// and finds the user at its first look: the same outcome by the other path.
#[tokio::test]
async fn a_session_whose_user_another_writer_makes_meanwhile_asks_as_that_user() {
    let app = spawn_app().await;
    let cookie = app.session_cookie().await;
    let pool = pool(&app).await;
    let mut other_writer = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO users (id, created_at) VALUES ('made-elsewhere', $1)")
        .bind(now_ms())
        .execute(&mut *other_writer)
        .await
        .unwrap();
    sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at) VALUES ($1, 'made-elsewhere', $2)")
        .bind(hash_token(token_of(&cookie)))
        .bind(now_ms())
        .execute(&mut *other_writer)
        .await
        .unwrap();
    let mut ws = app.socket(&cookie).await;
    let asking = tokio::spawn(async move { ask_in(&mut ws, "[tokens=2] my first question", None).await });
    if app.state.db.backend() == tutor_chat::db::Backend::Postgres {
        // Until the question's insert waits on the other writer's uncommitted row (and
        // not on anything else, such as another test's NOTIFY in the same cluster).
        let other_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *other_writer).await.unwrap();
        let waiting = async {
            loop {
                let waiting: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))")
                        .bind(other_pid)
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                if waiting > 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("the question's transaction never waited for the other writer's session row");
    } else {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    other_writer.commit().await.unwrap();

    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), asking).await.unwrap().unwrap();
    assert_eq!(answer.error, None);
    assert_eq!(answer.end.map(|(_, reason)| reason), Some(EndReason::Complete));
    let owner: String = sqlx::query_scalar("SELECT user_id FROM conversations WHERE id = $1")
        .bind(&answer.conversation_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(owner, "made-elsewhere", "asked as the user the other writer made");
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&pool).await.unwrap();
    assert_eq!(users, 1, "the guest this instance was making was rolled back");
}

/// A first question that is refused stores nothing, its guest included: the guest is
/// made in the question's transaction.
#[tokio::test]
async fn a_refused_first_question_makes_no_guest() {
    let app = spawn_app_with(|s| s.questions_per_minute_per_address = 1).await;
    let mut first = app.student().await;
    assert_eq!(ask_in(&mut first.ws, "[tokens=2] the address's one question", None).await.error, None);
    let mut second = app.student().await;
    let refused = ask_in(&mut second.ws, "[tokens=2] one too many", None).await;
    assert_eq!(refused.error.map(|(code, _)| code), Some(ErrorCode::RateLimited));
    assert_eq!(app.state.db.find_user(token_of(&second.cookie)).await.unwrap(), None, "no guest for a refused question");
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&pool(&app).await).await.unwrap();
    assert_eq!(users, 1);
}

/// A class asking its first questions at the same moment: the new students' guests,
/// conversations, questions, answers and sources share write transactions (on SQLite
/// they all wait for the one writer), and each student still gets exactly their own.
#[tokio::test]
async fn a_class_asking_its_first_questions_at_once_shares_write_transactions() {
    const CLASS: usize = 24;
    let app = spawn_app().await;
    let mut students = Vec::new();
    for _ in 0..CLASS {
        students.push(app.student().await);
    }
    let questions: Vec<String> =
        (0..CLASS).map(|i| format!("[tokens=3] student {i}: how does a WebSocket reconnect?")).collect();
    let answers = futures::future::join_all(
        students.iter_mut().zip(&questions).map(|(student, question)| ask_in(&mut student.ws, question, None)),
    )
    .await;
    for (i, (student, answer)) in students.iter().zip(&answers).enumerate() {
        assert_eq!(answer.error, None, "student {i}");
        assert_eq!(answer.end.map(|(_, reason)| reason), Some(EndReason::Complete), "student {i}");
        let listed: Vec<String> = app.list(&student.cookie).await.items.into_iter().map(|c| c.id).collect();
        assert_eq!(listed, vec![answer.conversation_id.clone()], "student {i} keeps their own conversation");
        let view = app.load(&student.cookie, &answer.conversation_id).await.unwrap();
        assert_eq!(view.messages.len(), 2, "student {i}");
        assert_eq!(view.messages[0].content, questions[i], "student {i}'s own question");
        assert_eq!(view.messages[1].id, answer.message_id);
        assert_eq!(view.messages[1].sources, answer.sources, "student {i}'s sources, as streamed");
        assert!(!answer.sources.is_empty(), "the question matches a lesson");
    }
    let pool = pool(&app).await;
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&pool).await.unwrap();
    assert_eq!(users, CLASS as i64, "one guest a student");
    let cited: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT message_id) FROM answer_sources").fetch_one(&pool).await.unwrap();
    assert_eq!(cited, CLASS as i64, "every answer's lessons are counted for the dashboard");
    let (transactions, stored) = app.state.arrivals.stored();
    assert_eq!(stored, CLASS as u64);
    assert!(transactions < CLASS as u64, "{transactions} transactions for {CLASS} students: none shared");
}

/// An address's budget of new guests holds when its students arrive together and
/// share transactions: the first ones in are made, the rest refused with nothing of
/// theirs stored.
#[tokio::test]
async fn an_address_budget_holds_for_students_arriving_together() {
    const CLASS: usize = 12;
    const GUESTS: u32 = 5;
    let app = spawn_app_with(|s| s.new_guests_per_hour_per_address = GUESTS).await;
    let mut students = Vec::new();
    for _ in 0..CLASS {
        students.push(app.student().await);
    }
    let answers = futures::future::join_all(
        students.iter_mut().enumerate().map(|(i, student)| async move {
            ask_in(&mut student.ws, &format!("[tokens=2] student {i}"), None).await
        }),
    )
    .await;
    let mut made = 0;
    for (student, answer) in students.iter().zip(&answers) {
        let guest = app.state.db.find_user(token_of(&student.cookie)).await.unwrap();
        match answer.error {
            None => {
                made += 1;
                assert!(guest.is_some());
                assert_eq!(app.list(&student.cookie).await.items.len(), 1);
            }
            Some((code, retry_after)) => {
                assert_eq!(code, ErrorCode::RateLimited);
                assert!(retry_after.is_some_and(|s| s > 0 && s <= 3600), "{retry_after:?}");
                assert_eq!(guest, None, "a refused student leaves no guest");
            }
        }
    }
    assert_eq!(made, GUESTS, "exactly the address's budget of new guests");
    let pool = pool(&app).await;
    for (table, want) in [("users", GUESTS), ("sessions", GUESTS), ("conversations", GUESTS), ("messages", 2 * GUESTS)] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&pool).await.unwrap();
        assert_eq!(rows, i64::from(want), "{table}");
    }
    let (transactions, stored) = app.state.arrivals.stored();
    assert_eq!(stored, u64::from(GUESTS));
    assert!(transactions < CLASS as u64, "{transactions} transactions for {CLASS} students: none shared");
}

/// A session with no user yet that asks in a conversation (a tab whose account
/// session expired) is refused as for anyone else's conversation, and leaves no guest:
/// it does not join the new students' shared transactions, which start conversations.
#[tokio::test]
async fn a_new_session_asking_in_a_conversation_is_refused_and_stores_nothing() {
    let app = spawn_app().await;
    let mut owner = app.student().await;
    let theirs = ask_in(&mut owner.ws, "[tokens=2] my question", None).await;
    assert_eq!(theirs.error, None);
    let calls_before = app.fake.requests().len();
    let mut stranger = app.student().await;
    let refused = ask_in(&mut stranger.ws, "[tokens=2] in their conversation", Some(&theirs.conversation_id)).await;
    assert_eq!(refused.error.map(|(code, _)| code), Some(ErrorCode::NotFound));
    assert_eq!(app.fake.requests().len(), calls_before, "no model call");
    assert_eq!(app.state.db.find_user(token_of(&stranger.cookie)).await.unwrap(), None, "no guest");
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&pool(&app).await).await.unwrap();
    assert_eq!(users, 1);
    assert_eq!(app.load(&owner.cookie, &theirs.conversation_id).await.unwrap().messages.len(), 2, "untouched");
}
