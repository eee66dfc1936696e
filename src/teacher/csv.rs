//! The questions of a period as CSV (issue #11, part 8): one row per question with its
//! time, the student's pseudonym, the question's text and the lessons its answer cited
//! only where the privacy rule lets a teacher read it (the lessons say what it was
//! about), how the answer ended, the rating and the tokens. UTF-8 with a byte-order mark, so spreadsheets read the Cyrillic.

use sqlx::Row;

use super::store::SHARED_CONVERSATIONS;
use super::StudentName;
use crate::db::{Db, StoreError};
use crate::i18n::Strings;
use crate::protocol::Source;

pub const HEADER: [&str; 9] = [
    "time_utc",
    "student",
    "question",
    "cited_lessons",
    "ended",
    "rating",
    "prompt_tokens",
    "completion_tokens",
    "shared",
];

/// One question of the export, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionRow {
    pub at: i64,
    pub student: StudentName,
    /// `None` where the teacher may not read the conversation.
    pub question: Option<String>,
    /// The cited lessons say what a question was about: `None` where it is not readable.
    pub sources_json: Option<String>,
    pub status: Option<String>,
    pub error_code: Option<String>,
    /// The student's 👎 or 👍 — their opinion, kept private as the dashboard keeps an
    /// unshared 👎's student: `None` where the conversation is not readable.
    pub rating: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    /// The student shared the conversation (asked the teacher, or a shared 👎).
    pub shared: bool,
}

impl Db {
    /// The questions asked since `since` (Unix ms), oldest first, each with its newest
    /// answer (a regenerated answer replaces the row's, it adds no row); every guest
    /// among them numbered.
    pub async fn questions_for_export(&self, since: i64, read_all: bool) -> Result<Vec<QuestionRow>, StoreError> {
        self.with_guest_numbers(
            || self.read_questions_for_export(since, read_all),
            |rows| rows.iter().any(|row| row.student.unnumbered()),
        )
        .await
    }

    async fn read_questions_for_export(&self, since: i64, read_all: bool) -> Result<Vec<QuestionRow>, StoreError> {
        // The shared conversations are found once and joined, so `shared` needs no
        // second look.
        let readable = if read_all { "1 = 1" } else { "s.conversation_id IS NOT NULL" };
        let sql = format!(
            "WITH shared AS ({SHARED_CONVERSATIONS}) \
             SELECT q.created_at, u.username, u.guest_no, \
                    CASE WHEN {readable} THEN q.content ELSE NULL END, \
                    CASE WHEN {readable} THEN a.sources ELSE NULL END, \
                    a.status, a.error_code, CASE WHEN {readable} THEN f.rating ELSE NULL END, \
                    a.prompt_tokens, a.completion_tokens, \
                    CASE WHEN s.conversation_id IS NOT NULL THEN 1 ELSE 0 END \
             FROM messages q \
             JOIN conversations c ON c.id = q.conversation_id \
             JOIN users u ON u.id = c.user_id \
             LEFT JOIN shared s ON s.conversation_id = q.conversation_id \
             LEFT JOIN messages a ON a.id = (SELECT n.id FROM messages n WHERE n.parent_id = q.id \
                                   AND n.role = 'assistant' ORDER BY n.position DESC LIMIT 1) \
             LEFT JOIN feedback f ON f.message_id = a.id \
             WHERE q.role = 'user' AND q.created_at >= $1 \
             ORDER BY q.created_at, q.id"
        );
        let rows = sqlx::query(&sql).bind(since).fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok(QuestionRow {
                    at: row.try_get(0)?,
                    student: StudentName::from_columns(row.try_get(1)?, row.try_get(2)?),
                    question: row.try_get(3)?,
                    sources_json: row.try_get(4)?,
                    status: row.try_get(5)?,
                    error_code: row.try_get(6)?,
                    rating: row.try_get(7)?,
                    prompt_tokens: row.try_get(8)?,
                    completion_tokens: row.try_get(9)?,
                    shared: row.try_get::<i64, _>(10)? == 1,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }
}

/// The whole file: BOM, header, one line per question (CRLF, as RFC 4180 says).
pub fn to_csv(rows: &[QuestionRow], strings: &Strings) -> String {
    let mut out = String::with_capacity(64 + rows.len() * 160);
    out.push('\u{feff}');
    push_line(&mut out, HEADER.iter().map(|h| h.to_string()));
    for row in rows {
        let lessons = row
            .sources_json
            .as_deref()
            .and_then(|json| serde_json::from_str::<Vec<Source>>(json).ok())
            .map(|sources| {
                let mut slugs: Vec<String> = Vec::new();
                for source in sources {
                    if !slugs.contains(&source.lesson) {
                        slugs.push(source.lesson);
                    }
                }
                slugs.join("; ")
            })
            .unwrap_or_default();
        let ended = match (row.status.as_deref(), row.error_code.as_deref()) {
            (Some("error"), Some("rate_limited")) => "rate_limited".to_string(),
            (Some(status), _) => status.to_string(),
            (None, _) => String::new(),
        };
        let number = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
        push_line(
            &mut out,
            [
                super::date_time_of_ms(row.at).trim_end_matches(" UTC").to_string(),
                row.student.label(strings),
                row.question.clone().unwrap_or_default(),
                lessons,
                ended,
                row.rating.clone().unwrap_or_default(),
                number(row.prompt_tokens),
                number(row.completion_tokens),
                if row.shared { "yes" } else { "no" }.to_string(),
            ]
            .into_iter(),
        );
    }
    out
}

fn push_line(out: &mut String, fields: impl Iterator<Item = String>) {
    for (i, field) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&field_text(&field));
    }
    out.push_str("\r\n");
}

/// A field as CSV: quoted when it holds a comma, a quote or a line break; and a text
/// a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) starts with `'`.
fn field_text(field: &str) -> String {
    let defused = match field.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{field}"),
        _ => field.to_string(),
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(field_text("plain"), "plain");
        assert_eq!(field_text("a, b"), "\"a, b\"");
        assert_eq!(field_text("say \"hi\"\nthen"), "\"say \"\"hi\"\"\nthen\"");
        assert_eq!(field_text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field_text("-1"), "'-1");
    }

    #[test]
    fn a_row_reads_back_as_its_fields() {
        let row = QuestionRow {
            at: 20_784 * 86_400_000 + 9 * 3_600_000,
            student: StudentName::Guest(17),
            question: Some("Что такое SSE, и зачем?".into()),
            sources_json: Some(r#"[{"n":1,"lesson":"sse","lesson_title":"SSE","section":"A","anchor":"a","snippet":""},{"n":2,"lesson":"sse","lesson_title":"SSE","section":"B","anchor":"b","snippet":""}]"#.into()),
            status: Some("error".into()),
            error_code: Some("rate_limited".into()),
            rating: Some("down".into()),
            prompt_tokens: Some(120),
            completion_tokens: None,
            shared: true,
        };
        let csv = to_csv(&[row], Lang::Ru.t());
        assert!(csv.starts_with('\u{feff}'));
        let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').split("\r\n").collect();
        assert_eq!(lines[0], HEADER.join(","));
        assert_eq!(lines[1], "2026-11-27 09:00,Гость 17,\"Что такое SSE, и зачем?\",sse,rate_limited,down,120,,yes");
        assert_eq!(lines[2], "");
    }
}
