//! The `/ws/chat` route: `ws_handler` checks the upgrade, a [`Connection`] runs it.
//! The loop is generic over `Sink`/`Stream`, so unit tests drive it with channels
//! instead of a network.
//!
//! One task per connection reads client frames, sends the frames of the answer it
//! follows, pings, and watches for a dead peer. The answer itself runs in a task of
//! its own (`live`), so it goes on when the connection drops; starting one is
//! `ask`'s job.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::Extension;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::ask::{start_answer, AskError, Asker};
use super::bus::{Feed, FeedEvent};
use super::limits::SessionEnd;
use super::presence::SocketPlace;
use super::live::{self, Follower, LiveAnswer, Published};
use super::notices::{session_key, Notice, Subscription};
use crate::account::store::hash_token;
use crate::auth::{origin_allowed, GuestSession};
use crate::db::StoreError;
use crate::net::client_key;
use crate::history::versions::{ForkRefusal, VersionOf, VersionTarget};
use crate::history::{MessageRole, MessageStatus};
use crate::protocol::{
    parse_client_frame, ClientFrame, ConversationChange, ErrorCode, ServerFrame, PROTOCOL_VERSION,
};
use crate::state::AppState;
use crate::throttle::Bucket;

/// A new version the client asked for, before its target is looked up.
enum VersionRequest {
    Regenerate(String),
    Edit { message_id: String, question: String },
}

/// Close codes (RFC 6455).
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
/// "Reconnect": the socket's session was replaced (a sign-in), the cookie names the new.
const CLOSE_SERVICE_RESTART: u16 = 1012;
/// What a socket reads at a time: a student sends a few small frames a minute (a
/// question is the longest), so 1 KiB is plenty, and it is held by every open socket.
const READ_BUFFER_BYTES: usize = 1024;
/// A follower of an answer on another instance that heard nothing for this long
/// checks the stored answer (it may have ended, or changed hands unheard).
const REMOTE_QUIET: std::time::Duration = std::time::Duration::from_secs(2);

/// The upgrade to `/ws/chat` (and `/ws/chat/{anything}`: the path segment is ignored,
/// identity is the session). Its session is the one the session layer verified, or a
/// fresh guest session whose cookie the upgrade response sets — so a client written as
/// in the course lesson, with no cookie, works.
pub async fn ws_handler(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    session: Option<Extension<GuestSession>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    if !origin_allowed(&headers, &state.settings.allowed_origins, state.settings.secure_cookies) {
        tracing::warn!(origin = ?headers.get(header::ORIGIN), "websocket refused: foreign origin");
        return (StatusCode::FORBIDDEN, "This origin may not open the chat socket.").into_response();
    }
    let Some(Extension(session)) = session else {
        // Only when no token could be minted (no randomness): nothing to be done.
        return (StatusCode::SERVICE_UNAVAILABLE, "No session could be made; try again.").into_response();
    };
    let settings = state.settings.clone();
    let address = match peer {
        Some(Extension(ConnectInfo(peer))) => client_key(peer.ip(), &headers, &settings.trusted_proxies),
        None => "unknown".to_string(),
    };
    // A place among the address's open sockets, held until the socket ends.
    let address_place = match settings.connections_per_address {
        0 => None,
        cap => match state.sockets_per_address.try_open(&address, cap) {
            Some(place) => Some(place),
            None => return refuse_after_upgrade(ws, "Too many chat sockets are open from your network; try again later."),
        },
    };
    // A place among this user's open sockets, held until the socket ends.
    let Some(place) = state
        .connections
        .try_open(&hash_token(&session.0), settings.max_connections_per_user)
    else {
        return refuse_after_upgrade(ws, TOO_MANY_TABS);
    };
    // And among the session's sockets on every instance (docs/deploy.md).
    let counted = match state.db.try_open_socket(&session.0, &state.instance_id, settings.max_connections_per_user).await {
        Ok(Some(place)) => Some(CountedSocket { db: state.db.clone(), place }),
        Ok(None) => return refuse_after_upgrade(ws, TOO_MANY_TABS),
        Err(error) => {
            // Not counted rather than no chat: this instance's own cap still holds.
            tracing::warn!(%error, "cannot count the session's sockets across instances");
            None
        }
    };
    // Chat frames are small; the 128 KiB default read buffer per socket would be most
    // of a connection's memory (measured in docs/BENCHMARKS.md), and tungstenite zeroes
    // the free part of it before every read. Longer frames just take more reads.
    //
    // What the socket needs goes in one box: the upgrade's task keeps its callback for
    // the socket's whole life (an async block's captures are never reused), so a
    // callback holding the state by value would double it in every open socket.
    let accepted = Box::new(Accepted {
        state,
        session,
        address,
        places: Places { user: Some(place), _address: address_place, _counted: counted },
    });
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(settings.hard_frame_bytes)
        .max_frame_size(settings.hard_frame_bytes)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| {
            let (sink, stream) = socket.split();
            let Accepted { state, session, address, places } = *accepted;
            handle_socket(sink, stream, state, session, address, places)
        })
}

const TOO_MANY_TABS: &str = "Too many chat tabs are open for this browser; close one and this one reconnects.";
/// Seconds a refused socket's page waits before it tries again.
const REFUSED_RETRY_AFTER_S: u64 = 10;

