//! Property tests over random inputs, for the two places that read what others write:
//! the client-frame parser (anything a browser, or an attacker, sends) and the
//! Markdown renderer (anything a model writes). Inputs are built from fragments that
//! matter to each (JSON syntax, frame types, HTML and Markdown syntax, URL schemes,
//! multi-byte text), mixed at random with a fixed seed per run.
//!
//! CI runs 20,000 inputs per property. The longer run in docs/BENCHMARKS.md:
//!   TUTOR_FUZZ_ITERATIONS=1000000 cargo test --release --features ssr --lib proptests

use fastrand::Rng;

use crate::protocol::Source;
use crate::protocol::{parse_client_frame, ClientFrame, FrameError, FrameLimits};
use crate::render::{allowed_link, answer_html, RenderLabels, StreamingHtml};

fn iterations() -> u64 {
    std::env::var("TUTOR_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn random_text(rng: &mut Rng, fragments: &[&str], max_parts: usize) -> String {
    let parts = rng.usize(..max_parts) + 1;
    let mut out = String::new();
    for _ in 0..parts {
        match rng.usize(..10) {
            // A random code point now and then: controls, surrogates' neighbours, emoji.
            0 => out.push(char::from_u32(rng.usize(..0x11_0000) as u32).unwrap_or('\u{FFFD}')),
            1 => out.push_str(&"x".repeat(rng.usize(..300))),
            _ => out.push_str(fragments[rng.usize(..fragments.len())]),
        }
    }
    out
}

const FRAME_FRAGMENTS: &[&str] = &[
    "{", "}", "[", "]", ",", ":", "\"", "\"type\"", "\"ask\"", "\"stop\"", "\"ping\"",
    "\"resume\"", "\"question\"", "\"conversation_id\"", "\"message_id\"", "\"t\"", "null",
    "true", "1e309", "-0", "12345678901234567890", "\"\\u0000\"", "\"\\ud800\"", "\"\"",
    "\"   \"", "\"вопрос\"", "\"🦀\"", "{\"type\":\"ask\",\"question\":", "{\"question\":",
    "{\"type\":\"ping\",\"t\":", "{\"type\":\"resume\",\"message_id\":", "\\", "\n", " ",
];

const QUESTION_WORDS: &[&str] = &["what", " is", " SSE", "?", " ", "\n", "вопрос", "🦀", "\u{0}", "\\", "\""];

/// Half structured frames (valid or nearly), half soup; some of either are then cut
/// or spliced, as a broken client would.
fn random_frame(rng: &mut Rng) -> String {
    let mut text = match rng.usize(..6) {
        0 => serde_json::json!({"type": "ask", "question": random_text(rng, QUESTION_WORDS, 12)}).to_string(),
        1 => serde_json::json!({"question": random_text(rng, QUESTION_WORDS, 60)}).to_string(),
        2 => {
            let kinds = ["stop", "ping", "resume", "ask", "nope", "", "STOP"];
            let kind = kinds[rng.usize(..kinds.len())];
            serde_json::json!({"type": kind, "t": rng.u64(..) as f64 / 7.0, "message_id": random_text(rng, QUESTION_WORDS, 3)}).to_string()
        }
        3 => serde_json::json!({
            "type": "ask",
            "question": random_text(rng, QUESTION_WORDS, 8),
            "conversation_id": if rng.usize(..2) == 0 { serde_json::Value::Null } else { serde_json::json!(rng.u64(..)) },
            "extra": [1, {"nested": true}],
        })
        .to_string(),
        _ => random_text(rng, FRAME_FRAGMENTS, 24),
    };
    if rng.usize(..4) == 0 && !text.is_empty() {
        let cut = text.char_indices().nth(rng.usize(..text.chars().count())).map_or(0, |(b, _)| b);
        let fragment = FRAME_FRAGMENTS[rng.usize(..FRAME_FRAGMENTS.len())];
        text.insert_str(cut, fragment);
    }
    text
}

#[test]
fn frame_parser_never_panics_and_keeps_its_limits() {
    let limits = FrameLimits {
        max_frame_bytes: 512,
        max_question_chars: 40,
    };
    let seed = 0x5EED_0001;
    let mut rng = Rng::with_seed(seed);
    let mut accepted = 0u64;
    for i in 0..iterations() {
        let input = random_frame(&mut rng);
        let parsed = parse_client_frame(&input, limits);
        match &parsed {
            Ok(frame) => {
                accepted += 1;
                assert!(input.len() <= limits.max_frame_bytes, "seed {seed} #{i}: {input:?}");
                if let ClientFrame::Ask { question, .. } = frame {
                    assert!(!question.trim().is_empty(), "seed {seed} #{i}: {input:?}");
                    assert!(question.chars().count() <= limits.max_question_chars);
                }
            }
            Err(FrameError::FrameTooLarge { size, .. }) => assert_eq!(*size, input.len()),
            Err(error) => {
                // Every refusal maps to a code and a message a client can show.
                let _ = error.code();
                assert!(!error.to_string().is_empty());
                assert!(error.to_string().len() < 400, "error text stays short: {error}");
            }
        }
    }
    // The generator reaches the interesting part: many inputs are valid frames.
    assert!(accepted * 10 > iterations(), "only {accepted} random inputs were valid frames");
}

const MARKDOWN_FRAGMENTS: &[&str] = &[
    "<script>", "</script>", "<img src=x onerror=alert(1)>", "<svg onload=alert(1)>", "<iframe src=",
    "<a href=\"javascript:alert(1)\">", "<", ">", "\"", "'", "&", "&lt;", "javascript:", "JaVaScRiPt:",
    "data:text/html,", "vbscript:", "[", "]", "(", ")", "](", "![", "](javascript:alert(1))",
    "](https://example.org)", "](mailto:a@b.c)", "](//evil.example)", "<https://auto.example>",
    "[1]", "[2]", "[9]", "[", "1]", "```", "```js\n", "~~~", "`", "*", "**", "_", "~~", "#", "## ",
    "\n", "\n\n", "- ", "1. ", "> ", "| a | b |\n|---|---|\n", "| ", " |", "- [ ] ", "- [x] ",
    "---", "\\", "    ", "<!-- ", " -->", "<details open ontoggle=x>", "<style>", "&#x6a;avascript:",
    "текст", "🦀", " ", "onerror=", "href=", "<p", "<b>", "</",
    // Block structure a streamed render must not cut wrongly.
    "\n\n- ", "\n\n1. ", "\n\n2) ", "\n\n  ", "\n\n    ", "\n\n```\n", "\n\n<script>\n", "\n\n<!--\n",
    "\n\n> ", "\n\npara", "\n\n| x |\n|---|\n", "\n\n[r]: https://example.org\n", "[r]", "\n---\n", "\n===\n",
    "\r\n", "\t", "\u{E000}",
];

const ALLOWED_TAGS: &[&str] = &[
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "strong", "em", "del", "code", "pre",
    "blockquote", "table", "thead", "tbody", "tr", "th", "td", "a", "div", "button", "hr", "br",
    "input", "span",
];

/// Checks every tag the renderer wrote: known names, known attributes, safe links.
fn assert_inert(html: &str, context: &str) {
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        let tag_and_after = &rest[open + 1..];
        let close = tag_and_after.find('>').unwrap_or_else(|| panic!("unclosed tag in {html:?} ({context})"));
        let tag = &tag_and_after[..close];
        rest = &tag_and_after[close + 1..];
        let tag = tag.trim_start_matches('/').trim_end_matches('/');
        let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        assert!(ALLOWED_TAGS.contains(&name.as_str()), "tag <{tag}> in {html:?} ({context})");
        // Attributes are name="value" with escaped values, so splitting on `"` is exact.
        let attrs = &tag[name.len()..];
        let parts: Vec<&str> = attrs.split('"').collect();
        for pair in parts.chunks(2) {
            let attr = pair[0].trim().trim_end_matches('=');
            if attr.is_empty() {
                continue;
            }
            let value = pair.get(1).copied().unwrap_or("");
            match attr {
                "href" => assert!(
                    allowed_link(value) || value.starts_with("/lessons/"),
                    "href {value:?} in {html:?} ({context})"
                ),
                "class" | "target" | "rel" | "data-n" | "type" | "disabled" | "checked" => {}
                // The seam mark: a fixed label, escaped like any attribute.
                "role" | "aria-label" | "title" if name == "span" => {}
                "start" if name == "ol" => assert!(value.bytes().all(|b| b.is_ascii_digit()), "start {value:?} ({context})"),
                "style" => assert!(value.starts_with("text-align:"), "style {value:?} ({context})"),
                other => panic!("attribute {other:?} in <{tag}> of {html:?} ({context})"),
            }
        }
    }
}

