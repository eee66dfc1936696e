//! Answers grounded in the course's lessons: the lesson pages and their server
//! functions, and (server only) the index and the answers made of excerpts when no
//! model is connected. How `[n]` becomes a link is `crate::render`'s. See
//! `docs/lessons.md`.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[cfg(feature = "ssr")]
pub mod command;
#[cfg(feature = "ssr")]
pub mod excerpts;
#[cfg(feature = "ssr")]
pub mod index;
#[cfg(feature = "ssr")]
pub mod markdown;
pub mod view;

/// The wire type lives with the protocol; lessons name it here too.
pub use crate::protocol::Source;

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
pub async fn list_lessons() -> Result<Vec<LessonSummary>, AppError> {
    let state = crate::state::app_state()?;
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
pub async fn get_lesson(slug: String) -> Result<Option<LessonPage>, AppError> {
    let state = crate::state::app_state()?;
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
