//! Load tool for docs/BENCHMARKS.md: opens N concurrent WebSocket conversations, asks
//! each for a stamped answer from the test upstream, and reports per-token relay
//! latency (the upstream's send time carried in each token vs. our receive time),
//! time to first token, errors, and the server's peak RSS.
//!
//!   loadtest --app http://127.0.0.1:3000 --connections 1000 --tokens 200 --delay-ms 50 --server-pid PID
//!
//! Several instances (#12): `--apps A,B,C` spreads the students over them, and
//! `--follow` gives each student a second socket on the next instance that resumes
//! the answer as it streams: the cross-instance relay latency is reported apart.
//!
//! Idle sockets (#13 target 4): `--idle-secs S` opens the N sockets, reads their first
//! frames and then only holds them for S seconds (the server's heartbeats go on), and
//! reports the server's RSS before (`--settle-secs` after the tool starts) and with
//! them all open, per socket.
//!
//! Only loopback or the project's own test hosts are valid targets.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tutor_chat::protocol::ServerFrame;

/// Frames here are a few hundred bytes.
const READ_BUFFER_BYTES: usize = 4 * 1024;

#[derive(Parser, Debug)]
#[command(about = "Concurrent streaming conversations against a Tutor Chat server")]
struct Args {
    /// Base URL of the app.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    app: String,
    #[arg(long, default_value_t = 100)]
    connections: usize,
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    /// Delay between tokens at the upstream (50 ms = 20 tokens/s).
    #[arg(long, default_value_t = 50)]
    delay_ms: u64,
    /// Spread connection starts over this long, as a class logging in would.
    #[arg(long, default_value_t = 2000)]
    ramp_ms: u64,
    /// The upstream waits 0 to this many ms before each answer's first token (spread
    /// evenly over the students), as a real model's time to first token varies. Without
    /// it every stream's tokens keep the phase of its start, and answers that start
    /// together stay in step for their whole length. The first-token times printed
    /// leave this wait out (they are the app's share).
    #[arg(long, default_value_t = 0)]
    first_token_spread_ms: u64,
    /// Server process whose peak RSS to report.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Give up on the whole run after this many seconds.
    #[arg(long, default_value_t = 120)]
    deadline_secs: u64,
    /// Also print relay latency per second of the run (by the token's send time), to
    /// tell the ramp (connections arriving) from the steady state.
    #[arg(long)]
    timeline: bool,
    /// Several instances: student i asks at the i-th (round robin); overrides `--app`.
    #[arg(long, value_delimiter = ',')]
    apps: Vec<String>,
    /// Each student also follows its answer from the next instance of `--apps`.
    #[arg(long)]
    follow: bool,
    /// Open the sockets and hold them this long without asking (needs `--server-pid`).
    #[arg(long, default_value_t = 0)]
    idle_secs: u64,
    /// With `--idle-secs`: wait this long before reading the server's RSS without the
    /// sockets. The server's allocator gives the pages start-up freed back to the
    /// system over its first 10-20 s; read earlier, they would count against the
    /// sockets.
    #[arg(long, default_value_t = 0)]
    settle_secs: u64,
    /// Pad each question to about this many characters (a student pasting code or an
    /// error): the model request then carries it, as it carries a long conversation.
    #[arg(long, default_value_t = 0)]
    question_chars: usize,
}

