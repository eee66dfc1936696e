//! The page for an address that names nothing — and, so that the two cannot be told
//! apart, for a page the visitor may not see (the teacher's pages for a student).

use leptos::prelude::*;

use crate::i18n::Lang;
use crate::platform;

#[component]
pub fn NotFound() -> impl IntoView {
    platform::set_status_not_found();
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    view! {
        <div class="not-found">
            <h1>"404"</h1>
            <p>{move || t().no_such_page}</p>
            <p><a href="/">{move || t().back_to_chat}</a></p>
        </div>
    }
}
