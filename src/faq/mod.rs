//! The course FAQ (issue #11, part 4): answers the teacher endorsed, optionally after
//! editing the question's wording and the answer's text. They are listed at `/faq`
//! (public, searchable), and a new question that matches one closely gets it without
//! a model call ("answered by your teacher"); a looser match goes to the model as a
//! source. See docs/faq.md. Types here; `store` (SQL) and `matcher` (the in-memory
//! index of endorsed questions) on the server; `api` (server functions) and `view`
//! (the `/faq` page, the teacher's panel and `EndorseForm`) on both.

use serde::{Deserialize, Serialize};

use crate::protocol::Source;

pub mod api;
#[cfg(feature = "ssr")]
pub mod matcher;
#[cfg(feature = "ssr")]
pub mod store;
pub mod view;

/// The longest endorsed question and answer (characters).
pub const MAX_FAQ_QUESTION_CHARS: usize = 4000;
pub const MAX_FAQ_ANSWER_CHARS: usize = 20_000;

/// One endorsed question and answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaqEntry {
    pub id: String,
    /// The answer it was endorsed from.
    pub message_id: String,
    pub question: String,
    pub answer: String,
    /// The lesson sections the answer cites as `[n]`.
    #[serde(default)]
    pub sources: Vec<Source>,
    pub endorsed_by: String,
    /// Unix milliseconds of the endorsement's last change.
    pub updated_at: i64,
}

/// The element id of an entry on `/faq` (and a source's anchor).
pub fn anchor(id: &str) -> String {
    format!("faq-{id}")
}

/// Where an entry is shown.
pub fn href(id: &str) -> String {
    format!("/faq#{}", anchor(id))
}

/// A question or answer as the teacher wrote it: trimmed, within its length, not empty.
pub fn checked_text(text: &str, max_chars: usize) -> Option<String> {
    let text = text.trim();
    (!text.is_empty() && text.chars().count() <= max_chars).then(|| text.to_string())
}
