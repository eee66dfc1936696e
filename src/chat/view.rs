//! The chat page. Rendered complete on the server; after hydration an Effect starts
//! the socket client, and from then on frames drive the signals in [`ChatUi`]. The
//! page reads the same in both builds: the socket is behind [`ChatClient`], whose
//! server twin does nothing, and the address bar and the language cookie behind
//! [`crate::platform`].

use leptos::prelude::*;

use crate::lang_switch::LangSwitch;

use leptos_router::hooks::use_params_map;

use super::client::ChatClient;
use super::state::{ChatItem, ChatUi, ConnState, ItemStatus, Role};
use super::versions::{RegenerateButton, StudentQuestion, VersionSwitcher};
use crate::history::api::load_conversation;
use crate::history::{ConversationView, MessageRole, MessageStatus, StoredMessage};
use crate::escalation::view::AskTeacher;
use crate::faq::view::FaqBadge;
use crate::feedback::view::FeedbackBar;
use crate::i18n::Lang;
use crate::lessons::view::{AnswerText, SourceList, StoredAnswerText};
use crate::page::MESSAGES_ID;
use crate::platform;
use crate::protocol::{ClientFrame, ErrorCode};

/// True once the whole page has hydrated, lazily loaded parts included (`crate::hydrate`
/// sets it; tests wait for it before clicking).
#[derive(Debug, Clone, Copy)]
pub struct Hydrated(pub RwSignal<bool>);

/// The `ask` (JSON) a reload cut off before its `start`, taken from the tab's storage
/// when the page loaded: the chat page the load began on restores it.
#[derive(Debug, Clone, Copy)]
pub struct UnsentAsk(pub StoredValue<Option<String>>);

