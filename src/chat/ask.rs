//! Starting an answer: the student's user, a place among the answers streamed at
//! once, the lesson sections for the question, one transaction that stores the
//! question (rate limit and conversation cap included; a new student's guest user too)
//! and the answer's row, then the model's stream (or lesson mode's excerpts) handed to
//! the answer's own task. The question is saved before the model is called; when
//! saving fails, no model is.

use std::time::Duration;

use std::sync::atomic::{AtomicI64, Ordering};

use super::budget::{BudgetLevel, QuestionBudget};
use super::live::{AnswerPlaces, Follower};
use super::prompt::model_messages;
use super::store::{AskedBefore, BeginError, NewAnswer};
use crate::auth::GuestSession;
use crate::db::{new_id, StoreError};
use crate::faq::matcher::{FaqMatch, DIRECT_ANSWER_THRESHOLD, MAX_FAQ_SOURCES, SOURCE_MIN_SCORE};
use crate::history::versions::{ForkRefusal, VersionOf};
use crate::history::MessageStatus;
use crate::lessons::excerpts;
use crate::lessons::index::Hit;
use crate::protocol::{ServerFrame, Source};
use crate::state::AppState;
use crate::teacher::TutorNotes;
use crate::upstream::{AnswerStream, UpstreamError};

/// Lesson mode's pace: quick enough to read as it comes, slow enough to see it stream.
pub(super) const LESSON_MODE_WORD_GAP: Duration = Duration::from_millis(12);
/// Up to this many indexed sections, retrieval runs on the socket's task.
const INLINE_SEARCH_MAX_SECTIONS: u64 = 2_000;
/// Earlier questions of the conversation that retrieval reads with the new one.
pub(super) const RETRIEVAL_EARLIER_TURNS: u32 = 2;

/// Why a question got no answer; the socket turns it into an `error` frame.
#[derive(Debug)]
pub enum AskError {
    /// Every answer slot of this instance is taken.
    Busy,
    /// The client address has its cap of answers streaming at once.
    AddressBusy,
    /// The client address started its hour's budget of new guests.
    TooManyGuests { retry_after: u64 },
    /// The client address asked its budget of questions this minute.
    AddressRateLimited { retry_after: u64 },
    /// The session no longer names the user this socket asked as (signed out, expired).
    SessionEnded,
    NotFound,
    TooManyConversations { limit: u32 },
    /// The student has their cap of answers streaming (in other tabs, on any instance).
    TooManyAnswers { limit: u32 },
    /// The student's question budget is spent; `budget` says when one comes back.
    RateLimited { budget: BudgetLevel },
    /// A `regenerate` or `edit` of a message that cannot have a new version now.
    Version(ForkRefusal),
    Store(StoreError),
    /// The model request could not start; the answer's row is stored as an error.
    Upstream { answer_id: String, error: UpstreamError },
    /// The same `ask` (its `ask_id`) was sent before, and its answer is this one:
    /// follow it instead of asking twice.
    AskedBefore(AskedBefore),
    /// The store found the `ask_id` taken; [`start_answer`] looks up by whom.
    AskIdTaken,
}

impl AskError {
    /// A refusal the same `ask` sent again can get only because the first one was
    /// stored: it spent the budget, streams, or took the conversation's place (or, for
    /// a version, took its target off the branch or streams below it).
    fn may_hide_a_repeat(&self) -> bool {
        matches!(
            self,
            AskError::Busy
                | AskError::Version(_)
                | AskError::AddressBusy
                | AskError::AddressRateLimited { .. }
                | AskError::RateLimited { .. }
                | AskError::TooManyAnswers { .. }
                | AskError::TooManyConversations { .. }
        )
    }
}

impl From<StoreError> for AskError {
    fn from(error: StoreError) -> Self {
        AskError::Store(error)
    }
}

/// An answer under way: the frame that announces it and a follower of its frames.
pub struct Started {
    pub start: ServerFrame,
    pub follower: Follower,
    /// The student's question budget after this question (`None`: no budget).
    pub budget: Option<BudgetLevel>,
}

/// Who is asking: the session, its user once known (the first question creates it,
/// and the caller remembers it across questions), and the client address it is
/// counted under.
pub struct Asker<'a> {
    pub session: &'a GuestSession,
    pub user_id: &'a mut Option<String>,
    pub address: &'a str,
}

