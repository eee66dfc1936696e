//! The WebSocket wire protocol, shared by the server and the WASM client.
//!
//! Every frame is one JSON text message tagged by `type`. The documented contract is
//! `docs/protocol.md`; the types here are its single source of truth.

use serde::{Deserialize, Serialize};

/// Bumped when a frame changes in a way an old client could misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Ask a question. `conversation_id` continues a conversation of this connection.
    Ask {
        question: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation_id: Option<String>,
        /// The client's own name for this question ([`is_valid_ask_id`]): the same `ask`
        /// sent again (its connection dropped before `start`) follows the answer the
        /// first one began instead of asking twice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ask_id: Option<String>,
    },
    /// Stop the answer being streamed; the server ends it with `end` and reason `stopped`.
    Stop,
    /// Follow an answer again after a reconnect or a reload: the server replies with a
    /// `snapshot` of its text so far, then (while it is still being written) its chunks.
    Resume { message_id: String },
    /// Ask the question of one of the student's answers again: a new version of that
    /// answer, from the conversation before it. Only the last answer on screen.
    /// `ask_id` as for `ask`: sent again after a drop, it follows the version begun.
    Regenerate {
        message_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ask_id: Option<String>,
    },
    /// Send a new version of one of the student's questions; the conversation continues
    /// from it (the old version and what followed it stay, one switch away).
    Edit {
        message_id: String,
        question: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ask_id: Option<String>,
    },
    /// Application-level heartbeat; the server answers `pong` with the same `t`.
    Ping {
        #[serde(default)]
        t: f64,
    },
}

/// Why an answer ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The model finished (`finish_reason: stop`).
    Complete,
    /// The model hit its output limit (`finish_reason: length`).
    Length,
    /// The student pressed stop.
    Stopped,
    /// The model's content filter ended the answer.
    ContentFilter,
}

/// Token counts, when the upstream reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// A lesson section an answer drew on. The answer cites it as `[n]`. An empty
/// `lesson` names an entry of the course FAQ instead: its page is `/faq#{anchor}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub n: u32,
    /// The lesson's slug: its page is `/lessons/{lesson}`.
    pub lesson: String,
    pub lesson_title: String,
    pub section: String,
    pub anchor: String,
    pub snippet: String,
}

impl Source {
    pub fn href(&self) -> String {
        if self.lesson.is_empty() {
            format!("/faq#{}", self.anchor)
        } else {
            format!("/lessons/{}#{}", self.lesson, self.anchor)
        }
    }

    /// True for an entry of the course FAQ.
    pub fn is_faq(&self) -> bool {
        self.lesson.is_empty()
    }
}

