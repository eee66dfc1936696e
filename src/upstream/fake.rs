//! A development tool: an OpenAI-compatible Chat Completions server that streams in
//! the exact SSE wire format, with faults chosen per request. Every test uses it, and
//! `tutor-chat fake-upstream` serves it so a developer can run the app against a
//! "model" with no key.
//!
//! Directives in the last user message steer one answer:
//! `[tokens=N]`, `[delay=MS]` (between tokens), `[first_delay=MS]`, `[stamp]` (each
//! token carries its send time as `t<unix micros> `), `[prefix=P]` (tokens are `P0 `,
//! `P1 `, …), `[finish=length]`, `[no_done]`
//! (finish chunk, then close without `[DONE]`), `[cite=1,7]` (the answer ends with
//! ` [1] [7]`, each split across two chunks, as a model citing its sources would),
//! `[xss]` (streams [`XSS_VECTORS`], three characters per chunk), `[md]` (a long
//! Markdown answer of `tokens` words, two chunks a word: see [`markdown_pieces`]),
//! and `[fault=F]` where F is one of
//! `401`, `429`, `500`, `drop` (close the connection mid-answer), `malformed` (a
//! broken JSON line mid-answer), `stream_error` (an in-stream error object),
//! `slow` (first token after `first_delay`, default 5 s), `not_sse` (200 with an HTML
//! page, as a captive portal answers), `wrong_type` (the whole answer as `text/plain`),
//! `nul` (the middle token carries a U+0000), `odd_usage` (usage counts that are not
//! whole numbers in `u32`).
//!
//! A request that ends with an assistant turn and then [`super::CONTINUE_INSTRUCTION`]
//! (how an instance taking over a cut answer asks) is answered with the rest of the
//! same deterministic text after that assistant turn's prefix, as a model continuing
//! itself would — so tests can check the seam exactly. Its directives are those of the
//! user turn before the partial answer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Tokens per answer unless a directive says otherwise.
    pub tokens: usize,
    /// Delay between tokens unless a directive says otherwise.
    pub delay: Duration,
    /// When set, requests without `Authorization: Bearer <key>` get 401.
    pub require_key: Option<String>,
    /// How many requests `/_log` keeps.
    pub log_capacity: usize,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            tokens: 24,
            delay: Duration::from_millis(40),
            require_key: None,
            log_capacity: 10_000,
        }
    }
}

/// One request as the fake saw it, and the text it streamed back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordedRequest {
    pub id: String,
    pub model: String,
    pub messages: Vec<RecordedMessage>,
    pub authorization: Option<String>,
    /// Exactly the content the fake sent, concatenated, updated as it streams.
    pub answer: String,
    pub completed: bool,
    /// The request's `max_tokens`; the fake stops there with `finish_reason: length`.
    pub max_tokens: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordedMessage {
    pub role: String,
    pub content: String,
}

#[derive(Deserialize)]
struct CompletionRequest {
    model: String,
    messages: Vec<RecordedMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Clone)]
