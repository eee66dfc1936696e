//! Tutor Chat: a real-time AI tutor. One crate, two builds: `ssr` (the axum server)
//! and `hydrate` (the WASM that takes over the server-rendered page).

pub mod account;
pub mod app;
pub mod chat;
pub mod history;
pub mod i18n;
pub mod lessons;
pub mod page;
pub mod platform;
pub mod protocol;
pub mod render;

#[cfg(all(test, feature = "ssr"))]
mod proptests;

#[cfg(feature = "ssr")]
pub mod auth;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod settings;
#[cfg(feature = "ssr")]
pub mod upstream;

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
