//! A class arriving at once: new students' first questions share write transactions
//! (group commit). A first question makes the guest, its session, the conversation,
//! the question and answer rows and the sources: seven statements, and on SQLite
//! every one waits for the single writer and costs a round trip to sqlx's SQLite
//! thread. Questions that come while a transaction runs wait here, and the next
//! transaction stores them all with one multi-row statement per table
//! (`chat::first_answers`). See docs/storage.md, "A class arriving".
//!
//! A task stores them: started by the question that finds the queue idle, it runs
//! transactions while questions wait and ends when none do. A student whose socket
//! closes does not cancel a transaction that holds others' questions.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::first_answers::NewStudent;
use super::store::{BeginError, BegunAnswer, NewAnswer};
use crate::db::Db;

/// The most questions one transaction stores: its statements' parameters stay well
/// under both backends' limits, and a transaction holds the writer briefly.
const MOST_AT_ONCE: usize = 32;

#[derive(Default)]
pub struct Arrivals {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    transactions: AtomicU64,
    students: AtomicU64,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// The task that stores them runs.
    stored_by_task: bool,
}

struct Waiting {
    student: NewStudent,
    reply: oneshot::Sender<Stored>,
}

enum Stored {
    Done(Result<BegunAnswer, BeginError>),
    /// The shared transaction failed: store the question alone.
    Alone,
}

impl Arrivals {
    /// Begins an answer as [`Db::begin_answer`] does; a new student's first question
    /// (`creates_guest`, in a new conversation) waits to share the next write
    /// transaction with the others.
    pub async fn begin_answer(&self, db: &Arc<Db>, new: &NewAnswer<'_>) -> Result<BegunAnswer, BeginError> {
        // A new session naming a conversation (a tab whose account session expired):
        // the single path refuses it as someone else's.
        let (Some(guests_per_hour), None, None) = (new.creates_guest, new.conversation_id, new.version_of) else {
            return db.begin_answer(new).await;
        };
        let student = NewStudent::new(new, guests_per_hour)?;
        let (reply, stored) = oneshot::channel();
        let start_task = {
            let mut queue = self.shared.lock();
            queue.waiting.push_back(Waiting { student, reply });
            !std::mem::replace(&mut queue.stored_by_task, true)
        };
        if start_task {
            tokio::spawn(store_while_waiting(self.shared.clone(), db.clone()));
        }
        match stored.await {
            Ok(Stored::Done(result)) => result,
            // The transaction failed, or its task ended with this question taken:
            // nothing of it was stored.
            Ok(Stored::Alone) | Err(_) => db.begin_answer(new).await,
        }
    }

    /// (transactions, students stored by them) so far, for tests and benchmarks.
    pub fn stored(&self) -> (u64, u64) {
        (self.shared.transactions.load(Ordering::Relaxed), self.shared.students.load(Ordering::Relaxed))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic elsewhere cannot leave the queue half-changed: every change is one step.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True, and the task is done, when no question waits.
    fn done_if_idle(&self) -> bool {
        let mut queue = self.lock();
        let idle = queue.waiting.is_empty();
        if idle {
            queue.stored_by_task = false;
        }
        idle
    }

    /// The questions for one transaction, in the order they came; `None` (and the
    /// task is done) when none wait. A second question of the same session waits for
    /// the next transaction: the first makes the session's user, and the second then
    /// asks as that user.
    fn take_batch(&self) -> Option<Vec<Waiting>> {
        let mut queue = self.lock();
        let mut sessions = HashSet::new();
        let mut batch = Vec::new();
        let mut left = VecDeque::new();
        while let Some(waiting) = queue.waiting.pop_front() {
            if waiting.reply.is_closed() {
                continue; // its asker is gone
            }
            if batch.len() < MOST_AT_ONCE && sessions.insert(waiting.student.session_key().to_owned()) {
                batch.push(waiting);
            } else {
                left.push_back(waiting);
            }
        }
        queue.waiting = left;
        if batch.is_empty() {
            queue.stored_by_task = false;
            return None;
        }
        Some(batch)
    }
}

/// The task: one transaction after another while questions wait.
async fn store_while_waiting(shared: Arc<Shared>, db: Arc<Db>) {
    let mut ending = TaskEnd(Some(&shared));
    loop {
        if shared.done_if_idle() {
            ending.0 = None;
            return;
        }
        let tx = db.begin_write().await;
        // Taken once the writer is ours: those who came while we waited for it join.
        let Some(batch) = shared.take_batch() else {
            // All gone meanwhile; the empty transaction is rolled back as it drops.
            ending.0 = None;
            return;
        };
        let students: Vec<&NewStudent> = batch.iter().map(|waiting| &waiting.student).collect();
        let outcome = match tx {
            Ok(tx) => db.begin_first_answers(tx, &students).await,
            Err(error) => Err(error.into()),
        };
        match outcome {
            Ok(results) => {
                let stored = results.iter().filter(|result| result.is_ok()).count();
                shared.transactions.fetch_add(1, Ordering::Relaxed);
                shared.students.fetch_add(stored as u64, Ordering::Relaxed);
                for (waiting, result) in batch.into_iter().zip(results) {
                    let _ = waiting.reply.send(Stored::Done(result));
                }
            }
            Err(error) => {
                tracing::warn!(%error, students = batch.len(), "a shared first-question transaction failed; each is stored alone");
                for waiting in batch {
                    let _ = waiting.reply.send(Stored::Alone);
                }
            }
        }
    }
}

/// Should the task end any other way (a panic, the runtime shutting down), those still
/// waiting store their questions alone, and the next question starts a new task.
struct TaskEnd<'a>(Option<&'a Shared>);

