//! Tutor Chat: a real-time AI tutor. One crate, two builds: `ssr` (the axum server)
//! and `hydrate` (the WASM that takes over the server-rendered page).
//!
//! Modules are listed from the ground up (docs/architecture.md): each imports only
//! from modules above it in this list, which `tests/layers.rs` checks.

// Ground floor: both builds.
pub mod cookies;
pub mod protocol;
pub mod i18n;
pub mod page;
pub mod platform;
pub mod error;
pub mod render;
#[cfg(feature = "ssr")]
pub mod settings;
#[cfg(feature = "ssr")]
pub mod net;
#[cfg(feature = "ssr")]
pub mod digest;
#[cfg(feature = "ssr")]
pub mod throttle;
#[cfg(feature = "ssr")]
pub mod clock;
#[cfg(feature = "ssr")]
pub mod metrics;
#[cfg(feature = "ssr")]
pub mod static_files;
#[cfg(feature = "ssr")]
pub mod db;
#[cfg(feature = "ssr")]
pub mod upstream;

// Capabilities: each folder owns its SQL, server functions and components.
pub mod lessons;
pub mod feedback;
pub mod history;
pub mod chat;
pub mod account;
pub mod teacher;
pub mod escalation;
pub mod faq;
pub mod not_found;
#[cfg(feature = "ssr")]
pub mod auth;
#[cfg(feature = "ssr")]
pub mod probes;

// Pages and routes, then the router (server only).
pub mod app;
#[cfg(feature = "ssr")]
pub mod state;
#[cfg(feature = "ssr")]
pub mod server;

#[cfg(all(test, feature = "ssr"))]
mod proptests;

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    use leptos::prelude::*;
    console_error_panic_hook::set_once();
    // As `leptos::mount::hydrate_lazy` (a page opened on a lazily loaded route hydrates
    // once its part of the WASM has arrived, src/app.rs), and then the page says it is
    // hydrated: `data-hydrated`, which tests and the page-load benchmark wait for.
    let hydrated = chat::view::Hydrated(RwSignal::new(false));
    wasm_bindgen_futures::spawn_local(async move {
        let body = document().body().expect("a page has a body");
        let mounted = leptos::mount::hydrate_from_async(body, move || {
            provide_context(hydrated);
            // Through view!, as every component is mounted (its type erased alike).
            view! { <app::App /> }
        })
        .await;
        hydrated.0.set(true);
        mounted.forget();
    });
}

/// jemalloc instead of the system's malloc on the server: rendering a page makes tens
/// of thousands of small allocations, and glibc's malloc spent a third of a render's
/// CPU on them (docs/BENCHMARKS.md, "The allocator"). The browser build keeps Rust's.
#[cfg(all(feature = "ssr", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read before `main`: one arena per CPU (its default, four, held
/// more memory under load on a small machine), and a background thread that gives
/// freed pages back to the system while the process idles (else the ~12 MiB that
/// start-up uses and frees stays resident). `_RJEM_MALLOC_CONF` in the environment
/// overrides it; a test in `tests/api` checks that jemalloc read it.
#[cfg(all(feature = "ssr", not(target_env = "msvc")))]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static JEMALLOC_CONF: &[u8] = b"percpu_arena:percpu,background_thread:true\0";
