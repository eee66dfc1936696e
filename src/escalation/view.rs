//! "Ask my teacher" on the page: the student's form under an answer and where the
//! request stands; the teacher's queue (`/teach/queue`) and the read-only conversation
//! with its reply form (`/teach/c/{id}`). Forms work without JavaScript too.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::api::{teach_conversation, teach_queue, AskTeacher as AskTeacherFn, TeachReply, TeachResolve};
use super::{queue_page_from_query, Queue, Request, TeacherView, MAX_NOTE_CHARS, MAX_REPLY_CHARS};
use crate::chat::state::ChatUi;
use crate::faq::view::EndorseForm;
use crate::history::{MessageRole, MessageStatus, StoredMessage, TeacherRequest};
use crate::i18n::Lang;
use crate::lessons::view::{SourceList, StoredAnswerText};
use crate::not_found::NotFound;
use crate::protocol::ErrorCode;
use crate::teacher::view::LocalTime;

/// Under a finished answer: "Ask my teacher" with an optional note, or where the
/// request about this answer stands. A reply arriving on the socket turns it to
/// "answered" without a reload.
#[component]
pub fn AskTeacher(message_id: String, initial: Option<TeacherRequest>) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let action = ServerAction::<AskTeacherFn>::new();
    let status = RwSignal::new(initial);
    Effect::new(move |_| {
        if let Some(Ok(sent)) = action.value().get() {
            status.set(Some(sent));
        }
    });
    let replied_live = {
        let ui = use_context::<ChatUi>();
        let id = message_id.clone();
        move || ui.is_some_and(|ui| ui.teacher_replied.with(|ids| ids.contains(&id)))
    };
    let shown = move || if replied_live() { Some(TeacherRequest::Answered) } else { status.get() };
    let id = StoredValue::new(message_id);
    view! {
        {move || match shown() {
            Some(request) => {
                let text = match request {
                    TeacherRequest::Open => t().ask_teacher_sent,
                    TeacherRequest::Answered => t().ask_teacher_answered,
                    TeacherRequest::Resolved => t().ask_teacher_resolved,
                };
                view! { <p class="teacher-request" data-status=request.as_str() role="status">{text}</p> }.into_any()
            }
            None => view! {
                <details class="ask-teacher">
                    <summary>{move || t().ask_teacher}</summary>
                    <ActionForm action=action attr:class="ask-teacher-form">
                        <input type="hidden" name="message_id" value=id.get_value() />
                        <textarea
                            name="note"
                            maxlength=MAX_NOTE_CHARS.to_string()
                            placeholder=move || t().ask_teacher_note
                            aria-label=move || t().ask_teacher_note
                        ></textarea>
                        <button type="submit" class="ask-teacher-send">{move || t().ask_teacher_send}</button>
                    </ActionForm>
                    {move || {
                        action.value().get().and_then(Result::err).map(|e| {
                            view! { <p class="form-error" role="alert">{e.text(lang.get())}</p> }
                        })
                    }}
                </details>
            }
            .into_any(),
        }}
    }
}

