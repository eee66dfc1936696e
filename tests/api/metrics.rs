//! `/metrics`, `/healthz` and `/readyz` (issue #12 item 5): a known load — answers
//! completed, one stopped, one refused by the model with HTTP 500, one bad frame — and
//! the scrape's counters and histogram counts match it exactly; `/readyz` turns 503
//! when the server shuts down; `/metrics` answers only this machine, or a token.

use serde_json::{json, Value};

use crate::helpers::*;

/// The value of one series (`name` or `name{label="value"}`) in a scrape.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .parse()
        .unwrap()
}

async fn scrape(app: &TestApp) -> String {
    let response = app.http.get(format!("http://{}/metrics", app.addr)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    assert!(response.headers().get("set-cookie").is_none(), "a scrape mints no session");
    response.text().await.unwrap()
}

/// Scrapes until no answer is streaming: an answer leaves the running set just after
/// its last frame is sent.
async fn scrape_when_idle(app: &TestApp) -> String {
    for _ in 0..200 {
        let text = scrape(app).await;
        if sample(&text, "tutor_answers_streaming") == 0.0 {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("an answer is still streaming after 2 s");
}

#[tokio::test]
async fn the_counters_match_a_known_load() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    for series in [
        "tutor_takeovers_total",
        "tutor_notification_lag_seconds_count",
        "tutor_tokens_relayed_total",
        "tutor_answers_ended_total{how=\"complete\"}",
        "tutor_answers_ended_total{how=\"interrupted\"}",
        "tutor_open_sockets",
    ] {
        assert_eq!(sample(&before, series), 0.0, "{series} starts at 0");
    }

    let mut ws = app.connect().await;
    for n in 0..3 {
        let answer = ask(&mut ws, &format!("[tokens=4] question {n}")).await;
        assert_eq!(answer.end, Some((4, EndReason::Complete)));
    }
    // One stopped after its third chunk.
    send_json(&mut ws, json!({"type": "ask", "question": "[tokens=200] [delay=20] a long one"})).await;
    let mut chunks = 0;
    let stopped_at = loop {
        match next_frame(&mut ws).await {
            ServerFrame::Start { .. } => {}
            ServerFrame::Chunk { .. } => {
                chunks += 1;
                if chunks == 3 {
                    send_json(&mut ws, json!({"type": "stop"})).await;
                }
            }
            ServerFrame::End { seq, reason, .. } => {
                assert_eq!(reason, EndReason::Stopped);
                break seq;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(stopped_at, chunks, "every chunk up to the end reached the socket");
    // One the model refuses with HTTP 500.
    let failed = ask(&mut ws, "[fault=500] this one fails").await;
    assert_eq!(failed.error.map(|(code, _)| code), Some(ErrorCode::UpstreamUnavailable));
    // One frame that is not a frame.
    send_json(&mut ws, json!({"type": "dance"})).await;
    assert!(matches!(next_frame(&mut ws).await, ServerFrame::Error { code: ErrorCode::BadRequest, .. }));

    let text = scrape_when_idle(&app).await;
    let tokens = (3 * 4 + stopped_at) as f64;
    assert_eq!(sample(&text, "tutor_answers_ended_total{how=\"complete\"}"), 3.0);
    assert_eq!(sample(&text, "tutor_answers_ended_total{how=\"stopped\"}"), 1.0);
    assert_eq!(sample(&text, "tutor_answers_ended_total{how=\"error\"}"), 1.0);
    assert_eq!(sample(&text, "tutor_answers_ended_total{how=\"length\"}"), 0.0);
    assert_eq!(sample(&text, "tutor_tokens_relayed_total"), tokens);
    // One follower: every chunk relayed once; the failed answer had no first token.
    assert_eq!(sample(&text, "tutor_relay_latency_seconds_count"), tokens);
    assert_eq!(sample(&text, "tutor_first_token_seconds_count"), 4.0);
    assert_eq!(sample(&text, "tutor_errors_total{code=\"upstream_unavailable\"}"), 1.0);
    assert_eq!(sample(&text, "tutor_errors_total{code=\"bad_request\"}"), 1.0);
    assert_eq!(sample(&text, "tutor_upstream_responses_total{status=\"200\"}"), 4.0);
    assert_eq!(sample(&text, "tutor_upstream_responses_total{status=\"500\"}"), 1.0);
    // Every answer-row transaction was timed, and only those.
    let (_, commits) = app.state.db.answer_commits();
    assert_eq!(sample(&text, "tutor_db_write_seconds_count"), commits as f64);
    assert!(commits >= 5, "each of the five ends was stored");
    assert_eq!(sample(&text, "tutor_open_sockets"), 1.0);
    assert_eq!(sample(&text, "tutor_answers_streaming"), 0.0);
    assert_eq!(sample(&text, "tutor_takeovers_total"), 0.0);

    drop(ws);
    for _ in 0..200 {
        if sample(&scrape(&app).await, "tutor_open_sockets") == 0.0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the closed socket is still counted after 2 s");
}

#[tokio::test]
async fn readiness_turns_503_while_shutting_down() {
    let app = spawn_app().await;
    let get = |path: &'static str| {
        let url = format!("http://{}{path}", app.addr);
        let http = app.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let ready = get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert!(ready.headers().get("set-cookie").is_none(), "a probe mints no session");
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["database"], true);
    assert!(body["lesson_sections"].as_u64().unwrap() > 0, "the sample course is indexed");

    app.state.shutdown.send_replace(true);
    let draining = get("/readyz").await;
    assert_eq!(draining.status(), 503);
    let body: Value = draining.json().await.unwrap();
    assert_eq!((body["ready"].clone(), body["shutting_down"].clone()), (json!(false), json!(true)));
    // Alive all the same: the process answers while it finishes its answers.
    assert_eq!(get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn metrics_answer_this_machine_or_the_token_only() {
    let app = spawn_app().await;
    let url = format!("http://{}/metrics", app.addr);
    // Through a proxy, a request from the internet is not this machine.
    let proxied = app.http.get(&url).header("x-forwarded-for", "203.0.113.9").send().await.unwrap();
    assert_eq!(proxied.status(), 403);
    assert!(!proxied.text().await.unwrap().contains("tutor_"));

    let guarded = spawn_app_with(|s| s.metrics_token = Some("scrape-secret".into())).await;
    let url = format!("http://{}/metrics", guarded.addr);
    assert_eq!(guarded.http.get(&url).send().await.unwrap().status(), 403, "a token, once set, is asked of all");
    let wrong = guarded.http.get(&url).bearer_auth("guess").send().await.unwrap();
    assert_eq!(wrong.status(), 403);
    let right = guarded.http.get(&url).bearer_auth("scrape-secret").send().await.unwrap();
    assert_eq!(right.status(), 200);
    assert!(right.text().await.unwrap().contains("tutor_tokens_relayed_total 0"));
}

#[tokio::test]
async fn json_logs_are_one_object_a_line() {
    use std::io::BufRead;
    // The real binary, as an operator runs it with `log_format = "json"`.
    let workdir = fresh_data_dir();
    std::fs::create_dir_all(&workdir).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tutor-chat"))
        .current_dir(&workdir)
        .env("TUTOR_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("DATABASE_URL", fresh_database_url().await)
        .env("TUTOR_BIND", "127.0.0.1:0")
        .env("TUTOR_DATA_DIR", workdir.join("data"))
        .env("LESSONS_DIR", lessons_dir())
        .env("OPENAI_BASE_URL", "")
        .env("OPENAI_API_KEY", "")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Lines until the one saying where it listens, read off the runtime's threads.
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let listening = line.contains("listening on");
            lines.push(line);
            if listening {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(std::time::Duration::from_secs(60), lines).await.unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        let object: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(object["level"].is_string() && object["timestamp"].is_string(), "{line}");
        assert!(object["fields"]["message"].is_string(), "{line}");
    }
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert!(last["fields"]["message"].as_str().unwrap().starts_with("Tutor Chat listening on http://127.0.0.1:"));
    // Lesson mode is said as a warning with its level as a field, not inside the text.
    assert!(lines.iter().any(|l| l.contains("\"level\":\"WARN\"") && l.contains("lesson mode")), "{lines:?}");
}