#[test]
fn renderer_output_is_always_inert_and_every_prefix_renders() {
    let sources = [Source {
        n: 1,
        lesson: "05-rate-limiting-en".into(),
        lesson_title: "Rate limiting".into(),
        section: "Token bucket".into(),
        anchor: "token-bucket".into(),
        snippet: String::new(),
    }];
    let labels = RenderLabels { copy: "Copy", seam: "continued here" };
    let seed = 0x5EED_0002;
    let mut rng = Rng::with_seed(seed);
    for i in 0..iterations() {
        let text = random_text(&mut rng, MARKDOWN_FRAGMENTS, 30);
        let html = answer_html(&text, &sources, labels);
        assert_inert(&html, &format!("seed {seed} #{i}: {text:?}"));
        // Streaming renders prefixes: one cut at a random character boundary.
        let cut = text.char_indices().nth(rng.usize(..text.chars().count().max(1))).map_or(0, |(b, _)| b);
        assert_inert(&answer_html(&text[..cut], &sources, labels), &format!("seed {seed} #{i} prefix"));
    }
}

/// The streamed render (finished blocks kept, the open one rendered again) is, at
/// every chunk of random Markdown cut at random places, exactly the full render.
#[test]
fn a_streamed_render_always_equals_the_full_render() {
    let sources = [Source {
        n: 1,
        lesson: "05-rate-limiting-en".into(),
        lesson_title: "Rate limiting".into(),
        section: "Token bucket".into(),
        anchor: "token-bucket".into(),
        snippet: String::new(),
    }];
    let labels = RenderLabels { copy: "Copy", seam: "continued here" };
    let seed = 0x5EED_0003;
    let mut rng = Rng::with_seed(seed);
    let mut finished_any = 0u64;
    for i in 0..iterations() / 4 {
        let text = random_text(&mut rng, MARKDOWN_FRAGMENTS, 40);
        let mut html = StreamingHtml::default();
        let mut end = 0;
        while end < text.len() {
            end = (end + rng.usize(1..12)).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            html.update(&text[..end], &sources, labels);
            let joined = format!("{}{}", html.done_html(), html.tail_html());
            assert_eq!(joined, answer_html(&text[..end], &sources, labels), "seed {seed} #{i} at {end}: {text:?}");
        }
        finished_any += u64::from(!html.done_html().is_empty());
    }
    // The generator reaches the interesting part: many answers had finished blocks.
    assert!(finished_any * 4 > iterations() / 4, "only {finished_any} streams kept finished blocks");
}

// The checker itself must catch what it is for.
#[test]
#[should_panic(expected = "attribute")]
fn the_checker_catches_an_event_handler() {
    assert_inert("<p onclick=\"steal()\">x</p>", "self-test");
}

#[test]
#[should_panic(expected = "href")]
fn the_checker_catches_a_script_link() {
    assert_inert("<a href=\"javascript:steal()\">x</a>", "self-test");
}

#[test]
#[should_panic(expected = "tag <script")]
fn the_checker_catches_a_script_tag() {
    assert_inert("<p>a</p><script>steal()</script>", "self-test");
}
