//! `GET /c/{id}/export.md` (issue #14, part 4): a conversation as a Markdown file —
//! its title, each question and answer with its date (UTC), the teacher's replies, and
//! each answer's sources as links to the lesson pages. A plain route, not a server
//! function, so the page's link downloads it. Only the conversation's owner gets it;
//! anyone else gets `None`, and the router answers with the same 404 page as for a
//! conversation that does not exist.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ConversationView, MessageRole, MessageStatus};
use crate::auth::GuestSession;
use crate::i18n::{Lang, Strings};
use crate::protocol::ErrorCode;
use crate::state::AppState;
use crate::teacher::date_time_of_ms;

/// Messages read per query while gathering the whole conversation.
const PAGE: u32 = 500;

/// The download for the conversation's owner; `None` for anyone else or no such
/// conversation.
pub async fn export_markdown(state: &AppState, session: Option<&GuestSession>, id: &str, headers: &HeaderMap) -> Option<Response> {
    let user = match state.db.find_user(&session?.0).await {
        Ok(user) => user?,
        Err(error) => return Some(failed(error)),
    };
    let view = match whole_conversation(state, &user, id).await {
        Ok(view) => view?,
        Err(error) => return Some(failed(error)),
    };
    let header_text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let lang = Lang::negotiate(header_text(header::COOKIE), header_text(header::ACCEPT_LANGUAGE));
    let site = site_origin(headers, state.settings.secure_cookies);
    let markdown = to_markdown(&view, &site, lang.t());
    Some(
        (
            [
                (header::CONTENT_TYPE, "text/markdown; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, content_disposition(&view.title)),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            markdown,
        )
            .into_response(),
    )
}

/// Every message of the user's conversation, oldest first; `None` when it is not theirs.
async fn whole_conversation(
    state: &AppState,
    user: &str,
    id: &str,
) -> Result<Option<ConversationView>, crate::db::StoreError> {
    let Some(mut view) = state.db.load_conversation(user, id, None, PAGE).await? else {
        return Ok(None);
    };
    while let Some(before) = view.older_cursor {
        let Some(older) = state.db.load_conversation(user, id, Some(before), PAGE).await? else {
            return Ok(None);
        };
        let mut messages = older.messages;
        messages.append(&mut view.messages);
        view.messages = messages;
        view.older_cursor = older.older_cursor;
    }
    Ok(Some(view))
}

/// `https://host` as the browser reached us, so the file's links work outside the
/// page; empty (links relative to the site) without a `Host`.
fn site_origin(headers: &HeaderMap, secure: bool) -> String {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return String::new();
    };
    let scheme = if secure || crate::net::behind_https(headers) { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// The document: `# title`, then a `##` heading per message (who and when), its text,
/// a note for an answer that did not finish, and its sources as a numbered list of
/// links.
pub fn to_markdown(view: &ConversationView, site: &str, t: &Strings) -> String {
    let mut out = format!("# {}\n\n_{}_\n", one_line(&view.title), t.export_exported);
    for message in &view.messages {
        let who = match message.role {
            MessageRole::User => t.export_question,
            MessageRole::Assistant => t.export_answer,
            MessageRole::Teacher => t.teacher,
        };
        out.push_str(&format!("\n## {who} · {}\n\n", date_time_of_ms(message.created_at)));
        let text = message.content.trim_end();
        if !text.is_empty() {
            out.push_str(text);
            out.push('\n');
        }
        let note = match message.status {
            MessageStatus::Complete => None,
            MessageStatus::Stopped => Some(t.stopped_note),
            MessageStatus::Interrupted => Some(t.interrupted_note),
            MessageStatus::Streaming => Some(t.still_streaming_note),
            MessageStatus::Error => Some(t.error_text(message.error_code.unwrap_or(ErrorCode::Internal))),
        };
        if let Some(note) = note {
            out.push_str(&format!("\n_{note}_\n"));
        }
        if !message.sources.is_empty() {
            out.push_str(&format!("\n{}:\n\n", t.export_sources));
            for source in &message.sources {
                out.push_str(&format!(
                    "{}. [{} — {}]({site}{})\n",
                    source.n,
                    one_line(&source.lesson_title),
                    one_line(&source.section),
                    source.href()
                ));
            }
        }
    }
    out
}

/// A title or label on one line (a newline would end a heading or a link).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `attachment` with an ASCII name from the title (for every browser) and the title
/// itself, percent-encoded (RFC 6266 `filename*`), for those that read it.
fn content_disposition(title: &str) -> String {
    let mut ascii = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            ascii.push(c.to_ascii_lowercase());
        } else if !ascii.ends_with('-') && !ascii.is_empty() {
            ascii.push('-');
        }
        if ascii.len() >= 60 {
            break;
        }
    }
    let ascii = ascii.trim_end_matches('-');
    let ascii = if ascii.is_empty() { "conversation" } else { ascii };
    let encoded: String = one_line(title)
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    if encoded.is_empty() {
        format!("attachment; filename=\"{ascii}.md\"")
    } else {
        format!("attachment; filename=\"{ascii}.md\"; filename*=UTF-8''{encoded}.md")
    }
}

fn failed(error: crate::db::StoreError) -> Response {
    tracing::error!(%error, "cannot export a conversation");
    (StatusCode::INTERNAL_SERVER_ERROR, "The download failed; try again.").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_name_is_ascii_with_the_title_beside_it() {
        assert_eq!(
            content_disposition("What is SSE?"),
            "attachment; filename=\"what-is-sse.md\"; filename*=UTF-8''What%20is%20SSE%3F.md"
        );
        assert_eq!(
            content_disposition("Что такое SSE"),
            "attachment; filename=\"sse.md\"; filename*=UTF-8''%D0%A7%D1%82%D0%BE%20%D1%82%D0%B0%D0%BA%D0%BE%D0%B5%20SSE.md"
        );
        assert_eq!(content_disposition("«»"), "attachment; filename=\"conversation.md\"; filename*=UTF-8''%C2%AB%C2%BB.md");
    }
}
