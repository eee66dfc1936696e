//! Answers: beginning one (the question, the question budget, the conversation cap and
//! the answer row, in one transaction), writing its text as it streams, and
//! recovering the ones a crash cut off. See docs/storage.md.

use sqlx::Row;

use crate::db::{
    new_id, now_ms, retry_position_race, take_address_event, values_placeholders, AddressEvent, Backend, Db,
    PositionRace, StoreError,
};
use super::budget::{BudgetLevel, QuestionBudget};
use crate::account::store::{hash_token, insert_guest, GuestInsert, NewGuest};
use crate::history::store::{insert_conversations, insert_messages, next_position, NewMessageRow};
use crate::history::versions::{fork, Fork, ForkRefusal, VersionOf};
use crate::history::{MessageRole, MessageStatus};
use crate::protocol::{ErrorCode, Source, Usage};

impl Db {
    pub async fn finish_message(
        &self,
        message_id: &str,
        content: &str,
        chunk_seq: u64,
        status: MessageStatus,
        error_code: Option<ErrorCode>,
        usage: Option<Usage>,
    ) -> Result<(), StoreError> {
        self.write_answers(&[AnswerWrite::Finish {
            message_id: message_id.into(),
            content: content.into(),
            chunk_seq,
            status,
            error_code,
            usage,
            finished_at: now_ms(),
            first_token_at: None,
            generation: 0,
        }])
        .await
    }

