//! The chat page's socket client, as components see it: a [`ChatClient`] handle in
//! context with the same methods in both builds. In the browser it owns the WebSocket
//! (connect, heartbeat, backoff with jitter, resume, autoscroll; `browser.rs`); on the
//! server, where a page is only rendered, its twin does nothing (`server.rs`).

#[cfg(feature = "hydrate")]
mod browser;
#[cfg(not(feature = "hydrate"))]
mod server;

#[cfg(feature = "hydrate")]
pub use browser::ChatClient;
#[cfg(not(feature = "hydrate"))]
pub use server::ChatClient;
