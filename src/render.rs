//! Model answers as Markdown, rendered so that nothing in them can run: raw HTML is
//! shown as text, only http(s) and mailto links survive (opened with
//! `rel="noopener noreferrer"`), images are reduced to their alt text, and `[n]`
//! becomes a citation link only when `n` is one of the answer's sources.
//!
//! The same function renders on the server (history in the HTML) and in the browser.
//! While an answer streams, [`StreamingHtml`] keeps the HTML of its finished blocks
//! and renders only the open one again, so a construct split across chunks — a tag,
//! a link, a code fence — is still always read whole, and the result is always
//! exactly this function's render of the whole text.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

use crate::protocol::Source;

mod stream;
pub use stream::StreamingHtml;

/// Words the renderer puts in the page, in the page's language.
#[derive(Debug, Clone, Copy)]
pub struct RenderLabels {
    pub copy: &'static str,
    /// The tooltip of the mark where another instance continued an answer.
    pub seam: &'static str,
}

/// Put in an answer's text where another instance continued it (see [`with_seams`]);
/// rendered as a small mark. A private-use character, so no model writes it.
pub const SEAM_MARK: char = '\u{E000}';

/// The text with [`SEAM_MARK`] at each seam (byte offsets; those not on a character
/// boundary are left out). Marks already in the text are removed first.
pub fn with_seams(text: &str, seams: &[u32]) -> String {
    let mut out = String::with_capacity(text.len() + seams.len() * 3);
    let mut from = 0;
    let clean = |piece: &str, out: &mut String| out.extend(piece.chars().filter(|&c| c != SEAM_MARK));
    for &seam in seams {
        let at = seam as usize;
        if at <= from || at >= text.len() || !text.is_char_boundary(at) {
            continue;
        }
        clean(&text[from..at], &mut out);
        out.push(SEAM_MARK);
        from = at;
    }
    clean(&text[from..], &mut out);
    out
}

