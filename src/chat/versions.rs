//! The page's controls for versions: edit a question and send it again, regenerate
//! the last answer, and the `‹ 2 / 3 ›` switcher on a message that has versions. The
//! new answer comes over the socket; the branch shown is read again from history
//! (`history::versions` keeps it).

use leptos::prelude::*;

use super::client::ChatClient;
use super::state::{ChatUi, ItemError};
use crate::history::api::show_version;
use crate::i18n::Lang;
use crate::protocol::ClientFrame;

/// A student's question: its text, and once it has an id, Edit (a form in place of
/// the text) and its versions.
#[component]
pub fn StudentQuestion(
    text: Signal<String>,
    message_id: Signal<Option<String>>,
    versions: Signal<Vec<String>>,
) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let ui = expect_context::<ChatUi>();
    let client = expect_context::<ChatClient>();
    let editing = RwSignal::new(false);
    let draft = RwSignal::new(String::new());
    let input = NodeRef::<leptos::html::Textarea>::new();
    // The field takes the focus when it opens (in the browser only: an Effect).
    Effect::new(move |_| {
        if editing.get() {
            if let Some(el) = input.get() {
                let _ = el.focus();
            }
        }
    });
    let open = move |_| {
        draft.set(text.get_untracked());
        editing.set(true);
    };
    let send = move || {
        let question = draft.get_untracked();
        let Some(message_id) = message_id.get_untracked() else { return };
        if question.trim().is_empty() || !untrack(|| ui.can_ask()) {
            return;
        }
        let frame = ClientFrame::Edit { message_id, question, ask_id: Some(client.new_ask_id()) };
        if client.send(&frame) {
            ui.begin_version(frame);
            editing.set(false);
        }
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| match ev.key().as_str() {
        "Enter" if !ev.shift_key() && !ev.is_composing() => {
            ev.prevent_default();
            send();
        }
        "Escape" => {
            // Leaves the edit; the page's Esc (stop an answer) does not see it.
            ev.prevent_default();
            editing.set(false);
        }
        _ => {}
    };
    view! {
        <Show
            when=move || editing.get()
            fallback=move || view! { <span class="msg-text">{move || text.get()}</span> }
        >
            <form class="edit-question" on:submit=move |ev| { ev.prevent_default(); send(); }>
                <textarea
                    node_ref=input
                    class="edit-input"
                    rows="2"
                    aria-label=move || t().edit_question
                    prop:value=move || draft.get()
                    on:input=move |ev| draft.set(event_target_value(&ev))
                    on:keydown=on_keydown
                ></textarea>
                <div class="edit-actions">
                    <button type="submit" class="edit-send" disabled=move || !ui.can_ask()>{move || t().edit_send}</button>
                    <button type="button" class="edit-cancel" on:click=move |_| editing.set(false)>
                        {move || t().edit_cancel}
                    </button>
                </div>
            </form>
        </Show>
        <div class="msg-tools">
            <VersionSwitcher versions=versions current=message_id />
            <Show when=move || message_id.with(Option::is_some) && !editing.get()>
                <button type="button" class="edit-question-button" on:click=open disabled=move || !ui.can_ask()>
                    {move || t().edit_question}
                </button>
            </Show>
        </div>
    }
}

/// Asks the last answer's question again: a new version of that answer.
#[component]
pub fn RegenerateButton(message_id: String) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let ui = expect_context::<ChatUi>();
    let client = expect_context::<ChatClient>();
    let regenerate = move |_| {
        if !untrack(|| ui.can_ask()) {
            return;
        }
        let frame = ClientFrame::Regenerate { message_id: message_id.clone(), ask_id: Some(client.new_ask_id()) };
        if client.send(&frame) {
            ui.begin_version(frame);
        }
    };
    view! {
        <button type="button" class="regenerate" on:click=regenerate disabled=move || !ui.can_ask()>
            <span aria-hidden="true">"↻ "</span>
            {move || lang.get().t().regenerate}
        </button>
    }
}

/// `‹ 2 / 3 ›` on a message with versions: shows the previous or next one (the
/// conversation then continues down that version).
#[component]
pub fn VersionSwitcher(versions: Signal<Vec<String>>, current: Signal<Option<String>>) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let ui = expect_context::<ChatUi>();
    let previous_button = NodeRef::<leptos::html::Button>::new();
    let next_button = NodeRef::<leptos::html::Button>::new();
    // After a switch the list is drawn anew: the keyboard's place comes back to the
    // switcher of the version now shown, on the button that still leads somewhere.
    Effect::new(move |_| {
        let (Some(previous), Some(next), Some(id)) = (previous_button.get(), next_button.get(), current.get()) else {
            return;
        };
        if ui.focus_version.with_untracked(|wanted| wanted.as_deref() == Some(id.as_str())) {
            ui.focus_version.set(None);
            let _ = if next.disabled() { previous.focus() } else { next.focus() };
        }
    });
    let show = move |target: String| {
        let Some(conversation_id) = ui.conversation_id.get_untracked() else { return };
        if ui.is_answering() {
            return;
        }
        ui.version_error.set(None);
        leptos::task::spawn_local(async move {
            match show_version(conversation_id, target.clone()).await {
                Ok(()) => {
                    ui.focus_version.set(Some(target));
                    ui.reload_conversation();
                }
                Err(error) => ui.version_error.set(Some(ItemError {
                    code: Some(error.code),
                    detail: error.message,
                    retry_after: error.retry_after,
                })),
            }
        });
    };
    move || {
        let all = versions.get();
        let id = current.get()?;
        let at = all.iter().position(|v| *v == id).filter(|_| all.len() > 1)?;
        let s = lang.get().t();
        let previous = at.checked_sub(1).map(|i| all[i].clone());
        let next = all.get(at + 1).cloned();
        let label = format!("{} {} {} {}", s.version_word, at + 1, s.of_word, all.len());
        let (no_previous, no_next) = (previous.is_none(), next.is_none());
        Some(view! {
            <span class="versions" role="group" aria-label=label>
                <button
                    node_ref=previous_button
                    type="button"
                    class="version-previous"
                    aria-label=s.previous_version
                    disabled=move || no_previous || ui.is_answering()
                    on:click=move |_| if let Some(target) = previous.clone() { show(target) }
                >"‹"</button>
                <span class="version-label" aria-hidden="true">{format!("{} / {}", at + 1, all.len())}</span>
                <button
                    node_ref=next_button
                    type="button"
                    class="version-next"
                    aria-label=s.next_version
                    disabled=move || no_next || ui.is_answering()
                    on:click=move |_| if let Some(target) = next.clone() { show(target) }
                >"›"</button>
            </span>
        })
    }
}
