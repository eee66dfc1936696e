//! `/teach`: the course dashboard for its teacher (period from `?days=`, charts in
//! `charts.rs`), and the instructions panel. Anyone else gets the 404 page.

use leptos::prelude::*;

use leptos_router::hooks::use_query_map;

use super::api::{teach_dashboard, teach_instructions, SetInstructions};
use super::charts::{DayChart, Line, Stack};
use super::dashboard::{
    period_from_query, Cited, ContentGaps, Dashboard, DayActivity, Downvote, Ending, EndingCounts, Queue, PERIODS,
};
use super::{Instructions, RatingSummary, MAX_INSTRUCTIONS_CHARS};
use crate::feedback::Reason;
use crate::faq::view::EndorsementsPanel;
use crate::lessons::list_lessons;
use crate::i18n::{Lang, Strings};
use crate::not_found::NotFound;
use crate::protocol::ErrorCode;

/// A moment as `YYYY-MM-DD HH:MM`: rendered in UTC (the server knows no reader's time
/// zone, and says "UTC"), then, once the page has hydrated, in the browser's own
/// zone. The UTC text stays as the tooltip.
#[component]
pub fn LocalTime(unix_ms: i64) -> impl IntoView {
    let utc = super::date_time_of_ms(unix_ms);
    let shown = RwSignal::new(utc.clone());
    // An Effect: the browser's clock is read after hydration, never during a render.
    Effect::new(move |_| {
        if let Some(local) = crate::platform::local_date_time(unix_ms) {
            shown.set(local);
        }
    });
    view! { <time datetime=super::datetime_attribute_of_ms(unix_ms) title=utc>{move || shown.get()}</time> }
}

#[component]
pub fn TeachPage() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let query = use_query_map();
    let days = move || period_from_query(query.read().get("days").as_deref());
    let dashboard = Resource::new(days, |days| teach_dashboard(i64::from(days)));
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                match dashboard.await {
                    Ok(dashboard) => view! { <Dashboard dashboard /> }.into_any(),
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

#[component]
fn Dashboard(dashboard: Dashboard) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let days = dashboard.days;
    let periods = PERIODS
        .iter()
        .map(|&p| {
            let current = (p == days).then_some("page");
            let label = move || t().teach_days_option.replace("{days}", &p.to_string());
            view! { <li><a href=format!("/teach?days={p}") aria-current=current>{label}</a></li> }
        })
        .collect_view();
    view! {
        <div class="lesson-page teach-page" data-days=days.to_string()>
            <nav class="lesson-nav">
                <a href="/">{move || t().back_to_chat}</a> " · "
                <a href="/teach/queue" class="queue-link">{move || t().queue_title}</a> " · "
                <a href=format!("/teach/export.csv?days={days}") class="export-link" download>{move || t().teach_export}</a>
            </nav>
            <h1>{move || t().teach_title}</h1>
            <nav class="teach-periods" aria-label=move || t().teach_period_choice>
                <ul>{periods}</ul>
            </nav>
            <p class="teach-summary">
                {move || t().teach_period.replace("{days}", &days.to_string())}
                " · "
                <span class="teach-questions">{dashboard.questions}</span>
                " " {move || lang.get().form(dashboard.questions, &t().teach_questions)}
                " · "
                <span class="teach-students">{dashboard.students}</span>
                " " {move || lang.get().form(dashboard.students, &t().teach_students)}
            </p>
            <Activity per_day=dashboard.per_day.clone() />
            <EndingsAndRatings endings=dashboard.endings.clone() ratings=dashboard.ratings.clone() />
            <Citations
                top_lessons=dashboard.top_lessons.clone()
                top_sections=dashboard.top_sections.clone()
                never_cited=dashboard.never_cited.clone()
            />
            <Gaps gaps=dashboard.gaps.clone() />
            <Downvotes total=dashboard.downvotes_total downvotes=dashboard.downvotes.clone() />
            <QueueSummary queue=dashboard.queue.clone() />
            <ModelUse dashboard />
            <InstructionsPanel />
            <EndorsementsPanel />
        </div>
    }
    .into_any()
}

fn ending_label(t: &Strings, ending: Ending) -> &'static str {
    match ending {
        Ending::Complete => t.ending_complete,
        Ending::Stopped => t.ending_stopped,
        Ending::Error => t.ending_error,
        Ending::Interrupted => t.ending_interrupted,
        Ending::RateLimited => t.ending_rate_limited,
        Ending::InProgress => t.ending_in_progress,
    }
}

fn reason_label(t: &Strings, reason: &str) -> String {
    Reason::parse(reason).map_or_else(|| reason.to_string(), |reason| reason.label(t).to_string())
}

