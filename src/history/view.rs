//! The sidebar: my conversations (newest first), searching them, "New chat", rename
//! and delete. It shares the conversation on screen with the chat page through
//! [`PageState`].

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;

use super::api::{delete_conversation, list_conversations, rename_conversation, search_conversations};
use super::{ConversationPage, ConversationSummary, MAX_SEARCH_CHARS, MAX_TITLE_CHARS};
use crate::i18n::Lang;
use crate::page::PageState;
use crate::platform;

#[component]
pub fn Sidebar() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let page = expect_context::<PageState>();
    let location = leptos_router::hooks::use_location();
    let on_chat_page =
        move || location.pathname.with(|path| path == "/" || crate::page::conversation_in_path(path).is_some());
    let list = Resource::new(move || page.sidebar_version.get(), |_| list_conversations(None));
    // On a narrow screen the sidebar is a drawer behind a button (style/main.css hides
    // the button on a wide one). Opening it moves focus in; Esc or the button closes
    // it and gives focus back to the button; going somewhere closes it.
    let open = RwSignal::new(false);
    let toggle_ref = NodeRef::<leptos::html::Button>::new();
    let first_link = NodeRef::<leptos::html::A>::new();
    let set_open = move |now: bool| {
        open.set(now);
        // Focused on the next frame: the drawer is visible (focusable) by then.
        request_animation_frame(move || {
            let _ = if now {
                first_link.get_untracked().map(|a| a.focus())
            } else {
                toggle_ref.get_untracked().map(|b| b.focus())
            };
        });
    };
    // Following any link in the drawer (a conversation, the lessons, "New chat")
    // closes it: the student went where they meant to.
    let on_drawer_click = move |ev: leptos::ev::MouseEvent| {
        if platform::landed_within(&ev, "a") {
            open.set(false);
        }
    };
    // While it is open on a phone, Tab stays in the drawer and its button, as in a
    // dialog: the chat behind it is covered.
    let drawer = NodeRef::<leptos::html::Nav>::new();
    let on_drawer_key = move |ev: leptos::ev::KeyboardEvent| {
        if !open.get_untracked() {
            return;
        }
        if ev.key() == "Escape" {
            ev.prevent_default();
            set_open(false);
        } else if let (Some(nav), Some(toggle)) = (drawer.get_untracked(), toggle_ref.get_untracked()) {
            platform::keep_tab_inside(&ev, &nav, &toggle);
        }
    };
    let new_chat = move |_| {
        page.show_conversation(None);
        platform::show_url("/");
    };
    // The search typed, and the one asked for (on Enter); empty shows the list.
    let draft = RwSignal::new(String::new());
    let query = RwSignal::new(String::new());
    let search = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        query.set(draft.get_untracked().trim().to_string());
    };
    let on_input = move |ev| {
        let text = event_target_value(&ev);
        if text.trim().is_empty() {
            query.set(String::new());
        }
        draft.set(text);
    };
    let clear = move |_| {
        draft.set(String::new());
        query.set(String::new());
    };
    let conversations = move || {
        view! {
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
        }
    };
    view! {
        <button
            type="button"
            class="sidebar-toggle"
            node_ref=toggle_ref
            aria-controls="sidebar"
            aria-expanded=move || open.get().to_string()
            on:click=move |_| set_open(!open.get_untracked())
            on:keydown=on_drawer_key
        >
            <span aria-hidden="true">"☰ "</span>
            {move || t().conversations}
        </button>
        <div class="sidebar-backdrop" class:open=move || open.get() aria-hidden="true" on:click=move |_| set_open(false)></div>
        <nav id="sidebar" class="sidebar" class:open=move || open.get() aria-label=move || t().conversations node_ref=drawer
            on:keydown=on_drawer_key on:click=on_drawer_click>
            <a href="/" class="new-chat" node_ref=first_link on:click=new_chat>{move || format!("+ {}", t().new_chat)}</a>
            <form class="sidebar-search" role="search" on:submit=search>
                <input
                    type="search"
                    name="q"
                    placeholder=move || t().search_placeholder
                    aria-label=move || t().search_placeholder
                    maxlength=MAX_SEARCH_CHARS.to_string()
                    prop:value=move || draft.get()
                    on:input=on_input
                />
                <Show when=move || !query.with(String::is_empty)>
                    <button type="button" class="search-clear" on:click=clear>{move || t().search_clear}</button>
                </Show>
            </form>
            <h2 class="sidebar-title">{move || t().conversations}</h2>
            {move || {
                let asked = query.get();
                if asked.is_empty() {
                    conversations().into_any()
                } else {
                    view! { <SearchResults query=asked /> }.into_any()
                }
            }}
            <a href="/lessons" class="sidebar-lessons">{move || t().lessons}</a>
            <crate::account::view::AccountBox />
            // The chat page has its own in its top bar.
            <Show when=move || !on_chat_page()>
                <div class="sidebar-lang"><crate::lang_switch::LangSwitch /></div>
            </Show>
        </nav>
    }
}

