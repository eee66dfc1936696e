//! Client for an OpenAI-compatible Chat Completions API, streaming over SSE.
//!
//! Every failure becomes one [`UpstreamError`] variant, so the socket layer can give
//! the student a precise error code. All waiting is async with deadlines: a stalled
//! upstream never holds a runtime thread.

pub mod fake;
mod one_shot;
pub mod sse;

use std::time::Duration;

use futures::StreamExt;
use reqwest_eventsource::Event;
use serde::Serialize;
use tokio::time::Instant;

use crate::protocol::{EndReason, ErrorCode, Usage};
use crate::settings::UpstreamSettings;
use one_shot::OneShotSource;
use sse::{parse_chunk, ChunkError};

/// The last turn of a request that continues a cut answer (docs/storage.md, "Answers
/// cut by a crash"): after the conversation and the partial answer as the assistant's
/// turn. Worded so a model neither restarts nor repeats; the test upstream recognises
/// it exactly.
pub const CONTINUE_INSTRUCTION: &str = "Your previous answer was cut off. Continue it exactly \
where it stopped, from the very next character: do not repeat anything already written, \
do not restart, do not mention the interruption.";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "system",
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "user",
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "assistant",
            content: content.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    #[error("the model API refused our credentials (HTTP {status})")]
    Unauthorized { status: u16 },
    #[error("the model API is rate limiting us")]
    RateLimited { retry_after: Option<u64> },
    #[error("the model API is unavailable: {0}")]
    Unavailable(String),
    #[error("the model API rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("the model API sent a stream we could not read: {0}")]
    Malformed(String),
    #[error("the model API dropped the stream mid-answer: {0}")]
    Dropped(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}

impl UpstreamError {
    pub fn code(&self) -> ErrorCode {
        match self {
            UpstreamError::Unauthorized { .. } => ErrorCode::UpstreamUnauthorized,
            UpstreamError::RateLimited { .. } => ErrorCode::RateLimited,
            UpstreamError::Unavailable(_)
            | UpstreamError::Malformed(_)
            | UpstreamError::Dropped(_) => ErrorCode::UpstreamUnavailable,
            UpstreamError::Timeout(_) => ErrorCode::Timeout,
            UpstreamError::Rejected { .. } => ErrorCode::Internal,
        }
    }

    pub fn retry_after(&self) -> Option<u64> {
        match self {
            UpstreamError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// What the student may read: no upstream bodies, hosts or keys.
    pub fn client_message(&self) -> String {
        match self {
            UpstreamError::Unauthorized { .. } => {
                "The model API refused the tutor's credentials.".into()
            }
            UpstreamError::RateLimited { retry_after: Some(s) } => {
                format!("The model API is busy; try again in {s} s.")
            }
            UpstreamError::RateLimited { retry_after: None } => {
                "The model API is busy; try again shortly.".into()
            }
            UpstreamError::Unavailable(_) => "The model API is unavailable.".into(),
            UpstreamError::Malformed(_) => "The model API sent an unreadable answer.".into(),
            UpstreamError::Dropped(_) => "The model API dropped the answer midway.".into(),
            UpstreamError::Timeout(what) => format!("Timed out waiting for {what}."),
            UpstreamError::Rejected { .. } => "The model API rejected the request.".into(),
        }
    }
}

#[derive(Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    base_url: String,
    settings: UpstreamSettings,
}

impl UpstreamClient {
    pub fn new(base_url: String, settings: UpstreamSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(UpstreamClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            settings,
        })
    }

    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// Sends the request; the stream's first event is awaited by [`AnswerStream::next_delta`].
    pub fn stream_chat(&self, messages: &[ChatMessage]) -> Result<AnswerStream, UpstreamError> {
        let body = serde_json::json!({
            "model": self.settings.model,
            "messages": messages,
            "stream": true,
            "stream_options": { "include_usage": true },
            // Every request is bounded: one answer cannot spend the course's budget.
            "max_tokens": self.settings.max_tokens,
        });
        let mut request = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .json(&body);
        if let Some(key) = &self.settings.api_key {
            request = request.bearer_auth(key);
        }
        // Sent once: a retry would replay the whole answer into the same stream; we
        // surface the error instead (and keep no copy of the request for one).
        let source = OneShotSource::new(request)
            .map_err(|e| UpstreamError::Unavailable(format!("cannot build request: {e}")))?;
        let now = Instant::now();
        let first_deadline = (now + self.settings.first_token_timeout).min(now + self.settings.total_timeout);
        Ok(AnswerStream(Inner::Sse(Box::new(SseStream {
            source,
            timer: Box::pin(tokio::time::sleep_until(first_deadline)),
            total_deadline: now + self.settings.total_timeout,
            first_token_timeout: self.settings.first_token_timeout,
            token_gap_timeout: self.settings.token_gap_timeout,
            last_progress: now,
            opened: false,
            status: None,
            got_token: false,
            finish_reason: None,
            usage: None,
            finished: false,
            prompt_chars: messages.iter().map(|m| m.content.chars().count()).sum(),
        }))))
    }
}

