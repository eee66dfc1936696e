//! The instances' bus: how an answer streamed by one instance reaches sockets on
//! another, and how a student's other tabs hear what one tab did. On PostgreSQL it is
//! `LISTEN/NOTIFY` on the database the instances already share (no broker); on SQLite
//! — one process — the same messages go through an in-process hub, so one code path
//! runs on both (docs/storage.md, "Several instances").
//!
//! Two kinds of channel: one shared by all instances (`tutor_all`: a student's
//! events, takeovers) and one per instance (requests to follow an answer it owns, and
//! the chunks of answers others follow). Chunks are published only for answers some
//! other instance asked to follow, batched per flush, each notification under
//! PostgreSQL's 8,000-byte limit. A listener that may have missed something (its
//! connection dropped, its queue overflowed) tells every follower to re-sync from the
//! stored text; a follower never skips a `seq`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tracing::Instrument;

use super::limits::{Connections, SessionEnd};
use super::notices::Notices;
use crate::db::{now_ms, Backend, Db};
use crate::metrics::Metrics;
use crate::protocol::ServerFrame;

/// The channel every instance listens on.
const SHARED_CHANNEL: &str = "tutor_all";
/// PostgreSQL refuses payloads from 8,000 bytes; batches stay under this.
pub const MAX_PAYLOAD: usize = 7_600;
/// Notifications sent in one statement by the publisher.
const NOTIFICATIONS_PER_STATEMENT: usize = 16;
/// Events a remote follower may fall behind on before it re-syncs.
const FEED_BUFFER: usize = 256;

/// A message between instances, as JSON in a notification's payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "k")]
pub enum BusMessage {
    /// Chunks (and maybe the end) of answers the receiving instance follows.
    #[serde(rename = "t")]
    Tokens {
        a: Vec<AnswerTokens>,
        /// When it was sent (Unix ms): the receiver's notification lag.
        #[serde(default)]
        s: i64,
    },
    /// "Send me this answer's chunks from `from` on", to the answer's owner.
    #[serde(rename = "f")]
    Follow { m: String, from: u64, reply: String },
    /// "The student pressed stop", to the answer's owner.
    #[serde(rename = "s")]
    Stop { m: String },
    /// An instance took the answer over (generation `g`): followers re-sync.
    #[serde(rename = "x")]
    Takeover { m: String, g: u64 },
    /// A frame for every socket of user `u` (sent by instance `o`, which delivered it
    /// to its own sockets already).
    #[serde(rename = "u")]
    User { o: String, u: String, f: String },
    /// Session `h` (its token's hash) was signed out on instance `o` (or, with `i`,
    /// replaced by a sign-in): its sockets everywhere end now, not at their next
    /// question. (An instance on older code reads `i` as a sign-out.)
    #[serde(rename = "r")]
    SessionEnded {
        o: String,
        h: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        i: bool,
    },
}

/// Some of one answer's chunks, in order, from its owner of generation `g`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnswerTokens {
    pub m: String,
    pub g: u64,
    /// `(seq, content)`, consecutive.
    pub t: Vec<(u64, String)>,
    /// The answer's last frame (`end` or `error`, as sent to clients) once it is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

/// What a remote follower of one answer hears.
#[derive(Debug, Clone)]
pub enum FeedEvent {
    Tokens(Arc<AnswerTokens>),
    /// Something may have been missed, or the answer changed hands: re-sync.
    Resync,
}

/// A request to follow an answer this instance owns.
#[derive(Debug, Clone)]
pub struct FollowRequest {
    pub message_id: String,
    pub from_seq: u64,
    pub reply_channel: String,
}

/// Requests the answer registry handles (follow, stop); taken once by it.
pub enum OwnerRequest {
    Follow(FollowRequest),
    Stop(String),
    /// An instance took this answer over at `generation`: an older owner still
    /// streaming it (its lease lapsed while it was alive) must let it go.
    TakenOver { message_id: String, generation: u64 },
}

/// Something to publish, in order.
struct Outgoing {
    channel: String,
    message: BusMessage,
}

