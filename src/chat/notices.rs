//! Frames for a student that no answer of theirs carries — a teacher's reply, a
//! question asked or a conversation renamed in another tab — sent to every socket
//! the student has open on this instance (the bus brings other instances' to it). A
//! socket subscribes for its user; the entry goes when its last socket does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast;

use crate::protocol::ServerFrame;

/// Notices a slow socket may fall behind on before it misses some (history has them).
const NOTICE_BUFFER: usize = 16;

/// A notice as sent: the frame, and the socket that caused it (which skips it).
#[derive(Clone)]
pub struct Notice {
    pub json: Utf8Bytes,
    pub from_socket: Option<u64>,
}

#[derive(Default)]
pub struct Notices {
    by_user: Mutex<HashMap<String, broadcast::Sender<Notice>>>,
    next_socket: AtomicU64,
}

/// A socket's feed of its user's notices.
pub struct Subscription {
    pub frames: broadcast::Receiver<Notice>,
    /// This socket's number: notices it caused itself are not sent back to it.
    pub socket: u64,
    user: String,
    notices: Arc<Notices>,
}

/// The key a socket whose session has no user yet listens on: the tab that asks the
/// session's first question makes the user, and tells the session's other tabs here
/// (they then follow the user). Keyed by the token's hash (its first 128 bits: the key
/// is held by every such socket): tokens never travel the bus.
pub fn session_key(token_hash: &str) -> String {
    format!("s:{}", token_hash.get(..32).unwrap_or(token_hash))
}

/// What a session's other tabs hear before they know the user: the question asked.
const SESSION_BUFFER: usize = 1;

impl Notices {
    pub fn subscribe(self: &Arc<Self>, user: &str) -> Subscription {
        self.subscribe_with(user, NOTICE_BUFFER)
    }

    /// Listens on [`session_key`] until the socket knows its user (a small buffer: a
    /// guest's idle tab costs little).
    pub fn subscribe_session(self: &Arc<Self>, key: &str) -> Subscription {
        self.subscribe_with(key, SESSION_BUFFER)
    }

    fn subscribe_with(self: &Arc<Self>, user: &str, capacity: usize) -> Subscription {
        let mut by_user = self.by_user.lock().unwrap_or_else(|p| p.into_inner());
        let frames = by_user
            .entry(user.to_string())
            .or_insert_with(|| broadcast::channel(capacity).0)
            .subscribe();
        let socket = self.next_socket.fetch_add(1, Ordering::Relaxed) + 1;
        Subscription { frames, socket, user: user.to_string(), notices: self.clone() }
    }

    /// Sends a frame to the user's open sockets here; returns how many there were.
    pub fn publish(&self, user: &str, frame: &ServerFrame) -> usize {
        self.publish_json(user, frame.to_json().into(), None)
    }

    /// Sends an encoded frame to the user's open sockets here but `from_socket`.
    pub fn publish_json(&self, user: &str, json: Utf8Bytes, from_socket: Option<u64>) -> usize {
        let by_user = self.by_user.lock().unwrap_or_else(|p| p.into_inner());
        match by_user.get(user) {
            Some(sender) => sender.send(Notice { json, from_socket }).unwrap_or(0),
            None => 0,
        }
    }

    /// Users with a socket subscribed (for tests: entries do not pile up).
    pub fn users(&self) -> usize {
        self.by_user.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Subscription {
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut by_user = self.notices.by_user.lock().unwrap_or_else(|p| p.into_inner());
        // This subscription's receiver is still alive here: it is the last when it is 1.
        if by_user.get(&self.user).is_some_and(|sender| sender.receiver_count() <= 1) {
            by_user.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_socket_of_the_user_gets_it_and_the_entry_goes_with_the_last() {
        let notices = Arc::new(Notices::default());
        let mut first = notices.subscribe("ann");
        let mut second = notices.subscribe("ann");
        let other = notices.subscribe("bob");
        let frame = ServerFrame::Pong { t: 1.0 };
        assert_eq!(notices.publish("ann", &frame), 2);
        assert_eq!(first.frames.recv().await.unwrap().json.as_str(), frame.to_json());
        assert_eq!(second.frames.recv().await.unwrap().json.as_str(), frame.to_json());
        assert_eq!(notices.publish("carol", &frame), 0);
        drop(first);
        assert_eq!(notices.users(), 2);
        drop(second);
        drop(other);
        assert_eq!(notices.users(), 0);
    }
}
