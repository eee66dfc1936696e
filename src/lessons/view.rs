//! The lesson pages and how an answer shows its sources.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use super::{get_lesson, list_lessons, Source};
use crate::i18n::Lang;
use crate::platform;
use crate::render::{answer_html, RenderLabels};

/// A tutor's answer: Markdown rendered safely (see [`crate::render`]), with `[n]` as
/// citation links when `n` is one of its sources. Rendered again on every chunk.
#[component]
pub fn AnswerText(
    #[prop(into)] text: Signal<String>,
    #[prop(into)] sources: Signal<Vec<Source>>,
) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let html = move || {
        let strings = lang.get().t();
        let labels = RenderLabels { copy: strings.copy, seam: strings.continued_here };
        sources.with(|sources| text.with(|text| answer_html(text, sources, labels)))
    };
    view! { <div class="msg-text md" inner_html=html></div> }.into_any()
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
