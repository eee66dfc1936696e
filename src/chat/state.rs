//! The page's reactive state and how server frames change it. Plain signals, no
//! browser APIs, so the same logic is unit-tested on the server.

use leptos::prelude::*;

pub use super::meter::Meter;
use crate::history::{MessageRole, MessageStatus, StoredMessage};
use crate::page::PageState;
use crate::protocol::{AnswerStatus, ClientFrame, ConversationChange, EndReason, ErrorCode, ServerFrame};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    Connecting,
    Connected,
    Reconnecting,
    Offline,
    /// The server refused this tab: the browser has its most chat tabs open.
    TooManyTabs,
}

impl ConnState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Connected => "connected",
            ConnState::Reconnecting => "reconnecting",
            ConnState::Offline => "offline",
            ConnState::TooManyTabs => "too_many_tabs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Student,
    Tutor,
    /// The course's teacher, replying to a question the student sent them.
    Teacher,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemStatus {
    /// Asked; no token yet.
    Waiting,
    Streaming,
    Complete,
    Stopped,
    /// Cut by a crash or shutdown; the text so far is kept.
    Interrupted,
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ItemError {
    pub code: Option<ErrorCode>,
    /// The server's own words, kept for the tooltip; the page shows localized text.
    pub detail: String,
    pub retry_after: Option<u64>,
}

/// One message on the page. Its parts are signals so that a streaming answer
/// re-renders only its own text.
#[derive(Debug, Clone, Copy)]
pub struct ChatItem {
    pub key: u64,
    pub role: Role,
    pub text: RwSignal<String>,
    pub status: RwSignal<ItemStatus>,
    pub error: RwSignal<Option<ItemError>>,
    /// Older turns were left out of the model's context for this answer.
    pub context_truncated: RwSignal<bool>,
    /// The lesson sections this answer may cite.
    pub sources: RwSignal<Vec<crate::lessons::Source>>,
    /// The answer's id once the server named it (`start`): what a rating refers to.
    pub message_id: RwSignal<Option<String>>,
    /// The course FAQ entry this answer is, when the teacher's endorsed answer was
    /// given without the model ("answered by your teacher").
    pub faq_id: RwSignal<Option<String>>,
    /// The message's versions (its id among them) when it has several.
    pub versions: RwSignal<Vec<String>>,
}

impl ChatItem {
    pub fn new(key: u64, role: Role, text: String, status: ItemStatus) -> Self {
        ChatItem {
            key,
            role,
            text: RwSignal::new(text),
            status: RwSignal::new(status),
            error: RwSignal::new(None),
            context_truncated: RwSignal::new(false),
            sources: RwSignal::new(Vec::new()),
            message_id: RwSignal::new(None),
            faq_id: RwSignal::new(None),
            versions: RwSignal::new(Vec::new()),
        }
    }
}

/// The answer the page is waiting for.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub item_key: u64,
    pub message_id: Option<String>,
    pub last_seq: u64,
    /// The frame that began it (`ask`, `regenerate` or `edit`), until its `start`
    /// comes: sent again, as it was, when the connection drops first (the server
    /// follows the answer it began, if the first one reached it, instead of asking
    /// twice).
    pub ask: Option<ClientFrame>,
}

/// What the page must do after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// Ask for the followed answer again (`resume`): a snapshot puts the page in step.
    Resync,
    /// The server refused the socket (too many tabs): try again after this long, not
    /// at once.
    Refused { retry_after_ms: u64 },
}

/// How an `end` relates to the answer the page follows.
enum EndStep {
    InStep,
    Behind,
    Other,
}

/// The pending answer of a regenerate or an edit before the page shows it (no item has
/// this key; live items count up from 1, an adopted one is `u64::MAX`).
const VERSION_PLACEHOLDER_KEY: u64 = 0;

#[derive(Debug, Clone, Copy)]
pub struct ChatUi {
    pub conn: RwSignal<ConnState>,
    pub items: RwSignal<Vec<ChatItem>>,
    pub pending: RwSignal<Option<Pending>>,
    pub conversation_id: RwSignal<Option<String>>,
    /// Bumped when the list of conversations changed (a new one, a finished answer).
    pub sidebar_version: RwSignal<u32>,
    /// Bumped when the browser signed in (or up) in another tab: who is signed in is
    /// read again.
    pub account_version: RwSignal<u32>,
    /// Set by `session_changed` until the socket is back with the new cookie.
    account_stale: RwSignal<bool>,
    /// Autoscroll follows the answer until the student scrolls up to read.
    pub follow: RwSignal<bool>,
    /// Seconds until the rate limit lets this student ask again (0: now).
    pub ask_again_in: RwSignal<u64>,
    /// The question budget's meter, once the server sent one (`None`: no budget).
    pub budget: RwSignal<Option<Meter>>,
    /// Answers the teacher replied about since the page loaded (their ids).
    pub teacher_replied: RwSignal<Vec<String>>,
    /// Bumped when another tab changed the conversation on screen: it is read again
    /// from history (and an answer streaming there is followed).
    pub reloads: RwSignal<u32>,
    /// Set when another tab deleted the conversation on screen.
    pub deleted_elsewhere: RwSignal<bool>,
    /// Why the last regenerate, edit or switch of versions was refused (it has no
    /// answer on screen to show it under).
    pub version_error: RwSignal<Option<ItemError>>,
    /// The version just shown by a switch: its switcher takes the keyboard focus.
    pub focus_version: RwSignal<Option<String>>,
    /// A stored answer still being written (found after a reload) that this page follows.
    adopted: RwSignal<Option<ChatItem>>,
    next_key: RwSignal<u64>,
}

impl Default for ChatUi {
    fn default() -> Self {
        Self::new()
    }
}

impl ChatUi {
    pub fn new() -> Self {
        ChatUi {
            conn: RwSignal::new(ConnState::Connecting),
            items: RwSignal::new(Vec::new()),
            pending: RwSignal::new(None),
            conversation_id: RwSignal::new(None),
            sidebar_version: RwSignal::new(0),
            account_version: RwSignal::new(0),
            account_stale: RwSignal::new(false),
            follow: RwSignal::new(true),
            ask_again_in: RwSignal::new(0),
            budget: RwSignal::new(None),
            teacher_replied: RwSignal::new(Vec::new()),
            reloads: RwSignal::new(0),
            deleted_elsewhere: RwSignal::new(false),
            version_error: RwSignal::new(None),
            focus_version: RwSignal::new(None),
            adopted: RwSignal::new(None),
            next_key: RwSignal::new(1),
        }
    }

