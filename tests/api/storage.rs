//! How answers reach the database: partial answers about once a second rather than
//! per token, shared commits for answers streaming together, and concurrent tabs in
//! one conversation each getting their place.

use crate::helpers::*;

#[tokio::test]
async fn partial_answers_are_written_about_once_a_second_not_per_token() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let _ = ask_in(&mut s.ws, "[tokens=1] warm up", None).await; // user + session rows
    let before = app.state.db.writes();
    let answer = ask_in(&mut s.ws, "[tokens=40] [delay=60] a 2.4 second answer", None).await;
    assert_eq!(answer.chunks.len(), 40);
    let writes = app.state.db.writes() - before;
    // conversation + question + answer row + rate-limit event + final = 5, plus one
    // checkpoint per second.
    assert!((6..=9).contains(&writes), "{writes} writes for a 40-token answer");
}

#[tokio::test]
async fn answers_streaming_together_are_stored_in_shared_commits() {
    let app = spawn_app().await;
    const STUDENTS: usize = 12;
    let mut students = Vec::new();
    for _ in 0..STUDENTS {
        let mut s = app.student().await;
        let _ = ask_in(&mut s.ws, "[tokens=1] warm up", None).await;
        students.push(s);
    }
    let (rows_before, commits_before) = app.state.db.answer_commits();
    let answers = futures::future::join_all(students.iter_mut().map(|s| {
        ask_in(&mut s.ws, "[tokens=25] [delay=100] a 2.5 second answer", None)
    }))
    .await;
    for answer in &answers {
        assert!(answer.error.is_none(), "{:?}", answer.error);
        assert_eq!(answer.chunks.len(), 25);
    }
    let (rows, commits) = app.state.db.answer_commits();
    let (answer_rows, commits) = (rows - rows_before, commits - commits_before);
    // Each answer's row is written about 3 times (2 checkpoints, its end). One commit
    // per row write would be 36 commits; the writer shares them: a checkpoint commit a
    // second for everyone, and ends that arrive together committed together.
    assert!(answer_rows >= 2 * STUDENTS as u64, "{answer_rows} answer-row writes");
    assert!(
        commits * 2 < answer_rows,
        "{commits} commits for {answer_rows} answer-row writes"
    );
}

#[tokio::test]
async fn two_tabs_asking_in_one_conversation_at_once_both_get_stored() {
    let app = spawn_app().await;
    let mut first = app.student().await;
    let seed = ask_in(&mut first.ws, "[tokens=1] seed", None).await;
    let origin = format!("http://{}", app.addr);
    let mut tabs = Vec::new();
    // Four at once: each can lose the race to the other three at most, within the retries.
    for i in 0..4 {
        let mut ws = app.try_connect(Some(&first.cookie), Some(&origin)).await.unwrap();
        assert!(matches!(next_frame(&mut ws).await, ServerFrame::Hello { .. }));
        let conversation = seed.conversation_id.clone();
        tabs.push(tokio::spawn(async move {
            ask_in(&mut ws, &format!("[tokens=2] tab {i}"), Some(&conversation)).await
        }));
    }
    for tab in tabs {
        let answer = tab.await.unwrap();
        assert_eq!(answer.end.map(|e| e.1), Some(EndReason::Complete), "{:?}", answer.error);
    }
    let view = app.load(&first.cookie, &seed.conversation_id).await.unwrap();
    let positions: Vec<i64> = view.messages.iter().map(|m| m.position).collect();
    assert_eq!(positions, (1..=10).collect::<Vec<_>>(), "every question and answer, each in its place");
}

/// `n` answers streaming in one conversation, written by generation 1 of an instance
/// whose lease runs for an hour (the app's recovery leaves them alone).
async fn streaming_answers(pool: &sqlx::AnyPool, n: usize) -> Vec<String> {
    let (user, conversation) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    let now = now_ms();
    sqlx::query("INSERT INTO users (id, created_at) VALUES ($1, $2)").bind(&user).bind(now).execute(pool).await.unwrap();
    sqlx::query("INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES ($1, $2, 't', $3, $3)")
        .bind(&conversation)
        .bind(&user)
        .bind(now)
        .execute(pool)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for position in 1..=n as i64 {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, position, role, content, status, owner_instance, \
             lease_until, created_at, parent_id, generation) \
             VALUES ($1, $2, $3, 'assistant', '', 'streaming', 'here', $4, $5, '', 1)",
        )
        .bind(&id)
        .bind(&conversation)
        .bind(position)
        .bind(now + 3_600_000)
        .bind(now)
        .execute(pool)
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

