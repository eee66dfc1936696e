//! A class arriving at once: new students' first questions share write transactions
//! (group commit). A first question makes the guest, its session, the conversation,
//! the question and answer rows and the sources: seven statements, and on SQLite
//! every one waits for the single writer and costs a round trip to sqlx's SQLite
//! thread. Questions that come while a transaction runs wait here, and the next
//! transaction stores them all with one multi-row statement per table
//! (`Db::begin_first_answers`). See docs/storage.md, "A class arriving".
//!
//! No task of its own: the first caller to find nobody leading leads, and hands the
//! lead to the next one waiting when its transaction is done, or when it is dropped.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::budget::BudgetLevel;
use super::store::{first_question_budget, record_sources, BeginError, BegunAnswer, NewAnswer};
use crate::account::store::hash_token;
use crate::db::{
    insert_address_events, new_id, now_ms, values_placeholders, AddressBudget, AddressEvent, Db, StoreError, WriteTx,
};
use crate::history::store::{insert_messages, NewMessageRow};
use crate::history::{MessageRole, MessageStatus};
use crate::protocol::Source;

/// The most questions one transaction stores: its statements' parameters stay well
/// under both backends' limits, and a transaction holds the writer briefly.
const MOST_AT_ONCE: usize = 32;

#[derive(Default)]
pub struct Arrivals {
    queue: Arc<Mutex<Queue>>,
    transactions: AtomicU64,
    students: AtomicU64,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// Someone leads: the waiting are taken into its transaction, or handed the lead.
    led: bool,
}

struct Waiting {
    student: NewStudent,
    reply: oneshot::Sender<Turn>,
}

enum Turn {
    Done(Result<BegunAnswer, BeginError>),
    /// Lead the next transaction; the answer to this caller's own question comes on
    /// the new receiver (its question is first in the queue). If the message is
    /// dropped unread (its asker gone), the lead passes on.
    Lead(oneshot::Receiver<Turn>, Leading),
    /// The shared transaction failed: store the question alone.
    Alone,
}

impl Arrivals {
    /// Begins an answer as [`Db::begin_answer`] does; a new student's first question
    /// (`creates_guest`) waits to share the next write transaction with the others.
    pub async fn begin_answer(&self, db: &Db, new: &NewAnswer<'_>) -> Result<BegunAnswer, BeginError> {
        let Some(guests_per_hour) = new.creates_guest else {
            return db.begin_answer(new).await;
        };
        let student = NewStudent::new(new, guests_per_hour)?;
        let (reply, mut turn) = oneshot::channel();
        let leads = {
            let mut queue = self.lock();
            queue.waiting.push_back(Waiting { student, reply });
            !std::mem::replace(&mut queue.led, true)
        };
        if leads {
            self.lead(db, Leading(Some(self.queue.clone()))).await;
        }
        loop {
            match turn.await {
                Ok(Turn::Done(result)) => return result,
                Ok(Turn::Lead(next, leading)) => {
                    turn = next;
                    self.lead(db, leading).await;
                }
                // The transaction failed, or its leader was dropped with this question
                // taken: nothing of it was stored.
                Ok(Turn::Alone) | Err(_) => return db.begin_answer(new).await,
            }
        }
    }

