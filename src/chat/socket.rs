//! The `/ws/chat` route: `ws_handler` checks the upgrade, `handle_socket` runs one
//! connection. The loop is generic over `Sink`/`Stream`, so unit tests drive it
//! with channels instead of a network.
//!
//! One task per connection reads client frames, sends the frames of the answer it
//! follows, pings, and watches for a dead peer. The answer itself runs in a task of
//! its own (`live`), so it goes on when the connection drops.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::Instant;

use crate::auth::{origin_allowed, session_from_headers, GuestSession};
use crate::protocol::{
    parse_client_frame, ClientFrame, ErrorCode, FrameLimits, ServerFrame,
    PROTOCOL_VERSION,
};
use crate::history::store::{BeginError, Db, NewAnswer, StoreError};
use crate::history::{MessageRole, MessageStatus};
use super::live::{self, Follower, LiveAnswer, LiveAnswers, Published};
use tokio::sync::{broadcast, watch};
use crate::server::AppState;
use crate::lessons::excerpts;
use crate::lessons::index::{Hit, LessonIndex};
use crate::upstream::{AnswerStream, ChatMessage, UpstreamClient};
use std::sync::Arc;
use tracing::Instrument;

/// Close codes (RFC 6455).
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_TOO_BIG: u16 = 1009;
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// What one connection needs to know.
#[derive(Clone)]
pub struct ConnContext {
    pub upstream: UpstreamClient,
    pub limits: FrameLimits,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub context_budget_chars: usize,
    pub session: GuestSession,
    pub db: Arc<Db>,
    pub live: Arc<LiveAnswers>,
    pub instance_id: String,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub lessons: Arc<LessonIndex>,
    /// No model connected: answers are lesson excerpts.
    pub lesson_mode: bool,
    pub retrieval_top_k: usize,
    pub questions_per_minute: u32,
    pub max_conversations: u32,
    pub answer_slots: Arc<tokio::sync::Semaphore>,
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
        context_budget_chars: settings.context_token_budget.saturating_mul(4),
        session,
        db: state.db.clone(),
        live: state.live.clone(),
        instance_id: state.instance_id.clone(),
        shutdown: state.shutdown.subscribe(),
        lessons: state.lessons.clone(),
        lesson_mode: state.lesson_mode,
        retrieval_top_k: settings.retrieval_top_k,
        questions_per_minute: settings.questions_per_minute,
        max_conversations: settings.max_conversations_per_user,
        answer_slots: state.answer_slots.clone(),
    };
    // A place among this user's open sockets, held until the socket ends.
    let Some(place) = state
        .connections
        .try_open(&ctx.session.0, settings.max_connections_per_user)
    else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many chat tabs are open for this browser; close one and reload.",
        )
            .into_response();
    };
    // Chat frames are small; the 128 KiB default read buffer per socket would be most
    // of a connection's memory (measured in docs/BENCHMARKS.md), and tungstenite zeroes
    // the free part of it before every read. Longer frames just take more reads.
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(settings.hard_frame_bytes)
        .max_frame_size(settings.hard_frame_bytes)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            handle_socket(sink, stream, ctx).await;
            drop(place);
        })
}

enum Step {
    Continue,
    Close,
}

pub async fn handle_socket<S, R>(sink: S, stream: R, ctx: ConnContext)
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let span = tracing::info_span!("ws", session = ctx.session.log_label());
    run_socket(sink, stream, ctx).instrument(span).await
}

async fn run_socket<S, R>(mut sink: S, mut stream: R, ctx: ConnContext)
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    tracing::debug!("connected");
    let hello = ServerFrame::Hello {
        protocol: PROTOCOL_VERSION,
        max_question_chars: u32::try_from(ctx.limits.max_question_chars).unwrap_or(u32::MAX),
    };
    if send(&mut sink, &hello).await.is_err() {
        return;
    }
    let mut answer: Option<Follower> = None;
    let mut user_id: Option<String> = None;
    let mut last_seen = Instant::now();
    let mut ping = tokio::time::interval_at(Instant::now() + ctx.ping_interval, ctx.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One future for the socket's life: a frame sent does not cost a waiter
    // registration on the shutdown signal.
    let shutdown_begun = shutdown_begun(ctx.shutdown.clone());
    tokio::pin!(shutdown_begun);
    let mut shutting_down = false;

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
                        on_message(message, &mut sink, &mut answer, &mut user_id, &ctx).await
                    }
                }
            }
            followed = next_followed(&mut answer) => {
                on_followed(followed, &mut sink, &mut answer).await
            }
            _ = &mut shutdown_begun, if !shutting_down => {
                shutting_down = true;
                // An answer being followed is finished first (within the grace period).
                if answer.is_none() {
                    let _ = sink.send(close(CLOSE_GOING_AWAY, "server restarting")).await;
                    Step::Close
                } else {
                    Step::Continue
                }
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
        if answer.is_none() && *ctx.shutdown.borrow() {
            let _ = sink.send(close(CLOSE_GOING_AWAY, "server restarting")).await;
            break;
        }
    }
    if let Some(following) = answer {
        // The answer goes on being written and stored; a reconnect can follow it again.
        tracing::debug!(message_id = %following.answer.message_id, "left mid-answer");
    }
    tracing::debug!("disconnected");
}

