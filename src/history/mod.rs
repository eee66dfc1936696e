//! Conversation history: the types the page and the server share; the server
//! functions that read and edit history (`api`), their SQL (`store`, server only),
//! searching conversations (`search`), the Markdown download (`export`) and the
//! sidebar (`view`).

use serde::{Deserialize, Serialize};

use crate::protocol::{ErrorCode, Source};

pub mod api;
#[cfg(feature = "ssr")]
pub mod export;
#[cfg(feature = "ssr")]
pub mod search;
#[cfg(feature = "ssr")]
pub mod store;
#[cfg(feature = "ssr")]
pub mod versions;
pub mod view;

/// Conversations per page of search results.
pub const SEARCH_PAGE: u32 = 20;
/// A search's text, in characters; longer is refused (`bad_request`).
pub const MAX_SEARCH_CHARS: usize = 200;

/// Messages per page when a conversation is opened.
pub const MESSAGE_PAGE: u32 = 50;
/// Conversations per page in the sidebar.
pub const CONVERSATION_PAGE: u32 = 30;
pub const MAX_TITLE_CHARS: usize = 120;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub id: String,
    pub title: String,
    /// Unix milliseconds.
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationPage {
    pub items: Vec<ConversationSummary>,
    /// Pass back to get the next (older) page; `None` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageRole {
    User,
    Assistant,
    /// The course's teacher, replying to a question the student sent them.
    Teacher,
}

impl MessageRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
            MessageRole::Teacher => "teacher",
        }
    }
    pub fn parse(s: &str) -> MessageRole {
        match s {
            "user" => MessageRole::User,
            "teacher" => MessageRole::Teacher,
            _ => MessageRole::Assistant,
        }
    }
}

/// Where a question the student sent their teacher ("ask my teacher") stands. The same
/// words in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherRequest {
    /// Sent; the teacher has not replied yet.
    Open,
    /// The teacher replied (the reply is a message of the conversation).
    Answered,
    /// The teacher closed it without a reply.
    Resolved,
}

impl TeacherRequest {
    pub fn as_str(self) -> &'static str {
        match self {
            TeacherRequest::Open => "open",
            TeacherRequest::Answered => "answered",
            TeacherRequest::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<TeacherRequest> {
        match s {
            "open" => Some(TeacherRequest::Open),
            "answered" => Some(TeacherRequest::Answered),
            "resolved" => Some(TeacherRequest::Resolved),
            _ => None,
        }
    }
}

/// A message's state; the same words on the wire and in the database.
pub use crate::protocol::AnswerStatus as MessageStatus;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub id: String,
    pub position: i64,
    pub role: MessageRole,
    pub content: String,
    pub status: MessageStatus,
    pub error_code: Option<ErrorCode>,
    pub created_at: i64,
    /// The lesson sections an answer cited (empty for questions).
    #[serde(default)]
    pub sources: Vec<Source>,
    /// The student's rating of an answer, if they gave one.
    #[serde(default)]
    pub feedback: Option<crate::feedback::Feedback>,
    /// Whether the student asked the teacher about this answer, and how that stands.
    #[serde(default)]
    pub teacher_request: Option<TeacherRequest>,
    /// The course FAQ entry an answer is, when it was the teacher's endorsed answer
    /// given without the model ("answered by your teacher").
    #[serde(default)]
    pub faq_id: Option<String>,
    /// Where another instance continued an answer (byte offsets into `content`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seams: Vec<u32>,
    /// Every version of this message (its id among them), oldest first, when it has
    /// more than one: an edited question or a regenerated answer. Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// The student's own name for the frame that made this message (its `ask_id`), on
    /// their own page: a question a reload cut off is told from a stored one by it, not
    /// by its text (the same words may well be asked twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationView {
    pub id: String,
    pub title: String,
    /// Oldest first.
    pub messages: Vec<StoredMessage>,
    /// Pass as `before` to load the page of older messages; `None` when none are left.
    pub older_cursor: Option<i64>,
}

/// A title from the first question: its first line, cut at a word near 60 characters.
pub fn title_from_question(question: &str) -> String {
    const WANT: usize = 60;
    let line = question
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.chars().count() <= WANT {
        return line.to_string();
    }
    let cut: String = line.chars().take(WANT).collect();
    let at_word = match cut.rfind(' ') {
        Some(i) if i > WANT / 2 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", at_word.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_the_first_line() {
        assert_eq!(title_from_question("\n  What is SSE?\nmore"), "What is SSE?");
        let long = "How does a WebSocket connection stay open while the server streams tokens to many students";
        let title = title_from_question(long);
        assert!(title.ends_with('…') && title.chars().count() <= 61, "{title}");
        assert!(long.starts_with(title.trim_end_matches('…')));
    }
}