/// Starts answering `question`. With an `ask_id` the student stored a question under
/// before (the `ask` sent again after its connection dropped before `start`), nothing
/// is asked: the error names that question's answer, to be followed instead.
pub async fn start_answer(
    state: &AppState,
    asker: Asker<'_>,
    question: String,
    conversation_id: Option<String>,
    ask_id: Option<&str>,
    version_of: Option<VersionOf<'_>>,
) -> Result<Started, AskError> {
    let Asker { session, user_id, address } = asker;
    let again = Asker { session, user_id: &mut *user_id, address };
    let error = match start_new_answer(state, again, question, conversation_id, ask_id, version_of).await {
        Err(error) if matches!(error, AskError::AskIdTaken) || error.may_hide_a_repeat() => error,
        asked => return asked,
    };
    let taken = matches!(error, AskError::AskIdTaken);
    let (Some(ask_id), Some(user)) = (ask_id, user_id.as_deref()) else {
        return Err(if taken { AskError::NotFound } else { error });
    };
    match state.db.asked_before(user, ask_id).await {
        Ok(Some(before)) => Err(AskError::AskedBefore(before)),
        // Taken, and gone since: its conversation was deleted meanwhile.
        Ok(None) if taken => Err(AskError::NotFound),
        Ok(None) => Err(error),
        Err(lookup) if taken => Err(AskError::Store(lookup)),
        Err(lookup) => {
            tracing::warn!(error = %lookup, "cannot look for a question asked before; refusing it as asked");
            Err(error)
        }
    }
}

async fn start_new_answer(
    state: &AppState,
    asker: Asker<'_>,
    question: String,
    conversation_id: Option<String>,
    ask_id: Option<&str>,
    version_of: Option<VersionOf<'_>>,
) -> Result<Started, AskError> {
    let settings = &state.settings;
    // A session without a user yet gets a new guest, made with the question below.
    // The socket looked its user up when it opened and hears another tab's first
    // question; one made since without its hearing (another instance's tab, just now)
    // is found by the transaction, which refuses the guest (`SessionHasUser`, below):
    // no lookup here, one statement fewer for every new student.
    let (user, creates_guest) = match asker.user_id {
        Some(user) => (user.clone(), None),
        None => (new_id(), Some(settings.new_guests_per_hour_per_address)),
    };
    // Places among the answers this instance streams at once, and among the address's,
    // held by the answer's task; without them the question is refused before anything
    // is stored.
    let Ok(slot) = state.answer_slots.clone().try_acquire_owned() else {
        return Err(AskError::Busy);
    };
    let per_address = match settings.answers_at_once_per_address {
        0 => None,
        cap => match state.answers_per_address.try_open(asker.address, cap) {
            Some(place) => Some(place),
            None => return Err(AskError::AddressBusy),
        },
    };
    let places = AnswerPlaces { slot, per_address };
    // The course FAQ first: a close match is the answer (no model call); a looser one
    // is a source beside the lesson sections (docs/faq.md).
    let faq = faq_matches(state, &question).await;
    let direct = faq
        .first()
        .filter(|best| settings.faq_direct_answers && best.score >= DIRECT_ANSWER_THRESHOLD)
        .map(|best| best.entry.clone());
    let (hits, sources) = match &direct {
        Some(entry) => (Vec::new(), entry.sources.clone()),
        None => {
            let mut hits = faq_hits(&question, &faq);
            hits.extend(retrieve(state, &question, conversation_id.as_deref(), &user, version_of).await);
            let sources = excerpts::sources_from(&hits);
            (hits, sources)
        }
    };
    let sources_json = sources_json(&sources);
    // Set when another tab of this browser made the session's user first.
    let other_tabs_user: String;
    let mut new = NewAnswer {
        user_id: &user,
        conversation_id: conversation_id.as_deref(),
        question: &question,
        budget_chars: settings.context_budget_chars(),
        owner_instance: &state.instance_id,
        sources_json: sources_json.as_deref(),
        budget: question_budget(state),
        budget_now: settings.clock.now_ms(),
        max_conversations: settings.max_conversations_per_user,
        address: asker.address,
        questions_per_minute_per_address: settings.questions_per_minute_per_address,
        session_token: &asker.session.0,
        // No score for a direct FAQ answer (neither a match nor a gap), nor for a
        // regenerated one: its question's score, and gap, came with its first answer.
        retrieval_score: (direct.is_none() && !matches!(version_of, Some(VersionOf::Regenerate(_))))
            .then(|| best_score_milli(&hits)),
        sources: &sources,
        answers_at_once_per_user: settings.answers_at_once_per_user,
        version_of,
        creates_guest,
        ask_id,
    };
    // A new student's first question shares its transaction with others arriving.
    let begun = match state.arrivals.begin_answer(&state.db, &new).await {
        Err(BeginError::SessionHasUser) => {
            other_tabs_user = state.db.find_user(&asker.session.0).await?.ok_or(AskError::SessionEnded)?;
            // Known from now on, whatever this question's fate: a refusal below may be
            // of an `ask` sent again, looked up as this user's.
            *asker.user_id = Some(other_tabs_user.clone());
            new.user_id = &other_tabs_user;
            new.creates_guest = None;
            state.db.begin_answer(&new).await
        }
        begun => begun,
    }
    .map_err(|error| match error {
        BeginError::NotFound => AskError::NotFound,
        BeginError::TooManyConversations { limit } => AskError::TooManyConversations { limit },
        BeginError::TooManyAnswers { limit } => AskError::TooManyAnswers { limit },
        BeginError::RateLimited { budget } => AskError::RateLimited { budget },
        BeginError::AddressRateLimited { retry_after } => AskError::AddressRateLimited { retry_after },
        BeginError::TooManyGuests { retry_after } => AskError::TooManyGuests { retry_after },
        BeginError::SessionEnded | BeginError::SessionHasUser => AskError::SessionEnded,
        BeginError::Version(refusal) => AskError::Version(refusal),
        BeginError::Store(error) => AskError::Store(error),
        BeginError::AskedBefore => AskError::AskIdTaken,
    })?;
    let user = new.user_id.to_string();
    *asker.user_id = Some(user.clone());

    let answer_id = begun.answer_id;
    if let Some(entry) = &direct {
        if let Err(error) = state.db.mark_faq_answer(&answer_id, &entry.id).await {
            tracing::warn!(%error, "cannot mark an answer as the FAQ's; it shows without the badge");
        }
    }
    let opened = if let Some(entry) = &direct {
        Ok(AnswerStream::local(excerpts::words(&entry.answer), LESSON_MODE_WORD_GAP))
    } else if state.lesson_mode {
        let answer = excerpts::excerpt_answer(&question, &hits);
        Ok(AnswerStream::local(excerpts::words(&answer), LESSON_MODE_WORD_GAP))
    } else if daily_budget_spent(state).await {
        let answer = excerpts::budget_spent_answer(&question, &hits);
        Ok(AnswerStream::local(excerpts::words(&answer), LESSON_MODE_WORD_GAP))
    } else {
        let system_prompt = &state.upstream.settings().system_prompt;
        let notes = tutor_notes(state, &hits).await;
        state
            .upstream
            .stream_chat(&model_messages(system_prompt, &notes, begun.turns, &hits, question))
    };
    let stream = match opened {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "cannot start upstream request");
            let _ = state
                .db
                .finish_message(&answer_id, "", 0, MessageStatus::Error, Some(error.code()), None)
                .await;
            return Err(AskError::Upstream { answer_id, error });
        }
    };
    let start = ServerFrame::Start {
        conversation_id: begun.conversation_id,
        message_id: answer_id.clone(),
        context_truncated: begun.context_truncated,
        sources,
        faq_id: direct.map(|entry| entry.id),
        question_id: Some(begun.question_id),
        replaces: version_of.map(|version| version.message_id().to_string()),
    };
    let follower = state.live.start(answer_id, user, stream, places);
    Ok(Started {
        start,
        follower,
        budget: begun.budget,
    })
}

