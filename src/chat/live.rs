//! Answers outlive their sockets. Each answer is streamed by a task of its own that
//! stores it and publishes its frames; sockets follow it, and a socket that reconnects
//! (or a page that reloads) follows it again from a snapshot. A dropped network or a
//! reload therefore loses no token: the answer goes on being written and stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::bus::{AnswerTokens, Bus, FollowRequest, OwnerRequest};
use super::store::{AnswerWrite, MAX_ROWS_PER_COMMIT};
use crate::db::{now_ms, Db, StoreError};
use crate::metrics::Metrics;
use crate::protocol::{AnswerStatus, EndReason, ErrorCode, ServerFrame};
use crate::upstream::AnswerStream;

/// Partial answers are saved this often, so a crash loses about this much.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Frames a slow follower may fall behind before it re-syncs from a snapshot.
const FOLLOWER_BUFFER: usize = 64;

/// What an answer holds while it streams: a place among the instance's answers and,
/// when that cap is on, one among its client address's.
pub struct AnswerPlaces {
    pub slot: tokio::sync::OwnedSemaphorePermit,
    pub per_address: Option<super::limits::ConnectionGuard>,
}

/// The answers this instance is streaming, by message id.
pub struct LiveAnswers {
    answers: Mutex<HashMap<String, Arc<LiveAnswer>>>,
    /// Answers with text not yet checkpointed; the writer takes them once a second.
    unsaved: Mutex<Vec<Arc<LiveAnswer>>>,
    finishes: mpsc::UnboundedSender<Finish>,
    db: Arc<Db>,
    /// How many answers run: shutdown waits on it instead of polling.
    running: watch::Sender<usize>,
    /// Carries chunks to followers on other instances.
    bus: Arc<Bus>,
    /// This instance, as the answers' rows name their owner.
    instance: Arc<str>,
    /// How long a lease runs before another instance may take an answer over.
    lease: Duration,
    /// When the leases were last renewed: every third of a lease is enough, and with
    /// a class online each renewal rewrites every streaming row.
    renewed_at: Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
}

pub struct LiveAnswer {
    pub message_id: String,
    pub user_id: String,
    /// Which owner of the answer this is (0: the first; one more per takeover).
    pub generation: u64,
    /// The channels of instances that follow this answer; chunks go to each.
    remote: Mutex<Vec<String>>,
    has_remote: AtomicBool,
    state: Mutex<LiveState>,
    frames: broadcast::Sender<Published>,
    stop: watch::Sender<Halt>,
    /// In `unsaved`: has text the database does not have yet.
    unsaved: AtomicBool,
}

/// A finished answer for the writer, and who waits for it to be stored.
struct Finish {
    write: AnswerWrite,
    stored: oneshot::Sender<Result<(), StoreError>>,
}

/// Why an answer is ended before the model finished it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Halt {
    No,
    /// The student pressed stop.
    Stopped,
    /// The server is shutting down and the grace period is over: the answer is
    /// released for another instance to continue.
    Shutdown,
    /// Another instance took the answer over: this one's lease lapsed while it was
    /// alive (its renewals waited too long). Streaming on would be a second answer
    /// beside the stored one.
    Lost,
}

#[derive(Default)]
struct LiveState {
    text: String,
    seq: u64,
    /// The `end` or `error` frame, once the answer is over.
    last: Option<ServerFrame>,
    /// Where each chunk after `base_seq` ends in `text` (bytes), so a follower on
    /// another instance can be sent the chunks it lacks, each with its own `seq`.
    ends: Vec<u32>,
    /// The seq and length of the text the answer started from (a takeover's).
    base_seq: u64,
    base_len: usize,
    /// Another instance took the answer over (`Halt::Lost`): it is followed there, not
    /// here, by a socket that looks at it from now on.
    handed_over: bool,
}

/// Where an answer starts: from nothing, or from a cut answer's stored text.
#[derive(Debug, Clone, Default)]
pub struct StartFrom {
    pub text: String,
    pub seq: u64,
    pub generation: u64,
}

/// A frame as published: encoded once, sent by every follower without copying.
#[derive(Clone)]
pub struct Published {
    /// Empty (and terminal) when the answer was handed over at shutdown: followers
    /// stop following and send nothing.
    pub json: Utf8Bytes,
    /// `end` or `error`: the answer is over.
    pub terminal: bool,
    /// When it was published: a follower's send measures the relay latency from it.
    pub at: Instant,
}

