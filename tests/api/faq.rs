//! The course FAQ (issue #11, part 4): a teacher endorses an answer (editing its
//! wording first), edits and withdraws it; a paraphrase of an endorsed question gets
//! the endorsed answer with no request to the model, marked as the teacher's; an
//! unrelated question goes to the model; a looser match reaches the model as a source.

use crate::helpers::*;

/// A signed-up account made a teacher (what `tutor-chat teacher add` does); returns
/// its session cookie.
async fn teacher(app: &TestApp, name: &str) -> String {
    let cookie = app.signed_up(name, "the teacher's password").await;
    assert!(app.state.db.add_teacher(name, None, true).await.unwrap().is_some());
    cookie
}

/// The student asks the teacher about an answer: its conversation is shared.
async fn share(app: &TestApp, cookie: &str, message_id: &str) {
    let (status, body) = app.call(cookie, "ask_teacher", &[("message_id", message_id), ("note", "is this right?")]).await;
    assert_eq!(status, 200, "{body}");
}

const QUESTION: &str = "What is the difference between SSE and WebSocket?";
const PARAPHRASE: &str = "SSE vs WebSockets: how do they differ?";
const ANSWER: &str = "SSE streams from the server to the browser over plain HTTP; a WebSocket carries messages both ways.";

/// A student's answered question, shared with the teacher, who endorses it with the
/// wording above.
async fn endorsed(app: &TestApp, teacher: &str) -> serde_json::Value {
    let mut student = app.student().await;
    let asked = ask(&mut student.ws, "sse or websockets, whats the diff??").await;
    assert!(asked.end.is_some(), "{asked:?}");
    share(app, &student.cookie, &asked.message_id).await;
    let (status, body) = app
        .call(teacher, "teach/endorse", &[("message_id", &asked.message_id), ("question", QUESTION), ("answer", ANSWER)])
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn endorsed_answers_are_given_without_the_model_and_follow_edits_and_withdrawals() {
    let app = spawn_app().await;
    let teacher = teacher(&app, "ms_faq").await;
    let entry = endorsed(&app, &teacher).await;
    let id = entry["id"].as_str().unwrap().to_string();
    assert_eq!(entry["question"], QUESTION);
    assert_eq!(entry["endorsed_by"], "ms_faq");

    // A paraphrase: the endorsed answer, streamed, marked, with no request upstream.
    let mut student = app.student().await;
    let before = app.fake.requests().len();
    let answer = ask(&mut student.ws, PARAPHRASE).await;
    assert_eq!(app.fake.requests().len(), before, "a direct FAQ answer calls no model");
    assert_eq!(answer.faq_id.as_deref(), Some(id.as_str()));
    assert_eq!(answer.text(), ANSWER);
    assert!(answer.chunks.len() > 1, "streamed like any other answer");
    assert_eq!(answer.end.map(|(_, reason)| reason), Some(EndReason::Complete));
    // Stored like any other, with the mark: history and the page show it.
    let stored = app.load(&student.cookie, &answer.conversation_id).await.unwrap();
    let last = stored.messages.last().unwrap();
    assert_eq!((last.content.as_str(), last.faq_id.as_deref()), (ANSWER, Some(id.as_str())));
    let page = app.page(&student.cookie, &format!("/c/{}", answer.conversation_id)).await;
    assert!(page.contains("faq-badge") && page.contains(&format!("/faq#faq-{id}")), "{page}");

    // An unrelated question goes to the model, without the mark.
    let other = ask(&mut student.ws, "How does a token bucket rate limiter work?").await;
    assert_eq!(app.fake.requests().len(), before + 1);
    assert_eq!(other.faq_id, None);

    // /faq lists it (anyone may read it) and finds it by its words, not by others'.
    let guest = app.session_cookie().await;
    let faq = app.page(&guest, "/faq").await;
    assert!(faq.contains(&format!("id=\"faq-{id}\"")) && faq.contains("plain HTTP"), "{faq}");
    assert!(app.page(&guest, "/faq?q=websocket").await.contains(&format!("id=\"faq-{id}\"")));
    assert!(!app.page(&guest, "/faq?q=jitter").await.contains(&format!("id=\"faq-{id}\"")));

    // Edited: the next question gets the new text.
    let edited = "SSE: server to browser only, over HTTP. WebSocket: both ways.";
    let (status, body) = app
        .call(&teacher, "teach/edit_endorsement", &[("id", &id), ("question", QUESTION), ("answer", edited)])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ask(&mut student.ws, PARAPHRASE).await.text(), edited);
    assert_eq!(app.fake.requests().len(), before + 1);

    // Bad input is refused with its code, and changes nothing.
    for form in [
        vec![("id", id.as_str()), ("question", "  "), ("answer", edited)],
        vec![("id", id.as_str()), ("question", QUESTION), ("answer", "")],
    ] {
        let (status, body) = app.call(&teacher, "teach/edit_endorsement", &form).await;
        assert_ne!(status, 200);
        assert!(body.contains("\"invalid_faq_text\""), "{body}");
    }
    let long = "x".repeat(20_001);
    let (_, body) = app.call(&teacher, "teach/edit_endorsement", &[("id", &id), ("question", QUESTION), ("answer", &long)]).await;
    assert!(body.contains("\"invalid_faq_text\""), "{body}");
    for (endpoint, form) in [
        ("teach/endorse", vec![("message_id", "no-such-message")]),
        ("teach/edit_endorsement", vec![("id", "no-such-entry"), ("question", QUESTION), ("answer", edited)]),
        ("teach/withdraw_endorsement", vec![("id", "no-such-entry")]),
    ] {
        let (_, body) = app.call(&teacher, endpoint, &form).await;
        assert!(body.contains("\"not_found\""), "{endpoint}: {body}");
    }
    // A question is not an answer to endorse.
    let (_, body) = app.call(&teacher, "teach/endorse", &[("message_id", &stored.messages[0].id)]).await;
    assert!(body.contains("\"not_found\""), "{body}");

    // The teacher's page lists the entry to edit or withdraw.
    let teach = app.page(&teacher, "/teach").await;
    assert!(teach.contains(&format!("data-faq-id=\"{id}\"")) && teach.contains("withdraw-form"), "{teach}");

    // Withdrawn: the next paraphrase goes to the model again.
    let (status, body) = app.call(&teacher, "teach/withdraw_endorsement", &[("id", &id)]).await;
    assert_eq!(status, 200, "{body}");
    let after = ask(&mut student.ws, PARAPHRASE).await;
    assert_eq!(after.faq_id, None);
    assert_eq!(app.fake.requests().len(), before + 2);
    assert!(!app.page(&guest, "/faq").await.contains(&format!("id=\"faq-{id}\"")));
}

