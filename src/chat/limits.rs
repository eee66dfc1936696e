//! Caps that protect the instance: open sockets per user, and (with a semaphore in
//! [`crate::state::AppState`]) answers streamed at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Open chat sockets, per session, on this instance.
pub struct Connections {
    /// Keyed by a shared string: the key (a session token's hash, or an address) is
    /// also held by each of its sockets' guards, and a hash is long.
    open: Mutex<HashMap<Arc<str>, Open>>,
    /// All sockets together: shutdown waits on it instead of polling.
    total: watch::Sender<usize>,
    /// Keys (sessions) a sign-in replaced lately, and when: a tab that reconnects
    /// before its browser holds the account's cookie is told `session_changed` again.
    replaced: Mutex<HashMap<String, Instant>>,
}

/// How long a replaced session's sockets are sent on to the account.
const REPLACED_KEPT: Duration = Duration::from_secs(60);

impl Default for Connections {
    fn default() -> Self {
        Connections {
            open: Mutex::default(),
            total: watch::channel(0).0,
            replaced: Mutex::default(),
        }
    }
}

/// The sockets of one key, and the signal that ends them all (a sign-out, a sign-in).
struct Open {
    count: usize,
    revoked: watch::Sender<Option<SessionEnd>>,
}

/// Why a session's sockets are ended before they close themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Signed out, or deleted by the cleanup (expired, or a guest idle too long): the
    /// browser is a new guest now, and its pages must start over.
    SignedOut,
    /// Signed in or up: the browser's cookie names the account now, which has the
    /// guest's conversations; its sockets reconnect as the account.
    SignedIn,
}

/// Held by a socket for its lifetime; dropping it frees the place.
pub struct ConnectionGuard {
    connections: Arc<Connections>,
    key: Arc<str>,
}

impl Connections {
    /// A place for one more socket of `key`, unless it already has `cap`.
    pub fn try_open(self: &Arc<Self>, key: &str, cap: usize) -> Option<ConnectionGuard> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let key: Arc<str> = match open.get_key_value(key) {
            Some((shared, _)) => shared.clone(),
            None => Arc::from(key),
        };
        let entry = open.entry(key.clone()).or_insert_with(|| Open {
            count: 0,
            revoked: watch::channel(self.replaced_lately(&key)).0,
        });
        if entry.count >= cap {
            return None;
        }
        entry.count += 1;
        self.total.send_modify(|total| *total += 1);
        Some(ConnectionGuard {
            connections: self.clone(),
            key,
        })
    }

    /// Says why once the key's sockets must end (its session was signed out, deleted
    /// by the cleanup, or replaced by a sign-in); a key with no open socket gets a receiver that never does.
    fn revocation(&self, key: &str) -> watch::Receiver<Option<SessionEnd>> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        match open.get(key) {
            Some(entry) => entry.revoked.subscribe(),
            None => watch::channel(None).1,
        }
    }

    /// Ends every open socket of `key` on this instance (and, after a sign-in, those
    /// it opens in the next minute).
    pub fn revoke(&self, key: &str, why: SessionEnd) {
        if why == SessionEnd::SignedIn {
            let mut replaced = self.replaced.lock().unwrap_or_else(|p| p.into_inner());
            replaced.retain(|_, at| at.elapsed() < REPLACED_KEPT);
            replaced.insert(key.to_string(), Instant::now());
        }
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = open.get(key) {
            entry.revoked.send_replace(Some(why));
        }
    }

    /// `SignedIn` when a sign-in replaced `key` in the last minute.
    fn replaced_lately(&self, key: &str) -> Option<SessionEnd> {
        let replaced = self.replaced.lock().unwrap_or_else(|p| p.into_inner());
        replaced.get(key).filter(|at| at.elapsed() < REPLACED_KEPT).map(|_| SessionEnd::SignedIn)
    }

    /// Sockets open on this instance, all users together.
    pub fn total(&self) -> usize {
        *self.total.borrow()
    }

    /// Waits until every socket has closed, or until `deadline`; true when all have.
    pub async fn wait_closed(&self, deadline: tokio::time::Instant) -> bool {
        let mut total = self.total.subscribe();
        let closed = async move { total.wait_for(|open| *open == 0).await.is_ok() };
        tokio::time::timeout_at(deadline, closed).await.unwrap_or(false)
    }
}

impl ConnectionGuard {
    /// Says why once this place's key is revoked (its session signed out or in, here
    /// or on another instance).
    pub fn revocation(&self) -> watch::Receiver<Option<SessionEnd>> {
        self.connections.revocation(&self.key)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut open = self.connections.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = open.get_mut(&*self.key) {
            entry.count -= 1;
            if entry.count == 0 {
                open.remove(&*self.key);
            }
            self.connections.total.send_modify(|total| *total -= 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_per_key_freed_on_drop() {
        let connections = Arc::new(Connections::default());
        let a1 = connections.try_open("a", 2).unwrap();
        let _a2 = connections.try_open("a", 2).unwrap();
        assert!(connections.try_open("a", 2).is_none());
        let _b = connections.try_open("b", 2).unwrap();
        assert_eq!(connections.total(), 3);
        drop(a1);
        assert!(connections.try_open("a", 2).is_some());
    }
}
