//! "Ask my teacher" (issue #11): from any answer a student sends the conversation to
//! the course's teacher with an optional note. Teachers work through a queue (open
//! first, oldest first), read the conversation, and reply in Markdown or resolve it
//! without a reply. The reply is a message of the conversation (role `teacher`): in
//! history and the server-rendered page, and live on the student's open sockets.

use serde::{Deserialize, Serialize};

use crate::history::{StoredMessage, TeacherRequest};
use crate::teacher::StudentName;

pub mod api;
#[cfg(feature = "ssr")]
pub mod store;
pub mod view;

/// The longest note a student adds to a request, and the longest reply.
pub const MAX_NOTE_CHARS: usize = 500;
pub const MAX_REPLY_CHARS: usize = 8000;
/// Requests the queue page lists at once.
pub const QUEUE_PAGE: u32 = 100;

/// One request as the teacher sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub conversation_id: String,
    pub title: String,
    pub student: StudentName,
    /// The answer the student asked about, and the question it answered.
    pub asked_about: String,
    pub question: String,
    pub note: String,
    pub status: TeacherRequest,
    /// Unix milliseconds.
    pub created_at: i64,
    /// When the teacher first replied or resolved it.
    pub closed_at: Option<i64>,
}

/// A page of the teacher's queue: open requests first, oldest first; then the latest
/// closed. The counts are of the whole queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    pub requests: Vec<Request>,
    /// This page's number, from 1; it lists requests from `(page - 1) * QUEUE_PAGE`.
    pub page: u32,
    pub open: i64,
    pub answered: i64,
    pub resolved: i64,
}

impl Queue {
    pub fn total(&self) -> i64 {
        self.open + self.answered + self.resolved
    }

    /// The position in the queue of this page's first request, from 0.
    pub fn first_index(&self) -> i64 {
        i64::from(self.page.max(1) - 1) * i64::from(QUEUE_PAGE)
    }

    pub fn has_next(&self) -> bool {
        self.first_index() + i64::from(QUEUE_PAGE) < self.total()
    }

    /// The number of the last page with requests (1 when there are none).
    pub fn last_page(&self) -> u32 {
        let pages = (self.total() + i64::from(QUEUE_PAGE) - 1) / i64::from(QUEUE_PAGE);
        u32::try_from(pages.max(1)).unwrap_or(u32::MAX)
    }
}

/// `?page=` as the queue reads it: a whole number from 1, else 1.
pub fn queue_page_from_query(page: Option<&str>) -> u32 {
    page.and_then(|p| p.trim().parse::<u32>().ok()).filter(|p| *p >= 1).unwrap_or(1)
}

/// A conversation as its teacher reads it (read-only), with the requests about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeacherView {
    pub id: String,
    pub title: String,
    pub student: StudentName,
    /// Oldest first.
    pub messages: Vec<StoredMessage>,
    /// The message each of `messages` follows (its `parent_id`; '' for the first): an
    /// answer's question, which the page pairs it with (not the question above it on
    /// the page, which after a regenerate or an edit may be another's).
    pub parents: Vec<String>,
    pub requests: Vec<Request>,
}