#[component]
pub fn ChatPage() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let ui = expect_context::<ChatUi>();
    let client = expect_context::<ChatClient>();
    let hydrated = expect_context::<Hydrated>().0;
    let draft = RwSignal::new(String::new());
    let lesson_mode = platform::lesson_mode();
    let teachers_read_all = platform::teachers_read_all();

    // The conversation in the address: `/c/{id}`, or none on `/` (a new chat).
    let params = use_params_map();
    let route_id = Memo::new(move |_| params.read().get("id"));
    ui.show_conversation(route_id.get_untracked());
    Effect::new(move |previous: Option<Option<String>>| {
        let id = route_id.get();
        if previous.is_some_and(|p| p != id) {
            ui.show_conversation(id.clone());
        }
        id
    });
    // A new chat gets its address as soon as the server names it.
    Effect::new(move |_| {
        if let Some(id) = ui.conversation_id.get() {
            platform::show_url(&format!("/c/{id}"));
        }
    });
    // Another tab deleted this conversation: a new chat instead.
    let navigate = leptos_router::hooks::use_navigate();
    Effect::new(move |_| {
        if ui.deleted_elsewhere.get() {
            ui.deleted_elsewhere.set(false);
            navigate("/", Default::default());
        }
    });
    let history = Resource::new(
        move || (route_id.get(), ui.reloads.get()),
        // Reloaded because another tab changed it: the conversation on screen, which
        // a new chat named by its first answer has without a route of its own.
        move |(id, reloads)| async move {
            let id = if reloads > 0 { id.or_else(|| ui.conversation_id.get_untracked()) } else { id };
            match id {
                Some(id) => load_conversation(id, None).await.map(Some),
                None => Ok(None),
            }
        },
    );

    // A question sent just before a reload, whose answer had not begun (`App` keeps
    // it in the tab while it waits): shown and sent again once the page knows what
    // the server stored (the history below).
    let unsent = StoredValue::new(use_context::<UnsentAsk>().and_then(|kept| kept.0.try_update_value(Option::take).flatten()));
    Effect::new(move |restored: Option<bool>| {
        if restored == Some(true) {
            return true;
        }
        let Some(loaded) = history.get() else { return false };
        let ask = unsent.try_update_value(Option::take).flatten();
        if let Some(ask) = ask.and_then(|json| serde_json::from_str::<ClientFrame>(&json).ok()) {
            let stored = loaded.ok().flatten().map(|view| view.messages).unwrap_or_default();
            if ui.restore_unsent(ask, &stored) {
                client.send_unsent();
            }
        }
        true
    });

    let answering = move || ui.pending.with(Option::is_some);
    let connected = move || ui.conn.get() == ConnState::Connected;
    // Sending or stopping from a button would leave keyboard focus on a button that
    // then disappears; the student's place is the input, so focus goes back there.
    let input = NodeRef::<leptos::html::Textarea>::new();
    let focus_input = move || {
        if let Some(el) = input.get_untracked() {
            let _ = el.focus();
        }
    };

    let submit = move || {
        let question = draft.get_untracked();
        if question.trim().is_empty() || !untrack(|| ui.can_ask()) {
            return; // the draft stays; the hint under the input says why
        }
        let frame = ClientFrame::Ask {
            question,
            conversation_id: ui.conversation_id.get_untracked(),
            ask_id: Some(client.new_ask_id()),
        };
        if !client.send(&frame) {
            return;
        }
        ui.begin_question(frame);
        draft.set(String::new());
        ui.follow.set(true);
        client.scroll_to_latest(true);
        focus_input();
    };

    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            submit();
        }
    };
    // With no connection, a question whose answer has not begun is simply not sent
    // again (it may still have reached the server: its answer is then in the history).
    let stop_answer = move || {
        if !client.send(&ClientFrame::Stop) {
            ui.stop_unsent();
        }
    };
    let stop = move |_| {
        stop_answer();
        focus_input();
    };
    // Esc anywhere on the page stops the answer being written, as the Stop button does
    // (unless something else used it: closing the drawer, leaving a rename). The
    // listener does nothing on the server; it goes with the page.
    Effect::new(move |_| {
        let listener = window_event_listener(leptos::ev::keydown, move |ev| {
            if ev.key() == "Escape" && !ev.default_prevented() && ui.is_answering() {
                ev.prevent_default();
                stop_answer();
            }
        });
        on_cleanup(move || listener.remove());
    });
    let on_scroll = move |_| client.follow_if_at_bottom();
    let jump = move |_| {
        ui.follow.set(true);
        client.scroll_to_latest(true);
    };

    let conn_label = move || {
        let s = t();
        match ui.conn.get() {
            ConnState::Connecting => s.connecting,
            ConnState::Connected => s.connected,
            ConnState::Reconnecting => s.reconnecting,
            ConnState::Offline => s.offline,
            ConnState::TooManyTabs => s.too_many_tabs,
        }
    };
    let is_new_chat = move || route_id.get().is_none() && ui.conversation_id.get().is_none();

    view! {
        <div class="chat">
            <header class="topbar">
                <div class="brand">
                    <h1>{move || t().product}</h1>
                    <p class="tagline">{move || t().tagline}</p>
                </div>
                <div class="topbar-actions">
                    <span
                        class="conn"
                        data-state=move || ui.conn.get().as_str()
                        role="status"
                        aria-live="polite"
                    >
                        <span class="conn-dot" aria-hidden="true"></span>
                        <span class="conn-label">{conn_label}</span>
                    </span>
                    {move || ui.conversation_id.get().map(|id| view! {
                        <a class="export-link" href=format!("/c/{id}/export.md") download rel="external">
                            {move || t().export_markdown}
                        </a>
                    })}
                    <a class="faq-link" href="/faq">{move || t().faq_link}</a>
                    <LangSwitch />
                </div>
            </header>
            <Show when=move || lesson_mode>
                <p class="lesson-mode-note">{move || t().lesson_mode_note}</p>
            </Show>
            // Not a live region: it would read the answer token by token. The announcer
            // below says each answer once, when it ends.
            <section id=MESSAGES_ID class="messages" on:scroll=on_scroll>
                <Show when=move || is_new_chat() && ui.items.with(Vec::is_empty)>
                    <div class="empty">
                        <h2>{move || t().empty_title}</h2>
                        <p>{move || t().empty_hint}</p>
                    </div>
                </Show>
                <Suspense>
                    {move || Suspend::new(async move {
                        match history.await {
                            Ok(Some(view)) => view! { <History view=view /> }.into_any(),
                            Ok(None) => ().into_any(),
                            Err(e) => {
                                let missing = e.code == ErrorCode::NotFound;
                                view! {
                                    <p class="history-error" role="alert">
                                        {move || if missing { t().conversation_missing } else { t().history_unavailable }}
                                    </p>
                                }
                                .into_any()
                            }
                        }
                    })}
                </Suspense>
                <For each=move || ui.items.get() key=|item| item.key let:item>
                    <Message item=item />
                </For>
            </section>
            <button
                type="button"
                class="jump"
                class:hidden=move || ui.follow.get()
                on:click=jump
            >
                {move || t().jump_to_latest}
            </button>
            {move || ui.version_error.get().map(|error| {
                let code = error.code.map_or("connection_lost", |c| c.as_str());
                let text = match error.code {
                    Some(code) => t().error_text(code),
                    None => t().connection_lost,
                };
                let tooltip = server_words(lang.get(), error.detail);
                view! { <p class="msg-error version-error" role="alert" data-code=code title=tooltip>{text}</p> }
            })}
            <form class="composer" on:submit=move |ev| { ev.prevent_default(); submit(); }>
                // Read-only rather than disabled while an answer streams: a disabled
                // field drops keyboard focus, and Esc (stop) and the next question
                // start from here.
                <textarea
                    node_ref=input
                    name="question"
                    rows="2"
                    placeholder=move || t().placeholder
                    prop:value=move || draft.get()
                    on:input=move |ev| draft.set(event_target_value(&ev))
                    on:keydown=on_keydown
                    readonly=answering
                    aria-disabled=move || answering().then_some("true")
                    aria-label=move || t().placeholder
                ></textarea>
                <Show
                    when=answering
                    fallback=move || view! {
                        <button type="submit" class="send" disabled=move || !ui.can_ask()>
                            {move || t().send}
                        </button>
                    }
                >
                    <button type="button" class="stop" on:click=stop>{move || t().stop}</button>
                </Show>
            </form>
            <p class="privacy-note" data-read-all=teachers_read_all.to_string()>
                {move || if teachers_read_all { t().privacy_read_all } else { t().privacy_shared_only }}
            </p>
            <BudgetMeter ui=ui />
            <AnswerAnnouncer ui=ui />
            <p class="composer-hint" data-wait=move || ui.wait_seconds()>
                {move || {
                    let wait = ui.wait_seconds();
                    if wait > 0 {
                        format!("{} {wait} {}.", t().ask_again_in, t().seconds_short)
                    } else if ui.answering_elsewhere() {
                        t().answering_elsewhere.to_string()
                    } else if connected() || !hydrated.get() {
                        t().hint_keys.to_string()
                    } else if ui.conn.get() == ConnState::TooManyTabs {
                        t().too_many_tabs_hint.to_string()
                    } else {
                        t().not_connected_hint.to_string()
                    }
                }}
            </p>
        </div>
    }
}