/// One answer being streamed: from the model, or (lesson mode) from text we wrote
/// ourselves, paced like a model. Dropping it cancels the HTTP request.
pub struct AnswerStream(Inner);

enum Inner {
    /// Boxed: the HTTP response and the SSE parser are ~520 bytes, and an answer's
    /// stream is moved into, and held by, its long-lived task.
    Sse(Box<SseStream>),
    Local(LocalStream),
}

struct LocalStream {
    pieces: std::collections::VecDeque<String>,
    gap: Duration,
    /// When the next piece is due; kept across calls so `select!` can cancel us.
    next_at: Option<Instant>,
}

impl AnswerStream {
    /// Streams `pieces` one by one, `gap` apart.
    pub fn local(pieces: Vec<String>, gap: Duration) -> AnswerStream {
        AnswerStream(Inner::Local(LocalStream {
            pieces: pieces.into(),
            gap,
            next_at: None,
        }))
    }

    /// The next piece of text, `Ok(None)` once the answer finished cleanly.
    pub async fn next_delta(&mut self) -> Result<Option<String>, UpstreamError> {
        match &mut self.0 {
            Inner::Sse(sse) => sse.next_delta().await,
            Inner::Local(local) => {
                if let Some(at) = local.next_at {
                    tokio::time::sleep_until(at).await;
                }
                let piece = local.pieces.pop_front();
                local.next_at = Some(Instant::now() + local.gap);
                Ok(piece)
            }
        }
    }

    pub fn end_reason(&self) -> EndReason {
        match &self.0 {
            Inner::Sse(sse) => sse.end_reason(),
            Inner::Local(_) => EndReason::Complete,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        match &self.0 {
            Inner::Sse(sse) => sse.usage(),
            Inner::Local(_) => None,
        }
    }

    /// What the model reported, or — for an answer stopped, cut or failed before the
    /// model's final usage chunk — an estimate (about four characters a token), so the
    /// course's token budget counts every model call. None for our own text (lesson
    /// mode), which costs no tokens.
    pub fn usage_or_estimate(&self, answer_chars: usize) -> Option<Usage> {
        const CHARS_PER_TOKEN: usize = 4;
        match &self.0 {
            Inner::Sse(sse) => sse.usage().or_else(|| {
                let tokens = |chars: usize| u32::try_from(chars.div_ceil(CHARS_PER_TOKEN)).unwrap_or(u32::MAX);
                Some(Usage {
                    prompt_tokens: tokens(sse.prompt_chars),
                    completion_tokens: tokens(answer_chars),
                })
            }),
            Inner::Local(_) => None,
        }
    }

    /// The HTTP status the model API answered with, once it answered (for `/metrics`);
    /// none for our own text or a request that got no response.
    pub fn upstream_status(&self) -> Option<u16> {
        match &self.0 {
            Inner::Sse(sse) => sse.status,
            Inner::Local(_) => None,
        }
    }
}

struct SseStream {
    source: OneShotSource,
    /// Fires at or before the current deadline. Moved only when it fires (to the real
    /// deadline, if that is later): re-arming a timer for every token would cost a
    /// timer-wheel update per token with a thousand answers streaming.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    total_deadline: Instant,
    first_token_timeout: Duration,
    token_gap_timeout: Duration,
    last_progress: Instant,
    opened: bool,
    /// The response's status: 200 once the stream opened, else the refusal's.
    status: Option<u16>,
    got_token: bool,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    finished: bool,
    /// Characters sent to the model, for an estimate when it reports no usage.
    prompt_chars: usize,
}

impl SseStream {
    async fn next_delta(&mut self) -> Result<Option<String>, UpstreamError> {
        if self.finished {
            return Ok(None);
        }
        loop {
            let next = tokio::select! {
                biased;
                next = self.source.next() => next,
                () = self.timer.as_mut() => {
                    // Measured from the last progress, not from this call: `select!` may
                    // cancel and re-call us while one gap lasts.
                    let deadline = self.deadline();
                    if Instant::now() < deadline {
                        self.timer.as_mut().reset(deadline);
                        continue;
                    }
                    self.source.close();
                    return Err(UpstreamError::Timeout(if deadline == self.total_deadline {
                        "the whole answer"
                    } else if self.got_token {
                        "the next token"
                    } else {
                        "the first token"
                    }));
                }
            };
            match next {
                Some(Ok(Event::Open)) => {
                    self.opened = true;
                    // The stream opens only on exactly 200 OK.
                    self.status = Some(200);
                }
                Some(Ok(Event::Message(message))) => match parse_chunk(&message.data) {
                    Ok(chunk) => {
                        if chunk.usage.is_some() {
                            self.usage = chunk.usage;
                        }
                        if chunk.finish_reason.is_some() {
                            self.finish_reason = chunk.finish_reason;
                        }
                        if chunk.done {
                            return Ok(self.finish());
                        }
                        if let Some(content) = chunk.content {
                            self.last_progress = Instant::now();
                            if !self.got_token {
                                // The gap timeout may be shorter than the first-token one.
                                self.got_token = true;
                                let deadline = self.deadline();
                                self.timer.as_mut().reset(deadline);
                            }
                            return Ok(Some(content));
                        }
                    }
                    Err(ChunkError::Malformed(detail)) => {
                        self.source.close();
                        return Err(UpstreamError::Malformed(detail));
                    }
                    Err(error @ ChunkError::InStream { .. }) => {
                        self.source.close();
                        if error.is_rate_limit() {
                            return Err(UpstreamError::RateLimited { retry_after: None });
                        }
                        return Err(UpstreamError::Unavailable(match error {
                            ChunkError::InStream { message, .. } => message,
                            other => other.to_string(),
                        }));
                    }
                },
                Some(Err(reqwest_eventsource::Error::StreamEnded)) | None => {
                    // Some servers close without `[DONE]` after the finish chunk: that is complete.
                    if self.finish_reason.is_some() {
                        return Ok(self.finish());
                    }
                    self.source.close();
                    return Err(UpstreamError::Dropped(
                        "stream ended before the answer finished".into(),
                    ));
                }
                Some(Err(error)) => {
                    self.source.close();
                    if let reqwest_eventsource::Error::InvalidStatusCode(status, _) = &error {
                        self.status = Some(status.as_u16());
                    }
                    return Err(self.map_error(error));
                }
            }
        }
    }

