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
pub const GAP_QUESTIONS_READ: i64 = 5_000;

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

impl Db {
    /// Every aggregate of the dashboard, the queries run side by side.
    pub async fn dashboard(&self, query: DashboardQuery) -> Result<Dashboard, StoreError> {
        let since = query.since;
        let first_day = since.div_euclid(DAY_MS);
        let period = first_day..first_day + i64::from(query.days);
        let (questions, endings, (top_lessons, top_sections, cited_lessons), gaps, downvotes, queue, model, ratings) = tokio::try_join!(
            self.questions_per_day(since),
            self.endings_per_day(since),
            self.citations(since),
            self.content_gaps(since, query.read_all),
            self.downvotes(since, query.read_all),
            self.queue(since),
            self.model_per_day(since, period.clone()),
            self.rating_summary(since),
        )?;
        let (question_days, total_questions, total_students) = questions;
        // Every day of the period, so charts have one slot per day.
        let mut days: BTreeMap<i64, DayActivity> = period
            .map(|n| {
                let day = DayActivity { day: date_of_day(n), questions: 0, students: 0, endings: EndingCounts::default() };
                (n, day)
            })
            .collect();
        for (n, questions, students) in question_days {
            if let Some(entry) = days.get_mut(&n) {
                entry.questions = questions;
                entry.students = students;
            }
        }
        let mut totals = EndingCounts::default();
        for (n, ending, count) in endings {
            if let Some(entry) = days.get_mut(&n) {
                entry.endings.add(ending, count);
            }
            totals.add(ending, count);
        }
        let title = |slug: &str| {
            query.lessons.iter().find(|(s, _)| s == slug).map_or_else(|| slug.to_string(), |(_, t)| t.clone())
        };
        let with_titles = |list: Vec<Cited>| {
            list.into_iter().map(|c| Cited { lesson_title: title(&c.lesson), ..c }).collect::<Vec<_>>()
        };
        let never_cited = query.lessons.iter().filter(|(slug, _)| !cited_lessons.contains(slug)).cloned().collect();
        let (downvotes_total, downvotes) = downvotes;
        Ok(Dashboard {
            days: query.days,
            per_day: days.into_values().collect(),
            questions: total_questions,
            students: total_students,
            endings: totals,
            top_lessons: with_titles(top_lessons),
            top_sections: with_titles(top_sections),
            never_cited,
            gaps,
            downvotes_total,
            downvotes,
            queue,
            model,
            prices: query.prices,
            ratings,
        })
    }

