//! What the course dashboard (`/teach`) shows, as one value the server function
//! returns and the page draws: activity per day, citations, content gaps, 👎 answers,
//! the "ask my teacher" queue and the model's use. Every number is counted in SQL
//! (`dashboard_store.rs`) that runs on SQLite and PostgreSQL.

use serde::{Deserialize, Serialize};

use super::{RatingSummary, StudentName};

/// Periods the page offers (`/teach?days=7`); any other count from 1 to
/// [`super::MAX_DAYS`] works too.
pub const PERIODS: [u32; 3] = [7, 30, 90];

/// A question's retrieval matched weakly when its best lesson section scored below
/// this, in thousandths of the search's BM25 score (stored as
/// `messages.retrieval_score`). A question whose words appear in a section's title
/// and text scores well above 5; a single common word shared with one paragraph
/// scores around 1 to 2.
pub const WEAK_MATCH_MILLI: i64 = 3_000;

/// Words shown per content-gap group, groups shown, and question samples per group.
pub const GAP_GROUPS: usize = 12;
pub const GAP_SAMPLES: usize = 3;
/// 👎 answers listed (the newest); the count covers them all.
pub const DOWNVOTES_SHOWN: i64 = 50;
/// Lessons and sections listed among the most cited.
pub const TOP_CITED: i64 = 10;

/// How an answer ended, as the dashboard splits them. An error whose code is
/// `rate_limited` (the model's provider refused for rate) counts as rate-limited,
/// not as an error. Answers still streaming count as in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Complete,
    Stopped,
    Error,
    Interrupted,
    RateLimited,
    InProgress,
}

impl Ending {
    pub const ALL: [Ending; 6] = [
        Ending::Complete,
        Ending::Stopped,
        Ending::Error,
        Ending::Interrupted,
        Ending::RateLimited,
        Ending::InProgress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Complete => "complete",
            Ending::Stopped => "stopped",
            Ending::Error => "error",
            Ending::Interrupted => "interrupted",
            Ending::RateLimited => "rate_limited",
            Ending::InProgress => "in_progress",
        }
    }

    pub fn parse(text: &str) -> Option<Ending> {
        Ending::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// Answers by how they ended, in the order of [`Ending::ALL`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndingCounts(pub [i64; 6]);

impl EndingCounts {
    pub fn get(&self, ending: Ending) -> i64 {
        self.0[ending as usize]
    }

    pub fn add(&mut self, ending: Ending, n: i64) {
        self.0[ending as usize] += n;
    }

    pub fn total(&self) -> i64 {
        self.0.iter().sum()
    }
}

/// One UTC day's questions, students and answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayActivity {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub questions: i64,
    pub students: i64,
    pub endings: EndingCounts,
}

/// How often a lesson, or one of its sections, was given to an answer as a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cited {
    pub lesson: String,
    pub lesson_title: String,
    /// Empty for a whole lesson.
    pub anchor: String,
    pub section: String,
    pub count: i64,
}

impl Cited {
    pub fn href(&self) -> String {
        if self.anchor.is_empty() {
            format!("/lessons/{}", self.lesson)
        } else {
            format!("/lessons/{}#{}", self.lesson, self.anchor)
        }
    }
}

/// Questions that share a word and that the lessons did not answer well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapGroup {
    pub word: String,
    pub count: i64,
    /// Some of the questions, only those the teacher may read.
    pub samples: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentGaps {
    /// Questions whose retrieval found nothing.
    pub nothing: i64,
    /// Questions whose best match was weak (below [`WEAK_MATCH_MILLI`]).
    pub weak: i64,
    /// Grouped by a word two or more of them share, biggest first.
    pub groups: Vec<GapGroup>,
}

/// A 👎 answer. The texts are there only where the teacher may read the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downvote {
    /// When the answer was asked (Unix ms).
    pub at: i64,
    pub reasons: Vec<String>,
    /// `None`: not shared with the teacher (then only the reasons are shown).
    pub shared: Option<SharedDownvote>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedDownvote {
    pub student: StudentName,
    pub question: String,
    pub answer: String,
    pub comment: String,
}

/// The "ask my teacher" queue: open ones whenever asked; answered and resolved ones
/// asked in the period, and the median time to the teacher's reply over those answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    pub open: i64,
    pub answered: i64,
    pub resolved: i64,
    pub median_reply_ms: Option<i64>,
}

/// One UTC day's model use (every day of the period, oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDay {
    pub day: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Time to first token, nearest-rank percentiles over the day's answers.
    pub ttft_p50_ms: Option<i64>,
    pub ttft_p95_ms: Option<i64>,
}

/// Prices per million tokens (0 and 0: no cost shown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    pub prompt: f64,
    pub completion: f64,
}

impl Prices {
    pub fn shown(&self) -> bool {
        self.prompt > 0.0 || self.completion > 0.0
    }

    pub fn cost(&self, prompt_tokens: i64, completion_tokens: i64) -> f64 {
        (prompt_tokens as f64 * self.prompt + completion_tokens as f64 * self.completion) / 1_000_000.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dashboard {
    pub days: u32,
    /// Every day of the period, oldest first.
    pub per_day: Vec<DayActivity>,
    pub questions: i64,
    pub students: i64,
    pub endings: EndingCounts,
    pub top_lessons: Vec<Cited>,
    pub top_sections: Vec<Cited>,
    /// Lessons no answer of the period was given as a source: `(slug, title)`.
    pub never_cited: Vec<(String, String)>,
    pub gaps: ContentGaps,
    /// All 👎 of the period, and the newest [`DOWNVOTES_SHOWN`].
    pub downvotes_total: i64,
    pub downvotes: Vec<Downvote>,
    pub queue: Queue,
    pub model: Vec<ModelDay>,
    pub prices: Prices,
    /// 👍, 👎 and each reason over the period's answers.
    pub ratings: RatingSummary,
}

impl Dashboard {
    pub fn prompt_tokens(&self) -> i64 {
        self.model.iter().map(|d| d.prompt_tokens).sum()
    }

    pub fn completion_tokens(&self) -> i64 {
        self.model.iter().map(|d| d.completion_tokens).sum()
    }
}

/// `?days=` as the page reads it: a whole number from 1 to `MAX_DAYS`, else the
/// default; out of range is clamped.
pub fn period_from_query(days: Option<&str>) -> u32 {
    match days.map(str::trim).and_then(|d| d.parse::<i64>().ok()) {
        Some(d) => d.clamp(1, i64::from(super::MAX_DAYS)) as u32,
        None => super::DEFAULT_DAYS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_clamped_and_default() {
        assert_eq!(period_from_query(None), 30);
        assert_eq!(period_from_query(Some("7")), 7);
        assert_eq!(period_from_query(Some("0")), 1);
        assert_eq!(period_from_query(Some("-5")), 1);
        assert_eq!(period_from_query(Some("99999999999999999999")), 30);
        assert_eq!(period_from_query(Some("100000")), super::super::MAX_DAYS);
        assert_eq!(period_from_query(Some("abc")), 30);
    }

    #[test]
    fn endings_round_trip_and_index() {
        for ending in Ending::ALL {
            assert_eq!(Ending::parse(ending.as_str()), Some(ending));
            assert_eq!(Ending::ALL[ending as usize], ending);
        }
        let mut counts = EndingCounts::default();
        counts.add(Ending::RateLimited, 2);
        assert_eq!(counts.get(Ending::RateLimited), 2);
        assert_eq!(counts.total(), 2);
    }
}