    /// When waiting must end: the gap (or first-token) timeout from the last progress,
    /// or the whole answer's deadline, whichever comes first.
    fn deadline(&self) -> Instant {
        let wait = if self.got_token {
            self.token_gap_timeout
        } else {
            self.first_token_timeout
        };
        (self.last_progress + wait).min(self.total_deadline)
    }

    fn finish(&mut self) -> Option<String> {
        self.finished = true;
        self.source.close();
        None
    }

    fn end_reason(&self) -> EndReason {
        match self.finish_reason.as_deref() {
            Some("length") => EndReason::Length,
            Some("content_filter") => EndReason::ContentFilter,
            _ => EndReason::Complete,
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Not async on purpose: the caller's future may be cancelled by `select!` at any
    /// await, and an error must never be lost between being read and being reported.
    fn map_error(&self, error: reqwest_eventsource::Error) -> UpstreamError {
        use reqwest_eventsource::Error as E;
        match error {
            E::InvalidStatusCode(status, response) => {
                let code = status.as_u16();
                match code {
                    401 | 403 => UpstreamError::Unauthorized { status: code },
                    429 => UpstreamError::RateLimited {
                        retry_after: response
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(parse_retry_after),
                    },
                    500..=599 => UpstreamError::Unavailable(format!("HTTP {code}")),
                    _ => UpstreamError::Rejected {
                        status: code,
                        message: status.canonical_reason().unwrap_or("").to_string(),
                    },
                }
            }
            E::InvalidContentType(value, _) => UpstreamError::Malformed(format!(
                "expected text/event-stream, got {value:?}"
            )),
            E::Transport(e) if !self.opened => UpstreamError::Unavailable(e.to_string()),
            E::Transport(e) => UpstreamError::Dropped(e.to_string()),
            E::Utf8(e) => UpstreamError::Malformed(e.to_string()),
            E::Parser(e) => UpstreamError::Malformed(e.to_string()),
            other => UpstreamError::Unavailable(other.to_string()),
        }
    }
}

/// `Retry-After` in seconds (fractions rounded up). The HTTP-date form is rare for APIs;
/// it yields `None` and the client falls back to its own backoff.
pub fn parse_retry_after(value: &str) -> Option<u64> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| seconds.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(7));
        assert_eq!(parse_retry_after("1.2"), Some(2));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-3"), None);
    }

    #[test]
    fn every_error_has_a_code_and_a_safe_message() {
        let errors = [
            (UpstreamError::Unauthorized { status: 401 }, ErrorCode::UpstreamUnauthorized),
            (UpstreamError::RateLimited { retry_after: Some(3) }, ErrorCode::RateLimited),
            (UpstreamError::Unavailable("secret-host:1".into()), ErrorCode::UpstreamUnavailable),
            (UpstreamError::Malformed("x".into()), ErrorCode::UpstreamUnavailable),
            (UpstreamError::Dropped("x".into()), ErrorCode::UpstreamUnavailable),
            (UpstreamError::Timeout("the first token"), ErrorCode::Timeout),
            (
                UpstreamError::Rejected {
                    status: 400,
                    message: "secret".into(),
                },
                ErrorCode::Internal,
            ),
        ];
        for (error, code) in errors {
            assert_eq!(error.code(), code);
            assert!(!error.client_message().contains("secret"));
        }
    }
}