/// Resolves once the server begins to shut down.
async fn shutdown_begun(mut shutdown: watch::Receiver<bool>) {
    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
        // The server state is gone without a shutdown: nothing to wait for.
        std::future::pending::<()>().await;
    }
}

/// The next frame of the answer this socket follows; never resolves without one.
async fn next_followed(
    answer: &mut Option<Follower>,
) -> Result<Published, broadcast::error::RecvError> {
    match answer {
        Some(following) => following.frames.recv().await,
        None => std::future::pending().await,
    }
}

async fn on_followed<S>(
    followed: Result<Published, broadcast::error::RecvError>,
    sink: &mut S,
    answer: &mut Option<Follower>,
) -> Step
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    match followed {
        Ok(published) => {
            if published.terminal {
                *answer = None;
            }
            match sink.send(Message::Text(published.json)).await {
                Ok(()) => Step::Continue,
                Err(_) => Step::Close,
            }
        }
        Err(broadcast::error::RecvError::Lagged(missed)) => {
            // This socket fell behind: re-sync from a snapshot rather than drop tokens.
            let Some(following) = answer.take() else {
                return Step::Continue;
            };
            tracing::debug!(missed, "follower lagged; sending a snapshot");
            resync(&following.answer, sink, answer).await
        }
        Err(broadcast::error::RecvError::Closed) => {
            *answer = None;
            Step::Continue
        }
    }
}

/// Sends an answer's snapshot (and its last frame, if it is over) and follows it.
async fn resync<S>(live: &Arc<LiveAnswer>, sink: &mut S, answer: &mut Option<Follower>) -> Step
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    let (snapshot, last, follower) = live.follow();
    if send(sink, &snapshot).await.is_err() {
        return Step::Close;
    }
    match last {
        Some(last) => step_after(send(sink, &last).await),
        None => {
            *answer = Some(follower);
            Step::Continue
        }
    }
}

