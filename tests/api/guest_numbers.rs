//! Guest numbers ("Guest 17", docs/storage.md): a new guest is stored without one and
//! numbers are given in batches, off the class's arrival; yet every guest a teacher
//! sees has one, unique, in order after the highest, and it never changes.

use std::collections::BTreeMap;

use crate::helpers::*;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

/// The guest number of each request in the teacher's queue, by conversation.
async fn numbers_in_queue(app: &TestApp, teacher: &str) -> BTreeMap<String, i64> {
    let (status, body) = app.call(teacher, "teach/queue", &[]).await;
    assert_eq!(status, 200, "{body}");
    json(&body)["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|request| {
            let number = request["student"]["Guest"].as_i64().unwrap_or_else(|| panic!("a guest: {request}"));
            (request["conversation_id"].as_str().unwrap().to_string(), number)
        })
        .collect()
}

/// A guest's first question and a request to the teacher about its answer.
async fn arrives_and_asks_the_teacher(app: &TestApp, student: &mut Student, question: &str) -> String {
    let answer = ask_in(&mut student.ws, question, None).await;
    let (status, body) = app.call(&student.cookie, "ask_teacher", &[("message_id", &answer.message_id)]).await;
    assert_eq!(status, 200, "{body}");
    answer.conversation_id
}

/// Two instances on one database, as deployed (docs/deploy.md).
async fn two_instances() -> (TestApp, TestApp) {
    let url = fresh_database_url().await;
    let a = spawn_app_with({
        let url = url.clone();
        move |s| s.database_url = Some(url)
    })
    .await;
    let b = spawn_app_with(move |s| s.database_url = Some(url)).await;
    (a, b)
}

#[tokio::test]
async fn guests_arriving_together_get_consecutive_numbers_and_a_teacher_sees_a_new_one_at_once() {
    let (a, b) = two_instances().await;
    let teacher = teacher(&a, "t_numbers").await;
    // A class arrives on both instances: six guests ask their first question at the
    // same moment (each becomes a user with it), then ask the teacher about the answer.
    let mut class = Vec::new();
    for i in 0..6 {
        let app = if i % 2 == 0 { &a } else { &b };
        class.push((app, app.student().await));
    }
    let conversations = futures::future::join_all(
        class
            .iter_mut()
            .map(|(app, student)| arrives_and_asks_the_teacher(app, student, "[tokens=2] what is a stream?")),
    )
    .await;

    // Two teachers' pages read the queue at once, one on each instance: both number
    // the waiting guests, and agree.
    let (seen, seen_on_b) = tokio::join!(numbers_in_queue(&a, &teacher), numbers_in_queue(&b, &teacher));
    assert_eq!(seen, seen_on_b);
    let mut numbers: Vec<i64> = conversations.iter().map(|c| seen[c]).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=6).collect::<Vec<i64>>(), "distinct, consecutive, from 1: {seen:?}");

    // A guest who arrives now is seen by the teacher a moment later with the next
    // number, in the conversation, the queue and the export.
    let mut late = b.student().await;
    let conversation = arrives_and_asks_the_teacher(&b, &mut late, "[tokens=1] am I late?").await;
    let (status, body) = a.call(&teacher, "teach/conversation", &[("id", &conversation)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["student"], serde_json::json!({"Guest": 7}), "{body}");
    let again = numbers_in_queue(&a, &teacher).await;
    assert_eq!(again[&conversation], 7);
    for c in &conversations {
        assert_eq!(again[c], seen[c], "a guest's number never changes");
    }
    let csv = a
        .http
        .get(format!("http://{}/teach/export.csv?days=1", a.addr))
        .header("cookie", &teacher)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.contains(",Guest 7,"), "{csv}");
    assert!(!csv.contains("Guest 0"), "{csv}");
}