/// A socket's view of one answer: what it has seen and what comes next.
pub struct Follower {
    pub answer: Arc<LiveAnswer>,
    pub frames: broadcast::Receiver<Published>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LiveAnswers {
    /// The registry and its writer task, which stores every answer's progress and end
    /// for this instance: once a second the checkpoints of all answers that grew, a
    /// batch per transaction, and answers that end together in one transaction (group
    /// commit). Per-answer commits were a thousand transactions a second with a class
    /// online, and SQLite has one writer.
    pub fn new(db: Arc<Db>, bus: Arc<Bus>, instance: Arc<str>, lease: Duration, metrics: Arc<Metrics>) -> Arc<LiveAnswers> {
        let (finishes, queue) = mpsc::unbounded_channel();
        let requests = bus.take_owner_requests();
        let live = Arc::new(LiveAnswers {
            answers: Mutex::default(),
            unsaved: Mutex::default(),
            finishes,
            db: db.clone(),
            running: watch::channel(0).0,
            bus,
            instance,
            lease,
            renewed_at: Mutex::new(None),
            metrics: metrics.clone(),
        });
        tokio::spawn(write_answers(Arc::downgrade(&live), db, metrics, queue).in_current_span());
        if let Some(requests) = requests {
            tokio::spawn(serve_owner_requests(Arc::downgrade(&live), requests).in_current_span());
        }
        live
    }

    pub fn get(&self, message_id: &str) -> Option<Arc<LiveAnswer>> {
        lock(&self.answers).get(message_id).cloned()
    }

    /// Starts streaming an answer whose row exists (status `streaming`); returns a
    /// follower that sees every frame from the first chunk.
    pub fn start(
        self: &Arc<Self>,
        message_id: String,
        user_id: String,
        stream: AnswerStream,
        places: AnswerPlaces,
    ) -> Follower {
        self.start_from(message_id, user_id, stream, places, StartFrom::default())
    }

    /// Starts streaming an answer from `from`: a cut answer's stored text, taken over.
    pub fn start_from(
        self: &Arc<Self>,
        message_id: String,
        user_id: String,
        stream: AnswerStream,
        places: AnswerPlaces,
        from: StartFrom,
    ) -> Follower {
        let (frames, receiver) = broadcast::channel(FOLLOWER_BUFFER);
        let answer = Arc::new(LiveAnswer {
            message_id: message_id.clone(),
            user_id,
            generation: from.generation,
            remote: Mutex::default(),
            has_remote: AtomicBool::new(false),
            state: Mutex::new(LiveState {
                base_seq: from.seq,
                base_len: from.text.len(),
                seq: from.seq,
                text: from.text,
                ..LiveState::default()
            }),
            frames,
            stop: watch::channel(Halt::No).0,
            unsaved: AtomicBool::new(false),
        });
        {
            let mut answers = lock(&self.answers);
            answers.insert(message_id, answer.clone());
            self.running.send_replace(answers.len());
        }
        let registry = self.clone();
        let task_answer = answer.clone();
        tokio::spawn(
            async move {
                run(&registry, &task_answer, stream).await;
                {
                    // Only this task's own: after a lapsed lease, this instance may
                    // have taken the same answer over under the same id meanwhile.
                    let mut answers = lock(&registry.answers);
                    let id = &task_answer.message_id;
                    if answers.get(id).is_some_and(|current| Arc::ptr_eq(current, &task_answer)) {
                        answers.remove(id);
                    }
                    registry.running.send_replace(answers.len());
                }
                // The answer's places (server-wide, per address) are free again.
                drop(places);
            }
            .in_current_span(),
        );
        Follower {
            answer,
            frames: receiver,
        }
    }
}

impl LiveAnswers {
    pub fn len(&self) -> usize {
        lock(&self.answers).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shutdown, after the grace period: every answer still running stops now and is
    /// stored with its text so far, released for another instance to continue.
    pub fn interrupt_all(&self) {
        for answer in lock(&self.answers).values() {
            answer.stop.send_replace(Halt::Shutdown);
        }
    }

    /// Marks an answer as having text the database lacks (once until it is saved).
    fn mark_unsaved(&self, answer: &Arc<LiveAnswer>) {
        if !answer.unsaved.swap(true, Ordering::AcqRel) {
            lock(&self.unsaved).push(answer.clone());
        }
    }

    /// The answers whose text grew since their last checkpoint.
    fn take_unsaved(&self) -> Vec<Arc<LiveAnswer>> {
        std::mem::take(&mut *lock(&self.unsaved))
    }

    /// Stores an answer's end through the writer; returns once it is committed.
    async fn store_finish(&self, write: AnswerWrite) -> Result<(), StoreError> {
        let (stored, done) = oneshot::channel();
        if let Err(mpsc::error::SendError(unsent)) = self.finishes.send(Finish { write, stored }) {
            // The writer is gone (only while the runtime shuts down): write it ourselves.
            return timed_write(&self.db, &self.metrics, &[unsent.write]).await;
        }
        match done.await {
            Ok(result) => result,
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// Renews the leases of the answers this instance streams (with the checkpoints).
    async fn renew_leases(&self) {
        if self.is_empty() {
            return;
        }
        {
            let mut renewed_at = lock(&self.renewed_at);
            if renewed_at.is_some_and(|at| at.elapsed() < self.lease / 3) {
                return;
            }
            *renewed_at = Some(Instant::now());
        }
        let until = now_ms() + i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 2);
        // Read before the renewal: each of these rows was stored before it runs.
        let running: Vec<Arc<LiveAnswer>> = lock(&self.answers).values().cloned().collect();
        match self.db.renew_leases(&self.instance, until).await {
            Ok(renewed) => {
                // Not renewed, yet streamed here: another instance took it over and its
                // announcement never came (the bus missed it). Let it go, as when it does.
                let renewed: std::collections::HashSet<&str> = renewed.iter().map(String::as_str).collect();
                for answer in running.iter().filter(|answer| !renewed.contains(answer.message_id.as_str())) {
                    answer.lose();
                }
            }
            Err(error) => tracing::warn!(%error, "cannot renew the answers' leases; tried again in a second"),
        }
    }

    /// Waits until no answer is running, or until `deadline`; true when none is.
    pub async fn wait_idle(&self, deadline: Instant) -> bool {
        let mut running = self.running.subscribe();
        let idle = async move { running.wait_for(|count| *count == 0).await.is_ok() };
        tokio::time::timeout_at(deadline, idle).await.unwrap_or(false)
    }
}

impl LiveAnswer {
    /// The text so far, to store; none once the answer is over (its end is stored).
    fn checkpoint(&self) -> Option<AnswerWrite> {
        // Cleared before reading: text that arrives after this read marks it again.
        self.unsaved.store(false, Ordering::Release);
        let state = lock(&self.state);
        state.last.is_none().then(|| AnswerWrite::Checkpoint {
            message_id: self.message_id.clone(),
            content: state.text.clone(),
            chunk_seq: state.seq,
            generation: self.generation,
        })
    }

    /// Sends a follower on another instance the chunks from `from_seq` it lacks (and
    /// the end, if the answer is over), then every chunk as it comes. Under the state
    /// lock, like publishing: nothing falls between the catch-up and the feed.
    fn add_remote_follower(&self, bus: &Bus, request: &FollowRequest) {
        let state = lock(&self.state);
        let first = request.from_seq.max(state.base_seq + 1);
        if request.from_seq <= state.base_seq {
            // Older than this owner's start: the follower re-syncs from the database.
            tracing::debug!(message_id = %self.message_id, "follower behind a takeover's start");
        }
        let mut tokens = Vec::new();
        for seq in first..=state.seq {
            let index = (seq - state.base_seq - 1) as usize;
            let start = if index == 0 { state.base_len } else { state.ends[index - 1] as usize };
            let end = state.ends[index] as usize;
            tokens.push((seq, state.text[start..end].to_string()));
        }
        let last = state.last.as_ref().map(ServerFrame::to_json);
        if !tokens.is_empty() || last.is_some() {
            bus.send_tokens(
                &request.reply_channel,
                AnswerTokens { m: self.message_id.clone(), g: self.generation, t: tokens, e: last.clone() },
            );
        }
        if last.is_none() {
            let mut remote = lock(&self.remote);
            if !remote.contains(&request.reply_channel) {
                remote.push(request.reply_channel.clone());
            }
            self.has_remote.store(true, Ordering::Release);
        }
    }

    pub fn stop(&self) {
        self.halt(Halt::Stopped);
    }

    /// The answer is no longer this instance's ([`Halt::Lost`]). A stop already asked
    /// for goes first: the student's stop is not turned into a hand-over.
    fn lose(&self) {
        self.halt(Halt::Lost);
    }

    /// Marks the answer as followed elsewhere from now on, and tells its followers
    /// with an empty last frame (`socket::on_followed`). Under the state lock, so a
    /// socket subscribing meanwhile either hears the frame or sees the mark.
    fn hand_over(&self) {
        let mut state = lock(&self.state);
        state.handed_over = true;
        let _ = self.frames.send(Published { json: Utf8Bytes::from_static(""), terminal: true, at: Instant::now() });
    }

    fn halt(&self, why: Halt) {
        self.stop.send_if_modified(|halt| {
            let first = *halt == Halt::No;
            if first {
                *halt = why;
            }
            first
        });
    }

    /// The text so far and the frames after it. Taken under the lock the writer
    /// holds while publishing, so nothing falls between the snapshot and the feed.
    /// `None` once another instance took the answer over: it is followed there.
    pub fn follow(self: &Arc<Self>) -> Option<(ServerFrame, Option<ServerFrame>, Follower)> {
        let state = lock(&self.state);
        if state.handed_over {
            return None;
        }
        let receiver = self.frames.subscribe();
        let status = match &state.last {
            None => AnswerStatus::Streaming,
            Some(ServerFrame::End {
                reason: EndReason::Stopped,
                ..
            }) => AnswerStatus::Stopped,
            Some(ServerFrame::End { .. }) => AnswerStatus::Complete,
            Some(ServerFrame::Error {
                code: ErrorCode::Interrupted,
                ..
            }) => AnswerStatus::Interrupted,
            Some(_) => AnswerStatus::Error,
        };
        let snapshot = ServerFrame::Snapshot {
            message_id: self.message_id.clone(),
            content: state.text.clone(),
            seq: state.seq,
            status,
            live: state.last.is_none(),
            code: match &state.last {
                Some(ServerFrame::Error { code, .. }) => Some(*code),
                _ => None,
            },
        };
        let last = state.last.clone();
        drop(state);
        Some((
            snapshot,
            last,
            Follower {
                answer: self.clone(),
                frames: receiver,
            },
        ))
    }

    fn publish(&self, bus: &Bus, frame: &ServerFrame, update: impl FnOnce(&mut LiveState)) {
        let json = frame.to_json();
        let terminal = matches!(frame, ServerFrame::End { .. } | ServerFrame::Error { .. });
        let mut state = lock(&self.state);
        update(&mut state);
        if self.has_remote.load(Ordering::Acquire) {
            let tokens = match frame {
                ServerFrame::Chunk { content, seq, .. } => {
                    AnswerTokens { m: self.message_id.clone(), g: self.generation, t: vec![(*seq, content.clone())], e: None }
                }
                _ => AnswerTokens { m: self.message_id.clone(), g: self.generation, t: Vec::new(), e: Some(json.clone()) },
            };
            for channel in lock(&self.remote).iter() {
                bus.send_tokens(channel, tokens.clone());
            }
        }
        // No follower is fine: the answer is still stored.
        let _ = self.frames.send(Published { json: json.into(), terminal, at: Instant::now() });
    }
}

/// Resolves with the first halt requested; never, if none is. One future for the
/// whole answer, so a token does not cost a waiter registration on the stop signal.
/// A halt already set counts: a stop sent right behind the question (Esc before the
/// first token) can reach the socket before this task first runs.
async fn halt_requested(mut stop: watch::Receiver<Halt>) -> Halt {
    let first = stop.wait_for(|halt| *halt != Halt::No).await.map(|halt| *halt);
    match first {
        Ok(halt) => halt,
        Err(_) => std::future::pending().await,
    }
}

/// Streams one answer to its end: publishes each chunk, leaves the text for the
/// writer's next checkpoint, and stores the final state.
async fn run(live: &LiveAnswers, answer: &Arc<LiveAnswer>, mut stream: AnswerStream) {
    let halt = halt_requested(answer.stop.subscribe());
    tokio::pin!(halt);
    let mut seq = lock(&answer.state).seq;
    let bus = &live.bus;
    // For the dashboard's time to first token.
    let mut first_token_at = None;
    let started = Instant::now();
    let id = &answer.message_id;
    let (status, code, usage, last) = loop {
        tokio::select! {
            delta = stream.next_delta() => match delta {
                Ok(Some(content)) => {
                    seq += 1;
                    if first_token_at.is_none() {
                        first_token_at = Some(now_ms());
                        live.metrics.first_token(started.elapsed());
                    }
                    live.metrics.token_relayed();
                    let frame = ServerFrame::Chunk { content, seq, message_id: id.clone() };
                    answer.publish(bus, &frame, |s| {
                        if let ServerFrame::Chunk { content, .. } = &frame {
                            s.text.push_str(content);
                        }
                        s.seq = seq;
                        s.ends.push(u32::try_from(s.text.len()).unwrap_or(u32::MAX));
                    });
                    live.mark_unsaved(answer);
                }
                Ok(None) => {
                    let reason = stream.end_reason();
                    let usage = stream.usage();
                    let end = ServerFrame::End { message_id: id.clone(), seq, reason, usage };
                    break (AnswerStatus::Complete, None, usage, end);
                }
                Err(error) => {
                    tracing::warn!(%error, message_id = %id, "upstream failed");
                    let frame = ServerFrame::Error {
                        code: error.code(),
                        message: error.client_message(),
                        message_id: Some(id.clone()),
                        retry_after: error.retry_after(),
                    };
                    break (AnswerStatus::Error, Some(error.code()), None, frame);
                }
            },
            halt = &mut halt => match halt {
                Halt::Stopped | Halt::No => {
                    let end = ServerFrame::End { message_id: id.clone(), seq, reason: EndReason::Stopped, usage: None };
                    break (AnswerStatus::Stopped, None, None, end);
                }
                Halt::Shutdown => {
                    // Released, not ended: its followers reconnect elsewhere and follow
                    // it there, where another instance continues it.
                    let text = lock(&answer.state).text.clone();
                    drop(stream);
                    let release = AnswerWrite::Release { message_id: id.clone(), content: text, chunk_seq: seq, generation: answer.generation };
                    if let Err(error) = Box::pin(live.store_finish(release)).await {
                        tracing::error!(%error, message_id = %id, "cannot release the answer; it is taken over when its lease lapses");
                    }
                    // Its sockets stop following (nothing is sent): they close with 1001.
                    answer.hand_over();
                    return;
                }
                Halt::Lost => {
                    tracing::warn!(message_id = %id, "this answer is no longer this instance's (its lease lapsed and another owner took it, or it was deleted); letting it go");
                    drop(stream); // no second model call for the same answer
                    // Gone from here before its sockets hear it: they follow the
                    // answer again, from the database and the taker. One that looks
                    // at it after this sees `handed_over` (`LiveAnswer::follow`).
                    {
                        let mut answers = lock(&live.answers);
                        if answers.get(id).is_some_and(|current| Arc::ptr_eq(current, answer)) {
                            answers.remove(id);
                        }
                    }
                    answer.hand_over();
                    return;
                }
            },
        }
    };
    let text = lock(&answer.state).text.clone();
    // Counted even when the model's own count never came (stopped, cut, failed).
    let usage = usage.or_else(|| stream.usage_or_estimate(text.chars().count()));
    if let Some(status) = stream.upstream_status() {
        live.metrics.upstream_status(status);
    }
    drop(stream); // ends the upstream request before the final write
    let finish = AnswerWrite::Finish {
        message_id: id.clone(),
        content: text,
        chunk_seq: seq,
        status,
        error_code: code,
        usage,
        finished_at: now_ms(),
        first_token_at,
        generation: answer.generation,
    };
    // Boxed: this last write's future is larger than the whole token loop, and inline
    // it would be held by every streaming answer from its start.
    if let Err(error) = Box::pin(live.store_finish(finish)).await {
        tracing::error!(%error, message_id = %id, "cannot store the finished answer");
    }
    live.metrics.answer_ended(&last);
    if let ServerFrame::Error { code, .. } = &last {
        live.metrics.error_sent(*code);
    }
    // Published after the final write: a reload after `end` shows the finished answer.
    answer.publish(bus, &last, |s| s.last = Some(last.clone()));
}

/// Follow and stop requests from other instances for answers this one streams.
async fn serve_owner_requests(live: Weak<LiveAnswers>, mut requests: mpsc::UnboundedReceiver<OwnerRequest>) {
    while let Some(request) = requests.recv().await {
        let Some(registry) = live.upgrade() else { return };
        match request {
            OwnerRequest::Follow(follow) => {
                if let Some(answer) = registry.get(&follow.message_id) {
                    answer.add_remote_follower(&registry.bus, &follow);
                }
            }
            OwnerRequest::Stop(message_id) => {
                if let Some(answer) = registry.get(&message_id) {
                    answer.stop();
                }
            }
            OwnerRequest::TakenOver { message_id, generation } => {
                if let Some(answer) = registry.get(&message_id).filter(|answer| answer.generation < generation) {
                    answer.lose();
                }
            }
        }
    }
}

/// The instance's one writer of answer rows. Checkpoints: once a second, every answer
/// whose text grew, in one transaction. Ends: as they come, each batch of those
/// waiting in one transaction, then each waiting answer is told.
async fn write_answers(
    live: Weak<LiveAnswers>,
    db: Arc<Db>,
    metrics: Arc<Metrics>,
    mut queue: mpsc::UnboundedReceiver<Finish>,
) {
    let mut tick = tokio::time::interval_at(Instant::now() + CHECKPOINT_EVERY, CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let Some(registry) = live.upgrade() else { return };
                let unsaved = registry.take_unsaved();
                registry.renew_leases().await;
                drop(registry);
                for answers in unsaved.chunks(MAX_ROWS_PER_COMMIT) {
                    let checkpoints: Vec<AnswerWrite> =
                        answers.iter().filter_map(|answer| answer.checkpoint()).collect();
                    store_checkpoints(&db, &metrics, &checkpoints).await;
                }
            }
            first = queue.recv() => {
                let Some(first) = first else { return };
                let mut batch = vec![first];
                while batch.len() < MAX_ROWS_PER_COMMIT {
                    match queue.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                store_finishes(&db, &metrics, batch).await;
            }
        }
    }
}

/// Stores a batch of checkpoints in one statement; if that fails, each on its own, so
/// one row the database refuses does not keep fifteen others unsaved second after
/// second. A checkpoint that fails is carried by the next one (the whole text so far).
async fn store_checkpoints(db: &Db, metrics: &Metrics, checkpoints: &[AnswerWrite]) {
    let Err(error) = timed_write(db, metrics, checkpoints).await else { return };
    // Only a refusal by the database can be one row's fault; an outage or a pool
    // timeout would only be waited for sixteen more times, ahead of the answers' ends.
    let refused = matches!(error, StoreError::Sqlx(sqlx::Error::Database(_)));
    if checkpoints.len() == 1 || !refused {
        tracing::warn!(%error, answers = checkpoints.len(), "checkpoint failed; the next one carries the text");
        return;
    }
    tracing::warn!(%error, answers = checkpoints.len(), "checkpoints together failed; storing each alone");
    for checkpoint in checkpoints {
        if let Err(error) = timed_write(db, metrics, std::slice::from_ref(checkpoint)).await {
            tracing::warn!(%error, "checkpoint failed; the next one carries the text");
        }
    }
}

/// Stores a batch of ends in one transaction; if that fails, each on its own, so one
/// bad row cannot lose the others.
async fn store_finishes(db: &Db, metrics: &Metrics, batch: Vec<Finish>) {
    let (writes, waiting): (Vec<AnswerWrite>, Vec<_>) =
        batch.into_iter().map(|finish| (finish.write, finish.stored)).unzip();
    if writes.len() > 1 {
        match timed_write(db, metrics, &writes).await {
            Ok(()) => {
                for stored in waiting {
                    let _ = stored.send(Ok(()));
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, answers = writes.len(), "storing ends together failed; storing each alone");
            }
        }
    }
    for (write, stored) in writes.iter().zip(waiting) {
        let _ = stored.send(timed_write(db, metrics, std::slice::from_ref(write)).await);
    }
}

/// One answer-row transaction, its time recorded for `/metrics`.
async fn timed_write(db: &Db, metrics: &Metrics, writes: &[AnswerWrite]) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Ok(()); // no transaction, nothing to time
    }
    let started = Instant::now();
    let result = db.write_answers(writes).await;
    metrics.db_write(started.elapsed());
    result
}

/// An error frame about an answer this socket cannot follow.
pub fn not_found(message_id: &str) -> ServerFrame {
    ServerFrame::Error {
        code: ErrorCode::NotFound,
        message: "no such answer".into(),
        message_id: Some(message_id.to_string()),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_halt_set_before_the_writer_watches_still_halts() {
        let (stop, _) = watch::channel(Halt::No);
        stop.send_replace(Halt::Stopped);
        let watching = halt_requested(stop.subscribe());
        let halt = tokio::time::timeout(Duration::from_secs(5), watching).await;
        assert_eq!(halt.ok(), Some(Halt::Stopped));
    }

    #[tokio::test]
    async fn a_halt_set_while_watching_halts() {
        let (stop, _) = watch::channel(Halt::No);
        let watching = tokio::spawn(halt_requested(stop.subscribe()));
        tokio::task::yield_now().await;
        stop.send_replace(Halt::Shutdown);
        let halt = tokio::time::timeout(Duration::from_secs(5), watching).await;
        assert_eq!(halt.ok().and_then(Result::ok), Some(Halt::Shutdown));
    }
}
