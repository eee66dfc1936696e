//! The dashboard's SQL: one query per aggregate, each the same text on SQLite and
//! PostgreSQL (`$n` placeholders, integer division of BIGINTs, sums cast back to
//! BIGINT, window functions both have), all reading a period of `messages` through
//! `messages_role_created`. Only the grouping of content-gap questions by a shared
//! word happens here in Rust, over the rows the SQL selects.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::Row;

use super::dashboard::{
    Cited, ContentGaps, Dashboard, DayActivity, Downvote, Ending, EndingCounts, GapGroup, ModelDay, Prices, Queue,
    SharedDownvote, DOWNVOTES_SHOWN, GAP_GROUPS, GAP_SAMPLES, TOP_CITED, WEAK_MATCH_MILLI,
};
use super::store::readable_by_teachers;
use super::{date_of_day, StudentName};
use crate::db::{Db, StoreError, DAY_MS};

/// Content-gap questions read for grouping: the period's newest this many.
pub const GAP_QUESTIONS_READ: i64 = 2_000;

/// What a dashboard covers and what it needs from outside the database.
pub struct DashboardQuery {
    pub days: u32,
    /// Unix ms: the period's first moment.
    pub since: i64,
    /// `teachers_read_all_conversations`.
    pub read_all: bool,
    pub prices: Prices,
    /// The course's lessons, `(slug, title)`, for titles and the never-cited list.
    pub lessons: Vec<(String, String)>,
}

type Rows<T> = Result<Vec<T>, StoreError>;

/// A day is summed for good once it has been over this long: answers asked just
/// before midnight have ended by then.
pub const SETTLE_MS: i64 = 3_600_000;

/// A finished day's numbers, summed once and kept in `dashboard_days`, so a 30-day
/// page reads 30 small rows and the live day instead of every row of the month. Kept
/// as they were at the day's close: a conversation deleted later still counts there.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct DaySummary {
    questions: i64,
    students: i64,
    endings: EndingCounts,
    prompt_tokens: i64,
    completion_tokens: i64,
    ttft_p50_ms: Option<i64>,
    ttft_p95_ms: Option<i64>,
    /// `(lesson, answers that had one of its sections as a source)`.
    lessons: Vec<(String, i64)>,
    /// `(lesson, anchor, section, times given as a source)`.
    sections: Vec<(String, String, String, i64)>,
    gaps_nothing: i64,
    gaps_weak: i64,
}

/// Citations counted over some days: by lesson, and by `(lesson, anchor)` with the
/// section's title.
#[derive(Default)]
struct CitationCounts {
    lessons: HashMap<String, i64>,
    sections: HashMap<(String, String), (String, i64)>,
}

impl CitationCounts {
    fn add_lesson(&mut self, lesson: String, n: i64) {
        *self.lessons.entry(lesson).or_default() += n;
    }

    fn add_section(&mut self, lesson: String, anchor: String, section: String, n: i64) {
        let slot = self.sections.entry((lesson, anchor)).or_insert((section, 0));
        slot.1 += n;
    }
}

/// The numbers of the days not yet summed (today, and yesterday in its first hour).
struct Live {
    activity: Vec<(i64, i64, i64)>,
    endings: Vec<(i64, Ending, i64)>,
    citations: CitationCounts,
    gaps: (i64, i64),
    tokens: Vec<(i64, i64, i64)>,
    ttft: Vec<(i64, Option<i64>, Option<i64>)>,
}