    /// Writes changes to answer rows in one transaction: with a thousand answers
    /// streaming, one commit a second instead of a thousand. The rows of one kind are
    /// one statement (`UPDATE … FROM (VALUES …)`), so a batch of checkpoints is a single
    /// round trip to the database, not one per answer plus the transaction's two: on
    /// SQLite the writer's turn it holds is what a class's arriving questions wait for.
    pub async fn write_answers(&self, writes: &[AnswerWrite]) -> Result<(), StoreError> {
        // In `WriteKind::IN_ORDER`: a checkpoint runs before an end of the same batch
        // (it could not undo one).
        let statements: Vec<(String, Vec<&AnswerWrite>)> = WriteKind::IN_ORDER
            .into_iter()
            .filter_map(|kind| {
                let rows: Vec<&AnswerWrite> = writes.iter().filter(|write| write.kind() == kind).collect();
                (!rows.is_empty()).then(|| (kind.sql(rows.len()), rows))
            })
            .collect();
        match statements.as_slice() {
            [] => return Ok(()),
            [(sql, rows)] => {
                // One statement is atomic by itself: no transaction around it.
                let _turn = self.write_turn().await;
                bind_rows(sqlx::query(sql).persistent(keep_prepared(rows.len())), rows).execute(&self.pool).await?;
            }
            many => {
                let mut tx = self.begin_write().await?;
                for (sql, rows) in many {
                    bind_rows(sqlx::query(sql).persistent(keep_prepared(rows.len())), rows).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        self.counted_answer_commit(writes.len() as u64);
        Ok(())
    }

    /// Model tokens (prompt and completion) of the answers finished since `since`.
    pub async fn tokens_used_since(&self, since: i64) -> Result<u64, StoreError> {
        let used: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)), 0) AS BIGINT) \
             FROM messages WHERE finished_at >= $1",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(used.max(0) as u64)
    }

    /// Everything a question needs before the model is called, in one write
    /// transaction: the conversation (found for this user, or created), its earlier
    /// turns within the budget, the question, and the answer's row (`streaming`).
    /// One transaction instead of four keeps the first token quick when a whole class
    /// asks at once.
    pub async fn begin_answer(&self, new: &NewAnswer<'_>) -> Result<BegunAnswer, BeginError> {
        retry_position_race(|| self.try_begin_answer(new)).await
    }

    /// The student's latest questions on the branch of one of their conversations,
    /// newest first: retrieval reads them with the new question. For a new version,
    /// only those above it (an edit is not searched with the text it replaces, nor a
    /// regenerate with its own question twice). Empty for someone else's.
    pub async fn recent_questions(
        &self,
        user_id: &str,
        conversation_id: &str,
        limit: u32,
        version_of: Option<VersionOf<'_>>,
    ) -> Result<Vec<String>, StoreError> {
        let (edited, regenerated) = match version_of {
            Some(VersionOf::Edit(id)) => (Some(id), None),
            Some(VersionOf::Regenerate(id)) => (None, Some(id)),
            None => (None, None),
        };
        let rows = sqlx::query(
            "SELECT m.content FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE c.id = $1 AND c.user_id = $2 AND m.role = 'user' AND m.on_branch = 1 \
             AND m.position < COALESCE( \
               (SELECT b.position FROM messages b WHERE b.id = $4), \
               (SELECT q.position FROM messages x JOIN messages q ON q.id = x.parent_id WHERE x.id = $5), \
               9223372036854775807) \
             ORDER BY m.position DESC LIMIT $3",
        )
        .bind(conversation_id)
        .bind(user_id)
        .bind(i64::from(limit))
        .bind(edited)
        .bind(regenerated)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| row.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// The question `user_id` asked with `ask_id`, and its answer (the version on the
    /// branch, else the newest): what the same `ask` (or `edit`) sent again follows.
    /// A `regenerate` makes no question: its `ask_id` names the answer it began.
    pub async fn asked_before(&self, user_id: &str, ask_id: &str) -> Result<Option<AskedBefore>, StoreError> {
        let key = ask_key(user_id, ask_id);
        let asked = sqlx::query(
            "SELECT q.conversation_id, q.id, a.id, a.sources, a.faq_id FROM messages q \
             JOIN conversations c ON c.id = q.conversation_id \
             JOIN messages a ON a.conversation_id = q.conversation_id AND a.parent_id = q.id \
             WHERE q.ask_key = $1 AND c.user_id = $2 AND a.role = 'assistant' \
             ORDER BY a.on_branch DESC, a.created_at DESC, a.id LIMIT 1",
        )
        .bind(&key)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let row = match asked {
            Some(row) => row,
            None => {
                let regenerated = sqlx::query(
                    "SELECT a.conversation_id, a.parent_id, a.id, a.sources, a.faq_id FROM messages a \
                     JOIN conversations c ON c.id = a.conversation_id \
                     WHERE a.ask_key = $1 AND c.user_id = $2 AND a.role = 'assistant'",
                )
                .bind(&key)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = regenerated else { return Ok(None) };
                row
            }
        };
        // Unreadable sources (a hand-edited row) leave the answer without them.
        let sources = row
            .try_get::<Option<String>, _>(3)?
            .and_then(|json| serde_json::from_str::<Vec<Source>>(&json).ok())
            .unwrap_or_default();
        Ok(Some(AskedBefore {
            conversation_id: row.try_get(0)?,
            question_id: row.try_get(1)?,
            answer_id: row.try_get(2)?,
            sources,
            faq_id: row.try_get(4)?,
        }))
    }

    async fn try_begin_answer(&self, new: &NewAnswer<'_>) -> Result<BegunAnswer, BeginError> {
        let NewAnswer {
            user_id,
            conversation_id,
            question,
            budget_chars,
            owner_instance,
            sources_json,
            budget: _,
            budget_now: _,
            max_conversations,
            address,
            questions_per_minute_per_address,
            session_token,
            retrieval_score,
            sources,
            answers_at_once_per_user: _,
            version_of,
            creates_guest,
            ask_id: _,
        } = *new;
        let ask_key = new.ask_key();
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        // Statements that change data, for the metrics: the answer's row here, the rest
        // as they run.
        let mut writes = 1;
        let budget_left;
        let kept = match creates_guest {
            Some(guests_per_hour) => {
                // A new student: the guest is made here, its budget already less this
                // question. Its session, conversations and answers under way need no
                // checking: they are this transaction's.
                let (questions_full_at, level) = first_question_budget(new)?;
                budget_left = level;
                let guest = NewGuest { token: session_token, user_id, address, guests_per_hour, questions_full_at };
                match insert_guest(&mut tx, self.backend, &guest, now).await? {
                    GuestInsert::Made => writes += 2,
                    GuestInsert::AddressFull { retry_after } => return Err(BeginError::TooManyGuests { retry_after }),
                    GuestInsert::SessionHasUser => {
                        tx.rollback().await?;
                        return Err(BeginError::SessionHasUser);
                    }
                }
                0
            }
            None => {
                let (kept, budget_level) = self.check_asker(&mut tx, new, now).await?;
                if budget_level.is_some() {
                    writes += 1;
                }
                budget_left = budget_level;
                kept
            }
        };
        if questions_per_minute_per_address > 0 {
            let refused = take_address_event(
                &mut tx,
                self.backend,
                address,
                AddressEvent::Question,
                questions_per_minute_per_address,
                now,
            )
            .await?;
            if let Some(retry_after) = refused {
                return Err(BeginError::AddressRateLimited { retry_after });
            }
            writes += 1;
        }
        let conversation_id = match conversation_id {
            Some(id) => {
                // Marked as changed first: on PostgreSQL that also locks the row, so a
                // version switch or a teacher's reply in another transaction cannot
                // move the branch between reading its end and appending to it
                // (history::versions). SQLite's write transaction already excludes them.
                let owned = sqlx::query("UPDATE conversations SET updated_at = $3 WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(user_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                writes += 1;
                if !owned {
                    return Err(BeginError::NotFound);
                }
                id.to_string()
            }
            None => {
                if kept >= i64::from(max_conversations) {
                    return Err(BeginError::TooManyConversations { limit: max_conversations });
                }
                let id = new_id();
                let title = crate::history::title_from_question(question);
                insert_conversations(&mut tx, &[(&id, user_id, &title)], now).await?;
                writes += 1;
                id
            }
        };
        // A conversation made just now has no turns and no branch yet: three reads less
        // for a first question.
        let (fork, (turns, context_truncated), position) = if new.conversation_id.is_none() {
            (Fork { context_from: String::new(), existing_question: None }, (Vec::new(), false), 1)
        } else {
            let fork = match fork(&mut tx, &conversation_id, version_of).await? {
                Ok(fork) => fork,
                Err(refusal) => return Err(BeginError::Version(refusal)),
            };
            let context = context_turns_from(&mut tx, &fork.context_from, budget_chars).await?;
            (fork, context, next_position(&mut tx, &conversation_id).await?)
        };
        let answer_id = new_id();
        let (question_id, answer_position, question_is_new) = match &fork.existing_question {
            Some(question_id) => (question_id.clone(), position, false),
            None => (new_id(), position + 1, true),
        };
        let mut rows = Vec::with_capacity(2);
        if question_is_new {
            rows.push(NewMessageRow {
                id: &question_id,
                conversation_id: &conversation_id,
                parent_id: &fork.context_from,
                position,
                role: MessageRole::User,
                content: question,
                status: MessageStatus::Complete,
                owner_instance: None,
                sources: None,
                retrieval_score: None,
                created_at: now,
                ask_key: ask_key.as_deref(),
            });
            writes += 1;
        }
        // A regenerate's `ask_key` goes on its answer: it makes no question.
        let answer_ask_key = if question_is_new { None } else { ask_key.as_deref() };
        rows.push(NewMessageRow {
            id: &answer_id,
            conversation_id: &conversation_id,
            parent_id: &question_id,
            position: answer_position,
            role: MessageRole::Assistant,
            content: "",
            status: MessageStatus::Streaming,
            owner_instance: Some(owner_instance),
            sources: sources_json,
            retrieval_score,
            created_at: now,
            ask_key: answer_ask_key,
        });
        // The question and its answer in one statement. A message whose `ask_key` is
        // taken was stored by the same frame sent before: nothing of this one is kept.
        if insert_messages(&mut tx, &rows).await? != rows.len() as u64 {
            tx.rollback().await?;
            return Err(BeginError::AskedBefore);
        }
        writes += record_sources(&mut tx, &[(answer_id.as_str(), sources)], now).await?;
        if version_of.is_some() {
            writes += 1; // the replaced version left the branch
        }
        tx.commit().await?;
        self.wrote_n(writes);
        Ok(BegunAnswer {
            conversation_id,
            question_id,
            answer_id,
            turns,
            context_truncated,
            budget: budget_left,
        })
    }

    /// The checks on a user who asked before: the session still names them, their
    /// question budget (taken from), their answers streaming at once, and (for a new
    /// conversation) how many they keep, which it returns with the budget left.
    async fn check_asker(
        &self,
        tx: &mut sqlx::AnyConnection,
        new: &NewAnswer<'_>,
        now: i64,
    ) -> Result<(i64, Option<BudgetLevel>), BeginError> {
        // The session and the conversations kept: one round trip for both.
        let kept_conversations = if new.conversation_id.is_none() {
            "(SELECT COUNT(*) FROM conversations WHERE user_id = $2)"
        } else {
            "0"
        };
        let checks = sqlx::query(&format!(
            "SELECT (SELECT COUNT(*) FROM sessions WHERE token_hash = $1 AND user_id = $2 \
                     AND (expires_at IS NULL OR expires_at > $3)), {kept_conversations}"
        ))
        .bind(hash_token(new.session_token))
        .bind(new.user_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let current: i64 = checks.try_get(0)?;
        let kept: i64 = checks.try_get(1)?;
        if current == 0 {
            return Err(BeginError::SessionEnded);
        }
        let mut budget_left = None;
        if !new.budget.is_off() {
            match self.take_question(&mut *tx, new.user_id, new.budget, new.budget_now).await? {
                Ok(level) => budget_left = Some(level),
                Err(level) => return Err(BeginError::RateLimited { budget: level }),
            }
        }
        if new.answers_at_once_per_user > 0 {
            self.check_answers_at_once(&mut *tx, new.user_id, new.answers_at_once_per_user, now).await?;
        }
        Ok((kept, budget_left))
    }

    /// A student's answers streaming at once, in all their tabs on all instances: the
    /// conversations they touched lately (an answer streams minutes, not hours), each
    /// probed in the partial index of streaming answers. Locks the user's row on
    /// PostgreSQL so two instances cannot both grant the last place.
    async fn check_answers_at_once(
        &self,
        tx: &mut sqlx::AnyConnection,
        user_id: &str,
        cap: u32,
        now: i64,
    ) -> Result<(), BeginError> {
        const RECENT_MS: i64 = 2 * 3_600_000;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        }
        let streaming: i64 = sqlx::query(
            "SELECT COUNT(*) FROM conversations c JOIN messages m ON m.conversation_id = c.id \
             WHERE c.user_id = $1 AND c.updated_at > $2 AND m.status = 'streaming'",
        )
        .bind(user_id)
        .bind(now - RECENT_MS)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        if streaming >= i64::from(cap) {
            return Err(BeginError::TooManyAnswers { limit: cap });
        }
        Ok(())
    }
}

/// Whether a batch of answer writes of this many rows stays prepared on its connection:
/// one row (a lone end) and a full batch are the common sizes; the others, up to 45
/// forms over the three kinds, would push out the statements every question runs
/// (sqlx keeps 100 a connection).
fn keep_prepared(rows: usize) -> bool {
    rows == 1 || rows == MAX_ROWS_PER_COMMIT
}

/// Most answer rows written in one transaction. Larger batches save little more (a
/// thousand answers are 63 commits a second instead of 1,000) and cost memory: all
/// 1,000 at once held ~20 MB more at the relay bench's peak, 128 ~10 MB, 16 ~2 MB
/// (text copies, bound arguments, SQLite's dirty pages).
pub(crate) const MAX_ROWS_PER_COMMIT: usize = 16;

/// A change to the row of an answer being streamed.
#[derive(Debug, Clone)]
pub enum AnswerWrite {
    /// The text so far. Never moves it backwards: a late checkpoint cannot overwrite a
    /// newer one or the final text.
    Checkpoint {
        message_id: String,
        content: String,
        chunk_seq: u64,
        /// The writer's generation: an instance that lost the answer to a takeover
        /// can no longer write it.
        generation: u64,
    },
    /// The text so far, and the answer handed back for another instance to continue
    /// at once (a shutdown's grace period ended).
    Release {
        message_id: String,
        content: String,
        chunk_seq: u64,
        generation: u64,
    },
    /// The final text and how the answer ended.
    Finish {
        message_id: String,
        content: String,
        chunk_seq: u64,
        status: MessageStatus,
        error_code: Option<ErrorCode>,
        usage: Option<Usage>,
        finished_at: i64,
        /// When the first chunk arrived (None: none did).
        first_token_at: Option<i64>,
        generation: u64,
    },
}

/// The kinds of [`AnswerWrite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Checkpoint,
    Release,
    Finish,
}

