//! A script cannot spend the course's budget or a student's account (issue #10):
//! parallel password guesses verify at most the limit, a lockout is per name *and*
//! address, password hashing is bounded, sign-ups are budgeted per address, and
//! oversized input is refused before anything is hashed or stored.

use crate::helpers::*;

/// Calls a server function as a client behind our trusted proxy at `client`.
async fn call_as(app: &TestApp, client: &str, cookie: &str, endpoint: &str, form: &[(&str, &str)]) -> (u16, String) {
    let response = app
        .http
        .post(format!("http://{}/api/{endpoint}", app.addr))
        .header("cookie", cookie)
        .header("origin", format!("http://{}", app.addr))
        .header("x-forwarded-for", client)
        .form(form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn code_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}

async fn sign_up(app: &TestApp, name: &str, password: &str) {
    let cookie = app.session_cookie().await;
    let (status, body) = app.call(&cookie, "account/signup", &[("username", name), ("password", password)]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn parallel_wrong_sign_ins_for_one_name_verify_at_most_the_limit() {
    let app = spawn_app().await;
    sign_up(&app, "ivy", "ivy's real password").await;
    let verified_before = app.state.password_hashing.verifications();
    let cookie = app.session_cookie().await;
    let guesses = (0..60).map(|i| {
        let (app, cookie) = (&app, cookie.clone());
        async move {
            let guess = format!("guess number {i}");
            app.call(&cookie, "account/signin", &[("username", "ivy"), ("password", &guess)]).await
        }
    });
    let answers = futures::future::join_all(guesses).await;
    let verified = app.state.password_hashing.verifications() - verified_before;
    assert!(verified <= 5, "{verified} passwords verified for one name in parallel; the limit is 5");
    let codes: Vec<String> = answers.iter().map(|(_, body)| code_of(body)).collect();
    let refused = codes.iter().filter(|c| *c == "too_many_attempts").count();
    assert!(refused >= 55, "{codes:?}");
    assert!(codes.iter().all(|c| c == "too_many_attempts" || c == "wrong_credentials"), "{codes:?}");
}

#[tokio::test]
async fn a_stranger_elsewhere_cannot_lock_a_student_out() {
    let app = spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    sign_up(&app, "jules", "jules's password").await;
    let stranger = app.session_cookie().await;
    for i in 0..6 {
        let (_, body) = call_as(
            &app,
            "203.0.113.5",
            &stranger,
            "account/signin",
            &[("username", "jules"), ("password", &format!("wrong password {i}"))],
        )
        .await;
        let expected = if i < 5 { "wrong_credentials" } else { "too_many_attempts" };
        assert_eq!(code_of(&body), expected, "attempt {i}");
    }
    // The student, from their own address, signs in.
    let student = app.session_cookie().await;
    let (status, body) = call_as(
        &app,
        "198.51.100.7",
        &student,
        "account/signin",
        &[("username", "jules"), ("password", "jules's password")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn password_hashing_is_bounded_and_the_excess_is_told_busy() {
    let app = spawn_app_with(|s| {
        s.password_hash_queue = 4;
        s.signups_per_hour_per_address = 0;
    })
    .await;
    let cookies: Vec<String> =
        futures::future::join_all((0..200).map(|_| app.session_cookie())).await;
    let sign_ups = cookies.iter().enumerate().map(|(i, cookie)| {
        let app = &app;
        async move {
            let name = format!("student{i}");
            app.call(cookie, "account/signup", &[("username", name.as_str()), ("password", "a long enough password")]).await
        }
    });
    let answers = futures::future::join_all(sign_ups).await;
    let ok = answers.iter().filter(|(status, _)| *status == 200).count();
    let busy: Vec<&String> = answers.iter().filter(|(status, _)| *status != 200).map(|(_, body)| body).collect();
    assert!(ok >= 1, "some sign-ups went through");
    assert!(!busy.is_empty(), "200 at once with a queue of 4: the excess is refused");
    for body in &busy {
        assert_eq!(code_of(body), "server_busy", "{body}");
        let retry: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(retry["retry_after"].as_u64().is_some_and(|s| s > 0), "{body}");
    }
    let (peak, cores) = app.state.password_hashing.peak_running();
    assert!(peak <= cores, "{peak} hashes ran at once on {cores} cores");
    // The refused ones stored nothing.
    for (i, (status, _)) in answers.iter().enumerate() {
        let stored = app.state.db.account_by_name(&format!("student{i}")).await.unwrap().is_some();
        assert_eq!(stored, *status == 200, "student{i}");
    }
}

#[tokio::test]
async fn sign_ups_are_budgeted_per_address() {
    let app = spawn_app_with(|s| s.signups_per_hour_per_address = 2).await;
    sign_up(&app, "kim", "kim's password").await;
    sign_up(&app, "lee", "lee's password").await;
    let cookie = app.session_cookie().await;
    let (status, body) = app.call(&cookie, "account/signup", &[("username", "max"), ("password", "max's password")]).await;
    assert_ne!(status, 200);
    assert_eq!(code_of(&body), "too_many_sign_ups");
    let retry: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(retry["retry_after"].as_u64().is_some_and(|s| (1..=3600).contains(&s)), "{body}");
    assert!(app.state.db.account_by_name("max").await.unwrap().is_none());
}

#[tokio::test]
async fn a_megabyte_username_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let cookie = app.session_cookie().await;
    let verified_before = app.state.password_hashing.verifications();
    // A megabyte is over any server function's body; 100 KB reaches the name's check.
    for (name, code) in [("a".repeat(1024 * 1024), "too_large"), ("a".repeat(100_000), "invalid_username")] {
        for endpoint in ["account/signin", "account/signup"] {
            let (status, body) = app.call(&cookie, endpoint, &[("username", &name), ("password", "whatever it is")]).await;
            assert_ne!(status, 200);
            assert_eq!(code_of(&body), code, "{endpoint}, {} bytes", name.len());
        }
    }
    let (_, body) = app.call(&cookie, "account/signin", &[("username", "nina"), ("password", &"p".repeat(100_000))]).await;
    assert_eq!(code_of(&body), "invalid_password");
    assert_eq!(app.state.password_hashing.verifications(), verified_before, "nothing was hashed");
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(app.state.settings.database_url.as_deref().unwrap()).await.unwrap();
    let failures: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM login_failures").fetch_one(&pool).await.unwrap();
    assert_eq!(failures, 0, "no attempt was recorded for refused input");
}

#[tokio::test]
async fn every_model_request_is_bounded_by_max_tokens() {
    let app = spawn_app_with(|s| s.upstream.max_tokens = 5).await;
    let mut student = app.student().await;
    let answer = ask_in(&mut student.ws, "[tokens=40] a very long answer, please", None).await;
    assert_eq!(app.last_request().max_tokens, Some(5));
    assert_eq!(answer.chunks.len(), 5);
    assert_eq!(answer.end.map(|(_, reason)| reason), Some(EndReason::Length));
}

/// A token of the right shape this deployment never signed, different for each `i`.
fn forged(i: usize) -> String {
    format!("tutor_session={:0>128}", format!("{i:x}"))
}

#[tokio::test]
async fn fresh_forged_cookies_do_not_buy_fresh_budgets() {
    let app = spawn_app_with(|s| s.new_guests_per_hour_per_address = 10).await;
    let mut answered = 0;
    let mut refused = 0;
    for i in 0..30 {
        let mut ws = app.socket(&forged(i)).await;
        let answer = ask_in(&mut ws, "[tokens=2] one more free question?", None).await;
        match answer.error {
            None => answered += 1,
            Some((ErrorCode::RateLimited, Some(retry_after))) => {
                assert!((1..=3600).contains(&retry_after));
                refused += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((answered, refused), (10, 20));
    assert_eq!(app.fake.requests().len(), 10, "refused questions cost no model call");
}

#[tokio::test]
async fn questions_are_budgeted_per_address_across_sessions() {
    let app = spawn_app_with(|s| s.questions_per_minute_per_address = 5).await;
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let mut student = app.student().await;
        for _ in 0..2 {
            outcomes.push(ask_in(&mut student.ws, "[tokens=2] hello", None).await.error.map(|e| e.0));
        }
    }
    assert_eq!(outcomes.iter().filter(|o| o.is_none()).count(), 5, "{outcomes:?}");
    assert_eq!(outcomes.last().cloned().flatten(), Some(ErrorCode::RateLimited));
    assert_eq!(app.fake.requests().len(), 5);
}

#[tokio::test]
async fn answers_streaming_at_once_are_capped_per_address() {
    let app = spawn_app_with(|s| s.answers_at_once_per_address = 2).await;
    // Connected first: the two answers below must still stream when it asks.
    let mut third = app.student().await;
    let mut streaming = Vec::new();
    for _ in 0..2 {
        let mut student = app.student().await;
        send_json(&mut student.ws, serde_json::json!({"question": "[tokens=20] [delay=100] slow"})).await;
        let ServerFrame::Start { message_id, .. } = next_frame(&mut student.ws).await else {
            panic!("the answer did not start")
        };
        streaming.push((student, message_id));
    }
    let refused = ask_in(&mut third.ws, "[tokens=2] me too", None).await;
    assert_eq!(refused.error.map(|e| e.0), Some(ErrorCode::ServerBusy));
    // When one of them ends, the address has a place again.
    let (first_student, first_id) = &mut streaming[0];
    let first = read_rest(&mut first_student.ws, first_id.clone()).await;
    assert!(first.end.is_some());
    let answered = ask_in(&mut third.ws, "[tokens=2] now?", None).await;
    assert_eq!(answered.end.map(|(_, reason)| reason), Some(EndReason::Complete));
}

#[tokio::test]
async fn a_spent_daily_token_budget_answers_from_the_lessons() {
    // The test model reports 10 prompt tokens + one per completion token.
    let app = spawn_app_with(|s| s.daily_token_budget = 30).await;
    let mut student = app.student().await;
    for _ in 0..2 {
        let answer = ask_in(&mut student.ws, "[tokens=8] What is a WebSocket?", None).await;
        assert_eq!(answer.end.map(|(_, reason)| reason), Some(EndReason::Complete));
    }
    let calls = app.fake.requests().len();
    assert_eq!(calls, 2);
    // 36 tokens used of 30: the next answer is made from the lessons, with a note.
    let answer = ask_in(&mut student.ws, "How does a WebSocket connection stay open?", None).await;
    assert_eq!(answer.end.map(|(_, reason)| reason), Some(EndReason::Complete));
    assert_eq!(app.fake.requests().len(), calls, "no model call once the budget is spent");
    let text = answer.text();
    assert!(text.starts_with("*The course's daily budget for the language model is spent"), "{text}");
    assert!(!answer.sources.is_empty(), "the lessons' sources come with it");
}

#[tokio::test]
async fn a_socket_sending_faster_than_a_person_is_slowed() {
    let app = spawn_app_with(|s| s.frames_per_second_per_socket = 20).await;
    let mut ws = app.connect().await;
    let started = std::time::Instant::now();
    // A burst of 40, then 20 a second: 100 pings take at least (100 - 40) / 20 = 3 s.
    for t in 0..100 {
        send_json(&mut ws, serde_json::json!({"type": "ping", "t": t})).await;
    }
    for _ in 0..100 {
        assert!(matches!(next_frame(&mut ws).await, ServerFrame::Pong { .. }));
    }
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(2_500), "100 frames answered in {took:?}");
    // Slowed, not dropped: the socket still works.
    assert_eq!(ask(&mut ws, "[tokens=2] still here").await.error, None);
}

/// Reads until the server closes the connection; false if it is still open after 10 s.
async fn closed_by_server(tcp: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 4096];
    let closing = async {
        loop {
            match tcp.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), closing).await.is_ok()
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_closed() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|s| s.header_read_timeout = std::time::Duration::from_millis(500)).await;
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    // Half a request, then nothing: a slowloris holding a connection open.
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.unwrap();
    assert!(closed_by_server(&mut tcp).await, "the slow client was never cut off");
    // One that connects and says nothing at all is cut off too.
    let mut silent = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    assert!(closed_by_server(&mut silent).await, "the silent client was never cut off");
    // A normal request on a new connection is served.
    let ok = app.http.get(format!("http://{}/healthz", app.addr)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn one_address_holds_a_bounded_number_of_connections() {
    let app = spawn_app_with(|s| s.connections_per_address = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(app.addr).await.unwrap());
    }
    let mut fourth = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    assert!(closed_by_server(&mut fourth).await, "a fourth connection was kept");
    // One closes: there is room again.
    drop(held.pop());
    let mut served = false;
    for _ in 0..50 {
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        if let Ok(response) = client.get(format!("http://{}/healthz", app.addr)).send().await {
            served = response.status() == 200;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(served, "no room after a connection closed");
}

#[tokio::test]
async fn server_functions_called_faster_than_a_person_are_slowed() {
    let app = spawn_app_with(|s| s.calls_per_second_per_address = 10).await;
    let cookie = app.session_cookie().await;
    let started = std::time::Instant::now();
    // A burst of 40, then 10 a second: 60 calls take at least (60 - 40) / 10 = 2 s.
    for _ in 0..60 {
        assert!(app.list(&cookie).await.items.is_empty());
    }
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(1_500), "60 calls served in {took:?}");
    // Pages are not server functions: not slowed by it.
    assert_eq!(app.http.get(format!("http://{}/healthz", app.addr)).send().await.unwrap().status(), 200);
}

/// Calls that would wait too long are refused as a server function refuses: a JSON
/// error with its code, so the page says "rate limited" and not "internal".
#[tokio::test]
async fn a_server_function_call_refused_by_the_throttle_says_why() {
    let app = spawn_app_with(|s| s.calls_per_second_per_address = 1).await;
    let cookie = app.session_cookie().await;
    // A burst of 4, then one a second, and no call waits more than 5 s: of 12 at once,
    // the last few are refused.
    let calls = (0..12).map(|_| app.call(&cookie, "history/list", &[]));
    let answers = futures::future::join_all(calls).await;
    let refused: Vec<&(u16, String)> = answers.iter().filter(|(status, _)| *status == 429).collect();
    assert!(!refused.is_empty(), "{answers:?}");
    for (_, body) in refused {
        let error: tutor_chat::error::AppError = serde_json::from_str(body).unwrap();
        assert_eq!((error.code, error.retry_after), (ErrorCode::RateLimited, Some(5)), "{body}");
    }
}

/// A form sent without JavaScript is a navigation: refused by the throttle or the
/// body guard before it is read, it gets a page in the reader's language that says
/// what happened and leads back to the page it came from — not a JSON text.
#[tokio::test]
async fn a_form_sent_without_javascript_and_refused_gets_a_page_that_leads_back() {
    let app = spawn_app_with(|s| s.calls_per_second_per_address = 1).await;
    let cookie = app.session_cookie().await;
    let site = format!("http://{}", app.addr);
    // As a browser's form: a call let through is redirected to the Referer, not followed.
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let post = |form: Vec<(&'static str, String)>, lang: &'static str, referer: String| {
        browser
            .post(format!("{site}/api/history/rename"))
            .header("cookie", format!("{cookie}; lang={lang}"))
            .header("origin", &site)
            .header("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
            .header("referer", referer)
            .form(&form)
            .send()
    };
    let page_of = |response: reqwest::Response| async move {
        let kind = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        (response.status().as_u16(), kind.unwrap_or_default(), response.text().await.unwrap())
    };

    let huge = vec![("id", "c".to_string()), ("title", "x".repeat(1024 * 1024))];
    let (status, kind, page) = page_of(post(huge, "ru", format!("{site}/c/abc?x=1")).await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (413, "text/html; charset=utf-8"), "{page}");
    assert!(page.contains("<html lang=\"ru\">") && page.contains("Это слишком длинно"), "{page}");
    assert!(page.contains("Ничего не сохранено"), "{page}");
    assert!(page.contains("<a href=\"/c/abc?x=1\">Вернуться назад</a>"), "back to the form's page: {page}");

    // Flooded: the throttle's refusal, in English, and a Referer from another site
    // does not become the link.
    let flood = (0..12).map(|_| {
        let form = vec![("id", "c".to_string()), ("title", "t".to_string())];
        post(form, "en", "https://elsewhere.example/phish".into())
    });
    let mut refused = None;
    for response in futures::future::join_all(flood).await {
        let answer = page_of(response.unwrap()).await;
        if answer.0 == 429 {
            refused = Some(answer);
        }
    }
    let (_, kind, page) = refused.expect("the throttle refuses a flood");
    assert_eq!(kind, "text/html; charset=utf-8");
    assert!(page.contains("Too many requests right now.") && page.contains("<a href=\"/\">Go back</a>"), "{page}");
    assert!(!page.contains("elsewhere.example"), "{page}");
    // The page's own calls still get the JSON error to read: the test above.
}

#[tokio::test]
async fn one_address_holds_a_bounded_number_of_chat_sockets() {
    // A session is free to make, so sockets are counted per address as well.
    let app = spawn_app_with(|s| s.connections_per_address = 2).await;
    let origin = format!("http://{}", app.addr);
    let first = app.try_connect(None, Some(&origin)).await.unwrap();
    let second = app.try_connect(None, Some(&origin)).await.unwrap();
    let third = app.open_or_refused(None).await.err();
    assert_eq!(third.map(|r| (r.code, r.close_code)), Some((ErrorCode::TooManyConnections, 1013)));
    drop((first, second));
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(ws) = app.open_or_refused(None).await {
            reopened = Some(ws);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "a closed socket frees its place");
}

#[tokio::test]
async fn a_stopped_answer_still_counts_against_the_daily_budget() {
    // No usage chunk comes for a stopped answer: its tokens are estimated (the system
    // prompt alone is well over 30 tokens), so the budget is reached all the same.
    let app = spawn_app_with(|s| s.daily_token_budget = 30).await;
    let mut student = app.student().await;
    send_json(&mut student.ws, serde_json::json!({"question": "[tokens=50] [delay=50] a long one"})).await;
    let ServerFrame::Start { message_id, .. } = next_frame(&mut student.ws).await else { panic!("no start") };
    assert!(matches!(next_frame(&mut student.ws).await, ServerFrame::Chunk { .. }));
    send_json(&mut student.ws, serde_json::json!({"type": "stop"})).await;
    let stopped = read_rest(&mut student.ws, message_id).await;
    assert_eq!(stopped.end.map(|(_, reason)| reason), Some(EndReason::Stopped));
    let calls = app.fake.requests().len();
    let next = ask(&mut student.ws, "How does a WebSocket connection stay open?").await;
    assert_eq!(app.fake.requests().len(), calls, "the budget was spent by the stopped answer");
    assert!(next.text().starts_with("*The course's daily budget"), "{}", next.text());
}

#[tokio::test]
async fn old_budget_events_are_pruned() {
    let app = spawn_app_with(|s| s.questions_per_minute_per_address = 100).await;
    let mut student = app.student().await;
    ask(&mut student.ws, "[tokens=2] one").await;
    let db = &app.state.db;
    assert_eq!(db.prune_address_events(now_ms()).await.unwrap(), 0, "a fresh event stays");
    assert_eq!(db.prune_address_events(now_ms() + 2 * 3_600_000).await.unwrap(), 1, "an hour-old one goes");
}
