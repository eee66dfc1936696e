//! `GET /teach/export.csv?days=N`: the period's questions as a download. A plain route,
//! not a server function, so a link downloads it; anyone but a teacher gets `None` and
//! the router answers with the same 404 page as for any missing address.
//!
//! The file is sent as it is read, a page of rows at a time ([`EXPORT_PAGE_ROWS`]): a
//! long period of a large class needs no more memory than a short one, and no
//! database connection waits on a slow download between pages.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::csv::{csv_head, csv_lines, ExportCursor, QuestionRow, EXPORT_PAGE_ROWS};
use super::dashboard::period_from_query;
use crate::auth::GuestSession;
use crate::db::DAY_MS;
use crate::i18n::Lang;
use crate::state::AppState;

/// The CSV for a teacher; `None` for anyone else.
pub async fn export_csv(state: &AppState, session: Option<&GuestSession>, query: Option<&str>, headers: &HeaderMap) -> Option<Response> {
    let session = session?;
    let user = match state.db.account_of(&session.0).await {
        Ok(Some((user, _))) => user,
        Ok(None) => return None,
        Err(error) => return Some(failed(error)),
    };
    match state.db.is_teacher(&user).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(error) => return Some(failed(error)),
    }
    let days = period_from_query(days_asked(query));
    let since = (crate::db::now_ms() / DAY_MS - i64::from(days) + 1) * DAY_MS;
    let read_all = state.settings.teachers_read_all_conversations;
    // The first page before the headers: a database that cannot be read is a 500,
    // not a file that breaks off at once.
    let first = match state.db.questions_for_export(since, &None, EXPORT_PAGE_ROWS, read_all).await {
        Ok(rows) => rows,
        Err(error) => return Some(failed(error)),
    };
    let header_text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let lang = Lang::negotiate(header_text(header::COOKIE), header_text(header::ACCEPT_LANGUAGE));
    let filename = format!("attachment; filename=\"questions-{}-days.csv\"", days);
    let body = Body::from_stream(pages(state.clone(), since, read_all, lang, first));
    Some(
        (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, filename),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            body,
        )
            .into_response(),
    )
}

/// The file's text, a page at a time. A page that cannot be read ends the response
/// with an error, so the download fails instead of looking complete.
fn pages(
    state: AppState,
    since: i64,
    read_all: bool,
    lang: Lang,
    first: Vec<QuestionRow>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    async_stream::stream! {
        let mut text = csv_head(lang);
        let mut rows = first;
        loop {
            text.push_str(&csv_lines(&rows, lang));
            yield Ok(Bytes::from(std::mem::take(&mut text)));
            if rows.len() < EXPORT_PAGE_ROWS as usize {
                break;
            }
            let after: ExportCursor = rows.last().map(|row| (row.at, row.id.clone()));
            rows = match state.db.questions_for_export(since, &after, EXPORT_PAGE_ROWS, read_all).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::error!(%error, "cannot export the questions; the download breaks off");
                    yield Err(std::io::Error::other("the export failed"));
                    break;
                }
            };
        }
    }
}

/// The `days` value of the query, as given.
fn days_asked(query: Option<&str>) -> Option<&str> {
    query.unwrap_or("").split('&').find_map(|pair| pair.strip_prefix("days="))
}

fn failed(error: crate::db::StoreError) -> Response {
    tracing::error!(%error, "cannot export the questions");
    (StatusCode::INTERNAL_SERVER_ERROR, "The export failed; try again.").into_response()
}
