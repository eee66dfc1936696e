//! The lesson pages and how an answer shows its sources.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use super::{get_lesson, list_lessons, Source};
use crate::i18n::Lang;
use crate::platform;
use crate::render::{RenderLabels, StreamingHtml};

/// The words the Markdown renderer puts in an answer, in the page's language.
fn render_labels(lang: Lang) -> RenderLabels {
    let strings = lang.t();
    RenderLabels { copy: strings.copy, seam: strings.continued_here }
}

/// A tutor's answer: Markdown rendered safely (see [`crate::render`]), with `[n]` as
/// citation links when `n` is one of its sources.
///
/// While the answer streams, the text changes on every chunk (thousands for a long
/// answer), but the page renders at most once per animation frame, and then only the
/// open block at the end ([`StreamingHtml`]): the finished blocks sit in an element
/// of their own that only grows, a block at a time, so the browser keeps their nodes
/// and does not parse or lay them out again each frame. The two parts together are
/// exactly [`crate::render::answer_html`] of the text, so the server's render and a
/// stored answer are the same HTML as the streamed one.
///
/// When `live` turns false (the answer ended) the text renders at once, not at the
/// next frame: the page never says "complete" over a text without its last words
/// (and a tab in the background, which gets no frames, shows the whole answer).
#[component]
pub fn AnswerText(
    #[prop(into)] text: Signal<String>,
    #[prop(into)] sources: Signal<Vec<Source>>,
    #[prop(into)] live: Signal<bool>,
) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    // Bumped once in each animation frame after the text changed.
    let frame = RwSignal::new(0u32);
    let frame_requested = StoredValue::new(false);
    Effect::new(move |_| {
        text.track();
        if !frame_requested.get_value() {
            frame_requested.set_value(true);
            request_animation_frame(move || {
                // The answer may have left the page before the frame came.
                frame_requested.try_set_value(false);
                frame.try_update(|n| *n = n.wrapping_add(1));
            });
        }
    });
    let cache = StoredValue::new(StreamingHtml::default());
    let parts = Memo::new(move |_| {
        frame.track();
        live.track();
        let labels = render_labels(lang.get());
        sources.with(|sources| {
            text.with_untracked(|text| cache.update_value(|html| html.update(text, sources, labels)))
        });
        cache.with_value(|html| (html.done_html().to_owned(), html.tail_html().to_owned()))
    });
    let done = Memo::new(move |_| parts.with(|(done, _)| done.clone()));
    let tail = Memo::new(move |_| parts.with(|(_, tail)| tail.clone()));
    // The finished element is rendered once with what was finished then; blocks that
    // finish later are appended to it, so the nodes already there are never replaced
    // (a selection in them survives). Only a text that changed before its end (a
    // resume's snapshot, a language switch) sets the element whole again.
    let initial_done = done.get_untracked();
    let done_element = NodeRef::<leptos::html::Div>::new();
    let shown = StoredValue::new(initial_done.clone());
    Effect::new(move |_| {
        let Some(element) = done_element.get() else { return };
        done.with(|html| {
            shown.update_value(|shown| {
                if html == shown {
                    return;
                }
                match html.strip_prefix(shown.as_str()) {
                    Some(blocks) if !shown.is_empty() => drop(element.insert_adjacent_html("beforeend", blocks)),
                    _ => element.set_inner_html(html),
                }
                shown.clone_from(html);
            })
        });
    });
    view! {
        <div class="msg-text md">
            <div class="md-done" node_ref=done_element inner_html=initial_done></div>
            <div class="md-tail" inner_html=move || tail.get()></div>
        </div>
    }
    .into_any()
}

/// An answer whose text never changes on this page (stored history, the FAQ, a
/// teacher's view): rendered whole, once per language, with no block cache. The same
/// two elements as [`AnswerText`], so stored and streamed answers share their styles;
/// a page of history renders each answer's Markdown once instead of three times.
#[component]
pub fn StoredAnswerText(text: String, sources: Vec<Source>) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let html = move || crate::render::answer_html(&text, &sources, render_labels(lang.get()));
    view! {
        <div class="msg-text md">
            <div class="md-done" inner_html=html></div>
            <div class="md-tail"></div>
        </div>
    }
    .into_any()
}

/// The list of sources under an answer: each a link to its lesson section.
#[component]
pub fn SourceList(#[prop(into)] sources: Signal<Vec<Source>>) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    view! {
        <Show when=move || sources.with(|s| !s.is_empty())>
            <div class="sources">
                <p class="sources-title">{move || lang.get().t().sources}</p>
                <ol>
                    <For each=move || sources.get() key=|s| s.n let:source>
                        <li data-n=source.n>
                            <a class="source-link" href=source.href() target="_blank" rel="noopener noreferrer">
                                <span class="source-n">{format!("[{}]", source.n)}</span>
                                " "
                                <span class="source-lesson">{source.lesson_title.clone()}</span>
                                {(source.section != source.lesson_title)
                                    .then(|| view! { <span class="source-section">{format!(" › {}", source.section)}</span> })}
                            </a>
                            <span class="source-snippet">{source.snippet.clone()}</span>
                        </li>
                    </For>
                </ol>
            </div>
        </Show>
    }
    .into_any()
}

/// `/lessons/{slug}`: one lesson, rendered from its Markdown on the server.
#[component]
pub fn LessonView() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let params = use_params_map();
    let lesson = Resource::new(
        move || params.read().get("slug").unwrap_or_default(),
        get_lesson,
    );
    view! {
        <div class="lesson-page">
            <nav class="lesson-nav">
                <a href="/">{move || t().back_to_chat}</a>
                " · "
                <a href="/lessons">{move || t().lessons}</a>
            </nav>
            <Suspense>
                {move || Suspend::new(async move {
                    match lesson.await {
                        Ok(Some(page)) => view! {
                            <article class="lesson" lang=page.lang.clone().unwrap_or_default() data-slug=page.slug.clone() inner_html=page.html></article>
                        }
                        .into_any(),
                        _ => {
                            platform::set_status_not_found();
                            view! { <p class="lesson-missing" role="alert">{move || t().lesson_missing}</p> }.into_any()
                        }
                    }
                })}
            </Suspense>
        </div>
    }
}

/// `/lessons`: the course's lessons.
#[component]
pub fn LessonList() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let lessons = Resource::new(|| (), |_| list_lessons());
    view! {
        <div class="lesson-page">
            <nav class="lesson-nav"><a href="/">{move || t().back_to_chat}</a></nav>
            <h1>{move || t().lessons}</h1>
            <Suspense>
                {move || Suspend::new(async move {
                    let lessons = lessons.await.unwrap_or_default();
                    view! {
                        <ul class="lesson-list">
                            {lessons.into_iter().map(|l| view! {
                                <li>
                                    <a href=format!("/lessons/{}", l.slug)>{l.title}</a>
                                    {l.lang.map(|code| view! { <span class="lesson-lang">{code}</span> })}
                                </li>
                            }).collect_view()}
                        </ul>
                    }
                })}
            </Suspense>
        </div>
    }
}
