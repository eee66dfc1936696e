//! `GET /teach/export.csv?days=N`: the period's questions as a download. A plain route,
//! not a server function, so a link downloads it; anyone but a teacher gets `None` and
//! the router answers with the same 404 page as for any missing address.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{DEFAULT_DAYS, MAX_DAYS};
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
    let days = days_asked(query).clamp(1, MAX_DAYS);
    let since = (crate::db::now_ms() / DAY_MS - i64::from(days) + 1) * DAY_MS;
    let read_all = state.settings.teachers_read_all_conversations;
    let rows = match state.db.questions_for_export(since, read_all).await {
        Ok(rows) => rows,
        Err(error) => return Some(failed(error)),
    };
    let header_text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let lang = Lang::negotiate(header_text(header::COOKIE), header_text(header::ACCEPT_LANGUAGE));
    let csv = super::csv::to_csv(&rows, lang.t());
    let filename = format!("attachment; filename=\"questions-{}-days.csv\"", days);
    Some(
        (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, filename),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            csv,
        )
            .into_response(),
    )
}

/// `days=N` from the query; the default when absent or not a number.
fn days_asked(query: Option<&str>) -> u32 {
    query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("days="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_DAYS)
}

fn failed(error: crate::db::StoreError) -> Response {
    tracing::error!(%error, "cannot export the questions");
    (StatusCode::INTERNAL_SERVER_ERROR, "The export failed; try again.").into_response()
}
