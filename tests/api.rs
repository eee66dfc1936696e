//! Integration tests: the whole app on port 0 against our OpenAI-compatible test
//! server, driven over real HTTP and WebSocket connections.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use tutor_chat::protocol::{EndReason, ErrorCode, ServerFrame};
use tutor_chat::server::{build_app, leptos_options, AppState};
use tutor_chat::settings::Settings;
use tutor_chat::upstream::fake::{FakeConfig, FakeUpstream, RecordedRequest};

const KEY: &str = "test-key";

struct TestApp {
    addr: SocketAddr,
    fake: FakeUpstream,
    state: AppState,
    http: reqwest::Client,
}

/// A fresh, empty database for one test: PostgreSQL when `TUTOR_TEST_DATABASE_URL`
/// names a server (the test command starts a throwaway cluster), else an SQLite file.
async fn fresh_database_url() -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    match std::env::var("TUTOR_TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => {
            use sqlx::Connection;
            let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .unwrap();
            let (base, _) = admin_url.rsplit_once('/').unwrap();
            format!("{base}/{name}")
        }
        _ => {
            let dir = std::env::temp_dir().join("tutor-chat-tests");
            std::fs::create_dir_all(&dir).unwrap();
            format!("sqlite://{}?mode=rwc", dir.join(format!("{name}.db")).display())
        }
    }
}

async fn test_settings(fake_addr: SocketAddr) -> Settings {
    let mut settings = Settings::default();
    settings.database_url = Some(fresh_database_url().await);
    settings.upstream.base_url = Some(format!("http://{fake_addr}/v1"));
    settings.upstream.api_key = Some(KEY.into());
    settings.upstream.model = "fake-model".into();
    settings.upstream.first_token_timeout = Duration::from_millis(1500);
    settings
}

async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let fake = FakeUpstream::new(FakeConfig {
        tokens: 8,
        delay: Duration::from_millis(5),
        require_key: Some(KEY.into()),
        ..FakeConfig::default()
    });
    let fake_addr = fake.spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let mut settings = test_settings(fake_addr).await;
    tweak(&mut settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut options = leptos_options().unwrap();
    options.site_addr = addr;
    let (app, state) = build_app(settings, options).await.unwrap();
    tokio::spawn(async move {
        axum::serve(tutor_chat::server::without_nagle(listener), app).await.unwrap();
    });
    TestApp {
        addr,
        fake,
        state,
        http: reqwest::Client::new(),
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl TestApp {
    /// Loads the page like a browser and returns its session cookie.
    async fn session_cookie(&self) -> String {
        let response = self
            .http
            .get(format!("http://{}/", self.addr))
            .send()
            .await
            .unwrap();
        let set_cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with("tutor_session="))
            .expect("the page sets a session cookie");
        set_cookie.split(';').next().unwrap().to_string()
    }

    async fn try_connect(
        &self,
        cookie: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("ws://{}/ws/chat", self.addr)
            .into_client_request()
            .unwrap();
        if let Some(cookie) = cookie {
            request
                .headers_mut()
                .insert("cookie", HeaderValue::from_str(cookie).unwrap());
        }
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", HeaderValue::from_str(origin).unwrap());
        }
        tokio_tungstenite::connect_async(request).await.map(|(ws, _)| ws)
    }

    /// A browser-like client: session cookie and the page's own Origin.
    async fn connect(&self) -> Ws {
        let cookie = self.session_cookie().await;
        let origin = format!("http://{}", self.addr);
        let mut ws = self.try_connect(Some(&cookie), Some(&origin)).await.unwrap();
        match next_frame(&mut ws).await {
            ServerFrame::Hello { protocol, .. } => assert_eq!(protocol, 1),
            other => panic!("expected hello, got {other:?}"),
        }
        ws
    }

    fn last_request(&self) -> RecordedRequest {
        self.fake.requests().pop().expect("the upstream got a request")
    }
}

