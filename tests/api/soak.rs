//! A bounded soak (issue #4): many students for a while, no answer lost, memory
//! settles.

use std::time::Duration;

use crate::helpers::*;

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