/// Machine-readable error classes; clients switch on these, never on the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    TooLarge,
    Busy,
    /// The conversation does not exist, or is not this student's (the same answer).
    NotFound,
    RateLimited,
    UpstreamUnauthorized,
    UpstreamUnavailable,
    Timeout,
    /// A per-user cap (open connections, conversations) is reached.
    LimitReached,
    /// The server stopped before the answer finished; the text so far is kept.
    Interrupted,
    Internal,
    /// A server function called from a page on another site (CSRF).
    ForeignOrigin,
    /// The request carried no session cookie where one is needed.
    NoSession,
    InvalidUsername,
    InvalidPassword,
    UsernameTaken,
    /// The same answer for an unknown name and a wrong password.
    WrongCredentials,
    /// Sign-in is throttled after repeated failures.
    TooManyAttempts,
    /// This address created its hour's budget of accounts.
    TooManySignUps,
    /// The socket's session was signed out or expired; reconnect.
    SessionEnded,
    /// A rating's comment is over 500 characters.
    CommentTooLong,
    /// The teacher's instructions or a lesson note are over their length.
    InstructionsTooLong,
    InvalidTitle,
    /// A teacher's reply is empty or over its length.
    InvalidReply,
    /// An FAQ entry's question or answer is empty or over its length.
    InvalidFaqText,
    /// The server cannot take a question now (it streams its most answers at once,
    /// the address's, or it is restarting); `retry_after` says when to try again.
    ServerBusy,
    /// The socket was refused: this browser has its most chat tabs open (on every
    /// instance), or its network its most sockets. Sent once, then the socket closes
    /// (1013); `retry_after` says when to try again.
    TooManyConnections,
    /// A code this client does not know (a newer server's): shown as `internal`.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// A code as stored (`as_str`'s text); one this build does not know is `Unknown`.
    pub fn parse(code: &str) -> ErrorCode {
        serde_json::from_value(serde_json::Value::String(code.to_string())).unwrap_or(ErrorCode::Unknown)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Busy => "busy",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UpstreamUnauthorized => "upstream_unauthorized",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::LimitReached => "limit_reached",
            ErrorCode::Interrupted => "interrupted",
            ErrorCode::Internal => "internal",
            ErrorCode::ForeignOrigin => "foreign_origin",
            ErrorCode::NoSession => "no_session",
            ErrorCode::InvalidUsername => "invalid_username",
            ErrorCode::InvalidPassword => "invalid_password",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::WrongCredentials => "wrong_credentials",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::TooManySignUps => "too_many_sign_ups",
            ErrorCode::SessionEnded => "session_ended",
            ErrorCode::CommentTooLong => "comment_too_long",
            ErrorCode::InstructionsTooLong => "instructions_too_long",
            ErrorCode::InvalidTitle => "invalid_title",
            ErrorCode::InvalidReply => "invalid_reply",
            ErrorCode::InvalidFaqText => "invalid_faq_text",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Unknown => "unknown",
        }
    }
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame of a connection: what this server speaks and its limits.
    Hello {
        protocol: u32,
        max_question_chars: u32,
    },
    /// An answer begins; its ids come before any token.
    Start {
        conversation_id: String,
        message_id: String,
        /// True when older turns of the conversation did not fit the model's context.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        context_truncated: bool,
        /// The lesson sections the answer may cite as `[n]`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sources: Vec<Source>,
        /// Set when the answer is the teacher's endorsed one from the course FAQ (no
        /// model wrote it): the entry's id, whose page is `/faq#faq-{id}`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        faq_id: Option<String>,
        /// The question's id (new, or the one regenerated): what `edit` names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        question_id: Option<String>,
        /// For a `regenerate` or an `edit`: the message this is a new version of. The page
        /// reads the conversation's branch again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces: Option<String>,
    },
    /// A piece of the answer. `seq` starts at 1 and grows by one per chunk of a message.
    Chunk {
        content: String,
        seq: u64,
        message_id: String,
    },
    /// The answer is complete; `seq` is the last chunk's (0 when there was none).
    End {
        message_id: String,
        seq: u64,
        reason: EndReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
    /// Something went wrong. With a `message_id`, that answer is over; without, the
    /// frame answers the client's last frame and nothing else changed.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    Pong {
        #[serde(default)]
        t: f64,
    },
    /// The course's teacher replied to a question the student sent them ("ask my
    /// teacher"). Sent to every open socket of the student on this instance; the page
    /// shows it when that conversation is on screen. History has it too.
    TeacherReply {
        conversation_id: String,
        /// The reply's own message id.
        message_id: String,
        /// The answer the student asked the teacher about.
        asked_about: String,
        /// Markdown, shown with the same safe renderer as answers.
        content: String,
        /// Unix milliseconds.
        created_at: i64,
    },
    /// Something changed in one of the student's conversations in another of their
    /// tabs (on any instance): a question asked there (its answer `message_id` can be
    /// followed with `resume`), a rename, a deletion, a teacher's reply. The sidebar
    /// reloads; a page showing that conversation reloads it.
    ConversationChanged {
        conversation_id: String,
        change: ConversationChange,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
    },
    /// The student's question budget (docs/protocol.md): after `hello`, after each
    /// accepted question (to every socket of the student) and with a refusal. Durations,
    /// not moments, so the page counts down without comparing its clock with ours.
    Budget {
        /// Questions the student may ask now.
        remaining: u32,
        /// Questions at once when the budget is full.
        capacity: u32,
        /// Milliseconds for one question to come back.
        refill_ms: u64,
        /// Milliseconds until the next one comes back; 0 when the budget is full.
        next_refill_ms: u64,
    },
    /// The whole text of an answer so far, in reply to `resume`; chunks with a
    /// greater `seq` follow while `live`. A finished answer comes with its `status`.
    Snapshot {
        message_id: String,
        content: String,
        seq: u64,
        status: AnswerStatus,
        live: bool,
        /// Why an answer that ended in error failed (`status: error`), so a page that
        /// resumes it says the same as the page that watched it fail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<ErrorCode>,
    },
    /// The browser signed in (or up) in another tab: its cookie names the account now,
    /// which has the guest's conversations. The socket closes next (1012); the page
    /// reconnects with its cookie and shows who is signed in.
    SessionChanged,
}

/// What changed in a conversation (`conversation_changed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationChange {
    Asked,
    Renamed,
    Deleted,
    TeacherReplied,
    /// Another version of a message was chosen: the branch on screen changed.
    VersionShown,
}