impl Drop for TaskEnd<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.0 {
            let mut queue = shared.lock();
            queue.waiting.clear(); // their senders dropped: each asker stores alone
            queue.stored_by_task = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::budget::QuestionBudget;
    use crate::db::{database_url, new_id};

    fn first_question<'a>(user_id: &'a str, session_token: &'a str) -> NewAnswer<'a> {
        NewAnswer {
            user_id,
            conversation_id: None,
            question: "what is a WebSocket?",
            budget_chars: 1_000,
            owner_instance: "test",
            sources_json: None,
            budget: QuestionBudget { capacity: 0, refill_ms: 0 },
            budget_now: 0,
            address: "127.0.0.1",
            questions_per_minute_per_address: 0,
            session_token,
            max_conversations: 10,
            retrieval_score: None,
            sources: &[],
            answers_at_once_per_user: 0,
            version_of: None,
            creates_guest: Some(0),
            ask_id: None,
        }
    }

    /// Students whose sockets close while their questions wait (the first of them
    /// started the task) do not hold up the others: their questions are left out of
    /// the transaction, the rest are stored, and the task ends when none wait.
    #[tokio::test(flavor = "current_thread")]
    async fn questions_whose_askers_went_away_are_left_out() {
        let temp = tempfile::Builder::new().prefix("tutor-arrivals-").tempdir().unwrap();
        let dir = temp.path();
        let db = Arc::new(Db::connect(&database_url(None, dir), 4).await.unwrap());
        let arrivals = Arrivals::default();
        let users: Vec<String> = (0..4).map(|_| new_id()).collect();
        let tokens: Vec<String> = (0..4).map(|i| format!("session-{i}")).collect();
        let asks: Vec<NewAnswer<'_>> = (0..4).map(|i| first_question(&users[i], &tokens[i])).collect();
        let busy_writer = db.begin_write().await.unwrap();
        let mut first = Box::pin(arrivals.begin_answer(&db, &asks[0]));
        let mut second = Box::pin(arrivals.begin_answer(&db, &asks[1]));
        let mut third = Box::pin(arrivals.begin_answer(&db, &asks[2]));
        for waiting in [first.as_mut(), second.as_mut(), third.as_mut()] {
            assert!(futures::poll!(waiting).is_pending());
        }
        drop(first);
        drop(second);
        busy_writer.rollback().await.unwrap();
        let begun = tokio::time::timeout(std::time::Duration::from_secs(10), third).await.expect("the third is stored");
        assert!(begun.is_ok(), "{begun:?}");
        let fourth = arrivals.begin_answer(&db, &asks[3]).await;
        assert!(fourth.is_ok(), "{fourth:?}");
        for (i, user) in users.iter().enumerate() {
            let made = db.find_user(&tokens[i]).await.unwrap();
            assert_eq!(made.as_ref() == Some(user), i >= 2, "student {i}");
        }
        assert_eq!(arrivals.stored(), (2, 2));
    }
}
