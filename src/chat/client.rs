//! The browser's socket client (WASM only). It owns the WebSocket: connects after
//! hydration, sends heartbeats, notices a dead server, and reconnects with capped
//! exponential backoff plus jitter. Frames go straight into [`ChatUi`] signals, so
//! the answer on screen is always the concatenation of every chunk received.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::*;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};

use super::state::{ChatUi, ConnState};
use crate::page::MESSAGES_ID;
use crate::protocol::{ClientFrame, ServerFrame};

const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);
/// No frame at all (pongs included) for this long means the server is gone.
const DEAD_AFTER_MS: f64 = 45_000.0;
const BACKOFF_BASE_MS: f64 = 500.0;
const BACKOFF_CAP_MS: f64 = 15_000.0;

/// One live WebSocket and the JS callbacks it holds, detached when it is replaced.
struct Connection {
    socket: WebSocket,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        let _ = self.socket.close();
    }
}

struct Client {
    ui: ChatUi,
    connection: RefCell<Option<Connection>>,
    /// Bumped per connection so that callbacks of an old socket are ignored.
    generation: Cell<u32>,
    attempt: Cell<u32>,
    last_frame_at: Cell<f64>,
    reconnect_scheduled: Cell<bool>,
}

thread_local! {
    static CLIENT: RefCell<Option<Rc<Client>>> = const { RefCell::new(None) };
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Starts the client once per page.
pub fn start(ui: ChatUi) {
    let client = Rc::new(Client {
        ui,
        connection: RefCell::new(None),
        generation: Cell::new(0),
        attempt: Cell::new(0),
        last_frame_at: Cell::new(now_ms()),
        reconnect_scheduled: Cell::new(false),
    });
    CLIENT.with(|c| *c.borrow_mut() = Some(client.clone()));
    connect(&client);

    let heartbeat = client.clone();
    let _ = set_interval_with_handle(move || beat(&heartbeat), HEARTBEAT_EVERY);
    let _ = set_interval_with_handle(move || ui.tick_second(), Duration::from_secs(1));

    let window = window();
    let offline_client = client.clone();
    let on_offline = Closure::<dyn FnMut(Event)>::new(move |_| {
        offline_client.ui.conn.set(ConnState::Offline);
    });
    let online_client = client.clone();
    let on_online = Closure::<dyn FnMut(Event)>::new(move |_| {
        if online_client.ui.conn.get_untracked() != ConnState::Connected {
            online_client.attempt.set(0);
            connect(&online_client);
        }
    });
    let _ = window.add_event_listener_with_callback("offline", on_offline.as_ref().unchecked_ref());
    let _ = window.add_event_listener_with_callback("online", on_online.as_ref().unchecked_ref());
    // One listener for every code block's copy button, present and future.
    let on_click = Closure::<dyn FnMut(Event)>::new(copy_code);
    let _ = document().add_event_listener_with_callback("click", on_click.as_ref().unchecked_ref());
    // These live as long as the page.
    on_offline.forget();
    on_online.forget();
    on_click.forget();
}

/// A click on a code block's copy button puts the block's text on the clipboard and
/// marks the button (`data-copied`) for a moment.
fn copy_code(event: Event) {
    let Some(button) = event
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .and_then(|el| el.closest(".copy-code").ok().flatten())
    else {
        return;
    };
    let Some(code) = button
        .parent_element()
        .and_then(|block| block.query_selector("code").ok().flatten())
    else {
        return;
    };
    let text = code.text_content().unwrap_or_default();
    // navigator.clipboard.writeText(text), through Reflect: no unstable web-sys API.
    let clipboard = js_sys::Reflect::get(&window().navigator(), &"clipboard".into()).ok();
    let write = clipboard.as_ref().and_then(|c| {
        let f = js_sys::Reflect::get(c, &"writeText".into()).ok()?;
        f.dyn_into::<js_sys::Function>().ok()?.call1(c, &text.into()).ok()
    });
    let Some(promise) = write.and_then(|p| p.dyn_into::<js_sys::Promise>().ok()) else {
        return;
    };
    let marked = button.clone();
    let on_done = Closure::<dyn FnMut(wasm_bindgen::JsValue)>::new(move |_| {
        let _ = marked.set_attribute("data-copied", "true");
        let unmark = marked.clone();
        set_timeout(move || { let _ = unmark.remove_attribute("data-copied"); }, Duration::from_secs(2));
    });
    let _ = promise.then(&on_done);
    // Called once by the promise; a few bytes per click is the price of no unstable API.
    on_done.forget();
}

/// Sends a frame on the open socket; false when there is none.
pub fn send(frame: &ClientFrame) -> bool {
    CLIENT.with(|c| {
        let Some(client) = c.borrow().clone() else {
            return false;
        };
        let connection = client.connection.borrow();
        let Some(connection) = connection.as_ref() else {
            return false;
        };
        if connection.socket.ready_state() != WebSocket::OPEN {
            return false;
        }
        match serde_json::to_string(frame) {
            Ok(text) => connection.socket.send_with_str(&text).is_ok(),
            Err(_) => false,
        }
    })
}

/// Asks the server for the answer this page is waiting for, when the socket is open.
pub fn resume_if_connected() {
    let target = CLIENT.with(|c| c.borrow().as_ref().and_then(|c| c.ui.resume_target()));
    if let Some(message_id) = target {
        send(&ClientFrame::Resume { message_id });
    }
}

/// Scrolls the message list to the newest line (when following, or when forced).
pub fn scroll_to_latest(force: bool) {
    // Decided inside the frame callback: a scroll-up by the student between this call
    // and the next frame must win over an older decision to follow.
    request_animation_frame(move || {
        let follow = CLIENT.with(|c| c.borrow().as_ref().map(|c| c.ui.follow.get_untracked()));
        if !(force || follow.unwrap_or(true)) {
            return;
        }
        if let Some(el) = document().get_element_by_id(MESSAGES_ID) {
            el.set_scroll_top(el.scroll_height());
        }
    });
}

fn socket_url() -> Option<String> {
    let location = window().location();
    let scheme = if location.protocol().ok()? == "https:" { "wss" } else { "ws" };
    Some(format!("{scheme}://{}/ws/chat", location.host().ok()?))
}

fn connect(client: &Rc<Client>) {
    client.reconnect_scheduled.set(false);
    // Dropping the old connection detaches its callbacks and closes it.
    client.connection.borrow_mut().take();
    let generation = client.generation.get().wrapping_add(1);
    client.generation.set(generation);

    let Some(url) = socket_url() else {
        schedule_reconnect(client);
        return;
    };
    let socket = match WebSocket::new(&url) {
        Ok(socket) => socket,
        Err(_) => {
            schedule_reconnect(client);
            return;
        }
    };

    let c = client.clone();
    let on_open = Closure::<dyn FnMut(Event)>::new(move |_| {
        if c.generation.get() != generation {
            return;
        }
        c.attempt.set(0);
        c.last_frame_at.set(now_ms());
        c.ui.conn.set(ConnState::Connected);
        // An answer under way when the connection dropped goes on being written on
        // the server: follow it again.
        resume_if_connected();
    });
    let c = client.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        if c.generation.get() != generation {
            return;
        }
        c.last_frame_at.set(now_ms());
        let Some(text) = event.data().as_string() else {
            return;
        };
        match serde_json::from_str::<ServerFrame>(&text) {
            Ok(frame) => {
                c.ui.apply(frame);
                scroll_to_latest(false);
            }
            Err(e) => leptos::logging::warn!("ignoring a frame this client does not know: {e}"),
        }
    });
    let c = client.clone();
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |_| {
        if c.generation.get() != generation {
            return;
        }
        c.ui.connection_lost();
        c.ui.conn.set(if window().navigator().on_line() {
            ConnState::Reconnecting
        } else {
            ConnState::Offline
        });
        schedule_reconnect(&c);
    });
    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    *client.connection.borrow_mut() = Some(Connection {
        socket,
        _on_open: on_open,
        _on_message: on_message,
        _on_close: on_close,
    });
}