/// An answer's state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerStatus {
    Streaming,
    Complete,
    Stopped,
    Error,
    Interrupted,
}

impl AnswerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerStatus::Streaming => "streaming",
            AnswerStatus::Complete => "complete",
            AnswerStatus::Stopped => "stopped",
            AnswerStatus::Error => "error",
            AnswerStatus::Interrupted => "interrupted",
        }
    }
    pub fn parse(s: &str) -> AnswerStatus {
        match s {
            "streaming" => AnswerStatus::Streaming,
            "complete" => AnswerStatus::Complete,
            "stopped" => AnswerStatus::Stopped,
            "error" => AnswerStatus::Error,
            _ => AnswerStatus::Interrupted,
        }
    }
}


impl ServerFrame {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            code,
            message: message.into(),
            message_id: None,
            retry_after: None,
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail; the fallback keeps that a non-panic.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"could not encode frame"}"#.to_string()
        })
    }
}

/// Why a client's text frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is {size} bytes; the limit is {limit}")]
    FrameTooLarge { size: usize, limit: usize },
    #[error("question is {chars} characters; the limit is {limit}")]
    QuestionTooLong { chars: usize, limit: usize },
    #[error("question is empty")]
    EmptyQuestion,
    #[error("frame is not valid JSON: {0}")]
    Malformed(String),
    #[error("unknown frame type `{0}`")]
    UnknownType(String),
    #[error("frame is not understood: {0}")]
    Invalid(String),
}

impl FrameError {
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::FrameTooLarge { .. } | FrameError::QuestionTooLong { .. } => {
                ErrorCode::TooLarge
            }
            _ => ErrorCode::BadRequest,
        }
    }
}

/// Limits a client frame is checked against.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    pub max_frame_bytes: usize,
    pub max_question_chars: usize,
}

/// The longest `ask_id`: room for a UUID or 128 random bits in any common spelling.
pub const MAX_ASK_ID_CHARS: usize = 64;

/// An `ask_id` is 1 to [`MAX_ASK_ID_CHARS`] ASCII letters, digits, `-` or `_`: it is
/// stored with the question, and nothing a client picks there needs escaping anywhere.
pub fn is_valid_ask_id(ask_id: &str) -> bool {
    (1..=MAX_ASK_ID_CHARS).contains(&ask_id.len())
        && ask_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

const KNOWN_TYPES: [&str; 6] = ["ask", "stop", "ping", "resume", "regenerate", "edit"];

/// Whether any string in the frame, key or value, holds a U+0000.
fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(fields) => fields.iter().any(|(key, value)| key.contains('\0') || has_nul(value)),
        _ => false,
    }
}

/// Parses one client text frame. Accepts the course lesson's untyped
/// `{"question": "..."}` as an `ask`, so the lesson's client works unchanged.
pub fn parse_client_frame(text: &str, limits: FrameLimits) -> Result<ClientFrame, FrameError> {
    if text.len() > limits.max_frame_bytes {
        return Err(FrameError::FrameTooLarge {
            size: text.len(),
            limit: limits.max_frame_bytes,
        });
    }
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| FrameError::Invalid("expected a JSON object".into()))?;
    match object.get("type") {
        None => {
            if object.contains_key("question") {
                object.insert("type".into(), serde_json::Value::String("ask".into()));
            } else {
                return Err(FrameError::Invalid("missing `type`".into()));
            }
        }
        Some(serde_json::Value::String(kind)) if !KNOWN_TYPES.contains(&kind.as_str()) => {
            return Err(FrameError::UnknownType(truncate_for_message(kind)));
        }
        Some(serde_json::Value::String(_)) => {}
        Some(_) => return Err(FrameError::Invalid("`type` must be a string".into())),
    }
    // PostgreSQL refuses U+0000 in text: such a question could never be stored, and
    // the student would read "internal" at every try.
    if has_nul(&value) {
        return Err(FrameError::Invalid("text must not contain the NUL character (U+0000)".into()));
    }
    let frame: ClientFrame =
        serde_json::from_value(value).map_err(|e| FrameError::Invalid(e.to_string()))?;
    if let ClientFrame::Ask { ask_id: Some(ask_id), .. }
    | ClientFrame::Regenerate { ask_id: Some(ask_id), .. }
    | ClientFrame::Edit { ask_id: Some(ask_id), .. } = &frame
    {
        if !is_valid_ask_id(ask_id) {
            return Err(FrameError::Invalid(format!(
                "`ask_id` must be 1 to {MAX_ASK_ID_CHARS} letters, digits, `-` or `_`"
            )));
        }
    }
    if let ClientFrame::Ask { question, .. } | ClientFrame::Edit { question, .. } = &frame {
        let chars = question.chars().count();
        if question.trim().is_empty() {
            return Err(FrameError::EmptyQuestion);
        }
        if chars > limits.max_question_chars {
            return Err(FrameError::QuestionTooLong {
                chars,
                limit: limits.max_question_chars,
            });
        }
    }
    Ok(frame)
}

