//! Lessons are Markdown files. One walk over a lesson finds its title and sections
//! (what the index stores) and renders its page, so the anchor a citation links to
//! is always an id on the rendered page.

use std::collections::HashMap;

use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// A lesson as the index and the page see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lesson {
    pub slug: String,
    pub title: String,
    /// `en` or `ru`, from the file name (`…-en.md`, `…-ru.md`); `None` otherwise.
    pub lang: Option<String>,
    /// The lesson's parts, split at level-2 and level-3 headings. The first is the
    /// text under the title (its anchor is the title's) when there is any.
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub title: String,
    pub anchor: String,
    /// Plain text: Markdown marks removed, paragraphs on their own lines.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LessonError {
    #[error("the file name is not a lesson slug (use lowercase letters, digits and dashes)")]
    BadName,
    #[error("the lesson has no `# Title` line")]
    NoTitle,
    #[error("the lesson has no text")]
    Empty,
    #[error("the file is not UTF-8 text")]
    NotText,
    #[error("the file cannot be read: {0}")]
    Unreadable(String),
}

/// A slug is what a lesson's URL carries: only `[a-z0-9-]`, so it can never name a
/// path outside the lessons folder.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An anchor from a heading: lowercase letters and digits of any script, words joined
/// by `-` (so Russian headings keep readable anchors).
pub fn anchor_of(heading: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in heading.chars() {
        if c.is_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.extend(c.to_lowercase());
        } else {
            dash = true;
        }
    }
    if out.is_empty() {
        out.push_str("section");
    }
    out
}

/// Gives repeated headings distinct anchors: `intro`, `intro-2`, …
#[derive(Default)]
struct Anchors(HashMap<String, u32>);

impl Anchors {
    fn unique(&mut self, heading: &str) -> String {
        let base = anchor_of(heading);
        let seen = self.0.entry(base.clone()).or_insert(0);
        *seen += 1;
        if *seen == 1 {
            base
        } else {
            format!("{base}-{seen}")
        }
    }
}

fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH
}

/// Splits a lesson into its title and sections.
pub fn parse_lesson(slug: &str, source: &str) -> Result<Lesson, LessonError> {
    if !is_slug(slug) {
        return Err(LessonError::BadName);
    }
    let lang = ["en", "ru"]
        .into_iter()
        .find(|code| slug.ends_with(&format!("-{code}")))
        .map(str::to_string);
    let mut anchors = Anchors::default();
    let mut title: Option<String> = None;
    let mut sections: Vec<Section> = Vec::new();
    let mut heading: Option<(HeadingLevel, String)> = None;
    let mut current = Section {
        title: String::new(),
        anchor: String::new(),
        text: String::new(),
    };
    for event in Parser::new_ext(source, options()) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => heading = Some((level, String::new())),
            Event::End(TagEnd::Heading(_)) => {
                let Some((level, text)) = heading.take() else { continue };
                let text = text.trim().to_string();
                let anchor = anchors.unique(&text);
                if level == HeadingLevel::H1 && title.is_none() {
                    title = Some(text.clone());
                    current.title = text;
                    current.anchor = anchor;
                } else if level <= HeadingLevel::H3 {
                    push_section(&mut sections, std::mem::replace(&mut current, Section {
                        title: text,
                        anchor,
                        text: String::new(),
                    }));
                } else {
                    // Deeper headings stay inside their section, as a line of text.
                    current.text.push_str(&text);
                    current.text.push('\n');
                }
            }
            Event::Text(t) | Event::Code(t) => match heading.as_mut() {
                Some((_, h)) => h.push_str(&t),
                None => current.text.push_str(&t),
            },
            Event::SoftBreak | Event::HardBreak => match heading.as_mut() {
                Some((_, h)) => h.push(' '),
                None => current.text.push(' '),
            },
            Event::End(TagEnd::Paragraph | TagEnd::Item | TagEnd::CodeBlock | TagEnd::TableRow | TagEnd::TableHead) => {
                current.text.push('\n')
            }
            Event::End(TagEnd::TableCell) => current.text.push_str(" | "),
            _ => {}
        }
    }
    push_section(&mut sections, current);
    let title = title.ok_or(LessonError::NoTitle)?;
    if sections.is_empty() {
        return Err(LessonError::Empty);
    }
    Ok(Lesson {
        slug: slug.to_string(),
        title,
        lang,
        sections,
    })
}

