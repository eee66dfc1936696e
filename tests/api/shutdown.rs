//! Shutdown, on the app in-process and on the real binary as an operator runs it:
//! sockets closed with 1001, SIGTERM's grace period (then the answer is handed over),
//! and kill -9: the restarted server continues the cut answer from its last
//! checkpoint, or keeps it interrupted when continuing is off.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

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
        // These tests read an answer's frames only; the budget's meter has its own.
        .env("TUTOR_QUESTION_BUDGET", "0")
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

/// Kills a real server mid-answer (SIGKILL: no shutdown code runs) after `streamed`;
/// returns what the student received, the answer's ids and the session cookie.
async fn kill_mid_answer(server: &mut ServerProcess, question: &str, streamed: Duration) -> (String, String, String, String) {
    let (mut ws, cookie) = ask_a_real_server(server, question).await;
    let mut message_id = String::new();
    let mut conversation_id = String::new();
    let mut received = String::new();
    let started = std::time::Instant::now();
    while started.elapsed() < streamed {
        match next_frame(&mut ws).await {
            ServerFrame::Start { message_id: m, conversation_id: c, .. } => {
                message_id = m;
                conversation_id = c;
            }
            ServerFrame::Chunk { content, .. } => received.push_str(&content),
            other => panic!("unexpected {other:?}"),
        }
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    (received, message_id, conversation_id, cookie)
}

/// Polls the stored answer until it is no longer streaming.
async fn settled(db: &Db, user: &str, message_id: &str, within: Duration) -> (MessageStatus, String) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let stored = db.followed_answer(user, message_id).await.unwrap().unwrap();
        let (status, content) = (stored.status, stored.content);
        if status != MessageStatus::Streaming {
            return (status, content);
        }
        assert!(std::time::Instant::now() < deadline, "still streaming after {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn kill_9_mid_answer_is_continued_by_the_restarted_server_with_no_word_lost_or_repeated() {
    let (fake, fake_addr) = spawn_fake(FakeConfig::default()).await;
    let database_url = fresh_database_url().await;
    let port = free_port();
    let mut server = start_server_process(&database_url, fake_addr, port).await;
    let question = "[tokens=300] [delay=10] a long answer";
    let (received, message_id, _, cookie) = kill_mid_answer(&mut server, question, Duration::from_millis(1500)).await;

    let db = Db::connect(&database_url, 1).await.unwrap();
    let user = db.find_user(cookie.trim_start_matches("tutor_session=")).await.unwrap().unwrap();
    let stored = db.followed_answer(&user, &message_id).await.unwrap().unwrap();
    let (status, saved) = (stored.status, stored.content);
    assert_eq!(status, MessageStatus::Streaming, "nothing ran after the kill");
    assert!(!saved.is_empty() && received.starts_with(&saved), "a checkpoint of what was streamed");

    // The restarted server takes its own cut answer over at once and finishes it.
    let restarted = start_server_process(&database_url, fake_addr, port).await;
    let (status, text) = settled(&db, &user, &message_id, Duration::from_secs(20)).await;
    assert_eq!(status, MessageStatus::Complete);
    let continuation = fake
        .requests()
        .into_iter()
        .find(|r| r.messages.last().is_some_and(|m| m.content == tutor_chat::upstream::CONTINUE_INSTRUCTION))
        .expect("the model was asked to continue");
    assert_eq!(continuation.messages[continuation.messages.len() - 2].content, saved);
    assert_eq!(text, format!("{saved}{}", continuation.answer));
    // The whole text, as the upstream writes it in one go: nothing lost or repeated.
    let (mut ws, _) = ask_a_real_server(&restarted, question).await;
    let whole = read_answer(&mut ws).await;
    assert_eq!(text, whole.text());
}

#[tokio::test]
async fn kill_9_mid_answer_keeps_the_partial_text_as_interrupted_when_continuing_is_off() {
    let (_fake, fake_addr) = spawn_fake(FakeConfig::default()).await;
    let database_url = fresh_database_url().await;
    let port = free_port();
    let off = [("TUTOR_MAX_CONTINUATIONS", "0")];
    let mut server = start_server_process_with(&database_url, fake_addr, port, &off).await;
    let (received, message_id, conversation_id, cookie) =
        kill_mid_answer(&mut server, "[tokens=400] [delay=10] a long answer", Duration::from_millis(2500)).await;

    let db = Db::connect(&database_url, 1).await.unwrap();
    let user = db.find_user(cookie.trim_start_matches("tutor_session=")).await.unwrap().unwrap();
    let stored = db.followed_answer(&user, &message_id).await.unwrap().unwrap();
    let (status, saved) = (stored.status, stored.content);
    assert_eq!(status, MessageStatus::Streaming, "nothing ran after the kill");
    assert!(!saved.is_empty(), "a checkpoint was written");
    assert!(received.starts_with(&saved), "the checkpoint is what was streamed");
    // At most a second of tokens (100 at 10 ms) plus scheduling slack is lost.
    let lost = received.len() - saved.len();
    assert!(lost < received.len() / 2, "lost {lost} of {} bytes", received.len());

    let restarted = start_server_process_with(&database_url, fake_addr, port, &off).await;
    let (status, after) = settled(&db, &user, &message_id, Duration::from_secs(10)).await;
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

/// Starts the real binary, opens a socket with a session, and asks a question.
async fn ask_a_real_server(server: &ServerProcess, question: &str) -> (Ws, String) {
    let page = reqwest::get(format!("http://{}/", server.addr)).await.unwrap();
    let cookie = new_session_cookie(page.headers()).expect("the page sets a session cookie");
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
    let (_fake, fake_addr) = spawn_fake(FakeConfig::default()).await;
    let database_url = fresh_database_url().await;
    let mut server = start_server_process_with(&database_url, fake_addr, free_port(), &[("TUTOR_SHUTDOWN_GRACE_MS", "10000")]).await;
    let (mut ws, _) = ask_a_real_server(&server, "[tokens=150] [delay=40] about six seconds").await;
    let ServerFrame::Start { message_id, .. } = next_frame(&mut ws).await else { panic!("no start") };
    assert!(matches!(next_frame(&mut ws).await, ServerFrame::Chunk { seq: 1, .. }));
    sigterm(&server);
    // New connections are refused from now on; this one gets its whole answer.
    let refusing_by = tokio::time::Instant::now() + Duration::from_secs(5);
    while reqwest::get(format!("http://{}/healthz", server.addr)).await.is_ok() {
        assert!(tokio::time::Instant::now() < refusing_by, "still accepting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&database_url).await.unwrap();
    let status: String = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1")
        .bind(&message_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(status, "streaming", "refused while the answer was still being written");
    let rest = read_rest(&mut ws, message_id).await;
    assert_eq!(rest.end, Some((150, EndReason::Complete)));
    assert_eq!(rest.chunks.len(), 149);
    // Then the socket closes (1001) and the process exits cleanly.
    let closed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap();
    assert!(matches!(closed, Some(Ok(Message::Close(_))) | None | Some(Err(_))), "{closed:?}");
    let status = tokio::task::block_in_place(|| wait_for_exit(&mut server, Duration::from_secs(10)));
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_after_the_grace_period_hands_the_answer_over_and_the_next_start_finishes_it() {
    let (fake, fake_addr) = spawn_fake(FakeConfig::default()).await;
    let database_url = fresh_database_url().await;
    let port = free_port();
    let grace = [("TUTOR_SHUTDOWN_GRACE_MS", "500")];
    let mut server = start_server_process_with(&database_url, fake_addr, port, &grace).await;
    let question = "[tokens=400] [delay=20] far longer than the grace";
    let (mut ws, cookie) = ask_a_real_server(&server, question).await;
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
    // Chunks go on during the grace period; then the socket closes (1001) with the
    // answer unfinished but not ended: the page reconnects and resumes it elsewhere.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerFrame>(text.as_str()).unwrap() {
                ServerFrame::Chunk { content, .. } => received.push_str(&content),
                other => panic!("expected chunks, then the close, got {other:?}"),
            },
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Away));
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(400), "the grace period was honoured");
    let status = tokio::task::block_in_place(|| wait_for_exit(&mut server, Duration::from_secs(10)));
    assert!(status.success(), "exit status {status:?}");
    // Stored with exactly the text the student saw, released for the next instance.
    let db = Db::connect(&database_url, 1).await.unwrap();
    let user = db.find_user(cookie.trim_start_matches("tutor_session=")).await.unwrap().unwrap();
    let stored = db.followed_answer(&user, &message_id).await.unwrap().unwrap();
    let (status, saved) = (stored.status, stored.content);
    assert_eq!(status, MessageStatus::Streaming);
    assert_eq!(saved, received);

    // The next start (a rolling restart's new process) finishes it from there.
    let restarted = start_server_process_with(&database_url, fake_addr, port, &grace).await;
    let (status, text) = settled(&db, &user, &message_id, Duration::from_secs(30)).await;
    assert_eq!(status, MessageStatus::Complete);
    let (mut ws, _) = ask_a_real_server(&restarted, question).await;
    assert_eq!(text, read_answer(&mut ws).await.text(), "no word lost or repeated");
    assert!(fake.requests().iter().any(|r| r.messages.last().is_some_and(|m| m.content == tutor_chat::upstream::CONTINUE_INSTRUCTION)));
}
