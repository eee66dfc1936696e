//! The test harness: `spawn_app()` starts the whole app on port 0 against our
//! OpenAI-compatible test upstream, with a fresh database (SQLite, or PostgreSQL when
//! `TUTOR_TEST_DATABASE_URL` is set); `TestApp` drives it as a browser would, over real
//! HTTP and WebSocket connections. Every `tutor_chat::` path the tests use is imported
//! here and only here, so a move inside the crate is one edit in this file.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use tutor_chat::net::serve;
use tutor_chat::state::AppState;

pub use tutor_chat::account::store::{hash_token, StaleGone, ACCOUNT_SESSION_MS};
pub use tutor_chat::clock::Clock;
pub use tutor_chat::db::{now_ms, Db};
pub use tutor_chat::faq::matcher::{
    DIRECT_ANSWER_THRESHOLD as FAQ_DIRECT_ANSWER_THRESHOLD, SOURCE_MIN_SCORE as FAQ_SOURCE_MIN_SCORE,
};
pub use tutor_chat::feedback::Feedback;
pub use tutor_chat::history::{ConversationPage, ConversationView, MessageRole, MessageStatus, TeacherRequest};
pub use tutor_chat::lessons::Source;
pub use tutor_chat::chat::store::AnswerWrite;
pub use tutor_chat::protocol::{EndReason, ErrorCode, ServerFrame, Usage};
pub use tutor_chat::server::{build_app, leptos_options, serve_limits};
pub use tutor_chat::settings::Settings;
pub use tutor_chat::upstream::fake::{FakeConfig, FakeUpstream, RecordedMessage, RecordedRequest};

/// The API key the test upstream requires.
pub const KEY: &str = "test-key";

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

// ---- the app under test ----

pub struct TestApp {
    pub addr: SocketAddr,
    pub fake: FakeUpstream,
    pub state: AppState,
    pub http: reqwest::Client,
}

/// A browser with its own session: page load for the cookie, then a socket.
pub struct Student {
    pub cookie: String,
    pub ws: Ws,
}

/// A fresh, empty database for one test: PostgreSQL when `TUTOR_TEST_DATABASE_URL`
/// names a server (the test command starts a throwaway cluster), else an SQLite file.
/// Dropped when the test ends, as its data folder is removed (`leftovers.rs`).
pub async fn fresh_database_url() -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    match std::env::var("TUTOR_TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => {
            use sqlx::Connection;
            let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .unwrap();
            crate::leftovers::database(&admin_url, &name);
            let (base, _) = admin_url.rsplit_once('/').unwrap();
            format!("{base}/{name}")
        }
        _ => {
            let dir = std::env::temp_dir().join("tutor-chat-tests");
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{name}.db"));
            for suffix in ["", "-wal", "-shm"] {
                crate::leftovers::path(format!("{}{suffix}", file.display()).into());
            }
            format!("sqlite://{}?mode=rwc", file.display())
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
    // Many tests ask more than ten questions a minute, from one address (this one) as
    // many students; the limits have their own tests.
    settings.question_budget = 0;
    settings.new_guests_per_hour_per_address = 0;
    settings.questions_per_minute_per_address = 0;
    settings.answers_at_once_per_address = 0;
    settings.answers_at_once_per_user = 0;
    settings.signups_per_hour_per_address = 0;
    settings.connections_per_address = 0;
    settings.calls_per_second_per_address = 0;
    // Instances sharing a database share the secret that signs sessions, as a
    // deployment's do (a secret kept in the data folder has its own test).
    settings.session_secret = Some(SESSION_SECRET.into());
    settings
}

pub const SESSION_SECRET: &str = "the test deployment's session secret";

/// Each app gets its own data folder (its lesson index lives there).
pub fn fresh_data_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir()
        .join("tutor-chat-tests")
        .join(format!("data-{}", uuid::Uuid::new_v4().simple()));
    crate::leftovers::path(dir.clone());
    dir
}

/// The sample course shipped in the repository.
pub fn lessons_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons")
}

/// The test upstream on a free port, requiring `KEY`; returns it and its address.
pub async fn spawn_fake(config: FakeConfig) -> (FakeUpstream, SocketAddr) {
    let fake = FakeUpstream::new(FakeConfig {
        require_key: Some(KEY.into()),
        ..config
    });
    let addr = fake.spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    (fake, addr)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_options(tweak, |_| {}).await
}

