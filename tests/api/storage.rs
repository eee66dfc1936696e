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