/// A screen reader's view of the answers: each answer is announced once, when it
/// ends, rather than token by token as the message list changes. The region keeps
/// its last text until the next answer ends, so nothing changes while one streams.
#[component]
fn AnswerAnnouncer(ui: ChatUi) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let announcement = RwSignal::new(String::new());
    // Which answer was said last: the key, and the server's id, as an answer adopted
    // after a reload and one adopted on another conversation share a key.
    let announced = StoredValue::new(None::<(u64, Option<String>)>);
    Effect::new(move |_| {
        let Some(item) = ui.items.with(|items| items.iter().rev().find(|i| i.role == Role::Tutor).copied()) else {
            return;
        };
        let status = item.status.get();
        if !matches!(status, ItemStatus::Complete | ItemStatus::Stopped) {
            return;
        }
        let which = Some((item.key, item.message_id.get_untracked()));
        if announced.with_value(|last| *last == which) {
            return;
        }
        announced.set_value(which);
        let s = lang.get_untracked().t();
        let mut text = format!("{}: {}", s.tutor, item.text.get_untracked());
        if status == ItemStatus::Stopped {
            text.push_str(&format!(" ({})", s.stopped_note));
        }
        announcement.set(text);
    });
    view! {
        <div class="announcer visually-hidden" role="status" aria-live="polite" aria-atomic="true">
            {move || announcement.get()}
        </div>
    }
}