#[tokio::test]
async fn endorsing_takes_the_conversations_wording_unless_the_teacher_edits_it() {
    let app = spawn_app().await;
    let teacher = teacher(&app, "mr_faq").await;
    let mut student = app.student().await;
    let asked = ask(&mut student.ws, "How does a token bucket rate limiter work?").await;
    // Not shared: the teacher may not read it, so may not publish it either.
    let (_, body) = app.call(&teacher, "teach/endorse", &[("message_id", &asked.message_id), ("question", ""), ("answer", "")]).await;
    assert!(body.contains("\"not_found\"") && !body.contains("token bucket"), "{body}");
    let (_, list) = app.call(&student.cookie, "faq/list", &[("q", "")]).await;
    assert_eq!(list, "[]", "nothing was published");
    share(&app, &student.cookie, &asked.message_id).await;
    let (status, body) = app.call(&teacher, "teach/endorse", &[("message_id", &asked.message_id), ("question", ""), ("answer", "")]).await;
    assert_eq!(status, 200, "{body}");
    let entry: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(entry["question"], "How does a token bucket rate limiter work?");
    assert_eq!(entry["answer"], asked.text());
    // Endorsing the same answer again replaces the wording; it stays one entry.
    let (status, body) = app.call(&teacher, "teach/endorse", &[("message_id", &asked.message_id), ("answer", "Tokens refill at a steady rate.")]).await;
    assert_eq!(status, 200, "{body}");
    let again: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((again["id"].clone(), again["answer"].clone()), (entry["id"].clone(), "Tokens refill at a steady rate.".into()));
    let (_, list) = app.call(&student.cookie, "faq/list", &[("q", "")]).await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&list).unwrap().as_array().unwrap().len(), 1, "{list}");
    // The public list names neither the teacher (a sign-in name) nor the answer it
    // came from; the teachers' own list does.
    assert!(!list.contains("mr_faq") && !list.contains(&asked.message_id), "{list}");
    let (status, mine) = app.call(&teacher, "teach/faq", &[]).await;
    assert_eq!(status, 200, "{mine}");
    let mine: serde_json::Value = serde_json::from_str(&mine).unwrap();
    assert_eq!((mine[0]["endorsed_by"].clone(), mine[0]["message_id"].clone()), ("mr_faq".into(), asked.message_id.clone().into()));
    let (_, body) = app.call(&student.cookie, "teach/faq", &[]).await;
    assert!(body.contains("\"not_found\"") && !body.contains("mr_faq"), "the teachers' list is theirs: {body}");
}