async fn on_message<S>(
    message: Message,
    sink: &mut S,
    answer: &mut Option<Follower>,
    user_id: &mut Option<String>,
    ctx: &ConnContext,
) -> Step
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    let reply = match message {
        Message::Text(text) => match parse_client_frame(text.as_str(), ctx.limits) {
            Ok(frame) => return on_frame(frame, sink, answer, user_id, ctx).await,
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

fn lookup_error(error: StoreError) -> ServerFrame {
    tracing::error!(%error, "cannot look up an answer to resume");
    ServerFrame::error(ErrorCode::Internal, "That answer cannot be looked up right now.")
}

fn internal_error(error: StoreError) -> ServerFrame {
    tracing::error!(%error, "history store failed");
    ServerFrame::error(
        ErrorCode::Internal,
        "Your question could not be saved, so it was not sent. Please try again.",
    )
}

async fn on_frame<S>(
    frame: ClientFrame,
    sink: &mut S,
    answer: &mut Option<Follower>,
    user_id: &mut Option<String>,
    ctx: &ConnContext,
) -> Step
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    match frame {
        ClientFrame::Ping { t } => step_after(send(sink, &ServerFrame::Pong { t }).await),
        ClientFrame::Stop => {
            // The `end` (reason `stopped`) comes through the answer's own feed.
            if let Some(following) = answer.as_ref() {
                following.answer.stop();
            }
            Step::Continue
        }
        ClientFrame::Resume { message_id } => {
            if let Some(following) = answer.take_if(|f| f.answer.message_id == message_id) {
                // Asked again for the answer it follows: a fresh snapshot is harmless.
                return resync(&following.answer, sink, answer).await;
            }
            if answer.is_some() {
                let busy = ServerFrame::error(
                    ErrorCode::Busy,
                    "this connection is following another answer",
                );
                return step_after(send(sink, &busy).await);
            }
            resume(message_id, sink, answer, user_id, ctx).await
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
            if *ctx.shutdown.borrow() {
                let busy = ServerFrame::Error {
                    code: ErrorCode::Busy,
                    message: "The server is restarting; ask again in a moment.".into(),
                    message_id: None,
                    retry_after: Some(2),
                };
                return step_after(send(sink, &busy).await);
            }
            let reply = match start_answer(question, conversation_id, user_id, ctx).await {
                Ok((follower, start)) => {
                    *answer = Some(follower);
                    start
                }
                Err(frame) => frame,
            };
            step_after(send(sink, &reply).await)
        }
    }
}

/// Stores the question, opens the upstream stream and the answer's row. The question
/// is saved before the model is called; when saving fails, the model is not called.
async fn start_answer(
    question: String,
    conversation_id: Option<String>,
    user_id: &mut Option<String>,
    ctx: &ConnContext,
) -> Result<(Follower, ServerFrame), ServerFrame> {
    let db = &ctx.db;
    let user = match user_id {
        Some(user) => user.clone(),
        None => {
            let user = db.ensure_user(&ctx.session.0).await.map_err(internal_error)?;
            *user_id = Some(user.clone());
            user
        }
    };
    // A place among the answers this instance streams at once, held by the answer's
    // task; without one the question is refused before anything is stored.
    let Ok(slot) = ctx.answer_slots.clone().try_acquire_owned() else {
        return Err(ServerFrame::Error {
            code: ErrorCode::Busy,
            message: "The tutor is answering many students right now; ask again in a few seconds.".into(),
            message_id: None,
            retry_after: Some(5),
        });
    };
    let hits = retrieve(&question, conversation_id.as_deref(), &user, ctx).await;
    let sources = excerpts::sources_from(&hits);
    let sources_json = (!sources.is_empty())
        .then(|| serde_json::to_string(&sources).ok())
        .flatten();
    let begun = match db
        .begin_answer(&NewAnswer {
            user_id: &user,
            conversation_id: conversation_id.as_deref(),
            question: &question,
            budget_chars: ctx.context_budget_chars,
            owner_instance: &ctx.instance_id,
            sources_json: sources_json.as_deref(),
            questions_per_minute: ctx.questions_per_minute,
            max_conversations: ctx.max_conversations,
        })
        .await
    {
        Ok(begun) => begun,
        Err(BeginError::NotFound) => {
            return Err(ServerFrame::error(ErrorCode::NotFound, "no such conversation"))
        }
        Err(BeginError::TooManyConversations { limit }) => {
            return Err(ServerFrame::error(
                ErrorCode::LimitReached,
                format!("You keep {limit} conversations, the most allowed; delete some to start a new one."),
            ))
        }
        Err(BeginError::RateLimited { retry_after }) => {
            return Err(ServerFrame::Error {
                code: ErrorCode::RateLimited,
                message: format!(
                    "You asked {} questions in the last minute; you can ask again in {retry_after} s.",
                    ctx.questions_per_minute
                ),
                message_id: None,
                retry_after: Some(retry_after),
            })
        }
        Err(BeginError::Store(error)) => return Err(internal_error(error)),
    };

    let answer_id = begun.answer_id;
    let opened = if ctx.lesson_mode {
        let answer = excerpts::excerpt_answer(&question, &hits);
        Ok(AnswerStream::local(excerpts::words(&answer), LESSON_MODE_WORD_GAP))
    } else {
        let mut messages = Vec::with_capacity(begun.turns.len() + 3);
        messages.push(ChatMessage::system(ctx.upstream.settings().system_prompt.clone()));
        messages.extend(begun.turns.into_iter().map(|(role, content)| match role {
            MessageRole::User => ChatMessage::user(content),
            MessageRole::Assistant => ChatMessage::assistant(content),
        }));
        // Right before the question, where the model weighs it most.
        if let Some(prompt) = excerpts::prompt_with_sources(&hits) {
            messages.push(ChatMessage::system(prompt));
        }
        messages.push(ChatMessage::user(question));
        ctx.upstream.stream_chat(&messages)
    };
    let stream = match opened {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "cannot start upstream request");
            let _ = db
                .finish_message(&answer_id, "", 0, MessageStatus::Error, Some(error.code()), None)
                .await;
            return Err(ServerFrame::Error {
                code: error.code(),
                message: error.client_message(),
                message_id: Some(answer_id),
                retry_after: error.retry_after(),
            });
        }
    };
    let start = ServerFrame::Start {
        conversation_id: begun.conversation_id,
        message_id: answer_id.clone(),
        context_truncated: begun.context_truncated,
        sources,
    };
    let follower = ctx.live.start(answer_id, user, stream, slot);
    Ok((follower, start))
}