/// Full jitter on a capped exponential: spreads a classroom of tabs that all lost the
/// server at once, instead of having them return in lockstep.
fn backoff_ms(attempt: u32) -> f64 {
    let ceiling = (BACKOFF_BASE_MS * 2f64.powi(attempt.min(16) as i32)).min(BACKOFF_CAP_MS);
    ceiling * (0.5 + 0.5 * js_sys::Math::random())
}

fn schedule_reconnect(client: &Rc<Client>) {
    if client.reconnect_scheduled.replace(true) {
        return;
    }
    let attempt = client.attempt.get();
    client.attempt.set(attempt.saturating_add(1));
    let delay = backoff_ms(attempt);
    let c = client.clone();
    set_timeout(move || connect(&c), Duration::from_millis(delay as u64));
}

fn beat(client: &Rc<Client>) {
    let open = client
        .connection
        .borrow()
        .as_ref()
        .is_some_and(|c| c.socket.ready_state() == WebSocket::OPEN);
    if !open {
        return;
    }
    if now_ms() - client.last_frame_at.get() > DEAD_AFTER_MS {
        // The server stopped answering without closing: treat it as closed.
        client.ui.connection_lost();
        client.ui.conn.set(ConnState::Reconnecting);
        client.connection.borrow_mut().take();
        schedule_reconnect(client);
        return;
    }
    send(&ClientFrame::Ping { t: now_ms() });
}