/// The question budget's shape, from the settings.
pub fn question_budget(state: &AppState) -> QuestionBudget {
    QuestionBudget {
        capacity: state.settings.question_budget,
        refill_ms: i64::try_from(state.settings.question_refill.as_millis()).unwrap_or(i64::MAX),
    }
}

/// The `budget` frame a socket starts with: the student's budget now, or `None` when
/// there is no budget (or it cannot be read: the page then shows no meter until the
/// next question, which the budget still governs).
pub async fn budget_frame(state: &AppState, user: Option<&str>) -> Option<ServerFrame> {
    let budget = question_budget(state);
    if budget.is_off() {
        return None;
    }
    match state.db.question_level(user, budget, state.settings.clock.now_ms()).await {
        Ok(level) => Some(level.frame()),
        Err(error) => {
            tracing::warn!(%error, "cannot read the question budget");
            None
        }
    }
}

/// True when the course's model tokens for today (UTC) are spent
/// (`daily_token_budget`; 0: no budget). Said in the log once a day.
async fn daily_budget_spent(state: &AppState) -> bool {
    static WARNED_FOR_DAY: AtomicI64 = AtomicI64::new(-1);
    let budget = state.settings.daily_token_budget;
    if budget == 0 {
        return false;
    }
    let today = crate::db::now_ms() / crate::db::DAY_MS;
    let used = match state.db.tokens_used_since(today * crate::db::DAY_MS).await {
        Ok(used) => used,
        Err(error) => {
            // Unknown is not spent: a failed count does not stop the course's tutor.
            tracing::warn!(%error, "cannot count today's model tokens");
            return false;
        }
    };
    let spent = used >= budget;
    if spent && WARNED_FOR_DAY.swap(today, Ordering::Relaxed) != today {
        tracing::warn!(used, budget, "daily token budget spent: answering from the lessons until midnight UTC");
    }
    spent
}

