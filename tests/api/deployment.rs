//! The deployment of `deploy/` as an operator runs it (#12): three real server
//! processes on one throwaway PostgreSQL, Debian's nginx in front with the config from
//! `deploy/nginx.conf` (only its port and upstream lines replaced). Clients connect
//! through nginx like browsers; instances are killed (SIGKILL) and restarted (SIGTERM)
//! under them. PostgreSQL only: several processes share nothing else (on SQLite the
//! test says it is skipped).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use tutor_chat::protocol::ConversationChange;

use crate::helpers::*;

const LEASE_MS: u64 = 2_000;

struct Instance {
    id: String,
    port: u16,
    child: Option<Child>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// SIGTERM, so the master stops its workers (SIGKILL would leave them running).
impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Deployment {
    instances: Vec<Instance>,
    nginx: Nginx,
    database_url: String,
    fake_addr: SocketAddr,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// The deployment needs PostgreSQL and nginx; without either it says so and is skipped.
fn can_deploy() -> bool {
    let postgres = std::env::var("TUTOR_TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty());
    if !postgres {
        eprintln!("skipped: the deployment test needs PostgreSQL (it runs in the PostgreSQL pass)");
        return false;
    }
    assert!(nginx_binary().is_some(), "nginx is not installed (.ci/setup installs it)");
    true
}

impl Instance {
    async fn start(id: &str, port: u16, database_url: &str, fake_addr: SocketAddr) -> Instance {
        let workdir = std::env::temp_dir().join("tutor-chat-tests").join(format!("deploy-{id}-{port}"));
        std::fs::create_dir_all(&workdir).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tutor-chat"))
            .current_dir(&workdir)
            .env("DATABASE_URL", database_url)
            .env("TUTOR_BIND", format!("127.0.0.1:{port}"))
            .env("TUTOR_INSTANCE_ID", id)
            .env("TUTOR_SESSION_SECRET", SESSION_SECRET)
            .env("TUTOR_TRUSTED_PROXIES", "127.0.0.1")
            .env("TUTOR_ANSWER_LEASE_MS", LEASE_MS.to_string())
            .env("TUTOR_SHUTDOWN_GRACE_MS", "1000")
            .env("TUTOR_QUESTIONS_PER_MINUTE_PER_ADDRESS", "0")
            .env("TUTOR_QUESTION_BUDGET", "0")
            .env("TUTOR_NEW_GUESTS_PER_HOUR_PER_ADDRESS", "0")
            .env("TUTOR_ANSWERS_AT_ONCE_PER_ADDRESS", "0")
            .env("TUTOR_CONNECTIONS_PER_ADDRESS", "0")
            .env("TUTOR_CALLS_PER_SECOND_PER_ADDRESS", "0")
            .env("LESSONS_DIR", lessons_dir())
            .env("TUTOR_DATA_DIR", workdir.join("data"))
            .env("OPENAI_BASE_URL", format!("http://{fake_addr}/v1"))
            .env("OPENAI_API_KEY", KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let instance = Instance { id: id.to_string(), port, child: Some(child) };
        instance.wait_ready().await;
        instance
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("http://127.0.0.1:{}/healthz", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "instance {} did not start", self.id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for the process to exit (its grace period, then handover).
    fn terminate(&mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "instance {} exited with {status:?}", self.id);
                return;
            }
            assert!(Instant::now() < deadline, "instance {} did not exit", self.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Nginx {
    /// nginx with deploy/nginx.conf, listening on a free port, proxying to `ports`.
    fn start(ports: &[u16]) -> Nginx {
        let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf")).unwrap();
        let port = free_port();
        let mut servers_done = false;
        let mut config = String::new();
        for line in template.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("listen ") {
                config.push_str(&format!("        listen 127.0.0.1:{port};\n"));
            } else if trimmed.starts_with("server 127.0.0.1:") {
                if !servers_done {
                    for upstream in ports {
                        config.push_str(&format!("        server 127.0.0.1:{upstream} max_fails=1 fail_timeout=2s;\n"));
                    }
                    servers_done = true;
                }
            } else {
                config.push_str(line);
                config.push('\n');
            }
        }
        assert!(servers_done, "deploy/nginx.conf has no upstream server lines");
        let dir = std::env::temp_dir().join("tutor-chat-tests").join(format!("nginx-{port}"));
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::write(dir.join("nginx.conf"), config).unwrap();
        let child = Command::new(nginx_binary().unwrap())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            // Kept for a failure's report (see `socket_at`).
            .stderr(std::fs::File::create(dir.join("error.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, port, dir }
    }
}

impl Deployment {
    async fn start(fake_addr: SocketAddr) -> Deployment {
        let database_url = fresh_database_url().await;
        let mut instances = Vec::new();
        for n in 1..=3 {
            instances.push(Instance::start(&format!("i{n}"), free_port(), &database_url, fake_addr).await);
        }
        let ports: Vec<u16> = instances.iter().map(|i| i.port).collect();
        let nginx = Nginx::start(&ports);
        Deployment { instances, nginx, database_url, fake_addr }
    }

    fn front(&self) -> String {
        format!("127.0.0.1:{}", self.nginx.port)
    }

    /// A browser's session: the page through nginx.
    async fn session(&self) -> String {
        let page = reqwest::get(format!("http://{}/", self.front())).await.unwrap();
        new_session_cookie(page.headers()).expect("the page sets a session cookie")
    }

    /// A socket through nginx (or straight to one instance's port), `hello` read.
    async fn socket_at(&self, authority: &str, cookie: &str) -> Ws {
        let mut request = format!("ws://{authority}/ws/chat").into_client_request().unwrap();
        request.headers_mut().insert("cookie", HeaderValue::from_str(cookie).unwrap());
        request.headers_mut().insert("origin", HeaderValue::from_str(&format!("http://{authority}")).unwrap());
        // Right after a kill -9, nginx once answered a handshake with 502 (CI, 2026-11-27;
        // cause not found, its log is printed here). A page reconnects after a failed
        // handshake, so this does too, a few times; anything else fails the test.
        let mut bad_gateways = 0;
        let mut ws = loop {
            let connecting = tokio_tungstenite::connect_async(request.clone());
            match tokio::time::timeout(Duration::from_secs(10), connecting).await.expect("handshake within 10 s") {
                Ok((ws, _)) => break ws,
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) if response.status() == 502 && bad_gateways < 5 => {
                    bad_gateways += 1;
                    let log = std::fs::read_to_string(self.nginx.dir.join("error.log")).unwrap_or_default();
                    eprintln!("502 from nginx (try {bad_gateways}); its log ends:\n{}", tail(&log, 10));
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(error) => panic!("handshake at {authority}: {error}"),
            }
        };
        assert!(matches!(next_frame(&mut ws).await, ServerFrame::Hello { .. }));
        ws
    }

    async fn db(&self) -> Db {
        Db::connect(&self.database_url, 2).await.unwrap()
    }
}

async fn owner_of(db: &Db, message_id: &str) -> Option<String> {
    let stored = db.answer_state(message_id).await.unwrap();
    stored.and_then(|a| a.owner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_nginx_follow_and_finish_every_answer() {
    if !can_deploy() {
        return;
    }
    let (fake, fake_addr) = spawn_fake(FakeConfig::default()).await;
    let mut deployment = Deployment::start(fake_addr).await;
    let db = deployment.db().await;
    let front = deployment.front();

    // 1. Asked through nginx on one instance, followed on another, chunk by chunk.
    let cookie = deployment.session().await;
    let mut asker = deployment.socket_at(&front, &cookie).await;
    let question = "[tokens=80] [delay=20] through the proxy";
    send_json(&mut asker, json!({"question": question})).await;
    let message_id = next_start(&mut asker).await;
    let owner = owner_of(&db, &message_id).await.expect("an owner while streaming");
    let other = deployment.instances.iter().find(|i| i.id != owner).unwrap();
    let other_id = other.id.clone();
    let mut follower = deployment.socket_at(&format!("127.0.0.1:{}", other.port), &cookie).await;
    send_json(&mut follower, json!({"type": "resume", "message_id": message_id})).await;
    let (followed, end) = read_followed(&mut follower, &message_id).await;
    let asked = read_rest(&mut asker, message_id.clone()).await;
    assert_eq!(end, Some(EndReason::Complete));
    assert!(followed.chunks > 0, "chunks came live from the other instance");
    let full = asked_text_of(&fake, question);
    assert_eq!(followed.text, full);
    assert!(full.ends_with(&asked.text()));

    // 2. Two tabs on different instances: a question in one appears, streaming, in
    // the other; a rename in one reaches the other's sidebar.
    let question = "[tokens=100] [delay=20] asked in the first tab";
    send_json(&mut asker, json!({"question": question})).await;
    let (message_id, conversation_id) = next_start_in(&mut asker).await;
    // The follower of part 1 is the second tab: on another instance than the asker's.
    assert_ne!(owner_of(&db, &message_id).await.as_deref(), Some(other_id.as_str()));
    let heard = loop {
        match next_frame(&mut follower).await {
            ServerFrame::ConversationChanged { change: ConversationChange::Asked, message_id: Some(id), .. } => break id,
            ServerFrame::Budget { .. } | ServerFrame::ConversationChanged { .. } => continue,
            other => panic!("the other tab heard {other:?}"),
        }
    };
    assert_eq!(heard, message_id);
    let mut second_tab = follower;
    send_json(&mut second_tab, json!({"type": "resume", "message_id": message_id})).await;
    let (seen, end) = read_followed(&mut second_tab, &message_id).await;
    assert_eq!(end, Some(EndReason::Complete));
    assert_eq!(seen.text, asked_text_of(&fake, question));
    read_rest(&mut asker, message_id).await;
    let renamed = reqwest::Client::new()
        .post(format!("http://{front}/api/history/rename"))
        .header("cookie", &cookie)
        .header("origin", format!("http://{front}"))
        .form(&[("id", conversation_id.as_str()), ("title", "Renamed in the first tab")])
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    loop {
        match next_frame(&mut second_tab).await {
            ServerFrame::ConversationChanged { change: ConversationChange::Renamed, title, .. } => {
                assert_eq!(title.as_deref(), Some("Renamed in the first tab"));
                break;
            }
            ServerFrame::Budget { .. } | ServerFrame::ConversationChanged { .. } => continue,
            other => panic!("the other tab heard {other:?}"),
        }
    }

    // 3. kill -9 of the instance streaming an answer: the page reconnects through
    // nginx, resumes, and gets the rest, continued by another instance.
    let question = "[tokens=150] [delay=20] the answer a crash cuts";
    send_json(&mut asker, json!({"question": question})).await;
    let message_id = next_start(&mut asker).await;
    let mut received = String::new();
    while received.split_whitespace().count() < 60 {
        if let ServerFrame::Chunk { content, .. } = next_frame(&mut asker).await {
            received.push_str(&content);
        }
    }
    let owner = owner_of(&db, &message_id).await.unwrap();
    let victim = deployment.instances.iter_mut().find(|i| i.id == owner).unwrap();
    victim.kill_9();
    let killed_at = Instant::now();
    drop(asker);
    let mut page = deployment.socket_at(&front, &cookie).await;
    send_json(&mut page, json!({"type": "resume", "message_id": message_id})).await;
    let (after, end) = read_followed(&mut page, &message_id).await;
    assert_eq!(end, Some(EndReason::Complete));
    let continued_after = after.first_chunk_at.expect("chunks after the takeover") - killed_at;
    // docs/BENCHMARKS.md reads this line ("Several instances"): kill -9 to the first
    // continued chunk at the page, through nginx, lease included.
    eprintln!("takeover: first continued chunk {} ms after kill -9 (lease {LEASE_MS} ms)", continued_after.as_millis());
    assert!(continued_after < Duration::from_millis(LEASE_MS + 4_000), "continued after {continued_after:?}");
    let (status, text) = stored_answer(&db, &message_id).await;
    assert_eq!(status, MessageStatus::Complete);
    let whole = whole_text(&deployment, &cookie, question).await;
    assert_eq!(text, whole, "no word lost or repeated at the seam");
    assert_eq!(after.text, whole, "the page ends with the whole text");
    // The killed instance comes back.
    let (id, port) = (owner.clone(), deployment.instances.iter().find(|i| i.id == owner).unwrap().port);
    let restarted = Instance::start(&id, port, &deployment.database_url, deployment.fake_addr).await;
    *deployment.instances.iter_mut().find(|i| i.id == owner).unwrap() = restarted;

    // 4. A second crash, of the instance that took the answer over: it is not
    // continued again, it stays interrupted with its text.
    let question = "[tokens=400] [delay=20] cut twice";
    send_json(&mut page, json!({"question": question})).await;
    let message_id = next_start(&mut page).await;
    let mut words = 0;
    while words < 60 {
        if let ServerFrame::Chunk { content, .. } = next_frame(&mut page).await {
            words += content.split_whitespace().count();
        }
    }
    let first_owner = owner_of(&db, &message_id).await.unwrap();
    deployment.instances.iter_mut().find(|i| i.id == first_owner).unwrap().kill_9();
    drop(page);
    let mut page = deployment.socket_at(&front, &cookie).await;
    send_json(&mut page, json!({"type": "resume", "message_id": message_id})).await;
    let mut continued = 0;
    while continued < 60 {
        match next_frame(&mut page).await {
            ServerFrame::Chunk { .. } => continued += 1,
            ServerFrame::Snapshot { live: true, .. } | ServerFrame::Budget { .. } | ServerFrame::ConversationChanged { .. } => {}
            other => panic!("expected the continuation, got {other:?}"),
        }
    }
    let taker = owner_of(&db, &message_id).await.expect("taken over");
    assert_ne!(taker, first_owner);
    deployment.instances.iter_mut().find(|i| i.id == taker).unwrap().kill_9();
    drop(page);
    let mut page = deployment.socket_at(&front, &cookie).await;
    send_json(&mut page, json!({"type": "resume", "message_id": message_id})).await;
    let (last, end) = read_followed(&mut page, &message_id).await;
    assert_eq!(end, None, "not continued a second time");
    let (status, text) = stored_answer(&db, &message_id).await;
    assert_eq!(status, MessageStatus::Interrupted);
    assert_eq!(last.text, text);
    assert!(whole_text(&deployment, &cookie, question).await.starts_with(&text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_fifty_streaming_students_loses_nothing() {
    if !can_deploy() {
        return;
    }
    let (_fake, fake_addr) = spawn_fake(FakeConfig::default()).await;
    let mut deployment = Deployment::start(fake_addr).await;
    let question = "[tokens=120] [delay=50] a six-second answer";
    let front = deployment.front();

    let mut students = Vec::new();
    for _ in 0..50 {
        let cookie = deployment.session().await;
        let mut ws = deployment.socket_at(&front, &cookie).await;
        send_json(&mut ws, json!({"question": question})).await;
        let message_id = next_start(&mut ws).await;
        students.push((cookie, ws, message_id));
    }
    // Each student's page: follows its answer, and on a close reconnects through
    // nginx and resumes, until `end`.
    let mut pages = Vec::new();
    for (cookie, ws, message_id) in students {
        let front = front.clone();
        pages.push(tokio::spawn(async move { keep_following(ws, &front, &cookie, &message_id).await }));
    }
    // SIGTERM each instance in turn (1 s grace: answers are handed over), restart it.
    for n in 0..3 {
        let (id, port) = (deployment.instances[n].id.clone(), deployment.instances[n].port);
        tokio::task::block_in_place(|| deployment.instances[n].terminate());
        deployment.instances[n] = Instance::start(&id, port, &deployment.database_url, deployment.fake_addr).await;
    }
    let db = deployment.db().await;
    let whole = {
        let cookie = deployment.session().await;
        whole_text(&deployment, &cookie, question).await
    };
    for page in pages {
        let (message_id, text, reconnects) = tokio::time::timeout(Duration::from_secs(60), page).await.unwrap().unwrap();
        let (status, stored) = stored_answer(&db, &message_id).await;
        assert_eq!(status, MessageStatus::Complete, "{message_id} after {reconnects} reconnects");
        assert_eq!(stored, whole, "{message_id}: the full text");
        assert_eq!(text, whole, "{message_id}: what the page shows");
    }
}

/// A page following its answer across closes and reconnects; returns the answer's id,
/// the text the page ended with, and how many times it reconnected.
async fn keep_following(mut ws: Ws, front: &str, cookie: &str, message_id: &str) -> (String, String, u32) {
    let mut text = String::new();
    let mut last_seq = 0;
    let mut reconnects = 0;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("silent for 30 s");
        match message {
            Some(Ok(Message::Text(frame))) => match serde_json::from_str::<ServerFrame>(frame.as_str()).unwrap() {
                ServerFrame::Chunk { content, seq, .. } if seq == last_seq + 1 => {
                    text.push_str(&content);
                    last_seq = seq;
                }
                ServerFrame::Chunk { seq, .. } => assert!(seq <= last_seq, "a chunk skipped: {seq} after {last_seq}"),
                ServerFrame::Snapshot { content, seq, live, .. } => {
                    text = content;
                    last_seq = seq;
                    if !live {
                        return (message_id.to_string(), text, reconnects);
                    }
                }
                ServerFrame::End { .. } => return (message_id.to_string(), text, reconnects),
                ServerFrame::Error { code: ErrorCode::Busy | ErrorCode::ServerBusy, .. } => {}
                ServerFrame::ConversationChanged { .. } | ServerFrame::Pong { .. } | ServerFrame::Budget { .. } => {}
                other => panic!("unexpected {other:?}"),
            },
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                // Closed (1001) or cut: reconnect through nginx, as the page does.
                reconnects += 1;
                assert!(reconnects < 20, "too many reconnects");
                tokio::time::sleep(Duration::from_millis(200)).await;
                let mut request = format!("ws://{front}/ws/chat").into_client_request().unwrap();
                request.headers_mut().insert("cookie", HeaderValue::from_str(cookie).unwrap());
                request.headers_mut().insert("origin", HeaderValue::from_str(&format!("http://{front}")).unwrap());
                let Ok(Ok((mut fresh, _))) =
                    tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(request)).await
                else {
                    continue;
                };
                let _hello = fresh.next().await;
                send_json(&mut fresh, json!({"type": "resume", "message_id": message_id})).await;
                ws = fresh;
            }
        }
    }
}

#[derive(Debug, Default)]
struct FollowedText {
    text: String,
    chunks: usize,
    first_chunk_at: Option<Instant>,
}

/// Reads a resumed answer to its end: snapshots reset the text, chunks must be next.
async fn read_followed(ws: &mut Ws, message_id: &str) -> (FollowedText, Option<EndReason>) {
    let mut seen = FollowedText::default();
    let mut last_seq = 0;
    loop {
        match next_frame(ws).await {
            ServerFrame::Snapshot { content, seq, live, .. } => {
                seen.text = content;
                last_seq = seq;
                if !live {
                    return (seen, None);
                }
            }
            ServerFrame::Chunk { content, seq, message_id: id } => {
                assert_eq!(id, message_id);
                assert_eq!(seq, last_seq + 1, "every chunk once, in order");
                seen.first_chunk_at.get_or_insert_with(Instant::now);
                seen.text.push_str(&content);
                seen.chunks += 1;
                last_seq = seq;
            }
            ServerFrame::End { reason, .. } => return (seen, Some(reason)),
            ServerFrame::ConversationChanged { .. } | ServerFrame::Budget { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The whole text the upstream writes for `question` in one go, asked through nginx.
async fn whole_text(deployment: &Deployment, cookie: &str, question: &str) -> String {
    let mut ws = deployment.socket_at(&deployment.front(), cookie).await;
    let answer = ask(&mut ws, question).await;
    assert_eq!(answer.end.map(|(_, r)| r), Some(EndReason::Complete));
    answer.text()
}

/// The text the test upstream sent for the first request with this question.
fn asked_text_of(fake: &FakeUpstream, question: &str) -> String {
    fake.requests()
        .into_iter()
        .find(|r| r.messages.last().is_some_and(|m| m.content == question))
        .map(|r| r.answer)
        .expect("the upstream was asked")
}

async fn stored_answer(db: &Db, message_id: &str) -> (MessageStatus, String) {
    let stored = db.answer_state(message_id).await.unwrap().unwrap();
    (stored.status, stored.content)
}

/// The next answer's `start` (the student's other tabs' events may come first).
async fn next_start(ws: &mut Ws) -> String {
    next_start_in(ws).await.0
}

async fn next_start_in(ws: &mut Ws) -> (String, String) {
    loop {
        match next_frame(ws).await {
            ServerFrame::Start { message_id, conversation_id, .. } => return (message_id, conversation_id),
            ServerFrame::ConversationChanged { .. } | ServerFrame::Budget { .. } => continue,
            other => panic!("expected start, got {other:?}"),
        }
    }
}

/// The last `lines` lines of a log.
fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
