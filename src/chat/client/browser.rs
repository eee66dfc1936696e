//! The browser's socket client. It owns the WebSocket: connects after hydration,
//! sends heartbeats, notices a dead server, and reconnects with capped exponential
//! backoff plus jitter. Frames go straight into [`ChatUi`] signals, so the answer on
//! screen is always the concatenation of every chunk received.
//!
//! Each connection is one task over gloo-net's WebSocket, a `Stream` of frames and a
//! `Sink` for ours, like the server's socket loop: it waits for the socket to open,
//! then serves what arrives, what the page sends (through an outbox) and a hang-up
//! from the page, until the socket closes. See docs/client.md.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::poll_fn;
use futures::{FutureExt, SinkExt, StreamExt};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, State, WebSocketError};
use leptos::prelude::*;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::Event;

use crate::chat::state::{Applied, ChatUi, ConnState};
use crate::page::MESSAGES_ID;
use crate::protocol::{ClientFrame, ServerFrame};

const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);
/// How often the question budget's meter moves on screen.
const BUDGET_TICK: Duration = Duration::from_millis(200);
/// No frame at all (pongs included) for this long means the server is gone.
const DEAD_AFTER_MS: f64 = 45_000.0;
const BACKOFF_BASE_MS: f64 = 500.0;
const BACKOFF_CAP_MS: f64 = 15_000.0;
/// Pixels from the bottom that still count as "at the bottom" for autoscroll.
const FOLLOW_SLACK_PX: i32 = 48;

/// The page's handle on its one client, provided as context by `App`.
#[derive(Clone, Copy)]
pub struct ChatClient(StoredValue<Rc<Client>, LocalStorage>);

struct Client {
    ui: ChatUi,
    connection: RefCell<Option<Connection>>,
    attempt: Cell<u32>,
    last_frame_at: Cell<f64>,
    reconnect_scheduled: Cell<bool>,
    /// When the question budget's meter was last moved (or set by a `budget` frame).
    budget_moved_at: Cell<f64>,
    /// The server refused the current socket (too many tabs): milliseconds to wait
    /// before the next one, instead of the backoff's.
    refused_retry_ms: Cell<Option<u64>>,
}

/// The page's side of one socket. Dropping it hangs up: the socket's task stops
/// without reporting a loss, and dropping gloo-net's socket closes it.
struct Connection {
    /// The JS socket the task reads, kept here for its `readyState`: a frame is only
    /// sent on a socket that is open now, as the browser sees it.
    socket: web_sys::WebSocket,
    outbox: mpsc::UnboundedSender<String>,
    _hang_up: oneshot::Sender<()>,
    /// Its task has sent what a new connection sends first (`reconnect_frame`).
    greeted: Cell<bool>,
}

impl Connection {
    fn is_open(&self) -> bool {
        self.socket.ready_state() == web_sys::WebSocket::OPEN
    }
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

impl ChatClient {
    pub fn new(ui: ChatUi) -> Self {
        ChatClient(StoredValue::new_local(Rc::new(Client {
            ui,
            connection: RefCell::new(None),
            attempt: Cell::new(0),
            last_frame_at: Cell::new(now_ms()),
            reconnect_scheduled: Cell::new(false),
            budget_moved_at: Cell::new(now_ms()),
            refused_retry_ms: Cell::new(None),
        })))
    }

    fn client(self) -> Rc<Client> {
        self.0.get_value()
    }