/// `/teach/queue`: the students' requests, open ones first and oldest first, a page
/// of [`super::QUEUE_PAGE`] at a time (`?page=N`).
#[component]
pub fn QueuePage() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let query = use_query_map();
    let page = move || queue_page_from_query(query.read().get("page").as_deref());
    let queue = Resource::new(page, |page| teach_queue(Some(page)));
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                match queue.await {
                    Ok(queue) => view! {
                        <div class="lesson-page teach-page">
                            <nav class="lesson-nav">
                                <a href="/teach">{move || t().teach_title}</a>
                            </nav>
                            <h1>{move || t().queue_title}</h1>
                            <p class="teach-summary queue-counts">
                                {move || t().queue_open} ": " <span class="queue-open">{queue.open}</span> " · "
                                {move || t().queue_answered} ": " <span class="queue-answered">{queue.answered}</span> " · "
                                {move || t().queue_resolved} ": " <span class="queue-resolved">{queue.resolved}</span>
                            </p>
                            <QueueList queue />
                        </div>
                    }
                    .into_any(),
                    Err(error) if error.code == ErrorCode::NotFound => view! { <NotFound /> }.into_any(),
                    Err(error) => view! { <p class="history-error" role="alert">{error.text(lang.get_untracked())}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// A page of requests, and the links to the pages beside it.
#[component]
fn QueueList(queue: Queue) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let page = queue.page.max(1);
    let first = queue.first_index();
    let shown = queue.requests.len() as i64;
    // The counts are read apart from the page: a request closed in between may have
    // moved; never "101–131 of 130".
    let total = queue.total().max(first + shown);
    let paged = page > 1 || queue.has_next();
    let range = move || {
        t().queue_shown
            .replace("{from}", &(first + 1).to_string())
            .replace("{to}", &(first + shown).to_string())
            .replace("{total}", &total.to_string())
    };
    let pages = paged.then(|| {
        // From past the end, straight to the last page.
        let previous_page = (page - 1).min(queue.last_page());
        let previous = (page > 1).then(|| {
            view! { <a href=format!("/teach/queue?page={previous_page}") rel="prev" class="queue-previous">{move || t().queue_previous_page}</a> }
        });
        let next = queue.has_next().then(|| {
            view! { <a href=format!("/teach/queue?page={}", page + 1) rel="next" class="queue-next">{move || t().queue_next_page}</a> }
        });
        view! {
            <nav class="queue-pages">
                {(shown > 0).then(|| view! { <span class="queue-shown">{range}</span> })}
                " " {previous} " " {next}
            </nav>
        }
    });
    let list = if queue.requests.is_empty() {
        let empty = move || if page > 1 { t().queue_page_empty } else { t().queue_empty };
        view! { <p class="queue-empty">{empty}</p> }.into_any()
    } else {
        view! {
            <ol class="queue" start=(first + 1).to_string()>
                {queue.requests.into_iter().map(|request| view! { <QueueRow request /> }).collect_view()}
            </ol>
        }
        .into_any()
    };
    view! { {list} {pages} }
}

#[component]
fn QueueRow(request: Request) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let student = request.student.clone();
    let href = format!("/teach/c/{}#request-{}", request.conversation_id, request.id);
    view! {
        <li class="queue-item" data-status=request.status.as_str() data-request-id=request.id.clone()>
            <a href=href class="queue-open-link">
                <span class="queue-student">{move || student.label(t())}</span>
                " · "
                <span class="queue-title">{request.title}</span>
            </a>
            <span class="queue-when"><LocalTime unix_ms=request.created_at /></span>
            <span class="queue-state">{move || request_state_label(t(), request.status)}</span>
            <p class="queue-question">{request.question}</p>
            {(!request.note.is_empty()).then(|| view! { <p class="queue-note">{request.note}</p> })}
        </li>
    }
}

fn request_state_label(t: &crate::i18n::Strings, status: TeacherRequest) -> &'static str {
    match status {
        TeacherRequest::Open => t.queue_state_open,
        TeacherRequest::Answered => t.queue_answered,
        TeacherRequest::Resolved => t.queue_resolved,
    }
}