async fn answer_row(pool: &sqlx::AnyPool, id: &str) -> (String, i64, String, Option<String>) {
    use sqlx::Row;
    let row = sqlx::query("SELECT content, chunk_seq, status, owner_instance FROM messages WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

fn checkpoint(id: &str, content: &str, seq: u64, generation: u64) -> AnswerWrite {
    AnswerWrite::Checkpoint { message_id: id.into(), content: content.into(), chunk_seq: seq, generation }
}

/// The answer writer's batch is one statement per kind of write (checkpoint, hand-over,
/// end), and every row in it keeps the guards it had alone: only a streaming row, only
/// by its writer's generation, and a checkpoint never moves the text backwards.
#[tokio::test]
async fn a_batch_of_answer_writes_keeps_each_rows_guards() {
    // The store alone, with no instance beside it: an instance's sweeper takes a
    // released answer over within a second, and once did so between the write and
    // the check of it below (a CI failure).
    let db = Db::connect(&fresh_database_url().await, 4).await.unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db.url()).await.unwrap();
    let ids = streaming_answers(&pool, 6).await;
    let (a, b, c, d, e, f) = (&ids[0], &ids[1], &ids[2], &ids[3], &ids[4], &ids[5]);
    // An end with an error and without usage or a first token, beside ends with them:
    // NULLs and values in the same columns of one VALUES list.
    let failed = AnswerWrite::Finish {
        message_id: f.clone(),
        content: "cut".into(),
        chunk_seq: 1,
        status: MessageStatus::Error,
        error_code: Some(ErrorCode::UpstreamUnavailable),
        usage: None,
        finished_at: 6,
        first_token_at: None,
        generation: 1,
    };
    let finish = |id: &str, content: &str, generation| AnswerWrite::Finish {
        message_id: id.into(),
        content: content.into(),
        chunk_seq: 9,
        status: MessageStatus::Complete,
        error_code: None,
        usage: Some(Usage { prompt_tokens: 12, completion_tokens: 9 }),
        finished_at: 5,
        first_token_at: Some(2),
        generation,
    };
    let release = AnswerWrite::Release { message_id: d.clone(), content: "half".into(), chunk_seq: 4, generation: 1 };
    let (rows_before, commits_before) = db.answer_commits();
    db
        .write_answers(&[
            finish(c, "the whole answer", 1),
            checkpoint(a, "five words so far", 5, 1),
            release,
            checkpoint(b, "from a writer that lost the answer", 3, 0),
            finish(e, "from a writer that lost the answer", 0),
            failed,
        ])
        .await
        .unwrap();
    let streaming = |content: &str, seq, owner: Option<&str>| (content.to_string(), seq, "streaming".to_string(), owner.map(String::from));
    assert_eq!(answer_row(&pool, a).await, streaming("five words so far", 5, Some("here")));
    assert_eq!(answer_row(&pool, b).await, streaming("", 0, Some("here")), "a stale generation writes nothing");
    assert_eq!(answer_row(&pool, c).await, ("the whole answer".into(), 9, "complete".into(), None));
    assert_eq!(answer_row(&pool, d).await, streaming("half", 4, None), "handed over");
    assert_eq!(answer_row(&pool, e).await, streaming("", 0, Some("here")), "a stale generation ends nothing");
    assert_eq!(answer_row(&pool, f).await, ("cut".into(), 1, "error".into(), None));

    // A late checkpoint moves nothing backwards, and a finished answer stays finished.
    db.write_answers(&[checkpoint(a, "five", 4, 1), checkpoint(c, "late", 10, 1)]).await.unwrap();
    assert_eq!(answer_row(&pool, a).await.0, "five words so far");
    assert_eq!(answer_row(&pool, c).await.0, "the whole answer");
    let (rows, commits) = db.answer_commits();
    assert_eq!((rows - rows_before, commits - commits_before), (8, 2));
}

/// Checkpoints go sixteen answers to a statement. When the database refuses one row's
/// checkpoint, the others in its batch are still saved each second (each alone), so a
/// crash would not lose their text; the refused one is carried by its final write.
#[tokio::test]
async fn a_checkpoint_the_database_refuses_does_not_hold_back_the_others_in_its_batch() {
    let app = spawn_app().await;
    let mut refused = app.student().await;
    let mut saved = app.student().await;
    let question = |who: &str| serde_json::json!({"type": "ask", "question": format!("[tokens=100] [delay=50] {who}")});
    send_json(&mut refused.ws, question("refused")).await;
    let ServerFrame::Start { message_id: refused_id, .. } = next_frame(&mut refused.ws).await else { panic!("no start") };
    send_json(&mut saved.ws, question("saved")).await;
    let ServerFrame::Start { message_id: saved_id, .. } = next_frame(&mut saved.ws).await else { panic!("no start") };
    let pool = sqlx::AnyPool::connect(app.state.db.url()).await.unwrap();
    // The database refuses every checkpoint of the first answer (its final write passes).
    let refusing = if app.state.db.url().starts_with("sqlite:") {
        vec![format!(
            "CREATE TRIGGER refuse_checkpoint BEFORE UPDATE ON messages \
             WHEN OLD.id = '{refused_id}' AND NEW.status = 'streaming' \
             BEGIN SELECT RAISE(ABORT, 'this row is refused'); END"
        )]
    } else {
        vec![
            "CREATE FUNCTION refuse_checkpoint() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'this row is refused'; END $$"
                .to_string(),
            format!(
                "CREATE TRIGGER refuse_checkpoint BEFORE UPDATE ON messages FOR EACH ROW \
                 WHEN (OLD.id = '{refused_id}' AND NEW.status = 'streaming') EXECUTE FUNCTION refuse_checkpoint()"
            ),
        ]
    };
    for statement in &refusing {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    let (before, ..) = answer_row(&pool, &saved_id).await;

    // Two and a half checkpoints later, mid-answer (the answers take five seconds).
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let (during, _, status, _) = answer_row(&pool, &saved_id).await;
    assert_eq!(status, "streaming", "still mid-answer");
    assert!(during.len() > before.len() + 20, "the other answer's checkpoints went on: {before:?} → {during:?}");

    for (student, id) in [(&mut refused, refused_id), (&mut saved, saved_id)] {
        let rest = read_rest(&mut student.ws, id.clone()).await;
        assert_eq!(rest.end.map(|(_, reason)| reason), Some(EndReason::Complete));
        let (content, _, status, _) = answer_row(&pool, &id).await;
        assert_eq!((status.as_str(), content.len() > 100), ("complete", true), "{content:?}");
    }
    pool.close().await;
}