/// Refuses a socket once it is open: an `error` frame (`too_many_connections`), then a
/// close (1013, try again later). A browser cannot read the HTTP status of a refused
/// upgrade; it sees a failed connection only, so the page would say "reconnecting…"
/// and try again at once, for ever. The refused socket holds no place and is gone once
/// the client closes too (a second at most after the two frames are written).
fn refuse_after_upgrade(ws: WebSocketUpgrade, why: &'static str) -> Response {
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(READ_BUFFER_BYTES)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |mut socket| async move {
            let refusal = ServerFrame::Error {
                code: ErrorCode::TooManyConnections,
                message: why.into(),
                message_id: None,
                retry_after: Some(REFUSED_RETRY_AFTER_S),
            };
            let close = CloseFrame { code: 1013, reason: "too many connections".into() };
            let written = tokio::time::timeout(Duration::from_secs(5), async {
                socket.send(Message::Text(refusal.to_json().into())).await?;
                socket.send(Message::Close(Some(close))).await
            });
            if !matches!(written.await, Ok(Ok(()))) {
                return;
            }
            // A moment for the client's own close: a socket dropped with the client's
            // frames unread is reset, and the refusal could be lost with it.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Some(Ok(message)) = socket.recv().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        })
}

/// What an accepted upgrade hands to its socket.
struct Accepted {
    state: AppState,
    session: GuestSession,
    address: String,
    places: Places,
}

/// The places a socket holds among the open sockets (its user's, its address's, its
/// session's on all instances); given back when the socket ends.
#[derive(Default)]
pub struct Places {
    user: Option<crate::chat::limits::ConnectionGuard>,
    _address: Option<crate::chat::limits::ConnectionGuard>,
    _counted: Option<CountedSocket>,
}

impl Places {
    /// Says why once the socket's session is signed out or in; never without a
    /// place (tests).
    fn revocation(&self) -> watch::Receiver<Option<SessionEnd>> {
        match &self.user {
            Some(place) => place.revocation(),
            None => watch::channel(None).1,
        }
    }
}

/// A socket's place among its session's open sockets on all instances; given back
/// when the socket ends (or its upgrade failed).
struct CountedSocket {
    db: Arc<crate::db::Db>,
    place: SocketPlace,
}

impl Drop for CountedSocket {
    fn drop(&mut self) {
        // An in-process place frees itself as it drops; a row is deleted.
        let SocketPlace::Row(id) = &mut self.place else { return };
        let (db, id) = (self.db.clone(), std::mem::take(id));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = db.close_socket(&id).await {
                    tracing::warn!(%error, "cannot uncount a closed socket; it stops counting when this instance restarts");
                }
            });
        }
    }
}

/// Runs one connection until the peer leaves, goes silent, or the server stops.
/// `address` is the client address it is counted under (`net::client_key`).
///
/// Not an `async fn`: one would keep its arguments beside the `Connection` they are
/// moved into, twice the state in every open socket's future.
pub fn handle_socket<S, R>(
    sink: S,
    stream: R,
    state: AppState,
    session: GuestSession,
    address: String,
    places: Places,
) -> impl std::future::Future<Output = ()>
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let span = tracing::info_span!("ws", session = session.log_label());
    let shutdown = state.shutdown.subscribe();
    let revoked = places.revocation();
    // The block owns the connection and `run` borrows it: an `async fn` taking `self`
    // would keep a second copy of it for the socket's life.
    let mut connection = Connection {
        sink,
        state,
        session,
        address,
        following: None,
        remote: None,
        user_id: None,
        notices: None,
        shutdown,
        revoked,
        _places: places,
    };
    async move { connection.run(stream).await }.instrument(span)
}

/// A socket's view of an answer another instance streams: where the client is.
struct RemoteFollow {
    message_id: String,
    user: String,
    /// The owner generation whose chunks the client has.
    generation: u64,
    last_seq: u64,
    owner: Option<String>,
    feed: Feed,
    /// When to check the stored answer if nothing is heard before.
    check_at: Instant,
}

/// What a remote follow heard.
enum RemoteHeard {
    Event(Result<FeedEvent, broadcast::error::RecvError>),
    Quiet,
}

/// What happens after a frame is handled.
enum Step {
    Continue,
    Close,
}

/// One socket: where its frames go, the answer it follows and whose it is.
struct Connection<S> {
    sink: S,
    /// A handle on the server's shared state (settings, store, live answers).
    state: AppState,
    session: GuestSession,
    /// The client address its questions count against.
    address: String,
    /// The answer whose frames this socket relays, while there is one.
    following: Option<Follower>,
    /// An answer streamed by another instance that this socket follows.
    remote: Option<RemoteFollow>,
    /// The session's user, once looked up or created (the first question makes it).
    user_id: Option<String>,
    /// The user's notices (a teacher's reply), once the user is known.
    notices: Option<Subscription>,
    shutdown: watch::Receiver<bool>,
    /// Says why once this socket's session is signed out or replaced by a sign-in.
    revoked: watch::Receiver<Option<SessionEnd>>,
    /// Held for the socket's life, given back when it ends.
    _places: Places,
}

