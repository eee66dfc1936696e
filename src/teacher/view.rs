//! `/teach`: the course overview for its teacher. Anyone else gets the 404 page.

use leptos::prelude::*;

use super::api::teach_overview;
use super::DEFAULT_DAYS;
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
                            <nav class="lesson-nav"><a href="/">{move || t().back_to_chat}</a></nav>
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