fn push_section(sections: &mut Vec<Section>, mut section: Section) {
    section.text = section.text.trim().to_string();
    if !section.text.is_empty() && !section.anchor.is_empty() {
        sections.push(section);
    }
}

/// The lesson page's HTML. Headings get the same anchors as the index's sections;
/// raw HTML in the file is shown as text, and images become links, so a lesson
/// file can't put script or remote content in the page.
pub fn render_html(source: &str) -> String {
    let mut anchors = Anchors::default();
    let events: Vec<Event> = Parser::new_ext(source, options()).collect();
    // Headings' plain text, in order, to name their anchors.
    let mut names = Vec::new();
    let mut in_heading: Option<String> = None;
    for event in &events {
        match event {
            Event::Start(Tag::Heading { .. }) => in_heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = in_heading.as_mut() {
                    h.push_str(t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some(h) = in_heading.as_mut() {
                    h.push(' ');
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(h) = in_heading.take() {
                    names.push(anchors.unique(h.trim()));
                }
            }
            _ => {}
        }
    }
    let mut names = names.into_iter();
    let events = events.into_iter().map(|event| match event {
        Event::Start(Tag::Heading {
            level,
            classes,
            attrs,
            ..
        }) => Event::Start(Tag::Heading {
            level,
            id: names.next().map(CowStr::from),
            classes,
            attrs,
        }),
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Image { dest_url, .. }) => Event::Start(Tag::Link {
            link_type: pulldown_cmark::LinkType::Inline,
            dest_url: safe_url(dest_url),
            title: CowStr::from(""),
            id: CowStr::from(""),
        }),
        Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut html = String::with_capacity(source.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// Keeps http(s), mailto and in-site links; anything else (`javascript:`, `data:`)
/// becomes `#`.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let lower = url.trim().to_ascii_lowercase();
    let scheme_free = !lower.contains(':');
    if scheme_free
        || lower.starts_with("http://")
        || lower.starts_with("https://")
        || lower.starts_with("mailto:")
    {
        url
    } else {
        CowStr::from("#")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Streaming\n\nWhy stream at all.\n\n## The wire\n\nChunks with `data:` lines.\n\n```\n# not a heading\n```\n\n### Details\n\nMore.\n\n## The wire\n\nAgain.\n\n#### Deep\n\nStill in the second wire.\n";

    #[test]
    fn sections_split_at_headings_with_unique_anchors() {
        let lesson = parse_lesson("02-streaming-en", SAMPLE).unwrap();
        assert_eq!(lesson.title, "Streaming");
        assert_eq!(lesson.lang.as_deref(), Some("en"));
        let parts: Vec<(&str, &str)> = lesson
            .sections
            .iter()
            .map(|s| (s.title.as_str(), s.anchor.as_str()))
            .collect();
        assert_eq!(
            parts,
            [
                ("Streaming", "streaming"),
                ("The wire", "the-wire"),
                ("Details", "details"),
                ("The wire", "the-wire-2"),
            ]
        );
        // A `#` inside a code block is code, not a heading.
        assert!(lesson.sections[1].text.contains("# not a heading"));
        assert!(lesson.sections[1].text.contains("data:"));
        assert!(lesson.sections[3].text.contains("Deep") && lesson.sections[3].text.contains("second wire"));
    }

    #[test]
    fn page_ids_match_section_anchors() {
        let lesson = parse_lesson("x-en", SAMPLE).unwrap();
        let html = render_html(SAMPLE);
        for section in &lesson.sections {
            assert!(html.contains(&format!("id=\"{}\"", section.anchor)), "{}", section.anchor);
        }
    }

    #[test]
    fn russian_headings_keep_their_letters() {
        assert_eq!(anchor_of("Повторное подключение: зачем?"), "повторное-подключение-зачем");
        assert_eq!(anchor_of("HTTP vs WebSocket"), "http-vs-websocket");
        assert_eq!(anchor_of("!!!"), "section");
    }

    #[test]
    fn broken_lessons_say_why() {
        assert_eq!(parse_lesson("a-en", "no title here\n\ntext"), Err(LessonError::NoTitle));
        assert_eq!(parse_lesson("a-en", "# Only a title\n"), Err(LessonError::Empty));
        assert_eq!(parse_lesson("../etc", "# T\n\ntext"), Err(LessonError::BadName));
    }

    #[test]
    fn raw_html_and_script_links_are_inert() {
        let html = render_html("# T\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) ![i](https://e.example/i.png)\n");
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("javascript:"));
        assert!(!html.contains("<img"));
    }
}
