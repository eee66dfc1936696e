//! The button that switches the interface between English and Russian. The chat page
//! has it in its top bar; the sidebar shows it on every other page (the lessons, the
//! FAQ, the account and teacher pages), so a student or a teacher can switch anywhere.

use leptos::prelude::*;

use crate::i18n::Lang;
use crate::platform;

/// Switches the page's language at once and remembers it in the `lang` cookie, which
/// the server reads for the next page.
#[component]
pub fn LangSwitch() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let switch = move |_| {
        let next = lang.get_untracked().other();
        lang.set(next);
        platform::remember_lang(next);
    };
    view! {
        <button type="button" class="lang-switch" on:click=switch>
            {move || lang.get().t().switch_to}
        </button>
    }
}