/// Echoing a client's string back in an error is useful, echoing a megabyte is not.
fn truncate_for_message(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FrameLimits = FrameLimits {
        max_frame_bytes: 1024,
        max_question_chars: 100,
    };

    #[test]
    fn lesson_frame_without_type_is_an_ask() {
        let frame = parse_client_frame(r#"{"question":"What is SSE?"}"#, LIMITS).unwrap();
        assert_eq!(
            frame,
            ClientFrame::Ask {
                question: "What is SSE?".into(),
                conversation_id: None,
                ask_id: None,
            }
        );
    }

    #[test]
    fn client_frames_round_trip() {
        let frames = [
            ClientFrame::Ask {
                question: "Привет".into(),
                conversation_id: Some("c1".into()),
                ask_id: Some("0f3a-Zz_9".into()),
            },
            ClientFrame::Ask {
                question: "hi".into(),
                conversation_id: None,
                ask_id: None,
            },
            ClientFrame::Stop,
            ClientFrame::Resume {
                message_id: "m".into(),
            },
            ClientFrame::Ping { t: 12.5 },
            ClientFrame::Regenerate { message_id: "a".into(), ask_id: None },
            ClientFrame::Regenerate { message_id: "a".into(), ask_id: Some("r-1".into()) },
            ClientFrame::Edit { message_id: "q".into(), question: "Что такое SSE?".into(), ask_id: None },
            ClientFrame::Edit { message_id: "q".into(), question: "SSE?".into(), ask_id: Some("e-1".into()) },
        ];
        for frame in frames {
            let text = serde_json::to_string(&frame).unwrap();
            assert_eq!(parse_client_frame(&text, LIMITS).unwrap(), frame, "{text}");
        }
    }

    #[test]
    fn server_frames_round_trip_with_lesson_shape() {
        let frames = [
            ServerFrame::Hello {
                protocol: PROTOCOL_VERSION,
                max_question_chars: 4000,
            },
            ServerFrame::Start {
                conversation_id: "c".into(),
                message_id: "m".into(),
                context_truncated: true,
                sources: vec![Source {
                    n: 1,
                    lesson: "03-sse-en".into(),
                    lesson_title: "Server-sent events".into(),
                    section: "The wire format".into(),
                    anchor: "the-wire-format".into(),
                    snippet: "Each event is a block of lines…".into(),
                }],
                faq_id: None,
                question_id: Some("q".into()),
                replaces: None,
            },
            ServerFrame::Start {
                conversation_id: "c".into(),
                message_id: "m2".into(),
                context_truncated: false,
                sources: Vec::new(),
                faq_id: Some("f1".into()),
                question_id: None,
                replaces: Some("m".into()),
            },
            ServerFrame::Chunk {
                content: "Hello".into(),
                seq: 1,
                message_id: "m".into(),
            },
            ServerFrame::End {
                message_id: "m".into(),
                seq: 1,
                reason: EndReason::Complete,
                usage: Some(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 1,
                }),
            },
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
                message_id: Some("m".into()),
                retry_after: Some(7),
            },
            ServerFrame::Pong { t: 1.0 },
            ServerFrame::Budget {
                remaining: 3,
                capacity: 10,
                refill_ms: 6_000,
                next_refill_ms: 2_500,
            },
            ServerFrame::Snapshot {
                message_id: "m".into(),
                content: "so far".into(),
                seq: 2,
                status: AnswerStatus::Streaming,
                live: true,
                code: None,
            },
        ];
        for frame in frames {
            let json = frame.to_json();
            let back: ServerFrame = serde_json::from_str(&json).unwrap();
            assert_eq!(back, frame);
        }
        // The lesson's client reads exactly these fields.
        let chunk: serde_json::Value = serde_json::from_str(
            &ServerFrame::Chunk {
                content: "x".into(),
                seq: 1,
                message_id: "m".into(),
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(chunk["type"], "chunk");
        assert_eq!(chunk["content"], "x");
        let error: serde_json::Value =
            serde_json::from_str(&ServerFrame::error(ErrorCode::Busy, "wait").to_json()).unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["message"], "wait");
        assert_eq!(error["code"], "busy");
    }

    /// A page left open across a release still shows a newer server's refusal (as
    /// `internal`) instead of dropping the frame and waiting for ever.
    #[test]
    fn an_error_code_this_client_does_not_know_still_reads_as_an_error() {
        let frame: ServerFrame =
            serde_json::from_str(r#"{"type":"error","code":"brand_new","message":"later","retry_after":3}"#).unwrap();
        assert!(matches!(frame, ServerFrame::Error { code: ErrorCode::Unknown, retry_after: Some(3), .. }), "{frame:?}");
    }

    #[test]
    fn error_codes_serialize_as_documented() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::TooLarge,
            ErrorCode::Busy,
            ErrorCode::ServerBusy,
            ErrorCode::TooManyConnections,
            ErrorCode::NotFound,
            ErrorCode::RateLimited,
            ErrorCode::UpstreamUnauthorized,
            ErrorCode::UpstreamUnavailable,
            ErrorCode::Timeout,
            ErrorCode::LimitReached,
            ErrorCode::Interrupted,
            ErrorCode::Internal,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn each_bad_input_class_is_refused_with_its_code() {
        let big = format!(r#"{{"question":"{}"}}"#, "a".repeat(2000));
        let long = format!(r#"{{"question":"{}"}}"#, "я".repeat(101));
        let cases: Vec<(&str, ErrorCode)> = vec![
            (&big, ErrorCode::TooLarge),
            (&long, ErrorCode::TooLarge),
            ("{not json", ErrorCode::BadRequest),
            ("[1,2]", ErrorCode::BadRequest),
            (r#"{"type":"dance"}"#, ErrorCode::BadRequest),
            (r#"{"type":7}"#, ErrorCode::BadRequest),
            (r#"{"hello":"x"}"#, ErrorCode::BadRequest),
            (r#"{"type":"ask"}"#, ErrorCode::BadRequest),
            (r#"{"type":"ask","question":42}"#, ErrorCode::BadRequest),
            (r#"{"question":"   "}"#, ErrorCode::BadRequest),
            (r#"{"type":"edit","message_id":"q","question":" "}"#, ErrorCode::BadRequest),
            (r#"{"type":"regenerate"}"#, ErrorCode::BadRequest),
            (r#"{"question":"q","ask_id":""}"#, ErrorCode::BadRequest),
            (r#"{"question":"q","ask_id":"a b"}"#, ErrorCode::BadRequest),
            (r#"{"question":"q","ask_id":"é"}"#, ErrorCode::BadRequest),
            (r#"{"question":"q","ask_id":7}"#, ErrorCode::BadRequest),
            (r#"{"type":"regenerate","message_id":"a","ask_id":"a b"}"#, ErrorCode::BadRequest),
            (r#"{"type":"edit","message_id":"q","question":"q","ask_id":""}"#, ErrorCode::BadRequest),
            ("", ErrorCode::BadRequest),
        ];
        for (input, code) in cases {
            let err = parse_client_frame(input, LIMITS).unwrap_err();
            assert_eq!(err.code(), code, "input {input:?} gave {err}");
        }
    }

    #[test]
    fn an_ask_id_is_short_and_plain() {
        let longest = "a".repeat(MAX_ASK_ID_CHARS);
        assert!(is_valid_ask_id(&longest));
        assert!(is_valid_ask_id("550e8400-e29b-41d4-a716-446655440000"));
        assert!(!is_valid_ask_id(&format!("{longest}a")));
        assert!(!is_valid_ask_id("a/b"));
        let frame = format!(r#"{{"question":"q","ask_id":"{longest}a"}}"#);
        assert_eq!(parse_client_frame(&frame, LIMITS).unwrap_err().code(), ErrorCode::BadRequest);
    }

    #[test]
    fn question_limit_counts_characters_not_bytes() {
        // 100 Cyrillic letters are 200 bytes but exactly at the character limit.
        let text = format!(r#"{{"question":"{}"}}"#, "я".repeat(100));
        assert!(parse_client_frame(&text, LIMITS).is_ok());
    }

    #[test]
    fn unknown_type_in_error_is_truncated() {
        let kind = "x".repeat(500);
        let err = parse_client_frame(&format!(r#"{{"type":"{kind}"}}"#), LIMITS).unwrap_err();
        assert!(err.to_string().len() < 100, "{err}");
    }
}