/// Answers per day stacked by how they ended, and active students as a line.
#[component]
fn Activity(per_day: Vec<DayActivity>) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    move || {
        let t = lang.get().t();
        let stacks = Ending::ALL
            .into_iter()
            .map(|ending| Stack {
                class: ending_class(ending),
                label: ending_label(t, ending).to_string(),
                values: per_day.iter().map(|d| d.endings.get(ending)).collect(),
            })
            .collect();
        let lines = vec![Line {
            class: "series-students",
            label: t.teach_active_students.to_string(),
            values: per_day.iter().map(|d| Some(d.students)).collect(),
        }];
        let days = per_day.iter().map(|d| d.day.clone()).collect();
        view! {
            <section class="teach-section teach-activity">
                <DayChart title=t.teach_activity.to_string() days stacks lines />
            </section>
        }
        .into_any()
    }
}

fn ending_class(ending: Ending) -> &'static str {
    match ending {
        Ending::Complete => "ending-complete",
        Ending::Stopped => "ending-stopped",
        Ending::Error => "ending-error",
        Ending::Interrupted => "ending-interrupted",
        Ending::RateLimited => "ending-rate_limited",
        Ending::InProgress => "ending-in_progress",
    }
}

#[component]
fn EndingsAndRatings(endings: EndingCounts, ratings: RatingSummary) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let endings = Ending::ALL
        .into_iter()
        .map(|ending| {
            let count = endings.get(ending);
            view! {
                <tr data-status=ending.as_str()>
                    <th scope="row">{move || ending_label(t(), ending)}</th>
                    <td>{count}</td>
                </tr>
            }
        })
        .collect_view();
    let reasons = ratings
        .reasons
        .into_iter()
        .map(|(reason, count)| {
            let label = reason.clone();
            view! { <tr data-reason=reason><th scope="row">"👎 · " {move || reason_label(t(), &label)}</th><td>{count}</td></tr> }
        })
        .collect_view();
    view! {
        <div class="teach-tables">
            <table class="teach-endings">
                <caption>{move || t().teach_endings}</caption>
                <tbody>{endings}</tbody>
            </table>
            <table class="teach-ratings">
                <caption>{move || t().teach_ratings}</caption>
                <tbody>
                    <tr data-rating="up"><th scope="row">"👍"</th><td>{ratings.up}</td></tr>
                    <tr data-rating="down"><th scope="row">"👎"</th><td>{ratings.down}</td></tr>
                    {reasons}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

#[component]
fn Citations(top_lessons: Vec<Cited>, top_sections: Vec<Cited>, never_cited: Vec<(String, String)>) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let lessons = top_lessons
        .into_iter()
        .map(|c| view! { <tr><th scope="row"><a href=c.href()>{c.lesson_title.clone()}</a></th><td>{c.count}</td></tr> })
        .collect_view();
    let sections = top_sections
        .into_iter()
        .map(|c| {
            view! {
                <tr>
                    <th scope="row"><a href=c.href()>{c.section.clone()}</a></th>
                    <td>{c.lesson_title.clone()}</td>
                    <td>{c.count}</td>
                </tr>
            }
        })
        .collect_view();
    let never = never_cited
        .into_iter()
        .map(|(slug, title)| view! { <li><a href=format!("/lessons/{slug}")>{title}</a></li> })
        .collect_view();
    view! {
        <section class="teach-section teach-citations">
            <div class="teach-tables">
                <table class="teach-cited-lessons">
                    <caption>{move || t().teach_cited_lessons}</caption>
                    <thead><tr><th scope="col">{move || t().teach_lesson}</th><th scope="col">{move || t().teach_citations}</th></tr></thead>
                    <tbody>{lessons}</tbody>
                </table>
                <table class="teach-cited-sections">
                    <caption>{move || t().teach_cited_sections}</caption>
                    <thead>
                        <tr>
                            <th scope="col">{move || t().teach_section}</th>
                            <th scope="col">{move || t().teach_lesson}</th>
                            <th scope="col">{move || t().teach_citations}</th>
                        </tr>
                    </thead>
                    <tbody>{sections}</tbody>
                </table>
            </div>
            <h2>{move || t().teach_never_cited}</h2>
            <ul class="teach-never-cited">{never}</ul>
        </section>
    }
    .into_any()
}