impl WriteKind {
    /// The order one batch writes them in.
    const IN_ORDER: [WriteKind; 3] = [WriteKind::Checkpoint, WriteKind::Release, WriteKind::Finish];

    /// Values bound per row, in the order [`bind_rows`] binds them.
    fn columns(self) -> usize {
        match self {
            WriteKind::Checkpoint | WriteKind::Release => 4,
            WriteKind::Finish => 10,
        }
    }

    /// One statement for `rows` rows of this kind. The rows are a `VALUES` list, whose
    /// columns both SQLite and PostgreSQL name `column1`, `column2`, …; each row keeps
    /// its own guards (still streaming, the writer's generation, never backwards).
    fn sql(self, rows: usize) -> String {
        let values = values_placeholders(rows, self.columns());
        match self {
            WriteKind::Checkpoint => format!(
                "UPDATE messages SET content = v.column2, chunk_seq = v.column3 FROM (VALUES {values}) AS v \
                 WHERE messages.id = v.column1 AND messages.status = 'streaming' \
                 AND messages.chunk_seq < v.column3 AND messages.generation = v.column4"
            ),
            WriteKind::Release => format!(
                "UPDATE messages SET content = v.column2, chunk_seq = v.column3, owner_instance = NULL, lease_until = 0 \
                 FROM (VALUES {values}) AS v \
                 WHERE messages.id = v.column1 AND messages.status = 'streaming' AND messages.generation = v.column4"
            ),
            WriteKind::Finish => format!(
                "UPDATE messages SET content = v.column2, chunk_seq = v.column3, status = v.column4, \
                 error_code = v.column5, finished_at = v.column6, prompt_tokens = v.column7, \
                 completion_tokens = v.column8, owner_instance = NULL, \
                 first_token_at = COALESCE(messages.first_token_at, v.column9) FROM (VALUES {values}) AS v \
                 WHERE messages.id = v.column1 AND messages.status = 'streaming' AND messages.generation = v.column10"
            ),
        }
    }
}