pub struct FakeUpstream {
    config: Arc<FakeConfig>,
    /// Each entry is shared with the task streaming it, which updates it without
    /// searching the log (a search per token costs real CPU under load).
    log: Arc<Mutex<VecDeque<Arc<Mutex<RecordedRequest>>>>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Directives {
    tokens: Option<usize>,
    delay: Option<Duration>,
    first_delay: Option<Duration>,
    fault: Option<String>,
    stamp: bool,
    prefix: Option<String>,
    finish_length: bool,
    no_done: bool,
    /// Citations to end the answer with, each split across two chunks (` [` + `n]`).
    cite: Vec<u32>,
    /// Stream [`XSS_VECTORS`] instead of words, three characters per chunk.
    xss: bool,
    /// Stream [`markdown_pieces`] instead of words.
    markdown: bool,
}

/// What a prompt-injected model might write to attack the page, and some Markdown
/// that must still render. Streamed by `[xss]` in pieces so every tag is split.
pub const XSS_VECTORS: &str = "Attack vectors follow.\n\n\
<script>window.__xss = 1; alert('script')</script>\n\n\
Inline <img src=x onerror=\"window.__xss = 2; alert('img')\"> image.\n\n\
<svg onload=\"window.__xss = 3\"><script>alert('svg')</script></svg>\n\n\
[a script link](javascript:window.__xss=4) and [data](data:text/html,<script>alert(5)</script>)\n\n\
<a href=\"javascript:alert(6)\">raw link</a> <iframe src=\"javascript:alert(7)\"></iframe>\n\n\
<details open ontoggle=\"window.__xss = 8\">x</details>\n\n\
![tracking pixel](https://tracker.example/pixel.png)\n\n\
**Still Markdown:** a [safe link](https://example.org/docs) and `inline code`.\n\n\
```html\n<script>alert('in code')</script>\n```\n";

/// `[md]`: an answer of `words` words laid out as a model writes a long one — in each
/// hundred words a heading, paragraphs, a four-item list and a code block — sent as
/// two chunks a word (its two halves, the Markdown around it with the first), the
/// way sub-word tokens arrive: 4,000 words are 8,000 chunks. For the long-answer
/// rendering test and benchmark (docs/BENCHMARKS.md).
pub fn markdown_pieces(words: usize) -> Vec<String> {
    let mut pieces = Vec::with_capacity(words * 2 + 1);
    for i in 0..words {
        let word = WORDS[i % WORDS.len()];
        let before = match i % 100 {
            0 if i == 0 => "## Part 1\n\n".to_string(),
            0 => format!("\n\n## Part {}\n\n", i / 100 + 1),
            20 | 70 | 85 => "\n\n".to_string(),
            40 => "\n\n- ".to_string(),
            45 | 50 | 55 => "\n- ".to_string(),
            60 => "\n\n```rust\n".to_string(),
            65 => "\n".to_string(),
            _ => " ".to_string(),
        };
        let before = if i % 100 == 70 { format!("\n```{before}") } else { before };
        let half = word.len() / 2;
        pieces.push(format!("{before}{}", &word[..half]));
        pieces.push(word[half..].to_string());
    }
    if (60..70).contains(&((words + 99) % 100)) {
        pieces.push("\n```\n".to_string());
    }
    pieces
}

fn parse_directives(text: &str) -> Directives {
    let mut d = Directives::default();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        let inner = &rest[open + 1..open + close];
        rest = &rest[open + close + 1..];
        let (key, value) = inner.split_once('=').unwrap_or((inner, ""));
        let millis = || value.parse::<u64>().ok().map(Duration::from_millis);
        match key.trim() {
            "tokens" => d.tokens = value.parse().ok(),
            "delay" => d.delay = millis(),
            "first_delay" => d.first_delay = millis(),
            "fault" => d.fault = Some(value.to_string()),
            "stamp" => d.stamp = true,
            "prefix" => d.prefix = Some(value.to_string()),
            "finish" => d.finish_length = value == "length",
            "no_done" => d.no_done = true,
            "cite" => d.cite = value.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
            "xss" => d.xss = true,
            "md" => d.markdown = true,
            _ => {}
        }
    }
    d
}

const WORDS: [&str; 16] = [
    "WebSocket", "keeps", "one", "connection", "open,", "so", "the", "server", "can", "push",
    "each", "token", "the", "moment", "it", "arrives.",
];

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

fn error_body(message: &str, kind: &str, code: &str) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "error": { "message": message, "type": kind, "param": null, "code": code }
    }))
}

impl FakeUpstream {
    pub fn new(config: FakeConfig) -> Self {
        FakeUpstream {
            config: Arc::new(config),
            log: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(completions))
            .route("/v1/models", get(models))
            .route("/_log", get(read_log).delete(clear_log))
            .with_state(self.clone())
    }