/// Turns seam marks in rendered HTML into the mark's element; a mark inside a tag
/// (a link's address) is dropped. Tags are the only `<`…`>` in the HTML: text and
/// attribute values are escaped.
fn render_seams(html: String, label: &str) -> String {
    if !html.contains(SEAM_MARK) {
        return html;
    }
    let mut element = String::from("<span class=\"seam\" role=\"img\" aria-label=\"");
    escape(label, &mut element);
    element.push_str("\" title=\"");
    escape(label, &mut element);
    element.push_str("\"></span>");
    let mut out = String::with_capacity(html.len() + 64);
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            SEAM_MARK if in_tag => continue,
            SEAM_MARK => {
                out.push_str(&element);
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A link target model output may use: http, https or mailto, nothing else (no
/// `javascript:`, `data:`, relative or protocol-relative URLs).
pub fn allowed_link(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:"))
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn cite_html(n: u32, href: &str, out: &mut String) {
    out.push_str("<a class=\"cite\" href=\"");
    escape(href, out);
    out.push_str(&format!(
        "\" target=\"_blank\" rel=\"noopener noreferrer\" data-n=\"{n}\">[{n}]</a>"
    ));
}

/// Renders one answer to HTML (see the module doc for what is allowed).
pub fn answer_html(text: &str, sources: &[Source], labels: RenderLabels) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    // Text arrives in pieces (`[` is often its own event); citations need it whole.
    let mut pending_text = String::new();
    let mut in_code_block = false;
    // Links we dropped (a forbidden scheme) still have an end tag to swallow.
    let mut links: Vec<bool> = Vec::new();
    let mut events: Vec<Event> = Vec::new();

    let flush = |pending: &mut String, events: &mut Vec<Event>, inside_link: bool| {
        if pending.is_empty() {
            return;
        }
        let mut html = String::new();
        if inside_link {
            escape(pending, &mut html);
        } else {
            for segment in split_citations(pending, sources) {
                match segment {
                    Segment::Text(t) => escape(&t, &mut html),
                    Segment::Cite { n, href } => cite_html(n, &href, &mut html),
                }
            }
        }
        pending.clear();
        events.push(Event::Html(html.into()));
    };

    for event in Parser::new_ext(text, options()) {
        match event {
            Event::Text(t) if !in_code_block => {
                pending_text.push_str(&t);
                continue;
            }
            _ => {}
        }
        let inside_link = links.iter().any(|kept| *kept);
        flush(&mut pending_text, &mut events, inside_link);
        match event {
            // Raw HTML from the model is text on the page.
            Event::Html(raw) | Event::InlineHtml(raw) => {
                let mut html = String::new();
                escape(&raw, &mut html);
                events.push(Event::Html(html.into()));
            }
            Event::Start(Tag::Link { dest_url, .. }) => {
                let kept = allowed_link(&dest_url) && !inside_link;
                links.push(kept);
                if kept {
                    let mut html = String::from("<a href=\"");
                    escape(dest_url.trim(), &mut html);
                    html.push_str("\" target=\"_blank\" rel=\"noopener noreferrer\">");
                    events.push(Event::Html(html.into()));
                }
            }
            Event::End(TagEnd::Link) => {
                if links.pop() == Some(true) {
                    events.push(Event::Html("</a>".into()));
                }
            }
            // No images from model output: their alt text stays, as text.
            Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => {}
            Event::Start(Tag::CodeBlock(kind)) => {
                in_code_block = true;
                let mut html = String::from("<div class=\"code-block\"><button type=\"button\" class=\"copy-code\">");
                escape(labels.copy, &mut html);
                html.push_str("</button><pre><code");
                if let CodeBlockKind::Fenced(info) = &kind {
                    if let Some(language) = info.split_whitespace().next() {
                        html.push_str(" class=\"language-");
                        escape(language, &mut html);
                        html.push('"');
                    }
                }
                html.push('>');
                events.push(Event::Html(html.into()));
            }
            Event::End(TagEnd::CodeBlock) => {
                in_code_block = false;
                // Ends with a newline as the parser's own blocks do, so a render cut
                // after a code block joins the next one exactly (see `stream`).
                events.push(Event::Html("</code></pre></div>\n".into()));
            }
            Event::Text(t) => {
                // Code block text: escaped, never a citation.
                let mut html = String::new();
                escape(&t, &mut html);
                events.push(Event::Html(html.into()));
            }
            other => events.push(other),
        }
    }
    let inside_link = links.iter().any(|kept| *kept);
    flush(&mut pending_text, &mut events, inside_link);
    pulldown_cmark::html::push_html(&mut out, events.into_iter());
    render_seams(out, labels.seam)
}

/// A piece of an answer's text: plain, or a citation of one of its sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Cite { n: u32, href: String },
}

/// Splits an answer into text and citations. Only a `[n]` whose `n` is one of this
/// answer's sources becomes a citation; any other `[n]` (a model's invention, a
/// footnote of its own) stays text. Safe on partial text while streaming: an
/// unclosed `[1` is text until its `]` arrives.
pub fn split_citations(text: &str, sources: &[Source]) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let cited = (1..=3)
            .contains(&digits)
            .then(|| after[digits..].starts_with(']'))
            .unwrap_or(false)
            .then(|| after[..digits].parse::<u32>().ok())
            .flatten()
            .and_then(|n| sources.iter().find(|s| s.n == n));
        match cited {
            Some(source) => {
                plain.push_str(&rest[..open]);
                if !plain.is_empty() {
                    out.push(Segment::Text(std::mem::take(&mut plain)));
                }
                out.push(Segment::Cite {
                    n: source.n,
                    href: source.href(),
                });
                rest = &after[digits + 1..];
            }
            None => {
                plain.push_str(&rest[..open + 1]);
                rest = after;
            }
        }
    }
    plain.push_str(rest);
    if !plain.is_empty() {
        out.push(Segment::Text(plain));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABELS: RenderLabels = RenderLabels { copy: "Copy", seam: "continued here" };

    #[test]
    fn a_seam_is_a_mark_in_text_and_nothing_inside_a_link_address() {
        let text = "Sockets **stay** open. [docs](https://example.org/a) end";
        let at = text.find("open").unwrap() as u32;
        let in_url = text.find("example").unwrap() as u32;
        let html = answer_html(&with_seams(text, &[at, in_url, 9_999]), &[], LABELS);
        assert_eq!(html.matches("class=\"seam\"").count(), 1, "{html}");
        assert!(html.contains("<strong>stay</strong> <span class=\"seam\" role=\"img\" aria-label=\"continued here\" title=\"continued here\"></span>open."), "{html}");
        assert!(html.contains("href=\"https://example.org/a\""), "the address is intact: {html}");
        // A mark the model wrote itself is not one.
        assert!(!answer_html(&with_seams("a\u{E000}b", &[]), &[], LABELS).contains("seam"));
    }

    fn source(n: u32) -> Source {
        Source {
            n,
            lesson: "05-rate-limiting-en".into(),
            lesson_title: "Rate limiting".into(),
            section: "Token bucket".into(),
            anchor: "token-bucket".into(),
            snippet: String::new(),
        }
    }

    fn render(text: &str) -> String {
        answer_html(text, &[source(1)], LABELS)
    }

    #[test]
    fn markdown_renders() {
        let html = render("## Steps\n\n1. **one**\n2. *two*\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```rust\nlet x = 1 < 2;\n```\n");
        assert!(html.contains("<h2>Steps</h2>"), "{html}");
        assert!(html.contains("<ol>") && html.contains("<strong>one</strong>") && html.contains("<em>two</em>"));
        assert!(html.contains("<table>") && html.contains("<td>2</td>"));
        assert!(html.contains("<button type=\"button\" class=\"copy-code\">Copy</button><pre><code class=\"language-rust\">let x = 1 &lt; 2;"), "{html}");
    }

    #[test]
    fn raw_html_is_text() {
        let html = render("<script>alert(1)</script>\n\nhi <img src=x onerror=alert(1)> <b>bold</b>");
        assert!(!html.contains("<script") && !html.contains("<img") && !html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{html}");
    }

    #[test]
    fn only_safe_links_survive_and_open_safely() {
        let html = render("[a](https://example.org/x?y=\"1\") [b](javascript:alert(1)) [c](JaVaScRiPt:alert(1)) [d](data:text/html,x) [e](/relative) [f](mailto:t@example.org) <https://auto.example>");
        assert!(html.contains("<a href=\"https://example.org/x?y=%221%22\" target=\"_blank\" rel=\"noopener noreferrer\">a</a>")
            || html.contains("<a href=\"https://example.org/x?y=&quot;1&quot;\" target=\"_blank\" rel=\"noopener noreferrer\">a</a>"), "{html}");
        assert!(!html.to_lowercase().contains("javascript:"), "{html}");
        assert!(!html.contains("data:text"), "{html}");
        assert!(!html.contains("href=\"/relative\""), "{html}");
        assert!(html.contains("href=\"mailto:t@example.org\""));
        assert!(html.contains("href=\"https://auto.example\""));
        // The text of a dropped link stays.
        assert!(html.contains(">b<") || html.contains(" b "), "{html}");
    }

    #[test]
    fn images_become_their_alt_text() {
        let html = render("![a diagram](https://example.org/x.png)");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("a diagram"));
    }

    #[test]
    fn citations_link_only_known_sources_and_never_inside_code_or_links() {
        let html = render("See [1] and [7].\n\n`[1]` and\n\n```\n[1]\n```\n\n[x [1]](https://example.org)");
        assert_eq!(html.matches("class=\"cite\"").count(), 1, "{html}");
        assert!(html.contains("<a class=\"cite\" href=\"/lessons/05-rate-limiting-en#token-bucket\""));
        assert!(html.contains("[7]"));
    }

    #[test]
    fn a_partial_answer_renders_what_it_has() {
        // Mid-stream: an unclosed fence, an unclosed tag, half a link.
        for partial in ["```js\nlet a", "<scr", "<script>al", "[link](java", "**bo", "[1", "| a |\n|--"] {
            let html = render(partial);
            assert!(!html.contains("<script"), "{partial}: {html}");
            assert!(!html.contains("href=\"java"), "{partial}: {html}");
        }
    }
}

/// `[n]` splitting on its own, apart from the Markdown around it.
#[cfg(test)]
mod citation_tests {
    use super::*;

    fn source(n: u32) -> Source {
        Source {
            n,
            lesson: "03-sse-en".into(),
            lesson_title: "SSE".into(),
            section: "Format".into(),
            anchor: "format".into(),
            snippet: String::new(),
        }
    }

    #[test]
    fn only_known_sources_become_citations() {
        let sources = [source(1), source(2)];
        let segments = split_citations("See [1] and [2][9], not [x] or [1234].", &sources);
        assert_eq!(
            segments,
            vec![
                Segment::Text("See ".into()),
                Segment::Cite { n: 1, href: "/lessons/03-sse-en#format".into() },
                Segment::Text(" and ".into()),
                Segment::Cite { n: 2, href: "/lessons/03-sse-en#format".into() },
                Segment::Text("[9], not [x] or [1234].".into()),
            ]
        );
    }

    #[test]
    fn partial_citations_stay_text_until_closed() {
        let sources = [source(1)];
        assert_eq!(split_citations("see [1", &sources), vec![Segment::Text("see [1".into())]);
        assert_eq!(split_citations("[[1]]", &sources).len(), 3);
        assert_eq!(split_citations("", &sources), vec![]);
        // Multi-byte text around brackets is kept intact.
        let text = "см. [1] — ок [";
        let joined: String = split_citations(text, &sources)
            .into_iter()
            .map(|s| match s {
                Segment::Text(t) => t,
                Segment::Cite { n, .. } => format!("[{n}]"),
            })
            .collect();
        assert_eq!(joined, text);
    }
}
