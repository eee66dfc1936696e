//! The `/ws/chat` route: `ws_handler` checks the upgrade, `handle_socket` runs one
//! connection. The loop is generic over `Sink`/`Stream`, so unit tests drive it
//! with channels instead of a network.
//!
//! One task per connection does everything: it reads client frames, relays the
//! upstream answer, pings, and watches for a dead peer. Dropping it (disconnect)
//! drops the upstream request too.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::Instant;

use crate::auth::{session_from_headers, GuestSession};
use crate::protocol::{
    parse_client_frame, ClientFrame, EndReason, ErrorCode, FrameLimits, ServerFrame,
    PROTOCOL_VERSION,
};
use crate::server::AppState;
use crate::upstream::{AnswerStream, ChatMessage, UpstreamClient};

/// Close codes (RFC 6455).
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_TOO_BIG: u16 = 1009;
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// What one connection needs to know.
#[derive(Clone)]
pub struct ConnContext {
    pub upstream: UpstreamClient,
    pub limits: FrameLimits,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub history_turns: usize,
    pub session: GuestSession,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// A browser always sends `Origin` on a WebSocket upgrade; a page on another site must
/// not ride on the student's cookie. Clients without `Origin` (CLI tools) are not
/// browsers and carry no ambient credentials of a victim, so they pass.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

pub async fn ws_handler(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    if !origin_allowed(&headers, &state.settings.allowed_origins) {
        tracing::warn!(origin = ?headers.get(header::ORIGIN), "websocket refused: foreign origin");
        return (StatusCode::FORBIDDEN, "This origin may not open the chat socket.").into_response();
    }
    let Some(session) = session_from_headers(&headers) else {
        return (
            StatusCode::UNAUTHORIZED,
            "No session: load the chat page first, it sets the session cookie.",
        )
            .into_response();
    };
    let settings = &state.settings;
    let ctx = ConnContext {
        upstream: state.upstream.clone(),
        limits: FrameLimits {
            max_frame_bytes: settings.max_frame_bytes,
            max_question_chars: settings.max_question_chars,
        },
        ping_interval: settings.ping_interval,
        idle_timeout: settings.idle_timeout,
        history_turns: settings.history_turns,
        session,
        shutdown: state.shutdown.subscribe(),
    };
    // Chat frames are small; the 128 KiB default read buffer per socket would be most
    // of a connection's memory (measured in docs/BENCHMARKS.md).
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(settings.hard_frame_bytes)
        .max_frame_size(settings.hard_frame_bytes)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            handle_socket(sink, stream, ctx).await;
        })
}

/// The answer being streamed on a connection.
struct RunningAnswer {
    stream: AnswerStream,
    message_id: String,
    question: String,
    text: String,
    seq: u64,
}

/// The conversation of this connection: the earlier turns go to the model.
struct Conversation {
    id: String,
    turns: Vec<ChatMessage>,
}

enum Step {
    Continue,
    Close,
}

