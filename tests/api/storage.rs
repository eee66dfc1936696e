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
    let app = spawn_app().await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(app.state.db.url()).await.unwrap();
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
    let (rows_before, commits_before) = app.state.db.answer_commits();
    app.state
        .db
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
    app.state.db.write_answers(&[checkpoint(a, "five", 4, 1), checkpoint(c, "late", 10, 1)]).await.unwrap();
    assert_eq!(answer_row(&pool, a).await.0, "five words so far");
    assert_eq!(answer_row(&pool, c).await.0, "the whole answer");
    let (rows, commits) = app.state.db.answer_commits();
    assert_eq!((rows - rows_before, commits - commits_before), (8, 2));
}