impl AnswerWrite {
    fn kind(&self) -> WriteKind {
        match self {
            AnswerWrite::Checkpoint { .. } => WriteKind::Checkpoint,
            AnswerWrite::Release { .. } => WriteKind::Release,
            AnswerWrite::Finish { .. } => WriteKind::Finish,
        }
    }
}

/// Binds the rows of one [`WriteKind::sql`] statement (all of that kind).
fn bind_rows<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    rows: &[&'q AnswerWrite],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for row in rows {
        query = match row {
            AnswerWrite::Checkpoint { message_id, content, chunk_seq, generation }
            | AnswerWrite::Release { message_id, content, chunk_seq, generation } => query
                .bind(message_id.as_str())
                .bind(content.as_str())
                .bind(*chunk_seq as i64)
                .bind(*generation as i64),
            AnswerWrite::Finish {
                message_id,
                content,
                chunk_seq,
                status,
                error_code,
                usage,
                finished_at,
                first_token_at,
                generation,
            } => query
                .bind(message_id.as_str())
                .bind(content.as_str())
                .bind(*chunk_seq as i64)
                .bind(status.as_str())
                .bind(error_code.map(|c| c.as_str()))
                .bind(*finished_at)
                .bind(usage.map(|u| i64::from(u.prompt_tokens)))
                .bind(usage.map(|u| i64::from(u.completion_tokens)))
                .bind(*first_token_at)
                .bind(*generation as i64),
        };
    }
    query
}

