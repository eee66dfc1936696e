//! Conversation history: the types the page and the server share, the server
//! functions that read and edit history, and (server only) the store.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::protocol::ErrorCode;

#[cfg(feature = "ssr")]
pub mod store;
pub mod view;

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
}

impl MessageRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
        }
    }
    pub fn parse(s: &str) -> MessageRole {
        if s == "user" {
            MessageRole::User
        } else {
            MessageRole::Assistant
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
    pub sources: Vec<crate::lessons::Source>,
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

#[cfg(feature = "ssr")]
mod ssr {
    use std::sync::Arc;

    use leptos::prelude::*;

    use super::store::{Db, StoreError};
    use crate::server::AppState;

    /// What a server function may tell a client: never database text.
    pub fn generic(error: StoreError) -> ServerFnError {
        tracing::error!(%error, "history query failed");
        ServerFnError::new("The history could not be read right now. Please try again.")
    }

    pub fn not_found() -> ServerFnError {
        ServerFnError::new("Conversation not found.")
    }

    /// The database and the caller's user id, `None` when this browser never asked
    /// anything (it then owns nothing).
    pub async fn caller() -> Result<(Arc<Db>, Option<String>), ServerFnError> {
        let state = use_context::<AppState>()
            .ok_or_else(|| ServerFnError::new("server state missing"))?;
        crate::auth::check_same_origin()?;
        let session = crate::auth::current_session();
        let user = match session {
            Some(session) => state.db.find_user(&session.0).await.map_err(generic)?,
            None => None,
        };
        Ok((state.db.clone(), user))
    }
}

#[server(endpoint = "history/list")]
pub async fn list_conversations(
    cursor: Option<String>,
) -> Result<ConversationPage, ServerFnError> {
    let (db, user) = ssr::caller().await?;
    let Some(user) = user else {
        return Ok(ConversationPage {
            items: Vec::new(),
            next_cursor: None,
        });
    };
    db.list_conversations(&user, cursor.as_deref(), CONVERSATION_PAGE)
        .await
        .map_err(ssr::generic)
}

#[server(endpoint = "history/load")]
pub async fn load_conversation(
    id: String,
    before: Option<i64>,
) -> Result<ConversationView, ServerFnError> {
    let (db, user) = ssr::caller().await?;
    let Some(user) = user else {
        return Err(ssr::not_found());
    };
    db.load_conversation(&user, &id, before, MESSAGE_PAGE)
        .await
        .map_err(ssr::generic)?
        .ok_or_else(ssr::not_found)
}

#[server(endpoint = "history/rename")]
pub async fn rename_conversation(id: String, title: String) -> Result<(), ServerFnError> {
    let title = title.trim();
    if title.is_empty() {
        return Err(ServerFnError::new("A title cannot be empty."));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ServerFnError::new(format!(
            "A title can have at most {MAX_TITLE_CHARS} characters."
        )));
    }
    let (db, user) = ssr::caller().await?;
    let Some(user) = user else {
        return Err(ssr::not_found());
    };
    match db.rename_conversation(&user, &id, title).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ssr::not_found()),
        Err(e) => Err(ssr::generic(e)),
    }
}

#[server(endpoint = "history/delete")]
pub async fn delete_conversation(id: String) -> Result<(), ServerFnError> {
    let (db, user) = ssr::caller().await?;
    let Some(user) = user else {
        return Err(ssr::not_found());
    };
    match db.delete_conversation(&user, &id).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ssr::not_found()),
        Err(e) => Err(ssr::generic(e)),
    }
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