async fn next_message(ws: &mut Ws) -> Message {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no frame within 10 s")
            .expect("socket closed")
            .expect("socket error");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

async fn next_frame(ws: &mut Ws) -> ServerFrame {
    match next_message(ws).await {
        Message::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

async fn send_json(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into())).await.unwrap();
}

#[derive(Debug, Default)]
struct Answer {
    context_truncated: bool,
    conversation_id: String,
    message_id: String,
    chunks: Vec<(u64, String)>,
    end: Option<(u64, EndReason)>,
    error: Option<(ErrorCode, Option<u64>)>,
}

impl Answer {
    fn text(&self) -> String {
        self.chunks.iter().map(|(_, c)| c.as_str()).collect()
    }
}

/// Reads one answer to its `end` or `error`.
async fn read_answer(ws: &mut Ws) -> Answer {
    let mut answer = Answer::default();
    loop {
        match next_frame(ws).await {
            ServerFrame::Start {
                conversation_id,
                message_id,
                context_truncated,
            } => {
                answer.context_truncated = context_truncated;
                answer.conversation_id = conversation_id;
                answer.message_id = message_id;
            }
            ServerFrame::Chunk {
                content,
                seq,
                message_id,
            } => {
                assert_eq!(message_id, answer.message_id, "chunk of another message");
                answer.chunks.push((seq, content));
            }
            ServerFrame::End {
                seq,
                reason,
                message_id,
                ..
            } => {
                assert_eq!(message_id, answer.message_id);
                answer.end = Some((seq, reason));
                return answer;
            }
            ServerFrame::Error {
                code, retry_after, ..
            } => {
                answer.error = Some((code, retry_after));
                return answer;
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

async fn ask(ws: &mut Ws, question: &str) -> Answer {
    send_json(ws, json!({"type": "ask", "question": question})).await;
    read_answer(ws).await
}

fn assert_seq_in_order(answer: &Answer) {
    for (i, (seq, _)) in answer.chunks.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "seq must start at 1 and grow by one");
    }
}

#[tokio::test]
async fn page_is_server_rendered_and_sets_a_guest_session() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("http://{}/", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("tutor_session="))
        .unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let token = cookie["tutor_session=".len()..].split(';').next().unwrap();
    assert!(token.len() >= 32, "at least 128 bits of hex");
    let html = response.text().await.unwrap();
    assert!(html.contains("<textarea"), "composer is in the HTML");
    assert!(html.contains("Tutor Chat"));
    assert!(html.contains(r#"lang="en""#));

    // A returning browser keeps its session: no new cookie.
    let again = app
        .http
        .get(format!("http://{}/", app.addr))
        .header("cookie", format!("tutor_session={token}"))
        .send()
        .await
        .unwrap();
    assert!(again.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn page_language_follows_accept_language_and_cookie() {
    let app = spawn_app().await;
    let get = |headers: Vec<(&'static str, &'static str)>| {
        let mut request = app.http.get(format!("http://{}/", app.addr));
        for (k, v) in headers {
            request = request.header(k, v);
        }
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let ru = get(vec![("accept-language", "ru-RU,ru;q=0.9,en;q=0.5")]).await;
    assert!(ru.contains(r#"lang="ru""#));
    assert!(ru.contains("Задайте вопрос по курсу"));
    let en = get(vec![("accept-language", "ru-RU"), ("cookie", "lang=en")]).await;
    assert!(en.contains(r#"lang="en""#));
    assert!(en.contains("Ask a question about the course"));
}

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
    let app = spawn_app_with(|s| s.upstream.token_gap_timeout = Duration::from_millis(300)).await;
    let mut ws = app.connect().await;
    let answer = ask(&mut ws, "[tokens=4] [delay=1000] q").await;
    assert_eq!(answer.error.map(|e| e.0), Some(ErrorCode::Timeout));
    assert_eq!(answer.chunks.len(), 1, "the first token came before the gap");

    let app = spawn_app_with(|s| s.upstream.total_timeout = Duration::from_millis(500)).await;
    let mut ws = app.connect().await;
    let answer = ask(&mut ws, "[tokens=50] [delay=100] q").await;
    assert_eq!(answer.error.map(|e| e.0), Some(ErrorCode::Timeout));
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
async fn foreign_origin_and_missing_session_are_refused() {
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
    let origin = format!("http://{}", app.addr);
    match app.try_connect(None, Some(&origin)).await.unwrap_err() {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected HTTP 401, got {other}"),
    }
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
    let roles: Vec<&str> = sent.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(sent.messages[1].content, "[tokens=4] What is SSE?");
    assert_eq!(sent.messages[2].content, first.text());
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

#[tokio::test]
async fn shutdown_closes_open_sockets_so_clients_reconnect() {
    let app = spawn_app().await;
    let mut ws = app.connect().await;
    app.state.shutdown.send_replace(true);
    let code = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(code, Some(CloseCode::Away));
}

#[tokio::test]
async fn no_key_and_no_endpoint_runs_the_demo_model() {
    // No base URL and no key: the app starts its own demo model.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut options = leptos_options().unwrap();
    options.site_addr = addr;
    let settings = Settings {
        database_url: Some(fresh_database_url().await),
        ..Settings::default()
    };
    let (app, state) = build_app(settings, options).await.unwrap();
    assert!(state.demo_mode);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let html = reqwest::get(format!("http://{addr}/")).await.unwrap().text().await.unwrap();
    assert!(html.contains(r#"data-demo="true""#));
    let (mut ws, _) = tokio_tungstenite::connect_async(
        {
            let mut r = format!("ws://{addr}/ws/chat").into_client_request().unwrap();
            r.headers_mut().insert(
                "cookie",
                HeaderValue::from_str(&format!("tutor_session={}", "a".repeat(64))).unwrap(),
            );
            r
        },
    )
    .await
    .unwrap();
    assert!(matches!(next_frame(&mut ws).await, ServerFrame::Hello { .. }));
    let answer = ask(&mut ws, "[tokens=3] [delay=1] hi").await;
    assert_eq!(answer.end, Some((3, EndReason::Complete)));
}
