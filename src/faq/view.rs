//! The FAQ's components: the public `/faq` page (searchable with a GET form, so it
//! works without JavaScript), the "answered by your teacher" badge under an answer,
//! the teacher's `EndorseForm` (placed under an answer by the page that shows a
//! student's conversation) and the endorsed entries' panel on `/teach`.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use super::api::{faq_list, teach_faq, EditEndorsement, Endorse, WithdrawEndorsement};
use super::{anchor, href, FaqEntry, MAX_FAQ_ANSWER_CHARS, MAX_FAQ_QUESTION_CHARS};
use crate::i18n::Lang;
use crate::lessons::view::{SourceList, StoredAnswerText};

/// `/faq`: the course's endorsed questions and answers; `?q=` searches them.
#[component]
pub fn FaqPage() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let query = use_query_map();
    let q = Memo::new(move |_| query.read().get("q").unwrap_or_default());
    let entries = Resource::new(move || q.get(), faq_list);
    view! {
        <div class="lesson-page faq-page">
            <nav class="lesson-nav">
                <a href="/">{move || t().back_to_chat}</a>
                " · "
                <a href="/lessons">{move || t().lessons}</a>
            </nav>
            <h1>{move || t().faq_title}</h1>
            <p class="account-hint">{move || t().faq_hint}</p>
            <form class="faq-search" method="get" action="/faq" role="search">
                <input type="search" name="q" prop:value=move || q.get() aria-label=move || t().faq_search_label />
                <button type="submit" class="send">{move || t().faq_search}</button>
            </form>
            <Suspense>
                {move || Suspend::new(async move {
                    let entries = entries.await.unwrap_or_default();
                    let searching = !q.get_untracked().trim().is_empty();
                    if entries.is_empty() {
                        let empty = move || if searching { t().faq_no_match } else { t().faq_empty };
                        return view! { <p class="faq-empty">{empty}</p> }.into_any();
                    }
                    view! {
                        <div class="faq-entries">
                            {entries.into_iter().map(|entry| view! { <FaqEntryView entry /> }).collect_view()}
                        </div>
                    }
                    .into_any()
                })}
            </Suspense>
        </div>
    }
}

#[component]
fn FaqEntryView(entry: FaqEntry) -> impl IntoView {
    view! {
        <article class="faq-entry" id=anchor(&entry.id)>
            <h2 class="faq-question"><a href=href(&entry.id)>{entry.question}</a></h2>
            <StoredAnswerText text=entry.answer sources=entry.sources.clone() />
            <SourceList sources=Signal::stored(entry.sources) />
        </article>
    }
}

/// Under an answer that is a FAQ entry: "answered by your teacher", linking to it.
#[component]
pub fn FaqBadge(#[prop(into)] faq_id: Signal<Option<String>>) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    move || {
        faq_id.get().map(|id| {
            view! {
                <p class="faq-badge" data-faq-id=id>
                    <a href=href(&id)>{move || lang.get().t().faq_badge}</a>
                </p>
            }
        })
    }
}

/// The teacher's form to endorse one answer for the FAQ, with the question's wording
/// and the answer's text to edit first. For the page showing a student's conversation.
#[component]
pub fn EndorseForm(message_id: String, question: String, answer: String) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let endorse = ServerAction::<Endorse>::new();
    view! {
        <details class="endorse">
            <summary>{move || t().endorse_title}</summary>
            <ActionForm action=endorse attr:class="endorse-form">
                <input type="hidden" name="message_id" value=message_id />
                <WordingFields question answer answer_rows=8 />
                <button type="submit" class="send">{move || t().endorse_save}</button>
            </ActionForm>
            {move || {
                endorse.value().get().map(|result| match result {
                    Ok(entry) => view! {
                        <p class="form-done" role="status"><a href=href(&entry.id)>{move || t().endorsed_done}</a></p>
                    }
                    .into_any(),
                    Err(e) => view! { <p class="form-error" role="alert">{e.text(lang.get())}</p> }.into_any(),
                })
            }}
        </details>
    }
}

/// An entry's question and answer as the teacher words them (endorsing, editing).
#[component]
fn WordingFields(question: String, answer: String, answer_rows: u32) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    view! {
        <label>
            {move || t().endorse_question}
            <textarea name="question" rows="2" maxlength=MAX_FAQ_QUESTION_CHARS.to_string()>{question}</textarea>
        </label>
        <label>
            {move || t().endorse_answer}
            <textarea name="answer" rows=answer_rows.to_string() maxlength=MAX_FAQ_ANSWER_CHARS.to_string()>{answer}</textarea>
        </label>
    }
}

/// On `/teach`: the endorsed entries, each with its wording to edit and a withdraw
/// button.
#[component]
pub fn EndorsementsPanel() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let edit = ServerAction::<EditEndorsement>::new();
    let withdraw = ServerAction::<WithdrawEndorsement>::new();
    let entries = Resource::new(
        move || (edit.version().get(), withdraw.version().get()),
        |_| teach_faq(),
    );
    let failed = move || {
        let error = edit
            .value()
            .get()
            .and_then(Result::err)
            .or_else(|| withdraw.value().get().and_then(Result::err));
        error.map(|e| view! { <p class="form-error" role="alert">{e.text(lang.get())}</p> })
    };
    view! {
        <section class="teach-faq" aria-labelledby="faq-panel-title">
            <h2 id="faq-panel-title">{move || t().endorsements_title}</h2>
            <p class="account-hint">{move || t().endorsements_hint} " " <a href="/faq">"/faq"</a></p>
            {failed}
            <Suspense>
                {move || Suspend::new(async move {
                    let entries = entries.await.unwrap_or_default();
                    if entries.is_empty() {
                        return view! { <p class="faq-empty">{move || t().faq_empty}</p> }.into_any();
                    }
                    entries
                        .into_iter()
                        .map(|entry| {
                            let FaqEntry { id, question, answer, endorsed_by, updated_at, .. } = entry;
                            let when = crate::teacher::date_of_ms(updated_at);
                            let (edit_id, withdraw_id) = (id.clone(), id.clone());
                            view! {
                                <div class="endorsement" data-faq-id=id>
                                    <ActionForm action=edit attr:class="endorsement-form">
                                        <input type="hidden" name="id" value=edit_id />
                                        <WordingFields question answer answer_rows=6 />
                                        <p class="change-who">{move || t().endorsed_by} " " {endorsed_by} " · " {when}</p>
                                        <button type="submit" class="send">{move || t().instructions_save}</button>
                                    </ActionForm>
                                    <ActionForm action=withdraw attr:class="withdraw-form">
                                        <input type="hidden" name="id" value=withdraw_id />
                                        <button type="submit" class="stop">{move || t().endorsement_withdraw}</button>
                                    </ActionForm>
                                </div>
                            }
                        })
                        .collect_view()
                        .into_any()
                })}
            </Suspense>
        </section>
    }
}
