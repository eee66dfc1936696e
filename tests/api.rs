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
use tutor_chat::server::{build_app, leptos_options};
use tutor_chat::state::AppState;
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
    settings.data_dir = fresh_data_dir();
    settings.lessons_dir = lessons_dir();
    // Many tests ask more than ten questions a minute; the limit has its own tests.
    settings.questions_per_minute = 0;
    settings
}

/// Each app gets its own data folder (its lesson index lives there).
fn fresh_data_dir() -> std::path::PathBuf {
    std::env::temp_dir()
        .join("tutor-chat-tests")
        .join(format!("data-{}", uuid::Uuid::new_v4().simple()))
}

/// The sample course shipped in the repository.
fn lessons_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons")
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
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(tutor_chat::net::without_nagle(listener), app).await.unwrap();
    });
    TestApp {
        addr,
        fake,
        state,
        // A request that never completes fails the test with its URL, instead of
        // hanging the suite (one CI run hung in an HTTP call here; see the session note).
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
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
        tokio::time::timeout(Duration::from_secs(30), tokio_tungstenite::connect_async(request))
            .await
            .expect("no WebSocket handshake within 30 s")
            .map(|(ws, _)| ws)
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
    sources: Vec<tutor_chat::lessons::Source>,
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
    continue_answer(ws, Answer::default()).await
}

/// Reads the rest of an answer whose `start` was already read.
async fn read_rest(ws: &mut Ws, message_id: String) -> Answer {
    continue_answer(ws, Answer { message_id, ..Answer::default() }).await
}

