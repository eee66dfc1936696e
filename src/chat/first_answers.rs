//! New students' first questions stored together: the SQL of a group commit
//! (`chat::arrivals` queues them). One multi-row statement per table for the whole
//! group, and for each student the outcome their own transaction would have had.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::budget::BudgetLevel;
use super::store::{first_question_budget, record_sources, BeginError, BegunAnswer, NewAnswer};
use crate::account::store::{hash_token, insert_guest_sessions, insert_guest_users};
use crate::db::{
    in_list, insert_address_events, new_id, now_ms, AddressBudget, AddressEvent, Db, StoreError, WriteTx,
};
use crate::history::store::{insert_conversations, insert_messages, NewMessageRow};
use crate::history::{MessageRole, MessageStatus};
use crate::protocol::Source;

/// A new student's first question, owned: it waits in the queue for a transaction
/// another caller may run.
pub(crate) struct NewStudent {
    user_id: String,
    /// The session's token hashed, as stored: hashed once here, before the question
    /// waits for the writer.
    session_key: String,
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
    /// The question's "{user id}:{ask_id}", when the client named it.
    ask_key: Option<String>,
}

impl NewStudent {
    /// The checks that need nothing stored: the question budget of a user made now,
    /// and a cap of no conversations at all.
    pub(crate) fn new(new: &NewAnswer<'_>, guests_per_hour: u32) -> Result<NewStudent, BeginError> {
        let (questions_full_at, budget_left) = first_question_budget(new)?;
        if new.max_conversations == 0 {
            return Err(BeginError::TooManyConversations { limit: 0 });
        }
        Ok(NewStudent {
            user_id: new.user_id.to_owned(),
            session_key: hash_token(new.session_token),
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
            ask_key: new.ask_key(),
        })
    }

    pub(crate) fn session_key(&self) -> &str {
        &self.session_key
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
            let users: Vec<(&str, i64)> =
                asking.iter().map(|student| (student.user_id.as_str(), student.questions_full_at)).collect();
            insert_guest_users(&mut tx, &users, now).await?;
            let sessions: Vec<(&str, &str)> =
                asking.iter().map(|student| (student.session_key.as_str(), student.user_id.as_str())).collect();
            let made = insert_guest_sessions(&mut tx, &sessions, now).await?;
            let taken: Vec<usize> = (0..students.len())
                .filter(|&i| refusals[i].is_none() && !made.contains(&students[i].session_key))
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
        let titles: Vec<String> =
            asking.iter().map(|(_, student)| crate::history::title_from_question(&student.question)).collect();
        let conversations: Vec<(&str, &str, &str)> = asking
            .iter()
            .zip(&ids)
            .zip(&titles)
            .map(|(((_, student), id), title)| (id.conversation.as_str(), student.user_id.as_str(), title.as_str()))
            .collect();
        insert_conversations(&mut tx, &conversations, now).await?;
        let rows: Vec<NewMessageRow<'_>> = asking
            .iter()
            .zip(&ids)
            .flat_map(|((_, student), id)| id.rows(student, now))
            .collect();
        // The users are new: no question of theirs can have been stored before.
        if insert_messages(&mut tx, &rows).await? != rows.len() as u64 {
            return Err(sqlx::Error::Protocol("a new student's question was stored before".into()).into());
        }
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
        let mut guests = BTreeMap::new();
        let mut questions = BTreeMap::new();
        for &i in &asking {
            let student = students[i];
            if student.guests_per_hour > 0 {
                guests.entry(student.address.as_str()).or_insert(student.guests_per_hour);
            }
            if student.questions_per_minute_per_address > 0 {
                questions.entry(student.address.as_str()).or_insert(student.questions_per_minute_per_address);
            }
        }
        let mut guest_budgets = self.read_budgets(tx, AddressEvent::NewGuest, guests, now).await?;
        let mut question_budgets = self.read_budgets(tx, AddressEvent::Question, questions, now).await?;
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

    /// Each address's budget of `event` (address → its limit), read in address order.
    async fn read_budgets<'a>(
        &self,
        tx: &mut sqlx::AnyConnection,
        event: AddressEvent,
        limits: BTreeMap<&'a str, u32>,
        now: i64,
    ) -> Result<HashMap<&'a str, AddressBudget>, StoreError> {
        let mut budgets = HashMap::new();
        for (address, limit) in limits {
            budgets.insert(address, AddressBudget::read(tx, self.backend, address, event, limit, now).await?);
        }
        Ok(budgets)
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
                ask_key: student.ask_key.as_deref(),
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
                ask_key: None,
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

/// For each student, whether their session names a user already (live: an expired
/// account's session is taken over by the new guest).
async fn sessions_with_users(
    tx: &mut sqlx::AnyConnection,
    students: &[&NewStudent],
    now: i64,
) -> Result<Vec<bool>, sqlx::Error> {
    let sql = format!(
        "SELECT token_hash FROM sessions WHERE (expires_at IS NULL OR expires_at > $1) AND token_hash IN {}",
        in_list(2, students.len())
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql).persistent(students.len() == 1).bind(now);
    for student in students {
        query = query.bind(&student.session_key);
    }
    let live: HashSet<String> = query.fetch_all(&mut *tx).await?.into_iter().collect();
    Ok(students.iter().map(|student| live.contains(&student.session_key)).collect())
}

/// Takes back the guests of students an address's budget refused.
async fn remove_guests(tx: &mut sqlx::AnyConnection, students: &[&NewStudent]) -> Result<(), sqlx::Error> {
    let list = in_list(1, students.len());
    let sql = format!("DELETE FROM sessions WHERE token_hash IN {list}");
    let mut query = sqlx::query(&sql).persistent(false);
    for student in students {
        query = query.bind(&student.session_key);
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