pub async fn handle_socket<S, R>(mut sink: S, mut stream: R, mut ctx: ConnContext)
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let span = tracing::info_span!("ws", session = ctx.session.log_label());
    let _entered = span.enter();
    tracing::debug!("connected");

    let hello = ServerFrame::Hello {
        protocol: PROTOCOL_VERSION,
        max_question_chars: u32::try_from(ctx.limits.max_question_chars).unwrap_or(u32::MAX),
    };
    if send(&mut sink, &hello).await.is_err() {
        return;
    }
    let mut answer: Option<RunningAnswer> = None;
    let mut conversation = Conversation {
        id: new_id(),
        turns: Vec::new(),
    };
    let mut last_seen = Instant::now();
    let mut ping = tokio::time::interval_at(Instant::now() + ctx.ping_interval, ctx.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let step = tokio::select! {
            incoming = stream.next() => {
                match incoming {
                    None => Step::Close,
                    Some(Err(error)) => {
                        if is_too_big(error) {
                            let _ = sink.send(close(CLOSE_TOO_BIG, "message too big")).await;
                        }
                        Step::Close
                    }
                    Some(Ok(message)) => {
                        last_seen = Instant::now();
                        on_message(message, &mut sink, &mut answer, &mut conversation, &ctx).await
                    }
                }
            }
            delta = next_delta(&mut answer) => {
                on_delta(delta, &mut sink, &mut answer, &mut conversation, ctx.history_turns).await
            }
            Ok(()) = ctx.shutdown.changed() => {
                let _ = sink.send(close(CLOSE_GOING_AWAY, "server restarting")).await;
                Step::Close
            }
            _ = ping.tick() => {
                if last_seen.elapsed() >= ctx.idle_timeout {
                    tracing::info!("closing: no frame or pong within the idle timeout");
                    let _ = sink.send(close(CLOSE_GOING_AWAY, "idle timeout")).await;
                    Step::Close
                } else if sink.send(Message::Ping(Default::default())).await.is_err() {
                    Step::Close
                } else {
                    Step::Continue
                }
            }
        };
        if let Step::Close = step {
            break;
        }
    }
    if let Some(running) = answer {
        tracing::info!(message_id = %running.message_id, "client left mid-answer; upstream request dropped");
    }
    tracing::debug!("disconnected");
}

/// Waits for the running answer's next piece; never resolves when there is none.
async fn next_delta(
    answer: &mut Option<RunningAnswer>,
) -> Result<Option<String>, crate::upstream::UpstreamError> {
    match answer {
        Some(running) => running.stream.next_delta().await,
        None => std::future::pending().await,
    }
}

async fn on_message<S>(
    message: Message,
    sink: &mut S,
    answer: &mut Option<RunningAnswer>,
    conversation: &mut Conversation,
    ctx: &ConnContext,
) -> Step
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    let reply = match message {
        Message::Text(text) => match parse_client_frame(text.as_str(), ctx.limits) {
            Ok(frame) => return on_frame(frame, sink, answer, conversation, ctx).await,
            Err(error) => ServerFrame::error(error.code(), error.to_string()),
        },
        Message::Binary(_) => ServerFrame::error(
            ErrorCode::BadRequest,
            "binary frames are not supported; send JSON text frames",
        ),
        // The WebSocket library answers pings itself; a pong only proves the peer is alive.
        Message::Ping(_) | Message::Pong(_) => return Step::Continue,
        Message::Close(_) => return Step::Close,
    };
    step_after(send(sink, &reply).await)
}

async fn on_frame<S>(
    frame: ClientFrame,
    sink: &mut S,
    answer: &mut Option<RunningAnswer>,
    conversation: &mut Conversation,
    ctx: &ConnContext,
) -> Step
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    match frame {
        ClientFrame::Ping { t } => step_after(send(sink, &ServerFrame::Pong { t }).await),
        ClientFrame::Stop => {
            let Some(running) = answer.take() else {
                return Step::Continue; // nothing to stop: stopping twice is harmless
            };
            let end = ServerFrame::End {
                message_id: running.message_id.clone(),
                seq: running.seq,
                reason: EndReason::Stopped,
                usage: None,
            };
            remember(conversation, running, ctx.history_turns);
            step_after(send(sink, &end).await)
        }
        ClientFrame::Ask {
            question,
            conversation_id,
        } => {
            if answer.is_some() {
                let busy = ServerFrame::error(
                    ErrorCode::Busy,
                    "an answer is still streaming on this connection; wait for `end` or send `stop`",
                );
                return step_after(send(sink, &busy).await);
            }
            // Until history is stored, a conversation lives as long as its connection:
            // an id this connection does not know starts a new conversation.
            if conversation_id.as_deref() != Some(conversation.id.as_str()) && !conversation.turns.is_empty() {
                *conversation = Conversation {
                    id: new_id(),
                    turns: Vec::new(),
                };
            }
            let mut messages = Vec::with_capacity(conversation.turns.len() + 2);
            messages.push(ChatMessage::system(ctx.upstream.settings().system_prompt.clone()));
            messages.extend(conversation.turns.iter().cloned());
            messages.push(ChatMessage::user(question.clone()));
            let message_id = new_id();
            let stream = match ctx.upstream.stream_chat(&messages) {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::error!(%error, "cannot start upstream request");
                    let frame = ServerFrame::Error {
                        code: error.code(),
                        message: error.client_message(),
                        message_id: Some(message_id),
                        retry_after: error.retry_after(),
                    };
                    return step_after(send(sink, &frame).await);
                }
            };
            let start = ServerFrame::Start {
                conversation_id: conversation.id.clone(),
                message_id: message_id.clone(),
            };
            *answer = Some(RunningAnswer {
                stream,
                message_id,
                question,
                text: String::new(),
                seq: 0,
            });
            step_after(send(sink, &start).await)
        }
    }
}