/// The question budget: questions left of the capacity, as a bar of pips, and when the
/// next comes back. It only reads signals; the client's interval moves them.
#[component]
fn BudgetMeter(ui: ChatUi) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    move || {
        ui.budget.get().map(|meter| {
            let pips = (0..meter.capacity)
                .map(|i| view! { <span class="budget-pip" class:full=i < meter.remaining></span> })
                .collect_view();
            let next = (meter.remaining < meter.capacity)
                .then(|| view! { <span class="budget-next">{format!("{} {} {}", t().budget_next_in, meter.next_in_seconds(), t().seconds_short)}</span> });
            view! {
                <div
                    class="budget"
                    data-remaining=meter.remaining
                    data-capacity=meter.capacity
                    data-next=meter.next_in_seconds()
                    title=move || t().budget_hint
                >
                    <span class="budget-label">
                        {format!("{}: {} {} {}", t().budget_label, meter.remaining, t().budget_of, meter.capacity)}
                    </span>
                    <span class="budget-pips" aria-hidden="true">{pips}</span>
                    {next}
                </div>
            }
        })
    }
}

/// A conversation's stored messages, with a button for older pages.
#[component]
fn History(view: ConversationView) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let older = RwSignal::new(Vec::<StoredMessage>::new());
    let older_cursor = RwSignal::new(view.older_cursor);
    let loading = RwSignal::new(false);
    let id = view.id.clone();
    let load_earlier = move |_| {
        let Some(before) = older_cursor.get_untracked() else {
            return;
        };
        loading.set(true);
        let id = id.clone();
        leptos::task::spawn_local(async move {
            if let Ok(page) = load_conversation(id, Some(before)).await {
                older.update(|o| {
                    let mut merged = page.messages;
                    merged.append(o);
                    *o = merged;
                });
                older_cursor.set(page.older_cursor);
            }
            loading.set(false);
        });
    };
    let mut messages = view.messages;
    // Only the last answer can be regenerated (and only while none was asked on this
    // page since: then the newest live one is the last).
    let last_answer = messages.iter().rev().find(|m| m.role == MessageRole::Assistant).map(|m| m.id.clone());
    // An answer still being written when the page was rendered (a reload mid-answer):
    // shown live, and followed once the socket is up.
    // (A teacher's reply may have come after it: the answer is taken out and shown last.)
    let streaming = messages
        .iter()
        .rposition(|m| m.role != MessageRole::Teacher)
        .filter(|&at| messages[at].role == MessageRole::Assistant && messages[at].status == MessageStatus::Streaming)
        .map(|at| messages.remove(at));
    let live_tail = streaming.map(|stored| {
        let ui = expect_context::<ChatUi>();
        let client = expect_context::<ChatClient>();
        let item = ChatItem::new(ADOPTED_KEY, Role::Tutor, stored.content, ItemStatus::Streaming);
        item.sources.set(stored.sources);
        item.faq_id.set(stored.faq_id);
        item.versions.set(stored.versions);
        item.message_id.set(Some(stored.id.clone()));
        let message_id = stored.id;
        Effect::new(move |_| {
            ui.adopt(item, message_id.clone());
            client.resume_if_connected();
        });
        view! { <Message item=item /> }
    });
    view! {
        <Show when=move || older_cursor.get().is_some()>
            <button type="button" class="load-earlier" on:click=load_earlier.clone() disabled=move || loading.get()>
                {move || t().load_earlier}
            </button>
        </Show>
        <For each=move || older.get() key=|m| m.id.clone() let:m>
            <StoredMessageView message=m last=false />
        </For>
        {messages
            .into_iter()
            .map(|m| {
                let last = last_answer.as_deref() == Some(m.id.as_str());
                view! { <StoredMessageView message=m last=last /> }
            })
            .collect_view()}
        {live_tail}
    }
}

