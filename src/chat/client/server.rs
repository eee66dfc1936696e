//! The server's twin of the socket client: the same methods, doing nothing. A page
//! rendered on the server has no socket; the browser's client takes over after
//! hydration.

use crate::chat::state::ChatUi;
use crate::protocol::ClientFrame;

#[derive(Debug, Clone, Copy)]
pub struct ChatClient;

impl ChatClient {
    pub fn new(_ui: ChatUi) -> Self {
        ChatClient
    }

    pub fn start(self) {}

    /// There is no socket on the server: nothing is sent.
    pub fn send(self, _frame: &ClientFrame) -> bool {
        false
    }

    pub fn resume_if_connected(self) {}

    pub fn send_unsent(self) {}

    /// Never called on the server (nothing is asked there).
    pub fn new_ask_id(self) -> String {
        String::new()
    }

    pub fn scroll_to_latest(self, _force: bool) {}

    pub fn follow_if_at_bottom(self) {}
}