/// The conversations found for a search: the first page, then more on request.
#[component]
fn SearchResults(query: String) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let page = expect_context::<PageState>();
    let asked = query.clone();
    let first = Resource::new(move || page.sidebar_version.get(), move |_| search_conversations(asked.clone(), None));
    view! {
        <Transition>
            {move || {
                let query = query.clone();
                Suspend::new(async move {
                    match first.await {
                        Ok(found) if found.items.is_empty() => {
                            view! { <p class="sidebar-empty search-empty">{move || t().search_no_results}</p> }.into_any()
                        }
                        Ok(found) => view! { <ResultPages query=query first=found /> }.into_any(),
                        Err(_) => view! { <p class="sidebar-empty">{move || t().history_unavailable}</p> }.into_any(),
                    }
                })
            }}
        </Transition>
    }
}

/// Search results, newest first, with a button for the next page while there is one.
#[component]
fn ResultPages(query: String, first: ConversationPage) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let items = RwSignal::new(first.items);
    let cursor = RwSignal::new(first.next_cursor);
    let loading = RwSignal::new(false);
    let more = move |_| {
        let Some(after) = cursor.get_untracked() else {
            return;
        };
        loading.set(true);
        let query = query.clone();
        leptos::task::spawn_local(async move {
            if let Ok(page) = search_conversations(query, Some(after)).await {
                items.update(|found| found.extend(page.items));
                cursor.set(page.next_cursor);
            }
            loading.set(false);
        });
    };
    view! {
        <ul class="conversation-list search-results">
            <For each=move || items.get() key=|c| c.id.clone() let:c>
                <ConversationLink conversation=c />
            </For>
        </ul>
        <Show when=move || cursor.get().is_some()>
            <button type="button" class="search-more" on:click=more.clone() disabled=move || loading.get()>
                {move || t().search_more}
            </button>
        </Show>
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
    // Why the last rename or deletion failed, in the code the page shows in its words.
    let failed = RwSignal::new(None::<crate::protocol::ErrorCode>);
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
                    Ok(()) => {
                        failed.set(None);
                        title.set(new_title);
                    }
                    Err(error) => failed.set(Some(error.code)),
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
                    Err(error) => failed.set(Some(error.code)),
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
            "Escape" => {
                ev.prevent_default(); // leaving the rename, not stopping an answer
                editing.set(false);
            }
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
                <button type="button" class="rename" title=move || t().rename aria-label=move || t().rename
                    on:click=move |_| editing.set(true)>"✎"</button>
                // Named for screen readers: "×" and the emoji read as symbols, not as what they do.
                <button type="button" class="delete" class:confirming=move || confirming.get()
                    title=move || t().delete
                    aria-label=move || if confirming.get() { t().confirm_delete } else { t().delete }
                    on:click=delete on:blur=move |_| confirming.set(false)>
                    {move || if confirming.get() { t().confirm_delete } else { "×" }}
                </button>
            </span>
            {move || failed.get().map(|code| view! {
                <p class="msg-error" role="alert" data-code=code.as_str()>{move || t().error_text(code)}</p>
            })}
        </li>
    }
}