impl Db {
    /// Every aggregate of the dashboard. Finished days come from their summaries
    /// (made on first need, then kept); the days since from the rows themselves.
    pub async fn dashboard(&self, query: DashboardQuery) -> Result<Dashboard, StoreError> {
        let since = query.since;
        let first_day = since.div_euclid(DAY_MS);
        let period = first_day..first_day + i64::from(query.days);
        let settled = (crate::db::now_ms() - SETTLE_MS).div_euclid(DAY_MS).clamp(first_day, period.end);
        let live_from = settled * DAY_MS;
        let summaries = self.day_summaries(first_day..settled).await?;
        let (live, students, gaps, downvotes, queue, ratings) = tokio::try_join!(
            self.live_numbers(live_from),
            self.students_between(first_day..settled, live_from),
            self.content_gap_groups(since, query.read_all),
            self.with_guest_numbers(
                || self.downvotes(since, query.read_all),
                |(_, list)| list.iter().any(|d| d.shared.as_ref().is_some_and(|s| s.student.unnumbered())),
            ),
            self.queue(since),
            self.rating_summary(since),
        )?;

        let blank = |n: i64| DayActivity { day: date_of_day(n), questions: 0, students: 0, endings: EndingCounts::default() };
        let mut days: BTreeMap<i64, DayActivity> = period.clone().map(|n| (n, blank(n))).collect();
        let mut model: BTreeMap<i64, ModelDay> = period
            .clone()
            .map(|n| {
                let day = ModelDay {
                    day: date_of_day(n),
                    prompt_tokens: 0,
                    completion_tokens: 0,
                    ttft_p50_ms: None,
                    ttft_p95_ms: None,
                };
                (n, day)
            })
            .collect();
        let mut citations = CitationCounts::default();
        let mut totals = EndingCounts::default();
        let mut total_questions = 0;
        let (mut nothing, mut weak) = live.gaps;
        for (n, summary) in summaries {
            total_questions += summary.questions;
            for ending in Ending::ALL {
                totals.add(ending, summary.endings.get(ending));
            }
            if let Some(day) = days.get_mut(&n) {
                day.questions = summary.questions;
                day.students = summary.students;
                day.endings = summary.endings;
            }
            if let Some(day) = model.get_mut(&n) {
                day.prompt_tokens = summary.prompt_tokens;
                day.completion_tokens = summary.completion_tokens;
                day.ttft_p50_ms = summary.ttft_p50_ms;
                day.ttft_p95_ms = summary.ttft_p95_ms;
            }
            for (lesson, count) in summary.lessons {
                citations.add_lesson(lesson, count);
            }
            for (lesson, anchor, section, count) in summary.sections {
                citations.add_section(lesson, anchor, section, count);
            }
            nothing += summary.gaps_nothing;
            weak += summary.gaps_weak;
        }
        for (n, questions, students) in live.activity {
            total_questions += questions;
            if let Some(day) = days.get_mut(&n) {
                day.questions = questions;
                day.students = students;
            }
        }
        for (n, ending, count) in live.endings {
            if let Some(day) = days.get_mut(&n) {
                day.endings.add(ending, count);
            }
            totals.add(ending, count);
        }
        for (n, prompt, completion) in live.tokens {
            if let Some(day) = model.get_mut(&n) {
                day.prompt_tokens = prompt;
                day.completion_tokens = completion;
            }
        }
        for (n, p50, p95) in live.ttft {
            if let Some(day) = model.get_mut(&n) {
                day.ttft_p50_ms = p50;
                day.ttft_p95_ms = p95;
            }
        }
        for (lesson, count) in live.citations.lessons {
            citations.add_lesson(lesson, count);
        }
        for ((lesson, anchor), (section, count)) in live.citations.sections {
            citations.add_section(lesson, anchor, section, count);
        }

        let title = |slug: &str| {
            query.lessons.iter().find(|(s, _)| s == slug).map_or_else(|| slug.to_string(), |(_, t)| t.clone())
        };
        let mut top_lessons: Vec<Cited> = citations
            .lessons
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(lesson, &count)| Cited {
                lesson: lesson.clone(),
                lesson_title: title(lesson),
                anchor: String::new(),
                section: String::new(),
                count,
            })
            .collect();
        top_lessons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.lesson.cmp(&b.lesson)));
        top_lessons.truncate(TOP_CITED as usize);
        let mut top_sections: Vec<Cited> = citations
            .sections
            .into_iter()
            .map(|((lesson, anchor), (section, count))| Cited { lesson_title: title(&lesson), lesson, anchor, section, count })
            .collect();
        top_sections.sort_by(|a, b| {
            b.count.cmp(&a.count).then_with(|| a.lesson.cmp(&b.lesson)).then_with(|| a.anchor.cmp(&b.anchor))
        });
        top_sections.truncate(TOP_CITED as usize);
        let cited: HashSet<&String> = citations.lessons.iter().filter(|(_, &n)| n > 0).map(|(lesson, _)| lesson).collect();
        let never_cited = query.lessons.iter().filter(|(slug, _)| !cited.contains(slug)).cloned().collect();
        let (downvotes_total, downvotes) = downvotes;
        Ok(Dashboard {
            days: query.days,
            per_day: days.into_values().collect(),
            questions: total_questions,
            students,
            endings: totals,
            top_lessons,
            top_sections,
            never_cited,
            gaps: ContentGaps { nothing, weak, groups: gaps },
            downvotes_total,
            downvotes,
            queue,
            model: model.into_values().collect(),
            prices: query.prices,
            ratings,
        })
    }

    /// The summaries of finished days, made and stored for those that have none yet.
    async fn day_summaries(&self, days: std::ops::Range<i64>) -> Result<Vec<(i64, DaySummary)>, StoreError> {
        if days.is_empty() {
            return Ok(Vec::new());
        }
        let stored = sqlx::query("SELECT day, summary FROM dashboard_days WHERE day >= $1 AND day < $2")
            .bind(days.start)
            .bind(days.end)
            .fetch_all(&self.pool)
            .await?;
        let mut summaries: BTreeMap<i64, DaySummary> = BTreeMap::new();
        for row in &stored {
            let (day, json): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
            // An unreadable summary (a hand-edited row) is made again.
            if let Ok(summary) = serde_json::from_str(&json) {
                summaries.insert(day, summary);
            }
        }
        for day in days {
            if !summaries.contains_key(&day) {
                let summary = self.summarize_day(day).await?;
                summaries.insert(day, summary);
            }
        }
        Ok(summaries.into_iter().collect())
    }

    /// Counts one finished day from its rows and keeps the result, with the latest
    /// summed day each of its students asked on (for "active students" over a period). Two pages summing the same day at
    /// once store one of the two equal results.
    async fn summarize_day(&self, day: i64) -> Result<DaySummary, StoreError> {
        let (from, to) = (day * DAY_MS, (day + 1) * DAY_MS);
        let (activity, endings, citations, gaps, tokens, ttft) = tokio::try_join!(
            self.activity_between(from, to),
            self.endings_between(from, to),
            self.citations_between(from, to),
            self.gap_counts_between(from, to),
            self.tokens_between(from, to),
            self.ttft_between(from, to),
        )?;
        let mut summary = DaySummary::default();
        if let Some(&(_, questions, students)) = activity.first() {
            summary.questions = questions;
            summary.students = students;
        }
        for (_, ending, count) in endings {
            summary.endings.add(ending, count);
        }
        summary.lessons = citations.lessons.into_iter().collect();
        summary.sections = citations.sections.into_iter().map(|((l, a), (s, n))| (l, a, s, n)).collect();
        (summary.gaps_nothing, summary.gaps_weak) = gaps;
        if let Some(&(_, prompt, completion)) = tokens.first() {
            summary.prompt_tokens = prompt;
            summary.completion_tokens = completion;
        }
        if let Some(&(_, p50, p95)) = ttft.first() {
            summary.ttft_p50_ms = p50;
            summary.ttft_p95_ms = p95;
        }
        let json = serde_json::to_string(&summary).map_err(|e| StoreError::Sqlx(sqlx::Error::Encode(Box::new(e))))?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO dashboard_student_last_day (user_id, last_day) \
             SELECT DISTINCT c.user_id, CAST($1 AS BIGINT) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.role = 'user' AND m.created_at >= $2 AND m.created_at < $3 \
             ON CONFLICT (user_id) DO UPDATE SET last_day = CASE \
                 WHEN excluded.last_day > dashboard_student_last_day.last_day THEN excluded.last_day \
                 ELSE dashboard_student_last_day.last_day END",
        )
        .bind(day)
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO dashboard_days (day, summary, computed_at) VALUES ($1, $2, $3) ON CONFLICT (day) DO NOTHING",
        )
        .bind(day)
        .bind(&json)
        .bind(crate::db::now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.wrote_n(2);
        Ok(summary)
    }

    /// The numbers of the rows since `from` (the days not summed yet).
    async fn live_numbers(&self, from: i64) -> Result<Live, StoreError> {
        let to = i64::MAX;
        let (activity, endings, citations, gaps, tokens, ttft) = tokio::try_join!(
            self.activity_between(from, to),
            self.endings_between(from, to),
            self.citations_between(from, to),
            self.gap_counts_between(from, to),
            self.tokens_between(from, to),
            self.ttft_between(from, to),
        )?;
        Ok(Live { activity, endings, citations, gaps, tokens, ttft })
    }

    /// Students who asked in the period, each once: those whose latest summed day is
    /// in it (every day of the period before `live_from` is summed by now, and none
    /// after the period is), and those who asked since `live_from` and not on a summed
    /// day of the period.
    async fn students_between(&self, summed: std::ops::Range<i64>, live_from: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "SELECT (SELECT COUNT(*) FROM dashboard_student_last_day WHERE last_day >= $1 AND last_day < $2) \
                  + (SELECT COUNT(*) FROM (SELECT DISTINCT c.user_id FROM messages m \
                         JOIN conversations c ON c.id = m.conversation_id \
                         WHERE m.role = 'user' AND m.created_at >= $3) AS live \
                     WHERE NOT EXISTS (SELECT 1 FROM dashboard_student_last_day l \
                                       WHERE l.user_id = live.user_id AND l.last_day >= $1 AND l.last_day < $2))",
        )
        .bind(summed.start)
        .bind(summed.end)
        .bind(live_from)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?)
    }

    /// Questions and students per UTC day: `(day, questions, students)`.
    async fn activity_between(&self, from: i64, to: i64) -> Rows<(i64, i64, i64)> {
        self.three_per_day(
            "SELECT m.created_at / $3, COUNT(*), COUNT(DISTINCT c.user_id) \
             FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.role = 'user' AND m.created_at >= $1 AND m.created_at < $2 GROUP BY 1 ORDER BY 1",
            from,
            to,
        )
        .await
    }

    /// Answers by UTC day and ending: `(day, ending, count)`.
    async fn endings_between(&self, from: i64, to: i64) -> Rows<(i64, Ending, i64)> {
        let rows = sqlx::query(
            "SELECT created_at / $3, \
                    CASE WHEN status = 'error' AND error_code = 'rate_limited' THEN 'rate_limited' \
                         WHEN status = 'streaming' THEN 'in_progress' ELSE status END, \
                    COUNT(*) \
             FROM messages WHERE role = 'assistant' AND created_at >= $1 AND created_at < $2 GROUP BY 1, 2 ORDER BY 1",
        )
        .bind(from)
        .bind(to)
        .bind(DAY_MS)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let ending: String = row.try_get(1)?;
            // A status this build does not know (a newer one's) is left out.
            if let Some(ending) = Ending::parse(&ending) {
                out.push((row.try_get(0)?, ending, row.try_get(2)?));
            }
        }
        Ok(out)
    }

    /// Lessons (answers that had one of their sections as a source) and sections
    /// (times given as a source), every one of them.
    async fn citations_between(&self, from: i64, to: i64) -> Result<CitationCounts, StoreError> {
        let lessons = sqlx::query(
            "SELECT lesson, COUNT(DISTINCT message_id) FROM answer_sources \
             WHERE created_at >= $1 AND created_at < $2 GROUP BY lesson",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let sections = sqlx::query(
            "SELECT lesson, anchor, MAX(section), COUNT(*) FROM answer_sources \
             WHERE created_at >= $1 AND created_at < $2 GROUP BY lesson, anchor",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let mut counts = CitationCounts::default();
        for row in &lessons {
            counts.add_lesson(row.try_get(0)?, row.try_get(1)?);
        }
        for row in &sections {
            counts.add_section(row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        }
        Ok(counts)
    }

    /// Questions whose retrieval found nothing, and those whose best match was weak.
    /// One answer row each: a regenerated answer keeps no score of its own (its
    /// question was counted with the first answer), so the covering index serves this.
    async fn gap_counts_between(&self, from: i64, to: i64) -> Result<(i64, i64), StoreError> {
        let counts = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN retrieval_score = 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
                    CAST(COALESCE(SUM(CASE WHEN retrieval_score > 0 AND retrieval_score < $3 THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM messages WHERE role = 'assistant' AND created_at >= $1 AND created_at < $2",
        )
        .bind(from)
        .bind(to)
        .bind(WEAK_MATCH_MILLI)
        .fetch_one(&self.pool)
        .await?;
        Ok((counts.try_get(0)?, counts.try_get(1)?))
    }

    /// Model tokens per UTC day: `(day, prompt, completion)`.
    async fn tokens_between(&self, from: i64, to: i64) -> Rows<(i64, i64, i64)> {
        self.three_per_day(
            "SELECT created_at / $3, CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT), \
                    CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) \
             FROM messages WHERE role = 'assistant' AND created_at >= $1 AND created_at < $2 GROUP BY 1 ORDER BY 1",
            from,
            to,
        )
        .await
    }

    /// Time to first token p50/p95 per UTC day (nearest rank: the ⌈p·n/100⌉-th
    /// smallest), from window functions both backends have.
    async fn ttft_between(&self, from: i64, to: i64) -> Rows<(i64, Option<i64>, Option<i64>)> {
        self.three_per_day(
            "SELECT day, MAX(CASE WHEN rn = (50 * n + 99) / 100 THEN ttft END), \
                         MAX(CASE WHEN rn = (95 * n + 99) / 100 THEN ttft END) \
             FROM (SELECT created_at / $3 AS day, first_token_at - created_at AS ttft, \
                          ROW_NUMBER() OVER (PARTITION BY created_at / $3 ORDER BY first_token_at - created_at) AS rn, \
                          COUNT(*) OVER (PARTITION BY created_at / $3) AS n \
                   FROM messages WHERE role = 'assistant' AND created_at >= $1 AND created_at < $2 \
                         AND first_token_at IS NOT NULL) t \
             GROUP BY day ORDER BY day",
            from,
            to,
        )
        .await
    }

    /// Runs a per-day query of three columns over `[from, to)`: `$1`, `$2` bound to
    /// the range and `$3` to the day's length.
    async fn three_per_day<A, B, C>(&self, sql: &str, from: i64, to: i64) -> Rows<(A, B, C)>
    where
        for<'r> A: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
        for<'r> B: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
        for<'r> C: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        let rows = sqlx::query(sql).bind(from).bind(to).bind(DAY_MS).fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    /// Questions the lessons did not cover, the period's newest [`GAP_QUESTIONS_READ`],
    /// grouped by a shared word (their counts come with the days' numbers). A
    /// question's text is kept as a sample only where the teacher may read it.
    async fn content_gap_groups(&self, since: i64, read_all: bool) -> Rows<super::dashboard::GapGroup> {
        let sql = format!(
            "SELECT q.content, CASE WHEN {} THEN 1 ELSE 0 END, q.id \
             FROM messages a JOIN messages q ON q.id = a.parent_id \
             JOIN conversations c ON c.id = a.conversation_id \
             WHERE a.role = 'assistant' AND a.created_at >= $1 AND a.retrieval_score < {WEAK_MATCH_MILLI} \
             ORDER BY a.created_at DESC LIMIT $2",
            readable_by_teachers(read_all)
        );
        // The threshold is in the text, not a parameter: so the planners see the
        // partial index `messages_gaps` (whose predicate is the same) applies.
        let rows = sqlx::query(&sql)
            .bind(since)
            .bind(GAP_QUESTIONS_READ)
            .fetch_all(&self.pool)
            .await?;
        // A question once, however many versions of its answer (rows stored before
        // regenerated answers stopped keeping a score of their own).
        let mut seen = std::collections::HashSet::new();
        let mut questions = Vec::with_capacity(rows.len());
        for row in &rows {
            if seen.insert(row.try_get::<String, _>(2)?) {
                questions.push((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)? == 1));
            }
        }
        Ok(group_by_shared_word(&questions))
    }

    /// The period's 👎 count and the newest [`DOWNVOTES_SHOWN`], their texts selected
    /// only where readable (the others' never leave the database).
    async fn downvotes(&self, since: i64, read_all: bool) -> Result<(i64, Vec<Downvote>), StoreError> {
        let total: i64 = sqlx::query(
            "SELECT COUNT(*) FROM feedback WHERE answer_at >= $1 AND rating = 'down'",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        let readable = readable_by_teachers(read_all);
        let sql = format!(
            "SELECT a.created_at, f.reasons, \
                    CASE WHEN {readable} THEN 1 ELSE 0 END, \
                    CASE WHEN {readable} THEN f.comment END, \
                    CASE WHEN {readable} THEN q.content END, \
                    CASE WHEN {readable} THEN a.content END, \
                    CASE WHEN {readable} THEN u.username END, \
                    CASE WHEN {readable} THEN u.guest_no END \
             FROM feedback f JOIN messages a ON a.id = f.message_id \
             JOIN conversations c ON c.id = a.conversation_id JOIN users u ON u.id = c.user_id \
             LEFT JOIN messages q ON q.id = a.parent_id \
             WHERE f.answer_at >= $1 AND f.rating = 'down' ORDER BY f.answer_at DESC, f.message_id LIMIT $2"
        );
        let rows = sqlx::query(&sql).bind(since).bind(DOWNVOTES_SHOWN).fetch_all(&self.pool).await?;
        let mut list = Vec::with_capacity(rows.len());
        for row in &rows {
            let reasons: String = row.try_get(1)?;
            let readable: i64 = row.try_get(2)?;
            let shared = if readable == 1 {
                Some(SharedDownvote {
                    comment: row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
                    question: row.try_get::<Option<String>, _>(4)?.unwrap_or_default(),
                    answer: row.try_get::<Option<String>, _>(5)?.unwrap_or_default(),
                    student: StudentName::from_columns(row.try_get(6)?, row.try_get(7)?),
                })
            } else {
                None
            };
            let at: i64 = row.try_get(0)?;
            list.push(Downvote {
                // An unshared 👎's moment only to the day (what the page shows): to the
                // millisecond, the CSV's minute and pseudonym would name its student.
                at: if shared.is_some() { at } else { at.div_euclid(DAY_MS) * DAY_MS },
                reasons: reasons.split(',').filter(|r| !r.is_empty()).map(str::to_string).collect(),
                shared,
            });
        }
        Ok((total, list))
    }

    /// The "ask my teacher" queue: open ones whenever asked, answered and resolved
    /// ones asked since `since`, and the median time to a reply over those answered
    /// (the middle one, or the mean of the middle two, picked by SQL).
    async fn queue(&self, since: i64) -> Result<Queue, StoreError> {
        let counts = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN status = 'open' THEN 1 ELSE 0 END), 0) AS BIGINT), \
                    CAST(COALESCE(SUM(CASE WHEN status = 'answered' AND created_at >= $1 THEN 1 ELSE 0 END), 0) AS BIGINT), \
                    CAST(COALESCE(SUM(CASE WHEN status = 'resolved' AND created_at >= $1 THEN 1 ELSE 0 END), 0) AS BIGINT), \
                    CAST(COALESCE(SUM(CASE WHEN status = 'answered' AND created_at >= $1 AND closed_at IS NOT NULL \
                                  THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM escalations",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        let replied: i64 = counts.try_get(3)?;
        let median_reply_ms = if replied == 0 {
            None
        } else {
            let middle = sqlx::query(
                "SELECT closed_at - created_at AS waited FROM escalations \
                 WHERE status = 'answered' AND created_at >= $1 AND closed_at IS NOT NULL \
                 ORDER BY waited LIMIT $2 OFFSET $3",
            )
            .bind(since)
            .bind(2 - replied % 2)
            .bind((replied - 1) / 2)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| row.try_get::<i64, _>(0))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            (!middle.is_empty()).then(|| middle.iter().sum::<i64>() / middle.len() as i64)
        };
        Ok(Queue {
            open: counts.try_get(0)?,
            answered: counts.try_get(1)?,
            resolved: counts.try_get(2)?,
            median_reply_ms,
        })
    }
}

/// Words that say nothing about a topic, in the course's two languages.
const STOP_WORDS: &[&str] = &[
    "about", "does", "from", "have", "what", "when", "where", "which", "with", "would", "should", "could", "there",
    "their", "this", "that", "these", "those", "then", "than", "they", "them", "your", "into", "just", "like",
    "make", "more", "some", "such", "very", "will", "were", "been", "being", "also", "only", "other", "after",
    "before", "because", "please", "explain", "example", "difference", "between", "mean", "means", "work", "works",
    "how", "why", "это", "как", "что", "почему", "зачем", "когда", "где", "какой", "какая", "какие", "можно",
    "нужно", "если", "или", "для", "чем", "чтобы", "есть", "этот", "эта", "эти", "того", "тоже", "также",
    "объясни", "объясните", "пример", "разница", "между", "значит", "работает", "пожалуйста",
];

/// A question's topic words: lowercased, four letters or more, not a stop word, each once.
fn topic_words(question: &str) -> Vec<String> {
    let mut words: Vec<String> = question
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| w.chars().count() >= 4)
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()) && !w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    words.sort_unstable();
    words.dedup();
    words
}

/// Groups questions by the word most of them share, then the next among the rest,
/// while two or more share one; biggest first, ties by the word. `(text, readable)`:
/// only questions the teacher may read take part. A word of a question the student
/// did not share is its content too: as a group's heading, or in a group's count, it
/// would tell the teacher what private questions say.
pub fn group_by_shared_word(questions: &[(String, bool)]) -> Vec<GapGroup> {
    let words: Vec<Vec<String>> =
        questions.iter().map(|(text, readable)| if *readable { topic_words(text) } else { Vec::new() }).collect();
    let mut left: Vec<usize> = (0..questions.len()).collect();
    let mut groups = Vec::new();
    while groups.len() < GAP_GROUPS {
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for &i in &left {
            for word in &words[i] {
                *counts.entry(word.as_str()).or_default() += 1;
            }
        }
        let Some((word, count)) = counts.into_iter().filter(|&(_, n)| n >= 2).max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        else {
            break;
        };
        let word = word.to_string();
        let (members, rest): (Vec<usize>, Vec<usize>) = left.iter().partition(|&&i| words[i].contains(&word));
        let samples = members
            .iter()
            .filter(|&&i| questions[i].1)
            .take(GAP_SAMPLES)
            .map(|&i| questions[i].0.clone())
            .collect();
        groups.push(GapGroup { word, count, samples });
        left = rest;
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str, readable: bool) -> (String, bool) {
        (text.to_string(), readable)
    }

    #[test]
    fn questions_group_under_the_word_most_share() {
        let groups = group_by_shared_word(&[
            q("What is a lifetime?", true),
            q("Lifetime of a borrow", false),
            q("lifetime elision rules", true),
            q("How do closures capture?", true),
            q("closures and borrow", false),
            q("Something else entirely", true),
        ]);
        // Only readable questions count: "closures" is in one readable question only.
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!((groups[0].word.as_str(), groups[0].count), ("lifetime", 2));
        assert_eq!(groups[0].samples, ["What is a lifetime?", "lifetime elision rules"]);
    }

    #[test]
    fn words_only_private_questions_share_are_never_shown() {
        let groups = group_by_shared_word(&[
            q("my diagnosis and async", false),
            q("diagnosis again, with async", false),
            q("async traits", true),
        ]);
        assert!(groups.is_empty(), "{groups:?}");
    }

    #[test]
    fn a_word_one_question_has_makes_no_group() {
        assert!(group_by_shared_word(&[q("Что такое время жизни?", true), q("unrelated words here", true)]).is_empty());
        assert!(group_by_shared_word(&[]).is_empty());
    }

    #[test]
    fn the_gap_index_has_the_thresholds_own_number() {
        let migration = include_str!("../../migrations/20261127000007_dashboard.sql");
        assert!(migration.contains(&format!("retrieval_score < {WEAK_MATCH_MILLI};")), "messages_gaps must use the threshold");
    }

    #[test]
    fn stop_words_and_short_words_are_not_topics() {
        assert_eq!(topic_words("What does this MEAN for Traits, traits?"), ["traits"]);
    }
}
