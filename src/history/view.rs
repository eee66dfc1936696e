//! The sidebar: my conversations (newest first), "New chat", rename and delete. It
//! shares the conversation on screen with the chat page through [`PageState`].

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;

use super::api::{delete_conversation, list_conversations, rename_conversation};
use super::{ConversationSummary, MAX_TITLE_CHARS};
use crate::i18n::Lang;
use crate::page::PageState;
use crate::platform;

#[component]
pub fn Sidebar() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let page = expect_context::<PageState>();
    let list = Resource::new(move || page.sidebar_version.get(), |_| list_conversations(None));
    let new_chat = move |_| {
        page.show_conversation(None);
        platform::show_url("/");
    };
    view! {
        <nav class="sidebar" aria-label=move || t().conversations>
            <a href="/" class="new-chat" on:click=new_chat>{move || format!("+ {}", t().new_chat)}</a>
            <h2 class="sidebar-title">{move || t().conversations}</h2>
            <Transition>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(page) if page.items.is_empty() => {
                            view! { <p class="sidebar-empty">{move || t().no_conversations}</p> }.into_any()
                        }
                        Ok(page) => view! {
                            <ul class="conversation-list">
                                {page.items.into_iter().map(|c| view! { <ConversationLink conversation=c /> }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(_) => view! { <p class="sidebar-empty">{move || t().history_unavailable}</p> }.into_any(),
                    }
                })}
            </Transition>
            <a href="/lessons" class="sidebar-lessons">{move || t().lessons}</a>
            <crate::account::view::AccountBox />
        </nav>
    }
}

#[component]
fn ConversationLink(conversation: ConversationSummary) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let page = expect_context::<PageState>();
    let id = conversation.id;
    let title = RwSignal::new(conversation.title);
    let editing = RwSignal::new(false);
    let confirming = RwSignal::new(false);
    let failed = RwSignal::new(false);
    let href = format!("/c/{id}");
    let is_current = {
        let id = id.clone();
        move || page.conversation_id.with(|c| c.as_deref() == Some(id.as_str()))
    };

    let save = {
        let id = id.clone();
        move |new_title: String| {
            editing.set(false);
            let new_title = new_title.trim().to_string();
            if new_title.is_empty() || new_title == title.get_untracked() {
                return;
            }
            let id = id.clone();
            leptos::task::spawn_local(async move {
                match rename_conversation(id, new_title.clone()).await {
                    Ok(()) => title.set(new_title),
                    Err(_) => failed.set(true),
                }
            });
        }
    };
    let delete = {
        let id = id.clone();
        move |_| {
            if !confirming.get_untracked() {
                confirming.set(true);
                return;
            }
            let id = id.clone();
            let was_current = page.conversation_id.get_untracked().as_deref() == Some(id.as_str());
            let navigate = use_navigate();
            leptos::task::spawn_local(async move {
                match delete_conversation(id).await {
                    Ok(()) => {
                        if was_current {
                            page.show_conversation(None);
                            navigate("/", Default::default());
                        }
                        page.sidebar_version.update(|v| *v = v.wrapping_add(1));
                    }
                    Err(_) => failed.set(true),
                }
            });
        }
    };
    let on_key = {
        let save = save.clone();
        move |ev: leptos::ev::KeyboardEvent| match ev.key().as_str() {
            "Enter" => {
                ev.prevent_default();
                save(event_target_value(&ev));
            }
            "Escape" => editing.set(false),
            _ => {}
        }
    };

    view! {
        <li class="conversation" class:active=is_current>
            <Show
                when=move || editing.get()
                fallback=move || view! {
                    <a class="conversation-title" href=href.clone()>{move || title.get()}</a>
                }
            >
                <input
                    class="rename-input"
                    prop:value=move || title.get_untracked()
                    on:keydown=on_key.clone()
                    on:blur={
                        let save = save.clone();
                        move |ev| save(event_target_value(&ev))
                    }
                    maxlength=MAX_TITLE_CHARS.to_string()
                    aria-label=move || t().rename
                />
            </Show>
            <span class="conversation-actions">
                <button type="button" class="rename" title=move || t().rename on:click=move |_| editing.set(true)>"✎"</button>
                <button type="button" class="delete" class:confirming=move || confirming.get()
                    title=move || t().delete on:click=delete on:blur=move |_| confirming.set(false)>
                    {move || if confirming.get() { t().confirm_delete } else { "×" }}
                </button>
            </span>
            <Show when=move || failed.get()>
                <p class="msg-error" role="alert">{move || t().history_unavailable}</p>
            </Show>
        </li>
    }
}