async fn continue_answer(ws: &mut Ws, mut answer: Answer) -> Answer {
    loop {
        match next_frame(ws).await {
            ServerFrame::Start {
                conversation_id,
                message_id,
                context_truncated,
                sources,
            } => {
                answer.context_truncated = context_truncated;
                answer.sources = sources;
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

const SOURCES_PROMPT: &str = "Sources from the course's lessons";

/// The conversation as the model got it, without the lesson sources added for the
/// question (their own test checks them).
fn without_sources(sent: &RecordedRequest) -> Vec<&tutor_chat::upstream::fake::RecordedMessage> {
    sent.messages
        .iter()
        .filter(|m| !(m.role == "system" && m.content.starts_with(SOURCES_PROMPT)))
        .collect()
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

    // Tokens that keep coming are no gap, however long the answer takes in all.
    let answer = ask(&mut ws, "[tokens=12] [delay=100] q").await;
    assert!(answer.error.is_none(), "{:?}", answer.error);
    assert_eq!(answer.chunks.len(), 12);

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
    let turns = without_sources(&sent);
    let roles: Vec<&str> = turns.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(turns[1].content, "[tokens=4] What is SSE?");
    assert_eq!(turns[2].content, first.text());
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
async fn no_key_and_no_endpoint_answers_with_cited_lesson_excerpts() {
    // No base URL and no key: lesson mode, no model is called at all.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut options = leptos_options().unwrap();
    options.site_addr = addr;
    let settings = Settings {
        database_url: Some(fresh_database_url().await),
        data_dir: fresh_data_dir(),
        lessons_dir: lessons_dir(),
        ..Settings::default()
    };
    let (app, state) = build_app(settings, options).await.unwrap();
    assert!(state.lesson_mode);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let html = reqwest::get(format!("http://{addr}/")).await.unwrap().text().await.unwrap();
    assert!(html.contains(r#"data-lesson-mode="true""#));
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

    let answer = ask(&mut ws, "How does an SSE client resume after a dropped connection with Last-Event-ID?").await;
    assert_eq!(answer.end.map(|(_, reason)| reason), Some(EndReason::Complete));
    assert!(answer.chunks.len() > 10, "streamed word by word, got {} chunks", answer.chunks.len());
    assert_seq_in_order(&answer);
    let text = answer.text();
    assert!(text.starts_with("These are excerpts from the course lessons, not a generated answer"), "{text}");
    assert_eq!(answer.sources.len(), 3);
    for source in &answer.sources {
        assert!(text.contains(&format!("[{}] **{}", source.n, source.lesson_title)), "{text}");
    }
    assert!(
        answer.sources.iter().any(|s| s.lesson.contains("server-sent-events") && s.anchor.contains("last-event-id")),
        "{:?}",
        answer.sources
    );
    // The passage quoted is the lesson's own text.
    assert!(text.contains("Last-Event-ID"), "{text}");

    // In Russian, the note and the passages are Russian.
    let ru = ask(&mut ws, "Зачем нужна экспоненциальная задержка при переподключении?").await;
    let text = ru.text();
    assert!(text.starts_with("Это выдержки из уроков курса"), "{text}");
    assert!(ru.sources.iter().any(|s| s.lesson.ends_with("-ru")), "{:?}", ru.sources);
}

#[tokio::test]
async fn retrieved_sections_go_to_the_model_as_numbered_sources_and_come_back_with_history() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let question = "[tokens=4] [cite=1,7] How does a token bucket allow short bursts of requests?";
    let answer = ask_in(&mut s.ws, question, None).await;
    assert_eq!(answer.end.map(|e| e.1), Some(EndReason::Complete));

    // The start frame lists the sections, best first, numbered from 1.
    assert_eq!(answer.sources.len(), 3, "top k = 3 by default");
    assert_eq!(answer.sources.iter().map(|s| s.n).collect::<Vec<_>>(), [1, 2, 3]);
    let best = &answer.sources[0];
    assert_eq!((best.lesson.as_str(), best.anchor.as_str()), ("05-rate-limiting-en", "token-bucket"));
    assert_eq!(best.section, "Token bucket");
    assert!(best.snippet.starts_with("A token bucket holds up to N tokens"), "{}", best.snippet);

    // The model got them as numbered sources right before the question, told to cite [n].
    let sent = app.last_request();
    let n = sent.messages.len();
    assert_eq!(sent.messages[n - 1].content, question);
    let prompt = &sent.messages[n - 2];
    assert_eq!(prompt.role, "system");
    assert!(prompt.content.starts_with(SOURCES_PROMPT), "{}", prompt.content);
    assert!(prompt.content.contains("[1] Rate limiting › Token bucket\nA token bucket holds"), "{}", prompt.content);
    assert!(prompt.content.contains("cite each source you use as [n]"));
    for source in &answer.sources {
        assert!(prompt.content.contains(&format!("[{}] {} › {}", source.n, source.lesson_title, source.section)));
    }
    assert!(answer.text().ends_with(" [1] [7]"), "{}", answer.text());

    // History gives the same sources back with the answer; questions have none.
    let view = app.load(&s.cookie, &answer.conversation_id).await.unwrap();
    assert!(view.messages[0].sources.is_empty());
    assert_eq!(view.messages[1].sources, answer.sources);

    // A follow-up that means little alone is searched with the earlier question.
    let follow_up = ask_in(&mut s.ws, "[tokens=2] and what about refilling?", Some(&answer.conversation_id)).await;
    assert!(follow_up.sources.iter().any(|s| s.lesson == "05-rate-limiting-en"), "{:?}", follow_up.sources);

    // The server renders the answer's citations and source links into the page.
    let html = app
        .http
        .get(format!("http://{}/c/{}", app.addr, answer.conversation_id))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(r#"href="/lessons/05-rate-limiting-en#token-bucket""#), "source link in the page");
    assert!(html.contains(r#"class="cite""#), "[1] became a citation link");
    assert!(!html.contains(r#"data-n="7""#), "a made-up [7] is no link");
}

#[tokio::test]
async fn lesson_pages_render_with_section_anchors_and_unknown_ones_are_404() {
    let app = spawn_app().await;
    let page = app.http.get(format!("http://{}/lessons/03-server-sent-events-en", app.addr)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<h1 id="server-sent-events">Server-sent events</h1>"#), "{html}");
    assert!(html.contains(r#"<h2 id="last-event-id-and-resuming">"#));
    let ru = app.http.get(format!("http://{}/lessons/04-reconnection-ru", app.addr)).send().await.unwrap();
    assert!(ru.text().await.unwrap().contains(r#"id="экспоненциальная-задержка-с-джиттером""#));
    for missing in ["no-such-lesson", "..%2F..%2Fetc%2Fpasswd", "03-server-sent-events-en.md"] {
        let response = app.http.get(format!("http://{}/lessons/{missing}", app.addr)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{missing}");
    }
    let list = app.http.get(format!("http://{}/lessons", app.addr)).send().await.unwrap().text().await.unwrap();
    assert_eq!(list.matches(r#"<a href="/lessons/"#).count(), 24, "every lesson is listed");
}

// ---- history (issue #3) ----

use tutor_chat::history::{ConversationPage, ConversationView, MessageRole, MessageStatus};

/// A browser with its own session: page load for the cookie, then a socket.
struct Student {
    cookie: String,
    ws: Ws,
}

impl TestApp {
    async fn student(&self) -> Student {
        let cookie = self.session_cookie().await;
        let origin = format!("http://{}", self.addr);
        let mut ws = self.try_connect(Some(&cookie), Some(&origin)).await.unwrap();
        assert!(matches!(next_frame(&mut ws).await, ServerFrame::Hello { .. }));
        Student { cookie, ws }
    }

    /// Calls a server function the way the page does (a same-origin form POST).
    async fn call(&self, cookie: &str, endpoint: &str, form: &[(&str, &str)]) -> (u16, String) {
        self.call_from(cookie, endpoint, form, &format!("http://{}", self.addr))
            .await
    }

    async fn call_from(
        &self,
        cookie: &str,
        endpoint: &str,
        form: &[(&str, &str)],
        origin: &str,
    ) -> (u16, String) {
        let response = self
            .http
            .post(format!("http://{}/api/{endpoint}", self.addr))
            .header("cookie", cookie)
            .header("origin", origin)
            .form(form)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn list(&self, cookie: &str) -> ConversationPage {
        let (status, body) = self.call(cookie, "history/list", &[]).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn load(&self, cookie: &str, id: &str) -> Result<ConversationView, String> {
        let (status, body) = self.call(cookie, "history/load", &[("id", id)]).await;
        if status == 200 {
            Ok(serde_json::from_str(&body).unwrap())
        } else {
            Err(body)
        }
    }
}

async fn ask_in(ws: &mut Ws, question: &str, conversation_id: Option<&str>) -> Answer {
    let mut frame = json!({"type": "ask", "question": question});
    if let Some(id) = conversation_id {
        frame["conversation_id"] = json!(id);
    }
    send_json(ws, frame).await;
    read_answer(ws).await
}

#[tokio::test]
async fn every_question_and_answer_is_kept_and_comes_back() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let first = ask_in(&mut s.ws, "[tokens=5] What is SSE?\nPlease explain.", None).await;
    let second = ask_in(&mut s.ws, "[tokens=3] And WebSocket?", Some(&first.conversation_id)).await;
    assert_eq!(second.conversation_id, first.conversation_id);

    let page = app.list(&s.cookie).await;
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].title, "[tokens=5] What is SSE?", "title from the first line");
    let view = app.load(&s.cookie, &first.conversation_id).await.unwrap();
    let got: Vec<(MessageRole, &str, MessageStatus)> = view
        .messages
        .iter()
        .map(|m| (m.role, m.content.as_str(), m.status))
        .collect();
    let first_text = first.text();
    let second_text = second.text();
    assert_eq!(
        got,
        vec![
            (MessageRole::User, "[tokens=5] What is SSE?\nPlease explain.", MessageStatus::Complete),
            (MessageRole::Assistant, first_text.as_str(), MessageStatus::Complete),
            (MessageRole::User, "[tokens=3] And WebSocket?", MessageStatus::Complete),
            (MessageRole::Assistant, second_text.as_str(), MessageStatus::Complete),
        ]
    );
    assert_eq!(view.messages[1].id, first.message_id);

    // A fresh connection (a reload) continues the same conversation; the model gets it all.
    let mut again = app.student().await;
    again.ws = {
        let origin = format!("http://{}", app.addr);
        let mut ws = app.try_connect(Some(&s.cookie), Some(&origin)).await.unwrap();
        next_frame(&mut ws).await;
        ws
    };
    let third = ask_in(&mut again.ws, "[tokens=2] third", Some(&first.conversation_id)).await;
    assert_eq!(third.end.map(|e| e.1), Some(EndReason::Complete));
    let sent = app.last_request();
    let turns = without_sources(&sent);
    assert_eq!(turns.len(), 1 + 4 + 1, "system + four earlier turns + question");
    assert_eq!(turns[2].content, first_text);
}

#[tokio::test]
async fn stop_error_and_disconnect_are_stored_with_their_status() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let failed = ask_in(&mut s.ws, "[fault=500] q", None).await;
    assert_eq!(failed.error.map(|e| e.0), Some(ErrorCode::UpstreamUnavailable));
    let conversation = failed.conversation_id.clone();

    send_json(&mut s.ws, json!({"type":"ask","question":"[tokens=100] [delay=20] long","conversation_id":conversation})).await;
    let mut received = String::new();
    loop {
        match next_frame(&mut s.ws).await {
            ServerFrame::Chunk { content, seq, .. } => {
                received.push_str(&content);
                if seq == 5 {
                    send_json(&mut s.ws, json!({"type":"stop"})).await;
                }
            }
            ServerFrame::End { reason, .. } => {
                assert_eq!(reason, EndReason::Stopped);
                break;
            }
            _ => {}
        }
    }
    send_json(&mut s.ws, json!({"type":"ask","question":"[tokens=200] [delay=20] leaving","conversation_id":conversation})).await;
    let mut cut = String::new();
    loop {
        if let ServerFrame::Chunk { content, seq, .. } = next_frame(&mut s.ws).await {
            cut.push_str(&content);
            if seq == 10 {
                break;
            }
        }
    }
    drop(s.ws); // the tab closes mid-answer: the answer goes on and is stored whole

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let view = app.load(&s.cookie, &conversation).await.unwrap();
        let statuses: Vec<MessageStatus> = view.messages.iter().map(|m| m.status).collect();
        if statuses.last() == Some(&MessageStatus::Complete) {
            assert_eq!(
                statuses,
                [
                    MessageStatus::Complete,
                    MessageStatus::Error,
                    MessageStatus::Complete,
                    MessageStatus::Stopped,
                    MessageStatus::Complete,
                    MessageStatus::Complete
                ]
            );
            assert_eq!(view.messages[1].error_code, Some(ErrorCode::UpstreamUnavailable));
            assert!(view.messages[3].content.starts_with(&received));
            let kept = &view.messages[5].content;
            assert!(kept.starts_with(&cut));
            assert_eq!(kept, &app.last_request().answer, "every token, though nobody watched");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never completed: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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

#[tokio::test]
async fn another_students_conversation_answers_like_a_missing_one() {
    let app = spawn_app().await;
    let mut alice = app.student().await;
    let mut bob = app.student().await;
    let hers = ask_in(&mut alice.ws, "[tokens=3] alice's secret", None).await;
    let _ = ask_in(&mut bob.ws, "[tokens=3] bob's own", None).await;
    let missing = uuid::Uuid::new_v4().to_string();

    for id in [&hers.conversation_id, &missing] {
        let load = app.call(&bob.cookie, "history/load", &[("id", id)]).await;
        let rename = app
            .call(&bob.cookie, "history/rename", &[("id", id), ("title", "mine now")])
            .await;
        let delete = app.call(&bob.cookie, "history/delete", &[("id", id)]).await;
        for (status, body) in [&load, &rename, &delete] {
            assert_ne!(*status, 200);
            assert!(body.contains("Conversation not found."), "{body}");
            assert!(!body.contains("alice"));
        }
    }
    // Exactly the same answers for hers and for one that does not exist.
    let a = app.call(&bob.cookie, "history/load", &[("id", &hers.conversation_id)]).await;
    let b = app.call(&bob.cookie, "history/load", &[("id", &missing)]).await;
    assert_eq!(a, b);

    let calls_before = app.fake.requests().len();
    let refused = ask_in(&mut bob.ws, "[tokens=3] let me in", Some(&hers.conversation_id)).await;
    assert_eq!(refused.error.map(|e| e.0), Some(ErrorCode::NotFound));
    assert_eq!(app.fake.requests().len(), calls_before, "no model call");

    let bobs = app.list(&bob.cookie).await;
    assert_eq!(bobs.items.len(), 1);
    assert_ne!(bobs.items[0].id, hers.conversation_id);
    let view = app.load(&alice.cookie, &hers.conversation_id).await.unwrap();
    assert_eq!(view.title, "[tokens=3] alice's secret", "untouched by bob");
    assert_eq!(view.messages.len(), 2);

    // A browser that never asked anything owns nothing, and creates nothing by looking.
    let stranger = app.session_cookie().await;
    assert!(app.list(&stranger).await.items.is_empty());
    assert!(app.load(&stranger, &hers.conversation_id).await.is_err());
}

#[tokio::test]
async fn rename_and_delete_a_conversation() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let answer = ask_in(&mut s.ws, "[tokens=2] hello", None).await;
    let id = answer.conversation_id.as_str();
    let (status, body) = app
        .call(&s.cookie, "history/rename", &[("id", id), ("title", "  Streaming basics ")])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.list(&s.cookie).await.items[0].title, "Streaming basics");
    let (status, body) = app.call(&s.cookie, "history/rename", &[("id", id), ("title", "  ")]).await;
    assert_ne!(status, 200);
    assert!(body.contains("cannot be empty"), "{body}");

    let (status, _) = app.call(&s.cookie, "history/delete", &[("id", id)]).await;
    assert_eq!(status, 200);
    assert!(app.list(&s.cookie).await.items.is_empty());
    assert!(app.load(&s.cookie, id).await.is_err());
    let gone = ask_in(&mut s.ws, "[tokens=2] still here?", Some(id)).await;
    assert_eq!(gone.error.map(|e| e.0), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn server_functions_refuse_a_foreign_origin() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let answer = ask_in(&mut s.ws, "[tokens=2] hello", None).await;
    for (endpoint, form) in [
        ("history/list", vec![]),
        ("history/load", vec![("id", answer.conversation_id.as_str())]),
        ("history/delete", vec![("id", answer.conversation_id.as_str())]),
    ] {
        let (status, body) = app
            .call_from(&s.cookie, endpoint, &form, "http://evil.example")
            .await;
        assert_ne!(status, 200, "{endpoint}");
        assert!(body.contains("other sites are refused"), "{body}");
    }
    assert_eq!(app.list(&s.cookie).await.items.len(), 1, "nothing was deleted");
}

#[tokio::test]
async fn conversations_and_messages_are_cursor_paged() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let first = ask_in(&mut s.ws, "[tokens=1] seed", None).await;
    let user = app
        .state
        .db
        .find_user(s.cookie.trim_start_matches("tutor_session="))
        .await
        .unwrap()
        .unwrap();
    for i in 0..64 {
        app.state.db.create_conversation(&user, &format!("c{i}")).await.unwrap();
    }
    for i in 0..118 {
        app.state
            .db
            .add_message(&first.conversation_id, MessageRole::User, &format!("m{i}"), MessageStatus::Complete, None)
            .await
            .unwrap();
    }
    // 65 conversations: pages of 30, newest first, no repeats.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let form: Vec<(&str, &str)> = cursor.as_deref().map(|c| vec![("cursor", c)]).unwrap_or_default();
        let (status, body) = app.call(&s.cookie, "history/list", &form).await;
        assert_eq!(status, 200, "{body}");
        let page: ConversationPage = serde_json::from_str(&body).unwrap();
        assert!(page.items.len() <= 30);
        seen.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 65);
    for pair in seen.windows(2) {
        assert!((pair[0].updated_at, &pair[0].id) > (pair[1].updated_at, &pair[1].id));
    }
    // 120 messages: newest page first (50), then older pages, each oldest-to-newest.
    let newest = app.load(&s.cookie, &first.conversation_id).await.unwrap();
    assert_eq!(newest.messages.len(), 50);
    assert_eq!(newest.messages.last().unwrap().content, "m117");
    let mut all = newest.messages.clone();
    let mut before = newest.older_cursor;
    while let Some(position) = before {
        let (status, body) = app
            .call(
                &s.cookie,
                "history/load",
                &[("id", &first.conversation_id), ("before", &position.to_string())],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let page: ConversationView = serde_json::from_str(&body).unwrap();
        let mut older = page.messages;
        older.extend(all);
        all = older;
        before = page.older_cursor;
    }
    assert_eq!(all.len(), 120);
    let positions: Vec<i64> = all.iter().map(|m| m.position).collect();
    assert_eq!(positions, (1..=120).collect::<Vec<_>>());
}

#[tokio::test]
async fn older_turns_beyond_the_budget_are_left_out_and_flagged() {
    // 13 tokens ≈ 52 characters: the first turn is 50, the first two 87.
    let app = spawn_app_with(|s| s.context_token_budget = 13).await;
    let mut s = app.student().await;
    let first = ask_in(&mut s.ws, "[prefix=a] [tokens=3] first question here", None).await;
    assert!(!first.context_truncated);
    let id = first.conversation_id.clone();
    let second = ask_in(&mut s.ws, "[prefix=b] [tokens=3] second", Some(&id)).await;
    assert!(!second.context_truncated, "the first turn fits");
    let third = ask_in(&mut s.ws, "[prefix=c] [tokens=3] third", Some(&id)).await;
    assert!(third.context_truncated, "the first turn no longer fits");
    let sent = app.last_request();
    let contents: Vec<&str> = without_sources(&sent).iter().skip(1).map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["[prefix=b] [tokens=3] second", "b0 b1 b2 ", "[prefix=c] [tokens=3] third"]);
}

#[tokio::test]
async fn partial_answers_are_written_about_once_a_second_not_per_token() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let _ = ask_in(&mut s.ws, "[tokens=1] warm up", None).await; // user + session rows
    let before = app.state.db.writes();
    let answer = ask_in(&mut s.ws, "[tokens=40] [delay=60] a 2.4 second answer", None).await;
    assert_eq!(answer.chunks.len(), 40);
    let writes = app.state.db.writes() - before;
    // conversation + question + answer row + rate-limit event + final = 5, plus one
    // checkpoint per second.
    assert!((6..=9).contains(&writes), "{writes} writes for a 40-token answer");
}

#[tokio::test]
async fn answers_streaming_together_are_stored_in_shared_commits() {
    let app = spawn_app().await;
    const STUDENTS: usize = 12;
    let mut students = Vec::new();
    for _ in 0..STUDENTS {
        let mut s = app.student().await;
        let _ = ask_in(&mut s.ws, "[tokens=1] warm up", None).await;
        students.push(s);
    }
    let (rows_before, commits_before) = app.state.db.answer_commits();
    let answers = futures::future::join_all(students.iter_mut().map(|s| {
        ask_in(&mut s.ws, "[tokens=25] [delay=100] a 2.5 second answer", None)
    }))
    .await;
    for answer in &answers {
        assert!(answer.error.is_none(), "{:?}", answer.error);
        assert_eq!(answer.chunks.len(), 25);
    }
    let (rows, commits) = app.state.db.answer_commits();
    let (answer_rows, commits) = (rows - rows_before, commits - commits_before);
    // Each answer's row is written about 3 times (2 checkpoints, its end). One commit
    // per row write would be 36 commits; the writer shares them: a checkpoint commit a
    // second for everyone, and ends that arrive together committed together.
    assert!(answer_rows >= 2 * STUDENTS as u64, "{answer_rows} answer-row writes");
    assert!(
        commits * 2 < answer_rows,
        "{commits} commits for {answer_rows} answer-row writes"
    );
}

/// Starts the real server binary, as an operator would.
struct ServerProcess {
    child: std::process::Child,
    addr: SocketAddr,
}

/// A failed assertion must not leave a server running (and holding the test's pipes).
impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_server_process(database_url: &str, fake_addr: SocketAddr, port: u16) -> ServerProcess {
    start_server_process_with(database_url, fake_addr, port, &[]).await
}

async fn start_server_process_with(
    database_url: &str,
    fake_addr: SocketAddr,
    port: u16,
    env: &[(&str, &str)],
) -> ServerProcess {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let workdir = std::env::temp_dir().join("tutor-chat-tests");
    std::fs::create_dir_all(&workdir).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tutor-chat"))
        .envs(env.iter().copied())
        .current_dir(&workdir)
        .env("DATABASE_URL", database_url)
        .env("TUTOR_BIND", addr.to_string())
        .env("TUTOR_INSTANCE_ID", "crash-test")
        .env("OPENAI_BASE_URL", format!("http://{fake_addr}/v1"))
        .env("OPENAI_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://{addr}/healthz")).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ServerProcess { child, addr }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn kill_9_mid_answer_keeps_the_partial_text_as_interrupted() {
    let fake = FakeUpstream::new(FakeConfig {
        require_key: Some(KEY.into()),
        ..FakeConfig::default()
    });
    let fake_addr = fake.spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let database_url = fresh_database_url().await;
    let port = free_port();
    let mut server = start_server_process(&database_url, fake_addr, port).await;

    let page = reqwest::get(format!("http://{}/", server.addr)).await.unwrap();
    let cookie = page
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut request = format!("ws://{}/ws/chat", server.addr).into_client_request().unwrap();
    request.headers_mut().insert("cookie", HeaderValue::from_str(&cookie).unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert!(matches!(next_frame(&mut ws).await, ServerFrame::Hello { .. }));
    send_json(&mut ws, json!({"question": "[tokens=400] [delay=10] a long answer"})).await;
    let mut message_id = String::new();
    let mut conversation_id = String::new();
    let mut received = String::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        match next_frame(&mut ws).await {
            ServerFrame::Start { message_id: m, conversation_id: c, .. } => {
                message_id = m;
                conversation_id = c;
            }
            ServerFrame::Chunk { content, .. } => received.push_str(&content),
            other => panic!("unexpected {other:?}"),
        }
    }
    server.child.kill().unwrap(); // SIGKILL: no shutdown code runs
    server.child.wait().unwrap();

    let db = tutor_chat::db::Db::connect(&database_url, 1).await.unwrap();
    let user = db
        .find_user(cookie.trim_start_matches("tutor_session="))
        .await
        .unwrap()
        .unwrap();
    let (status, saved, _) = db.message_for_user(&user, &message_id).await.unwrap().unwrap();
    assert_eq!(status, MessageStatus::Streaming, "nothing ran after the kill");
    assert!(!saved.is_empty(), "a checkpoint was written");
    assert!(received.starts_with(&saved), "the checkpoint is what was streamed");
    // At most a second of tokens (100 at 10 ms) plus scheduling slack is lost.
    let lost = received.len() - saved.len();
    assert!(lost < received.len() / 2, "lost {lost} of {} bytes", received.len());

    let restarted = start_server_process(&database_url, fake_addr, port).await;
    let (status, after, _) = db.message_for_user(&user, &message_id).await.unwrap().unwrap();
    assert_eq!(status, MessageStatus::Interrupted);
    assert_eq!(after, saved, "the partial text is still there");

    let response = reqwest::Client::new()
        .post(format!("http://{}/api/history/load", restarted.addr))
        .header("cookie", &cookie)
        .form(&[("id", conversation_id.as_str())])
        .send()
        .await
        .unwrap();
    let view: ConversationView = response.json().await.unwrap();
    assert_eq!(view.messages[1].status, MessageStatus::Interrupted);
    assert_eq!(view.messages[1].content, saved);
    drop(restarted);
}

#[tokio::test]
async fn two_tabs_asking_in_one_conversation_at_once_both_get_stored() {
    let app = spawn_app().await;
    let mut first = app.student().await;
    let seed = ask_in(&mut first.ws, "[tokens=1] seed", None).await;
    let origin = format!("http://{}", app.addr);
    let mut tabs = Vec::new();
    // Four at once: each can lose the race to the other three at most, within the retries.
    for i in 0..4 {
        let mut ws = app.try_connect(Some(&first.cookie), Some(&origin)).await.unwrap();
        assert!(matches!(next_frame(&mut ws).await, ServerFrame::Hello { .. }));
        let conversation = seed.conversation_id.clone();
        tabs.push(tokio::spawn(async move {
            ask_in(&mut ws, &format!("[tokens=2] tab {i}"), Some(&conversation)).await
        }));
    }
    for tab in tabs {
        let answer = tab.await.unwrap();
        assert_eq!(answer.end.map(|e| e.1), Some(EndReason::Complete), "{:?}", answer.error);
    }
    let view = app.load(&first.cookie, &seed.conversation_id).await.unwrap();
    let positions: Vec<i64> = view.messages.iter().map(|m| m.position).collect();
    assert_eq!(positions, (1..=10).collect::<Vec<_>>(), "every question and answer, each in its place");
}

#[test]
fn the_index_command_shows_progress_and_skips_broken_files() {
    let root = fresh_data_dir();
    let lessons = root.join("lessons");
    std::fs::create_dir_all(&lessons).unwrap();
    std::fs::write(lessons.join("01-a-en.md"), "# Alpha\n\n## One\n\nText one.\n\n## Two\n\nText two.\n").unwrap();
    std::fs::write(lessons.join("02-broken-en.md"), "no title\n").unwrap();
    let run = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tutor-chat"))
            .args(["index", "--data-dir"])
            .arg(root.join("data"))
            .arg("--lessons-dir")
            .arg(&lessons)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).to_string())
    };
    let (ok, out) = run();
    assert!(ok, "{out}");
    assert!(out.contains("[1/1] 01-a-en.md: 2 sections"), "{out}");
    assert!(out.contains("skipped 02-broken-en.md: the lesson has no `# Title` line"), "{out}");
    assert!(out.contains("1 re-indexed, 0 unchanged, 0 removed, 1 skipped; 2 sections in the index"), "{out}");

    std::fs::remove_file(lessons.join("01-a-en.md")).unwrap();
    let (ok, out) = run();
    assert!(ok, "{out}");
    assert!(out.contains("removed 01-a-en.md"), "{out}");
    assert!(out.contains("0 sections in the index"), "{out}");
}

// ---- limits (issue #4) ----

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
    let app = spawn_app_with(|s| s.questions_per_minute = 3).await;
    let mut s = app.student().await;
    let first = ask_in(&mut s.ws, "[tokens=2] one", None).await;
    let id = first.conversation_id.clone();
    for q in ["[tokens=2] two", "[tokens=2] three"] {
        assert_eq!(ask_in(&mut s.ws, q, Some(&id)).await.end.map(|e| e.1), Some(EndReason::Complete));
    }
    let calls = app.fake.requests().len();
    expect_rate_limited(&ask_in(&mut s.ws, "[tokens=2] four", Some(&id)).await);
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
        s.questions_per_minute = 3;
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
async fn asking_works_again_when_the_window_moves_on() {
    // One question a minute; the second waits until the first leaves the window.
    let app = spawn_app_with(|s| s.questions_per_minute = 1).await;
    let mut s = app.student().await;
    ask_in(&mut s.ws, "[tokens=1] one", None).await;
    let wait = expect_rate_limited(&ask_in(&mut s.ws, "[tokens=1] two", None).await);
    assert!((59..=60).contains(&wait), "the first question was just asked: {wait}");
}

#[tokio::test]
async fn a_server_wide_cap_on_answers_at_once_answers_busy_and_stores_nothing() {
    let app = spawn_app_with(|s| s.max_concurrent_answers = 1).await;
    let mut a = app.student().await;
    let mut b = app.student().await;
    send_json(&mut a.ws, json!({"type": "ask", "question": "[tokens=20] [delay=25] a long one"})).await;
    let ServerFrame::Start { message_id, .. } = next_frame(&mut a.ws).await else { panic!("no start") };
    let refused = ask_in(&mut b.ws, "[tokens=2] me too", None).await;
    assert_eq!(refused.error, Some((ErrorCode::Busy, Some(5))));
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
    match app.try_connect(Some(&cookie), Some(&origin)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("a third socket must be refused with 429, got {:?}", other.map(|_| ())),
    }
    // Another student is not affected.
    let other_cookie = app.session_cookie().await;
    app.try_connect(Some(&other_cookie), Some(&origin)).await.unwrap();
    // Closing one tab frees a place (the server notices the close).
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if app.try_connect(Some(&cookie), Some(&origin)).await.is_ok() {
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

/// Starts the real binary, opens a socket with a session, and asks a question.
async fn ask_a_real_server(server: &ServerProcess, question: &str) -> (Ws, String) {
    let page = reqwest::get(format!("http://{}/", server.addr)).await.unwrap();
    let cookie = page.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_string();
    let mut request = format!("ws://{}/ws/chat", server.addr).into_client_request().unwrap();
    request.headers_mut().insert("cookie", HeaderValue::from_str(&cookie).unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert!(matches!(next_frame(&mut ws).await, ServerFrame::Hello { .. }));
    send_json(&mut ws, json!({"question": question})).await;
    (ws, cookie)
}

fn sigterm(server: &ServerProcess) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_for_exit(server: &mut ServerProcess, within: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "the server did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_running_answer_finish_then_exits_cleanly() {
    let fake = FakeUpstream::new(FakeConfig { require_key: Some(KEY.into()), ..FakeConfig::default() });
    let fake_addr = fake.spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let database_url = fresh_database_url().await;
    let mut server = start_server_process_with(&database_url, fake_addr, free_port(), &[("TUTOR_SHUTDOWN_GRACE_MS", "10000")]).await;
    let (mut ws, _) = ask_a_real_server(&server, "[tokens=30] [delay=40] about a second and a bit").await;
    let ServerFrame::Start { message_id, .. } = next_frame(&mut ws).await else { panic!("no start") };
    assert!(matches!(next_frame(&mut ws).await, ServerFrame::Chunk { seq: 1, .. }));
    sigterm(&server);
    // New connections are refused at once; this one gets its whole answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(reqwest::get(format!("http://{}/healthz", server.addr)).await.is_err(), "still accepting");
    let rest = read_rest(&mut ws, message_id).await;
    assert_eq!(rest.end, Some((30, EndReason::Complete)));
    assert_eq!(rest.chunks.len(), 29);
    // Then the socket closes (1001) and the process exits cleanly.
    let closed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap();
    assert!(matches!(closed, Some(Ok(Message::Close(_))) | None | Some(Err(_))), "{closed:?}");
    let status = tokio::task::block_in_place(|| wait_for_exit(&mut server, Duration::from_secs(10)));
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_after_the_grace_period_stores_the_rest_as_interrupted() {
    let fake = FakeUpstream::new(FakeConfig { require_key: Some(KEY.into()), ..FakeConfig::default() });
    let fake_addr = fake.spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let database_url = fresh_database_url().await;
    let mut server = start_server_process_with(&database_url, fake_addr, free_port(), &[("TUTOR_SHUTDOWN_GRACE_MS", "500")]).await;
    let (mut ws, cookie) = ask_a_real_server(&server, "[tokens=400] [delay=20] far longer than the grace").await;
    let message_id = match next_frame(&mut ws).await {
        ServerFrame::Start { message_id, .. } => message_id,
        other => panic!("{other:?}"),
    };
    let mut received = String::new();
    while received.len() < 20 {
        if let ServerFrame::Chunk { content, .. } = next_frame(&mut ws).await {
            received.push_str(&content);
        }
    }
    sigterm(&server);
    let started = std::time::Instant::now();
    // Chunks go on during the grace period, then the answer ends as interrupted.
    let last = loop {
        match next_frame(&mut ws).await {
            ServerFrame::Chunk { content, .. } => received.push_str(&content),
            other => break other,
        }
    };
    match last {
        ServerFrame::Error { code: ErrorCode::Interrupted, message_id: Some(id), .. } => assert_eq!(id, message_id),
        other => panic!("expected an interrupted error, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(400), "the grace period was honoured");
    let status = tokio::task::block_in_place(|| wait_for_exit(&mut server, Duration::from_secs(10)));
    assert!(status.success(), "exit status {status:?}");
    // Stored as interrupted, with exactly the text the student saw.
    let db = tutor_chat::db::Db::connect(&database_url, 1).await.unwrap();
    let user = db.find_user(cookie.trim_start_matches("tutor_session=")).await.unwrap().unwrap();
    let (status, saved, _) = db.message_for_user(&user, &message_id).await.unwrap().unwrap();
    assert_eq!(status, MessageStatus::Interrupted);
    assert_eq!(saved, received);
}

// ---- soak (issue #4) ----

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A bounded soak: many students asking again and again, every few questions from a
/// new connection, for a while. Every answer must arrive whole (the fake streams a
/// text we can predict), nothing may crash, and memory must settle. CI runs 200
/// clients for 15 s; docs/BENCHMARKS.md has the 2-minute run:
///   TUTOR_SOAK_SECS=120 cargo test --release --features ssr --test api soak -- --nocapture
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_many_students_lose_no_answer_and_memory_settles() {
    let clients: usize = std::env::var("TUTOR_SOAK_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let secs: u64 = std::env::var("TUTOR_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let app = std::sync::Arc::new(
        spawn_app_with(|s| {
            s.max_concurrent_answers = clients * 2;
            s.db_max_connections = 20;
        })
        .await,
    );
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            // Spread the class's arrival over the first second.
            tokio::time::sleep(Duration::from_millis((c as u64 * 1000) / clients as u64)).await;
            let cookie = app.session_cookie().await;
            let origin = format!("http://{}", app.addr);
            let (mut asked, mut whole, mut problems) = (0u64, 0u64, Vec::new());
            let mut ws: Option<Ws> = None;
            while std::time::Instant::now() < until {
                if asked % 5 == 0 {
                    // Every fifth question from a fresh connection (a reload).
                    let mut fresh = app.try_connect(Some(&cookie), Some(&origin)).await.unwrap();
                    next_frame(&mut fresh).await;
                    ws = Some(fresh);
                }
                let socket = ws.as_mut().unwrap();
                let tag = format!("c{c}q{asked}-");
                let answer = ask_in(socket, &format!("[prefix={tag}] [tokens=10] [delay=30] question"), None).await;
                asked += 1;
                let expected: String = (0..10).map(|i| format!("{tag}{i} ")).collect();
                if answer.end.map(|e| e.1) == Some(EndReason::Complete) && answer.text() == expected {
                    whole += 1;
                } else {
                    problems.push(format!("{tag}: {:?} {:?}", answer.end, answer.error));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (asked, whole, problems)
        }));
    }
    // Memory, sampled while the soak runs.
    let mut rss = Vec::new();
    while std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(((secs * 1000) / 10).max(500))).await;
        rss.push(rss_kb() / 1024);
    }
    let (mut asked, mut whole, mut problems) = (0, 0, Vec::new());
    for task in tasks {
        let (a, w, p) = task.await.expect("a client task panicked");
        asked += a;
        whole += w;
        problems.extend(p);
    }
    println!("soak: {clients} clients, {secs} s: {asked} questions, {whole} whole answers, {} problems; RSS MiB samples {rss:?}", problems.len());
    assert!(problems.is_empty(), "lost or broken answers: {:?}", &problems[..problems.len().min(10)]);
    assert_eq!(asked, whole);
    assert!(asked >= clients as u64, "every client asked at least once");
    // Stored, every one: each question and its answer.
    let stored = app.state.db.writes();
    assert!(stored >= asked * 4, "{stored} writes for {asked} answers");
    // Memory settles: the last sample is not far above the one after warm-up (a leak
    // of even a few KiB per answer would show over thousands of answers).
    let warm = rss[rss.len() / 3];
    let last = *rss.last().unwrap();
    assert!(last <= warm + warm / 2 + 64, "RSS grew from {warm} MiB to {last} MiB");
    // The server still answers.
    let mut s = app.student().await;
    assert_eq!(ask_in(&mut s.ws, "[tokens=2] still there?", None).await.end.map(|e| e.1), Some(EndReason::Complete));
}

// ---- accounts (issue #4) ----

fn new_session_cookie(set_cookie_headers: &reqwest::header::HeaderMap) -> Option<String> {
    set_cookie_headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("tutor_session="))
        .map(|c| c.split(';').next().unwrap().to_string())
}

impl TestApp {
    /// Posts an account form as a browser without JavaScript would, not following the
    /// redirect; returns the status, the new session cookie if one was set, and the body.
    async fn account_form(&self, cookie: &str, endpoint: &str, form: &[(&str, &str)]) -> (u16, Option<String>, String) {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let response = client
            .post(format!("http://{}/api/account/{endpoint}", self.addr))
            .header("cookie", cookie)
            .header("origin", format!("http://{}", self.addr))
            .header("referer", format!("http://{}/signin", self.addr))
            .header("accept", "text/html,application/xhtml+xml")
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let cookie = new_session_cookie(response.headers());
        (status, cookie, response.text().await.unwrap())
    }

    async fn whoami(&self, cookie: &str) -> Option<String> {
        let (status, body) = self.call(cookie, "account/me", &[]).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

#[tokio::test]
async fn sign_up_keeps_the_guests_conversations_and_sign_in_works_from_another_browser() {
    let app = spawn_app().await;
    let mut guest = app.student().await;
    let asked = ask_in(&mut guest.ws, "[tokens=2] asked as a guest", None).await;
    assert_eq!(app.whoami(&guest.cookie).await, None);

    let (status, account_cookie, _) = app
        .account_form(&guest.cookie, "signup", &[("username", "Anna_K"), ("password", "correct horse battery")])
        .await;
    assert!((300..400).contains(&status), "a plain form is redirected to the chat: {status}");
    let account_cookie = account_cookie.expect("a new session cookie");
    assert_ne!(account_cookie, guest.cookie, "the session is replaced at sign-up");
    assert!(account_cookie.len() > "tutor_session=".len() + 32);
    assert_eq!(app.whoami(&account_cookie).await.as_deref(), Some("Anna_K"));
    // The guest's conversation is the account's now; the old cookie names no one.
    assert_eq!(app.list(&account_cookie).await.items[0].id, asked.conversation_id);
    assert!(app.list(&guest.cookie).await.items.is_empty());

    // The password is stored as an argon2id hash, never as itself.
    let (hash,): (String,) = {
        let db = &app.state.db;
        let (_, hash) = db.account_by_name("anna_k").await.unwrap().unwrap();
        (hash,)
    };
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));

    // Names are unique whatever their case.
    let other = app.session_cookie().await;
    let (_, body) = app
        .call(&other, "account/signup", &[("username", "anna_k"), ("password", "another password")])
        .await;
    assert!(body.contains("That username is taken."), "{body}");

    // Another browser signs in and sees the conversation; its own guest chat comes along.
    let mut second = app.student().await;
    let second_guest = ask_in(&mut second.ws, "[tokens=2] asked in the second browser", None).await;
    let (status, signed_in, _) = app
        .account_form(&second.cookie, "signin", &[("username", "ANNA_K"), ("password", "correct horse battery")])
        .await;
    assert!((300..400).contains(&status));
    let signed_in = signed_in.expect("a new session cookie");
    let ids: Vec<String> = app.list(&signed_in).await.items.into_iter().map(|c| c.id).collect();
    assert!(ids.contains(&asked.conversation_id) && ids.contains(&second_guest.conversation_id), "{ids:?}");

    // Sign-out ends the session on the server: the cookie is worth nothing after.
    let (status, fresh, _) = app.account_form(&signed_in, "signout", &[]).await;
    assert!((300..400).contains(&status));
    assert!(fresh.is_some_and(|f| f != signed_in), "a fresh guest cookie");
    assert_eq!(app.whoami(&signed_in).await, None);
    assert!(app.list(&signed_in).await.items.is_empty());
    // The first browser is still signed in.
    assert_eq!(app.whoami(&account_cookie).await.as_deref(), Some("Anna_K"));
}

#[tokio::test]
async fn wrong_passwords_are_throttled_per_username() {
    let app = spawn_app().await;
    let cookie = app.session_cookie().await;
    let (_, account, _) = app
        .account_form(&cookie, "signup", &[("username", "bob"), ("password", "bob's long password")])
        .await;
    assert!(account.is_some());
    for _ in 0..5 {
        let (status, cookie_set, body) = app
            .account_form(&app.session_cookie().await, "signin", &[("username", "bob"), ("password", "wrong password")])
            .await;
        assert!(cookie_set.is_none(), "{status} {body}");
    }
    // Now even the right password is refused for a while, and says why.
    let browser = app.session_cookie().await;
    let (status, cookie_set, _) = app
        .account_form(&browser, "signin", &[("username", "bob"), ("password", "bob's long password")])
        .await;
    assert!(cookie_set.is_none(), "throttled: {status}");
    let (_, body) = app
        .call(&browser, "account/signin", &[("username", "bob"), ("password", "bob's long password")])
        .await;
    assert!(body.contains("Too many failed sign-ins"), "{body}");
    // Another name is not throttled by bob's failures.
    let (_, other, _) = app
        .account_form(&app.session_cookie().await, "signup", &[("username", "carol"), ("password", "carol's password")])
        .await;
    assert!(other.is_some());
}

#[tokio::test]
async fn account_forms_refuse_bad_input_and_foreign_origins() {
    let app = spawn_app().await;
    let cookie = app.session_cookie().await;
    let (_, body) = app.call(&cookie, "account/signup", &[("username", "ab"), ("password", "long enough pw")]).await;
    assert!(body.contains("3 to 32"), "{body}");
    let (_, body) = app.call(&cookie, "account/signup", &[("username", "dave"), ("password", "short")]).await;
    assert!(body.contains("8 to 128"), "{body}");
    let (_, body) = app
        .call_from(&cookie, "account/signup", &[("username", "eve"), ("password", "long enough pw")], "http://evil.example")
        .await;
    assert!(body.contains("other sites"), "{body}");
    let (_, body) = app
        .call_from(&cookie, "account/signout", &[], "http://evil.example")
        .await;
    assert!(body.contains("other sites"), "{body}");
    assert!(app.state.db.account_by_name("eve").await.unwrap().is_none());
}

#[tokio::test]
async fn account_sessions_expire_when_unused_and_slide_while_used() {
    use tutor_chat::account::store::{hash_token, ACCOUNT_SESSION_MS};
    use tutor_chat::db::now_ms;
    let app = spawn_app().await;
    let guest = app.session_cookie().await;
    let (_, cookie, _) = app
        .account_form(&guest, "signup", &[("username", "frank"), ("password", "frank's password")])
        .await;
    let cookie = cookie.unwrap();
    let token = cookie.trim_start_matches("tutor_session=").to_string();
    sqlx::any::install_default_drivers();
    let url = app.state.settings.database_url.clone().unwrap();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let set_expiry = |at: i64| {
        let pool = pool.clone();
        let hash = hash_token(&token);
        async move {
            sqlx::query("UPDATE sessions SET expires_at = $1 WHERE token_hash = $2")
                .bind(at)
                .bind(hash)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    let expiry = || {
        let pool = pool.clone();
        let hash = hash_token(&token);
        async move {
            use sqlx::Row;
            sqlx::query("SELECT expires_at FROM sessions WHERE token_hash = $1")
                .bind(hash)
                .fetch_one(&pool)
                .await
                .unwrap()
                .get::<i64, _>(0)
        }
    };
    // Used with a day left: renewed to a full period.
    set_expiry(now_ms() + 86_400_000).await;
    assert_eq!(app.whoami(&cookie).await.as_deref(), Some("frank"));
    assert!(expiry().await > now_ms() + ACCOUNT_SESSION_MS - 60_000, "the expiry slid forward");
    // Unused past its expiry: no longer signed in.
    set_expiry(now_ms() - 1).await;
    assert_eq!(app.whoami(&cookie).await, None);
    assert!(app.list(&cookie).await.items.is_empty());
}
