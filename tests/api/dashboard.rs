//! The course dashboard (`/teach`, `teach/dashboard`): every aggregate against a
//! history seeded row by row with known answers, on whichever backend the run uses
//! (SQLite, or PostgreSQL under `.ci/with-postgres`); what a live answer records for
//! it; and the privacy rule on 👎 texts and content-gap samples.

use serde_json::{json, Value};

use crate::helpers::*;

const DAY: i64 = 86_400_000;
const STREAMING: &str = "02-streaming-responses-en";
const RATES: &str = "05-rate-limiting-en";

/// Writes rows straight into the app's database.
struct Seed {
    pool: sqlx::AnyPool,
}

/// One answer row and the question before it.
struct Turn<'a> {
    conversation: &'a str,
    position: i64,
    question: &'a str,
    answer: &'a str,
    at: i64,
    status: &'a str,
    error_code: Option<&'a str>,
    tokens: Option<(i64, i64)>,
    ttft: Option<i64>,
    score: Option<i64>,
}

impl Seed {
    async fn new(app: &TestApp) -> Seed {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(app.state.settings.database_url.as_deref().unwrap()).await.unwrap();
        Seed { pool }
    }

    async fn run(&self, sql: &str, values: &[Option<String>]) {
        let mut query = sqlx::query(sql);
        for value in values {
            query = query.bind(value.clone());
        }
        query.execute(&self.pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn user(&self, id: &str, username: Option<&str>, guest_no: Option<i64>) {
        sqlx::query("INSERT INTO users (id, created_at, username, username_key, guest_no) VALUES ($1, 0, $2, $3, $4)")
            .bind(id)
            .bind(username)
            .bind(username.map(str::to_lowercase))
            .bind(guest_no)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn conversation(&self, id: &str, user: &str) {
        self.run(
            "INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES ($1, $2, 't', 0, 0)",
            &[Some(id.into()), Some(user.into())],
        )
        .await;
    }

    /// Returns the answer's id (`a` + the question's position + the conversation).
    async fn turn(&self, t: Turn<'_>) -> String {
        let answer_id = format!("a{}{}", t.position + 1, t.conversation);
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, position, role, content, status, created_at) \
             VALUES ($1, $2, $3, 'user', $4, 'complete', $5)",
        )
        .bind(format!("q{}{}", t.position, t.conversation))
        .bind(t.conversation)
        .bind(t.position)
        .bind(t.question)
        .bind(t.at)
        .execute(&self.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, position, role, content, status, error_code, created_at, \
             prompt_tokens, completion_tokens, first_token_at, retrieval_score, parent_id) \
             VALUES ($1, $2, $3, 'assistant', $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&answer_id)
        .bind(t.conversation)
        .bind(t.position + 1)
        .bind(t.answer)
        .bind(t.status)
        .bind(t.error_code)
        .bind(t.at)
        .bind(t.tokens.map(|(p, _)| p))
        .bind(t.tokens.map(|(_, c)| c))
        .bind(t.ttft.map(|ms| t.at + ms))
        .bind(t.score)
        // An answer follows its question (history::versions).
        .bind(format!("q{}{}", t.position, t.conversation))
        .execute(&self.pool)
        .await
        .unwrap();
        answer_id
    }

    async fn source(&self, answer: &str, lesson: &str, anchor: &str, at: i64) {
        sqlx::query("INSERT INTO answer_sources (message_id, lesson, anchor, section, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(answer)
            .bind(lesson)
            .bind(anchor)
            .bind(format!("Section {anchor}"))
            .bind(at)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn feedback(&self, answer: &str, rating: &str, reasons: &str, comment: &str, shared: i64) {
        sqlx::query(
            "INSERT INTO feedback (message_id, rating, reasons, comment, updated_at, shared, answer_at) \
             VALUES ($1, $2, $3, $4, 0, $5, (SELECT created_at FROM messages WHERE id = $1))",
        )
        .bind(answer)
        .bind(rating)
        .bind(reasons)
        .bind(comment)
        .bind(shared)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    async fn escalation(&self, id: &str, conversation: &str, status: &str, at: i64, waited: Option<i64>) {
        sqlx::query(
            "INSERT INTO escalations (id, conversation_id, message_id, status, created_at, closed_at) \
             VALUES ($1, $2, 'm-' || $1, $3, $4, $5)",
        )
        .bind(id)
        .bind(conversation)
        .bind(status)
        .bind(at)
        .bind(waited.map(|w| at + w))
        .execute(&self.pool)
        .await
        .unwrap();
    }
}

fn turn<'a>(conversation: &'a str, position: i64, question: &'a str, at: i64, status: &'a str) -> Turn<'a> {
    Turn {
        conversation,
        position,
        question,
        answer: "an answer",
        at,
        status,
        error_code: None,
        tokens: None,
        ttft: None,
        score: None,
    }
}

/// Three students over two days of the period and one older day; see each assertion.
async fn seed_history(app: &TestApp) {
    let db = Seed::new(app).await;
    let today = now_ms() / DAY * DAY;
    let (yesterday, old) = (today - DAY + 3_600_000, today - 10 * DAY);
    db.user("u-alice", Some("alice"), None).await;
    db.user("u-guest", None, Some(5)).await;
    db.user("u-bob", Some("bob"), None).await;
    // alice's conversation is shared (a 👎 with the box ticked); the guest's is not;
    // bob's is (he asked the teacher).
    for (c, u) in [("c1", "u-alice"), ("c2", "u-guest"), ("c3", "u-bob"), ("c0", "u-alice")] {
        db.conversation(c, u).await;
    }
    let a1 = db
        .turn(Turn {
            answer: "Alice's answer text",
            tokens: Some((100, 20)),
            ttft: Some(100),
            score: Some(0),
            ..turn("c1", 0, "What is a lifetime?", yesterday, "complete")
        })
        .await;
    db.turn(Turn {
        error_code: Some("rate_limited"),
        score: Some(1_500),
        ..turn("c1", 2, "lifetime elision", yesterday + 1_000, "error")
    })
    .await;
    let a3 = db
        .turn(Turn {
            answer: "The guest's answer text",
            tokens: Some((10, 5)),
            ttft: Some(300),
            score: Some(2_000),
            ..turn("c2", 0, "lifetime in structs", today + 1_000, "stopped")
        })
        .await;
    let a4 = db
        .turn(Turn {
            tokens: Some((50, 30)),
            ttft: Some(200),
            score: Some(9_000),
            ..turn("c2", 2, "closures capture", today + 2_000, "complete")
        })
        .await;
    db.turn(Turn {
        tokens: Some((40, 0)),
        ttft: Some(400),
        score: Some(0),
        ..turn("c3", 0, "closures and traits", today + 3_000, "interrupted")
    })
    .await;
    let a6 = db.turn(turn("c3", 2, "still streaming", today + 4_000, "streaming")).await;
    db.turn(Turn {
        error_code: Some("upstream"),
        score: Some(5_000),
        ..turn("c3", 4, "a failed one", today + 5_000, "error")
    })
    .await;
    // Outside a 7-day period.
    let a8 = db
        .turn(Turn {
            tokens: Some((1_000, 1_000)),
            ttft: Some(9_000),
            score: Some(0),
            ..turn("c0", 0, "lifetime long ago", old, "complete")
        })
        .await;
    db.source(&a4, STREAMING, "chunks", today + 2_000).await;
    db.source(&a4, STREAMING, "backpressure", today + 2_000).await;
    db.source(&a6, STREAMING, "chunks", today + 4_000).await;
    db.source(&a6, RATES, "token-bucket", today + 4_000).await;
    db.source(&a8, "01-http-vs-websocket-en", "intro", old).await;
    db.feedback(&a1, "down", "wrong,unclear", "too vague", 1).await;
    db.feedback(&a3, "down", "off_topic", "the guest's private comment", 0).await;
    db.feedback(&a4, "up", "", "", 0).await;
    db.feedback(&a8, "down", "wrong", "", 1).await;
    db.escalation("e0", "c3", "open", old - 10 * DAY, None).await;
    db.escalation("e1", "c3", "open", today + 10, None).await;
    db.escalation("e2", "c3", "answered", yesterday, Some(60_000)).await;
    db.escalation("e3", "c3", "answered", today + 20, Some(180_000)).await;
    db.escalation("e4", "c3", "answered", today + 30, Some(120_000)).await;
    db.escalation("e5", "c3", "answered", today + 40, Some(240_000)).await;
    db.escalation("e6", "c3", "resolved", today + 50, Some(1)).await;
    db.escalation("e7", "c3", "answered", old, Some(1)).await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn date(day_offset: i64) -> String {
    tutor_chat::teacher::date_of_ms(now_ms() + day_offset * DAY)
}

async fn dashboard(app: &TestApp, cookie: &str, days: &str) -> Value {
    let (status, body) = app.call(cookie, "teach/dashboard", &[("days", days)]).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn every_aggregate_matches_a_seeded_history() {
    let app = spawn_app_with(|s| {
        s.price_per_million_prompt_tokens = 2.0;
        s.price_per_million_completion_tokens = 10.0;
    })
    .await;
    let cookie = teacher(&app, "ms_k").await;
    seed_history(&app).await;
    let d = dashboard(&app, &cookie, "7").await;

    // Questions and students per day; the older day is outside the period.
    assert_eq!((d["days"].clone(), d["questions"].clone(), d["students"].clone()), (json!(7), json!(7), json!(3)));
    let days: Vec<(String, i64, i64, Value)> = d["per_day"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|day| day["endings"] != json!([0, 0, 0, 0, 0, 0]))
        .map(|day| (day["day"].as_str().unwrap().to_string(), day["questions"].as_i64().unwrap(), day["students"].as_i64().unwrap(), day["endings"].clone()))
        .collect();
    // Endings in the order complete, stopped, error, interrupted, rate_limited, in_progress.
    assert_eq!(
        days,
        [(date(-1), 2, 1, json!([1, 0, 0, 0, 1, 0])), (date(0), 5, 2, json!([1, 1, 1, 1, 0, 1]))],
        "{d:#}"
    );
    assert_eq!(d["endings"], json!([2, 1, 1, 1, 1, 1]), "a rate-limited error is not an error");

    // Citations: answers per lesson, sources per section; the rest never cited.
    let cited = |list: &Value| -> Vec<(String, String, i64)> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| (c["lesson"].as_str().unwrap().into(), c["anchor"].as_str().unwrap().into(), c["count"].as_i64().unwrap()))
            .collect()
    };
    assert_eq!(cited(&d["top_lessons"]), [(STREAMING.into(), String::new(), 2), (RATES.into(), String::new(), 1)]);
    assert_eq!(
        cited(&d["top_sections"]),
        [
            (STREAMING.into(), "chunks".into(), 2),
            (STREAMING.into(), "backpressure".into(), 1),
            (RATES.into(), "token-bucket".into(), 1)
        ]
    );
    assert_ne!(d["top_lessons"][0]["lesson_title"], json!(STREAMING), "titles come from the lessons");
    let never: Vec<&str> = d["never_cited"].as_array().unwrap().iter().map(|l| l[0].as_str().unwrap()).collect();
    assert_eq!(never.len(), 22, "{never:?}");
    assert!(never.contains(&"01-http-vs-websocket-en") && !never.contains(&STREAMING) && !never.contains(&RATES));

    // Content gaps: two found nothing, two only weak matches (the streaming row, with
    // no score, is neither); three share "lifetime", but only the shared
    // conversation's two are grouped (an unshared question's words are its content),
    // newest first.
    assert_eq!((d["gaps"]["nothing"].clone(), d["gaps"]["weak"].clone()), (json!(2), json!(2)));
    assert_eq!(
        d["gaps"]["groups"],
        json!([{"word": "lifetime", "count": 2, "samples": ["lifetime elision", "What is a lifetime?"]}])
    );

    // 👎: two in the period, newest first; the guest's unshared one shows its reason only.
    assert_eq!(d["downvotes_total"], 2);
    assert_eq!(d["downvotes"][0]["reasons"], json!(["off_topic"]));
    assert_eq!(d["downvotes"][0]["shared"], Value::Null);
    let at = d["downvotes"][0]["at"].as_i64().unwrap();
    assert_eq!(at % DAY, 0, "an unshared 👎 is dated to the day only: {at}");
    assert_eq!(d["downvotes"][1]["reasons"], json!(["wrong", "unclear"]));
    assert_eq!(
        d["downvotes"][1]["shared"],
        json!({"student": {"Account": "alice"}, "question": "What is a lifetime?", "answer": "Alice's answer text", "comment": "too vague"})
    );
    let text = d.to_string();
    assert!(!text.contains("guest's private comment") && !text.contains("The guest's answer text"), "{text}");

    // The queue: open whenever asked; answered in the period 1, 2, 3 and 4 minutes
    // after asking: the median is the mean of the middle two.
    assert_eq!(d["queue"], json!({"open": 2, "answered": 4, "resolved": 1, "median_reply_ms": 150_000}));

    // Model use per day, and time to first token by nearest rank: today's are 200,
    // 300 and 400 ms, so p50 is the 2nd and p95 the 3rd.
    assert_eq!(d["per_day"].as_array().unwrap().len(), 7, "a slot for every day");
    let used: Vec<&Value> = d["model"].as_array().unwrap().iter().filter(|day| day["prompt_tokens"] != 0).collect();
    assert_eq!(
        json!(used),
        json!([
            {"day": date(-1), "prompt_tokens": 100, "completion_tokens": 20, "ttft_p50_ms": 100, "ttft_p95_ms": 100},
            {"day": date(0), "prompt_tokens": 100, "completion_tokens": 35, "ttft_p50_ms": 300, "ttft_p95_ms": 400},
        ])
    );
    assert_eq!(d["prices"], json!({"prompt": 2.0, "completion": 10.0}));

    // One day: only today's rows.
    let d = dashboard(&app, &cookie, "1").await;
    assert_eq!((d["questions"].clone(), d["endings"].clone()), (json!(5), json!([1, 1, 1, 1, 0, 1])));
    assert_eq!(d["downvotes_total"], 1);
    assert_eq!(d["queue"]["median_reply_ms"], 180_000, "the middle of 2, 3 and 4 minutes");
}

#[tokio::test]
async fn every_text_is_readable_when_the_course_opens_all_conversations() {
    let app = spawn_app_with(|s| s.teachers_read_all_conversations = true).await;
    let cookie = teacher(&app, "ms_k").await;
    seed_history(&app).await;
    let d = dashboard(&app, &cookie, "7").await;
    assert_eq!(
        d["downvotes"][0]["shared"],
        json!({"student": {"Guest": 5}, "question": "lifetime in structs", "answer": "The guest's answer text", "comment": "the guest's private comment"})
    );
    assert_eq!(d["gaps"]["groups"][0]["samples"], json!(["lifetime in structs", "lifetime elision", "What is a lifetime?"]));
}

#[tokio::test]
async fn periods_out_of_range_are_clamped_and_the_page_reads_its_period_from_the_url() {
    let app = spawn_app().await;
    let cookie = teacher(&app, "ms_k").await;
    seed_history(&app).await;
    assert_eq!(dashboard(&app, &cookie, "0").await["days"], 1);
    assert_eq!(dashboard(&app, &cookie, "100000").await["days"], 366);
    assert_eq!(dashboard(&app, &cookie, "-3").await["days"], 1);

    let html = app.page(&cookie, "/teach?days=7").await;
    for part in [
        r#"role="img""#,
        "<svg",
        "viewBox=",
        r#"data-days="7""#,
        r#"href="/lessons/02-streaming-responses-en#chunks""#,
        "lifetime",
        "What is a lifetime?",
        "Alice",
        "too vague",
    ] {
        assert!(html.contains(part), "{part} missing from the page");
    }
    assert!(!html.contains("private comment") && !html.contains("The guest"), "unshared texts stay out");
    for bad in ["abc", "-1", "99999"] {
        let html = app.page(&cookie, &format!("/teach?days={bad}")).await;
        assert!(html.contains("data-days=\""), "/teach?days={bad} still renders");
    }
}

#[tokio::test]
async fn a_live_answer_records_its_first_token_retrieval_score_and_sources() {
    let app = spawn_app().await;
    let mut student = app.student().await;
    let answer = ask(&mut student.ws, "[tokens=3] How does backpressure work when streaming responses?").await;
    let db = Seed::new(&app).await;
    let row = sqlx::query(
        "SELECT first_token_at - created_at, retrieval_score FROM messages WHERE id = $1",
    )
    .bind(&answer.message_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    use sqlx::Row;
    let (ttft, score): (Option<i64>, Option<i64>) = (row.try_get(0).unwrap(), row.try_get(1).unwrap());
    assert!(ttft.is_some_and(|ms| ms >= 0), "{ttft:?}");
    assert!(score.is_some_and(|s| s > 0), "{score:?}");
    let sources: i64 = sqlx::query("SELECT COUNT(*) FROM answer_sources WHERE message_id = $1")
        .bind(&answer.message_id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert!(sources >= 1, "the answer's sources are rows");

    // Deleting the conversation takes its sources along.
    let (status, body) =
        app.call(&student.cookie, "history/delete", &[("id", &answer.conversation_id)]).await;
    assert_eq!(status, 200, "{body}");
    let left: i64 = sqlx::query("SELECT COUNT(*) FROM answer_sources").fetch_one(&db.pool).await.unwrap().try_get(0).unwrap();
    assert_eq!(left, 0);
}

/// A finished day is counted once, kept, and read back from then on: a row added to
/// it afterwards (which no real answer could be) is not counted, while today's rows
/// are counted as they come. The summary's numbers are the rows' (the test above
/// checks yesterday's, which it reads from the summary made by its first call).
#[tokio::test]
async fn finished_days_are_summed_once_and_kept_while_today_stays_live() {
    let app = spawn_app().await;
    let cookie = teacher(&app, "ms_k").await;
    seed_history(&app).await;
    let first = dashboard(&app, &cookie, "7").await;
    let db = Seed::new(&app).await;
    let kept: i64 = sqlx::query("SELECT COUNT(*) FROM dashboard_days").fetch_one(&db.pool).await.map(|r| {
        use sqlx::Row;
        r.get(0)
    }).unwrap();
    // Six days of the seven are over (today is live), unless the day turned less than
    // an hour ago: then yesterday is live too.
    assert!((5..=6).contains(&kept), "{kept} days summed");

    let turn = |conversation, position, at| Turn {
        conversation,
        position,
        question: "late row",
        answer: "a",
        at,
        status: "complete",
        error_code: None,
        tokens: Some((1, 1)),
        ttft: Some(100),
        score: Some(9_000),
    };
    let now = now_ms();
    db.turn(turn("c1", 100, now - 3 * DAY)).await;
    db.turn(turn("c1", 102, now)).await;
    let second = dashboard(&app, &cookie, "7").await;
    assert_eq!(second["questions"].as_i64(), first["questions"].as_i64().map(|n| n + 1), "only today's row is new");
    let day3 = |d: &Value| d["per_day"].as_array().unwrap().iter().rev().nth(3).unwrap()["questions"].clone();
    assert_eq!(day3(&second), day3(&first), "three days ago was summed before the late row");
}

/// Regenerating an answer runs retrieval again and stores another answer row. The
/// content gaps count questions: a question regenerated twice is one gap, and its
/// copies do not make a group of their own.
#[tokio::test]
async fn a_regenerated_answer_does_not_multiply_its_content_gap() {
    let app = spawn_app().await;
    let cookie = teacher(&app, "ms_g").await;
    let mut s = app.student().await;
    let first = ask(&mut s.ws, "qwxzy blorfian frobnication").await;
    let mut last = first.message_id.clone();
    for _ in 0..2 {
        send_json(&mut s.ws, json!({"type": "regenerate", "message_id": last})).await;
        let again = read_answer(&mut s.ws).await;
        assert!(again.error.is_none(), "{:?}", again.error);
        last = again.message_id;
    }
    let d = dashboard(&app, &cookie, "7").await;
    assert_eq!((d["gaps"]["nothing"].clone(), d["gaps"]["weak"].clone()), (json!(1), json!(0)), "{}", d["gaps"]);
    assert_eq!(d["gaps"]["groups"], json!([]), "one question is no group");
}