/// An app whose Leptos options (site root, hashed file names) the test chooses too.
pub async fn spawn_app_with_options(
    tweak: impl FnOnce(&mut Settings),
    tweak_options: impl FnOnce(&mut leptos::config::LeptosOptions),
) -> TestApp {
    let (fake, fake_addr) = spawn_fake(FakeConfig {
        tokens: 8,
        delay: Duration::from_millis(5),
        ..FakeConfig::default()
    })
    .await;
    let mut settings = test_settings(fake_addr).await;
    tweak(&mut settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut options = leptos_options().unwrap();
    options.site_addr = addr;
    tweak_options(&mut options);
    let (app, state) = build_app(settings, options).await.unwrap();
    // The accept loop the binary runs (header timeout, connections per address).
    let limits = serve_limits(&state.settings);
    tokio::spawn(async move {
        serve(listener, app, limits, std::future::pending()).await.unwrap();
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

/// The whole `Set-Cookie` header that starts the session, attributes and all.
pub fn session_set_cookie(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("tutor_session="))
}

/// The session cookie a response set, as a browser sends it back (`tutor_session=…`).
pub fn new_session_cookie(headers: &reqwest::header::HeaderMap) -> Option<String> {
    session_set_cookie(headers).map(|c| c.split(';').next().unwrap().to_string())
}

// ---- a browser: page loads and sockets ----

impl TestApp {
    /// Loads the page like a browser and returns its session cookie.
    pub async fn session_cookie(&self) -> String {
        let response = self
            .http
            .get(format!("http://{}/", self.addr))
            .send()
            .await
            .unwrap();
        new_session_cookie(response.headers()).expect("the page sets a session cookie")
    }

    pub async fn try_connect(
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

    /// A socket for this session from the page's own Origin, its `hello` read.
    pub async fn socket(&self, cookie: &str) -> Ws {
        let origin = format!("http://{}", self.addr);
        let mut ws = self.try_connect(Some(cookie), Some(&origin)).await.unwrap();
        match next_frame(&mut ws).await {
            ServerFrame::Hello { protocol, .. } => assert_eq!(protocol, 1),
            other => panic!("expected hello, got {other:?}"),
        }
        ws
    }

    /// A browser-like client: session cookie and the page's own Origin.
    pub async fn connect(&self) -> Ws {
        self.student().await.ws
    }

    pub async fn student(&self) -> Student {
        let cookie = self.session_cookie().await;
        let ws = self.socket(&cookie).await;
        Student { cookie, ws }
    }

    pub fn last_request(&self) -> RecordedRequest {
        self.fake.requests().pop().expect("the upstream got a request")
    }
}

// ---- server functions, as the page calls them ----

impl TestApp {
    /// Calls a server function the way the page does (a same-origin form POST).
    pub async fn call(&self, cookie: &str, endpoint: &str, form: &[(&str, &str)]) -> (u16, String) {
        self.call_from(cookie, endpoint, form, &format!("http://{}", self.addr))
            .await
    }

    pub async fn call_from(
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

    pub async fn list(&self, cookie: &str) -> ConversationPage {
        let (status, body) = self.call(cookie, "history/list", &[]).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub async fn load(&self, cookie: &str, id: &str) -> Result<ConversationView, String> {
        let (status, body) = self.call(cookie, "history/load", &[("id", id)]).await;
        if status == 200 {
            Ok(serde_json::from_str(&body).unwrap())
        } else {
            Err(body)
        }
    }

    /// Posts an account form as a browser without JavaScript would, not following the
    /// redirect; returns the status, the new session cookie if one was set, and the body.
    pub async fn account_form(&self, cookie: &str, endpoint: &str, form: &[(&str, &str)]) -> (u16, Option<String>, String) {
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

    /// The HTML of a page, as this browser gets it.
    pub async fn page(&self, cookie: &str, path: &str) -> String {
        self.http
            .get(format!("http://{}{path}", self.addr))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A new account, signed up from a fresh browser; returns its session cookie.
    pub async fn signed_up(&self, username: &str, password: &str) -> String {
        let guest = self.session_cookie().await;
        let (_, cookie, body) = self
            .account_form(&guest, "signup", &[("username", username), ("password", password)])
            .await;
        cookie.unwrap_or_else(|| panic!("sign-up of {username} failed: {body}"))
    }

    pub async fn whoami(&self, cookie: &str) -> Option<String> {
        let (status, body) = self.call(cookie, "account/me", &[]).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

// ---- the chat socket: frames and answers ----

pub async fn next_message(ws: &mut Ws) -> Message {
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

pub async fn next_frame(ws: &mut Ws) -> ServerFrame {
    match next_message(ws).await {
        Message::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// How the server refused a socket after its upgrade: its one `error` frame, then the
/// close.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub retry_after: Option<u64>,
    pub close_code: u16,
}

impl TestApp {
    /// A socket from the page's own Origin (with `cookie`, or none), its `hello` read;
    /// or how the server refused it once open.
    pub async fn open_or_refused(&self, cookie: Option<&str>) -> Result<Ws, Refusal> {
        let origin = format!("http://{}", self.addr);
        let mut ws = self.try_connect(cookie, Some(&origin)).await.expect("the upgrade is accepted");
        match next_frame(&mut ws).await {
            ServerFrame::Hello { .. } => Ok(ws),
            ServerFrame::Error { code, retry_after, message_id: None, .. } => match next_message(&mut ws).await {
                Message::Close(Some(close)) => Err(Refusal { code, retry_after, close_code: close.code.into() }),
                other => panic!("a refused socket closes after its error, got {other:?}"),
            },
            other => panic!("expected hello or a refusal, got {other:?}"),
        }
    }
}

/// What a socket refused for too many open (tabs, or sockets of one address) gets.
pub const TOO_MANY_CONNECTIONS: Refusal =
    Refusal { code: ErrorCode::TooManyConnections, retry_after: Some(10), close_code: 1013 };

pub async fn send_json(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into())).await.unwrap();
}

#[derive(Debug, Default)]
pub struct Answer {
    pub context_truncated: bool,
    pub sources: Vec<Source>,
    /// The FAQ entry given as the answer ("answered by your teacher"), if one was.
    pub faq_id: Option<String>,
    pub conversation_id: String,
    pub message_id: String,
    /// The question answered (`start`'s `question_id`).
    pub question_id: Option<String>,
    /// For a regenerate or an edit: the message this answer's version replaces.
    pub replaces: Option<String>,
    pub chunks: Vec<(u64, String)>,
    pub end: Option<(u64, EndReason)>,
    pub error: Option<(ErrorCode, Option<u64>)>,
    /// `budget` frames read on the way (the question budget, when it is on).
    pub budgets: Vec<ServerFrame>,
}

impl Answer {
    pub fn text(&self) -> String {
        self.chunks.iter().map(|(_, c)| c.as_str()).collect()
    }
}

/// Reads one answer to its `end` or `error`.
pub async fn read_answer(ws: &mut Ws) -> Answer {
    continue_answer(ws, Answer::default()).await
}

/// Reads the rest of an answer whose `start` was already read.
pub async fn read_rest(ws: &mut Ws, message_id: String) -> Answer {
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
                faq_id,
                question_id,
                replaces,
            } => {
                answer.question_id = question_id;
                answer.replaces = replaces;
                answer.faq_id = faq_id;
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
            // The student's other tabs' doings (a rename, a deletion) are not this answer's.
            ServerFrame::ConversationChanged { .. } => {}
            budget @ ServerFrame::Budget { .. } => answer.budgets.push(budget),
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Asks in a new conversation and reads the answer.
pub async fn ask(ws: &mut Ws, question: &str) -> Answer {
    ask_in(ws, question, None).await
}

/// Asks in the given conversation (a new one for `None`) and reads the answer.
pub async fn ask_in(ws: &mut Ws, question: &str, conversation_id: Option<&str>) -> Answer {
    let mut frame = json!({"type": "ask", "question": question});
    if let Some(id) = conversation_id {
        frame["conversation_id"] = json!(id);
    }
    send_json(ws, frame).await;
    read_answer(ws).await
}

pub fn assert_seq_in_order(answer: &Answer) {
    for (i, (seq, _)) in answer.chunks.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "seq must start at 1 and grow by one");
    }
}

/// How alike two questions are to the FAQ matcher, in [0, 1].
pub fn faq_similarity(a: &str, b: &str) -> f32 {
    use tutor_chat::faq::matcher::{similarity, terms};
    similarity(&terms(a), &terms(b))
}

// ---- what the model got ----

pub const SOURCES_PROMPT: &str = "Sources from the course's lessons";

/// The conversation as the model got it, without the lesson sources added for the
/// question (their own test checks them).
pub fn without_sources(sent: &RecordedRequest) -> Vec<&RecordedMessage> {
    sent.messages
        .iter()
        .filter(|m| !(m.role == "system" && m.content.starts_with(SOURCES_PROMPT)))
        .collect()
}

// ---- teachers ----

/// Runs `tutor-chat teacher ARGS` against the app's database, with `stdin` piped in.
pub fn teacher_command(app: &TestApp, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tutor-chat"))
        .arg("teacher")
        .args(args)
        .env("DATABASE_URL", app.state.settings.database_url.as_deref().unwrap())
        .env("TUTOR_DATA_DIR", &app.state.settings.data_dir)
        .env("RUST_LOG", "off")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

pub async fn sign_in(app: &TestApp, username: &str, password: &str) -> String {
    let (status, cookie, body) = app
        .account_form(&app.session_cookie().await, "signin", &[("username", username), ("password", password)])
        .await;
    assert!((300..400).contains(&status), "sign-in of {username}: {status} {body}");
    cookie.expect("a session for the teacher")
}

/// A teacher account made by the command, signed in; returns its session cookie.
pub async fn teacher(app: &TestApp, username: &str) -> String {
    let (ok, out, err) = teacher_command(app, &["add", username], "the teacher's password\n");
    assert!(ok, "{out}{err}");
    sign_in(app, username, "the teacher's password").await
}

/// The frames after an `ask` (or `regenerate`, `edit`) sent again, up to its `end`: the `start`, the snapshot,
/// the chunks after it. The text is the snapshot's and the chunks'. An answer already
/// over when the `ask` came again ends with its snapshot, which is not live.
pub async fn follow_the_ask_sent_again(ws: &mut Ws) -> (Answer, String) {
    let mut answer = Answer::default();
    let mut text = String::new();
    let mut last_seq = 0;
    loop {
        match next_frame(ws).await {
            ServerFrame::Start { conversation_id, message_id, question_id, replaces, .. } => {
                answer.conversation_id = conversation_id;
                answer.message_id = message_id;
                answer.question_id = question_id;
                answer.replaces = replaces;
            }
            ServerFrame::Snapshot { message_id, content, seq, live, status, .. } => {
                assert_eq!(message_id, answer.message_id, "the snapshot of the answer started");
                text = content;
                last_seq = seq;
                if !live {
                    // Over before the socket followed it (a slow machine): its snapshot
                    // is its end. Only a complete one is read as an end.
                    answer.end = (status == MessageStatus::Complete).then_some((seq, EndReason::Complete));
                    return (answer, text);
                }
            }
            ServerFrame::Chunk { content, seq, .. } => {
                assert_eq!(seq, last_seq + 1, "no gap, no repeat");
                last_seq = seq;
                text.push_str(&content);
            }
            ServerFrame::End { seq, reason, .. } => {
                answer.end = Some((seq, reason));
                return (answer, text);
            }
            ServerFrame::Budget { .. } | ServerFrame::ConversationChanged { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The network drops just as `frame` (an `ask`, `regenerate` or `edit`) got its `start`:
/// sends it, reads up to that `start`, drops the connection, and sends the same frame
/// on a new one. Returns the student on that connection, the first `start` (its ids,
/// in an `Answer`) and what the frame sent again got, as [`follow_the_ask_sent_again`]
/// reads it.
pub async fn send_again_after_its_start(app: &TestApp, student: Student, frame: Value) -> (Student, Answer, Answer, String) {
    let Student { cookie, mut ws } = student;
    send_json(&mut ws, frame.clone()).await;
    let first = loop {
        match next_frame(&mut ws).await {
            ServerFrame::Start { conversation_id, message_id, question_id, replaces, .. } => {
                break Answer { conversation_id, message_id, question_id, replaces, ..Answer::default() };
            }
            ServerFrame::Budget { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    drop(ws); // its chunks are lost with the connection
    let mut ws = app.socket(&cookie).await;
    send_json(&mut ws, frame).await;
    let (again, text) = follow_the_ask_sent_again(&mut ws).await;
    (Student { cookie, ws }, first, again, text)
}
