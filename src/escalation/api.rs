//! The server functions of "ask my teacher": the student's `ask_teacher` (a plain form
//! too), and the teacher's queue, read, reply and resolve — each teacher function
//! starting with the role check, so anyone else gets `not_found`.

use leptos::prelude::*;

use super::{Queue, TeacherView};
use crate::error::AppError;
use crate::history::TeacherRequest;

/// Sends the answer's conversation to the teacher with an optional note; returns
/// where the request stands (asking twice about one answer changes nothing).
#[server(endpoint = "ask_teacher")]
pub async fn ask_teacher(message_id: String, note: Option<String>) -> Result<TeacherRequest, AppError> {
    use super::MAX_NOTE_CHARS;
    use crate::protocol::ErrorCode;
    crate::auth::check_same_origin()?;
    let note = note.unwrap_or_default().trim().to_string();
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(AppError::code(ErrorCode::CommentTooLong));
    }
    let state = crate::state::app_state()?;
    let not_found = || AppError::new(ErrorCode::NotFound, "No such answer.");
    let session = crate::auth::current_session().ok_or_else(not_found)?;
    let user = state.db.find_user(&session.0).await?.ok_or_else(not_found)?;
    let (conversation, status) = state.db.ask_teacher(&user, &message_id, &note).await?.ok_or_else(not_found)?;
    tracing::info!(message_id = %message_id, note_chars = note.chars().count(), "a student asked the teacher");
    if crate::auth::from_plain_form() {
        leptos_axum::redirect(&format!("/c/{conversation}#{message_id}"));
    }
    Ok(status)
}

/// A page of the queue (from 1; absent: the first): open requests first, oldest
/// first, then the latest closed ones.
#[server(endpoint = "teach/queue")]
pub async fn teach_queue(page: Option<u32>) -> Result<Queue, AppError> {
    let teacher = crate::teacher::api::ssr::require_teacher().await?;
    Ok(teacher.state.db.teacher_queue(page.unwrap_or(1).max(1), super::QUEUE_PAGE).await?)
}

/// A conversation, read-only, where the privacy rule lets the teacher read it.
#[server(endpoint = "teach/conversation")]
pub async fn teach_conversation(id: String) -> Result<TeacherView, AppError> {
    use crate::protocol::ErrorCode;
    let teacher = crate::teacher::api::ssr::require_teacher().await?;
    let read_all = teacher.state.settings.teachers_read_all_conversations;
    teacher
        .state
        .db
        .conversation_for_teacher(&id, read_all)
        .await?
        .ok_or_else(|| AppError::new(ErrorCode::NotFound, "No conversation the teacher may read."))
}

/// Replies to a request (Markdown): stored in the student's conversation and sent to
/// the student's open sockets on this instance.
#[server(endpoint = "teach/reply")]
pub async fn teach_reply(request_id: String, text: String) -> Result<(), AppError> {
    use super::MAX_REPLY_CHARS;
    use crate::protocol::{ConversationChange, ErrorCode, ServerFrame};
    let teacher = crate::teacher::api::ssr::require_teacher().await?;
    let text = text.trim().to_string();
    if text.is_empty() || text.chars().count() > MAX_REPLY_CHARS {
        return Err(AppError::new(
            ErrorCode::InvalidReply,
            format!("A reply needs some text, and at most {MAX_REPLY_CHARS} characters."),
        ));
    }
    let reply = teacher
        .state
        .db
        .reply_to_request(&request_id, &teacher.username, &text)
        .await?
        .ok_or_else(|| AppError::new(ErrorCode::NotFound, "No such request."))?;
    let frame = ServerFrame::TeacherReply {
        conversation_id: reply.conversation_id.clone(),
        message_id: reply.message.id.clone(),
        asked_about: reply.asked_about,
        content: reply.message.content,
        created_at: reply.message.created_at,
    };
    // Every tab of the student, on every instance; a reply too long for the bus
    // reaches other instances' tabs as "this conversation changed" (they reload it).
    let changed = ServerFrame::ConversationChanged {
        conversation_id: reply.conversation_id.clone(),
        change: ConversationChange::TeacherReplied,
        title: None,
        message_id: None,
    };
    teacher.state.bus.publish_user(&reply.student, &frame, None, Some(&changed));
    tracing::info!(teacher = %teacher.username, request = %request_id, "the teacher replied");
    if crate::auth::from_plain_form() {
        leptos_axum::redirect(&format!("/teach/c/{}", reply.conversation_id));
    }
    Ok(())
}

/// Closes an open request without a reply.
#[server(endpoint = "teach/resolve")]
pub async fn teach_resolve(request_id: String) -> Result<(), AppError> {
    use crate::protocol::ErrorCode;
    let teacher = crate::teacher::api::ssr::require_teacher().await?;
    let Some(conversation_id) = teacher.state.db.resolve_request(&request_id, &teacher.username).await? else {
        return Err(AppError::new(ErrorCode::NotFound, "No open request."));
    };
    if crate::auth::from_plain_form() {
        leptos_axum::redirect(&format!("/teach/c/{conversation_id}"));
    }
    Ok(())
}
