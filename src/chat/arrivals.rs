//! A class arriving at once: new students' first questions share write transactions
//! (group commit). A first question makes the guest, its session, the conversation,
//! the question and answer rows and the sources: seven statements, and on SQLite
//! every one waits for the single writer and costs a round trip to sqlx's SQLite
//! thread. Questions that come while a transaction runs wait here, and the next
//! transaction stores them all with one multi-row statement per table
//! (`Db::begin_first_answers`). See docs/storage.md, "A class arriving".
//!
//! A task stores them: started by the question that finds the queue idle, it runs
//! transactions while questions wait and ends when none do. A student whose socket
//! closes does not cancel a transaction that holds others' questions.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::budget::BudgetLevel;
use super::store::{first_question_budget, record_sources, BeginError, BegunAnswer, NewAnswer};
use crate::account::store::hash_token;
use crate::db::{
    in_list, insert_address_events, new_id, now_ms, values_placeholders, AddressBudget, AddressEvent, Db, StoreError, WriteTx,
};
use crate::history::store::{insert_messages, NewMessageRow};
use crate::history::{MessageRole, MessageStatus};
use crate::protocol::Source;

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
            if batch.len() < MOST_AT_ONCE && sessions.insert(waiting.student.session_token.clone()) {
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

/// A new student's first question, owned: it waits in the queue for a transaction
/// another caller may run.
pub(crate) struct NewStudent {
    user_id: String,
    session_token: String,
    address: String,
    guests_per_hour: u32,
    questions_per_minute_per_address: u32,
    question: String,
    owner_instance: String,
    sources_json: Option<String>,
    retrieval_score: Option<i64>,
    sources: Vec<Source>,
    /// Where the new user's question budget starts, and the level left after this one.
    questions_full_at: i64,
    budget_left: Option<BudgetLevel>,
}

impl NewStudent {
    /// The checks that need nothing stored: the question budget of a user made now,
    /// and a cap of no conversations at all.
    fn new(new: &NewAnswer<'_>, guests_per_hour: u32) -> Result<NewStudent, BeginError> {
        let (questions_full_at, budget_left) = first_question_budget(new)?;
        if new.max_conversations == 0 {
            return Err(BeginError::TooManyConversations { limit: 0 });
        }
        Ok(NewStudent {
            user_id: new.user_id.to_owned(),
            session_token: new.session_token.to_owned(),
            address: new.address.to_owned(),
            guests_per_hour,
            questions_per_minute_per_address: new.questions_per_minute_per_address,
            question: new.question.to_owned(),
            owner_instance: new.owner_instance.to_owned(),
            sources_json: new.sources_json.map(str::to_owned),
            retrieval_score: new.retrieval_score,
            sources: new.sources.to_vec(),
            questions_full_at,
            budget_left,
        })
    }
}

impl Db {
    /// New students' first questions in one write transaction, one multi-row statement
    /// per table: the guests, their sessions, their address budgets, the conversations,
    /// the questions and answers, the sources. Each student gets what
    /// [`Db::begin_answer`] would have given them alone, refusals included, and a
    /// refused student leaves nothing behind. `Err`: the transaction failed, and
    /// nothing of it was stored.
    pub(crate) async fn begin_first_answers(
        &self,
        mut tx: WriteTx,
        students: &[&NewStudent],
    ) -> Result<Vec<Result<BegunAnswer, BeginError>>, StoreError> {
        let mut now = now_ms();
        let mut refusals: Vec<Option<BeginError>> = students.iter().map(|_| None).collect();
        let mut writes = 0;
        // A session that names a user already (another tab made it a moment ago)
        // refuses its student, who asks again as that user.
        for (i, taken) in sessions_with_users(&mut tx, students, now).await?.into_iter().enumerate() {
            if taken {
                refusals[i] = Some(BeginError::SessionHasUser);
            }
        }
        // The guests and their sessions. On PostgreSQL another instance can still make
        // one of these sessions' user meanwhile: its student is refused as above, and
        // the rest go again without them.
        loop {
            let asking = still_asking(students, &refusals);
            if asking.is_empty() {
                tx.rollback().await?;
                return Ok(outcomes(students, refusals, &[]));
            }
            insert_guests(&mut tx, &asking, now).await?;
            let made = insert_sessions(&mut tx, &asking, now).await?;
            let taken: Vec<usize> = (0..students.len())
                .filter(|&i| refusals[i].is_none() && !made.contains(&hash_token(&students[i].session_token)))
                .collect();
            if taken.is_empty() {
                writes += 2;
                break;
            }
            tx.rollback().await?;
            for i in taken {
                refusals[i] = Some(BeginError::SessionHasUser);
            }
            tx = self.begin_write().await?;
            now = now_ms();
        }
        // The addresses' budgets, read once each and granted in the order the
        // questions came, as if each had its own transaction: a new guest first, then a
        // question.
        let (refused_by_address, events) = self.take_address_budgets(&mut tx, students, &mut refusals, now).await?;
        writes += events;
        if !refused_by_address.is_empty() {
            writes += 2;
            let refused: Vec<&NewStudent> = refused_by_address.iter().map(|&i| students[i]).collect();
            remove_guests(&mut tx, &refused).await?;
        }
        let asking: Vec<(usize, &NewStudent)> =
            (0..students.len()).filter(|&i| refusals[i].is_none()).map(|i| (i, students[i])).collect();
        if asking.is_empty() {
            tx.rollback().await?;
            return Ok(outcomes(students, refusals, &[]));
        }
        let ids: Vec<NewIds> = asking.iter().map(|_| NewIds::new()).collect();
        let sql = format!(
            "INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES {}",
            values_placeholders(asking.len(), 5)
        );
        let mut query = sqlx::query(&sql).persistent(asking.len() == 1);
        for ((_, student), id) in asking.iter().zip(&ids) {
            query = query
                .bind(&id.conversation)
                .bind(&student.user_id)
                .bind(crate::history::title_from_question(&student.question))
                .bind(now)
                .bind(now);
        }
        query.execute(&mut *tx).await?;
        let rows: Vec<NewMessageRow<'_>> = asking
            .iter()
            .zip(&ids)
            .flat_map(|((_, student), id)| id.rows(student, now))
            .collect();
        insert_messages(&mut tx, &rows).await?;
        let sources: Vec<(&str, &[Source])> =
            asking.iter().zip(&ids).map(|((_, student), id)| (id.answer.as_str(), student.sources.as_slice())).collect();
        writes += 2 + record_sources(&mut tx, &sources, now).await?;
        tx.commit().await?;
        self.wrote_n(writes);
        let stored: Vec<(usize, NewIds)> = asking.iter().map(|(i, _)| *i).zip(ids).collect();
        Ok(outcomes(students, refusals, &stored))
    }

    /// Grants each student still asking a new guest and a question from their
    /// address's budgets (where those have a limit), and refuses the rest. Returns the
    /// students refused here, and the statements that stored the granted events.
    async fn take_address_budgets(
        &self,
        tx: &mut sqlx::AnyConnection,
        students: &[&NewStudent],
        refusals: &mut [Option<BeginError>],
        now: i64,
    ) -> Result<(Vec<usize>, u64), StoreError> {
        let asking: Vec<usize> = (0..students.len()).filter(|&i| refusals[i].is_none()).collect();
        // Read in one order, kind then address, as every transaction locks them.
        let mut guests = std::collections::BTreeMap::new();
        let mut questions = std::collections::BTreeMap::new();
        for &i in &asking {
            let student = students[i];
            if student.guests_per_hour > 0 {
                guests.entry(student.address.as_str()).or_insert(student.guests_per_hour);
            }
            if student.questions_per_minute_per_address > 0 {
                questions.entry(student.address.as_str()).or_insert(student.questions_per_minute_per_address);
            }
        }
        let mut guest_budgets = std::collections::HashMap::new();
        for (address, limit) in guests {
            let budget = AddressBudget::read(tx, self.backend, address, AddressEvent::NewGuest, limit, now).await?;
            guest_budgets.insert(address, budget);
        }
        let mut question_budgets = std::collections::HashMap::new();
        for (address, limit) in questions {
            let budget = AddressBudget::read(tx, self.backend, address, AddressEvent::Question, limit, now).await?;
            question_budgets.insert(address, budget);
        }
        let mut granted = Vec::new();
        let mut refused = Vec::new();
        for i in asking {
            let address = students[i].address.as_str();
            let mut guest = guest_budgets.get_mut(address);
            let mut question = question_budgets.get_mut(address);
            if let Some(budget) = guest.as_deref().filter(|budget| !budget.has_room()) {
                refusals[i] = Some(BeginError::TooManyGuests { retry_after: budget.retry_after(now) });
            } else if let Some(budget) = question.as_deref().filter(|budget| !budget.has_room()) {
                refusals[i] = Some(BeginError::AddressRateLimited { retry_after: budget.retry_after(now) });
            }
            if refusals[i].is_some() {
                refused.push(i);
                continue;
            }
            if let Some(budget) = guest.as_deref_mut() {
                budget.take(now);
                granted.push((address, AddressEvent::NewGuest, now));
            }
            if let Some(budget) = question.as_deref_mut() {
                budget.take(now);
                granted.push((address, AddressEvent::Question, now));
            }
        }
        insert_address_events(tx, &granted).await?;
        Ok((refused, u64::from(!granted.is_empty())))
    }
}

/// The ids a stored first question gets.
struct NewIds {
    conversation: String,
    question: String,
    answer: String,
}

impl NewIds {
    fn new() -> NewIds {
        NewIds { conversation: new_id(), question: new_id(), answer: new_id() }
    }

    /// The question and its answer's row (`streaming`), the conversation's first two.
    fn rows<'a>(&'a self, student: &'a NewStudent, now: i64) -> [NewMessageRow<'a>; 2] {
        [
            NewMessageRow {
                id: &self.question,
                conversation_id: &self.conversation,
                parent_id: "",
                position: 1,
                role: MessageRole::User,
                content: &student.question,
                status: MessageStatus::Complete,
                owner_instance: None,
                sources: None,
                retrieval_score: None,
                created_at: now,
            },
            NewMessageRow {
                id: &self.answer,
                conversation_id: &self.conversation,
                parent_id: &self.question,
                position: 2,
                role: MessageRole::Assistant,
                content: "",
                status: MessageStatus::Streaming,
                owner_instance: Some(&student.owner_instance),
                sources: student.sources_json.as_deref(),
                retrieval_score: student.retrieval_score,
                created_at: now,
            },
        ]
    }
}