#[derive(Default)]
struct ConnResult {
    relay_us: Vec<u64>,
    /// From the question to its `start` frame: the question stored, the model called.
    start_us: Option<u64>,
    /// Relay latency seen by the follower on another instance.
    follow_relay_us: Vec<u64>,
    /// The same for the tokens sent a second or more after the follower's snapshot:
    /// by then its follow request has reached the owner and been answered.
    follow_in_step_us: Vec<u64>,
    /// When each token was sent by the upstream (unix µs), beside its latency.
    sent_us: Vec<u64>,
    ttft_us: Option<u64>,
    /// The same from the moment the student started connecting: what a student who
    /// asks as soon as the page is open waits, the socket's upgrade included.
    connect_ttft_us: Option<u64>,
    tokens: usize,
    error: Option<String>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn read_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn conversation(args: &Args, student: usize) -> ConnResult {
    let mut result = ConnResult::default();
    let (ask_at, follow_at) = if args.apps.is_empty() {
        (args.app.as_str(), None)
    } else {
        let n = args.apps.len();
        (args.apps[student % n].as_str(), args.follow.then(|| args.apps[(student + 1) % n].as_str()))
    };
    // Students next to each other in the ramp get far-apart waits.
    let upstream_wait_ms = match args.first_token_spread_ms {
        0 => 0,
        spread => (student as u64).wrapping_mul(7_919) % spread,
    };
    if let Err(e) = run_conversation(args, ask_at, follow_at, upstream_wait_ms, &mut result).await {
        result.error = Some(e);
    }
    result
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A chat socket; without a cookie the upgrade makes a new guest (as the course
/// lesson's client is made one), and the session cookie it set comes back.
async fn open_socket(app: &str, cookie: Option<&str>) -> Result<(Ws, Option<String>), String> {
    let ws_url = format!("{}/ws/chat", app.replacen("http", "ws", 1));
    let mut request = ws_url.into_client_request().map_err(|e| e.to_string())?;
    if let Some(cookie) = cookie {
        request.headers_mut().insert("cookie", HeaderValue::from_str(cookie).map_err(|e| e.to_string())?);
    }
    // tungstenite zeroes its whole read buffer (128 KiB by default) for every read: with
    // a thousand sockets that was most of this tool's CPU, taken from the app it measures.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let (ws, response) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let minted = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("tutor_session="))
        .and_then(|c| c.split(';').next())
        .map(str::to_string);
    Ok((ws, minted))
}

/// The stamps of a chunk's tokens, with their relay latency at `received`.
fn stamps(content: &str, received: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
    content.split_whitespace().filter_map(move |stamp| {
        let sent = stamp.strip_prefix('t')?.parse::<u64>().ok()?;
        Some((received.saturating_sub(sent), sent))
    })
}

/// How long after its snapshot a follower's tokens count as "in step": the follow
/// request has gone to the owner and its catch-up come back (a round trip on the bus).
const FOLLOW_JOIN_US: u64 = 1_000_000;

/// A second tab on another instance: resumes the answer and measures its chunks:
/// the latency of every token sent after the snapshot, and of those sent after
/// [`FOLLOW_JOIN_US`] more.
async fn follow(app: String, cookie: String, message_id: String) -> Result<(Vec<u64>, Vec<u64>), String> {
    let (mut ws, _) = open_socket(&app, Some(&cookie)).await?;
    ws.send(Message::Text(
        serde_json::json!({ "type": "resume", "message_id": message_id }).to_string().into(),
    ))
    .await
    .map_err(|e| format!("follower send: {e}"))?;
    let mut relay = Vec::new();
    let mut in_step = Vec::new();
    // Tokens sent before the follower was in step come in its catch-up, late by design:
    // only those sent after its snapshot measure the live relay between instances.
    let mut in_step_at = u64::MAX;
    while let Some(message) = ws.next().await {
        let Message::Text(text) = message.map_err(|e| format!("follower read: {e}"))? else {
            continue;
        };
        let received = now_us();
        match serde_json::from_str::<ServerFrame>(text.as_str()).map_err(|e| format!("frame: {e}"))? {
            ServerFrame::Snapshot { live: true, .. } => in_step_at = in_step_at.min(received),
            ServerFrame::Chunk { content, .. } => {
                for (latency, sent) in stamps(&content, received).filter(|(_, sent)| *sent >= in_step_at) {
                    relay.push(latency);
                    if sent >= in_step_at.saturating_add(FOLLOW_JOIN_US) {
                        in_step.push(latency);
                    }
                }
            }
            ServerFrame::End { .. } => {
                let _ = ws.close(None).await;
                return Ok((relay, in_step));
            }
            ServerFrame::Snapshot { live: false, .. } => return Ok((relay, in_step)),
            ServerFrame::Error { code, message, .. } => return Err(format!("follower {}: {message}", code.as_str())),
            _ => {}
        }
    }
    Err("follower closed before end".into())
}

async fn run_conversation(
    args: &Args,
    ask_at: &str,
    follow_at: Option<&str>,
    upstream_wait_ms: u64,
    result: &mut ConnResult,
) -> Result<(), String> {
    let connecting = Instant::now();
    let (mut ws, cookie) = open_socket(ask_at, None).await?;
    let mut follower = None;
    let mut question = format!(
        "[stamp] [tokens={}] [delay={}] [first_delay={upstream_wait_ms}] load test",
        args.tokens, args.delay_ms
    );
    while question.len() < args.question_chars {
        question.push_str(" the socket reconnects and resumes the answer where it stopped;");
    }
    let asked = Instant::now();
    ws.send(Message::Text(
        serde_json::json!({ "question": question }).to_string().into(),
    ))
    .await
    .map_err(|e| format!("send: {e}"))?;
    while let Some(message) = ws.next().await {
        let message = message.map_err(|e| format!("read: {e}"))?;
        let Message::Text(text) = message else {
            continue;
        };
        let received = now_us();
        let frame: ServerFrame =
            serde_json::from_str(text.as_str()).map_err(|e| format!("frame: {e}"))?;
        match frame {
            ServerFrame::Start { message_id, .. } => {
                result.start_us.get_or_insert(asked.elapsed().as_micros() as u64);
                if let Some(app) = follow_at {
                    let cookie = cookie.clone().ok_or("the upgrade set no session cookie to follow with")?;
                    follower = Some(tokio::spawn(follow(app.to_string(), cookie, message_id)));
                }
            }
            ServerFrame::Chunk { content, .. } => {
                if result.ttft_us.is_none() {
                    let waited_us = upstream_wait_ms * 1_000;
                    result.ttft_us = Some((asked.elapsed().as_micros() as u64).saturating_sub(waited_us));
                    result.connect_ttft_us = Some((connecting.elapsed().as_micros() as u64).saturating_sub(waited_us));
                }
                for (latency, sent) in stamps(&content, received) {
                    result.relay_us.push(latency);
                    result.sent_us.push(sent);
                    result.tokens += 1;
                }
            }
            ServerFrame::End { .. } => {
                let _ = ws.close(None).await;
                if result.tokens != args.tokens {
                    return Err(format!("got {} of {} tokens", result.tokens, args.tokens));
                }
                if let Some(follower) = follower {
                    (result.follow_relay_us, result.follow_in_step_us) =
                        follower.await.map_err(|e| format!("follower: {e}"))??;
                }
                return Ok(());
            }
            ServerFrame::Error { code, message, .. } => {
                return Err(format!("{}: {message}", code.as_str()));
            }
            _ => {}
        }
    }
    Err("socket closed before end".into())
}

/// "p50 …  p99 …  max …" of sorted µs, in ms with `decimals` places (ws_load.sh and
/// alternate.sh read these lines).
fn spread(sorted: &[u64], decimals: usize) -> String {
    format!(
        "p50 {:.*}  p99 {:.*}  max {:.*}",
        decimals,
        percentile(sorted, 50.0),
        decimals,
        percentile(sorted, 99.0),
        decimals,
        percentile(sorted, 100.0)
    )
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

/// When connection `i` starts: the N are spread evenly over `--ramp-ms`, as a class
/// logging in would.
fn start_offset(args: &Args, i: usize) -> Duration {
    if args.connections > 1 {
        Duration::from_millis(args.ramp_ms * i as u64 / (args.connections as u64 - 1))
    } else {
        Duration::ZERO
    }
}

#[tokio::main]
async fn main() {
    let args: &'static Args = Box::leak(Box::new(Args::parse()));
    if args.idle_secs > 0 {
        return idle(args).await;
    }
    let started = Instant::now();
    let started_us = now_us();

    let peak_rss = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    if let Some(pid) = args.server_pid {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kb) = read_status_kb(pid, "VmRSS:") {
                    peak.fetch_max(kb, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }

    // The app's own count of the socket hop, before the run: several runs may share
    // one process, and its histogram counts since the process started.
    let hop_before = relay_buckets(&args.app).await;
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let offset = start_offset(args, i);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            conversation(args, i).await
        }));
    }
    let all = futures::future::join_all(tasks);
    let results = match tokio::time::timeout(Duration::from_secs(args.deadline_secs), all).await {
        Ok(results) => results,
        Err(_) => {
            eprintln!("loadtest: deadline of {} s passed", args.deadline_secs);
            std::process::exit(2);
        }
    };

    let mut relay: Vec<u64> = Vec::new();
    let mut follow_relay: Vec<u64> = Vec::new();
    let mut follow_in_step: Vec<u64> = Vec::new();
    // (second of the run the token was sent in, latency)
    let mut by_second: Vec<Vec<u64>> = Vec::new();
    let mut ttft: Vec<u64> = Vec::new();
    let mut start_frames: Vec<u64> = Vec::new();
    let mut connect_ttft: Vec<u64> = Vec::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(r) => {
                relay.extend_from_slice(&r.relay_us);
                follow_relay.extend_from_slice(&r.follow_relay_us);
                follow_in_step.extend_from_slice(&r.follow_in_step_us);
                for (latency, sent) in r.relay_us.iter().zip(&r.sent_us) {
                    let second = (sent.saturating_sub(started_us) / 1_000_000) as usize;
                    if by_second.len() <= second {
                        by_second.resize_with(second + 1, Vec::new);
                    }
                    by_second[second].push(*latency);
                }
                ttft.extend(r.ttft_us);
                start_frames.extend(r.start_us);
                connect_ttft.extend(r.connect_ttft_us);
                if let Some(e) = r.error {
                    errors.push(e);
                }
            }
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    relay.sort_unstable();
    follow_relay.sort_unstable();
    follow_in_step.sort_unstable();
    ttft.sort_unstable();
    start_frames.sort_unstable();
    connect_ttft.sort_unstable();
    println!("connections        {}", args.connections);
    println!("tokens/connection  {} at {} ms", args.tokens, args.delay_ms);
    println!("tokens received    {}", relay.len());
    println!("relay latency ms   {}", spread(&relay, 2));
    if let (Some(before), Some(after)) = (hop_before, relay_buckets(&args.app).await) {
        println!(
            "  of which in app  {}  (the answer's frame published to its socket's write, from the app's /metrics buckets: upper bounds)",
            bucket_spread(&before, &after)
        );
    }
    if args.follow {
        println!("followed tokens    {}", follow_relay.len());
        println!(
            "follower relay ms  {}  (another instance, through the bus; tokens sent after the follower's snapshot)",
            spread(&follow_relay, 2)
        );
        println!(
            "  of which in step {}  ({} tokens sent 1 s or more after the snapshot: the follow request's round trip left out)",
            spread(&follow_in_step, 2),
            follow_in_step.len()
        );
    }
    println!("first token ms     {}", spread(&ttft, 1));
    println!(
        "  of which start   {}  (the question stored and the model asked: the start frame)",
        spread(&start_frames, 1)
    );
    println!(
        "  from connecting  {}  (the socket's upgrade included)",
        spread(&connect_ttft, 1)
    );
    if args.timeline {
        println!("relay by second of the run (token send time):");
        for (second, mut latencies) in by_second.into_iter().enumerate() {
            if latencies.is_empty() {
                continue;
            }
            latencies.sort_unstable();
            println!("  {second:>3} s  tokens {:>6}  {}", latencies.len(), spread(&latencies, 2));
        }
    }
    println!("errors             {}", errors.len());
    for e in errors.iter().take(5) {
        println!("  {e}");
    }
    if let Some(pid) = args.server_pid {
        let sampled = peak_rss.load(std::sync::atomic::Ordering::Relaxed);
        let hwm = read_status_kb(pid, "VmHWM:").unwrap_or(0);
        println!(
            "server RSS MiB     peak {:.1} (VmHWM since start {:.1})",
            sampled as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
    println!("wall time s        {:.1}", started.elapsed().as_secs_f64());
    if !errors.is_empty() {
        std::process::exit(1);
    }
}

/// The app's relay histogram (`tutor_relay_latency_seconds`, cumulative counts by
/// upper bound in seconds), or None when `/metrics` cannot be read from here.
async fn relay_buckets(app: &str) -> Option<Vec<(f64, u64)>> {
    let text = reqwest::get(format!("{app}/metrics")).await.ok()?.error_for_status().ok()?.text().await.ok()?;
    let buckets: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|line| line.strip_prefix("tutor_relay_latency_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    (!buckets.is_empty()).then_some(buckets)
}

/// p50, p99 and p99.9 of the frames counted between two reads of the histogram, each as the
/// upper bound of the bucket it falls in.
fn bucket_spread(before: &[(f64, u64)], after: &[(f64, u64)]) -> String {
    let counts: Vec<(f64, u64)> = after
        .iter()
        .map(|&(le, total)| {
            let earlier = before.iter().find(|(b, _)| *b == le).map_or(0, |&(_, c)| c);
            (le, total.saturating_sub(earlier))
        })
        .collect();
    let total = counts.last().map_or(0, |&(_, c)| c);
    let bound = |q: f64| {
        let rank = (q * total as f64).ceil() as u64;
        match counts.iter().find(|&&(_, c)| c >= rank.max(1)) {
            Some(&(le, _)) if le.is_finite() => format!("<= {:.1}", le * 1000.0),
            _ => "above the largest bucket".to_string(),
        }
    };
    if total == 0 {
        return "no frames counted".to_string();
    }
    format!("p50 {}  p99 {}  p99.9 {}  ({total} frames)", bound(0.5), bound(0.99), bound(0.999))
}

/// Holds `--connections` sockets open and idle (see the module doc): prints the
/// server's RSS with none of them and with all of them open.
async fn idle(args: &'static Args) {
    let Some(pid) = args.server_pid else {
        eprintln!("loadtest: --idle-secs needs --server-pid");
        std::process::exit(2);
    };
    let app = args.apps.first().unwrap_or(&args.app).clone();
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let before_kb = read_status_kb(pid, "VmRSS:").unwrap_or(0);
    let ramp = Duration::from_millis(args.ramp_ms);
    let held_until = tokio::time::Instant::now() + ramp + Duration::from_secs(args.idle_secs);
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let offset = start_offset(args, i);
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let (mut ws, _) = open_socket(&app, None).await?;
            let mut frames = 0u32;
            loop {
                tokio::select! {
                    next = ws.next() => match next {
                        Some(Ok(_)) => frames += 1,
                        Some(Err(e)) => return Err(format!("socket: {e}")),
                        None => return Err("the server closed an idle socket".to_string()),
                    },
                    () = tokio::time::sleep_until(held_until) => break,
                }
            }
            Ok::<_, String>((ws, frames))
        }));
    }
    // All open, still held: the moment to read what they cost.
    tokio::time::sleep_until(held_until - Duration::from_millis(500)).await;
    let with_kb = read_status_kb(pid, "VmRSS:").unwrap_or(0);
    let mut open = Vec::new();
    let mut errors = Vec::new();
    let mut frames = 0u64;
    for task in tasks {
        match task.await {
            Ok(Ok((ws, seen))) => {
                frames += u64::from(seen);
                open.push(ws);
            }
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    let held = open.len().max(1) as f64;
    println!("idle sockets       {} held {} s ({} frames from the server)", open.len(), args.idle_secs, frames);
    println!(
        "server RSS MiB     {:.1} before, {:.1} with them open: {:.1} KiB a socket",
        before_kb as f64 / 1024.0,
        with_kb as f64 / 1024.0,
        with_kb.saturating_sub(before_kb) as f64 / held
    );
    println!("errors             {}", errors.len());
    for e in errors.iter().take(5) {
        println!("  {e}");
    }
    drop(open);
    if !errors.is_empty() {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::bucket_spread;

    #[test]
    fn the_apps_histogram_counts_only_this_runs_frames() {
        // An earlier run on the same process left 1,000 slow frames; this run's 1,000
        // are all fast but ten.
        let before = [(0.0005, 0), (0.005, 0), (0.25, 1000), (f64::INFINITY, 1000)];
        let after = [(0.0005, 990), (0.005, 1000), (0.25, 2000), (f64::INFINITY, 2000)];
        assert_eq!(bucket_spread(&before, &after), "p50 <= 0.5  p99 <= 0.5  p99.9 <= 5.0  (1000 frames)");
        let slow = [(0.0005, 0), (0.005, 0), (0.25, 0), (f64::INFINITY, 5)];
        assert_eq!(
            bucket_spread(&[], &slow),
            "p50 above the largest bucket  p99 above the largest bucket  p99.9 above the largest bucket  (5 frames)"
        );
        assert_eq!(bucket_spread(&after, &after), "no frames counted");
    }
}