/// A question to store, with what decides whether it may be asked.
#[derive(Debug, Clone, Copy)]
pub struct NewAnswer<'a> {
    pub user_id: &'a str,
    /// `None` starts a new conversation.
    pub conversation_id: Option<&'a str>,
    pub question: &'a str,
    /// Characters of earlier turns to send to the model.
    pub budget_chars: usize,
    pub owner_instance: &'a str,
    /// The answer's sources, as JSON.
    pub sources_json: Option<&'a str>,
    /// The student's question budget (`chat::budget`), and the moment to take from it
    /// at (the budget's clock, which tests set).
    pub budget: QuestionBudget,
    pub budget_now: i64,
    /// The client address the question came from, and its budget per minute (all of
    /// its sessions together; 0: no limit).
    pub address: &'a str,
    pub questions_per_minute_per_address: u32,
    /// The asking session: it must still name `user_id` (not signed out, not expired).
    pub session_token: &'a str,
    pub max_conversations: u32,
    /// The best lesson match's search score, in thousandths (0: nothing matched).
    /// `None` for a direct FAQ answer (neither a match nor a gap) and for a regenerated
    /// one (its question's score came with its first answer).
    pub retrieval_score: Option<i64>,
    /// The answer's sources, one `answer_sources` row each (the dashboard's "most cited").
    pub sources: &'a [Source],
    /// Answers the user may stream at once across tabs and instances (0: no cap).
    pub answers_at_once_per_user: u32,
    /// A new version of a question or an answer of `conversation_id`; `None`: a new
    /// question at the end of the branch.
    pub version_of: Option<VersionOf<'a>>,
    /// `Some(guests_per_hour)`: the session has no user yet, and `user_id` is a new
    /// guest's, made in the question's transaction (the address's budget of new guests
    /// an hour, 0: no limit). A class arriving then costs the single writer one
    /// transaction a student instead of two.
    pub creates_guest: Option<u32>,
    /// The client's name for the question (`ask_id`): stored with it, so that the same
    /// `ask` sent again finds it ([`BeginError::AskedBefore`]).
    pub ask_id: Option<&'a str>,
}