fn still_asking<'a>(students: &[&'a NewStudent], refusals: &[Option<BeginError>]) -> Vec<&'a NewStudent> {
    students.iter().zip(refusals).filter(|(_, refusal)| refusal.is_none()).map(|(student, _)| *student).collect()
}

/// Each student's result, in order: refused, or begun with the ids stored for them.
fn outcomes(
    students: &[&NewStudent],
    mut refusals: Vec<Option<BeginError>>,
    stored: &[(usize, NewIds)],
) -> Vec<Result<BegunAnswer, BeginError>> {
    let mut results: Vec<Result<BegunAnswer, BeginError>> = refusals
        .iter_mut()
        .map(|refusal| Err(refusal.take().unwrap_or(BeginError::Store(StoreError::WriterGone))))
        .collect();
    for (i, ids) in stored {
        results[*i] = Ok(BegunAnswer {
            conversation_id: ids.conversation.clone(),
            question_id: ids.question.clone(),
            answer_id: ids.answer.clone(),
            turns: Vec::new(),
            context_truncated: false,
            budget: students[*i].budget_left,
        });
    }
    results
}

/// The new students' users, their question budgets set (no guest number yet: see
/// `account::store::insert_guest`).
async fn insert_guests(tx: &mut sqlx::AnyConnection, students: &[&NewStudent], now: i64) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO users (id, created_at, questions_full_at) VALUES {}",
        values_placeholders(students.len(), 3)
    );
    let mut query = sqlx::query(&sql).persistent(students.len() == 1);
    for student in students {
        query = query.bind(&student.user_id).bind(now).bind(student.questions_full_at);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// Their sessions, as `insert_guest` makes one (an expired account's row is taken
/// over, a live one left alone). Returns the token hashes of the sessions made.
async fn insert_sessions(
    tx: &mut sqlx::AnyConnection,
    students: &[&NewStudent],
    now: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    use sqlx::Row;
    // In the order of their keys: two instances' transactions inserting some of the
    // same sessions would otherwise wait for each other's rows in opposite orders
    // (PostgreSQL).
    let mut rows: Vec<(String, &str)> =
        students.iter().map(|student| (hash_token(&student.session_token), student.user_id.as_str())).collect();
    rows.sort_unstable();
    let sql = format!(
        "INSERT INTO sessions (token_hash, user_id, created_at) VALUES {} \
         ON CONFLICT (token_hash) DO UPDATE \
         SET user_id = excluded.user_id, created_at = excluded.created_at, expires_at = NULL \
         WHERE sessions.expires_at IS NOT NULL AND sessions.expires_at <= excluded.created_at \
         RETURNING token_hash",
        values_placeholders(students.len(), 3)
    );
    let mut query = sqlx::query(&sql).persistent(rows.len() == 1);
    for (key, user_id) in rows {
        query = query.bind(key).bind(user_id).bind(now);
    }
    let made = query.fetch_all(&mut *tx).await?;
    made.iter().map(|row| row.try_get::<String, _>(0)).collect()
}

/// For each student, whether their session names a user already (live: an expired
/// account's session is taken over by the new guest).
async fn sessions_with_users(
    tx: &mut sqlx::AnyConnection,
    students: &[&NewStudent],
    now: i64,
) -> Result<Vec<bool>, sqlx::Error> {
    let keys: Vec<String> = students.iter().map(|student| hash_token(&student.session_token)).collect();
    let sql = format!(
        "SELECT token_hash FROM sessions WHERE (expires_at IS NULL OR expires_at > $1) AND token_hash IN {}",
        in_list(2, keys.len())
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql).persistent(keys.len() == 1).bind(now);
    for key in &keys {
        query = query.bind(key);
    }
    let live: HashSet<String> = query.fetch_all(&mut *tx).await?.into_iter().collect();
    Ok(keys.iter().map(|key| live.contains(key)).collect())
}


/// Takes back the guests of students an address's budget refused.
async fn remove_guests(tx: &mut sqlx::AnyConnection, students: &[&NewStudent]) -> Result<(), sqlx::Error> {
    let list = in_list(1, students.len());
    let sql = format!("DELETE FROM sessions WHERE token_hash IN {list}");
    let mut query = sqlx::query(&sql).persistent(false);
    for student in students {
        query = query.bind(hash_token(&student.session_token));
    }
    query.execute(&mut *tx).await?;
    let sql = format!("DELETE FROM users WHERE id IN {list}");
    let mut query = sqlx::query(&sql).persistent(false);
    for student in students {
        query = query.bind(&student.user_id);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::budget::QuestionBudget;
    use crate::db::database_url;

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
        }
    }

    /// Students whose sockets close while their questions wait (the first of them
    /// started the task) do not hold up the others: their questions are left out of
    /// the transaction, the rest are stored, and the task ends when none wait.
    #[tokio::test(flavor = "current_thread")]
    async fn questions_whose_askers_went_away_are_left_out() {
        let dir = std::env::temp_dir().join(format!("tutor-arrivals-{}", new_id()));
        let db = Arc::new(Db::connect(&database_url(None, &dir), 4).await.unwrap());
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
        let _ = std::fs::remove_dir_all(dir);
    }
}