    /// The part of this state the sidebar shares: the conversation on screen, the
    /// list's version, and showing another conversation through [`Self::show_conversation`].
    pub fn page_state(&self) -> PageState {
        let ui = *self;
        PageState::new(self.conversation_id, self.sidebar_version, self.account_version, move |id| {
            ui.show_conversation(id)
        })
    }

    /// Shows another conversation (or a new one): the live messages belong to the old
    /// one and go; its stored messages come from history. An answer still streaming
    /// elsewhere keeps going on the server and is stored there.
    pub fn show_conversation(&self, conversation_id: Option<String>) {
        // Only what changes is set: during a server render every set re-runs readers
        // already rendered.
        if self.items.with_untracked(|items| !items.is_empty()) {
            self.items.set(Vec::new());
        }
        if self.adopted.with_untracked(Option::is_some) {
            self.adopted.set(None);
        }
        if self.conversation_id.get_untracked() != conversation_id {
            self.conversation_id.set(conversation_id);
        }
    }

    fn bump_sidebar(&self) {
        self.sidebar_version.update(|v| *v = v.wrapping_add(1));
    }

    /// Called every second by the client: counts the rate-limit wait down.
    pub fn tick_second(&self) {
        if self.ask_again_in.get_untracked() > 0 {
            self.ask_again_in.update(|s| *s -= 1);
        }
    }

    /// Called by the client a few times a second with the milliseconds since its last
    /// call (or since the last `budget` frame): the meter refills on screen.
    pub fn tick_budget(&self, elapsed_ms: u64) {
        let moved = self.budget.with_untracked(|meter| {
            meter.and_then(|meter| {
                let mut next = meter;
                next.advance(elapsed_ms);
                (next != meter).then_some(next)
            })
        });
        if let Some(next) = moved {
            self.budget.set(Some(next));
        }
    }

    /// Seconds until this student may ask again: the rate limit's refusal, or an empty
    /// question budget's next refill (0: now).
    pub fn wait_seconds(&self) -> u64 {
        let budget_wait = self
            .budget
            .with(|meter| meter.filter(|m| m.remaining == 0).map_or(0, |m| m.next_in_seconds().max(1)));
        self.ask_again_in.get().max(budget_wait)
    }

    /// Whether a question (or a new version of one) can be sent now: none under way,
    /// the socket up, and neither the rate limit nor an empty budget holding it back.
    pub fn can_ask(&self) -> bool {
        !self.is_answering() && self.conn.get() == ConnState::Connected && self.wait_seconds() == 0
    }

    pub fn is_answering(&self) -> bool {
        self.pending.with(Option::is_some)
    }

    /// Whether the answer this page follows is not on screen: the student opened
    /// another conversation while it streams (the socket follows one answer at a time,
    /// so this one's composer waits for it).
    pub fn answering_elsewhere(&self) -> bool {
        // Tracked, so the hint follows the page; `pending_item` reads them untracked.
        self.items.track();
        self.adopted.track();
        self.pending.with(|p| p.as_ref().is_some_and(|p| p.item_key != VERSION_PLACEHOLDER_KEY))
            && self.pending_item().is_none()
    }

    fn push(&self, role: Role, text: String, status: ItemStatus) -> ChatItem {
        let key = self.next_key.get_untracked();
        self.next_key.set(key + 1);
        let item = ChatItem::new(key, role, text, status);
        self.items.update(|items| items.push(item));
        item
    }

    /// Shows the question of an `ask` just sent and an empty answer that the stream
    /// will fill.
    pub fn begin_question(&self, ask: ClientFrame) {
        let ClientFrame::Ask { question, .. } = &ask else { return };
        self.push(Role::Student, question.clone(), ItemStatus::Complete);
        let answer = self.push(Role::Tutor, String::new(), ItemStatus::Waiting);
        self.pending.set(Some(Pending {
            item_key: answer.key,
            message_id: None,
            last_seq: 0,
            ask: Some(ask),
        }));
    }

    /// A question sent just before the page was reloaded, whose `start` had not come
    /// (the tab kept its `ask`): shown again, waiting, and to be sent again as it was
    /// (the server follows the answer it began, if it got the first). Not when the page
    /// shows it stored already (`stored`: the conversation's newest messages; its
    /// answer is then followed as any answer still being written, or is over), nor for
    /// another conversation than the one on screen. Returns whether it is to be sent.
    pub fn restore_unsent(&self, ask: ClientFrame, stored: &[StoredMessage]) -> bool {
        let ClientFrame::Ask { question, conversation_id, ask_id } = &ask else { return false };
        if self.pending.with_untracked(Option::is_some) || *conversation_id != self.conversation_id.get_untracked() {
            return false;
        }
        let streaming = stored
            .iter()
            .rev()
            .find(|m| m.role != MessageRole::Teacher)
            .is_some_and(|m| m.role == MessageRole::Assistant && m.status == MessageStatus::Streaming);
        // By its `ask_id`; by its words only against a question stored without one.
        let shown = stored.iter().any(|m| ask_id.is_some() && m.ask_id == *ask_id)
            || stored
                .iter()
                .rev()
                .find(|m| m.role == MessageRole::User)
                .is_some_and(|m| m.ask_id.is_none() && m.content == *question);
        if streaming || shown {
            return false;
        }
        self.begin_question(ask);
        true
    }

    /// A `regenerate` or `edit` was sent: the page waits for its answer, which comes
    /// with the conversation read again (see `ServerFrame::Start::replaces`). The frame
    /// is kept until then, to be sent again if the connection drops first (with its
    /// `ask_id`, the server follows the version it began instead of making two).
    pub fn begin_version(&self, frame: ClientFrame) {
        self.version_error.set(None);
        self.pending.set(Some(Pending {
            item_key: VERSION_PLACEHOLDER_KEY,
            message_id: None,
            last_seq: 0,
            ask: Some(frame),
        }));
    }