    /// Answers by UTC day and ending: `(day, ending, count)`.
    async fn endings_per_day(&self, since: i64) -> Rows<(i64, Ending, i64)> {
        let rows = sqlx::query(
            "SELECT created_at / $2, \
                    CASE WHEN status = 'error' AND error_code = 'rate_limited' THEN 'rate_limited' \
                         WHEN status = 'streaming' THEN 'in_progress' ELSE status END, \
                    COUNT(*) \
             FROM messages WHERE role = 'assistant' AND created_at >= $1 GROUP BY 1, 2 ORDER BY 1",
        )
        .bind(since)
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

    /// The most cited lessons (answers that had one of their sections as a source)
    /// and sections, and every lesson cited at all. Titles are filled in later.
    async fn citations(&self, since: i64) -> Result<(Vec<Cited>, Vec<Cited>, HashSet<String>), StoreError> {
        let lessons = sqlx::query(
            "SELECT lesson, COUNT(DISTINCT message_id) AS n FROM answer_sources WHERE created_at >= $1 \
             GROUP BY lesson ORDER BY n DESC, lesson",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let sections = sqlx::query(
            "SELECT lesson, anchor, MAX(section), COUNT(*) AS n FROM answer_sources WHERE created_at >= $1 \
             GROUP BY lesson, anchor ORDER BY n DESC, lesson, anchor LIMIT $2",
        )
        .bind(since)
        .bind(TOP_CITED)
        .fetch_all(&self.pool)
        .await?;
        let mut all = HashSet::new();
        let mut top_lessons = Vec::new();
        for row in &lessons {
            let lesson: String = row.try_get(0)?;
            if top_lessons.len() < TOP_CITED as usize {
                top_lessons.push(Cited {
                    lesson: lesson.clone(),
                    lesson_title: String::new(),
                    anchor: String::new(),
                    section: String::new(),
                    count: row.try_get(1)?,
                });
            }
            all.insert(lesson);
        }
        let top_sections = sections
            .iter()
            .map(|row| {
                Ok(Cited {
                    lesson: row.try_get(0)?,
                    lesson_title: String::new(),
                    anchor: row.try_get(1)?,
                    section: row.try_get(2)?,
                    count: row.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok((top_lessons, top_sections, all))
    }

    /// Questions the lessons did not cover: counted in SQL, the newest
    /// [`GAP_QUESTIONS_READ`] grouped by a shared word. A question's text is kept as a
    /// sample only where the teacher may read its conversation.
    async fn content_gaps(&self, since: i64, read_all: bool) -> Result<ContentGaps, StoreError> {
        let counts = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN retrieval_score = 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
                    CAST(COALESCE(SUM(CASE WHEN retrieval_score > 0 AND retrieval_score < $2 THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM messages WHERE role = 'assistant' AND created_at >= $1",
        )
        .bind(since)
        .bind(WEAK_MATCH_MILLI)
        .fetch_one(&self.pool)
        .await?;
        let sql = format!(
            "SELECT q.content, CASE WHEN {} THEN 1 ELSE 0 END \
             FROM messages a JOIN messages q ON q.conversation_id = a.conversation_id AND q.position = a.position - 1 \
             JOIN conversations c ON c.id = a.conversation_id \
             WHERE a.role = 'assistant' AND a.created_at >= $1 AND a.retrieval_score < $2 \
             ORDER BY a.created_at DESC LIMIT $3",
            readable_by_teachers(read_all)
        );
        let rows = sqlx::query(&sql)
            .bind(since)
            .bind(WEAK_MATCH_MILLI)
            .bind(GAP_QUESTIONS_READ)
            .fetch_all(&self.pool)
            .await?;
        let questions = rows
            .iter()
            .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)? == 1)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(ContentGaps {
            nothing: counts.try_get(0)?,
            weak: counts.try_get(1)?,
            groups: group_by_shared_word(&questions),
        })
    }

    /// The period's 👎 count and the newest [`DOWNVOTES_SHOWN`], their texts selected
    /// only where readable (the others' never leave the database).
    async fn downvotes(&self, since: i64, read_all: bool) -> Result<(i64, Vec<Downvote>), StoreError> {
        let total: i64 = sqlx::query(
            "SELECT COUNT(*) FROM feedback f JOIN messages a ON a.id = f.message_id \
             WHERE f.rating = 'down' AND a.created_at >= $1",
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
             LEFT JOIN messages q ON q.conversation_id = a.conversation_id AND q.position = a.position - 1 \
             WHERE f.rating = 'down' AND a.created_at >= $1 ORDER BY a.created_at DESC, a.id LIMIT $2"
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
            list.push(Downvote {
                at: row.try_get(0)?,
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

    /// Tokens per UTC day, and time to first token p50/p95 (nearest rank:
    /// the ⌈p·n/100⌉-th smallest) per day, from window functions both backends have.
    async fn model_per_day(&self, since: i64, period: std::ops::Range<i64>) -> Rows<ModelDay> {
        let tokens = sqlx::query(
            "SELECT created_at / $2, CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT), \
                    CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) \
             FROM messages WHERE role = 'assistant' AND created_at >= $1 GROUP BY 1 ORDER BY 1",
        )
        .bind(since)
        .bind(DAY_MS)
        .fetch_all(&self.pool)
        .await?;
        let ttft = sqlx::query(
            "SELECT day, MAX(CASE WHEN rn = (50 * n + 99) / 100 THEN ttft END), \
                         MAX(CASE WHEN rn = (95 * n + 99) / 100 THEN ttft END) \
             FROM (SELECT created_at / $2 AS day, first_token_at - created_at AS ttft, \
                          ROW_NUMBER() OVER (PARTITION BY created_at / $2 ORDER BY first_token_at - created_at) AS rn, \
                          COUNT(*) OVER (PARTITION BY created_at / $2) AS n \
                   FROM messages WHERE role = 'assistant' AND created_at >= $1 AND first_token_at IS NOT NULL) t \
             GROUP BY day",
        )
        .bind(since)
        .bind(DAY_MS)
        .fetch_all(&self.pool)
        .await?;
        let mut days: BTreeMap<i64, ModelDay> = period
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
        for row in &tokens {
            if let Some(day) = days.get_mut(&row.try_get::<i64, _>(0)?) {
                day.prompt_tokens = row.try_get(1)?;
                day.completion_tokens = row.try_get(2)?;
            }
        }
        for row in &ttft {
            if let Some(day) = days.get_mut(&row.try_get::<i64, _>(0)?) {
                day.ttft_p50_ms = row.try_get(1)?;
                day.ttft_p95_ms = row.try_get(2)?;
            }
        }
        Ok(days.into_values().collect())
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
/// only readable texts become samples, but every question counts.
pub fn group_by_shared_word(questions: &[(String, bool)]) -> Vec<GapGroup> {
    let words: Vec<Vec<String>> = questions.iter().map(|(text, _)| topic_words(text)).collect();
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
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!((groups[0].word.as_str(), groups[0].count), ("lifetime", 3));
        assert_eq!(groups[0].samples, ["What is a lifetime?", "lifetime elision rules"]);
        assert_eq!((groups[1].word.as_str(), groups[1].count), ("closures", 2));
        assert_eq!(groups[1].samples, ["How do closures capture?"]);
    }

    #[test]
    fn a_word_one_question_has_makes_no_group() {
        assert!(group_by_shared_word(&[q("Что такое время жизни?", true), q("unrelated words here", true)]).is_empty());
        assert!(group_by_shared_word(&[]).is_empty());
    }

    #[test]
    fn stop_words_and_short_words_are_not_topics() {
        assert_eq!(topic_words("What does this MEAN for Traits, traits?"), ["traits"]);
    }
}