/// `/teach/c/{id}`: a conversation its student shared (or any, if the course's setting
/// says so), read-only, with a reply form for each request about it.
#[component]
pub fn TeacherConversationPage() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let reply = ServerAction::<TeachReply>::new();
    let resolve = ServerAction::<TeachResolve>::new();
    let conversation = Resource::new(
        move || (id(), reply.version().get(), resolve.version().get()),
        |(id, _, _)| teach_conversation(id),
    );
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                match conversation.await {
                    Ok(view) => view! { <TeacherConversation view reply resolve /> }.into_any(),
                    Err(error) if error.code == ErrorCode::NotFound => view! { <NotFound /> }.into_any(),
                    Err(error) => view! { <p class="history-error" role="alert">{error.text(lang.get_untracked())}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn TeacherConversation(
    view: TeacherView,
    reply: ServerAction<TeachReply>,
    resolve: ServerAction<TeachResolve>,
) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let student = view.student.clone();
    let requests = view
        .requests
        .into_iter()
        .map(|request| {
            let open = request.status == TeacherRequest::Open;
            let request_id = request.id.clone();
            let resolve_form = open.then(|| {
                let request_id = request_id.clone();
                view! {
                    <ActionForm action=resolve attr:class="resolve-form">
                        <input type="hidden" name="request_id" value=request_id />
                        <button type="submit" class="resolve">{move || t().queue_resolve}</button>
                    </ActionForm>
                }
            });
            view! {
                <section class="teacher-request-card" id=format!("request-{}", request.id) data-status=request.status.as_str()>
                    <h2>{move || t().queue_request} " · " <LocalTime unix_ms=request.created_at /> " · " {move || request_state_label(t(), request.status)}</h2>
                    <p class="queue-question">{request.question.clone()}</p>
                    {(!request.note.is_empty()).then(|| view! { <p class="queue-note">{request.note.clone()}</p> })}
                    <ActionForm action=reply attr:class="reply-form">
                        <input type="hidden" name="request_id" value=request_id />
                        <textarea
                            name="text"
                            required
                            maxlength=MAX_REPLY_CHARS.to_string()
                            placeholder=move || t().queue_reply_hint
                            aria-label=move || t().queue_reply_hint
                        ></textarea>
                        <button type="submit" class="send reply-send">{move || t().queue_reply}</button>
                    </ActionForm>
                    {resolve_form}
                </section>
            }
        })
        .collect_view();
    view! {
        <div class="lesson-page teach-page teacher-conversation">
            <nav class="lesson-nav">
                <a href="/teach">{move || t().teach_title}</a> " · " <a href="/teach/queue">{move || t().queue_title}</a>
            </nav>
            <h1>{view.title}</h1>
            <p class="teach-summary conversation-student">{move || student.label(t())}</p>
            <div class="messages teacher-read">
                {
                    // Each answer can be endorsed for the FAQ, with the question it answered:
                    // its parent, not the question above it on the page (after a
                    // regenerate or an edit that may be another's). A question not on the
                    // page leaves the field empty, and the server takes the answer's own.
                    let questions: std::collections::HashMap<String, String> = view
                        .messages
                        .iter()
                        .filter(|message| message.role == MessageRole::User)
                        .map(|message| (message.id.clone(), message.content.clone()))
                        .collect();
                    view.messages
                        .into_iter()
                        .zip(view.parents)
                        .map(|(message, parent)| {
                            let asked = (message.role != MessageRole::User)
                                .then(|| questions.get(&parent).cloned().unwrap_or_default());
                            view! { <ReadOnlyMessage message asked /> }
                        })
                        .collect_view()
                }
            </div>
            {move || {
                reply.value().get().and_then(Result::err).or_else(|| resolve.value().get().and_then(Result::err)).map(|e| {
                    view! { <p class="form-error" role="alert">{e.text(lang.get())}</p> }
                })
            }}
            {requests}
        </div>
    }
}

/// A message as the teacher reads it: who wrote it, the text, the sources, the rating.
#[component]
fn ReadOnlyMessage(message: StoredMessage, asked: Option<String>) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let role = message.role;
    let class = match role {
        MessageRole::User => "msg msg-student msg-stored",
        MessageRole::Assistant => "msg msg-tutor msg-stored",
        MessageRole::Teacher => "msg msg-teacher msg-stored",
    };
    let who = move || match role {
        MessageRole::User => t().teach_student,
        MessageRole::Assistant => t().tutor,
        MessageRole::Teacher => t().teacher,
    };
    let rating = message.feedback.map(|feedback| {
        let reasons = move || feedback.reasons.iter().map(|r| r.label(t())).collect::<Vec<_>>().join(", ");
        let mark = match feedback.rating {
            crate::feedback::Rating::Up => "👍",
            crate::feedback::Rating::Down => "👎",
        };
        view! { <p class="msg-rating" data-rating=feedback.rating.as_str()>{mark} " " {reasons} " " {feedback.comment}</p> }
    });
    let endorsable = role == MessageRole::Assistant && message.status == MessageStatus::Complete;
    let endorse = endorsable.then(|| {
        view! { <EndorseForm message_id=message.id.clone() question=asked.unwrap_or_default() answer=message.content.clone() /> }
    });
    view! {
        <article class=class data-status=message.status.as_str() data-message-id=message.id.clone()>
            <div class="msg-who">{who}</div>
            <div class="msg-body">
                {match role {
                    MessageRole::User => view! { <span class="msg-text">{message.content}</span> }.into_any(),
                    _ => view! { <StoredAnswerText text=message.content sources=message.sources.clone() /> }.into_any(),
                }}
            </div>
            <SourceList sources=Signal::stored(message.sources) />
            {rating}
            {endorse}
        </article>
    }
}
