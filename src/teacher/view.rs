//! `/teach`: the course overview for its teacher. Anyone else gets the 404 page.

use leptos::prelude::*;

use super::api::{teach_instructions, teach_overview, SetInstructions};
use super::{Instructions, DEFAULT_DAYS, MAX_INSTRUCTIONS_CHARS};
use crate::faq::view::EndorsementsPanel;
use crate::lessons::list_lessons;
use crate::i18n::Lang;
use crate::not_found::NotFound;
use crate::protocol::ErrorCode;

#[component]
pub fn TeachPage() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let overview = Resource::new(|| (), |_| teach_overview(DEFAULT_DAYS));
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(overview) => view! {
                        <div class="lesson-page teach-page">
                            <nav class="lesson-nav">
                                <a href="/">{move || t().back_to_chat}</a> " · "
                                <a href="/teach/queue" class="queue-link">{move || t().queue_title}</a> " · "
                                <a href=format!("/teach/export.csv?days={}", overview.days) class="export-link" download>
                                    {move || t().teach_export}
                                </a>
                            </nav>
                            <h1>{move || t().teach_title}</h1>
                            <p class="teach-summary">
                                {move || t().teach_period.replace("{days}", &overview.days.to_string())}
                                " · "
                                <span class="teach-questions">{overview.questions}</span>
                                " " {move || t().teach_questions}
                                " · "
                                <span class="teach-students">{overview.students}</span>
                                " " {move || t().teach_students}
                            </p>
                            <table class="teach-days">
                                <caption>{move || t().teach_per_day}</caption>
                                <thead>
                                    <tr>
                                        <th scope="col">{move || t().teach_day}</th>
                                        <th scope="col">{move || t().teach_questions}</th>
                                        <th scope="col">{move || t().teach_students}</th>
                                    </tr>
                                </thead>
                                <tbody>
                                    {overview
                                        .per_day
                                        .into_iter()
                                        .map(|day| view! {
                                            <tr>
                                                <th scope="row">{day.day}</th>
                                                <td>{day.questions}</td>
                                                <td>{day.students}</td>
                                            </tr>
                                        })
                                        .collect_view()}
                                </tbody>
                            </table>
                            <table class="teach-endings">
                                <caption>{move || t().teach_endings}</caption>
                                <tbody>
                                    {overview
                                        .endings
                                        .into_iter()
                                        .map(|(status, count)| {
                                            let label = status.clone();
                                            view! { <tr data-status=status><th scope="row">{label}</th><td>{count}</td></tr> }
                                        })
                                        .collect_view()}
                                </tbody>
                            </table>
                            <table class="teach-ratings">
                                <caption>{move || t().teach_ratings}</caption>
                                <tbody>
                                    <tr data-rating="up"><th scope="row">"👍"</th><td>{overview.ratings.up}</td></tr>
                                    <tr data-rating="down"><th scope="row">"👎"</th><td>{overview.ratings.down}</td></tr>
                                    {overview
                                        .ratings
                                        .reasons
                                        .into_iter()
                                        .map(|(reason, count)| {
                                            let label = reason.clone();
                                            view! { <tr data-reason=reason><th scope="row">"👎 · " {label}</th><td>{count}</td></tr> }
                                        })
                                        .collect_view()}
                                </tbody>
                            </table>
                            <InstructionsPanel />
                            <EndorsementsPanel />
                        </div>
                    }
                    .into_any(),
                    Err(error) if error.code == ErrorCode::NotFound => view! { <NotFound /> }.into_any(),
                    Err(error) => view! {
                        <p class="history-error" role="alert">{error.text(lang.get_untracked())}</p>
                    }
                    .into_any(),
                }
            })}
        </Suspense>
    }
}

/// What the teacher tells the tutor: one form for the course or a lesson, what is in
/// force, and who changed what when.
#[component]
fn InstructionsPanel() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let save = ServerAction::<SetInstructions>::new();
    let instructions = Resource::new(move || save.version().get(), |_| teach_instructions());
    let lessons = Resource::new(|| (), |_| list_lessons());
    view! {
        <section class="teach-instructions" aria-labelledby="instructions-title">
            <h2 id="instructions-title">{move || t().instructions_title}</h2>
            <p class="account-hint">{move || t().instructions_hint}</p>
            <ActionForm action=save attr:class="instructions-form">
                <label>
                    {move || t().instructions_scope} " "
                    <select name="lesson">
                        <option value="">{move || t().instructions_course}</option>
                        <Suspense>
                            {move || Suspend::new(async move {
                                lessons
                                    .await
                                    .unwrap_or_default()
                                    .into_iter()
                                    .map(|lesson| view! { <option value=lesson.slug.clone()>{lesson.title}</option> })
                                    .collect_view()
                            })}
                        </Suspense>
                    </select>
                </label>
                <textarea name="text" maxlength=MAX_INSTRUCTIONS_CHARS.to_string() aria-label=move || t().instructions_title></textarea>
                <button type="submit" class="send">{move || t().instructions_save}</button>
            </ActionForm>
            {move || {
                save.value().get().and_then(Result::err).map(|e| {
                    view! { <p class="form-error" role="alert">{e.text(lang.get())}</p> }
                })
            }}
            <Suspense>
                {move || Suspend::new(async move {
                    instructions.await.ok().map(|instructions| view! { <InstructionsInForce instructions /> })
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn InstructionsInForce(instructions: Instructions) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let scope_name = move |scope: &str| if scope.is_empty() { t().instructions_course.to_string() } else { scope.to_string() };
    let in_force = instructions
        .current
        .course
        .map(|text| (String::new(), text))
        .into_iter()
        .chain(instructions.current.lessons)
        .map(|(scope, text)| view! { <dt>{scope_name(&scope)}</dt><dd class="instructions-text">{text}</dd> })
        .collect_view();
    let changes = instructions
        .changes
        .into_iter()
        .map(|change| {
            let text = if change.text.is_empty() { t().instructions_cleared.to_string() } else { change.text };
            view! {
                <li>
                    <span class="change-who">{change.changed_by}</span> " · "
                    <span class="change-scope">{scope_name(&change.scope)}</span> " · "
                    <span class="change-when">{super::date_of_ms(change.changed_at)}</span>
                    ": " {text}
                </li>
            }
        })
        .collect_view();
    view! {
        <dl class="instructions-in-force">{in_force}</dl>
        <h3>{move || t().instructions_changes}</h3>
        <ul class="instruction-changes">{changes}</ul>
    }
}
