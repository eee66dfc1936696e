//! What the page's parts share: the conversation on screen, the sidebar's freshness,
//! whether answers are lesson excerpts, and the message list's element id. It sits
//! below `chat` and `history`, so the chat page and the sidebar both use it without
//! importing each other.

use leptos::prelude::*;

/// The id of the message list, the element that autoscroll moves.
pub const MESSAGES_ID: &str = "messages";

/// Whether answers are lesson excerpts (no model connected). On the server the router
/// provides it as context; the browser reads what the server put on `<html>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LessonMode(pub bool);

/// Whether the course's teachers may read every conversation (else only what students
/// shared); the page says which under the input. Carried like [`LessonMode`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TeachersReadAll(pub bool);

/// The conversation on screen and the list of conversations, as the sidebar sees them.
/// The signals belong to the chat state; showing another conversation goes through it,
/// because the live messages of the one on screen must go too.
#[derive(Debug, Clone, Copy)]
pub struct PageState {
    /// The conversation on screen; `None` for a new chat the server has not named yet.
    pub conversation_id: RwSignal<Option<String>>,
    /// Bumped when the list of conversations changed (a new one, a finished answer).
    pub sidebar_version: RwSignal<u32>,
    /// Bumped when the browser signed in (or up) in another tab.
    pub account_version: RwSignal<u32>,
    show: Callback<Option<String>>,
}

impl PageState {
    pub fn new(
        conversation_id: RwSignal<Option<String>>,
        sidebar_version: RwSignal<u32>,
        account_version: RwSignal<u32>,
        show: impl Fn(Option<String>) + Send + Sync + 'static,
    ) -> Self {
        PageState {
            conversation_id,
            sidebar_version,
            account_version,
            show: Callback::new(show),
        }
    }

    /// Shows another conversation, or a new chat with `None`.
    pub fn show_conversation(&self, conversation_id: Option<String>) {
        self.show.run(conversation_id);
    }
}

/// The conversation a chat address names: `/c/{id}` (`None` for `/` and other pages).
pub fn conversation_in_path(path: &str) -> Option<String> {
    let id = path.strip_prefix("/c/")?;
    (!id.is_empty() && !id.contains('/')).then(|| id.to_string())
}

#[cfg(test)]
mod path_tests {
    use super::conversation_in_path;

    #[test]
    fn only_a_chat_address_names_a_conversation() {
        assert_eq!(conversation_in_path("/c/3f2a").as_deref(), Some("3f2a"));
        assert_eq!(conversation_in_path("/"), None);
        assert_eq!(conversation_in_path("/c/"), None);
        assert_eq!(conversation_in_path("/c/3f2a/export.md"), None);
        assert_eq!(conversation_in_path("/lessons/c/x"), None);
    }
}