    /// Serves on `addr` (port 0 picks a free one) in the background.
    pub async fn spawn(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let app = self.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(crate::net::without_nagle(listener), app).await {
                tracing::error!(error = %e, "fake upstream stopped");
            }
        });
        Ok(local)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock_log().iter().map(|entry| lock(entry).clone()).collect()
    }

    fn lock_log(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Mutex<RecordedRequest>>>> {
        lock(&self.log)
    }

    fn record(&self, request: RecordedRequest) -> Arc<Mutex<RecordedRequest>> {
        let entry = Arc::new(Mutex::new(request));
        let mut log = self.lock_log();
        if log.len() >= self.config.log_capacity {
            log.pop_front();
        }
        log.push_back(entry.clone());
        entry
    }
}

/// A panic elsewhere cannot leave the log half-written: take it as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The partial answer a continuation request carries: the assistant turn right before
/// a final [`super::CONTINUE_INSTRUCTION`].
fn continued_prefix(messages: &[RecordedMessage]) -> Option<String> {
    match messages {
        [.., partial, instruction]
            if partial.role == "assistant"
                && instruction.role == "user"
                && instruction.content == super::CONTINUE_INSTRUCTION =>
        {
            Some(partial.content.clone())
        }
        _ => None,
    }
}

/// What of `piece` comes after the first `skip` bytes of the text (counting down
/// `skip`); `None` when all of it was already said.
fn after_skip(piece: &str, skip: &mut usize) -> Option<String> {
    if *skip >= piece.len() {
        *skip -= piece.len();
        return None;
    }
    let start = std::mem::take(skip);
    // A prefix that ends inside a character cannot be continued byte-exactly; the
    // whole piece goes rather than a panic.
    Some(piece.get(start..).unwrap_or(piece).to_string())
}

async fn models() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "object": "list",
        "data": [{ "id": "fake-model", "object": "model", "created": 0, "owned_by": "tutor-chat" }]
    }))
}

async fn read_log(State(fake): State<FakeUpstream>) -> Json<Vec<RecordedRequest>> {
    Json(fake.requests())
}

async fn clear_log(State(fake): State<FakeUpstream>) -> StatusCode {
    fake.lock_log().clear();
    StatusCode::NO_CONTENT
}