/// The teacher's instructions in force, with the notes on the sources' lessons. A
/// failure to read them means an answer without them, never no answer.
pub(super) async fn tutor_notes(state: &AppState, hits: &[Hit]) -> TutorNotes {
    let mut lessons: Vec<String> = hits.iter().map(|hit| hit.slug.clone()).collect();
    lessons.sort_unstable();
    lessons.dedup();
    state.db.tutor_notes(&lessons).await.unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read the teacher's instructions; answering without them");
        TutorNotes::default()
    })
}

/// The endorsed entries that match the question at all (from `SOURCE_MIN_SCORE`), best
/// first, after bringing the FAQ in step with the database. A failure to read it means
/// the FAQ as last read, never no answer.
pub(super) async fn faq_matches(state: &AppState, question: &str) -> Vec<FaqMatch> {
    if let Err(error) = state.faq.refresh(&state.db).await {
        tracing::warn!(%error, "cannot read the course FAQ; matching against the last one read");
    }
    state.faq.matches(question, SOURCE_MIN_SCORE, MAX_FAQ_SOURCES)
}

/// Endorsed answers as sources for the model, like lesson sections: an empty slug
/// marks them as the FAQ's (their page is `/faq#{anchor}`). The text is the answer
/// alone: the model reads it under "Course FAQ › {question}", and the student's source
/// list shows its first words as the snippet (in lesson mode, as the excerpt).
pub(super) fn faq_hits(question: &str, matches: &[FaqMatch]) -> Vec<Hit> {
    let title = if crate::i18n::is_russian(question) { "FAQ курса" } else { "Course FAQ" };
    matches
        .iter()
        .map(|m| Hit {
            slug: String::new(),
            lesson_title: title.to_string(),
            section: m.entry.question.clone(),
            anchor: crate::faq::anchor(&m.entry.id),
            text: m.entry.answer.clone(),
            score: m.score,
        })
        .collect()
}

/// The best hit's search score in thousandths, as the answer's row keeps it for the
/// dashboard's content gaps (0: nothing matched).
fn best_score_milli(hits: &[Hit]) -> i64 {
    // Lesson sections only: the FAQ's entries (no slug) score on another scale.
    let best = hits.iter().filter(|hit| !hit.slug.is_empty()).map(|hit| hit.score).fold(0.0f32, f32::max);
    if best.is_finite() { (f64::from(best) * 1000.0).round() as i64 } else { 0 }
}

fn sources_json(sources: &[Source]) -> Option<String> {
    (!sources.is_empty())
        .then(|| serde_json::to_string(sources).ok())
        .flatten()
}

/// The lesson sections for a question and the student's recent questions. A failure
/// means an answer without sources, never no answer.
pub(super) async fn retrieve(
    state: &AppState,
    question: &str,
    conversation_id: Option<&str>,
    user: &str,
    version_of: Option<VersionOf<'_>>,
) -> Vec<Hit> {
    let earlier = match conversation_id {
        Some(id) => state
            .db
            .recent_questions(user, id, RETRIEVAL_EARLIER_TURNS, version_of)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot read earlier questions for retrieval");
                Vec::new()
            }),
        None => Vec::new(),
    };
    search_lessons(state, question, earlier).await
}

/// The lesson sections for a question read with the student's `earlier` questions
/// (newest first). A failure means an answer without sources, never no answer.
pub(super) async fn search_lessons(state: &AppState, question: &str, earlier: Vec<String>) -> Vec<Hit> {
    let k = state.settings.retrieval_top_k;
    let lessons = &state.lessons;
    // A search of a course-sized index takes about 0.1 ms (p99 0.4 ms): less than
    // handing it to the blocking pool, which at N = 1,000 arrivals tripled the time to
    // first token. Large indexes go to the pool.
    let searched = if lessons.sections() <= INLINE_SEARCH_MAX_SECTIONS {
        lessons.search(question, &earlier, k)
    } else {
        let (lessons, question) = (lessons.clone(), question.to_string());
        match tokio::task::spawn_blocking(move || lessons.search(&question, &earlier, k)).await {
            Ok(result) => result,
            Err(error) => {
                tracing::warn!(%error, "lesson search stopped; answering without sources");
                return Vec::new();
            }
        }
    };
    searched.unwrap_or_else(|error| {
        tracing::warn!(%error, "lesson search failed; answering without sources");
        Vec::new()
    })
}
