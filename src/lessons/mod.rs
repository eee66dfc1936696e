//! Answers grounded in the course's lessons: the sources an answer cites, how the
//! page turns `[n]` into links, the lesson pages, and (server only) the index and
//! the answers made of excerpts when no model is connected. See `docs/lessons.md`.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub mod excerpts;
#[cfg(feature = "ssr")]
pub mod index;
#[cfg(feature = "ssr")]
pub mod markdown;
pub mod view;

/// A lesson section an answer drew on. The answer cites it as `[n]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub n: u32,
    /// The lesson's slug: its page is `/lessons/{lesson}`.
    pub lesson: String,
    pub lesson_title: String,
    pub section: String,
    pub anchor: String,
    pub snippet: String,
}

impl Source {
    pub fn href(&self) -> String {
        format!("/lessons/{}#{}", self.lesson, self.anchor)
    }
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LessonSummary {
    pub slug: String,
    pub title: String,
    pub lang: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LessonPage {
    pub slug: String,
    pub title: String,
    pub lang: Option<String>,
    /// Rendered on the server from the lesson's Markdown (raw HTML shown as text).
    pub html: String,
}

#[server(endpoint = "lessons/list")]
pub async fn list_lessons() -> Result<Vec<LessonSummary>, ServerFnError> {
    let state = use_context::<crate::server::AppState>()
        .ok_or_else(|| ServerFnError::new("server state missing"))?;
    Ok(state
        .lessons
        .lessons()
        .into_iter()
        .map(|l| LessonSummary {
            slug: l.slug,
            title: l.title,
            lang: l.lang,
        })
        .collect())
}

#[server(endpoint = "lessons/get")]
pub async fn get_lesson(slug: String) -> Result<Option<LessonPage>, ServerFnError> {
    let state = use_context::<crate::server::AppState>()
        .ok_or_else(|| ServerFnError::new("server state missing"))?;
    // Only slugs the index knows name a file: no path from the URL reaches the disk.
    let Some(entry) = state.lessons.lesson(&slug) else {
        return Ok(None);
    };
    let path = state.settings.lessons_dir.join(&entry.file);
    match tokio::fs::read_to_string(&path).await {
        Ok(source) => Ok(Some(LessonPage {
            slug: entry.slug,
            title: entry.title,
            lang: entry.lang,
            html: markdown::render_html(&source),
        })),
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "lesson file unreadable");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
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