#[component]
fn Gaps(gaps: ContentGaps) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let summary = move || {
        t().teach_gaps_summary.replace("{nothing}", &gaps.nothing.to_string()).replace("{weak}", &gaps.weak.to_string())
    };
    let rows = gaps
        .groups
        .into_iter()
        .map(|group| {
            let samples = group.samples.into_iter().map(|q| view! { <li>{q}</li> }).collect_view();
            view! {
                <tr>
                    <th scope="row">{group.word}</th>
                    <td>{group.count}</td>
                    <td><ul class="teach-samples">{samples}</ul></td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="teach-section teach-gaps" aria-labelledby="gaps-title">
            <h2 id="gaps-title">{move || t().teach_gaps_title}</h2>
            <p>{summary}</p>
            <table>
                <thead>
                    <tr>
                        <th scope="col">{move || t().teach_gap_word}</th>
                        <th scope="col">{move || t().teach_questions_heading}</th>
                        <th scope="col">{move || t().teach_gap_examples}</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
    .into_any()
}

#[component]
fn Downvotes(total: i64, downvotes: Vec<Downvote>) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let rows = downvotes
        .into_iter()
        .map(|d| {
            let reasons = d.reasons.clone();
            let reasons = move || reasons.iter().map(|r| reason_label(t(), r)).collect::<Vec<_>>().join(", ");
            let when = super::date_of_ms(d.at);
            match d.shared {
                Some(shared) => {
                    let student = shared.student.clone();
                    view! {
                        <tr class="downvote shared">
                            <td>{when}</td>
                            <td>{move || student.label(t())}</td>
                            <td>{reasons}</td>
                            <td class="teach-text">{shared.question}</td>
                            <td class="teach-text">{shared.answer}</td>
                            <td class="teach-text">{shared.comment}</td>
                        </tr>
                    }
                    .into_any()
                }
                None => view! {
                    <tr class="downvote not-shared">
                        <td>{when}</td>
                        <td class="teach-muted">{move || t().teach_not_shared}</td>
                        <td>{reasons}</td>
                        <td class="teach-muted" colspan="3">{move || t().teach_not_shared}</td>
                    </tr>
                }
                .into_any(),
            }
        })
        .collect_view();
    view! {
        <section class="teach-section teach-downvotes" aria-labelledby="downvotes-title">
            <h2 id="downvotes-title">{move || t().teach_downvotes_title}</h2>
            <p>{move || t().teach_downvotes_count.replace("{n}", &total.to_string())}</p>
            <div class="teach-scroll">
                <table>
                    <thead>
                        <tr>
                            <th scope="col">{move || t().teach_day}</th>
                            <th scope="col">{move || t().teach_student}</th>
                            <th scope="col">{move || t().teach_reasons}</th>
                            <th scope="col">{move || t().teach_question}</th>
                            <th scope="col">{move || t().teach_answer}</th>
                            <th scope="col">{move || t().teach_comment}</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        </section>
    }
    .into_any()
}

/// A duration for people: seconds, minutes, hours or days, in `lang`'s units.
fn duration_text(lang: Lang, ms: i64) -> String {
    let t = lang.t();
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s} {}", t.unit_seconds),
        60..=3_599 => format!("{} {}", s / 60, t.unit_minutes),
        3_600..=86_399 => format!("{} {}", lang.decimal(s as f64 / 3_600.0, 1), t.unit_hours),
        _ => format!("{} {}", lang.decimal(s as f64 / 86_400.0, 1), t.unit_days),
    }
}

#[component]
fn QueueSummary(queue: Queue) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let median = move || queue.median_reply_ms.map_or_else(|| "—".to_string(), |ms| duration_text(lang.get(), ms));
    view! {
        <section class="teach-section teach-queue" aria-labelledby="queue-title">
            <h2 id="queue-title">{move || t().teach_queue_title}</h2>
            <dl class="teach-counts">
                <dt>{move || t().teach_queue_open}</dt><dd data-queue="open">{queue.open}</dd>
                <dt>{move || t().teach_queue_answered}</dt><dd data-queue="answered">{queue.answered}</dd>
                <dt>{move || t().teach_queue_resolved}</dt><dd data-queue="resolved">{queue.resolved}</dd>
                <dt>{move || t().teach_queue_median}</dt><dd data-queue="median">{median}</dd>
            </dl>
        </section>
    }
    .into_any()
}

#[component]
fn ModelUse(dashboard: Dashboard) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let prices = dashboard.prices;
    let cost = prices.shown().then(|| prices.cost(dashboard.prompt_tokens(), dashboard.completion_tokens()));
    let model = dashboard.model;
    let charts = move || {
        let t = lang.get().t();
        let days: Vec<String> = model.iter().map(|d| d.day.clone()).collect();
        let tokens = vec![
            Stack {
                class: "series-prompt",
                label: t.teach_prompt_tokens.to_string(),
                values: model.iter().map(|d| d.prompt_tokens).collect(),
            },
            Stack {
                class: "series-completion",
                label: t.teach_completion_tokens.to_string(),
                values: model.iter().map(|d| d.completion_tokens).collect(),
            },
        ];
        let ttft = vec![
            Line { class: "series-p50", label: t.teach_ttft_p50.to_string(), values: model.iter().map(|d| d.ttft_p50_ms).collect() },
            Line { class: "series-p95", label: t.teach_ttft_p95.to_string(), values: model.iter().map(|d| d.ttft_p95_ms).collect() },
        ];
        view! {
            <DayChart title=t.teach_tokens_chart.to_string() days=days.clone() stacks=tokens lines=Vec::new() />
            <DayChart title=t.teach_ttft_chart.to_string() days stacks=Vec::new() lines=ttft />
        }
    };
    view! {
        <section class="teach-section teach-model" aria-labelledby="model-title">
            <h2 id="model-title">{move || t().teach_model_title}</h2>
            {cost.map(|cost| view! {
                <p class="teach-cost">{move || t().teach_cost.replace("{cost}", &lang.get().decimal(cost, 2))}</p>
            })}
            {charts}
        </section>
    }
    .into_any()
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
    .into_any()
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
    .into_any()
}
