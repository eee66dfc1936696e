//! The questions of a period as CSV (issue #11, part 8): one row per question with its
//! time, the student's pseudonym, the question's text and the lessons its answer cited
//! only where the privacy rule lets a teacher read it (the lessons say what it was
//! about), how the answer ended, the rating and the tokens. UTF-8 with a byte-order mark,
//! so spreadsheets read the Cyrillic; fields separated as the page's language's
//! spreadsheets expect (`;` in Russian, whose decimal mark is the comma). Read and
//! written a page of rows at a time: a year of a large class is millions of rows.

use sqlx::Row;

use super::store::SHARED_CONVERSATIONS;
use super::StudentName;
use crate::db::{Backend, Db, StoreError};
use crate::i18n::Lang;
use crate::feedback::Rating;
use crate::protocol::{AnswerStatus, Source};

/// Rows read at a time: what the export holds in memory (about half a megabyte),
/// whatever the period. Each page costs a query, so not fewer (docs/BENCHMARKS.md).
pub const EXPORT_PAGE_ROWS: u32 = 5000;

/// One question of the export, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionRow {
    /// The question's id: with `at`, where the next page starts.
    pub id: String,
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

/// Where a page of the export starts: after this question (its time, then its id).
pub type ExportCursor = Option<(i64, String)>;

impl Db {
    /// Up to `limit` questions asked since `since` (Unix ms), after `after`, oldest
    /// first, each with its newest answer (a regenerated answer replaces the row's, it
    /// adds no row); every guest among them numbered.
    pub async fn questions_for_export(
        &self,
        since: i64,
        after: &ExportCursor,
        limit: u32,
        read_all: bool,
    ) -> Result<Vec<QuestionRow>, StoreError> {
        self.with_guest_numbers(
            || self.read_questions_for_export(since, after, limit, read_all),
            |rows| rows.iter().any(|row| row.student.unnumbered()),
        )
        .await
    }