impl NewAnswer<'_> {
    /// The `ask_key`: "{user id}:{ask_id}", unique among stored messages (on the
    /// question, or on a regenerated answer).
    pub(crate) fn ask_key(&self) -> Option<String> {
        self.ask_id.map(|ask_id| ask_key(self.user_id, ask_id))
    }
}

pub(crate) fn ask_key(user_id: &str, ask_id: &str) -> String {
    format!("{user_id}:{ask_id}")
}

/// A question stored before under the `ask_id` of an `ask` sent again, and its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AskedBefore {
    pub conversation_id: String,
    pub question_id: String,
    pub answer_id: String,
    pub sources: Vec<Source>,
    pub faq_id: Option<String>,
}

impl AskedBefore {
    /// The `start` the first `ask` was sent, as far as it is stored (whether older turns
    /// were cut from the model's context is not). `replaces`: a version's, as it came.
    pub fn start_frame(&self, replaces: Option<String>) -> crate::protocol::ServerFrame {
        crate::protocol::ServerFrame::Start {
            conversation_id: self.conversation_id.clone(),
            message_id: self.answer_id.clone(),
            context_truncated: false,
            sources: self.sources.clone(),
            faq_id: self.faq_id.clone(),
            question_id: Some(self.question_id.clone()),
            replaces,
        }
    }
}

/// What [`Db::begin_answer`] stored and found.
#[derive(Debug)]
pub struct BegunAnswer {
    pub conversation_id: String,
    /// The question answered: new, or the regenerated answer's own.
    pub question_id: String,
    pub answer_id: String,
    /// Earlier turns for the model, oldest first.
    pub turns: Vec<(MessageRole, String)>,
    pub context_truncated: bool,
    /// The budget left after this question (`None`: no budget).
    pub budget: Option<BudgetLevel>,
}

#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    /// No such conversation for this user (someone else's answers the same).
    #[error("conversation not found")]
    NotFound,
    /// The user's question budget is spent; `budget` says when the next question
    /// comes back.
    #[error("question budget spent")]
    RateLimited { budget: BudgetLevel },
    /// The session no longer names this user: signed out (perhaps on another
    /// instance) or expired.
    #[error("session ended")]
    SessionEnded,
    /// The client address asked its budget of questions in the last minute.
    #[error("too many questions from this address")]
    AddressRateLimited { retry_after: u64 },
    /// The user keeps as many conversations as allowed; a new one is refused.
    #[error("too many conversations")]
    TooManyConversations { limit: u32 },
    /// The user has this many answers streaming already (other tabs, any instance).
    #[error("too many answers at once")]
    TooManyAnswers { limit: u32 },
    /// A version of a message that cannot have one now (`history::versions`).
    #[error("no version of that message can be made: {0:?}")]
    Version(ForkRefusal),
    /// The address started its hour's budget of new guests (`creates_guest`).
    #[error("too many new guests from this address")]
    TooManyGuests { retry_after: u64 },
    /// The session was given a user by another tab while this one made its own
    /// (`creates_guest`): nothing was stored; ask again as that user.
    #[error("the session has a user already")]
    SessionHasUser,
    /// The question's `ask_id` names one this user stored before (the same `ask` sent
    /// again after a dropped connection): nothing was stored; follow that one.
    #[error("this question was asked before")]
    AskedBefore,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for BeginError {
    fn from(error: sqlx::Error) -> Self {
        BeginError::Store(error.into())
    }
}

