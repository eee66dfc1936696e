//! The history's server functions: list, search, load, rename, delete — each scoped to the
//! caller's user, so another student's conversation is simply "not found".

use leptos::prelude::*;

use super::{ConversationPage, ConversationView};
#[cfg(feature = "ssr")]
use super::{CONVERSATION_PAGE, MAX_SEARCH_CHARS, MAX_TITLE_CHARS, MESSAGE_PAGE, SEARCH_PAGE};
use crate::error::AppError;
#[cfg(feature = "ssr")]
use crate::protocol::ErrorCode;

#[cfg(feature = "ssr")]
mod ssr {
    use std::sync::Arc;

    use crate::db::Db;
    use crate::error::AppError;
    use crate::protocol::ErrorCode;

    /// Someone else's conversation gets the same answer as a missing one.
    pub fn not_found() -> AppError {
        AppError::new(ErrorCode::NotFound, "Conversation not found.")
    }

    /// The database and the caller's user id, `None` when this browser never asked
    /// anything (it then owns nothing).
    pub async fn caller() -> Result<(Arc<Db>, Option<String>), AppError> {
        let state = crate::state::app_state()?;
        crate::auth::check_same_origin()?;
        let user = crate::auth::session_user(&state.db).await?;
        Ok((state.db.clone(), user))
    }

    /// Tells every open tab of the student (on every instance) that a conversation
    /// changed, so their sidebars and pages follow.
    pub fn tell_tabs(user: &str, conversation_id: &str, change: crate::protocol::ConversationChange, title: Option<&str>) {
        if let Ok(state) = crate::state::app_state() {
            let frame = crate::protocol::ServerFrame::ConversationChanged {
                conversation_id: conversation_id.to_string(),
                change,
                title: title.map(str::to_string),
                message_id: None,
            };
            state.bus.publish_user(user, &frame, None, None);
        }
    }
}

#[server(endpoint = "history/list")]
pub async fn list_conversations(
    cursor: Option<String>,
) -> Result<ConversationPage, AppError> {
    let (db, user) = ssr::caller().await?;
    let Some(user) = user else {
        return Ok(ConversationPage {
            items: Vec::new(),
            next_cursor: None,
        });
    };
    Ok(db.list_conversations(&user, cursor.as_deref(), CONVERSATION_PAGE).await?)
}

#[server(endpoint = "history/load")]
pub async fn load_conversation(
    id: String,
    before: Option<i64>,
) -> Result<ConversationView, AppError> {
    let (db, user) = ssr::caller().await?;
    let Some(user) = user else {
        return Err(ssr::not_found());
    };
    db.load_conversation(&user, &id, before, MESSAGE_PAGE)
        .await?
        .ok_or_else(ssr::not_found)
}

#[server(endpoint = "history/rename")]
pub async fn rename_conversation(id: String, title: String) -> Result<(), AppError> {
    let title = title.trim();
    if title.is_empty() {
        return Err(AppError::new(ErrorCode::InvalidTitle, "A title cannot be empty."));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(AppError::new(
            ErrorCode::InvalidTitle,
            format!("A title can have at most {MAX_TITLE_CHARS} characters."),
        ));
    }
    let (db, user) = ssr::caller().await?;
    let Some(user) = user else {
        return Err(ssr::not_found());
    };
    match db.rename_conversation(&user, &id, title).await {
        Ok(true) => {
            ssr::tell_tabs(&user, &id, crate::protocol::ConversationChange::Renamed, Some(title));
            Ok(())
        }
        Ok(false) => Err(ssr::not_found()),
        Err(e) => Err(e.into()),
    }
}

#[server(endpoint = "history/delete")]
pub async fn delete_conversation(id: String) -> Result<(), AppError> {
    let (db, user) = ssr::caller().await?;
    let Some(user) = user else {
        return Err(ssr::not_found());
    };
    match db.delete_conversation(&user, &id).await {
        Ok(true) => {
            ssr::tell_tabs(&user, &id, crate::protocol::ConversationChange::Deleted, None);
            Ok(())
        }
        Ok(false) => Err(ssr::not_found()),
        Err(e) => Err(e.into()),
    }
}

/// Shows another version of a message (`message_id`, one of the versions listed on a
/// message of the conversation): the conversation then reads down that version.
#[server(endpoint = "history/show-version")]
pub async fn show_version(id: String, message_id: String) -> Result<(), AppError> {
    use super::versions::ForkRefusal;
    let (db, user) = ssr::caller().await?;
    let Some(user) = user else {
        return Err(ssr::not_found());
    };
    match db.show_version(&user, &id, &message_id).await? {
        Ok(()) => {
            ssr::tell_tabs(&user, &id, crate::protocol::ConversationChange::VersionShown, None);
            Ok(())
        }
        Err(ForkRefusal::Streaming) => Err(AppError::new(
            ErrorCode::Busy,
            "An answer is still being written in this conversation; wait for it or stop it.",
        )),
        Err(_) => Err(AppError::new(ErrorCode::NotFound, "No such version in this conversation.")),
    }
}

/// Words of a search that count; more are left out (each is a subquery).
#[cfg(feature = "ssr")]
const MAX_SEARCH_WORDS: usize = 8;

/// The caller's conversations with every word of `query` in their title, questions,
/// answers or the teacher's replies (Russian and English word forms, as lessons are
/// searched), newest first, a page at a time (`cursor` as for the list).
#[server(endpoint = "history/search")]
pub async fn search_conversations(query: String, cursor: Option<String>) -> Result<ConversationPage, AppError> {
    let query = query.trim();
    if query.chars().count() > MAX_SEARCH_CHARS {
        return Err(AppError::new(
            ErrorCode::BadRequest,
            format!("A search can have at most {MAX_SEARCH_CHARS} characters."),
        ));
    }
    let nothing = ConversationPage {
        items: Vec::new(),
        next_cursor: None,
    };
    let (db, user) = ssr::caller().await?;
    let Some(user) = user else {
        return Ok(nothing);
    };
    let mut words = crate::lessons::index::word_stems(query);
    words.sort();
    words.dedup();
    words.truncate(MAX_SEARCH_WORDS);
    if words.is_empty() {
        // Only stop words ("the", "и"): nothing to look for.
        return Ok(nothing);
    }
    db.index_for_search(&user).await?;
    Ok(db.search_conversations(&user, &words, cursor.as_deref(), SEARCH_PAGE).await?)
}