#[tokio::test]
async fn a_looser_match_reaches_the_model_as_a_source() {
    let app = spawn_app().await;
    let teacher = teacher(&app, "ms_src").await;
    let entry = endorsed(&app, &teacher).await;
    let id = entry["id"].as_str().unwrap();
    // Shares words with the endorsed question but asks something else.
    let near = "When should I use SSE instead of a WebSocket?";
    let score = faq_similarity(QUESTION, near);
    assert!((FAQ_SOURCE_MIN_SCORE..FAQ_DIRECT_ANSWER_THRESHOLD).contains(&score), "{score}");

    let mut student = app.student().await;
    let before = app.fake.requests().len();
    let answer = ask(&mut student.ws, near).await;
    assert_eq!(app.fake.requests().len(), before + 1, "the model answers");
    assert_eq!(answer.faq_id, None);
    let source = answer.sources.iter().find(|s| s.lesson.is_empty()).expect("the FAQ entry among the sources");
    assert_eq!(source.href(), format!("/faq#faq-{id}"));
    assert_eq!(source.section, QUESTION);
    // The student's snippet is the teacher's answer itself, in its own language.
    assert_eq!(source.snippet, ANSWER);
    let sent = app.last_request();
    let sources = sent.messages.iter().find(|m| m.content.starts_with(SOURCES_PROMPT)).expect("sources");
    assert!(sources.content.contains(ANSWER), "{}", sources.content);
}

#[tokio::test]
async fn with_direct_answers_off_a_paraphrase_goes_to_the_model_with_the_entry_as_a_source() {
    let app = spawn_app_with(|settings| settings.faq_direct_answers = false).await;
    let teacher = teacher(&app, "ms_off").await;
    endorsed(&app, &teacher).await;
    let mut student = app.student().await;
    let before = app.fake.requests().len();
    let answer = ask(&mut student.ws, PARAPHRASE).await;
    assert_eq!(app.fake.requests().len(), before + 1);
    assert_eq!(answer.faq_id, None);
    assert!(app.last_request().messages.iter().any(|m| m.content.contains(ANSWER)));
}

/// Two teachers endorse the same answer at the same moment: both are told it is
/// published, and it is one entry, with one of the two wordings. On PostgreSQL the
/// FAQ's version row is held until both endorsements wait on a lock, so that neither
/// has finished before the other began. (SQLite runs this process's writes one after
/// another: there the race cannot happen, and the test only checks the outcome.)
#[tokio::test]
async fn two_teachers_endorsing_one_answer_at_once_make_one_entry() {
    use sqlx::Row;
    let app = spawn_app().await;
    let first = teacher(&app, "ms_first").await;
    let second = teacher(&app, "mr_second").await;
    let mut student = app.student().await;
    let asked = ask(&mut student.ws, "What does a WebSocket close code 1013 mean?").await;
    share(&app, &student.cookie, &asked.message_id).await;
    let pool = sqlx::AnyPool::connect(app.state.db.url()).await.unwrap();
    let postgres = app.state.db.url().starts_with("postgres");
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("UPDATE faq_version SET version = version").execute(&mut *holder).await.unwrap();
    const ONE: &str = "Try again later: the server is busy.";
    const OTHER: &str = "The server asks you to come back later.";
    let one = [("message_id", asked.message_id.as_str()), ("answer", ONE)];
    let other = [("message_id", asked.message_id.as_str()), ("answer", OTHER)];
    let release = async {
        if postgres {
            let waiting_by = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                if waiting >= 2 {
                    break;
                }
                assert!(tokio::time::Instant::now() < waiting_by, "both endorsements wait on the held row");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        holder.commit().await.unwrap();
    };
    let (one, other, ()) = tokio::join!(
        app.call(&first, "teach/endorse", &one),
        app.call(&second, "teach/endorse", &other),
        release
    );
    for (who, (status, body)) in [("first", one), ("second", other)] {
        assert_eq!(status, 200, "{who}: {body}");
    }
    let entries: Vec<String> = sqlx::query("SELECT answer FROM faq_entries WHERE message_id = $1")
        .bind(&asked.message_id)
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0] == ONE || entries[0] == OTHER, "{entries:?}");
    pool.close().await;
}
