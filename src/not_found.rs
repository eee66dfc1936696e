//! The page for an address that names nothing — and, so that the two cannot be told
//! apart, for a page the visitor may not see (the teacher's pages for a student).

use leptos::prelude::*;

use crate::platform;

#[component]
pub fn NotFound() -> impl IntoView {
    platform::set_status_not_found();
    view! {
        <div class="not-found">
            <h1>"404"</h1>
            <p><a href="/">"Tutor Chat"</a></p>
        </div>
    }
}