/// Lesson mode's pace: quick enough to read as it comes, slow enough to see it stream.
const LESSON_MODE_WORD_GAP: Duration = Duration::from_millis(12);
/// Up to this many indexed sections, retrieval runs on the socket's task.
const INLINE_SEARCH_MAX_SECTIONS: u64 = 2_000;
/// Earlier questions of the conversation that retrieval reads with the new one.
const RETRIEVAL_EARLIER_TURNS: u32 = 2;

/// The lesson sections for a question and the student's recent questions. A failure
/// means an answer without sources, never no answer.
async fn retrieve(
    question: &str,
    conversation_id: Option<&str>,
    user: &str,
    ctx: &ConnContext,
) -> Vec<Hit> {
    let earlier = match conversation_id {
        Some(id) => ctx
            .db
            .recent_questions(user, id, RETRIEVAL_EARLIER_TURNS)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot read earlier questions for retrieval");
                Vec::new()
            }),
        None => Vec::new(),
    };
    let k = ctx.retrieval_top_k;
    // A search of a course-sized index takes about 0.1 ms (p99 0.4 ms): less than
    // handing it to the blocking pool, which at N = 1,000 arrivals tripled the time to
    // first token. Large indexes go to the pool.
    let searched = if ctx.lessons.sections() <= INLINE_SEARCH_MAX_SECTIONS {
        ctx.lessons.search(question, &earlier, k)
    } else {
        let (lessons, question) = (ctx.lessons.clone(), question.to_string());
        match tokio::task::spawn_blocking(move || lessons.search(&question, &earlier, k)).await {
            Ok(result) => result,
            Err(error) => {
                tracing::warn!(%error, "lesson search stopped; answering without sources");
                return Vec::new();
            }
        }
    };
    searched.unwrap_or_else(|error| {
        tracing::warn!(%error, "lesson search failed; answering without sources");
        Vec::new()
    })
}

/// Follows an answer again: live from this instance's feed, else as stored.
async fn resume<S>(
    message_id: String,
    sink: &mut S,
    answer: &mut Option<Follower>,
    user_id: &mut Option<String>,
    ctx: &ConnContext,
) -> Step
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    let user = match user_id {
        Some(user) => Some(user.clone()),
        None => match ctx.db.find_user(&ctx.session.0).await {
            Ok(found) => {
                user_id.clone_from(&found);
                found
            }
            Err(error) => return step_after(send(sink, &lookup_error(error)).await),
        },
    };
    let Some(user) = user else {
        return step_after(send(sink, &live::not_found(&message_id)).await);
    };
    if let Some(live) = ctx.live.get(&message_id) {
        if live.user_id == user {
            return resync(&live, sink, answer).await;
        }
        return step_after(send(sink, &live::not_found(&message_id)).await);
    }
    let reply = match ctx.db.message_for_user(&user, &message_id).await {
        Ok(Some((status, content, seq))) => ServerFrame::Snapshot {
            message_id,
            content,
            seq,
            status,
            live: false,
        },
        Ok(None) => live::not_found(&message_id),
        Err(error) => lookup_error(error),
    };
    step_after(send(sink, &reply).await)
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


#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use futures::channel::mpsc;

    async fn ctx(ping: Duration, idle: Duration) -> ConnContext {
        let settings = Settings::default();
        // One connection: every connection to `:memory:` would be its own database.
        let db = Arc::new(Db::connect("sqlite::memory:", 1).await.unwrap());
        ConnContext {
            upstream: UpstreamClient::new("http://127.0.0.1:9".into(), settings.upstream.clone())
                .unwrap(),
            limits: FrameLimits {
                max_frame_bytes: 1024,
                max_question_chars: 50,
            },
            ping_interval: ping,
            idle_timeout: idle,
            context_budget_chars: 4000,
            session: GuestSession("0".repeat(64)),
            shutdown: tokio::sync::watch::channel(false).1,
            live: LiveAnswers::new(db.clone()),
            db,
            instance_id: "test".into(),
            lessons: Arc::new(
                LessonIndex::open(&std::env::temp_dir().join(format!("tutor-socket-{}", uuid::Uuid::new_v4())))
                    .unwrap(),
            ),
            lesson_mode: false,
            retrieval_top_k: 3,
            questions_per_minute: 0,
            max_conversations: 1000,
            answer_slots: Arc::new(tokio::sync::Semaphore::new(8)),
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
        let (tx, mut rx, _task) = start(ctx(Duration::from_secs(20), Duration::from_secs(60)).await);
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
        let (tx, mut rx, task) = start(ctx(ping, idle).await);
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
        let (_tx2, mut rx2, task2) = start(ctx(ping, idle).await);
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
}
