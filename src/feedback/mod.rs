//! Feedback on answers (issue #11): under every finished answer a student rates it
//! 👍 or 👎 — on 👎 with optional reasons and a short comment — and can change or
//! withdraw the rating. It is what the teacher's dashboard reads to find answers that
//! missed. The rating form works without JavaScript too.

use serde::{Deserialize, Serialize};

pub mod api;
#[cfg(feature = "ssr")]
pub mod store;
pub mod view;

/// The longest comment a rating may carry.
pub const MAX_COMMENT_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    Up,
    Down,
}

impl Rating {
    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Up => "up",
            Rating::Down => "down",
        }
    }

    pub fn parse(text: &str) -> Option<Rating> {
        match text {
            "up" => Some(Rating::Up),
            "down" => Some(Rating::Down),
            _ => None,
        }
    }
}

/// Why an answer missed (👎).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Wrong,
    Unclear,
    OffTopic,
    TooLong,
}

impl Reason {
    pub const ALL: [Reason; 4] = [Reason::Wrong, Reason::Unclear, Reason::OffTopic, Reason::TooLong];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Wrong => "wrong",
            Reason::Unclear => "unclear",
            Reason::OffTopic => "off_topic",
            Reason::TooLong => "too_long",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// What the reason says, in the reader's language.
    pub fn label(self, t: &crate::i18n::Strings) -> &'static str {
        match self {
            Reason::Wrong => t.feedback_wrong,
            Reason::Unclear => t.feedback_unclear,
            Reason::OffTopic => t.feedback_off_topic,
            Reason::TooLong => t.feedback_too_long,
        }
    }
}

/// A student's rating of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    pub rating: Rating,
    #[serde(default)]
    pub reasons: Vec<Reason>,
    #[serde(default)]
    pub comment: String,
    /// With a 👎: the student shares the conversation with their teacher.
    #[serde(default)]
    pub share: bool,
}

impl Feedback {
    /// The stored form of the reasons: words joined by commas.
    pub fn reasons_text(&self) -> String {
        self.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
    }

    /// From the stored columns; unknown words (a hand-edited row) are skipped.
    pub fn from_columns(rating: &str, reasons: &str, comment: String) -> Option<Feedback> {
        Some(Feedback {
            rating: Rating::parse(rating)?,
            reasons: reasons.split(',').filter_map(Reason::parse).collect(),
            comment,
            share: false,
        })
    }

    /// The same rating, shared with the teacher or not (only a 👎 can be).
    pub fn shared(mut self, share: bool) -> Feedback {
        self.share = share && self.rating == Rating::Down;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_and_reasons_survive_their_stored_form() {
        let feedback = Feedback {
            rating: Rating::Down,
            reasons: vec![Reason::Wrong, Reason::TooLong],
            comment: "the formula is off".into(),
            share: false,
        };
        let again = Feedback::from_columns("down", &feedback.reasons_text(), feedback.comment.clone()).unwrap();
        assert_eq!(again, feedback);
        assert_eq!(Feedback::from_columns("sideways", "", String::new()), None);
        assert_eq!(Feedback::from_columns("up", "wrong,bogus", String::new()).unwrap().reasons, vec![Reason::Wrong]);
    }
}
