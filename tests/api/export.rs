//! The CSV of a period's questions (issue #11, part 8), downloaded by a teacher: a
//! header row, a row per question with the student's pseudonym, the question only where
//! it was shared, the lessons cited, how the answer ended, the rating and the tokens.

use crate::helpers::*;

/// Splits the CSV the way a spreadsheet does (quoted fields, doubled quotes, CRLF).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    parse_csv_split_on(text, ',')
}

fn parse_csv_split_on(text: &str, separator: char) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (c, false) if c == separator => row.push(std::mem::take(&mut field)),
            ('\r', false) => {}
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => field.push(c),
        }
    }
    rows
}

async fn download(app: &TestApp, cookie: &str, query: &str) -> (u16, String, String) {
    let response = app
        .http
        .get(format!("http://{}/teach/export.csv{query}", app.addr))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let kind = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, kind, response.text().await.unwrap())
}

#[tokio::test]
async fn a_teacher_downloads_the_periods_questions_with_only_shared_text() {
    let app = spawn_app().await;
    let teacher = teacher(&app, "t_export").await;
    let mut guest = app.student().await;
    let first = ask_in(&mut guest.ws, "[tokens=3] How does the server-sent events reconnection work?", None).await;
    let second = ask_in(&mut guest.ws, "[tokens=2] private, \"quoted\" thought", None).await;
    let account = app.signed_up("olga", "olga's password").await;
    let mut olga = app.socket(&account).await;
    let third = ask_in(&mut olga, "[tokens=4] что такое WebSocket, \"и\" зачем?\nВторая строка.", None).await;
    // Shared: the first by a 👎 with the box ticked, the third by asking the teacher.
    let (status, body) = app
        .call(&guest.cookie, "feedback/rate", &[("message_id", &first.message_id), ("rating", "down"), ("share", "on")])
        .await;
    assert_eq!(status, 200, "{body}");
    app.call(&guest.cookie, "feedback/rate", &[("message_id", &second.message_id), ("rating", "up")]).await;
    let (status, body) = app.call(&account, "ask_teacher", &[("message_id", &third.message_id)]).await;
    assert_eq!(status, 200, "{body}");
    // Rated, then regenerated: the row is the question's, with its newest answer.
    let fourth = ask_in(&mut guest.ws, "[tokens=5] asked again", Some(&first.conversation_id)).await;
    let (status, body) = app.call(&guest.cookie, "feedback/rate", &[("message_id", &fourth.message_id), ("rating", "up")]).await;
    assert_eq!(status, 200, "{body}");
    send_json(&mut guest.ws, serde_json::json!({"type": "regenerate", "message_id": fourth.message_id})).await;
    let again = read_answer(&mut guest.ws).await;
    assert!(again.error.is_none(), "{:?}", again.error);

    let (status, kind, csv) = download(&app, &teacher, "?days=7").await;
    assert_eq!(status, 200, "{csv}");
    assert_eq!(kind, "text/csv; charset=utf-8");
    assert!(csv.starts_with('\u{feff}'), "a BOM, so spreadsheets read UTF-8");
    let rows = parse_csv(csv.trim_start_matches('\u{feff}'));
    assert_eq!(
        rows[0],
        ["time_utc", "student", "question", "cited_lessons", "ended", "rating", "prompt_tokens", "completion_tokens", "shared"]
    );
    assert_eq!(rows.len(), 5, "a header and four questions: {rows:?}");
    let guest_name = rows[1][1].clone();
    assert!(guest_name.starts_with("Guest "), "{guest_name}");
    assert_eq!(rows[2][1], guest_name, "one guest, one stable pseudonym");
    assert_eq!(rows[3][1], "olga");

    assert_eq!(rows[1][2], "[tokens=3] How does the server-sent events reconnection work?");
    let cited: Vec<String> = first.sources.iter().map(|s| s.lesson.clone()).collect();
    assert!(!cited.is_empty(), "the lessons answer this one");
    assert!(cited.iter().all(|lesson| rows[1][3].contains(lesson.as_str())), "{:?} vs {cited:?}", rows[1][3]);
    assert_eq!(&rows[1][4..], ["complete", "down", "10", "3", "yes"]);

    assert_eq!(rows[2][2], "", "not shared: no text");
    assert_eq!(rows[2][3], "", "nor what it was about");
    // Nor the student's rating: beside the pseudonym it would say who rated what in a
    // conversation they kept to themselves (the dashboard shows such a 👎 unnamed).
    assert_eq!(&rows[2][4..], ["complete", "", "10", "2", "no"]);

    assert_eq!(rows[3][2], "[tokens=4] что такое WebSocket, \"и\" зачем?\nВторая строка.", "quotes, lines, Cyrillic kept");
    assert_eq!(&rows[3][5..], ["", "10", "4", "yes"]);

    assert_eq!(rows[4][2], "[tokens=5] asked again");
    assert_eq!(&rows[4][4..], ["complete", "", "10", "5", "yes"], "the newest answer, not yet rated");

    // A period that is not a number falls back to the default (30 days): the same rows.
    let (_, _, csv) = download(&app, &teacher, "?days=nonsense").await;
    assert_eq!(parse_csv(csv.trim_start_matches('\u{feff}')), rows);

    // A Russian teacher's file says how each answer ended, and its rating, in Russian.
    let (_, _, csv) = download(&app, &format!("{teacher}; lang=ru"), "?days=7").await;
    let russian = parse_csv_split_on(csv.trim_start_matches('\u{feff}'), ';');
    assert_eq!(&russian[1][4..], ["завершён", "не помогло", "10", "3", "да"]);
    assert_eq!(&russian[2][4..], ["завершён", "", "10", "2", "нет"]);
}

