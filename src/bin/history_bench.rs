//! History benchmark for docs/BENCHMARKS.md: on the database DATABASE_URL names (else a
//! fresh SQLite file), seed a 1,000-message conversation and a user with 10,000
//! conversations, then time the first page of each through the server functions (HTTP,
//! as the page calls them); render whole pages on the server (a 200-message
//! conversation of Markdown answers with sources, and the chat of the student with
//! 10,000 conversations); and count database writes for one 200-token answer.
//!
//!   cargo run --release --features ssr --bin history_bench
//!   bash .ci/with-postgres sh -c 'DATABASE_URL=$TUTOR_TEST_DATABASE_URL cargo run --release --features ssr --bin history_bench'

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tutor_chat::history::{MessageRole, MessageStatus};
use tutor_chat::protocol::ServerFrame;
use tutor_chat::net::without_nagle;
use tutor_chat::server::{build_app, leptos_options};
use tutor_chat::settings::Settings;
use tutor_chat::upstream::fake::{FakeConfig, FakeUpstream};

const ROUNDS: usize = 200;

/// Whole pages rendered (`HISTORY_BENCH_PAGE_ROUNDS`: more, to profile the render).
fn page_rounds() -> usize {
    std::env::var("HISTORY_BENCH_PAGE_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(ROUNDS)
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let at = |p: f64| samples[((p / 100.0) * (samples.len() - 1) as f64).round() as usize];
    println!(
        "{name:<48} p50 {:>7.2} ms  p99 {:>7.2} ms  ({} runs)",
        at(50.0).as_secs_f64() * 1e3,
        at(99.0).as_secs_f64() * 1e3,
        samples.len()
    );
}

#[tokio::main]
async fn main() {
    let database_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        let path = std::env::temp_dir().join(format!("history-bench-{}.db", std::process::id()));
        format!("sqlite://{}?mode=rwc", path.display())
    });
    let backend = database_url.split(':').next().unwrap_or("").to_string();
    let fake = FakeUpstream::new(FakeConfig::default());
    let fake_addr = fake.spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let settings = Settings {
        database_url: Some(database_url.clone()),
        upstream: tutor_chat::settings::UpstreamSettings {
            base_url: Some(format!("http://{fake_addr}/v1")),
            ..Settings::default().upstream
        },
        // One client makes all the calls: with the per-address pace (20 a second past
        // a burst) on, every call after the burst waited ~50 ms for its turn, and the
        // server-function rows measured that wait, not the server.
        calls_per_second_per_address: 0,
        ..Settings::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut options = leptos_options().unwrap();
    options.site_addr = addr;
    let (app, state) = build_app(settings, options).await.unwrap();
    tokio::spawn(async move { axum::serve(without_nagle(listener), app).await });
    let db = state.db.clone();
    println!("backend: {backend}");

    // Seed: one conversation of 1,000 messages (about 300 characters each).
    let reader_token = state.session_key.mint().unwrap();
    let reader = db.ensure_user(&reader_token, "bench", 0).await.unwrap();
    let long = db.create_conversation(&reader, "a long conversation").await.unwrap();
    let started = Instant::now();
    let text = "A WebSocket keeps one connection open so the server can push tokens. ".repeat(4);
    for i in 0..1000 {
        let role = if i % 2 == 0 { MessageRole::User } else { MessageRole::Assistant };
        db.add_message(&long.id, role, &text, MessageStatus::Complete, None)
            .await
            .unwrap();
    }
    println!("seeded 1,000 messages in {:.1} s", started.elapsed().as_secs_f64());

    // Seed: a 200-message conversation as a course produces it: Markdown answers (a
    // heading, a list, a code block, citations) with three lesson sources each.
    let rich = db.create_conversation(&reader, "a conversation with sources").await.unwrap();
    let answer = "## How it works\n\nThe server keeps **one connection** open [1] and pushes each token as it comes [2]:\n\n\
                  - the client opens `/ws/chat`\n- the server relays chunks\n- the page renders them\n\n\
                  ```rust\nlet (mut sink, mut stream) = socket.split();\nsink.send(Message::Text(frame)).await?;\n```\n\n\
                  See the lesson on backpressure for what happens when the client is slow [3].";
    for i in 0..200 {
        let (role, text) = if i % 2 == 0 {
            (MessageRole::User, "How does the server push tokens over a WebSocket?")
        } else {
            (MessageRole::Assistant, answer)
        };
        db.add_message(&rich.id, role, text, MessageStatus::Complete, None).await.unwrap();
    }
    let sources: Vec<tutor_chat::protocol::Source> = (1..=3)
        .map(|n| tutor_chat::protocol::Source {
            n,
            lesson: "02-streaming-responses-en".into(),
            lesson_title: "Streaming responses".into(),
            section: format!("Section {n}"),
            anchor: format!("section-{n}"),
            snippet: "Each event is a block of lines; the page renders tokens as they come.".into(),
        })
        .collect();
    // The store writes sources only with a streamed answer; the seed sets them directly.
    let pool = sqlx::AnyPool::connect(&database_url).await.unwrap();
    sqlx::query("UPDATE messages SET sources = $1 WHERE conversation_id = $2 AND role = 'assistant'")
        .bind(serde_json::to_string(&sources).unwrap())
        .bind(&rich.id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    // Seed: one user with 10,000 conversations.
    let busy_token = state.session_key.mint().unwrap();
    let busy = db.ensure_user(&busy_token, "bench", 0).await.unwrap();
    let started = Instant::now();
    for i in 0..10_000 {
        db.create_conversation(&busy, &format!("conversation {i}")).await.unwrap();
    }
    println!("seeded 10,000 conversations in {:.1} s", started.elapsed().as_secs_f64());
    if backend.starts_with("postgres") {
        // What autovacuum does soon after in a running deployment: without statistics
        // the planner takes a 1,000-message conversation for a few rows.
        let pool = sqlx::AnyPool::connect(&database_url).await.unwrap();
        sqlx::query("ANALYZE").execute(&pool).await.unwrap();
        pool.close().await;
    }

    // Nagle off, as a browser has it.
    let http = reqwest::Client::builder().tcp_nodelay(true).build().unwrap();
    let call = |token: String, endpoint: &'static str, form: Vec<(&'static str, String)>| {
        let http = http.clone();
        async move {
            let started = Instant::now();
            let response = http
                .post(format!("http://{addr}/api/{endpoint}"))
                .header("cookie", format!("tutor_session={token}"))
                .form(&form)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{endpoint}: {}", response.status());
            let body = response.bytes().await.unwrap();
            (started.elapsed(), body.len())
        }
    };

    let mut load = Vec::new();
    let mut list = Vec::new();
    let mut store_load = Vec::new();
    let mut store_list = Vec::new();
    let mut sizes = (0, 0);
    for round in 0..ROUNDS + 10 {
        let (took, size) = call(reader_token.clone(), "history/load", vec![("id", long.id.clone())]).await;
        let (took_list, size_list) = call(busy_token.clone(), "history/list", vec![]).await;
        let started = Instant::now();
        db.load_conversation(&reader, &long.id, None, 50).await.unwrap().unwrap();
        let store_took = started.elapsed();
        let started = Instant::now();
        let page = db.list_conversations(&busy, None, 30).await.unwrap();
        let store_list_took = started.elapsed();
        assert_eq!(page.items.len(), 30);
        if round >= 10 {
            load.push(took);
            list.push(took_list);
            store_load.push(store_took);
            store_list.push(store_list_took);
            sizes = (size, size_list);
        }
    }
    // Whole pages, rendered on the server as a browser gets them (the chat shows a
    // conversation's newest 50 messages; older ones load on demand).
    let page = |token: String, path: String| {
        let http = http.clone();
        async move {
            let started = Instant::now();
            let response = http
                .get(format!("http://{addr}{path}"))
                .header("cookie", format!("tutor_session={token}"))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{path}: {}", response.status());
            let body = response.bytes().await.unwrap();
            (started.elapsed(), body.len())
        }
    };
    let mut rich_page = Vec::new();
    let mut busy_page = Vec::new();
    let mut page_sizes = (0, 0);
    for round in 0..page_rounds() + 10 {
        let (took, size) = page(reader_token.clone(), format!("/c/{}", rich.id)).await;
        let (took_busy, size_busy) = page(busy_token.clone(), "/".to_string()).await;
        if round >= 10 {
            rich_page.push(took);
            busy_page.push(took_busy);
            page_sizes = (size, size_busy);
        }
    }
    report("SSR /c/{id}: 200 messages, Markdown + sources", rich_page);
    report("SSR /: sidebar of 10,000 conversations", busy_page);
    println!("page sizes: conversation {} bytes, chat with sidebar {} bytes", page_sizes.0, page_sizes.1);

    report("load 1,000-message conversation, first page (HTTP)", load);
    report("  the same, store query only", store_load);
    report("list 10,000 conversations, first page (HTTP)", list);
    report("  the same, store query only", store_list);
    println!("response sizes: load {} bytes (50 messages), list {} bytes (30 items)", sizes.0, sizes.1);

    // Writes for one 200-token answer at 20 tokens/s.
    let token = state.session_key.mint().unwrap();
    db.ensure_user(&token, "bench", 0).await.unwrap();
    let mut request = format!("ws://{addr}/ws/chat").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", HeaderValue::from_str(&format!("tutor_session={token}")).unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let before = db.writes();
    ws.send(Message::Text(
        r#"{"question":"[tokens=200] [delay=50] count my writes"}"#.into(),
    ))
    .await
    .unwrap();
    let mut chunks = 0;
    while let Some(Ok(message)) = ws.next().await {
        if let Message::Text(text) = message {
            match serde_json::from_str::<ServerFrame>(text.as_str()).unwrap() {
                ServerFrame::Chunk { .. } => chunks += 1,
                ServerFrame::End { .. } => break,
                ServerFrame::Error { message, .. } => panic!("{message}"),
                _ => {}
            }
        }
    }
    println!(
        "database writes for one answer of {chunks} tokens over 10 s: {}",
        db.writes() - before
    );
}
