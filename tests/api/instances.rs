//! Several instances on one database (#12): an answer followed from another instance
//! chunk by chunk, a student's tabs on different instances hearing each other, and
//! answers cut by a crash continued by another instance. The instances here are apps
//! in this process sharing one database (on SQLite their bus meets in-process, on
//! PostgreSQL it is LISTEN/NOTIFY); a "crash" drops an instance's whole runtime, so no
//! code of it runs again — as after kill -9. The real binaries behind nginx are in
//! `deployment.rs`.

use std::time::{Duration, Instant};

use serde_json::json;
use tutor_chat::history::MessageStatus;
use tutor_chat::protocol::{ConversationChange, EndReason, ServerFrame};

use crate::helpers::*;

/// An app on a runtime of its own, so that it can die like a killed process.
struct Doomed {
    app: TestApp,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Doomed {
    async fn start(database_url: String, lease_ms: u64) -> Doomed {
        Doomed::start_with(database_url, lease_ms, |_| {}).await
    }

    async fn start_with(database_url: String, lease_ms: u64, tweak: fn(&mut tutor_chat::settings::Settings)) -> Doomed {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        // Made here, not on the runtime's worker: the test's thread removes it at its end.
        let data_dir = fresh_data_dir();
        let app = runtime
            .spawn(spawn_app_with(move |s| {
                s.database_url = Some(database_url);
                s.data_dir = data_dir;
                s.answer_lease = Duration::from_millis(lease_ms);
                tweak(s);
            }))
            .await
            .unwrap();
        Doomed { app, runtime: Some(runtime) }
    }

    /// Every task of the instance stops where it is: nothing is stored or sent.
    fn crash(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Doomed {
    fn drop(&mut self) {
        self.crash();
    }
}

async fn second_instance(database_url: &str, lease_ms: u64) -> TestApp {
    let url = database_url.to_string();
    spawn_app_with(move |s| {
        s.database_url = Some(url);
        s.answer_lease = Duration::from_millis(lease_ms);
    })
    .await
}

/// What a socket that resumed an answer saw: snapshots reset the text, chunks add.
#[derive(Debug, Default)]
struct Followed {
    text: String,
    last_seq: u64,
    seqs: Vec<u64>,
    snapshots: usize,
    end: Option<EndReason>,
    first_chunk_at: Option<Instant>,
    status: Option<MessageStatus>,
}

/// Reads a resumed answer to its end, checking that every chunk is the next `seq`.
async fn follow_to_end(ws: &mut Ws, message_id: &str, within: Duration) -> Followed {
    let mut seen = Followed::default();
    let deadline = Instant::now() + within;
    loop {
        assert!(Instant::now() < deadline, "the answer did not end in {within:?}: {seen:?}");
        match next_frame(ws).await {
            ServerFrame::Snapshot { message_id: id, content, seq, status, live, .. } => {
                assert_eq!(id, message_id);
                seen.text = content;
                seen.last_seq = seq;
                seen.snapshots += 1;
                seen.status = Some(status);
                if !live {
                    return seen;
                }
            }
            ServerFrame::Chunk { content, seq, message_id: id } => {
                assert_eq!(id, message_id);
                assert_eq!(seq, seen.last_seq + 1, "chunks in order, each once: {seen:?}");
                seen.first_chunk_at.get_or_insert_with(Instant::now);
                seen.text.push_str(&content);
                seen.last_seq = seq;
                seen.seqs.push(seq);
            }
            ServerFrame::End { seq, reason, .. } => {
                assert_eq!(seq, seen.last_seq);
                seen.end = Some(reason);
                return seen;
            }
            ServerFrame::ConversationChanged { .. } | ServerFrame::Budget { .. } => {}
            other => panic!("unexpected {other:?} while following"),
        }
    }
}

/// The whole text the test upstream streams for `question`: asked once, to the end.
async fn full_text(app: &TestApp, question: &str) -> String {
    let mut ws = app.connect().await;
    let answer = ask(&mut ws, question).await;
    assert_eq!(answer.end.map(|(_, reason)| reason), Some(EndReason::Complete));
    answer.text()
}

async fn stored(app: &TestApp, message_id: &str) -> (String, String, i64, i64, Option<String>) {
    use sqlx::Row;
    let pool = sqlx::AnyPool::connect(app.state.db.url()).await.unwrap();
    let row = sqlx::query("SELECT status, content, generation, continued, seams FROM messages WHERE id = $1")
        .bind(message_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    let stored = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    pool.close().await;
    stored
}

#[tokio::test]
async fn a_socket_on_another_instance_follows_an_answer_chunk_by_chunk_exactly_once() {
    let a = spawn_app().await;
    let database_url = a.state.settings.database_url.clone().unwrap();
    let b = second_instance(&database_url, 5_000).await;
    let question = "[tokens=100] [delay=20] how do sockets work?";

    let mut asker = a.student().await;
    send_json(&mut asker.ws, json!({"question": question})).await;
    let ServerFrame::Start { message_id, .. } = next_frame(&mut asker.ws).await else { panic!("no start") };
    for _ in 0..10 {
        assert!(matches!(next_frame(&mut asker.ws).await, ServerFrame::Chunk { .. }));
    }
    // The same student, another tab, connected to the other instance.
    let mut follower = b.socket(&asker.cookie).await;
    send_json(&mut follower, json!({"type": "resume", "message_id": message_id})).await;
    let followed = follow_to_end(&mut follower, &message_id, Duration::from_secs(20)).await;
    let rest = read_rest(&mut asker.ws, message_id.clone()).await;

    let sent = a.last_request().answer;
    assert_eq!(followed.end, Some(EndReason::Complete));
    assert_eq!(followed.text, sent, "the follower's text is what the upstream sent");
    // The follower's instance measured how late the bus brought the chunks.
    let scraped = b.state.metrics.render(0, 0);
    let lag_count = scraped
        .lines()
        .find_map(|line| line.strip_prefix("tutor_notification_lag_seconds_count "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(lag_count > 0, "{scraped}");
    assert!(!followed.seqs.is_empty(), "chunks came live, not only a snapshot");
    assert_eq!(followed.last_seq, rest.end.unwrap().0);
    assert_eq!(rest.end.map(|(_, r)| r), Some(EndReason::Complete));
    assert!(sent.ends_with(&rest.text()), "the asker's tail matches too");
    // Nothing is left subscribed once the answer ended.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b.state.bus.followed(), 0);
}

#[tokio::test]
async fn a_question_in_one_tab_streams_in_the_other_tab_on_another_instance_and_renames_reach_it() {
    let a = spawn_app().await;
    let database_url = a.state.settings.database_url.clone().unwrap();
    let b = second_instance(&database_url, 5_000).await;
    let mut first_tab = a.student().await;
    let first = ask(&mut first_tab.ws, "what is a socket?").await;
    // The second tab opens (on the other instance) once the student exists.
    let mut second_tab = b.socket(&first_tab.cookie).await;

    send_json(
        &mut first_tab.ws,
        json!({"type": "ask", "question": "[tokens=100] [delay=20] and a frame?", "conversation_id": first.conversation_id}),
    )
    .await;
    let (conversation_id, message_id) = match next_frame(&mut second_tab).await {
        ServerFrame::ConversationChanged { conversation_id, change: ConversationChange::Asked, message_id: Some(id), .. } => {
            (conversation_id, id)
        }
        other => panic!("expected the other tab's question, got {other:?}"),
    };
    assert_eq!(conversation_id, first.conversation_id);
    // As the page does: it follows the answer the other tab started.
    send_json(&mut second_tab, json!({"type": "resume", "message_id": message_id})).await;
    let followed = follow_to_end(&mut second_tab, &message_id, Duration::from_secs(20)).await;
    let asked = read_answer(&mut first_tab.ws).await;
    assert_eq!(asked.message_id, message_id);
    assert_eq!(followed.end, Some(EndReason::Complete));
    let sent = a.last_request().answer;
    assert_eq!(followed.text, sent);
    assert_eq!(asked.text(), sent);

    // A rename in the first tab (through its instance) reaches the second tab's sidebar.
    let (status, _) = a
        .call(&first_tab.cookie, "history/rename", &[("id", conversation_id.as_str()), ("title", "Sockets")])
        .await;
    assert_eq!(status, 200);
    match next_frame(&mut second_tab).await {
        ServerFrame::ConversationChanged { conversation_id: id, change: ConversationChange::Renamed, title, .. } => {
            assert_eq!(id, conversation_id);
            assert_eq!(title.as_deref(), Some("Sockets"));
        }
        other => panic!("expected the rename, got {other:?}"),
    }
    // The tab that renamed hears it too (its sidebar reloads); it was not told about
    // its own question (the rename is the first thing it hears).
    assert!(matches!(
        next_frame(&mut first_tab.ws).await,
        ServerFrame::ConversationChanged { change: ConversationChange::Renamed, .. }
    ));
    let (status, _) = a.call(&first_tab.cookie, "history/delete", &[("id", conversation_id.as_str())]).await;
    assert_eq!(status, 200);
    for ws in [&mut first_tab.ws, &mut second_tab] {
        match next_frame(ws).await {
            ServerFrame::ConversationChanged { change: ConversationChange::Deleted, .. } => {}
            other => panic!("expected the deletion, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_by_a_crash_is_continued_elsewhere_with_no_word_lost_or_repeated_then_a_second_crash_leaves_it_interrupted() {
    const LEASE_MS: u64 = 2_000;
    let question = "[tokens=140] [delay=25] explain the whole protocol";
    let mut a = Doomed::start(fresh_database_url().await, LEASE_MS).await;
    let database_url = a.app.state.settings.database_url.clone().unwrap();
    let mut b = Doomed::start(database_url.clone(), LEASE_MS).await;

    let mut student = a.app.student().await;
    send_json(&mut student.ws, json!({"question": question})).await;
    let ServerFrame::Start { message_id, .. } = next_frame(&mut student.ws).await else { panic!("no start") };
    let mut received = String::new();
    while received.split_whitespace().count() < 40 {
        if let ServerFrame::Chunk { content, .. } = next_frame(&mut student.ws).await {
            received.push_str(&content);
        }
    }
    a.crash();
    let crashed_at = Instant::now();
    // The student's page reconnects (to the other instance) and resumes.
    let mut ws = b.app.socket(&student.cookie).await;
    send_json(&mut ws, json!({"type": "resume", "message_id": message_id})).await;
    let mut seen = Followed::default();
    loop {
        match next_frame(&mut ws).await {
            ServerFrame::Snapshot { content, seq, .. } => {
                seen.text = content;
                seen.last_seq = seq;
            }
            ServerFrame::Chunk { content, seq, .. } => {
                assert_eq!(seq, seen.last_seq + 1);
                seen.first_chunk_at.get_or_insert_with(Instant::now);
                seen.text.push_str(&content);
                seen.last_seq = seq;
                if seen.seqs.len() == 50 {
                    break;
                }
                seen.seqs.push(seq);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let took = seen.first_chunk_at.unwrap() - crashed_at;
    // The lease, a sweep, and room for a loaded machine: a bound, not a benchmark.
    assert!(took < Duration::from_millis(LEASE_MS + 4_000), "continued after {took:?}");
    let (status, content, generation, continued, seams) = stored(&b.app, &message_id).await;
    assert_eq!((status.as_str(), generation, continued), ("streaming", 1, 1));
    let seam: usize = serde_json::from_str::<Vec<usize>>(&seams.unwrap()).unwrap()[0];
    assert!(received.starts_with(&content[..seam]), "the seam is where the stored text ended");

    // The taker dies too: the answer is not continued a second time.
    b.crash();
    let c = second_instance(&database_url, LEASE_MS).await;
    let mut ws = c.socket(&student.cookie).await;
    send_json(&mut ws, json!({"type": "resume", "message_id": message_id})).await;
    let last = follow_to_end(&mut ws, &message_id, Duration::from_secs(20)).await;
    assert_eq!(last.status, Some(MessageStatus::Interrupted));
    let (status, cut, _, continued, _) = stored(&c, &message_id).await;
    assert_eq!((status.as_str(), continued), ("interrupted", 1));
    assert_eq!(last.text, cut);

    // What was kept is the upstream's own text from the start, across the seam.
    let full = full_text(&c, question).await;
    assert!(cut.len() > seam, "the taker wrote past the seam");
    assert!(full.starts_with(&cut), "no word lost or repeated at the seam:\n{cut}\n---\n{full}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continued_answer_ends_complete_with_the_full_text() {
    const LEASE_MS: u64 = 2_000;
    let question = "[tokens=90] [delay=20] what is backpressure?";
    let mut a = Doomed::start(fresh_database_url().await, LEASE_MS).await;
    let database_url = a.app.state.settings.database_url.clone().unwrap();
    let b = second_instance(&database_url, LEASE_MS).await;
    let mut student = a.app.student().await;
    send_json(&mut student.ws, json!({"question": question})).await;
    let ServerFrame::Start { message_id, conversation_id, .. } = next_frame(&mut student.ws).await else {
        panic!("no start")
    };
    // Past a checkpoint (once a second), then the instance dies.
    let until = Instant::now() + Duration::from_millis(1_300);
    while Instant::now() < until {
        next_frame(&mut student.ws).await;
    }
    a.crash();
    let mut ws = b.socket(&student.cookie).await;
    send_json(&mut ws, json!({"type": "resume", "message_id": message_id})).await;
    let followed = follow_to_end(&mut ws, &message_id, Duration::from_secs(30)).await;
    assert_eq!(followed.end, Some(EndReason::Complete), "{followed:?} {:?}", stored(&b, &message_id).await);
    let full = full_text(&b, question).await;
    assert_eq!(followed.text, full, "the student's page ends with the upstream's whole text");
    let (status, content, generation, continued, seams) = stored(&b, &message_id).await;
    assert_eq!((status.as_str(), generation, continued), ("complete", 1, 1));
    assert_eq!(content, full, "stored with no word lost or repeated at the seam");
    // The instance that took it over counts it.
    let scraped = b.state.metrics.render(0, 0);
    assert!(scraped.contains("tutor_takeovers_total 1"), "{scraped}");
    // The page marks the seam, once, where the stored text ended.
    let seam: usize = serde_json::from_str::<Vec<usize>>(&seams.unwrap()).unwrap()[0];
    let page = b.page(&student.cookie, &format!("/c/{conversation_id}")).await;
    assert_eq!(page.matches("class=\"seam\"").count(), 1);
    let before_seam = content[..seam].split_whitespace().last().unwrap();
    let marked = page.find("class=\"seam\"").unwrap();
    assert!(page[..marked].trim_end_matches(|c| c != '>').ends_with('>') && page[..marked].contains(before_seam));
    // The model was asked to continue: the partial answer, then the instruction.
    let continuation = b
        .fake
        .requests()
        .into_iter()
        .find(|r| r.messages.last().is_some_and(|m| m.content == tutor_chat::upstream::CONTINUE_INSTRUCTION))
        .expect("a continuation request");
    let partial = &continuation.messages[continuation.messages.len() - 2];
    assert_eq!(partial.role, "assistant");
    assert!(full.starts_with(&partial.content) && !partial.content.is_empty());
    assert_eq!(format!("{}{}", partial.content, continuation.answer), full);
}

#[tokio::test]
async fn a_students_tabs_and_answers_are_capped_across_instances() {
    let caps = |s: &mut tutor_chat::settings::Settings| {
        s.max_connections_per_user = 2;
        s.answers_at_once_per_user = 1;
    };
    let a = spawn_app_with(caps).await;
    let database_url = a.state.settings.database_url.clone().unwrap();
    let b = spawn_app_with(move |s| {
        caps(s);
        s.database_url = Some(database_url);
    })
    .await;
    let mut first = a.student().await;
    let mut second = b.socket(&first.cookie).await;
    // A third tab is refused on either instance: two are open in all.
    for app in [&a, &b] {
        assert_eq!(app.open_or_refused(Some(&first.cookie)).await.err(), Some(TOO_MANY_CONNECTIONS));
    }

    // One answer at a time for this student, whichever instance is asked.
    send_json(&mut first.ws, json!({"question": "[tokens=80] [delay=20] the long one"})).await;
    let ServerFrame::Start { message_id, .. } = next_frame(&mut first.ws).await else { panic!("no start") };
    let refused = ask(&mut second, "[tokens=2] meanwhile, elsewhere").await;
    assert_eq!(refused.error, Some((tutor_chat::protocol::ErrorCode::Busy, Some(5))));
    let calls = b.fake.requests().len();
    assert_eq!(read_rest(&mut first.ws, message_id).await.end.map(|(_, r)| r), Some(EndReason::Complete));
    let asked = ask(&mut second, "[tokens=2] now it may").await;
    assert_eq!(asked.end.map(|(_, r)| r), Some(EndReason::Complete));
    assert_eq!(b.fake.requests().len(), calls + 1, "the refused question never reached the model");

    // A closed tab frees its place (on the other instance too).
    drop(second);
    let origin = format!("http://{}", a.addr);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match a.try_connect(Some(&first.cookie), Some(&origin)).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(error) => panic!("the closed tab's place never came back: {error}"),
        }
    }
}

/// No model configured: answers are the lessons' own excerpts (lesson mode).
fn lesson_mode(s: &mut tutor_chat::settings::Settings) {
    s.upstream.base_url = None;
    s.upstream.api_key = None;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_mode_continues_its_own_text_after_a_crash() {
    const LEASE_MS: u64 = 2_000;
    let question = "How does a token bucket limit how often a client may send requests?";
    let mut a = Doomed::start_with(fresh_database_url().await, LEASE_MS, lesson_mode).await;
    let database_url = a.app.state.settings.database_url.clone().unwrap();
    let url = database_url.clone();
    let b = spawn_app_with(move |s| {
        s.database_url = Some(url);
        s.answer_lease = Duration::from_millis(LEASE_MS);
        lesson_mode(s);
    })
    .await;
    assert!(a.app.state.lesson_mode && b.state.lesson_mode);
    let mut student = a.app.student().await;
    send_json(&mut student.ws, json!({"question": question})).await;
    let ServerFrame::Start { message_id, .. } = next_frame(&mut student.ws).await else { panic!("no start") };
    // Past a checkpoint, still mid-answer, then the instance dies.
    let until = Instant::now() + Duration::from_millis(1_300);
    while Instant::now() < until {
        match next_frame(&mut student.ws).await {
            ServerFrame::Chunk { .. } | ServerFrame::Budget { .. } => {}
            other => panic!("the excerpts ended before the crash (make the question longer): {other:?}"),
        }
    }
    a.crash();
    let mut ws = b.socket(&student.cookie).await;
    send_json(&mut ws, json!({"type": "resume", "message_id": message_id})).await;
    let followed = follow_to_end(&mut ws, &message_id, Duration::from_secs(30)).await;
    assert_eq!(followed.end, Some(EndReason::Complete), "{followed:?}");
    let (status, content, generation, _, seams) = stored(&b, &message_id).await;
    assert_eq!((status.as_str(), generation), ("complete", 1));
    assert!(seams.is_some(), "it was continued, not restarted");
    // The same question asked afresh gives the same excerpts: the continued answer is
    // exactly that text, nothing lost or repeated at the seam.
    let whole = full_text(&b, question).await;
    assert_eq!(content, whole);
    assert_eq!(followed.text, whole);
}

/// Instance A is alive but its lease lapsed (its renewals waited too long: here, its
/// renewal no longer reaches the row). An instance takes the answer over and continues
/// it (B, or A itself as a new owner). The old stream must let it go: it stops its
/// model request, and its socket follows the answer where the taker writes it, so the
/// student reads the stored answer and not a second one.
#[tokio::test]
async fn an_owner_whose_lease_lapsed_while_alive_hands_its_sockets_to_the_taker() {
    const LEASE_MS: u64 = 2_000;
    let question = "[tokens=300] [delay=20] a long answer whose owner stalls";
    let a = Doomed::start(fresh_database_url().await, LEASE_MS).await;
    let database_url = a.app.state.settings.database_url.clone().unwrap();
    let b = Doomed::start(database_url.clone(), LEASE_MS).await;

    let mut student = a.app.student().await;
    send_json(&mut student.ws, json!({"question": question})).await;
    let ServerFrame::Start { message_id, .. } = next_frame(&mut student.ws).await else { panic!("no start") };
    let mut seen = Followed::default();
    while seen.last_seq < 20 {
        if let ServerFrame::Chunk { content, seq, .. } = next_frame(&mut student.ws).await {
            assert_eq!(seq, seen.last_seq + 1);
            seen.text.push_str(&content);
            seen.last_seq = seq;
        }
    }
    // A's renewals stop reaching the row, as if its writer waited past the lease.
    let pool = sqlx::AnyPool::connect(&database_url).await.unwrap();
    sqlx::query("UPDATE messages SET owner_instance = 'stalled' WHERE id = $1")
        .bind(&message_id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the answer did not end: {seen:?}");
        match next_frame(&mut student.ws).await {
            ServerFrame::Chunk { content, seq, .. } => {
                assert_eq!(seq, seen.last_seq + 1, "in order, each once: {seen:?}");
                seen.text.push_str(&content);
                seen.last_seq = seq;
            }
            // B took it over: the text as stored at the hand-over, then B's chunks.
            ServerFrame::Snapshot { content, seq, live, .. } => {
                assert!(live);
                seen.text = content;
                seen.last_seq = seq;
                seen.snapshots += 1;
            }
            ServerFrame::End { seq, reason, .. } => {
                assert_eq!(seq, seen.last_seq);
                seen.end = Some(reason);
                break;
            }
            ServerFrame::ConversationChanged { .. } | ServerFrame::Budget { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen.end, Some(EndReason::Complete));
    assert!(seen.snapshots >= 1, "the socket followed the answer to the taker");
    let (status, content, generation, continued, _) = stored(&b.app, &message_id).await;
    assert_eq!((status.as_str(), generation, continued), ("complete", 1, 1));
    assert_eq!(seen.text, content, "the student read the stored answer");
    let own = a.app.fake.requests();
    assert!(!own[0].completed, "A stopped its first model request when the answer was taken over");
    // Continued once, by whichever instance took it (A may take its own lapsed answer).
    assert_eq!(own.len() + b.app.fake.requests().len(), 2);
}

/// The same, when the taker's announcement never reaches A (the bus missed it): A's
/// next lease renewal finds the answer no longer its own and lets it go all the same.
/// Here the "taker" is the test itself, which takes the row over and later ends it.
#[tokio::test]
async fn an_owner_that_missed_the_takeover_notices_it_at_its_next_renewal() {
    const LEASE_MS: u64 = 2_000;
    let a = Doomed::start(fresh_database_url().await, LEASE_MS).await;
    let database_url = a.app.state.settings.database_url.clone().unwrap();
    let mut student = a.app.student().await;
    send_json(&mut student.ws, json!({"question": "[tokens=400] [delay=20] taken over in silence"})).await;
    let ServerFrame::Start { message_id, .. } = next_frame(&mut student.ws).await else { panic!("no start") };
    while !matches!(next_frame(&mut student.ws).await, ServerFrame::Chunk { seq: 10, .. }) {}
    let pool = sqlx::AnyPool::connect(&database_url).await.unwrap();
    sqlx::query("UPDATE messages SET owner_instance = 'silent', generation = generation + 1 WHERE id = $1")
        .bind(&message_id)
        .execute(&pool)
        .await
        .unwrap();
    // A's socket hears of the hand-over as a snapshot of the stored text.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "A never let the answer go");
        match next_frame(&mut student.ws).await {
            ServerFrame::Snapshot { live: true, .. } => break,
            ServerFrame::Chunk { .. } | ServerFrame::ConversationChanged { .. } | ServerFrame::Budget { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // The silent taker ends it: the socket, following it from the database, ends with it.
    sqlx::query("UPDATE messages SET status = 'complete', content = 'the taker''s text', owner_instance = NULL WHERE id = $1")
        .bind(&message_id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "the socket did not follow the stored answer to its end");
        match next_frame(&mut student.ws).await {
            ServerFrame::Snapshot { content, live: false, status, .. } => {
                assert_eq!((content.as_str(), status), ("the taker's text", MessageStatus::Complete));
                break;
            }
            ServerFrame::Snapshot { .. } | ServerFrame::ConversationChanged { .. } | ServerFrame::Budget { .. } => {}
            other => panic!("A streamed on after letting go: {other:?}"),
        }
    }
    let own = a.app.fake.requests();
    assert!(!own[0].completed, "A stopped its model request");
}
