//! The course's lessons: lesson mode (no model, cited excerpts), retrieved sections
//! sent to the model as numbered sources, the lesson pages, and the `index` command.

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::*;

#[tokio::test]
async fn no_key_and_no_endpoint_answers_with_cited_lesson_excerpts() {
    // No base URL and no key: lesson mode, no model is called at all.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut options = leptos_options().unwrap();
    options.site_addr = addr;
    let settings = Settings {
        database_url: Some(fresh_database_url().await),
        data_dir: fresh_data_dir(),
        lessons_dir: lessons_dir(),
        ..Settings::default()
    };
    let (app, state) = build_app(settings, options).await.unwrap();
    assert!(state.lesson_mode);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let html = reqwest::get(format!("http://{addr}/")).await.unwrap().text().await.unwrap();
    assert!(html.contains(r#"data-lesson-mode="true""#));
    let (mut ws, _) = tokio_tungstenite::connect_async(
        {
            let mut r = format!("ws://{addr}/ws/chat").into_client_request().unwrap();
            r.headers_mut().insert(
                "cookie",
                HeaderValue::from_str(&format!("tutor_session={}", "a".repeat(64))).unwrap(),
            );
            r
        },
    )
    .await
    .unwrap();
    assert!(matches!(next_frame(&mut ws).await, ServerFrame::Hello { .. }));

    let answer = ask(&mut ws, "How does an SSE client resume after a dropped connection with Last-Event-ID?").await;
    assert_eq!(answer.end.map(|(_, reason)| reason), Some(EndReason::Complete));
    assert!(answer.chunks.len() > 10, "streamed word by word, got {} chunks", answer.chunks.len());
    assert_seq_in_order(&answer);
    let text = answer.text();
    assert!(text.starts_with("These are excerpts from the course lessons, not a generated answer"), "{text}");
    assert_eq!(answer.sources.len(), 3);
    for source in &answer.sources {
        assert!(text.contains(&format!("[{}] **{}", source.n, source.lesson_title)), "{text}");
    }
    assert!(
        answer.sources.iter().any(|s| s.lesson.contains("server-sent-events") && s.anchor.contains("last-event-id")),
        "{:?}",
        answer.sources
    );
    // The passage quoted is the lesson's own text.
    assert!(text.contains("Last-Event-ID"), "{text}");

    // In Russian, the note and the passages are Russian.
    let ru = ask(&mut ws, "Зачем нужна экспоненциальная задержка при переподключении?").await;
    let text = ru.text();
    assert!(text.starts_with("Это выдержки из уроков курса"), "{text}");
    assert!(ru.sources.iter().any(|s| s.lesson.ends_with("-ru")), "{:?}", ru.sources);
}

#[tokio::test]
async fn retrieved_sections_go_to_the_model_as_numbered_sources_and_come_back_with_history() {
    let app = spawn_app().await;
    let mut s = app.student().await;
    let question = "[tokens=4] [cite=1,7] How does a token bucket allow short bursts of requests?";
    let answer = ask_in(&mut s.ws, question, None).await;
    assert_eq!(answer.end.map(|e| e.1), Some(EndReason::Complete));

    // The start frame lists the sections, best first, numbered from 1.
    assert_eq!(answer.sources.len(), 3, "top k = 3 by default");
    assert_eq!(answer.sources.iter().map(|s| s.n).collect::<Vec<_>>(), [1, 2, 3]);
    let best = &answer.sources[0];
    assert_eq!((best.lesson.as_str(), best.anchor.as_str()), ("05-rate-limiting-en", "token-bucket"));
    assert_eq!(best.section, "Token bucket");
    assert!(best.snippet.starts_with("A token bucket holds up to N tokens"), "{}", best.snippet);

    // The model got them as numbered sources right before the question, told to cite [n].
    let sent = app.last_request();
    let n = sent.messages.len();
    assert_eq!(sent.messages[n - 1].content, question);
    let prompt = &sent.messages[n - 2];
    assert_eq!(prompt.role, "system");
    assert!(prompt.content.starts_with(SOURCES_PROMPT), "{}", prompt.content);
    assert!(prompt.content.contains("[1] Rate limiting › Token bucket\nA token bucket holds"), "{}", prompt.content);
    assert!(prompt.content.contains("cite each source you use as [n]"));
    for source in &answer.sources {
        assert!(prompt.content.contains(&format!("[{}] {} › {}", source.n, source.lesson_title, source.section)));
    }
    assert!(answer.text().ends_with(" [1] [7]"), "{}", answer.text());

    // History gives the same sources back with the answer; questions have none.
    let view = app.load(&s.cookie, &answer.conversation_id).await.unwrap();
    assert!(view.messages[0].sources.is_empty());
    assert_eq!(view.messages[1].sources, answer.sources);

    // A follow-up that means little alone is searched with the earlier question.
    let follow_up = ask_in(&mut s.ws, "[tokens=2] and what about refilling?", Some(&answer.conversation_id)).await;
    assert!(follow_up.sources.iter().any(|s| s.lesson == "05-rate-limiting-en"), "{:?}", follow_up.sources);

    // The server renders the answer's citations and source links into the page.
    let html = app.page(&s.cookie, &format!("/c/{}", answer.conversation_id)).await;
    assert!(html.contains(r#"href="/lessons/05-rate-limiting-en#token-bucket""#), "source link in the page");
    assert!(html.contains(r#"class="cite""#), "[1] became a citation link");
    assert!(!html.contains(r#"data-n="7""#), "a made-up [7] is no link");
}

#[tokio::test]
async fn lesson_pages_render_with_section_anchors_and_unknown_ones_are_404() {
    let app = spawn_app().await;
    let page = app.http.get(format!("http://{}/lessons/03-server-sent-events-en", app.addr)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<h1 id="server-sent-events">Server-sent events</h1>"#), "{html}");
    assert!(html.contains(r#"<h2 id="last-event-id-and-resuming">"#));
    let ru = app.http.get(format!("http://{}/lessons/04-reconnection-ru", app.addr)).send().await.unwrap();
    assert!(ru.text().await.unwrap().contains(r#"id="экспоненциальная-задержка-с-джиттером""#));
    for missing in ["no-such-lesson", "..%2F..%2Fetc%2Fpasswd", "03-server-sent-events-en.md"] {
        let response = app.http.get(format!("http://{}/lessons/{missing}", app.addr)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{missing}");
    }
    let list = app.http.get(format!("http://{}/lessons", app.addr)).send().await.unwrap().text().await.unwrap();
    assert_eq!(list.matches(r#"<a href="/lessons/"#).count(), 24, "every lesson is listed");
}

#[test]
fn the_index_command_shows_progress_and_skips_broken_files() {
    let root = fresh_data_dir();
    let lessons = root.join("lessons");
    std::fs::create_dir_all(&lessons).unwrap();
    std::fs::write(lessons.join("01-a-en.md"), "# Alpha\n\n## One\n\nText one.\n\n## Two\n\nText two.\n").unwrap();
    std::fs::write(lessons.join("02-broken-en.md"), "no title\n").unwrap();
    let run = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tutor-chat"))
            .args(["index", "--data-dir"])
            .arg(root.join("data"))
            .arg("--lessons-dir")
            .arg(&lessons)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).to_string())
    };
    let (ok, out) = run();
    assert!(ok, "{out}");
    assert!(out.contains("[1/1] 01-a-en.md: 2 sections"), "{out}");
    assert!(out.contains("skipped 02-broken-en.md: the lesson has no `# Title` line"), "{out}");
    assert!(out.contains("1 re-indexed, 0 unchanged, 0 removed, 1 skipped; 2 sections in the index"), "{out}");

    std::fs::remove_file(lessons.join("01-a-en.md")).unwrap();
    let (ok, out) = run();
    assert!(ok, "{out}");
    assert!(out.contains("removed 01-a-en.md"), "{out}");
    assert!(out.contains("0 sections in the index"), "{out}");
}