    /// Reads the conversation on screen again from history (another version is shown,
    /// or another tab changed it). An answer it finds streaming is followed.
    pub fn reload_conversation(&self) {
        self.items.set(Vec::new());
        self.adopted.set(None);
        self.reloads.update(|n| *n = n.wrapping_add(1));
    }

    /// The last answer on screen, which alone can be regenerated: the newest one asked
    /// on this page, else (`None`) the newest stored one.
    pub fn last_live_answer_key(&self) -> Option<u64> {
        self.items
            .with(|items| items.iter().rev().find(|item| item.role == Role::Tutor).map(|item| item.key))
    }

    fn pending_item(&self) -> Option<ChatItem> {
        let key = self.pending.with_untracked(|p| p.as_ref().map(|p| p.item_key))?;
        self.items
            .with_untracked(|items| items.iter().find(|i| i.key == key).copied())
            .or_else(|| self.adopted.get_untracked().filter(|i| i.key == key))
    }

    /// Follows a stored answer that is still being written (the page was reloaded
    /// mid-answer). The socket asks for it with `resume`.
    pub fn adopt(&self, item: ChatItem, message_id: String) {
        // Untracked: an Effect calls this once; it must not re-adopt when the answer ends.
        // While this page follows an answer, only that answer is adopted, shown again
        // by a new item: a new version this page asked for, whose answer comes with the
        // conversation read again; or the answer the student left for another
        // conversation and came back to (the socket kept following it). Its text so
        // far comes with the snapshot the `resume` brings.
        let waiting_for_it = self.pending.with_untracked(|pending| match pending {
            None => true,
            Some(p) => p.message_id.as_deref() == Some(message_id.as_str()),
        });
        if !waiting_for_it {
            return;
        }
        self.adopted.set(Some(item));
        self.pending.set(Some(Pending {
            item_key: item.key,
            message_id: Some(message_id),
            last_seq: 0,
            ask: None,
        }));
    }

    /// Names the question of the pending answer (from `start`), so it can be edited.
    fn set_question_id(&self, question_id: String) {
        let Some(key) = self.pending.with_untracked(|p| p.as_ref().map(|p| p.item_key)) else {
            return;
        };
        let question = self.items.with_untracked(|items| {
            let at = items.iter().position(|item| item.key == key)?;
            items[..at].iter().rev().find(|item| item.role == Role::Student).copied()
        });
        if let Some(question) = question {
            question.message_id.set(Some(question_id));
        }
    }

    /// The answer to ask for again after a reconnect, if one was under way.
    pub fn resume_target(&self) -> Option<String> {
        self.pending
            .with_untracked(|p| p.as_ref().and_then(|p| p.message_id.clone()))
    }

    /// Whether the page waits for the `start` of a question or a version it sent (and
    /// keeps the frame to send again).
    fn waiting_for_start(&self) -> bool {
        self.pending.with_untracked(|p| p.as_ref().is_some_and(|p| p.ask.is_some()))
    }

    /// Stop pressed with no connection: a question whose answer has not begun is not
    /// sent again, and shows as stopped. A version is not sent again either; the
    /// conversation is read again, in case the first copy reached the server.
    pub fn stop_unsent(&self) {
        if !self.waiting_for_start() {
            return;
        }
        match self.pending_item() {
            Some(item) => item.status.set(ItemStatus::Stopped),
            None => self.reload_conversation(),
        }
        self.pending.set(None);
    }

    /// What a new connection sends first: `resume` of the answer under way, or the
    /// `ask` (`regenerate`, `edit`) whose `start` the dropped connection never brought,
    /// sent again as it was.
    pub fn reconnect_frame(&self) -> Option<ClientFrame> {
        self.pending.with_untracked(|p| {
            let p = p.as_ref()?;
            match &p.message_id {
                Some(message_id) => Some(ClientFrame::Resume { message_id: message_id.clone() }),
                None => p.ask.clone(),
            }
        })
    }

    fn fail_pending(&self, error: ItemError) {
        if let Some(item) = self.pending_item() {
            item.status.set(ItemStatus::Failed);
            item.error.set(Some(error));
        } else {
            // A refused regenerate or edit: nothing was added to the page.
            self.version_error.set(Some(error));
        }
        self.pending.set(None);
    }

    /// The socket dropped. An answer the server had started goes on being written
    /// there, and is resumed on reconnect; so is a question or a new version whose
    /// `start` had not come (its frame is sent again).
    pub fn connection_lost(&self) {
        if self.is_answering() && self.reconnect_frame().is_none() {
            self.fail_pending(ItemError {
                code: None,
                detail: "connection lost".into(),
                retry_after: None,
            });
        }
    }

