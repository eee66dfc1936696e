//! The FAQ's server functions: the public list (and search), and the teacher's
//! endorse / edit / withdraw, each starting with the role check (`not_found` for
//! anyone else). A change counts from the next question on, on every instance: it
//! bumps the FAQ's version in the database, which each answer reads first.

use leptos::prelude::*;

use super::FaqEntry;
use crate::error::AppError;

/// The course FAQ, oldest first; with a query, the entries sharing its words, best
/// first. Public: it is the course's.
#[server(endpoint = "faq/list")]
pub async fn faq_list(q: String) -> Result<Vec<FaqEntry>, AppError> {
    const MAX_QUERY_CHARS: usize = 500;
    let state = crate::state::app_state()?;
    state.faq.refresh(&state.db).await?;
    let query: String = q.chars().take(MAX_QUERY_CHARS).collect();
    // Who endorsed an entry (a teacher's sign-in name) and the student's answer it
    // came from are the teachers' to know, not the public's.
    Ok(state
        .faq
        .search(&query)
        .into_iter()
        .map(|entry| FaqEntry { message_id: String::new(), endorsed_by: String::new(), ..entry })
        .collect())
}

/// The course FAQ as the teachers manage it: every entry, oldest first, with who
/// endorsed it.
#[server(endpoint = "teach/faq")]
pub async fn teach_faq() -> Result<Vec<FaqEntry>, AppError> {
    let teacher = crate::teacher::api::ssr::require_teacher().await?;
    teacher.state.faq.refresh(&teacher.state.db).await?;
    Ok(teacher.state.faq.search(""))
}

#[cfg(feature = "ssr")]
mod ssr {
    use crate::error::AppError;
    use crate::faq::{checked_text, FaqEntry, MAX_FAQ_ANSWER_CHARS, MAX_FAQ_QUESTION_CHARS};
    use crate::protocol::ErrorCode;
    use crate::state::AppState;

    pub fn not_found() -> AppError {
        AppError::new(ErrorCode::NotFound, "No such answer or FAQ entry.")
    }

    /// The teacher's wording, within its limits and not empty.
    pub fn wording(question: &str, answer: &str) -> Result<(String, String), AppError> {
        let invalid = || {
            AppError::new(
                ErrorCode::InvalidFaqText,
                format!("A question has 1 to {MAX_FAQ_QUESTION_CHARS} characters, an answer 1 to {MAX_FAQ_ANSWER_CHARS}."),
            )
        };
        let question = checked_text(question, MAX_FAQ_QUESTION_CHARS).ok_or_else(invalid)?;
        let answer = checked_text(answer, MAX_FAQ_ANSWER_CHARS).ok_or_else(invalid)?;
        Ok((question, answer))
    }

    pub async fn entry(state: &AppState, id: &str) -> Result<FaqEntry, AppError> {
        state.db.faq_entry(id).await?.ok_or_else(not_found)
    }
}

/// Endorses an answer for the FAQ, with the question's wording and the answer's text
/// as given (blank or absent: as they are in the conversation). Endorsing an answer
/// again replaces its wording.
#[server(endpoint = "teach/endorse")]
pub async fn endorse(message_id: String, question: Option<String>, answer: Option<String>) -> Result<FaqEntry, AppError> {
    let teacher = crate::teacher::api::ssr::require_teacher().await?;
    let db = &teacher.state.db;
    let read_all = teacher.state.settings.teachers_read_all_conversations;
    let original = db.endorsable(message_id.trim(), read_all).await?.ok_or_else(ssr::not_found)?;
    let given = |text: Option<String>, original: String| text.filter(|t| !t.trim().is_empty()).unwrap_or(original);
    let (question, answer) = ssr::wording(&given(question, original.question), &given(answer, original.answer))?;
    let id = db
        .save_endorsement(message_id.trim(), &question, &answer, original.sources_json.as_deref(), &teacher.username)
        .await?;
    tracing::info!(teacher = %teacher.username, faq = %id, "answer endorsed for the FAQ");
    ssr::entry(&teacher.state, &id).await
}

/// New wording for an endorsed entry.
#[server(endpoint = "teach/edit_endorsement")]
pub async fn edit_endorsement(id: String, question: String, answer: String) -> Result<FaqEntry, AppError> {
    let teacher = crate::teacher::api::ssr::require_teacher().await?;
    let (question, answer) = ssr::wording(&question, &answer)?;
    if !teacher.state.db.edit_endorsement(&id, &question, &answer, &teacher.username).await? {
        return Err(ssr::not_found());
    }
    tracing::info!(teacher = %teacher.username, faq = %id, "FAQ entry edited");
    ssr::entry(&teacher.state, &id).await
}

/// Takes an entry out of the FAQ.
#[server(endpoint = "teach/withdraw_endorsement")]
pub async fn withdraw_endorsement(id: String) -> Result<(), AppError> {
    let teacher = crate::teacher::api::ssr::require_teacher().await?;
    if !teacher.state.db.withdraw_endorsement(&id).await? {
        return Err(ssr::not_found());
    }
    tracing::info!(teacher = %teacher.username, faq = %id, "FAQ entry withdrawn");
    Ok(())
}