impl PositionRace for BeginError {
    fn is_position_race(&self) -> bool {
        matches!(self, BeginError::Store(e) if e.is_position_race())
    }
}

/// A new student's question budget after their first question: where it starts
/// (the user row's `questions_full_at`, 0: full) and the level left (`None`: no
/// budget). Nothing is stored to know it.
pub(crate) fn first_question_budget(new: &NewAnswer<'_>) -> Result<(i64, Option<BudgetLevel>), BeginError> {
    if new.budget.is_off() {
        return Ok((0, None));
    }
    match new.budget.take(0, new.budget_now) {
        Ok((full_at, level)) => Ok((full_at, Some(level))),
        Err(level) => Err(BeginError::RateLimited { budget: level }),
    }
}

/// Stores answers' sources, one `answer_sources` row each (one statement for all the
/// answers), for the dashboard's "most cited". Returns the statements run.
pub(crate) async fn record_sources(
    conn: &mut sqlx::AnyConnection,
    answers: &[(&str, &[Source])],
    now: i64,
) -> Result<u64, StoreError> {
    // The course FAQ's entries (no lesson) are not lessons cited.
    let rows: Vec<(&str, &Source)> = answers
        .iter()
        .flat_map(|(answer_id, sources)| sources.iter().map(move |source| (*answer_id, source)))
        .filter(|(_, source)| !source.lesson.is_empty())
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "INSERT INTO answer_sources (message_id, created_at, lesson, anchor, section) VALUES {}",
        values_placeholders(rows.len(), 5)
    );
    // A batch's many sizes are not kept prepared: they would push out the statements
    // every question runs (sqlx keeps 100 a connection).
    let mut query = sqlx::query(&sql).persistent(answers.len() == 1);
    for (answer_id, source) in rows {
        query = query
            .bind(answer_id)
            .bind(now)
            .bind(source.lesson.as_str())
            .bind(source.anchor.as_str())
            .bind(source.section.as_str());
    }
    query.execute(&mut *conn).await?;
    Ok(1)
}

/// The turns the model reads before a question, within the budget (in characters),
/// oldest first, and whether older ones were left out: `from` and its ancestors,
/// which is exactly the branch the question was asked on (`history::versions`), never
/// another version. Only finished text is sent.
pub(crate) async fn context_turns_from(
    conn: &mut sqlx::AnyConnection,
    from: &str,
    budget_chars: usize,
) -> Result<(Vec<(MessageRole, String)>, bool), StoreError> {
    const SCAN_LIMIT: i64 = 200;
    let rows = sqlx::query(
        "WITH RECURSIVE chain(id, parent_id, depth) AS ( \
           SELECT id, parent_id, 0 FROM messages WHERE id = $1 \
           UNION ALL \
           SELECT m.id, m.parent_id, chain.depth + 1 FROM messages m JOIN chain ON m.id = chain.parent_id \
           WHERE chain.depth < $2) \
         SELECT m.role, m.content FROM chain JOIN messages m ON m.id = chain.id \
         WHERE m.status <> 'error' AND m.content <> '' ORDER BY chain.depth LIMIT $2",
    )
    .bind(from)
    .bind(SCAN_LIMIT)
    .fetch_all(&mut *conn)
    .await?;
    let mut used = 0usize;
    let mut turns = Vec::new();
    let mut truncated = false;
    for row in &rows {
        let content: String = row.try_get(1)?;
        let cost = content.chars().count();
        if used + cost > budget_chars {
            truncated = true;
            break;
        }
        used += cost;
        turns.push((MessageRole::parse(&row.try_get::<String, _>(0)?), content));
    }
    if !truncated && rows.len() as i64 == SCAN_LIMIT {
        truncated = true;
    }
    // The model needs a conversation that starts with the student.
    while turns.last().is_some_and(|(role, _)| *role != MessageRole::User) {
        turns.pop();
        truncated = true;
    }
    turns.reverse();
    Ok((turns, truncated))
}