    /// Applies one frame from the server. `Resync` asks the caller to send `resume`
    /// for [`Self::resume_target`]: the page fell behind the answer it follows.
    pub fn apply(&self, frame: ServerFrame) -> Applied {
        match frame {
            ServerFrame::Hello { .. } => {
                // The first socket since a sign-in elsewhere: the browser's cookie is
                // the account's by now, so the account box and the list read it.
                if self.account_stale.get_untracked() {
                    self.account_stale.set(false);
                    self.account_version.update(|v| *v = v.wrapping_add(1));
                    self.bump_sidebar();
                }
            }
            // The socket closes next; the page reconnects with its cookie.
            ServerFrame::SessionChanged => {
                self.account_stale.set(true);
                // A question or version whose `start` has not come is not sent again
                // under another identity: its `ask_id` is the old one's (the history
                // shows it if it was stored).
                if self.waiting_for_start() {
                    self.fail_pending(ItemError { code: None, detail: "connection lost".into(), retry_after: None });
                }
            }
            ServerFrame::Start {
                conversation_id,
                message_id,
                context_truncated,
                sources,
                faq_id,
                question_id,
                replaces,
            } => {
                if replaces.is_some() {
                    // A new version: the branch on screen changed from that message
                    // down. It is read again, and its streaming answer adopted.
                    self.pending.set(Some(Pending {
                        item_key: VERSION_PLACEHOLDER_KEY,
                        message_id: Some(message_id),
                        last_seq: 0,
                        ask: None,
                    }));
                    if self.conversation_id.get_untracked().as_deref() != Some(conversation_id.as_str()) {
                        self.conversation_id.set(Some(conversation_id));
                    }
                    self.bump_sidebar();
                    self.reload_conversation();
                    return Applied::Done;
                }
                if let Some(question) = question_id {
                    self.set_question_id(question);
                }
                let on_screen = self.pending_item();
                if let Some(item) = on_screen {
                    item.context_truncated.set(context_truncated);
                    item.sources.set(sources);
                    item.faq_id.set(faq_id);
                    item.message_id.set(Some(message_id.clone()));
                    if self.conversation_id.get_untracked().as_deref() != Some(conversation_id.as_str()) {
                        self.conversation_id.set(Some(conversation_id.clone()));
                    }
                }
                self.bump_sidebar();
                self.pending.update(|p| {
                    if let Some(p) = p {
                        p.message_id = Some(message_id);
                        p.last_seq = 0;
                        p.ask = None;
                    }
                });
                // The student opened another conversation before this `start` came (a
                // question sent again after a reconnect): the page stays where it is.
                // Back on the question's conversation, it is read again, and the
                // answer, stored and streaming, is followed from there (`adopt`).
                if on_screen.is_none()
                    && self.conversation_id.get_untracked().as_deref() == Some(conversation_id.as_str())
                {
                    self.reload_conversation();
                }
            }
            ServerFrame::Chunk {
                content,
                seq,
                message_id,
            } => {
                let Some(item) = self.pending_item() else {
                    return Applied::Done;
                };
                let accepted = self.pending.try_update(|p| match p {
                    Some(p)
                        if p.message_id.as_deref() == Some(message_id.as_str())
                            && seq == p.last_seq + 1 =>
                    {
                        p.last_seq = seq;
                        true
                    }
                    // A repeat (seq already seen) or another message's chunk is ignored.
                    _ => false,
                });
                if accepted == Some(true) {
                    item.text.update(|text| text.push_str(&content));
                    item.status.set(ItemStatus::Streaming);
                }
            }
            ServerFrame::End { message_id, seq, reason, .. } => {
                let step = self.pending.with_untracked(|p| match p {
                    Some(p) if p.message_id.as_deref().is_some_and(|id| id != message_id) => EndStep::Other,
                    Some(p) if p.last_seq < seq && p.message_id.is_some() => EndStep::Behind,
                    _ => EndStep::InStep,
                });
                match step {
                    // Another answer's end (one this page no longer follows).
                    EndStep::Other => return Applied::Done,
                    // Chunks are missing on screen: an answer adopted from history
                    // whose snapshot has not come yet, or a follower that fell behind.
                    // Ending it here would keep a cut text marked complete; the
                    // snapshot brings the whole text and ends it.
                    EndStep::Behind => return Applied::Resync,
                    EndStep::InStep => {}
                }
                self.bump_sidebar();
                if let Some(item) = self.pending_item() {
                    item.status.set(match reason {
                        EndReason::Stopped => ItemStatus::Stopped,
                        _ => ItemStatus::Complete,
                    });
                }
                self.pending.set(None);
            }
            ServerFrame::Error {
                code,
                message,
                message_id,
                retry_after,
            } => {
                let error = ItemError {
                    code: Some(code),
                    detail: message,
                    retry_after,
                };
                // The socket itself was refused; the server closes it next.
                if code == ErrorCode::TooManyConnections {
                    self.conn.set(ConnState::TooManyTabs);
                    return Applied::Refused { retry_after_ms: retry_after.unwrap_or(10).saturating_mul(1000) };
                }
                // The server's own rate limit refuses a question before it has an id.
                if code == ErrorCode::RateLimited && message_id.is_none() {
                    self.ask_again_in.set(retry_after.unwrap_or(1));
                }
                let about_pending = message_id.is_some()
                    || matches!(
                        code,
                        ErrorCode::BadRequest
                            | ErrorCode::TooLarge
                            | ErrorCode::Busy
                            | ErrorCode::ServerBusy
                            | ErrorCode::RateLimited
                            | ErrorCode::LimitReached
                            | ErrorCode::NotFound
                            | ErrorCode::Internal
                    );
                // A question sent again after a reconnect, refused because the session
                // ended meanwhile, is over too.
                let about_pending = about_pending || (code == ErrorCode::SessionEnded && self.waiting_for_start());
                if about_pending && self.is_answering() {
                    self.fail_pending(error);
                } else if let Some(last) = self.items.with_untracked(|i| i.last().copied()) {
                    last.error.set(Some(error));
                }
            }
            ServerFrame::TeacherReply {
                conversation_id,
                asked_about,
                content,
                ..
            } => {
                self.teacher_replied.update(|ids| ids.push(asked_about));
                self.bump_sidebar();
                if self.conversation_id.get_untracked().as_deref() == Some(conversation_id.as_str()) {
                    self.push(Role::Teacher, content, ItemStatus::Complete);
                }
            }
            ServerFrame::Snapshot {
                message_id,
                content,
                seq,
                status,
                live,
                code,
            } => {
                if self.resume_target().as_deref() != Some(message_id.as_str()) {
                    return Applied::Done;
                }
                let Some(item) = self.pending_item() else {
                    // A new version still waiting for the page to show it, and already
                    // over (its `end` lost with a dropped socket): the reload shows it
                    // finished; nothing is pending any more.
                    if !live {
                        self.pending.set(None);
                        self.bump_sidebar();
                    }
                    return Applied::Done;
                };
                item.text.set(content);
                self.pending.update(|p| {
                    if let Some(p) = p {
                        p.last_seq = seq;
                    }
                });
                item.status.set(match status {
                    AnswerStatus::Streaming => ItemStatus::Streaming,
                    AnswerStatus::Complete => ItemStatus::Complete,
                    AnswerStatus::Stopped => ItemStatus::Stopped,
                    AnswerStatus::Interrupted => ItemStatus::Interrupted,
                    AnswerStatus::Error => ItemStatus::Failed,
                });
                if status == AnswerStatus::Error {
                    item.error.set(Some(ItemError {
                        code,
                        detail: "the answer failed".into(),
                        retry_after: None,
                    }));
                }
                if !live {
                    // Over, or being written by another instance: nothing more comes here.
                    self.pending.set(None);
                    self.bump_sidebar();
                }
            }
            ServerFrame::ConversationChanged {
                conversation_id, change, ..
            } => {
                self.bump_sidebar();
                let on_screen = self.conversation_id.get_untracked().as_deref() == Some(conversation_id.as_str());
                if !on_screen {
                    return Applied::Done;
                }
                match change {
                    ConversationChange::Deleted => {
                        self.pending.set(None);
                        self.show_conversation(None);
                        self.deleted_elsewhere.set(true);
                    }
                    // This tab's own answer is on screen: its end reloads the list only.
                    _ if self.is_answering() => {}
                    ConversationChange::Asked | ConversationChange::TeacherReplied | ConversationChange::VersionShown => {
                        self.reload_conversation();
                    }
                    ConversationChange::Renamed => {}
                }
            }
            ServerFrame::Pong { .. } => {}
            ServerFrame::Budget {
                remaining,
                capacity,
                refill_ms,
                next_refill_ms,
            } => {
                // The budget's own count supersedes a refusal's whole seconds.
                self.ask_again_in.set(0);
                self.budget.set(Some(Meter {
                    remaining,
                    capacity,
                    refill_ms,
                    next_refill_ms,
                }));
            }
        }
        Applied::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `start` of answer `message_id` in conversation `c1`.
    fn start(message_id: &str, question_id: Option<&str>, replaces: Option<&str>) -> ServerFrame {
        ServerFrame::Start {
            conversation_id: "c1".into(),
            message_id: message_id.into(),
            context_truncated: false,
            sources: Vec::new(),
            faq_id: None,
            question_id: question_id.map(Into::into),
            replaces: replaces.map(Into::into),
        }
    }

    /// An `ask` as the page sends it.
    fn ask(question: &str) -> ClientFrame {
        ClientFrame::Ask { question: question.into(), conversation_id: None, ask_id: Some(format!("id-{question}")) }
    }

    fn regenerate(answer_id: &str) -> ClientFrame {
        ClientFrame::Regenerate { message_id: answer_id.into(), ask_id: Some(format!("r-{answer_id}")) }
    }

    fn chunk(content: &str, seq: u64) -> ServerFrame {
        ServerFrame::Chunk {
            content: content.into(),
            seq,
            message_id: "m1".into(),
        }
    }

    #[test]
    fn a_sign_in_elsewhere_rereads_the_account_once_the_socket_is_back() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            let hello = || ServerFrame::Hello { protocol: 1, max_question_chars: 4000 };
            ui.apply(hello());
            assert_eq!(ui.account_version.get_untracked(), 0, "a plain connection changes nothing");
            ui.apply(ServerFrame::SessionChanged);
            // Not yet: the browser may not hold the account's cookie before the socket
            // has reconnected with it.
            assert_eq!(ui.account_version.get_untracked(), 0);
            let sidebar = ui.sidebar_version.get_untracked();
            ui.apply(hello());
            assert_eq!(ui.account_version.get_untracked(), 1);
            assert_eq!(ui.sidebar_version.get_untracked(), sidebar.wrapping_add(1), "the account's list");
            ui.apply(hello());
            assert_eq!(ui.account_version.get_untracked(), 1, "once");
        });
    }

    #[test]
    fn answer_is_the_concatenation_of_chunks_in_order() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            ui.begin_question(ask("What is SSE?"));
            assert!(ui.is_answering());
            ui.apply(start("m1", None, None));
            ui.apply(chunk("Server", 1));
            ui.apply(chunk("-sent", 2));
            ui.apply(chunk("-sent", 2)); // a repeat is ignored
            ui.apply(chunk(" lost?", 4)); // a gap is not glued on
            ui.apply(chunk(" events", 3));
            ui.apply(ServerFrame::End {
                message_id: "m1".into(),
                seq: 3,
                reason: EndReason::Complete,
                usage: None,
            });
            let items = ui.items.get_untracked();
            assert_eq!(items.len(), 2);
            assert_eq!(items[1].text.get_untracked(), "Server-sent events");
            assert_eq!(items[1].status.get_untracked(), ItemStatus::Complete);
            assert!(!ui.is_answering());
            assert_eq!(ui.conversation_id.get_untracked().as_deref(), Some("c1"));
        });
    }

    #[test]
    fn a_refused_question_counts_down_until_asking_works_again() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            ui.begin_question(ask("q"));
            ui.apply(ServerFrame::Error {
                code: ErrorCode::RateLimited,
                message: "too many".into(),
                message_id: None,
                retry_after: Some(2),
            });
            assert!(!ui.is_answering(), "the input is free again");
            let answer = ui.items.get_untracked()[1];
            assert_eq!(answer.status.get_untracked(), ItemStatus::Failed);
            assert_eq!(ui.ask_again_in.get_untracked(), 2);
            ui.tick_second();
            assert_eq!(ui.ask_again_in.get_untracked(), 1);
            ui.tick_second();
            ui.tick_second();
            assert_eq!(ui.ask_again_in.get_untracked(), 0);
        });
    }

    #[test]
    fn a_budget_frame_sets_the_meter_and_its_count_rules_over_a_refusals_seconds() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            assert_eq!(ui.wait_seconds(), 0, "no budget, no wait");
            ui.begin_question(ask("q"));
            ui.apply(ServerFrame::Error {
                code: ErrorCode::RateLimited,
                message: "spent".into(),
                message_id: None,
                retry_after: Some(6),
            });
            ui.apply(ServerFrame::Budget { remaining: 0, capacity: 3, refill_ms: 6_000, next_refill_ms: 5_200 });
            assert_eq!(ui.ask_again_in.get_untracked(), 0);
            assert_eq!(ui.wait_seconds(), 6);
            ui.tick_budget(5_000);
            assert_eq!(ui.wait_seconds(), 1);
            ui.tick_budget(200);
            assert_eq!(ui.wait_seconds(), 0, "one came back: asking works");
            assert_eq!(ui.budget.get_untracked().map(|m| m.remaining), Some(1));
        });
    }

    #[test]
    fn errors_land_under_the_answer_and_free_the_input() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            ui.begin_question(ask("q"));
            ui.apply(ServerFrame::Error {
                code: ErrorCode::RateLimited,
                message: "busy".into(),
                message_id: Some("m".into()),
                retry_after: Some(7),
            });
            let answer = ui.items.get_untracked()[1];
            assert_eq!(answer.status.get_untracked(), ItemStatus::Failed);
            assert_eq!(answer.error.get_untracked().unwrap().retry_after, Some(7));
            assert!(!ui.is_answering());

            // Stopped while offline: not sent again, and the conversation read again.
            ui.begin_version(regenerate("a1"));
            ui.connection_lost();
            let reloads = ui.reloads.get_untracked();
            ui.stop_unsent();
            assert!(!ui.is_answering());
            assert_eq!(ui.reconnect_frame(), None);
            assert_eq!(ui.reloads.get_untracked(), reloads + 1);
            // Nor after a sign-in elsewhere: its `ask_id` is the old identity's.
            ui.begin_version(regenerate("a1"));
            ui.connection_lost();
            ui.apply(ServerFrame::SessionChanged);
            assert_eq!(ui.reconnect_frame(), None);
            assert!(ui.version_error.get_untracked().is_some());

            // A version whose `start` has not come is sent again, as it was, on the
            // next connection; the page goes on waiting for it.
            ui.begin_version(regenerate("a1"));
            ui.connection_lost();
            assert!(ui.version_error.get_untracked().is_none());
            assert!(ui.is_answering());
            assert_eq!(ui.reconnect_frame(), Some(regenerate("a1")));
            ui.apply(start("a2", Some("q1"), Some("a1")));
            assert_eq!(ui.reconnect_frame(), Some(ClientFrame::Resume { message_id: "a2".into() }), "then followed");
        });
    }

    /// The student opened another conversation while the page reconnected: the `start`
    /// of the question sent again does not pull the page back; back on the question's
    /// conversation, the page reads it again and follows its answer.
    #[test]
    fn a_late_start_leaves_the_page_where_the_student_went() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            ui.show_conversation(Some("c1".into()));
            ui.begin_question(ask("q"));
            ui.connection_lost();
            ui.show_conversation(Some("d".into()));
            let reloads = ui.reloads.get_untracked();
            ui.apply(start("m1", Some("q1"), None));
            assert_eq!(ui.conversation_id.get_untracked().as_deref(), Some("d"), "still where the student went");
            assert_eq!(ui.reloads.get_untracked(), reloads);
            assert_eq!(ui.resume_target().as_deref(), Some("m1"), "the answer is followed");

            // A page that comes back while it streams reads the conversation again and
            // adopts the stored answer.
            let ui = ChatUi::new();
            ui.show_conversation(Some("c1".into()));
            ui.begin_question(ask("q"));
            ui.connection_lost();
            ui.show_conversation(Some("d".into()));
            ui.show_conversation(Some("c1".into()));
            let reloads = ui.reloads.get_untracked();
            ui.apply(start("m1", Some("q1"), None));
            assert_eq!(ui.reloads.get_untracked(), reloads.wrapping_add(1), "read again");
            let stored = ChatItem::new(u64::MAX, Role::Tutor, "Hel".into(), ItemStatus::Streaming);
            ui.adopt(stored, "m1".into());
            ui.apply(ServerFrame::Snapshot {
                message_id: "m1".into(),
                content: "Hello".into(),
                seq: 2,
                status: AnswerStatus::Streaming,
                live: true,
                code: None,
            });
            assert_eq!(stored.text.get_untracked(), "Hello");
        });
    }

    #[test]
    fn a_question_not_started_is_not_sent_again_as_someone_else_or_after_stop() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            ui.begin_question(ask("q"));
            ui.connection_lost();
            ui.apply(ServerFrame::SessionChanged);
            assert!(!ui.is_answering());
            assert_eq!(ui.reconnect_frame(), None);
            assert_eq!(ui.items.get_untracked()[1].status.get_untracked(), ItemStatus::Failed);

            ui.begin_question(ask("r"));
            ui.connection_lost();
            ui.stop_unsent();
            assert_eq!(ui.reconnect_frame(), None);
            assert_eq!(ui.items.get_untracked()[3].status.get_untracked(), ItemStatus::Stopped);

            // Sent again, and refused: the session ended meanwhile.
            ui.begin_question(ask("s"));
            ui.connection_lost();
            ui.apply(ServerFrame::error(ErrorCode::SessionEnded, "signed out"));
            assert!(!ui.is_answering());
            assert_eq!(ui.items.get_untracked()[5].status.get_untracked(), ItemStatus::Failed);
        });
    }

    #[test]
    fn a_socket_refused_for_too_many_tabs_says_so_and_waits() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            ui.conn.set(ConnState::Connected);
            let applied = ui.apply(ServerFrame::Error {
                code: ErrorCode::TooManyConnections,
                message: "Too many chat tabs".into(),
                message_id: None,
                retry_after: Some(10),
            });
            assert_eq!(applied, Applied::Refused { retry_after_ms: 10_000 });
            assert_eq!(ui.conn.get_untracked(), ConnState::TooManyTabs);
            assert!(!ui.can_ask());
            assert!(ui.items.get_untracked().is_empty(), "not an answer's error");
        });
    }

    #[test]
    fn a_question_whose_start_never_came_is_sent_again_as_it_was() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            let sent = ClientFrame::Ask {
                question: "q".into(),
                conversation_id: Some("c1".into()),
                ask_id: Some("a1".into()),
            };
            ui.begin_question(sent.clone());
            ui.connection_lost();
            assert!(ui.is_answering(), "still waiting for its answer");
            let answer = ui.items.get_untracked()[1];
            assert_eq!(answer.status.get_untracked(), ItemStatus::Waiting);
            assert_eq!(ui.reconnect_frame(), Some(sent), "the same ask, the same ask_id");
            // The server had stored it: its `start` again, then the text so far.
            ui.apply(start("m1", Some("q1"), None));
            ui.apply(ServerFrame::Snapshot {
                message_id: "m1".into(),
                content: "Hel".into(),
                seq: 2,
                status: AnswerStatus::Streaming,
                live: true,
                code: None,
            });
            ui.apply(chunk("lo", 3));
            assert_eq!(answer.text.get_untracked(), "Hello");
            assert_eq!(ui.items.get_untracked()[0].message_id.get_untracked().as_deref(), Some("q1"));
            ui.connection_lost();
            assert_eq!(
                ui.reconnect_frame(),
                Some(ClientFrame::Resume { message_id: "m1".into() }),
                "once started, resumed"
            );
        });
    }

    fn stored(role: MessageRole, content: &str, status: MessageStatus) -> StoredMessage {
        StoredMessage {
            id: format!("{role:?}-{content}"),
            position: 0,
            role,
            content: content.into(),
            status,
            error_code: None,
            created_at: 0,
            sources: Vec::new(),
            feedback: None,
            teacher_request: None,
            faq_id: None,
            seams: Vec::new(),
            versions: Vec::new(),
            ask_id: None,
        }
    }

    #[test]
    fn a_question_unsent_at_a_reload_is_shown_and_sent_again_unless_the_page_has_it() {
        let owner = Owner::new();
        owner.with(|| {
            let in_c1 = |question: &str| ClientFrame::Ask {
                question: question.into(),
                conversation_id: Some("c1".into()),
                ask_id: Some("a1".into()),
            };
            let earlier = [
                stored(MessageRole::User, "before", MessageStatus::Complete),
                stored(MessageRole::Assistant, "an answer", MessageStatus::Complete),
            ];
            // The server never got it: shown waiting, and sent as it was.
            let ui = ChatUi::new();
            ui.show_conversation(Some("c1".into()));
            assert!(ui.restore_unsent(in_c1("q"), &earlier));
            assert_eq!(ui.items.get_untracked()[0].text.get_untracked(), "q");
            assert_eq!(ui.items.get_untracked()[1].status.get_untracked(), ItemStatus::Waiting);
            assert_eq!(ui.reconnect_frame(), Some(in_c1("q")));
            assert!(!ui.restore_unsent(in_c1("q"), &earlier), "once");

            // Stored and over, or stored and still written: the page shows it already.
            let mut asked = stored(MessageRole::User, "q", MessageStatus::Complete);
            asked.ask_id = Some("a1".into());
            let over = [earlier[0].clone(), earlier[1].clone(), asked.clone()];
            let ui = ChatUi::new();
            ui.show_conversation(Some("c1".into()));
            assert!(!ui.restore_unsent(in_c1("q"), &over));
            // The same words asked before under another `ask_id` (a retry of a failed
            // answer): this one is not stored yet.
            let mut asked_before = asked.clone();
            asked_before.ask_id = Some("a0".into());
            let retyped = [asked_before, stored(MessageRole::Assistant, "", MessageStatus::Error)];
            let again = ChatUi::new();
            again.show_conversation(Some("c1".into()));
            assert!(again.restore_unsent(in_c1("q"), &retyped));
            // A question stored without one (before `ask_id`s): told by its words.
            let mut unnamed = asked;
            unnamed.ask_id = None;
            assert!(!ui.restore_unsent(in_c1("q"), &[unnamed]));
            let mut writing = over.to_vec();
            writing.push(stored(MessageRole::Assistant, "", MessageStatus::Streaming));
            assert!(!ui.restore_unsent(in_c1("other words"), &writing), "its answer is followed instead");
            assert!(ui.items.get_untracked().is_empty());

            // Asked in another conversation than the one on screen: not here.
            let elsewhere = ChatUi::new();
            elsewhere.show_conversation(None);
            assert!(!elsewhere.restore_unsent(in_c1("q"), &[]));
            assert!(elsewhere.restore_unsent(ask("a new chat's first"), &[]), "a new chat's question, on a new chat");
        });
    }

    #[test]
    fn a_started_answer_survives_a_dropped_connection_and_resumes() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            ui.begin_question(ask("q"));
            ui.apply(start("m1", None, None));
            ui.apply(chunk("Hel", 1));
            ui.connection_lost();
            assert_eq!(ui.resume_target().as_deref(), Some("m1"));
            // Chunks 2 and 3 were streamed while we were away; the snapshot has them.
            ui.apply(ServerFrame::Snapshot {
                message_id: "m1".into(),
                content: "Hello, wor".into(),
                seq: 3,
                status: AnswerStatus::Streaming,
                live: true,
                code: None,
            });
            ui.apply(chunk("ld", 4));
            ui.apply(ServerFrame::End {
                message_id: "m1".into(),
                seq: 4,
                reason: EndReason::Complete,
                usage: None,
            });
            let answer = ui.items.get_untracked()[1];
            assert_eq!(answer.text.get_untracked(), "Hello, world");
            assert_eq!(answer.status.get_untracked(), ItemStatus::Complete);
            assert!(!ui.is_answering());
        });
    }

    #[test]
    fn a_new_version_reads_the_conversation_again_and_follows_its_answer() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            ui.begin_question(ask("q"));
            ui.apply(start("a1", Some("q1"), None));
            assert_eq!(ui.items.get_untracked()[0].message_id.get_untracked().as_deref(), Some("q1"), "the question can be edited");
            ui.apply(ServerFrame::End { message_id: "a1".into(), seq: 0, reason: EndReason::Complete, usage: None });

            // Regenerate: the page waits, then reads the conversation again.
            ui.begin_version(regenerate("a1"));
            assert!(ui.is_answering(), "no second question meanwhile");
            let reloads = ui.reloads.get_untracked();
            ui.apply(start("a2", Some("q1"), Some("a1")));
            assert!(ui.items.get_untracked().is_empty(), "the branch on screen is read again");
            assert_eq!(ui.reloads.get_untracked(), reloads + 1);
            assert_eq!(ui.resume_target().as_deref(), Some("a2"));
            // Another stored answer found streaming is not this page's to follow…
            let other = ChatItem::new(u64::MAX, Role::Tutor, String::new(), ItemStatus::Streaming);
            ui.adopt(other, "someone-else".into());
            assert_eq!(ui.resume_target().as_deref(), Some("a2"));
            // …the new version is, and its chunks then land on it.
            let adopted = ChatItem::new(u64::MAX, Role::Tutor, String::new(), ItemStatus::Streaming);
            ui.adopt(adopted, "a2".into());
            ui.apply(ServerFrame::Chunk { content: "Hi".into(), seq: 1, message_id: "a2".into() });
            assert_eq!(adopted.text.get_untracked(), "Hi");
        });
    }

    #[test]
    fn an_end_that_overtakes_the_snapshot_of_an_adopted_answer_does_not_cut_it() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            ui.begin_version(regenerate("a1"));
            ui.apply(start("a2", Some("q1"), Some("a1")));
            // The history read found two chunks stored; the page adopts the answer.
            let adopted = ChatItem::new(u64::MAX, Role::Tutor, "one two".into(), ItemStatus::Streaming);
            ui.adopt(adopted, "a2".into());
            // The third chunk and the end were on their way before the snapshot.
            let third = ServerFrame::Chunk { content: " three".into(), seq: 3, message_id: "a2".into() };
            assert_eq!(ui.apply(third), Applied::Done);
            let end = ServerFrame::End { message_id: "a2".into(), seq: 3, reason: EndReason::Complete, usage: None };
            assert_eq!(ui.apply(end), Applied::Resync, "the page asks for the answer again");
            assert_eq!(adopted.status.get_untracked(), ItemStatus::Streaming, "not complete with a cut text");
            assert_eq!(ui.resume_target().as_deref(), Some("a2"));
            ui.apply(ServerFrame::Snapshot {
                message_id: "a2".into(),
                content: "one two three".into(),
                seq: 3,
                status: AnswerStatus::Complete,
                live: false,
                code: None,
            });
            assert_eq!(adopted.text.get_untracked(), "one two three");
            assert_eq!(adopted.status.get_untracked(), ItemStatus::Complete);
            assert!(!ui.is_answering());
        });
    }

    /// The student leaves a conversation while its answer streams and comes back: the
    /// answer, read again from history, is followed again and ends complete.
    #[test]
    fn an_answer_left_for_another_conversation_is_followed_again_on_coming_back() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            ui.begin_question(ask("q"));
            ui.apply(start("m1", None, None));
            ui.apply(chunk("one", 1));
            assert!(!ui.answering_elsewhere());
            ui.show_conversation(Some("c2".into()));
            // Away: its chunks have no item to land on, and the socket still follows it.
            assert!(ui.answering_elsewhere(), "the composer says why it waits");
            assert_eq!(ui.apply(chunk(" two", 2)), Applied::Done);
            assert_eq!(ui.resume_target().as_deref(), Some("m1"));
            // Back: history has the checkpoint; the page adopts the answer and resumes it.
            ui.show_conversation(Some("c1".into()));
            let shown_again = ChatItem::new(u64::MAX, Role::Tutor, "one".into(), ItemStatus::Streaming);
            ui.adopt(shown_again, "m1".into());
            assert!(!ui.answering_elsewhere());
            assert_eq!(ui.resume_target().as_deref(), Some("m1"));
            ui.apply(ServerFrame::Snapshot {
                message_id: "m1".into(),
                content: "one two".into(),
                seq: 2,
                status: AnswerStatus::Streaming,
                live: true,
                code: None,
            });
            ui.apply(chunk(" three", 3));
            assert_eq!(shown_again.text.get_untracked(), "one two three");
            ui.apply(ServerFrame::End { message_id: "m1".into(), seq: 3, reason: EndReason::Complete, usage: None });
            assert_eq!(shown_again.status.get_untracked(), ItemStatus::Complete);
            assert!(!ui.is_answering());
        });
    }

    /// A resumed answer that had failed says how, from its snapshot's code.
    #[test]
    fn a_resumed_failed_answer_shows_its_own_error() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            let item = ChatItem::new(u64::MAX, Role::Tutor, "cut".into(), ItemStatus::Streaming);
            ui.adopt(item, "m1".into());
            ui.apply(ServerFrame::Snapshot {
                message_id: "m1".into(),
                content: "cut here".into(),
                seq: 2,
                status: AnswerStatus::Error,
                live: false,
                code: Some(ErrorCode::Timeout),
            });
            assert_eq!(item.status.get_untracked(), ItemStatus::Failed);
            assert_eq!(item.error.get_untracked().and_then(|e| e.code), Some(ErrorCode::Timeout));
            assert!(!ui.is_answering());
        });
    }

    #[test]
    fn another_answers_end_leaves_the_followed_one_going() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            ui.begin_question(ask("q"));
            ui.apply(start("m1", None, None));
            ui.apply(chunk("Hi", 1));
            let stale = ServerFrame::End { message_id: "m0".into(), seq: 1, reason: EndReason::Complete, usage: None };
            assert_eq!(ui.apply(stale), Applied::Done);
            let answer = ui.items.get_untracked()[1];
            assert_eq!(answer.status.get_untracked(), ItemStatus::Streaming);
            assert!(ui.is_answering());
            ui.apply(ServerFrame::End { message_id: "m1".into(), seq: 1, reason: EndReason::Complete, usage: None });
            assert_eq!(answer.status.get_untracked(), ItemStatus::Complete);
        });
    }

    #[test]
    fn a_refused_version_says_why_without_an_answer_to_show_it_under() {
        let owner = Owner::new();
        owner.with(|| {
            let ui = ChatUi::new();
            ui.begin_version(regenerate("a1"));
            ui.apply(ServerFrame::Error {
                code: ErrorCode::Busy,
                message: "an answer is still being written".into(),
                message_id: None,
                retry_after: None,
            });
            assert!(!ui.is_answering());
            assert_eq!(ui.version_error.get_untracked().and_then(|e| e.code), Some(ErrorCode::Busy));
            ui.begin_version(regenerate("a1"));
            assert!(ui.version_error.get_untracked().is_none(), "a new attempt clears it");
        });
    }
}
