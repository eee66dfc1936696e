//! The teacher side (issue #11): the course's teacher is an account with the teacher
//! role (`tutor-chat teacher add NAME`), signs in at the same `/signin`, and has pages
//! and server functions no one else can reach — a student or a guest gets exactly
//! what a missing page gives. This first part: the role, the command, and the course
//! overview at `/teach` (questions and active students per day).

use serde::{Deserialize, Serialize};

pub mod api;
pub mod charts;
#[cfg(feature = "ssr")]
pub mod command;
pub mod dashboard;
#[cfg(feature = "ssr")]
pub mod dashboard_store;
#[cfg(feature = "ssr")]
pub mod csv;
#[cfg(feature = "ssr")]
pub mod export;
#[cfg(feature = "ssr")]
pub mod store;
pub mod view;

/// Days the overview covers by default, and at most.
pub const DEFAULT_DAYS: u32 = 30;
pub const MAX_DAYS: u32 = 366;

/// One UTC day of the course.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub questions: i64,
    /// Students (guests and accounts) who asked that day.
    pub students: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    pub days: u32,
    /// Oldest first; days without a question are left out.
    pub per_day: Vec<DayCount>,
    pub questions: i64,
    pub students: i64,
    /// How the period's answers ended: `(status, count)`, most first.
    #[serde(default)]
    pub endings: Vec<(String, i64)>,
    /// What students said of the period's answers.
    #[serde(default)]
    pub ratings: RatingSummary,
}

/// 👍 and 👎 over a period, and how often each reason was given with a 👎.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatingSummary {
    pub up: i64,
    pub down: i64,
    /// `(reason, count)` in the order of `feedback::Reason::ALL`.
    pub reasons: Vec<(String, i64)>,
}

/// The longest course-wide instructions, and the longest note on one lesson.
pub const MAX_INSTRUCTIONS_CHARS: usize = 2000;
pub const MAX_LESSON_NOTE_CHARS: usize = 1000;

/// What the teacher asks of the tutor right now: course-wide instructions (added to
/// the model's system prompt) and notes on lessons (given with that lesson's sections
/// when they are retrieved). Lesson mode, with no model, has no use for them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TutorNotes {
    pub course: Option<String>,
    /// `(lesson slug, note)`.
    pub lessons: Vec<(String, String)>,
}

/// One change to the instructions: who, when, what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstructionChange {
    /// Empty for the course-wide instructions, else the lesson's slug.
    pub scope: String,
    pub text: String,
    pub changed_by: String,
    /// Unix milliseconds.
    pub changed_at: i64,
}

/// The instructions in force and the latest changes, for the teacher's page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instructions {
    pub current: TutorNotes,
    pub changes: Vec<InstructionChange>,
}

/// How a teacher sees a student: an account by its username, a guest by the stable
/// number it got when it was created ("Guest 17").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StudentName {
    Account(String),
    Guest(i64),
}

impl StudentName {
    /// From the `users` columns `username` and `guest_no`. A guest not numbered yet
    /// (numbers are given in batches, `Db::number_guests`) is `Guest(0)`: numbers
    /// start at 1, and the teacher's reads number everyone first.
    pub fn from_columns(username: Option<String>, guest_no: Option<i64>) -> StudentName {
        match username {
            Some(name) => StudentName::Account(name),
            None => StudentName::Guest(guest_no.unwrap_or(0)),
        }
    }

    /// A guest read before it got its number.
    pub fn unnumbered(&self) -> bool {
        *self == StudentName::Guest(0)
    }

    pub fn label(&self, strings: &crate::i18n::Strings) -> String {
        match self {
            StudentName::Account(name) => name.clone(),
            StudentName::Guest(n) => strings.teach_guest.replace("{n}", &n.to_string()),
        }
    }
}

/// A moment in Unix milliseconds as `YYYY-MM-DD HH:MM UTC`.
pub fn date_time_of_ms(unix_ms: i64) -> String {
    let minutes = unix_ms.div_euclid(60_000).rem_euclid(24 * 60);
    format!("{} {:02}:{:02} UTC", date_of_ms(unix_ms), minutes / 60, minutes % 60)
}

/// A moment in Unix milliseconds as an HTML `datetime` (`YYYY-MM-DDTHH:MMZ`).
pub fn datetime_attribute_of_ms(unix_ms: i64) -> String {
    let minutes = unix_ms.div_euclid(60_000).rem_euclid(24 * 60);
    format!("{}T{:02}:{:02}Z", date_of_ms(unix_ms), minutes / 60, minutes % 60)
}

/// The civil date (UTC) of a moment in Unix milliseconds.
pub fn date_of_ms(unix_ms: i64) -> String {
    date_of_day(unix_ms.div_euclid(86_400_000))
}

/// The civil date (UTC) of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
pub fn date_of_day(days_since_epoch: i64) -> String {
    let z = days_since_epoch + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_since_the_epoch_are_calendar_dates() {
        assert_eq!(date_of_day(0), "1970-01-01");
        assert_eq!(date_of_day(59), "1970-03-01");
        assert_eq!(date_of_day(11_016), "2000-02-29");
        assert_eq!(date_of_day(20_784), "2026-11-27");
        assert_eq!(date_of_day(-1), "1969-12-31");
        assert_eq!(date_time_of_ms(20_784 * 86_400_000 + 13 * 3_600_000 + 5 * 60_000 + 59_999), "2026-11-27 13:05 UTC");
        assert_eq!(datetime_attribute_of_ms(20_784 * 86_400_000 + 13 * 3_600_000 + 5 * 60_000), "2026-11-27T13:05Z");
    }
}