impl<S> Connection<S>
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    async fn run<R>(&mut self, mut stream: R)
    where
        R: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        tracing::debug!("connected");
        let settings = self.state.settings.clone();
        // Boxed, like answering a frame: the greeting's queries would otherwise stay in
        // the socket's future (its memory) for the socket's life.
        if let Step::Close = Box::pin(self.greet()).await {
            return;
        }
        let mut last_seen = Instant::now();
        let rate = settings.frames_per_second_per_socket;
        let mut frames = Bucket::new(rate.saturating_mul(2), rate, Instant::now());
        let mut ping = tokio::time::interval_at(Instant::now() + settings.ping_interval, settings.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One future for the socket's life: a frame sent does not cost a waiter
        // registration on the shutdown signal.
        let shutdown_begun = flag_set(self.shutdown.clone());
        tokio::pin!(shutdown_begun);
        let session_ended = session_end(self.revoked.clone());
        tokio::pin!(session_ended);
        let mut shutting_down = false;

        loop {
            let step = tokio::select! {
                incoming = stream.next() => match incoming {
                    None => Step::Close,
                    Some(Err(error)) => {
                        if is_too_big(error) {
                            let _ = self.sink.send(close(CLOSE_TOO_BIG, "message too big")).await;
                        }
                        Step::Close
                    }
                    Some(Ok(message)) => {
                        last_seen = Instant::now();
                        if matches!(message, Message::Text(_) | Message::Binary(_)) {
                            // Faster than a person: wait here, before any parsing or query.
                            let wait = frames.take(last_seen);
                            if !wait.is_zero() {
                                tokio::time::sleep(wait).await;
                            }
                        }
                        // Boxed: answering a frame (a question: retrieval, the store's
                        // transaction) is a large future, and inline it would be part of
                        // every idle socket's memory for the socket's whole life.
                        Box::pin(self.on_message(message)).await
                    }
                },
                followed = next_followed(&mut self.following) => self.on_followed(followed).await,
                heard = next_remote(&mut self.remote) => self.on_remote(heard).await,
                notice = next_notice(&mut self.notices) => match notice {
                    Ok(Notice { from_socket, .. }) if from_socket.is_some() && from_socket == self.notices.as_ref().map(|n| n.socket) => Step::Continue,
                    Ok(Notice { json, .. }) => {
                        // Before the frame goes: once the page hears it, this socket
                        // already follows the user. Boxed: an idle socket's future
                        // stays small.
                        let learned = match self.user_id {
                            None => Box::pin(self.learn_user()).await,
                            Some(_) => Step::Continue,
                        };
                        match learned {
                            Step::Close => Step::Close,
                            Step::Continue => match self.sink.send(Message::Text(json)).await {
                                Ok(()) => Step::Continue,
                                Err(_) => Step::Close,
                            },
                        }
                    }
                    // Missed notices are in history; the feed goes on.
                    Err(broadcast::error::RecvError::Lagged(_)) => Step::Continue,
                    Err(broadcast::error::RecvError::Closed) => {
                        self.notices = None;
                        Step::Continue
                    }
                },
                _ = &mut shutdown_begun, if !shutting_down => {
                    shutting_down = true;
                    // An answer being followed is finished first (within the grace period).
                    if self.following.is_none() {
                        let _ = self.sink.send(close(CLOSE_GOING_AWAY, "server restarting")).await;
                        Step::Close
                    } else {
                        Step::Continue
                    }
                }
                why = &mut session_ended => {
                    match why {
                        SessionEnd::SignedOut => {
                            tracing::info!("closing: the session was signed out");
                            let _ = self.send(&session_ended_frame()).await;
                            let _ = self.sink.send(close(CLOSE_POLICY, "session ended")).await;
                        }
                        SessionEnd::SignedIn => {
                            tracing::info!("closing: the session was replaced by a sign-in");
                            let _ = self.send(&ServerFrame::SessionChanged).await;
                            let _ = self.sink.send(close(CLOSE_SERVICE_RESTART, "signed in: reconnect")).await;
                        }
                    }
                    Step::Close
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() >= settings.idle_timeout {
                        tracing::info!("closing: no frame or pong within the idle timeout");
                        let _ = self.sink.send(close(CLOSE_GOING_AWAY, "idle timeout")).await;
                        Step::Close
                    } else if self.sink.send(Message::Ping(Default::default())).await.is_err() {
                        Step::Close
                    } else {
                        Step::Continue
                    }
                }
            };
            if let Step::Close = step {
                break;
            }
            if self.following.is_none() && *self.shutdown.borrow() {
                let _ = self.sink.send(close(CLOSE_GOING_AWAY, "server restarting")).await;
                break;
            }
        }
        if let Some(following) = self.following.take() {
            // The answer goes on being written and stored; a reconnect can follow it again.
            tracing::debug!(message_id = %following.answer.message_id, "left mid-answer");
        }
        tracing::debug!("disconnected");
    }

    /// `hello`, the user's notices (a student who asked before hears the teacher's
    /// replies here) and the question budget's meter as the server counts it.
    async fn greet(&mut self) -> Step {
        let hello = ServerFrame::Hello {
            protocol: PROTOCOL_VERSION,
            max_question_chars: u32::try_from(self.state.settings.max_question_chars).unwrap_or(u32::MAX),
        };
        if let Step::Close = self.send(&hello).await {
            return Step::Close;
        }
        match self.state.db.find_user(&self.session.0).await {
            Ok(user) => self.user_id = user,
            Err(error) => tracing::warn!(%error, "cannot look up the socket's user; notices start with a question"),
        }
        self.follow_notices();
        match super::ask::budget_frame(&self.state, self.user_id.as_deref()).await {
            Some(budget) => self.send(&budget).await,
            None => Step::Continue,
        }
    }

    async fn on_followed(&mut self, followed: Result<Published, broadcast::error::RecvError>) -> Step {
        match followed {
            Ok(published) => {
                let mut handed_over = None;
                if published.terminal {
                    handed_over = self.following.take().map(|f| f.answer.message_id.clone());
                }
                if published.json.as_str().is_empty() {
                    // Handed over. At shutdown, the page reconnects elsewhere and
                    // resumes it there; otherwise another instance took it over (this
                    // one's lease lapsed), and this socket follows it there.
                    return match handed_over {
                        Some(message_id) if !*self.shutdown.borrow() => Box::pin(self.follow_handed_over(message_id)).await,
                        _ => Step::Continue,
                    };
                }
                match self.sink.send(Message::Text(published.json)).await {
                    Ok(()) => {
                        if !published.terminal {
                            self.state.metrics.relay_latency(published.at.elapsed());
                        }
                        Step::Continue
                    }
                    Err(_) => Step::Close,
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // This socket fell behind: re-sync from a snapshot rather than drop tokens.
                let Some(following) = self.following.take() else {
                    return Step::Continue;
                };
                tracing::debug!(missed, "follower lagged; sending a snapshot");
                // Boxed: rare, and inline it would triple the size of every token's step.
                Box::pin(self.resync(&following.answer)).await
            }
            Err(broadcast::error::RecvError::Closed) => {
                self.following = None;
                Step::Continue
            }
        }
    }

    /// Sends an answer's snapshot (and its last frame, if it is over) and follows it.
    async fn resync(&mut self, live: &Arc<LiveAnswer>) -> Step {
        let Some((snapshot, last, follower)) = live.follow() else {
            // Another instance took it over since it was looked up: followed there.
            return Box::pin(self.follow_handed_over(live.message_id.clone())).await;
        };
        if let Step::Close = self.send(&snapshot).await {
            return Step::Close;
        }
        match last {
            Some(last) => self.write(&last).await,
            None => {
                self.following = Some(follower);
                Step::Continue
            }
        }
    }

    async fn on_message(&mut self, message: Message) -> Step {
        let reply = match message {
            Message::Text(text) => match parse_client_frame(text.as_str(), self.state.settings.frame_limits()) {
                Ok(frame) => return self.on_frame(frame).await,
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
        self.send(&reply).await
    }

    async fn on_frame(&mut self, frame: ClientFrame) -> Step {
        match frame {
            ClientFrame::Ping { t } => self.send(&ServerFrame::Pong { t }).await,
            ClientFrame::Stop => {
                // The `end` (reason `stopped`) comes through the answer's own feed.
                if let Some(following) = self.following.as_ref() {
                    following.answer.stop();
                }
                if let Some(RemoteFollow { owner: Some(owner), message_id, .. }) = self.remote.as_ref() {
                    self.state.bus.request_stop(owner, message_id);
                }
                Step::Continue
            }
            ClientFrame::Resume { message_id } => {
                if let Some(following) = self.following.take_if(|f| f.answer.message_id == message_id) {
                    // Asked again for the answer it follows: a fresh snapshot is harmless.
                    return self.resync(&following.answer).await;
                }
                if self.remote.as_ref().is_some_and(|r| r.message_id == message_id) {
                    return self.resync_remote().await;
                }
                if self.following.is_some() || self.remote.is_some() {
                    let busy = ServerFrame::error(ErrorCode::Busy, "this connection is following another answer");
                    return self.send(&busy).await;
                }
                self.resume(message_id).await
            }
            ClientFrame::Ask {
                question,
                conversation_id,
                ask_id,
            } => self.ask(question, conversation_id, ask_id.as_deref(), None).await,
            ClientFrame::Regenerate { message_id, ask_id } => {
                self.ask_version(VersionRequest::Regenerate(message_id), ask_id.as_deref()).await
            }
            ClientFrame::Edit { message_id, question, ask_id } => {
                self.ask_version(VersionRequest::Edit { message_id, question }, ask_id.as_deref()).await
            }
        }
    }

    /// A new version of one of the student's messages: the question it needs and its
    /// conversation are read first (retrieval runs before the answer's transaction,
    /// which checks the fork again). One sent again with its `ask_id` (its connection
    /// dropped before `start`) follows the version the first one began.
    async fn ask_version(&mut self, request: VersionRequest, ask_id: Option<&str>) -> Step {
        let message_id = match &request {
            VersionRequest::Regenerate(id) | VersionRequest::Edit { message_id: id, .. } => id.clone(),
        };
        let target = match self.user_id.as_deref() {
            Some(user) => match self.state.db.version_target(user, &message_id).await {
                Ok(target) => target,
                Err(error) => return self.send(&lookup_error(error)).await,
            },
            None => None, // a session that asked nothing owns no message
        };
        let wanted = match (&request, target) {
            (VersionRequest::Regenerate(_), Some(VersionTarget { role: MessageRole::Assistant, question: Some(question), conversation_id }))
            => Some((question, conversation_id)),
            (VersionRequest::Edit { question, .. }, Some(VersionTarget { role: MessageRole::User, conversation_id, .. })) => {
                Some((question.clone(), conversation_id))
            }
            _ => None,
        };
        let Some((question, conversation_id)) = wanted else {
            let what = match request {
                VersionRequest::Regenerate(_) => "no answer of yours has that id",
                VersionRequest::Edit { .. } => "no question of yours has that id",
            };
            return self.send(&ServerFrame::error(ErrorCode::NotFound, what)).await;
        };
        let version_of = match &request {
            VersionRequest::Regenerate(id) => VersionOf::Regenerate(id),
            VersionRequest::Edit { message_id, .. } => VersionOf::Edit(message_id),
        };
        self.ask(question, Some(conversation_id), ask_id, Some(version_of)).await
    }

    /// Starts an answer (to a new question, or a new version) and follows it. An `ask`
    /// sent again (its `ask_id` stored before) follows the answer the first one began.
    async fn ask(
        &mut self,
        question: String,
        conversation_id: Option<String>,
        ask_id: Option<&str>,
        version_of: Option<VersionOf<'_>>,
    ) -> Step {
        if self.following.is_some() || self.remote.is_some() {
            let busy = ServerFrame::error(
                ErrorCode::Busy,
                "an answer is still streaming on this connection; wait for `end` or send `stop`",
            );
            return self.send(&busy).await;
        }
        if *self.shutdown.borrow() {
            let busy = ServerFrame::Error {
                code: ErrorCode::ServerBusy,
                message: "The server is restarting; ask again in a moment.".into(),
                message_id: None,
                retry_after: Some(2),
            };
            return self.send(&busy).await;
        }
        let had_user = self.user_id.is_some();
        let asker = Asker {
            session: &self.session,
            user_id: &mut self.user_id,
            address: &self.address,
        };
        let replaces = version_of.map(|version| version.message_id().to_string());
        let started = start_answer(&self.state, asker, question, conversation_id, ask_id, version_of).await;
        self.follow_notices();
        let (reply, budget) = match started {
            Ok(started) => {
                self.following = Some(started.follower);
                // Every tab of the student shows the budget this question left.
                if let (Some(level), Some(user)) = (started.budget, self.user_id.as_deref()) {
                    self.state.bus.publish_user(user, &level.frame(), None, None);
                }
                self.tell_other_tabs_asked(&started.start, !had_user);
                (started.start, None)
            }
            Err(AskError::AskedBefore(before)) => {
                // Its `start` again, then the answer as `resume` gives it: the text so
                // far and what follows. Other tabs heard of it the first time.
                return match self.send(&before.start_frame(replaces)).await {
                    Step::Continue => self.resume(before.answer_id).await,
                    step => step,
                };
            }
            Err(AskError::RateLimited { budget }) => (ask_error_frame(AskError::RateLimited { budget }), Some(budget.frame())),
            Err(error) => (ask_error_frame(error), None),
        };
        match (self.send(&reply).await, budget) {
            (Step::Continue, Some(budget)) => self.send(&budget).await,
            (step, _) => step,
        }
    }

    /// Follows an answer again: live from this instance's feed, else as stored.
    async fn resume(&mut self, message_id: String) -> Step {
        // Looked up every time: a session signed out elsewhere resumes nothing of its
        // former account's.
        let user = match self.state.db.find_user(&self.session.0).await {
            Ok(found) => found,
            Err(error) => return self.send(&lookup_error(error)).await,
        };
        if self.user_id.is_some() && user != self.user_id {
            self.user_id = None;
            self.notices = None;
            return self.send(&session_ended_frame()).await;
        }
        self.user_id.clone_from(&user);
        self.follow_notices();
        let Some(user) = user else {
            return self.send(&live::not_found(&message_id)).await;
        };
        if let Some(live) = self.state.live.get(&message_id) {
            // The answer knows the user it began for; a sign-in since then moved the
            // guest's conversations to the account, which the database says.
            let owned = live.user_id == user
                || matches!(self.state.db.followed_answer(&user, &message_id).await, Ok(Some(_)));
            if owned {
                return self.resync(&live).await;
            }
            return self.send(&live::not_found(&message_id)).await;
        }
        self.follow_remote(message_id, user).await
    }

    /// Follows an answer this instance streamed until another took it over (its lease
    /// lapsed): as the socket's own user, with no lookup first (a lapse comes with a
    /// starved database pool, where a lookup would fail the answer on the page; the
    /// remote follow retries its reads instead).
    async fn follow_handed_over(&mut self, message_id: String) -> Step {
        match self.user_id.clone() {
            Some(user) => self.follow_remote(message_id, user).await,
            None => self.resume(message_id).await,
        }
    }

    /// Follows an answer as stored, and on the bus while another instance streams it
    /// (or will, once it takes it over).
    async fn follow_remote(&mut self, message_id: String, user: String) -> Step {
        let feed = self.state.bus.feed(&message_id);
        self.remote = Some(RemoteFollow {
            message_id,
            user,
            generation: u64::MAX,
            last_seq: 0,
            owner: None,
            feed,
            check_at: Instant::now() + REMOTE_QUIET,
        });
        self.resync_remote().await
    }

    /// Brings the client in step with an answer another instance streams: as the
    /// database has it (a snapshot when it is ahead of the client, or the owner
    /// changed), then asks the owner for every chunk after the client's last. When
    /// the answer is over, or now streams here, the remote follow ends.
    async fn resync_remote(&mut self) -> Step {
        let Some(remote) = self.remote.as_mut() else { return Step::Continue };
        if let Some(live) = self.state.live.get(&remote.message_id) {
            self.remote = None;
            return self.resync(&live).await;
        }
        let stored = match self.state.db.followed_answer(&remote.user, &remote.message_id).await {
            Ok(stored) => stored,
            Err(error) => {
                // Tried again when the follow is next quiet.
                tracing::warn!(%error, "cannot read an answer followed on another instance");
                remote.check_at = Instant::now() + REMOTE_QUIET;
                return Step::Continue;
            }
        };
        let Some(stored) = stored else {
            let message_id = self.remote.take().map(|r| r.message_id).unwrap_or_default();
            return self.send(&live::not_found(&message_id)).await;
        };
        let streaming = stored.status == MessageStatus::Streaming;
        let snapshot = ServerFrame::Snapshot {
            message_id: remote.message_id.clone(),
            content: stored.content,
            seq: stored.seq,
            status: stored.status,
            live: streaming,
            code: stored.error_code,
        };
        if !streaming {
            self.remote = None;
            return self.send(&snapshot).await;
        }
        let owner_changed = stored.generation != remote.generation;
        let ahead = stored.seq > remote.last_seq;
        remote.generation = stored.generation;
        remote.owner = stored.owner;
        remote.check_at = Instant::now() + REMOTE_QUIET;
        if owner_changed || ahead {
            remote.last_seq = stored.seq;
        }
        if let Some(owner) = &remote.owner {
            self.state.bus.request_follow(owner, &remote.message_id, remote.last_seq + 1);
        }
        if owner_changed || ahead {
            return self.send(&snapshot).await;
        }
        Step::Continue
    }

    /// Relays what the bus brought of a remote answer: its chunks in order, each
    /// exactly once; anything out of step is a re-sync, never a skip.
    async fn on_remote(&mut self, heard: RemoteHeard) -> Step {
        let Some(remote) = self.remote.as_mut() else { return Step::Continue };
        let tokens = match heard {
            RemoteHeard::Event(Ok(FeedEvent::Tokens(tokens))) => tokens,
            RemoteHeard::Event(Err(broadcast::error::RecvError::Closed)) => {
                self.remote = None;
                return Step::Continue;
            }
            RemoteHeard::Event(_) | RemoteHeard::Quiet => return Box::pin(self.resync_remote()).await,
        };
        if tokens.g != remote.generation {
            return Box::pin(self.resync_remote()).await;
        }
        remote.check_at = Instant::now() + REMOTE_QUIET;
        let mut out = Vec::new();
        let mut in_step = true;
        for (seq, content) in &tokens.t {
            if *seq <= remote.last_seq {
                continue;
            }
            if *seq != remote.last_seq + 1 {
                in_step = false;
                break;
            }
            remote.last_seq = *seq;
            out.push(ServerFrame::Chunk { content: content.clone(), seq: *seq, message_id: remote.message_id.clone() });
        }
        let mut last = None;
        if in_step {
            if let Some(end) = &tokens.e {
                let end_seq = serde_json::from_str::<ServerFrame>(end).ok().and_then(|frame| match frame {
                    ServerFrame::End { seq, .. } => Some(seq),
                    _ => None,
                });
                match end_seq {
                    Some(seq) if seq != remote.last_seq => in_step = false,
                    _ => last = Some(end.clone()),
                }
            }
        }
        for frame in &out {
            if let Step::Close = self.send(frame).await {
                return Step::Close;
            }
        }
        if let Some(last) = last {
            self.remote = None;
            return match self.sink.send(Message::Text(last.into())).await {
                Ok(()) => Step::Continue,
                Err(_) => Step::Close,
            };
        }
        if !in_step {
            return Box::pin(self.resync_remote()).await;
        }
        Step::Continue
    }

    /// Tells the student's other tabs (every instance) that a question was asked here;
    /// for the session's first question (`made_user`), also the tabs that opened
    /// before the student had a user. That is the one frame they get on the session's
    /// key: on it they switch to the user's (and read the budget themselves), so a
    /// second frame there could arrive after they left.
    fn tell_other_tabs_asked(&self, start: &ServerFrame, made_user: bool) {
        let (Some(user), ServerFrame::Start { conversation_id, message_id, .. }) = (&self.user_id, start) else {
            return;
        };
        let frame = ServerFrame::ConversationChanged {
            conversation_id: conversation_id.clone(),
            change: ConversationChange::Asked,
            title: None,
            message_id: Some(message_id.clone()),
        };
        let me = self.notices.as_ref().map(|n| n.socket);
        self.state.bus.publish_user(user, &frame, me, None);
        if made_user {
            // This socket follows the user by now: only the session's other tabs hear it.
            self.state.bus.publish_user(&self.session_notice_key(), &frame, None, None);
        }
    }

    /// Where this socket's session hears its events while it has no user.
    fn session_notice_key(&self) -> String {
        session_key(&hash_token(&self.session.0))
    }

    /// Subscribes to the user's notices once the user is known (and again if the
    /// socket's user changed); until then, to its session's (see [`session_key`]).
    fn follow_notices(&mut self) {
        match &self.user_id {
            Some(user) if self.notices.as_ref().is_none_or(|n| n.user() != user) => {
                self.notices = Some(self.state.notices.subscribe(user));
            }
            Some(_) => {}
            None => {
                let key = self.session_notice_key();
                if self.notices.as_ref().is_none_or(|n| n.user() != key) {
                    self.notices = Some(self.state.notices.subscribe_session(&key));
                }
            }
        }
    }

    /// A notice reached this socket on its session's key: another tab made the
    /// student's user. The socket looks it up, follows the user's notices, and sends
    /// the budget as it is now (the question that made the user took one, before
    /// this socket listened to the user).
    async fn learn_user(&mut self) -> Step {
        match self.state.db.find_user(&self.session.0).await {
            Ok(user) => {
                self.user_id = user;
                self.follow_notices();
            }
            Err(error) => {
                tracing::warn!(%error, "cannot look up the socket's user; notices start with a question");
                return Step::Continue;
            }
        }
        match super::ask::budget_frame(&self.state, self.user_id.as_deref()).await {
            Some(budget) => self.send(&budget).await,
            None => Step::Continue,
        }
    }

    /// Sends a frame of this socket's own; its errors count in `/metrics`.
    async fn send(&mut self, frame: &ServerFrame) -> Step {
        if let ServerFrame::Error { code, .. } = frame {
            self.state.metrics.error_sent(*code);
        }
        self.write(frame).await
    }

    /// Sends without counting: an answer's own last frame, counted when it ended.
    async fn write(&mut self, frame: &ServerFrame) -> Step {
        match self.sink.send(Message::Text(frame.to_json().into())).await {
            Ok(()) => Step::Continue,
            Err(error) => {
                tracing::debug!(%error, "send failed; peer gone");
                Step::Close
            }
        }
    }
}

/// The edge for a question that got no answer: a code the page switches on, a message
/// for other clients, the detail only in the log.
fn ask_error_frame(error: AskError) -> ServerFrame {
    match error {
        AskError::Busy => ServerFrame::Error {
            code: ErrorCode::ServerBusy,
            message: "The tutor is answering many students right now; ask again in a few seconds.".into(),
            message_id: None,
            retry_after: Some(5),
        },
        AskError::AddressBusy => ServerFrame::Error {
            code: ErrorCode::ServerBusy,
            message: "Many answers are streaming for your network right now; ask again in a few seconds.".into(),
            message_id: None,
            retry_after: Some(5),
        },
        AskError::TooManyGuests { retry_after } => ServerFrame::Error {
            code: ErrorCode::RateLimited,
            message: format!(
                "Too many new students started from your network this hour; you can ask in {retry_after} s (signing in helps)."
            ),
            message_id: None,
            retry_after: Some(retry_after),
        },
        AskError::AddressRateLimited { retry_after } => ServerFrame::Error {
            code: ErrorCode::RateLimited,
            message: format!("Too many questions from your network this minute; you can ask again in {retry_after} s."),
            message_id: None,
            retry_after: Some(retry_after),
        },
        AskError::SessionEnded => session_ended_frame(),
        AskError::NotFound => ServerFrame::error(ErrorCode::NotFound, "no such conversation"),
        AskError::Version(ForkRefusal::NotFound) => {
            ServerFrame::error(ErrorCode::NotFound, "that message is not on the conversation's branch on screen")
        }
        AskError::Version(ForkRefusal::NotLastAnswer) => {
            ServerFrame::error(ErrorCode::BadRequest, "only the last answer can be regenerated")
        }
        AskError::Version(ForkRefusal::Streaming) => ServerFrame::error(
            ErrorCode::Busy,
            "an answer is still being written in this conversation; wait for it or stop it",
        ),
        AskError::TooManyAnswers { limit } => ServerFrame::Error {
            code: ErrorCode::Busy,
            message: format!("You have {limit} answers streaming in other tabs; ask again when one has finished."),
            message_id: None,
            retry_after: Some(5),
        },
        AskError::TooManyConversations { limit } => ServerFrame::error(
            ErrorCode::LimitReached,
            format!("You keep {limit} conversations, the most allowed; delete some to start a new one."),
        ),
        AskError::RateLimited { budget } => ServerFrame::Error {
            code: ErrorCode::RateLimited,
            message: format!(
                "Your question budget is spent ({} at once, one back every {} s); you can ask again in {} s.",
                budget.capacity,
                (budget.refill_ms + 999) / 1000,
                budget.retry_after()
            ),
            message_id: None,
            retry_after: Some(budget.retry_after()),
        },
        AskError::Store(error) => {
            tracing::error!(%error, "history store failed");
            ServerFrame::error(
                ErrorCode::Internal,
                "Your question could not be saved, so it was not sent. Please try again.",
            )
        }
        AskError::Upstream { answer_id, error } => ServerFrame::Error {
            code: error.code(),
            message: error.client_message(),
            message_id: Some(answer_id),
            retry_after: error.retry_after(),
        },
        // `ask` follows the answer instead; `start_answer` resolves a taken `ask_id`.
        AskError::AskedBefore(_) | AskError::AskIdTaken => {
            ServerFrame::error(ErrorCode::Internal, "That question was asked before.")
        }
    }
}

fn lookup_error(error: StoreError) -> ServerFrame {
    tracing::error!(%error, "cannot look up an answer to resume");
    ServerFrame::error(ErrorCode::Internal, "That answer cannot be looked up right now.")
}

/// Resolves with why the session's sockets must end, once they must; never, if the
/// sender is gone first.
async fn session_end(mut revoked: watch::Receiver<Option<SessionEnd>>) -> SessionEnd {
    let why = match revoked.wait_for(Option::is_some).await {
        Ok(why) => *why,
        Err(_) => None,
    };
    match why {
        Some(why) => why,
        None => std::future::pending().await,
    }
}

/// Resolves once a flag (the server's shutdown) turns true; never, if its sender is
/// gone first.
async fn flag_set(mut flag: watch::Receiver<bool>) {
    if flag.wait_for(|set| *set).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Told to a socket whose session ended: signed out (here or on another instance) or
/// expired. The client reconnects with the cookie it has now.
fn session_ended_frame() -> ServerFrame {
    ServerFrame::error(
        ErrorCode::SessionEnded,
        "This session was signed out; reconnect to continue with your current session.",
    )
}

/// The next frame of the answer this socket follows; never resolves without one.
async fn next_followed(answer: &mut Option<Follower>) -> Result<Published, broadcast::error::RecvError> {
    match answer {
        Some(following) => following.frames.recv().await,
        None => std::future::pending().await,
    }
}

/// What a remote follow hears next (or that it was quiet too long); never resolves
/// while there is none.
async fn next_remote(remote: &mut Option<RemoteFollow>) -> RemoteHeard {
    match remote {
        Some(remote) => tokio::select! {
            event = remote.feed.events.recv() => RemoteHeard::Event(event),
            _ = tokio::time::sleep_until(remote.check_at) => RemoteHeard::Quiet,
        },
        None => std::future::pending().await,
    }
}

/// The next notice for the socket's user; never resolves while there is no feed.
async fn next_notice(notices: &mut Option<Subscription>) -> Result<Notice, broadcast::error::RecvError> {
    match notices {
        Some(subscription) => subscription.frames.recv().await,
        None => std::future::pending().await,
    }
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// True when the read failed because a message exceeded the hard size limit. The
/// error is typed (tungstenite's `Capacity`); anything else is a closed socket.
fn is_too_big(error: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let inner = error.into_inner();
    matches!(inner.downcast_ref::<WsError>(), Some(WsError::Capacity(_)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::settings::Settings;
    use futures::channel::mpsc;

    /// The app's state on an in-memory database; its data folder goes when the
    /// returned folder is dropped.
    async fn ctx(ping: Duration, idle: Duration) -> (AppState, tempfile::TempDir) {
        let temp = tempfile::Builder::new().prefix("tutor-socket-").tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let mut settings = Settings::default();
        settings.upstream.base_url = Some("http://127.0.0.1:9".into());
        settings.max_frame_bytes = 1024;
        settings.max_question_chars = 50;
        settings.ping_interval = ping;
        settings.idle_timeout = idle;
        // One connection: every connection to `:memory:` would be its own database.
        settings.database_url = Some("sqlite::memory:".into());
        settings.db_max_connections = 1;
        settings.lessons_dir = dir.join("no-lessons");
        settings.data_dir = dir;
        settings.instance_id = Some("test".into());
        let options = leptos::config::LeptosOptions::builder().output_name("tutor-chat").build();
        (AppState::build(settings, options).await.unwrap(), temp)
    }

    type Harness = (
        mpsc::UnboundedSender<Result<Message, axum::Error>>,
        mpsc::UnboundedReceiver<Message>,
        tokio::task::JoinHandle<()>,
    );

    fn start(state: AppState) -> Harness {
        let (client_tx, server_rx) = mpsc::unbounded::<Result<Message, axum::Error>>();
        let (server_tx, client_rx) = mpsc::unbounded::<Message>();
        let session = GuestSession("0".repeat(64));
        let task = tokio::spawn(handle_socket(server_tx, server_rx, state, session, "127.0.0.1".into(), Places::default()));
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
        let (state, _dir) = ctx(Duration::from_secs(20), Duration::from_secs(60)).await;
        let (tx, mut rx, _task) = start(state);
        assert!(matches!(next_frame(&mut rx).await, ServerFrame::Hello { max_question_chars: 50, .. }));
        assert!(matches!(next_frame(&mut rx).await, ServerFrame::Budget { remaining: 10, capacity: 10, .. }));
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
        let (state, _dir) = ctx(ping, idle).await;
        let (tx, mut rx, task) = start(state);
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
        let (state, _dir2) = ctx(ping, idle).await;
        let (_tx2, mut rx2, task2) = start(state);
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