    /// (transactions, students stored by them) so far, for tests and benchmarks.
    pub fn stored(&self) -> (u64, u64) {
        (self.transactions.load(Ordering::Relaxed), self.students.load(Ordering::Relaxed))
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    /// One transaction for the waiting questions; the lead passes on afterwards, or if
    /// this future is dropped midway (`leading` is dropped either way).
    async fn lead(&self, db: &Db, leading: Leading) {
        let _leading = leading;
        let tx = db.begin_write().await;
        // Taken once the writer is ours: those who came while we waited for it join.
        let batch = self.take_batch();
        let students: Vec<&NewStudent> = batch.iter().map(|waiting| &waiting.student).collect();
        let outcome = match tx {
            Ok(tx) => db.begin_first_answers(tx, &students).await,
            Err(error) => Err(error.into()),
        };
        match outcome {
            Ok(results) => {
                let stored = results.iter().filter(|result| result.is_ok()).count();
                self.transactions.fetch_add(1, Ordering::Relaxed);
                self.students.fetch_add(stored as u64, Ordering::Relaxed);
                for (waiting, result) in batch.into_iter().zip(results) {
                    let _ = waiting.reply.send(Turn::Done(result));
                }
            }
            Err(error) => {
                tracing::warn!(%error, students = batch.len(), "a shared first-question transaction failed; each is stored alone");
                for waiting in batch {
                    let _ = waiting.reply.send(Turn::Alone);
                }
            }
        }
    }

    /// The questions for one transaction, in the order they came. A second question of
    /// the same session waits for the next one: the first makes the session's user,
    /// and the second then asks as that user.
    fn take_batch(&self) -> Vec<Waiting> {
        let mut queue = self.lock();
        let mut sessions = HashSet::new();
        let mut batch = Vec::new();
        let mut left = VecDeque::new();
        while let Some(waiting) = queue.waiting.pop_front() {
            if waiting.reply.is_closed() {
                continue; // its asker is gone
            }
            if batch.len() < MOST_AT_ONCE && sessions.insert(waiting.student.session_token().to_owned()) {
                batch.push(waiting);
            } else {
                left.push_back(waiting);
            }
        }
        queue.waiting = left;
        batch
    }
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // A panic elsewhere cannot leave the queue half-changed: every change is one step.
    queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The lead: passes on to the first one still waiting when dropped, however its holder
/// ends (done, failed, or dropped with its socket), or notes that nobody leads.
struct Leading(Option<Arc<Mutex<Queue>>>);

impl Drop for Leading {
    fn drop(&mut self) {
        let Some(shared) = self.0.take() else { return };
        let mut queue = lock(&shared);
        while let Some(first) = queue.waiting.front_mut() {
            let (reply, turn) = oneshot::channel();
            let previous = std::mem::replace(&mut first.reply, reply);
            match previous.send(Turn::Lead(turn, Leading(Some(shared.clone())))) {
                Ok(()) => return,
                Err(Turn::Lead(_, mut unsent)) => unsent.0 = None, // not handed: nothing to pass on
                Err(_) => {}
            }
            queue.waiting.pop_front();
        }
        queue.led = false;
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
        if new.max_conversations == 0 {
            return Err(BeginError::TooManyConversations { limit: 0 });
        }
        let (questions_full_at, budget_left) = first_question_budget(new)?;
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

    fn session_token(&self) -> &str {
        &self.session_token
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
        let now = now_ms();
        let mut refusals: Vec<Option<BeginError>> = students.iter().map(|_| None).collect();
        let mut writes = 0;
        // The guests and their sessions. A session that names a user already (another
        // tab, on another instance, made it a moment ago) refuses its student, who asks
        // again as that user; the rest go again without them.
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
        }
        // The addresses' budgets, read once each and granted in the order the
        // questions came, as if each had its own transaction: a new guest first, then a
        // question.
        let refused_by_address = self.take_address_budgets(&mut tx, students, &mut refusals, now).await?;
        if !refused_by_address.is_empty() {
            writes += 1;
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
    /// students refused here.
    async fn take_address_budgets(
        &self,
        tx: &mut sqlx::AnyConnection,
        students: &[&NewStudent],
        refusals: &mut [Option<BeginError>],
        now: i64,
    ) -> Result<Vec<usize>, StoreError> {
        const GUEST_WINDOW_MS: i64 = 3_600_000;
        const QUESTION_WINDOW_MS: i64 = 60_000;
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
            let budget =
                AddressBudget::read(tx, self.backend, address, AddressEvent::NewGuest, limit, GUEST_WINDOW_MS, now).await?;
            guest_budgets.insert(address, budget);
        }
        let mut question_budgets = std::collections::HashMap::new();
        for (address, limit) in questions {
            let budget =
                AddressBudget::read(tx, self.backend, address, AddressEvent::Question, limit, QUESTION_WINDOW_MS, now)
                    .await?;
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
        Ok(refused)
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
    let sql = format!(
        "INSERT INTO sessions (token_hash, user_id, created_at) VALUES {} \
         ON CONFLICT (token_hash) DO UPDATE \
         SET user_id = excluded.user_id, created_at = excluded.created_at, expires_at = NULL \
         WHERE sessions.expires_at IS NOT NULL AND sessions.expires_at <= excluded.created_at \
         RETURNING token_hash",
        values_placeholders(students.len(), 3)
    );
    let mut query = sqlx::query(&sql).persistent(students.len() == 1);
    for student in students {
        query = query.bind(hash_token(&student.session_token)).bind(&student.user_id).bind(now);
    }
    let rows = query.fetch_all(&mut *tx).await?;
    rows.iter().map(|row| row.try_get::<String, _>(0)).collect()
}

/// Takes back the guests of students an address's budget refused.
async fn remove_guests(tx: &mut sqlx::AnyConnection, students: &[&NewStudent]) -> Result<(), sqlx::Error> {
    let list = values_placeholders(1, students.len());
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

    /// A student whose socket closes while their question leads (waiting for the
    /// writer), and the next one, handed the lead and gone before reading it, do not
    /// leave the others waiting: the lead passes on and their questions are stored.
    #[tokio::test(flavor = "current_thread")]
    async fn a_leader_that_goes_away_passes_the_lead_on() {
        let dir = std::env::temp_dir().join(format!("tutor-arrivals-{}", new_id()));
        let db = Db::connect(&database_url(None, &dir), 4).await.unwrap();
        let arrivals = Arrivals::default();
        let users: Vec<String> = (0..4).map(|_| new_id()).collect();
        let tokens: Vec<String> = (0..4).map(|i| format!("session-{i}")).collect();
        let asks: Vec<NewAnswer<'_>> = (0..4).map(|i| first_question(&users[i], &tokens[i])).collect();
        let busy_writer = db.begin_write().await.unwrap();
        let mut leader = Box::pin(arrivals.begin_answer(&db, &asks[0]));
        let mut next = Box::pin(arrivals.begin_answer(&db, &asks[1]));
        let mut third = Box::pin(arrivals.begin_answer(&db, &asks[2]));
        for waiting in [leader.as_mut(), next.as_mut(), third.as_mut()] {
            assert!(futures::poll!(waiting).is_pending());
        }
        drop(leader); // hands the lead to `next`, which is gone before it reads it
        drop(next);
        busy_writer.rollback().await.unwrap();
        let begun = tokio::time::timeout(std::time::Duration::from_secs(10), third).await.expect("the lead reached the third");
        assert!(begun.is_ok(), "{begun:?}");
        // Nobody leads now, and the next arrival leads at once.
        let fourth = arrivals.begin_answer(&db, &asks[3]).await;
        assert!(fourth.is_ok(), "{fourth:?}");
        for (i, user) in users.iter().enumerate() {
            let made = db.find_user(&tokens[i]).await.unwrap();
            assert_eq!(made.as_ref() == Some(user), i >= 2, "student {i}");
        }
        assert_eq!(arrivals.stored(), (2, 2));
    }
}
