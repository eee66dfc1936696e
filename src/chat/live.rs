//! Answers outlive their sockets. Each answer is streamed by a task of its own that
//! stores it and publishes its frames; sockets follow it, and a socket that reconnects
//! (or a page that reloads) follows it again from a snapshot. A dropped network or a
//! reload therefore loses no token: the answer goes on being written and stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tracing::Instrument;

use crate::history::store::Db;
use crate::protocol::{AnswerStatus, EndReason, ErrorCode, ServerFrame};
use crate::upstream::AnswerStream;

/// Partial answers are saved at most this often, so a crash loses at most this much.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Frames a slow follower may fall behind before it re-syncs from a snapshot.
const FOLLOWER_BUFFER: usize = 64;

/// The answers this instance is streaming, by message id.
#[derive(Default)]
pub struct LiveAnswers {
    answers: Mutex<HashMap<String, Arc<LiveAnswer>>>,
}

pub struct LiveAnswer {
    pub message_id: String,
    pub user_id: String,
    state: Mutex<LiveState>,
    frames: broadcast::Sender<Published>,
    stop: watch::Sender<Halt>,
}

/// Why an answer is ended before the model finished it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Halt {
    No,
    /// The student pressed stop.
    Stopped,
    /// The server is shutting down and the grace period is over.
    Shutdown,
}

#[derive(Default)]
struct LiveState {
    text: String,
    seq: u64,
    /// The `end` or `error` frame, once the answer is over.
    last: Option<ServerFrame>,
}

/// A frame as published: encoded once, sent by every follower without copying.
#[derive(Clone)]
pub struct Published {
    pub json: Utf8Bytes,
    /// `end` or `error`: the answer is over.
    pub terminal: bool,
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
    pub fn get(&self, message_id: &str) -> Option<Arc<LiveAnswer>> {
        lock(&self.answers).get(message_id).cloned()
    }

    /// Starts streaming an answer whose row exists (status `streaming`); returns a
    /// follower that sees every frame from the first chunk.
    pub fn start(
        self: &Arc<Self>,
        db: Arc<Db>,
        message_id: String,
        user_id: String,
        stream: AnswerStream,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Follower {
        let (frames, receiver) = broadcast::channel(FOLLOWER_BUFFER);
        let answer = Arc::new(LiveAnswer {
            message_id: message_id.clone(),
            user_id,
            state: Mutex::new(LiveState::default()),
            frames,
            stop: watch::channel(Halt::No).0,
        });
        lock(&self.answers).insert(message_id, answer.clone());
        let registry = self.clone();
        let task_answer = answer.clone();
        tokio::spawn(
            async move {
                run(&task_answer, stream, &db).await;
                lock(&registry.answers).remove(&task_answer.message_id);
                // The server-wide answer slot is free again.
                drop(slot);
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

    /// Shutdown, after the grace period: every answer still running ends now, stored
    /// as `interrupted` with its text so far.
    pub fn interrupt_all(&self) {
        for answer in lock(&self.answers).values() {
            answer.stop.send_replace(Halt::Shutdown);
        }
    }

    /// Waits until no answer is running, or until `deadline`; true when none is.
    pub async fn wait_idle(&self, deadline: Instant) -> bool {
        while !self.is_empty() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }
}

impl LiveAnswer {
    pub fn stop(&self) {
        self.stop.send_if_modified(|halt| {
            let first = *halt == Halt::No;
            if first {
                *halt = Halt::Stopped;
            }
            first
        });
    }

    /// The text so far and the frames after it. Taken under the lock the writer
    /// holds while publishing, so nothing falls between the snapshot and the feed.
    pub fn follow(self: &Arc<Self>) -> (ServerFrame, Option<ServerFrame>, Follower) {
        let state = lock(&self.state);
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
        };
        let last = state.last.clone();
        drop(state);
        (
            snapshot,
            last,
            Follower {
                answer: self.clone(),
                frames: receiver,
            },
        )
    }

    fn publish(&self, frame: &ServerFrame, update: impl FnOnce(&mut LiveState)) {
        let published = Published {
            json: frame.to_json().into(),
            terminal: matches!(frame, ServerFrame::End { .. } | ServerFrame::Error { .. }),
        };
        let mut state = lock(&self.state);
        update(&mut state);
        // No follower is fine: the answer is still stored.
        let _ = self.frames.send(published);
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Streams one answer to its end: publishes each chunk, checkpoints the text at most
/// once a second in the background, and stores the final state.
async fn run(answer: &LiveAnswer, mut stream: AnswerStream, db: &Arc<Db>) {
    let mut stop = answer.stop.subscribe();
    let mut seq = 0u64;
    let mut checkpoint_at: Option<Instant> = None;
    let id = &answer.message_id;
    let (status, code, usage, last) = loop {
        tokio::select! {
            delta = stream.next_delta() => match delta {
                Ok(Some(content)) => {
                    seq += 1;
                    checkpoint_at.get_or_insert_with(|| Instant::now() + CHECKPOINT_EVERY);
                    let frame = ServerFrame::Chunk { content, seq, message_id: id.clone() };
                    answer.publish(&frame, |s| {
                        if let ServerFrame::Chunk { content, .. } = &frame {
                            s.text.push_str(content);
                        }
                        s.seq = seq;
                    });
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
            _ = sleep_until_some(checkpoint_at) => {
                checkpoint_at = None;
                let text = lock(&answer.state).text.clone();
                let (db, id) = (db.clone(), id.clone());
                tokio::spawn(async move {
                    // The store's guard on `seq` keeps a late write from undoing a newer one.
                    if let Err(error) = db.checkpoint(&id, &text, seq).await {
                        tracing::warn!(%error, "checkpoint failed; the next one carries the text");
                    }
                }.in_current_span());
            }
            Ok(()) = stop.changed() => {
                match *stop.borrow_and_update() {
                    Halt::No => continue,
                    Halt::Stopped => {
                        let end = ServerFrame::End { message_id: id.clone(), seq, reason: EndReason::Stopped, usage: None };
                        break (AnswerStatus::Stopped, None, None, end);
                    }
                    Halt::Shutdown => {
                        let frame = ServerFrame::Error {
                            code: ErrorCode::Interrupted,
                            message: "The server restarted before this answer finished; the text so far is kept.".into(),
                            message_id: Some(id.clone()),
                            retry_after: None,
                        };
                        break (AnswerStatus::Interrupted, Some(ErrorCode::Interrupted), None, frame);
                    }
                }
            }
        }
    };
    drop(stream); // ends the upstream request before the final write
    let text = lock(&answer.state).text.clone();
    if let Err(error) = db.finish_message(id, &text, seq, status, code, usage).await {
        tracing::error!(%error, message_id = %id, "cannot store the finished answer");
    }
    // Published after the final write: a reload after `end` shows the finished answer.
    answer.publish(&last, |s| s.last = Some(last.clone()));
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
