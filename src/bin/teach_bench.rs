//! Course dashboard benchmark for docs/BENCHMARKS.md (issue #11): on the database
//! DATABASE_URL names (else a fresh SQLite file), generate a course history of
//! 100,000 questions from 2,000 students over 30 days (answers with every ending,
//! tokens, time to first token, retrieval scores, three sources each, 👍/👎, "ask my
//! teacher" escalations), then time, in alternating rounds: `/teach` rendered by the
//! server (HTTP, as a teacher's browser gets it), the `teach/dashboard` call, the
//! store's queries alone, and the CSV export when the build has it.
//!
//!   cargo run --release --features ssr --bin teach_bench
//!   bash .ci/with-postgres sh -c 'DATABASE_URL=$TUTOR_TEST_DATABASE_URL cargo run --release --features ssr --bin teach_bench'
//!
//! `--without-indexes` drops the dashboard's indexes first (to show what they buy);
//! `--questions N` changes the size.

use std::time::{Duration, Instant};

use tutor_chat::account::store::hash_token;
use tutor_chat::db::{now_ms, DAY_MS};
use tutor_chat::net::without_nagle;
use tutor_chat::server::{build_app, leptos_options};
use tutor_chat::settings::Settings;
use tutor_chat::teacher::dashboard::Prices;
use tutor_chat::teacher::dashboard_store::DashboardQuery;

const STUDENTS: u64 = 2_000;
const DAYS: i64 = 30;
const ROUNDS: usize = 30;
fn rounds() -> usize { std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(ROUNDS) }
const WARMUP: usize = 3;
/// The dashboard's own indexes (migrations/20261127000007_dashboard.sql).
const DASHBOARD_INDEXES: [&str; 5] = [
    "messages_role_created",
    "messages_questions_created",
    "answer_sources_created",
    "feedback_answer_at",
    "messages_gaps",
];

/// splitmix64: the same history on every run, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const TOPICS: [&str; 16] = [
    "websocket", "streaming", "backpressure", "reconnect", "tokens", "embeddings", "vectors", "prompts",
    "axum", "leptos", "hydration", "sessions", "cookies", "lifetimes", "borrowing", "closures",
];

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let at = |p: f64| samples[((p / 100.0) * (samples.len() - 1) as f64).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<44} p50 {:>8.1} ms  p99 {:>8.1} ms  range {:.1}–{:.1} ms  ({} runs)",
        ms(at(50.0)),
        ms(at(99.0)),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
        samples.len()
    );
}