async fn on_delta<S>(
    delta: Result<Option<String>, crate::upstream::UpstreamError>,
    sink: &mut S,
    answer: &mut Option<RunningAnswer>,
    conversation: &mut Conversation,
    history_turns: usize,
) -> Step
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    let Some(running) = answer.as_mut() else {
        return Step::Continue;
    };
    let frame = match delta {
        Ok(Some(content)) => {
            running.seq += 1;
            running.text.push_str(&content);
            ServerFrame::Chunk {
                content,
                seq: running.seq,
                message_id: running.message_id.clone(),
            }
        }
        Ok(None) => {
            let running = answer.take().expect("checked above");
            let end = ServerFrame::End {
                message_id: running.message_id.clone(),
                seq: running.seq,
                reason: running.stream.end_reason(),
                usage: running.stream.usage(),
            };
            remember(conversation, running, history_turns);
            end
        }
        Err(error) => {
            let running = answer.take().expect("checked above");
            tracing::warn!(%error, message_id = %running.message_id, "upstream failed");
            ServerFrame::Error {
                code: error.code(),
                message: error.client_message(),
                message_id: Some(running.message_id),
                retry_after: error.retry_after(),
            }
        }
    };
    step_after(send(sink, &frame).await)
}

/// Keeps the finished turn for the next question's context, within the turn budget.
fn remember(conversation: &mut Conversation, running: RunningAnswer, history_turns: usize) {
    conversation.turns.push(ChatMessage::user(running.question));
    conversation.turns.push(ChatMessage::assistant(running.text));
    let keep = history_turns * 2;
    if conversation.turns.len() > keep {
        let excess = conversation.turns.len() - keep;
        conversation.turns.drain(..excess);
    }
}

fn step_after(sent: Result<(), ()>) -> Step {
    match sent {
        Ok(()) => Step::Continue,
        Err(()) => Step::Close,
    }
}