    /// Starts the client once per page, after hydration.
    pub fn start(self) {
        let client = self.client();
        connect(&client);

        let heartbeat = client.clone();
        let _ = set_interval_with_handle(move || beat(&heartbeat), HEARTBEAT_EVERY);
        let ui = client.ui;
        let _ = set_interval_with_handle(move || ui.tick_second(), Duration::from_secs(1));
        // The budget's meter moves by the time that passed here since the server's
        // last `budget` frame: durations only, so the browser's clock may be off.
        let budget = client.clone();
        let _ = set_interval_with_handle(
            move || {
                let now = now_ms();
                let elapsed = (now - budget.budget_moved_at.replace(now)).max(0.0);
                budget.ui.tick_budget(elapsed as u64);
            },
            BUDGET_TICK,
        );

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

    /// Sends a frame on the open socket; false when there is none.
    pub fn send(self, frame: &ClientFrame) -> bool {
        send(&self.client(), frame)
    }

    /// Asks the server for the answer this page is waiting for, when the socket is open.
    pub fn resume_if_connected(self) {
        resume_if_connected(&self.client());
    }

    /// Sends the question the page shows as not started yet (one restored after a
    /// reload), when the socket is open and past its opening; a socket still opening
    /// sends it itself (`reconnect_frame`), and sending it here too would ask twice.
    pub fn send_unsent(self) {
        let client = self.client();
        let greeted = client.connection.borrow().as_ref().is_some_and(|c| c.is_open() && c.greeted.get());
        if greeted {
            if let Some(frame) = client.ui.reconnect_frame() {
                send(&client, &frame);
            }
        }
    }

    /// A fresh `ask_id`: 104 random bits. It only has to differ from this student's
    /// other questions (the server keeps it per user), so `Math.random` does, and it
    /// works where `crypto.randomUUID` does not (a plain-http address on a LAN).
    pub fn new_ask_id(self) -> String {
        let part = || (js_sys::Math::random() * (1u64 << 52) as f64) as u64;
        format!("{:013x}{:013x}", part(), part())
    }

    /// Scrolls the message list to the newest line (when following, or when forced).
    pub fn scroll_to_latest(self, force: bool) {
        scroll_to_latest(self.client().ui, force);
    }

    /// The student scrolled the message list: autoscroll follows the answer only while
    /// the list is at (or near) its bottom.
    pub fn follow_if_at_bottom(self) {
        if let Some(el) = document().get_element_by_id(MESSAGES_ID) {
            let gap = el.scroll_height() - el.scroll_top() - el.client_height();
            self.client().ui.follow.set(gap <= FOLLOW_SLACK_PX);
        }
    }
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

fn send(client: &Client, frame: &ClientFrame) -> bool {
    let connection = client.connection.borrow();
    let Some(connection) = connection.as_ref().filter(|c| c.is_open()) else {
        return false;
    };
    match serde_json::to_string(frame) {
        Ok(text) => connection.outbox.unbounded_send(text).is_ok(),
        Err(_) => false,
    }
}

fn resume_if_connected(client: &Client) {
    if let Some(message_id) = client.ui.resume_target() {
        send(client, &ClientFrame::Resume { message_id });
    }
}

thread_local! {
    /// A scroll already waits for the next frame: `Some(forced)`. A long answer's
    /// chunks arrive by the hundred per frame; one scroll a frame is enough.
    static SCROLL_PENDING: Cell<Option<bool>> = const { Cell::new(None) };
}

fn scroll_to_latest(ui: ChatUi, force: bool) {
    if let Some(forced) = SCROLL_PENDING.get() {
        SCROLL_PENDING.set(Some(forced || force));
        return;
    }
    SCROLL_PENDING.set(Some(force));
    // Decided inside the frame callback: a scroll-up by the student between this call
    // and the next frame must win over an older decision to follow.
    request_animation_frame(move || {
        let force = SCROLL_PENDING.take().unwrap_or(force);
        if !(force || ui.follow.get_untracked()) {
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
    client.refused_retry_ms.set(None);
    // Dropping the old connection hangs up its task, which closes its socket.
    client.connection.borrow_mut().take();

    let Some(url) = socket_url() else {
        schedule_reconnect(client);
        return;
    };
    let Ok(raw) = web_sys::WebSocket::new(&url) else {
        schedule_reconnect(client);
        return;
    };
    let Ok(socket) = WebSocket::try_from(raw.clone()) else {
        let _ = raw.close();
        schedule_reconnect(client);
        return;
    };
    let (outbox, outgoing) = mpsc::unbounded();
    let (hang_up, hung_up) = oneshot::channel();
    *client.connection.borrow_mut() = Some(Connection {
        socket: raw,
        outbox,
        _hang_up: hang_up,
        greeted: Cell::new(false),
    });
    leptos::task::spawn_local(run_connection(client.clone(), socket, outgoing, hung_up));
}

/// What woke a connection's task.
enum Wake {
    /// The page dropped this connection (replaced it, or found the server dead).
    HungUp,
    /// A frame from the page to send.
    Send(String),
    /// A frame, an error or the end from the socket.
    Received(Option<Result<Message, WebSocketError>>),
}

/// One socket from opening to closing. A hang-up ends it silently; a close (or a
/// failure to open) is reported to the page, which reconnects.
async fn run_connection(
    client: Rc<Client>,
    mut socket: WebSocket,
    mut outgoing: mpsc::UnboundedReceiver<String>,
    mut hung_up: oneshot::Receiver<()>,
) {
    // The sink is ready once the socket has left CONNECTING: open, or failed.
    let hung_up_early = poll_fn(|cx| {
        if hung_up.poll_unpin(cx).is_ready() {
            return Poll::Ready(true);
        }
        socket.poll_ready_unpin(cx).map(|_| false)
    })
    .await;
    if hung_up_early {
        return;
    }
    if matches!(socket.state(), State::Open) {
        // "Connected", and the backoff starting over, wait for the server's `hello`
        // (see `receive`): a socket the server refuses opens too.
        client.last_frame_at.set(now_ms());
        // An answer under way when the connection dropped goes on being written on
        // the server: follow it again. A question whose `start` never came is sent
        // again as it was: the server follows what the first one began, if it got it.
        if let Some(frame) = client.ui.reconnect_frame() {
            send(&client, &frame);
        }
        if let Some(connection) = client.connection.borrow().as_ref() {
            connection.greeted.set(true);
        }
        loop {
            // The hang-up first: nothing of a dropped connection reaches the page.
            let wake = poll_fn(|cx| {
                match (hung_up.poll_unpin(cx), outgoing.poll_next_unpin(cx)) {
                    (Poll::Ready(_), _) | (_, Poll::Ready(None)) => return Poll::Ready(Wake::HungUp),
                    (_, Poll::Ready(Some(text))) => return Poll::Ready(Wake::Send(text)),
                    _ => {}
                }
                socket.poll_next_unpin(cx).map(Wake::Received)
            })
            .await;
            match wake {
                Wake::HungUp => return,
                Wake::Send(text) => {
                    let _ = socket.send(Message::Text(text)).await;
                }
                Wake::Received(Some(Ok(message))) => {
                    client.last_frame_at.set(now_ms());
                    if let Message::Text(text) = message {
                        receive(&client, &text);
                    }
                }
                // An error event or the close event: the end of the stream follows.
                Wake::Received(Some(Err(_))) => {}
                Wake::Received(None) => break,
            }
        }
    }
    client.ui.connection_lost();
    if let Some(delay) = client.refused_retry_ms.take() {
        // Refused for too many tabs: the label says so until a try gets in. Jittered,
        // so a class's refused tabs do not all come back at the same moment.
        schedule_reconnect_in(&client, delay as f64 * (1.0 + 0.5 * js_sys::Math::random()));
        return;
    }
    client.ui.conn.set(if window().navigator().on_line() {
        ConnState::Reconnecting
    } else {
        ConnState::Offline
    });
    schedule_reconnect(&client);
}

fn receive(client: &Client, text: &str) {
    match serde_json::from_str::<ServerFrame>(text) {
        Ok(frame) => {
            match frame {
                ServerFrame::Budget { .. } => client.budget_moved_at.set(now_ms()),
                ServerFrame::Hello { .. } => {
                    client.attempt.set(0);
                    client.ui.conn.set(ConnState::Connected);
                }
                _ => {}
            }
            match client.ui.apply(frame) {
                Applied::Resync => resume_if_connected(client),
                Applied::Refused { retry_after_ms } => client.refused_retry_ms.set(Some(retry_after_ms)),
                Applied::Done => {}
            }
            scroll_to_latest(client.ui, false);
        }
        Err(e) => leptos::logging::warn!("ignoring a frame this client does not know: {e}"),
    }
}

/// Equal jitter on a capped exponential: a random point in the upper half of the
/// ceiling. It spreads a classroom of tabs that all lost the server at once, instead
/// of having them return in lockstep, and never retries sooner than half the ceiling.
fn backoff_ms(attempt: u32) -> f64 {
    let ceiling = (BACKOFF_BASE_MS * 2f64.powi(attempt.min(16) as i32)).min(BACKOFF_CAP_MS);
    ceiling * (0.5 + 0.5 * js_sys::Math::random())
}

fn schedule_reconnect(client: &Rc<Client>) {
    if client.reconnect_scheduled.get() {
        return;
    }
    let attempt = client.attempt.get();
    client.attempt.set(attempt.saturating_add(1));
    schedule_reconnect_in(client, backoff_ms(attempt));
}

fn schedule_reconnect_in(client: &Rc<Client>, delay_ms: f64) {
    if client.reconnect_scheduled.replace(true) {
        return;
    }
    let c = client.clone();
    set_timeout(move || connect(&c), Duration::from_millis(delay_ms as u64));
}

fn beat(client: &Rc<Client>) {
    let open = client.connection.borrow().as_ref().is_some_and(Connection::is_open);
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
    send(client, &ClientFrame::Ping { t: now_ms() });
}