    async fn read_questions_for_export(
        &self,
        since: i64,
        after: &ExportCursor,
        limit: u32,
        read_all: bool,
    ) -> Result<Vec<QuestionRow>, StoreError> {
        // The shared conversations are found once and joined, so `shared` needs no
        // second look. Each page is its own read: a question stored during a download
        // appears if it sorts after the page being read.
        let readable = if read_all { "1 = 1" } else { "s.conversation_id IS NOT NULL" };
        let (after_at, after_id) = after.clone().unwrap_or((i64::MIN, String::new()));
        // The index's range starts at the later of the period's start and the cursor.
        let from = since.max(after_at);
        // Each question's newest answer. PostgreSQL's planner would rather hash the
        // whole messages table for every page than probe its index 5,000 times;
        // LATERAL makes it probe. SQLite has no LATERAL, and probes anyway.
        let answer = match self.backend {
            Backend::Postgres => {
                "LEFT JOIN LATERAL (SELECT n.id, n.sources, n.status, n.error_code, n.prompt_tokens, \
                 n.completion_tokens FROM messages n WHERE n.parent_id = q.id AND n.role = 'assistant' \
                 ORDER BY n.position DESC LIMIT 1) a ON TRUE"
            }
            Backend::Sqlite => {
                "LEFT JOIN messages a ON a.id = (SELECT n.id FROM messages n WHERE n.parent_id = q.id \
                 AND n.role = 'assistant' ORDER BY n.position DESC LIMIT 1)"
            }
        };
        // The page's questions are picked first (a range of the questions' index, cut
        // at the page's size) and joined after: joined first, PostgreSQL joins every
        // question of the period and sorts them for each page (docs/BENCHMARKS.md).
        // The inner joins cannot shorten a page (a short page ends the download): a
        // question's conversation and user are foreign keys.
        let sql = format!(
            "WITH shared AS ({SHARED_CONVERSATIONS}) \
             SELECT q.id, q.created_at, u.username, u.guest_no, \
                    CASE WHEN {readable} THEN q.content ELSE NULL END, \
                    CASE WHEN {readable} THEN a.sources ELSE NULL END, \
                    a.status, a.error_code, CASE WHEN {readable} THEN f.rating ELSE NULL END, \
                    a.prompt_tokens, a.completion_tokens, \
                    CASE WHEN s.conversation_id IS NOT NULL THEN 1 ELSE 0 END \
             FROM (SELECT id, conversation_id, created_at, content FROM messages \
                   WHERE role = 'user' AND created_at >= $1 AND (created_at > $2 OR id > $3) \
                   ORDER BY created_at, id LIMIT $4) q \
             JOIN conversations c ON c.id = q.conversation_id \
             JOIN users u ON u.id = c.user_id \
             LEFT JOIN shared s ON s.conversation_id = q.conversation_id \
             {answer} \
             LEFT JOIN feedback f ON f.message_id = a.id \
             ORDER BY q.created_at, q.id"
        );
        let rows = sqlx::query(&sql)
            .bind(from)
            .bind(after_at)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok(QuestionRow {
                    id: row.try_get(0)?,
                    at: row.try_get(1)?,
                    student: StudentName::from_columns(row.try_get(2)?, row.try_get(3)?),
                    question: row.try_get(4)?,
                    sources_json: row.try_get(5)?,
                    status: row.try_get(6)?,
                    error_code: row.try_get(7)?,
                    rating: row.try_get(8)?,
                    prompt_tokens: row.try_get(9)?,
                    completion_tokens: row.try_get(10)?,
                    shared: row.try_get::<i64, _>(11)? == 1,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }
}

/// The file's start: the byte-order mark and the column names.
pub fn csv_head(lang: Lang) -> String {
    let mut out = String::from('\u{feff}');
    push_line(&mut out, lang.list_separator(), lang.t().export_columns.iter().map(|h| h.to_string()));
    out
}

/// One line per question (CRLF, as RFC 4180 says).
pub fn csv_lines(rows: &[QuestionRow], lang: Lang) -> String {
    let strings = lang.t();
    let mut out = String::with_capacity(rows.len() * 160);
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
        let values = &strings.export_values;
        let ended = match (row.status.as_deref().map(AnswerStatus::parse), row.error_code.as_deref()) {
            (Some(AnswerStatus::Error), Some("rate_limited")) => values.rate_limited,
            (Some(AnswerStatus::Streaming), _) => values.streaming,
            (Some(AnswerStatus::Complete), _) => values.complete,
            (Some(AnswerStatus::Stopped), _) => values.stopped,
            (Some(AnswerStatus::Error), _) => values.error,
            (Some(AnswerStatus::Interrupted), _) => values.interrupted,
            (None, _) => "",
        };
        let rating = match row.rating.as_deref().and_then(Rating::parse) {
            Some(Rating::Up) => values.up,
            Some(Rating::Down) => values.down,
            None => "",
        };
        let number = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
        push_line(
            &mut out,
            lang.list_separator(),
            [
                super::date_time_of_ms(row.at).trim_end_matches(" UTC").to_string(),
                row.student.label(strings),
                row.question.clone().unwrap_or_default(),
                lessons,
                ended.to_string(),
                rating.to_string(),
                number(row.prompt_tokens),
                number(row.completion_tokens),
                if row.shared { strings.export_yes } else { strings.export_no }.to_string(),
            ]
            .into_iter(),
        );
    }
    out
}

fn push_line(out: &mut String, separator: char, fields: impl Iterator<Item = String>) {
    for (i, field) in fields.enumerate() {
        if i > 0 {
            out.push(separator);
        }
        out.push_str(&field_text(&field, separator));
    }
    out.push_str("\r\n");
}

/// A field as CSV: quoted when it holds the separator, a quote or a line break; and a
/// text a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) starts with `'`.
fn field_text(field: &str, separator: char) -> String {
    let defused = match field.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{field}"),
        _ => field.to_string(),
    };
    if defused.contains([separator, '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(field_text("plain", ','), "plain");
        assert_eq!(field_text("a, b", ','), "\"a, b\"");
        assert_eq!(field_text("a, b", ';'), "a, b");
        assert_eq!(field_text("a; b", ';'), "\"a; b\"");
        assert_eq!(field_text("say \"hi\"\nthen", ','), "\"say \"\"hi\"\"\nthen\"");
        assert_eq!(field_text("=HYPERLINK(\"x\")", ','), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field_text("-1", ';'), "'-1");
    }

    fn row() -> QuestionRow {
        QuestionRow {
            id: "q1".into(),
            at: 20_784 * 86_400_000 + 9 * 3_600_000,
            student: StudentName::Guest(17),
            question: Some("Что такое SSE, и зачем?".into()),
            sources_json: Some(r#"[{"n":1,"lesson":"sse","lesson_title":"SSE","section":"A","anchor":"a","snippet":""},{"n":2,"lesson":"ws","lesson_title":"WS","section":"B","anchor":"b","snippet":""}]"#.into()),
            status: Some("error".into()),
            error_code: Some("rate_limited".into()),
            rating: Some("down".into()),
            prompt_tokens: Some(120),
            completion_tokens: None,
            shared: true,
        }
    }

    #[test]
    fn a_row_reads_back_as_its_fields() {
        let csv = csv_head(Lang::En) + &csv_lines(&[row()], Lang::En);
        assert!(csv.starts_with('\u{feff}'));
        let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').split("\r\n").collect();
        assert_eq!(lines[0], "time_utc,student,question,cited_lessons,ended,rating,prompt_tokens,completion_tokens,shared");
        assert_eq!(lines[1], "2026-11-27 09:00,Guest 17,\"Что такое SSE, и зачем?\",sse; ws,rate_limited,down,120,,yes");
        assert_eq!(lines[2], "");
    }

    /// A Russian spreadsheet splits a CSV on `;` (its decimal mark is the comma).
    #[test]
    fn in_russian_the_fields_are_separated_by_semicolons_under_russian_names() {
        let csv = csv_head(Lang::Ru) + &csv_lines(&[row()], Lang::Ru);
        let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').split("\r\n").collect();
        assert_eq!(lines[0].split(';').count(), 9, "{}", lines[0]);
        assert!(lines[0].starts_with("время_utc;студент;вопрос;"), "{}", lines[0]);
        assert_eq!(lines[1], "2026-11-27 09:00;Гость 17;Что такое SSE, и зачем?;\"sse; ws\";лимит вопросов;не помогло;120;;да");
    }
}