pub struct Bus {
    db: Arc<Db>,
    instance: String,
    /// This instance's own channel.
    channel: String,
    outbox: mpsc::UnboundedSender<Outgoing>,
    /// Remote answers followed by sockets here, by message id.
    feeds: Mutex<HashMap<String, broadcast::Sender<FeedEvent>>>,
    notices: Arc<Notices>,
    /// This instance's open sockets per session, ended by a sign-out elsewhere.
    sessions: Arc<Connections>,
    owner_requests: mpsc::UnboundedSender<OwnerRequest>,
    owner_inbox: Mutex<Option<mpsc::UnboundedReceiver<OwnerRequest>>>,
    metrics: Arc<Metrics>,
}

/// A socket's subscription to a remote answer's feed; the entry goes with the last.
pub struct Feed {
    pub events: broadcast::Receiver<FeedEvent>,
    message_id: String,
    bus: Arc<Bus>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        let mut feeds = lock(&self.bus.feeds);
        if feeds.get(&self.message_id).is_some_and(|sender| sender.receiver_count() <= 1) {
            feeds.remove(&self.message_id);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The channel an instance listens on: a digest of its id, so any id is a valid name.
pub fn instance_channel(instance: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(instance.as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("tutor_i_{hex}")
}

impl Bus {
    /// The bus of this instance, listening from now on (its own channel and the
    /// shared one) and publishing through one ordered outbox.
    pub fn start(
        db: Arc<Db>,
        instance: &str,
        notices: Arc<Notices>,
        sessions: Arc<Connections>,
        metrics: Arc<Metrics>,
    ) -> Arc<Bus> {
        let (outbox, queue) = mpsc::unbounded_channel();
        let (owner_requests, owner_inbox) = mpsc::unbounded_channel();
        let bus = Arc::new(Bus {
            db: db.clone(),
            instance: instance.to_string(),
            channel: instance_channel(instance),
            outbox,
            feeds: Mutex::default(),
            notices,
            sessions,
            owner_requests,
            owner_inbox: Mutex::new(Some(owner_inbox)),
            metrics,
        });
        match db.backend() {
            Backend::Postgres => {
                tokio::spawn(listen_postgres(Arc::downgrade(&bus)).in_current_span());
            }
            Backend::Sqlite => {
                let hub = in_process_hub(db.meeting_point());
                tokio::spawn(listen_in_process(Arc::downgrade(&bus), hub.subscribe()).in_current_span());
            }
        }
        tokio::spawn(publish(db, queue, bus.metrics.clone()).in_current_span());
        bus
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The follow and stop requests for answers this instance owns (once).
    pub fn take_owner_requests(&self) -> Option<mpsc::UnboundedReceiver<OwnerRequest>> {
        lock(&self.owner_inbox).take()
    }

    /// Subscribes to a remote answer's events (before asking its owner for chunks, so
    /// none arrives unheard).
    pub fn feed(self: &Arc<Self>, message_id: &str) -> Feed {
        let events = lock(&self.feeds)
            .entry(message_id.to_string())
            .or_insert_with(|| broadcast::channel(FEED_BUFFER).0)
            .subscribe();
        Feed { events, message_id: message_id.to_string(), bus: self.clone() }
    }

    /// Asks the owner (by its instance id) for an answer's chunks from `from_seq`.
    pub fn request_follow(&self, owner: &str, message_id: &str, from_seq: u64) {
        self.send(
            instance_channel(owner),
            BusMessage::Follow { m: message_id.to_string(), from: from_seq, reply: self.channel.clone() },
        );
    }

    pub fn request_stop(&self, owner: &str, message_id: &str) {
        self.send(instance_channel(owner), BusMessage::Stop { m: message_id.to_string() });
    }

    /// Chunks for the instances following an answer here (`channel` is theirs).
    pub fn send_tokens(&self, channel: &str, tokens: AnswerTokens) {
        self.send(channel.to_string(), BusMessage::Tokens { a: vec![tokens], s: 0 });
    }

    /// Tells every instance that this one took an answer over.
    pub fn announce_takeover(&self, message_id: &str, generation: u64) {
        self.send(SHARED_CHANNEL.into(), BusMessage::Takeover { m: message_id.to_string(), g: generation });
    }

    /// A frame for every open socket of `user`: this instance's at once (but the
    /// socket `except`), the others' through the bus. A frame too big for a
    /// notification goes to other instances as `fallback` (which must fit).
    pub fn publish_user(&self, user: &str, frame: &ServerFrame, except: Option<u64>, fallback: Option<&ServerFrame>) {
        let json = frame.to_json();
        self.notices.publish_json(user, json.clone().into(), except);
        // Measured as sent: the frame's JSON is escaped again inside the message, and
        // text full of quotes or backslashes doubles there.
        let fits = |frame_json: String| {
            let message = BusMessage::User { o: self.instance.clone(), u: user.to_string(), f: frame_json };
            (json_len(&message) <= MAX_PAYLOAD).then_some(message)
        };
        let message = match fits(json) {
            Some(message) => message,
            None => match fallback.and_then(|fallback| fits(fallback.to_json())) {
                Some(message) => message,
                None => {
                    tracing::warn!(user, "a student's event is too big for other instances; they miss it");
                    return;
                }
            },
        };
        self.send(SHARED_CHANNEL.into(), message);
    }

    /// Ends the sockets of a signed-out, deleted or signed-in session, here and on every
    /// other instance (a socket that misses the bus finds the session gone at its next
    /// question). By the token's hash: tokens never travel the bus.
    pub fn end_session(&self, token_hash: &str, why: SessionEnd) {
        self.sessions.revoke(token_hash, why);
        self.send(
            SHARED_CHANNEL.into(),
            BusMessage::SessionEnded {
                o: self.instance.clone(),
                h: token_hash.to_string(),
                i: why == SessionEnd::SignedIn,
            },
        );
    }

    fn send(&self, channel: String, message: BusMessage) {
        // Only fails while the runtime shuts down; then nobody listens either.
        let _ = self.outbox.send(Outgoing { channel, message });
    }

    /// Hands a received message to whoever waits for it here.
    fn dispatch(&self, message: BusMessage) {
        match message {
            BusMessage::Tokens { a, s } => {
                let lag = now_ms().saturating_sub(s).max(0);
                self.metrics.record_notification_lag(std::time::Duration::from_millis(lag as u64));
                let feeds = lock(&self.feeds);
                for tokens in a {
                    if let Some(feed) = feeds.get(&tokens.m) {
                        let _ = feed.send(FeedEvent::Tokens(Arc::new(tokens)));
                    }
                }
            }
            BusMessage::Follow { m, from, reply } => {
                let _ = self.owner_requests.send(OwnerRequest::Follow(FollowRequest {
                    message_id: m,
                    from_seq: from,
                    reply_channel: reply,
                }));
            }
            BusMessage::Stop { m } => {
                let _ = self.owner_requests.send(OwnerRequest::Stop(m));
            }
            BusMessage::Takeover { m, g } => {
                if let Some(feed) = lock(&self.feeds).get(&m) {
                    let _ = feed.send(FeedEvent::Resync);
                }
                let _ = self.owner_requests.send(OwnerRequest::TakenOver { message_id: m, generation: g });
            }
            BusMessage::User { o, u, f } => {
                if o != self.instance {
                    self.notices.publish_json(&u, f.into(), None);
                }
            }
            BusMessage::SessionEnded { o, h, i } => {
                if o != self.instance {
                    self.sessions.revoke(&h, if i { SessionEnd::SignedIn } else { SessionEnd::SignedOut });
                }
            }
        }
    }

    /// Something may have been missed: every remote follower here re-syncs.
    fn resync_all(&self) {
        for feed in lock(&self.feeds).values() {
            let _ = feed.send(FeedEvent::Resync);
        }
    }

    /// Remote answers followed here (for tests: entries do not pile up).
    pub fn followed(&self) -> usize {
        lock(&self.feeds).len()
    }
}

/// The in-process buses of one SQLite database meet here (tests run several
/// instances in one process; a real deployment on SQLite has one).
fn in_process_hub(url: &str) -> broadcast::Sender<(String, String)> {
    static HUBS: OnceLock<Mutex<HashMap<String, broadcast::Sender<(String, String)>>>> = OnceLock::new();
    let mut hubs = lock(HUBS.get_or_init(Mutex::default));
    hubs.retain(|_, hub| hub.receiver_count() > 0);
    hubs.entry(url.to_string()).or_insert_with(|| broadcast::channel(4096).0).clone()
}

async fn listen_in_process(bus: Weak<Bus>, mut hub: broadcast::Receiver<(String, String)>) {
    loop {
        let received = hub.recv().await;
        let Some(bus) = bus.upgrade() else { return };
        match received {
            Ok((channel, payload)) => {
                if channel == SHARED_CHANNEL || channel == bus.channel {
                    receive(&bus, &payload);
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => bus.resync_all(),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn listen_postgres(bus: Weak<Bus>) {
    let (url, channel) = match bus.upgrade() {
        Some(bus) => (bus.db.url().to_string(), bus.channel.clone()),
        None => return,
    };
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen to the instances' bus; trying again in a second");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen_all([SHARED_CHANNEL, channel.as_str()]).await {
            tracing::warn!(%error, "cannot listen to the instances' bus; trying again in a second");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        }
        // Listening (again): whatever was sent while not listening is re-read.
        match bus.upgrade() {
            Some(bus) => bus.resync_all(),
            None => return,
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    let Some(bus) = bus.upgrade() else { return };
                    receive(&bus, notification.payload());
                }
                Ok(None) => {
                    // The connection was lost and is made again: messages may be lost.
                    tracing::warn!("the instances' bus reconnected; followers re-sync");
                    match bus.upgrade() {
                        Some(bus) => bus.resync_all(),
                        None => return,
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "the instances' bus failed; listening again");
                    break;
                }
            }
        }
    }
}

fn receive(bus: &Bus, payload: &str) {
    match serde_json::from_str::<BusMessage>(payload) {
        Ok(message) => bus.dispatch(message),
        Err(error) => tracing::warn!(%error, "unreadable message on the instances' bus; ignored"),
    }
}

/// The one publisher: sends the outbox in order, merging chunk messages that wait
/// together for one channel into notifications of up to [`MAX_PAYLOAD`] bytes.
async fn publish(db: Arc<Db>, mut queue: mpsc::UnboundedReceiver<Outgoing>, metrics: Arc<Metrics>) {
    /// How often a lost connection of the publisher's own is made again at most.
    const RECONNECT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
    let hub = (db.backend() == Backend::Sqlite).then(|| in_process_hub(db.meeting_point()));
    let mut own: Option<sqlx::AnyConnection> = None;
    let mut last_connect: Option<std::time::Instant> = None;
    while let Some(first) = queue.recv().await {
        let mut waiting = vec![first];
        while let Ok(more) = queue.try_recv() {
            waiting.push(more);
            if waiting.len() >= 512 {
                break;
            }
        }
        let notifications = payloads(waiting);
        for _ in &notifications {
            metrics.notification_sent();
        }
        match &hub {
            Some(hub) => {
                for notification in notifications {
                    let _ = hub.send(notification);
                }
            }
            // Up to 16 a statement: one round trip instead of one each, which at a
            // thousand followed answers was the publisher's queue (docs/BENCHMARKS.md).
            // On a connection of its own: through the pool, while a class arrives,
            // every statement queued behind the questions' transactions.
            None => {
                for group in notifications.chunks(NOTIFICATIONS_PER_STATEMENT) {
                    if own.is_none() && last_connect.is_none_or(|at| at.elapsed() >= RECONNECT_EVERY) {
                        last_connect = Some(std::time::Instant::now());
                        match db.own_connection().await {
                            Ok(connection) => own = Some(connection),
                            Err(error) => tracing::warn!(%error, "the bus's publisher has no connection of its own; it uses the pool"),
                        }
                    }
                    let sent = match own.as_mut() {
                        Some(connection) => crate::db::notify_many(&mut *connection, group).await,
                        None => db.notify_many(group).await,
                    };
                    if let Err(error) = sent {
                        tracing::warn!(%error, "cannot publish on the instances' bus; followers re-sync");
                        own = None;
                    }
                }
            }
        }
    }
}

/// The notifications for messages waiting together: chunk messages for one channel
/// merged while under the size limit (order kept within each channel), the rest as
/// they are.
fn payloads(waiting: Vec<Outgoing>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut open: HashMap<String, (Vec<AnswerTokens>, usize)> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let flush = |channel: &str, batch: Vec<AnswerTokens>, out: &mut Vec<(String, String)>| {
        if !batch.is_empty() {
            let payload = serde_json::to_string(&BusMessage::Tokens { a: batch, s: now_ms() }).unwrap_or_default();
            push_if_fits(out, channel.to_string(), payload);
        }
    };
    for Outgoing { channel, message } in waiting {
        match message {
            BusMessage::Tokens { a, .. } => {
                for tokens in a {
                    for piece in split_to_fit(tokens) {
                        let size = serde_json::to_string(&piece).map_or(MAX_PAYLOAD, |json| json.len() + 1);
                        let entry = open.entry(channel.clone()).or_insert_with(|| {
                            order.push(channel.clone());
                            (Vec::new(), TOKENS_ENVELOPE)
                        });
                        if entry.1 + size > MAX_PAYLOAD {
                            let full = std::mem::take(&mut entry.0);
                            flush(&channel, full, &mut out);
                            entry.1 = TOKENS_ENVELOPE;
                        }
                        entry.0.push(piece);
                        entry.1 += size;
                    }
                }
            }
            other => {
                // Anything else goes after the chunks already waiting for its channel.
                if let Some((batch, size)) = open.get_mut(&channel) {
                    let full = std::mem::take(batch);
                    *size = TOKENS_ENVELOPE;
                    flush(&channel, full, &mut out);
                }
                push_if_fits(&mut out, channel, serde_json::to_string(&other).unwrap_or_default());
            }
        }
    }
    for channel in order {
        if let Some((batch, _)) = open.remove(&channel) {
            flush(&channel, batch, &mut out);
        }
    }
    out
}

/// `{"k":"t","a":[…],"s":<Unix ms>}` around a batch of chunks.
const TOKENS_ENVELOPE: usize = 40;

/// Leaves out a notification over the limit: PostgreSQL would refuse it, and with it
/// every other notification of its statement. (Chunks left out are re-synced by their
/// followers; a student's event has been measured before it got here.)
fn push_if_fits(out: &mut Vec<(String, String)>, channel: String, payload: String) {
    if payload.len() <= MAX_PAYLOAD {
        out.push((channel, payload));
    } else {
        tracing::warn!(bytes = payload.len(), "a bus message too big for a notification is left out");
    }
}

/// The length of a message's JSON, as sent.
fn json_len(message: &BusMessage) -> usize {
    serde_json::to_string(message).map_or(usize::MAX, |json| json.len())
}

/// The length of `text` as a JSON string's contents: quotes and backslashes take two
/// bytes, other control characters up to six (`\u0001`).
fn escaped_len(text: &str) -> usize {
    text.bytes()
        .map(|byte| match byte {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// One answer's chunks in pieces that each fit a notification. A single chunk too
/// big for one is left out: its followers see the gap and re-sync from the database.
fn split_to_fit(tokens: AnswerTokens) -> Vec<AnswerTokens> {
    let overhead = tokens.m.len() + 48 + tokens.e.as_ref().map_or(0, String::len);
    let mut pieces = Vec::new();
    let mut current = AnswerTokens { m: tokens.m.clone(), g: tokens.g, t: Vec::new(), e: None };
    let mut size = overhead;
    for (seq, content) in tokens.t {
        let cost = escaped_len(&content) + 24; // `[seq,"…"],`
        if cost + overhead > MAX_PAYLOAD {
            tracing::warn!(seq, bytes = content.len(), "a chunk too big for the bus; followers re-sync");
            continue;
        }
        if size + cost > MAX_PAYLOAD {
            pieces.push(std::mem::replace(
                &mut current,
                AnswerTokens { m: tokens.m.clone(), g: tokens.g, t: Vec::new(), e: None },
            ));
            size = overhead;
        }
        current.t.push((seq, content));
        size += cost;
    }
    current.e = tokens.e;
    pieces.push(current);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(m: &str, seqs: std::ops::RangeInclusive<u64>, word: &str) -> Outgoing {
        Outgoing {
            channel: "c".into(),
            message: BusMessage::Tokens {
                a: vec![AnswerTokens { m: m.into(), g: 0, t: seqs.map(|s| (s, word.to_string())).collect(), e: None }],
                s: 0,
            },
        }
    }

    #[test]
    fn batches_fit_a_notification_and_keep_every_chunk_in_order() {
        let word = "слово ".repeat(20); // 240 bytes of two-byte letters
        let payloads = payloads(vec![tokens("a", 1..=100, &word), tokens("b", 1..=3, "x"), tokens("a", 101..=110, &word)]);
        assert!(payloads.len() > 3, "{} notifications", payloads.len());
        let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
        for (channel, payload) in &payloads {
            assert_eq!(channel, "c");
            assert!(payload.len() < 8000, "{} bytes", payload.len());
            let BusMessage::Tokens { a, .. } = serde_json::from_str(payload).unwrap() else { panic!() };
            for answer in a {
                seen.entry(answer.m).or_default().extend(answer.t.iter().map(|(seq, _)| *seq));
            }
        }
        assert_eq!(seen["a"], (1..=110).collect::<Vec<_>>());
        assert_eq!(seen["b"], vec![1, 2, 3]);
    }

    #[test]
    fn other_messages_keep_their_place_after_waiting_chunks() {
        let stop = Outgoing { channel: "c".into(), message: BusMessage::Stop { m: "a".into() } };
        let payloads = payloads(vec![tokens("a", 1..=2, "x"), stop, tokens("a", 3..=3, "x")]);
        let kinds: Vec<&str> = payloads.iter().map(|(_, p)| &p[6..7]).collect();
        assert_eq!(kinds, ["t", "s", "t"]);
    }

    #[test]
    fn a_chunk_too_big_is_left_out_for_a_resync_and_the_end_still_goes() {
        let huge = "x".repeat(MAX_PAYLOAD);
        let pieces = split_to_fit(AnswerTokens {
            m: "a".into(),
            g: 1,
            t: vec![(1, "a".into()), (2, huge), (3, "c".into())],
            e: Some("{}".into()),
        });
        let seqs: Vec<u64> = pieces.iter().flat_map(|p| p.t.iter().map(|(s, _)| *s)).collect();
        assert_eq!(seqs, [1, 3]);
        assert_eq!(pieces.last().unwrap().e.as_deref(), Some("{}"));
    }

    /// Control characters escape to six bytes each (`\u0001`): chunks of them are
    /// counted as sent, so no notification is over the limit and none is dropped.
    #[test]
    fn chunks_of_control_characters_are_counted_as_they_escape() {
        let controls = "\u{1}".repeat(500); // 3,000 bytes once escaped
        let payloads = payloads(vec![tokens("a", 1..=6, &controls), tokens("a", 7..=7, &"\"".repeat(2_000))]);
        let mut seqs = Vec::new();
        for (_, payload) in &payloads {
            assert!(payload.len() <= MAX_PAYLOAD, "{} bytes", payload.len());
            let BusMessage::Tokens { a, .. } = serde_json::from_str(payload).unwrap() else { panic!() };
            seqs.extend(a.iter().flat_map(|answer| answer.t.iter().map(|(seq, _)| *seq)));
        }
        assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
        assert_eq!(escaped_len("a\"\\\n\u{1}é"), 1 + 2 + 2 + 2 + 6 + 2);
    }
}