/// A period longer than a page of the export: every question once, in time order,
/// also where a page ends among questions stored in the same millisecond. A negative
/// period is one day, as on the dashboard; a Russian page's file splits on `;`.
#[tokio::test]
async fn a_period_of_many_pages_is_exported_whole_once_each_in_order() {
    use tutor_chat::teacher::csv::EXPORT_PAGE_ROWS;
    let app = spawn_app().await;
    let teacher = teacher(&app, "t_pages").await;
    let mut s = app.student().await;
    let first = ask_in(&mut s.ws, "[tokens=2] the first question", None).await;
    let (status, body) = app.call(&s.cookie, "ask_teacher", &[("message_id", &first.message_id)]).await;
    assert_eq!(status, 200, "{body}");
    // Many more in the same conversation, stored at one moment (just after the first),
    // and one three days ago.
    let many = EXPORT_PAGE_ROWS as usize + 300;
    let now = tutor_chat::db::now_ms() + 1000;
    let three_days_ago = now - 3 * 86_400_000;
    let pool = sqlx::AnyPool::connect(app.state.db.url()).await.unwrap();
    let rows: Vec<(String, i64, i64)> = (0..=many)
        .map(|i| (format!("bulk-{i:05}"), 3 + i as i64, if i == many { three_days_ago } else { now }))
        .collect();
    for chunk in rows.chunks(500) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, $1, ${}, 'user', ${}, 'complete', ${})", 4 * i + 2, 4 * i + 3, 4 * i + 4, 4 * i + 5))
            .collect();
        let sql = format!(
            "INSERT INTO messages (id, conversation_id, position, role, content, status, created_at) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(&first.conversation_id);
        for (id, position, at) in chunk {
            query = query.bind(id).bind(position).bind(format!("question {id}")).bind(at);
        }
        query.execute(&pool).await.unwrap();
    }
    pool.close().await;

    let (status, _, csv) = download(&app, &teacher, "?days=7").await;
    assert_eq!(status, 200);
    let rows = parse_csv(csv.trim_start_matches('\u{feff}'));
    let questions: Vec<&str> = rows[1..].iter().map(|row| row[2].as_str()).collect();
    let mut expected = vec![format!("question bulk-{many:05}"), "[tokens=2] the first question".to_string()];
    expected.extend((0..many).map(|i| format!("question bulk-{i:05}")));
    assert_eq!(questions.len(), expected.len(), "every question once, across {} pages", expected.len() / EXPORT_PAGE_ROWS as usize + 1);
    assert!(questions.iter().zip(&expected).all(|(got, want)| got == want), "in time order, then by id");

    // A negative period is one day (today), as the dashboard reads it: not the default 30.
    let (_, _, csv) = download(&app, &teacher, "?days=-5").await;
    let rows = parse_csv(csv.trim_start_matches('\u{feff}'));
    assert_eq!(rows.len(), 1 + 1 + many, "today's questions only");

    // A Russian teacher's spreadsheet splits on `;`: the same rows, Russian column names.
    let russian = format!("{teacher}; lang=ru");
    let (_, _, csv) = download(&app, &russian, "?days=7").await;
    let rows = parse_csv_split_on(csv.trim_start_matches('\u{feff}'), ';');
    assert_eq!(rows[0][0], "время_utc");
    assert!(rows.iter().all(|row| row.len() == 9), "nine fields a line");
    assert_eq!(rows[2][2], "[tokens=2] the first question");
    assert_eq!(rows[2][8], "да");
    assert_eq!(rows.len(), 1 + expected.len());
}