/// Live items count up from 1; an adopted stored answer takes a key they never reach.
const ADOPTED_KEY: u64 = u64::MAX;

/// A stored message; `last` marks the conversation's last answer (it can be regenerated).
#[component]
fn StoredMessageView(message: StoredMessage, last: bool) -> impl IntoView {
    let ui = expect_context::<ChatUi>();
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let role = message.role;
    let (class, is_student) = match role {
        MessageRole::User => ("msg msg-student msg-stored", true),
        MessageRole::Assistant => ("msg msg-tutor msg-stored", false),
        MessageRole::Teacher => ("msg msg-teacher msg-stored", false),
    };
    let status = message.status;
    let error_code = message.error_code;
    let rateable = role == MessageRole::Assistant && matches!(status, MessageStatus::Complete | MessageStatus::Stopped);
    let feedback = rateable.then(|| view! {
        <FeedbackBar message_id=message.id.clone() initial=message.feedback.clone() />
        <AskTeacher message_id=message.id.clone() initial=message.teacher_request />
    });
    let answer_tools = (role == MessageRole::Assistant).then(|| {
        // A failed or cut answer is the likeliest to be asked again.
        let regenerate = (last && status != MessageStatus::Streaming).then(|| {
            let id = message.id.clone();
            // Once an answer was asked for on this page, that one is the last.
            move || ui.last_live_answer_key().is_none().then(|| view! { <RegenerateButton message_id=id.clone() /> })
        });
        view! {
            <div class="msg-tools">
                <VersionSwitcher versions=Signal::stored(message.versions.clone()) current=Signal::stored(Some(message.id.clone())) />
                {regenerate}
            </div>
        }
    });
    view! {
        <article class=class data-status=status.as_str() data-message-id=message.id.clone() id=message.id.clone()>
            <div class="msg-who">{move || match role {
                MessageRole::User => t().you,
                MessageRole::Assistant => t().tutor,
                MessageRole::Teacher => t().teacher,
            }}</div>
            <div class="msg-body">
                {if is_student {
                    view! {
                        <StudentQuestion
                            text=Signal::stored(message.content.clone())
                            message_id=Signal::stored(Some(message.id.clone()))
                            versions=Signal::stored(message.versions.clone())
                        />
                    }.into_any()
                } else {
                    let text = crate::render::with_seams(&message.content, &message.seams);
                    if status == MessageStatus::Streaming {
                        // Split like a live answer, so the cursor sits at the open block's end.
                        view! { <AnswerText text=Signal::stored(text) sources=Signal::stored(message.sources.clone()) live=true /> }.into_any()
                    } else {
                        view! { <StoredAnswerText text=text sources=message.sources.clone() /> }.into_any()
                    }
                }}
                {(status == MessageStatus::Streaming).then(|| view! { <span class="cursor" aria-hidden="true"></span> })}
            </div>
            <SourceList sources=Signal::stored(message.sources) />
            <FaqBadge faq_id=Signal::stored(message.faq_id) />
            {match status {
                MessageStatus::Stopped => Some(view! { <p class="msg-note">{move || t().stopped_note}</p> }.into_any()),
                MessageStatus::Interrupted => Some(view! { <p class="msg-note">{move || t().interrupted_note}</p> }.into_any()),
                MessageStatus::Streaming => Some(view! { <p class="msg-note">{move || t().still_streaming_note}</p> }.into_any()),
                MessageStatus::Error => {
                    let code = error_code.unwrap_or(ErrorCode::Internal);
                    Some(view! {
                        <p class="msg-error" data-code=code.as_str()>{move || t().error_text(code)}</p>
                    }.into_any())
                }
                MessageStatus::Complete => None,
            }}
            {answer_tools}
            {feedback}
        </article>
    }
    .into_any()
}

