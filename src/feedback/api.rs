//! The rating server function. It takes the fields of a plain HTML form (the page's
//! form works without JavaScript): `rating` is `up`, `down` or `none` (withdraw), each
//! reason a checkbox, and an optional comment.

use leptos::prelude::*;

use super::Feedback;
use crate::error::AppError;

#[allow(clippy::too_many_arguments)]
#[server(endpoint = "feedback/rate")]
pub async fn rate_answer(
    message_id: String,
    rating: String,
    wrong: Option<String>,
    unclear: Option<String>,
    off_topic: Option<String>,
    too_long: Option<String>,
    comment: Option<String>,
    share: Option<String>,
) -> Result<Option<Feedback>, AppError> {
    use super::{Rating, Reason, MAX_COMMENT_CHARS};
    use crate::protocol::ErrorCode;
    crate::auth::check_same_origin()?;
    let feedback = match rating.as_str() {
        "none" => None,
        other => {
            let rating = Rating::parse(other)
                .ok_or_else(|| AppError::new(ErrorCode::BadRequest, "rating is up, down or none"))?;
            let comment = comment.unwrap_or_default().trim().to_string();
            if comment.chars().count() > MAX_COMMENT_CHARS {
                return Err(AppError::code(ErrorCode::CommentTooLong));
            }
            // Reasons and a comment explain a 👎; a 👍 carries neither.
            let (reasons, comment) = match rating {
                Rating::Up => (Vec::new(), String::new()),
                Rating::Down => {
                    let ticked = [(Reason::Wrong, wrong), (Reason::Unclear, unclear), (Reason::OffTopic, off_topic), (Reason::TooLong, too_long)];
                    (ticked.into_iter().filter(|(_, on)| on.is_some()).map(|(r, _)| r).collect(), comment)
                }
            };
            Some(Feedback { rating, reasons, comment, share: false }.shared(share.is_some()))
        }
    };
    let state = crate::state::app_state()?;
    let not_found = || AppError::new(ErrorCode::NotFound, "No such answer.");
    let session = crate::auth::current_session().ok_or_else(not_found)?;
    let user = state.db.find_user(&session.0).await?.ok_or_else(not_found)?;
    let conversation = state
        .db
        .rate_answer(&user, &message_id, feedback.as_ref())
        .await?
        .ok_or_else(not_found)?;
    // A plain form (no JavaScript) goes back to the conversation, now showing the rating.
    if crate::auth::from_plain_form() {
        leptos_axum::redirect(&format!("/c/{conversation}#{message_id}"));
    }
    Ok(feedback)
}