/// Runs `INSERT INTO table (columns) VALUES …` for the rows, a few hundred per statement.
async fn insert(pool: &sqlx::AnyPool, table: &str, columns: &[&str], rows: Vec<Vec<Value>>) {
    let per_statement = 4_000 / columns.len();
    let mut tx = pool.begin().await.unwrap();
    for chunk in rows.chunks(per_statement) {
        let values: Vec<String> = (0..chunk.len())
            .map(|r| {
                let cells: Vec<String> = (0..columns.len()).map(|c| format!("${}", r * columns.len() + c + 1)).collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        let sql = format!("INSERT INTO {table} ({}) VALUES {}", columns.join(", "), values.join(", "));
        let mut query = sqlx::query(&sql);
        for row in chunk {
            for value in row {
                query = match value {
                    Value::Text(s) => query.bind(s.clone()),
                    Value::Int(i) => query.bind(*i),
                    Value::Null => query.bind(None::<i64>),
                    // PostgreSQL takes a NULL only of the column's own type.
                    Value::NullText => query.bind(None::<String>),
                };
            }
        }
        query.execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

enum Value {
    Text(String),
    Int(i64),
    Null,
    NullText,
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

fn int(i: i64) -> Value {
    Value::Int(i)
}

fn opt(i: Option<i64>) -> Value {
    i.map_or(Value::Null, Value::Int)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let without_indexes = args.iter().any(|a| a == "--without-indexes");
    let questions: u64 = args
        .iter()
        .position(|a| a == "--questions")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let database_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        let path = std::env::temp_dir().join(format!("teach-bench-{}.db", std::process::id()));
        format!("sqlite://{}?mode=rwc", path.display())
    });
    let backend = database_url.split(':').next().unwrap_or("").to_string();
    let settings = Settings {
        database_url: Some(database_url.clone()),
        price_per_million_prompt_tokens: 0.15,
        price_per_million_completion_tokens: 0.60,
        ..Settings::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut options = leptos_options().unwrap();
    options.site_addr = addr;
    let (app, state) = build_app(settings, options).await.unwrap();
    tokio::spawn(async move { axum::serve(without_nagle(listener), app).await });
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&database_url).await.unwrap();
    println!("backend: {backend}; {questions} questions from {STUDENTS} students over {DAYS} days");

    // The teacher: an account with the role and a session.
    let token = state.session_key.mint().unwrap();
    insert(
        &pool,
        "users",
        &["id", "created_at", "username", "username_key", "role"],
        vec![vec![text("teacher"), int(0), text("teacher"), text("teacher"), text("teacher")]],
    )
    .await;
    insert(
        &pool,
        "sessions",
        &["token_hash", "user_id", "created_at"],
        vec![vec![text(hash_token(&token)), text("teacher"), int(now_ms())]],
    )
    .await;

    let started = Instant::now();
    let mut rng = Rng(11);
    let lessons: Vec<String> = state.lessons.lessons().into_iter().map(|l| l.slug).collect();
    let today = now_ms() / DAY_MS;
    let first_day = today - DAYS + 1;
    let users = (0..STUDENTS)
        .map(|s| {
            let named = s % 4 == 0;
            vec![
                text(format!("u{s}")),
                int(0),
                if named { text(format!("student{s}")) } else { Value::NullText },
                if named { text(format!("student{s}")) } else { Value::NullText },
                if named { Value::Null } else { int(s as i64 + 1) },
            ]
        })
        .collect();
    insert(&pool, "users", &["id", "created_at", "username", "username_key", "guest_no"], users).await;

    // A conversation per student and day they asked; questions in order within it.
    let mut asked: Vec<(u64, i64, i64)> = (0..questions)
        .map(|_| {
            let day = first_day + rng.below(DAYS as u64) as i64;
            (rng.below(STUDENTS), day, day * DAY_MS + rng.below(DAY_MS as u64) as i64)
        })
        .collect();
    asked.sort_unstable();
    let (mut conversations, mut messages, mut sources, mut feedback, mut escalations) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut position = 0i64;
    let mut current = (u64::MAX, 0i64);
    // Each message follows the one before it in its conversation (history::versions).
    let mut previous = String::new();
    for (q, &(student, day, at)) in asked.iter().enumerate() {
        let conversation = format!("c{student}-{day}");
        if current != (student, day) {
            current = (student, day);
            position = 0;
            previous.clear();
            conversations.push(vec![text(&conversation), text(format!("u{student}")), text("t"), int(at), int(at)]);
        }
        let topic = TOPICS[rng.below(TOPICS.len() as u64) as usize];
        let other = TOPICS[rng.below(TOPICS.len() as u64) as usize];
        let question = format!("How do {topic} and {other} work together in question {q}?");
        let (status, error_code) = match rng.below(100) {
            0..=87 => ("complete", None),
            88..=91 => ("stopped", None),
            92..=93 => ("error", Some("upstream")),
            94..=95 => ("error", Some("rate_limited")),
            96..=98 => ("interrupted", Some("interrupted")),
            _ => ("streaming", None),
        };
        let score = match rng.below(100) {
            0..=7 => 0,
            8..=19 => 500 + rng.below(2_400) as i64,
            _ => 3_000 + rng.below(12_000) as i64,
        };
        let ttft = (status != "error").then(|| at + 150 + rng.below(2_500) as i64);
        let answer_id = format!("a{q}");
        messages.push(vec![
            text(format!("q{q}")), text(&conversation), int(position), text("user"), text(question), text("complete"),
            Value::NullText, int(at), Value::Null, Value::Null, Value::Null, Value::Null, Value::Null, text(&previous),
        ]);
        messages.push(vec![
            text(&answer_id), text(&conversation), int(position + 1), text("assistant"),
            text("An answer of a few sentences about the lessons, citing [1] and [2]. ".repeat(4)),
            text(status), error_code.map_or(Value::NullText, text), int(at), int(at + 4_000),
            int(600 + rng.below(1_500) as i64), int(100 + rng.below(500) as i64), opt(ttft), int(score),
            text(format!("q{q}")),
        ]);
        previous = answer_id.clone();
        position += 2;
        if score > 0 {
            for n in 0..3 {
                let lesson = &lessons[rng.below(lessons.len() as u64) as usize];
                sources.push(vec![
                    text(&answer_id), text(lesson), text(format!("section-{}", rng.below(8))),
                    text(format!("Section {n}")), int(at),
                ]);
            }
        }
        match rng.below(100) {
            0..=2 => feedback.push(vec![text(&answer_id), text("up"), text(""), text(""), int(at), int(0), int(at)]),
            3..=4 => {
                let shared = i64::from(rng.below(4) == 0);
                feedback.push(vec![text(&answer_id), text("down"), text("wrong,unclear"), text("a comment"), int(at), int(shared), int(at)]);
            }
            _ => {}
        }
        if rng.below(100) == 0 {
            let (status, closed) = match rng.below(3) {
                0 => ("open", None),
                1 => ("answered", Some(at + 60_000 + rng.below(86_400_000) as i64)),
                _ => ("resolved", Some(at + 1_000)),
            };
            escalations.push(vec![
                text(format!("e{q}")), text(&conversation), text(&answer_id), text(""), text(status), int(at), opt(closed),
            ]);
        }
    }
    insert(&pool, "conversations", &["id", "user_id", "title", "created_at", "updated_at"], conversations).await;
    insert(
        &pool,
        "messages",
        &[
            "id", "conversation_id", "position", "role", "content", "status", "error_code", "created_at", "finished_at",
            "prompt_tokens", "completion_tokens", "first_token_at", "retrieval_score", "parent_id",
        ],
        messages,
    )
    .await;
    insert(&pool, "answer_sources", &["message_id", "lesson", "anchor", "section", "created_at"], sources).await;
    insert(&pool, "feedback", &["message_id", "rating", "reasons", "comment", "updated_at", "shared", "answer_at"], feedback).await;
    insert(
        &pool,
        "escalations",
        &["id", "conversation_id", "message_id", "note", "status", "created_at", "closed_at"],
        escalations,
    )
    .await;
    if without_indexes {
        for index in DASHBOARD_INDEXES {
            sqlx::query(&format!("DROP INDEX {index}")).execute(&pool).await.unwrap();
        }
        println!("dropped {}", DASHBOARD_INDEXES.join(", "));
    }
    // Planner statistics, as a database that has been running for a month has them.
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    println!("generated in {:.1} s", started.elapsed().as_secs_f64());

    let http = reqwest::Client::new();
    let cookie = format!("tutor_session={token}");
    let get = |path: String| {
        let (http, cookie) = (http.clone(), cookie.clone());
        async move {
            let started = Instant::now();
            let response = http.get(format!("http://{addr}{path}")).header("cookie", cookie).send().await.unwrap();
            let status = response.status();
            let body = response.bytes().await.unwrap();
            (started.elapsed(), status.as_u16(), body.len())
        }
    };
    let call = || {
        let (http, cookie) = (http.clone(), cookie.clone());
        async move {
            let started = Instant::now();
            let response = http
                .post(format!("http://{addr}/api/teach/dashboard"))
                .header("cookie", cookie)
                .form(&[("days", "30")])
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "teach/dashboard: {}", response.status());
            response.bytes().await.unwrap();
            started.elapsed()
        }
    };
    let query = || DashboardQuery {
        days: DAYS as u32,
        since: first_day * DAY_MS,
        read_all: false,
        prices: Prices::default(),
        lessons: state.lessons.lessons().into_iter().map(|l| (l.slug, l.title)).collect(),
    };

    // The first page after the month was written sums each finished day once
    // (dashboard_days); every page after reads those sums and today's rows.
    let (cold, status, _) = get("/teach?days=30".to_string()).await;
    assert_eq!(status, 200, "/teach");
    println!("first /teach?days=30 (sums the finished days once): {:.1} ms", cold.as_secs_f64() * 1e3);

    // The CSV export: timed when this build serves it.
    let export_path = format!("/teach/export.csv?days={DAYS}");
    let has_export = get(export_path.clone()).await.1 == 200;

    let (mut page, mut api, mut store, mut export) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut page_size = 0;
    for round in 0..rounds() + WARMUP {
        let (took, status, size) = get("/teach?days=30".to_string()).await;
        assert_eq!(status, 200, "/teach");
        let api_took = call().await;
        let started = Instant::now();
        let dashboard = state.db.dashboard(query()).await.unwrap();
        let store_took = started.elapsed();
        assert!(dashboard.questions > 0);
        let export_took = if has_export { Some(get(export_path.clone()).await.0) } else { None };
        if round >= WARMUP {
            page.push(took);
            api.push(api_took);
            store.push(store_took);
            export.extend(export_took);
            page_size = size;
        }
    }
    report("/teach?days=30, server render (HTTP)", page);
    report("teach/dashboard call (HTTP, JSON)", api);
    report("  the store's queries alone", store);
    if has_export {
        report("/teach/export.csv?days=30", export);
    } else {
        println!("/teach/export.csv?days=30: not in this build (TODO: rerun once the export is merged)");
    }
    println!("page size: {page_size} bytes");
}
