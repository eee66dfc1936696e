//! One error type at the edges. Inside, each capability has typed errors of its own
//! (`StoreError`, `BeginError`, `UpstreamError`, …); where they leave the server — a
//! server function's result, an `error` frame — they become an [`AppError`]: a
//! protocol [`ErrorCode`] the page switches on, and an English message for logs and
//! for clients that are not our page. The page never reads the message: it shows
//! [`crate::i18n::Strings::error_text`] for the code, in the student's language.

use std::fmt;

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

use crate::i18n::{Lang, EN};
use crate::protocol::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppError {
    pub code: ErrorCode,
    /// English, for logs, curl and tests; never parsed.
    pub message: String,
    /// Seconds until trying again makes sense (`busy`, budgets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// An error whose message is the code's own English text.
    pub fn code(code: ErrorCode) -> Self {
        AppError::new(code, EN.error_text(code))
    }

    /// What the student reads: the code's text in their language.
    pub fn text(&self, lang: Lang) -> &'static str {
        lang.t().error_text(self.code)
    }

    /// A failure whose detail must not reach the client (database text, I/O): the
    /// detail goes to the log, the client gets `internal`.
    #[cfg(feature = "ssr")]
    pub fn internal(what: &str, detail: impl fmt::Display) -> Self {
        tracing::error!(error = %detail, "{what}");
        AppError::code(ErrorCode::Internal)
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for AppError {}

/// Server functions return `Result<T, AppError>`; a failure of the call itself (the
/// network, a body that does not decode) arrives as `internal` with its detail.
impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::new(ErrorCode::Internal, value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn travels_as_code_and_message_and_reads_in_both_languages() {
        let error = AppError::new(ErrorCode::UsernameTaken, "That username is taken.");
        let bytes = error.ser();
        assert_eq!(AppError::de(bytes), error);
        assert_eq!(error.text(Lang::En), "That username is taken.");
        assert_ne!(error.text(Lang::Ru), error.text(Lang::En));
        let transport = AppError::from_server_fn_error(ServerFnErrorErr::Request("offline".into()));
        assert_eq!(transport.code, ErrorCode::Internal);
    }
}