async fn completions(
    State(fake): State<FakeUpstream>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(key) = &fake.config.require_key {
        if authorization.as_deref() != Some(&format!("Bearer {key}")) {
            return (
                StatusCode::UNAUTHORIZED,
                error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
            )
                .into_response();
        }
    }
    let request: CompletionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                error_body(&format!("invalid body: {e}"), "invalid_request_error", "invalid_body"),
            )
                .into_response()
        }
    };
    if !request.stream {
        return (
            StatusCode::BAD_REQUEST,
            error_body("this test server only streams", "invalid_request_error", "stream_required"),
        )
            .into_response();
    }
    let continued_from = continued_prefix(&request.messages);
    let last_user = request
        .messages
        .iter()
        .rev()
        .filter(|m| m.role == "user")
        .nth(usize::from(continued_from.is_some()))
        .map(|m| m.content.clone())
        .unwrap_or_default();
    let directives = parse_directives(&last_user);
    match directives.fault.as_deref() {
        Some("401") => {
            return (
                StatusCode::UNAUTHORIZED,
                error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
            )
                .into_response()
        }
        Some("429") => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "7")],
                error_body("Rate limit reached.", "requests", "rate_limit_exceeded"),
            )
                .into_response()
        }
        Some("500") => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                error_body("The server had an error.", "server_error", "server_error"),
            )
                .into_response()
        }
        Some("not_sse") => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<html><body>Please sign in to the network.</body></html>",
            )
                .into_response()
        }
        _ => {}
    }

    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let entry = fake.record(RecordedRequest {
        id: id.clone(),
        model: request.model.clone(),
        messages: request.messages,
        authorization,
        answer: String::new(),
        completed: false,
        max_tokens: request.max_tokens,
    });

    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    let config = fake.config.clone();
    drop(fake);
    // `wrong_type`: the whole answer, labelled as something else (a proxy rewriting it).
    let content_type = match directives.fault.as_deref() {
        Some("wrong_type") => "text/plain",
        _ => "text/event-stream",
    };
    // The body is a stream hyper polls on the connection's own task: one wake-up per
    // token, as a real server's write loop (a spawned writer and a channel would be
    // two, and this server shares the machine with what it measures).
    let body = async_stream::stream! {
        let wanted = directives.tokens.unwrap_or(config.tokens);
        // A model stops at the request's max_tokens, and says why.
        let cut_by_max = request.max_tokens.is_some_and(|max| wanted > max as usize);
        let tokens = request.max_tokens.map_or(wanted, |max| wanted.min(max as usize));
        let delay = directives.delay.unwrap_or(config.delay);
        let first_delay = directives.first_delay.unwrap_or(match directives.fault.as_deref() {
            Some("slow") => Duration::from_secs(5),
            _ => Duration::ZERO,
        });
        let created = (now_micros() / 1_000_000) as u64;
        let model = request.model;
        let frame = |delta: serde_json::Value, finish: Option<&str>| {
            let chunk = serde_json::json!({
                "id": id, "object": "chat.completion.chunk", "created": created,
                "model": model, "system_fingerprint": "fp_fake",
                "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]
            });
            Bytes::from(format!("data: {chunk}\n\n"))
        };
        let fault_at = tokens / 2;
        yield Ok::<Bytes, std::io::Error>(frame(serde_json::json!({"role": "assistant", "content": ""}), None));
        tokio::time::sleep(first_delay).await;
        let pieces: Vec<String> = if directives.xss {
            let chars: Vec<char> = XSS_VECTORS.chars().collect();
            chars.chunks(3).map(|c| c.iter().collect()).collect()
        } else if directives.markdown {
            markdown_pieces(tokens)
        } else {
            Vec::new()
        };
        // A continuation skips what the partial answer already has, without waiting.
        let mut skip = continued_from.as_deref().map_or(0, str::len);
        for piece in &pieces {
            let Some(piece) = after_skip(piece, &mut skip) else { continue };
            tokio::time::sleep(delay).await;
            lock(&entry).answer.push_str(&piece);
            yield Ok(frame(serde_json::json!({"content": piece}), None));
        }
        let tokens = if directives.xss || directives.markdown { 0 } else { tokens };
        let mut sent_any = false;
        for i in 0..tokens {
            if i > 0 && skip == 0 && sent_any {
                tokio::time::sleep(delay).await;
            }
            if i == fault_at {
                match directives.fault.as_deref() {
                    Some("drop") => {
                        yield Err(std::io::Error::other("fake upstream dropped the stream"));
                        return;
                    }
                    Some("malformed") => {
                        yield Ok(Bytes::from_static(b"data: {\"choices\": [{\"delta\": \n\n"));
                        return;
                    }
                    Some("stream_error") => {
                        yield Ok(Bytes::from_static(
                            b"data: {\"error\":{\"message\":\"The server is overloaded.\",\"type\":\"server_error\",\"code\":null}}\n\n"
                        ));
                        return;
                    }
                    _ => {}
                }
            }
            let content = if directives.stamp {
                format!("t{} ", now_micros())
            } else if let Some(prefix) = &directives.prefix {
                format!("{prefix}{i} ")
            } else {
                let word = WORDS[i % WORDS.len()];
                if i == 0 {
                    word.to_string()
                } else {
                    format!(" {word}")
                }
            };
            let content = if i == fault_at && directives.fault.as_deref() == Some("nul") {
                format!("{content} a\0b")
            } else {
                content
            };
            let Some(content) = after_skip(&content, &mut skip) else { continue };
            sent_any = true;
            lock(&entry).answer.push_str(&content);
            yield Ok(frame(serde_json::json!({"content": content}), None));
        }
        for n in &directives.cite {
            for content in [" [".to_string(), format!("{n}]")] {
                let Some(content) = after_skip(&content, &mut skip) else { continue };
                tokio::time::sleep(delay).await;
                lock(&entry).answer.push_str(&content);
                yield Ok(frame(serde_json::json!({"content": content}), None));
            }
        }
        let finish = if directives.finish_length || cut_by_max { "length" } else { "stop" };
        yield Ok(frame(serde_json::json!({}), Some(finish)));
        lock(&entry).completed = true;
        if include_usage {
            let usage = serde_json::json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [],
                "usage": if directives.fault.as_deref() == Some("odd_usage") {
                    serde_json::json!({ "prompt_tokens": 5_000_000_000u64, "completion_tokens": 12.5, "total_tokens": -1 })
                } else {
                    serde_json::json!({ "prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens })
                }
            });
            yield Ok(Bytes::from(format!("data: {usage}\n\n")));
        }
        if !directives.no_done {
            yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
        }
    };

    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `tutor-chat fake-upstream [--port N] [--tokens N] [--delay-ms MS] [--require-key K]`