async fn send<S>(sink: &mut S, frame: &ServerFrame) -> Result<(), ()>
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    sink.send(Message::Text(frame.to_json().into()))
        .await
        .map_err(|e| tracing::debug!(error = %e, "send failed; peer gone"))
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// True when the read failed because a message exceeded the hard size limit.
fn is_too_big(error: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let inner = error.into_inner();
    match inner.downcast_ref::<WsError>() {
        Some(WsError::Capacity(_)) => true,
        Some(_) => false,
        None => inner.to_string().contains("Space limit exceeded"),
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use futures::channel::mpsc;

    fn ctx(ping: Duration, idle: Duration) -> ConnContext {
        let settings = Settings::default();
        ConnContext {
            upstream: UpstreamClient::new("http://127.0.0.1:9".into(), settings.upstream.clone())
                .unwrap(),
            limits: FrameLimits {
                max_frame_bytes: 1024,
                max_question_chars: 50,
            },
            ping_interval: ping,
            idle_timeout: idle,
            history_turns: 2,
            session: GuestSession("0".repeat(64)),
            shutdown: tokio::sync::watch::channel(false).1,
        }
    }

    type Harness = (
        mpsc::UnboundedSender<Result<Message, axum::Error>>,
        mpsc::UnboundedReceiver<Message>,
        tokio::task::JoinHandle<()>,
    );

    fn start(ctx: ConnContext) -> Harness {
        let (client_tx, server_rx) = mpsc::unbounded::<Result<Message, axum::Error>>();
        let (server_tx, client_rx) = mpsc::unbounded::<Message>();
        let task = tokio::spawn(handle_socket(server_tx, server_rx, ctx));
        (client_tx, client_rx, task)
    }

    async fn next_frame(rx: &mut mpsc::UnboundedReceiver<Message>) -> ServerFrame {
        loop {
            match rx.next().await.expect("socket closed") {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Ping(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn text(s: &str) -> Result<Message, axum::Error> {
        Ok(Message::Text(s.into()))
    }

    #[tokio::test]
    async fn bad_frames_get_errors_and_the_connection_stays_usable() {
        let (tx, mut rx, _task) = start(ctx(Duration::from_secs(20), Duration::from_secs(60)));
        assert!(matches!(next_frame(&mut rx).await, ServerFrame::Hello { max_question_chars: 50, .. }));
        let cases = [
            (text("{oops"), ErrorCode::BadRequest),
            (text(r#"{"type":"sing"}"#), ErrorCode::BadRequest),
            (Ok(Message::Binary(vec![1, 2, 3].into())), ErrorCode::BadRequest),
            (text(&format!(r#"{{"question":"{}"}}"#, "x".repeat(51))), ErrorCode::TooLarge),
            (text(&format!(r#"{{"question":"{}"}}"#, "x".repeat(2000))), ErrorCode::TooLarge),
        ];
        for (frame, code) in cases {
            tx.unbounded_send(frame).unwrap();
            match next_frame(&mut rx).await {
                ServerFrame::Error { code: got, message_id: None, .. } => assert_eq!(got, code),
                other => panic!("expected error, got {other:?}"),
            }
        }
        tx.unbounded_send(text(r#"{"type":"ping","t":5}"#)).unwrap();
        assert_eq!(next_frame(&mut rx).await, ServerFrame::Pong { t: 5.0 });
    }

    #[tokio::test]
    async fn silent_peer_is_closed_but_a_ponging_peer_is_not() {
        let ping = Duration::from_millis(40);
        let idle = Duration::from_millis(200);

        // A peer that answers every ping with a pong stays connected well past the idle timeout.
        let (tx, mut rx, task) = start(ctx(ping, idle));
        let deadline = Instant::now() + idle * 4;
        let mut pings = 0;
        while Instant::now() < deadline {
            match tokio::time::timeout(idle, rx.next()).await {
                Ok(Some(Message::Ping(p))) => {
                    pings += 1;
                    tx.unbounded_send(Ok(Message::Pong(p))).unwrap();
                }
                Ok(Some(Message::Text(_))) => {}
                Ok(other) => panic!("live peer got {other:?}"),
                Err(_) => panic!("server stopped pinging"),
            }
        }
        assert!(pings >= 4, "only {pings} pings");
        assert!(!task.is_finished());

        // A peer that never answers gets a close frame (1001) and the task ends.
        let (_tx2, mut rx2, task2) = start(ctx(ping, idle));
        let closed = tokio::time::timeout(idle * 10, async {
            loop {
                match rx2.next().await {
                    Some(Message::Close(Some(frame))) => return frame.code,
                    Some(_) => continue,
                    None => panic!("closed without a close frame"),
                }
            }
        })
        .await
        .expect("dead peer was never closed");
        assert_eq!(closed, CLOSE_GOING_AWAY);
        tokio::time::timeout(Duration::from_secs(1), task2).await.unwrap().unwrap();
    }

    #[test]
    fn origin_rules() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:3000".parse().unwrap());
        assert!(origin_allowed(&h, &[]), "no Origin: not a browser");
        h.insert(header::ORIGIN, "http://127.0.0.1:3000".parse().unwrap());
        assert!(origin_allowed(&h, &[]));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!origin_allowed(&h, &[]));
        assert!(origin_allowed(&h, &["http://evil.example".to_string()]));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!origin_allowed(&h, &[]));
        h.insert(header::ORIGIN, "http://127.0.0.1:3000.evil.example".parse().unwrap());
        assert!(!origin_allowed(&h, &[]));
    }
}