#[component]
fn Message(item: ChatItem) -> impl IntoView {
    let ui = expect_context::<ChatUi>();
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let (class, who) = match item.role {
        Role::Student => ("msg msg-student", Role::Student),
        Role::Tutor => ("msg msg-tutor", Role::Tutor),
        Role::Teacher => ("msg msg-teacher", Role::Teacher),
    };
    let status = move || match item.status.get() {
        ItemStatus::Waiting => "waiting",
        ItemStatus::Streaming => "streaming",
        ItemStatus::Complete => "complete",
        ItemStatus::Stopped => "stopped",
        ItemStatus::Interrupted => "interrupted",
        ItemStatus::Failed => "failed",
    };
    let live = move || matches!(item.status.get(), ItemStatus::Waiting | ItemStatus::Streaming);
    let error_text = move || {
        item.error.get().map(|e| {
            let s = t();
            let mut text = match e.code {
                Some(code) => s.error_text(code).to_string(),
                None => s.connection_lost.to_string(),
            };
            if let Some(secs) = e.retry_after {
                text.push_str(&format!(" {} {secs} {}.", s.retry_in, s.seconds_short));
            }
            let code = e.code.map(|c| c.as_str()).unwrap_or("connection_lost");
            let tooltip = server_words(lang.get(), e.detail);
            view! { <p class="msg-error" role="alert" data-code=code title=tooltip>{text}</p> }
        })
    };
    view! {
        <article class=class data-status=status>
            <div class="msg-who">
                {move || match who { Role::Student => t().you, Role::Tutor => t().tutor, Role::Teacher => t().teacher }}
            </div>
            <div class="msg-body">
                {match who {
                    Role::Student => view! {
                        <StudentQuestion text=item.text.into() message_id=item.message_id.into() versions=item.versions.into() />
                    }.into_any(),
                    Role::Tutor | Role::Teacher => view! { <AnswerText text=item.text sources=item.sources live=Signal::derive(live) /> }.into_any(),
                }}
                <Show when=live>
                    <span class="cursor" aria-hidden="true"></span>
                </Show>
            </div>
            <SourceList sources=item.sources />
            <FaqBadge faq_id=item.faq_id />
            <Show when=move || item.status.get() == ItemStatus::Stopped>
                <p class="msg-note">{move || t().stopped_note}</p>
            </Show>
            <Show when=move || item.status.get() == ItemStatus::Interrupted>
                <p class="msg-note">{move || t().interrupted_note}</p>
            </Show>
            <Show when=move || item.context_truncated.get()>
                <p class="context-note">{move || t().context_note}</p>
            </Show>
            {error_text}
            {(who == Role::Tutor).then(|| view! {
                <div class="msg-tools">
                    <VersionSwitcher versions=item.versions.into() current=item.message_id.into() />
                    {move || {
                        let finished = matches!(
                            item.status.get(),
                            ItemStatus::Complete | ItemStatus::Stopped | ItemStatus::Failed | ItemStatus::Interrupted
                        );
                        // The newest answer on the page (an adopted one is not in the list).
                        let last = ui.last_live_answer_key().is_none_or(|key| key == item.key);
                        match (finished && last, item.message_id.get()) {
                            (true, Some(id)) => Some(view! { <RegenerateButton message_id=id /> }),
                            _ => None,
                        }
                    }}
                </div>
            })}
            {move || {
                let finished = matches!(item.status.get(), ItemStatus::Complete | ItemStatus::Stopped);
                match (who, finished, item.message_id.get()) {
                    (Role::Tutor, true, Some(id)) => Some(view! {
                        <FeedbackBar message_id=id.clone() initial=None />
                        <AskTeacher message_id=id initial=None />
                    }),
                    _ => None,
                }
            }}
        </article>
    }
}

/// The server's own words about an error, for the tooltip: they are English, so a
/// page in another language shows only its own text.
fn server_words(lang: Lang, detail: String) -> Option<String> {
    (lang == Lang::En && !detail.is_empty()).then_some(detail)
}
