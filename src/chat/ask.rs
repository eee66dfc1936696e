//! Starting an answer: the student's user, a place among the answers streamed at
//! once, the lesson sections for the question, one transaction that stores the
//! question (rate limit and conversation cap included) and the answer's row, then the
//! model's stream (or lesson mode's excerpts) handed to the answer's own task. The
//! question is saved before the model is called; when saving fails, no model is.

use std::time::Duration;

use super::live::Follower;
use super::prompt::model_messages;
use super::store::{BeginError, NewAnswer};
use crate::auth::GuestSession;
use crate::db::StoreError;
use crate::history::MessageStatus;
use crate::lessons::excerpts;
use crate::lessons::index::Hit;
use crate::protocol::{ServerFrame, Source};
use crate::state::AppState;
use crate::upstream::{AnswerStream, UpstreamError};

/// Lesson mode's pace: quick enough to read as it comes, slow enough to see it stream.
const LESSON_MODE_WORD_GAP: Duration = Duration::from_millis(12);
/// Up to this many indexed sections, retrieval runs on the socket's task.
const INLINE_SEARCH_MAX_SECTIONS: u64 = 2_000;
/// Earlier questions of the conversation that retrieval reads with the new one.
const RETRIEVAL_EARLIER_TURNS: u32 = 2;

/// Why a question got no answer; the socket turns it into an `error` frame.
#[derive(Debug)]
pub enum AskError {
    /// Every answer slot of this instance is taken.
    Busy,
    NotFound,
    TooManyConversations { limit: u32 },
    RateLimited { retry_after: u64, per_minute: u32 },
    Store(StoreError),
    /// The model request could not start; the answer's row is stored as an error.
    Upstream { answer_id: String, error: UpstreamError },
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
}

/// Starts answering `question`. `user_id` is the session's user once known (the
/// first question creates it), remembered by the caller across questions.
pub async fn start_answer(
    state: &AppState,
    session: &GuestSession,
    user_id: &mut Option<String>,
    question: String,
    conversation_id: Option<String>,
) -> Result<Started, AskError> {
    let user = match user_id {
        Some(user) => user.clone(),
        None => {
            let user = state.db.ensure_user(&session.0).await?;
            *user_id = Some(user.clone());
            user
        }
    };
    // A place among the answers this instance streams at once, held by the answer's
    // task; without one the question is refused before anything is stored.
    let Ok(slot) = state.answer_slots.clone().try_acquire_owned() else {
        return Err(AskError::Busy);
    };
    let settings = &state.settings;
    let hits = retrieve(state, &question, conversation_id.as_deref(), &user).await;
    let sources = excerpts::sources_from(&hits);
    let sources_json = sources_json(&sources);
    let begun = state
        .db
        .begin_answer(&NewAnswer {
            user_id: &user,
            conversation_id: conversation_id.as_deref(),
            question: &question,
            budget_chars: settings.context_budget_chars(),
            owner_instance: &state.instance_id,
            sources_json: sources_json.as_deref(),
            questions_per_minute: settings.questions_per_minute,
            max_conversations: settings.max_conversations_per_user,
        })
        .await
        .map_err(|error| match error {
            BeginError::NotFound => AskError::NotFound,
            BeginError::TooManyConversations { limit } => AskError::TooManyConversations { limit },
            BeginError::RateLimited { retry_after } => AskError::RateLimited {
                retry_after,
                per_minute: settings.questions_per_minute,
            },
            BeginError::Store(error) => AskError::Store(error),
        })?;

    let answer_id = begun.answer_id;
    let opened = if state.lesson_mode {
        let answer = excerpts::excerpt_answer(&question, &hits);
        Ok(AnswerStream::local(excerpts::words(&answer), LESSON_MODE_WORD_GAP))
    } else {
        let system_prompt = &state.upstream.settings().system_prompt;
        state
            .upstream
            .stream_chat(&model_messages(system_prompt, begun.turns, &hits, question))
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
    };
    let follower = state.live.start(answer_id, user, stream, slot);
    Ok(Started { start, follower })
}

fn sources_json(sources: &[Source]) -> Option<String> {
    (!sources.is_empty())
        .then(|| serde_json::to_string(sources).ok())
        .flatten()
}

/// The lesson sections for a question and the student's recent questions. A failure
/// means an answer without sources, never no answer.
async fn retrieve(state: &AppState, question: &str, conversation_id: Option<&str>, user: &str) -> Vec<Hit> {
    let earlier = match conversation_id {
        Some(id) => state
            .db
            .recent_questions(user, id, RETRIEVAL_EARLIER_TURNS)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot read earlier questions for retrieval");
                Vec::new()
            }),
        None => Vec::new(),
    };
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