#[derive(Debug, clap::Parser)]
#[command(
    name = "tutor-chat fake-upstream",
    about = "OpenAI-compatible test server streaming the exact SSE wire format"
)]
pub struct FakeArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    #[arg(long, default_value_t = 3900)]
    pub port: u16,
    /// Tokens per answer (a `[tokens=N]` directive in the question overrides it).
    #[arg(long, default_value_t = 24)]
    pub tokens: usize,
    /// Milliseconds between tokens (`[delay=MS]` overrides it).
    #[arg(long, default_value_t = 40)]
    pub delay_ms: u64,
    /// Answer 401 unless requests carry `Authorization: Bearer <KEY>`.
    #[arg(long)]
    pub require_key: Option<String>,
}

/// Serves the fake until Ctrl-C or SIGTERM.
pub async fn serve_until_stopped(args: FakeArgs) -> std::io::Result<()> {
    let fake = FakeUpstream::new(FakeConfig {
        tokens: args.tokens,
        delay: Duration::from_millis(args.delay_ms),
        require_key: args.require_key,
        ..FakeConfig::default()
    });
    let addr = fake.spawn(SocketAddr::new(args.host, args.port)).await?;
    println!("fake upstream listening on http://{addr}/v1");
    crate::net::shutdown_signal().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_read_from_brackets() {
        let d = parse_directives("[tokens=5] [delay=10] explain [fault=drop] [stamp] [no_done]");
        assert_eq!(d.tokens, Some(5));
        assert_eq!(d.delay, Some(Duration::from_millis(10)));
        assert_eq!(d.fault.as_deref(), Some("drop"));
        assert!(d.stamp && d.no_done && !d.finish_length);
        assert_eq!(parse_directives("no brackets [unclosed"), Directives::default());
        assert_eq!(parse_directives("[cite=1, 7,x]").cite, [1, 7]);
    }

    #[test]
    fn a_markdown_answer_is_two_chunks_a_word_in_real_blocks() {
        let pieces = markdown_pieces(4_000);
        assert_eq!(pieces.len(), 8_000);
        let text = pieces.concat();
        let words: usize = text
            .lines()
            .filter(|line| !line.starts_with("## Part") && !line.starts_with("```"))
            .map(|line| line.trim_start_matches("- ").split_whitespace().count())
            .sum();
        assert_eq!(words, 4_000);
        let labels = crate::render::RenderLabels { copy: "Copy", seam: "" };
        let html = crate::render::answer_html(&text, &[], labels);
        assert_eq!(html.matches("<h2>").count(), 40, "{html}");
        assert_eq!(html.matches("<li>").count(), 160);
        assert_eq!(html.matches("<code class=\"language-rust\">").count(), 40);
        // Cut inside a code block, the answer still closes it.
        let short = markdown_pieces(63).concat();
        assert!(short.ends_with("\n```\n"), "{short}");
        assert_eq!(crate::render::answer_html(&short, &[], labels).matches("</code></pre>").count(), 1);
    }
}
