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
pub mod lang_switch;
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

/// jemalloc instead of the system's malloc on the server (Linux): rendering a page makes
/// tens of thousands of small allocations, and glibc's malloc spent a third of a
/// render's CPU on them (docs/BENCHMARKS.md, "The allocator"). Elsewhere (macOS has no
/// background threads for it, MSVC cannot build it) and in the browser, the platform's.
#[cfg(all(feature = "ssr", target_os = "linux"))]
mod allocator {
    #[global_allocator]
    static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

    /// jemalloc's settings, read before `main`: one arena per CPU (its default is four
    /// per CPU, which held more memory under load on a small machine), and a
    /// background thread that gives freed pages back to the system while the process
    /// idles (else the ~12 MiB that start-up uses and frees stays resident).
    /// `_RJEM_MALLOC_CONF` in the environment overrides them; `tests/api/allocator.rs`
    /// checks that jemalloc read them. `#[used]`: jemalloc has a weak default for the
    /// symbol, so nothing else would make the linker keep ours.
    #[used]
    #[unsafe(export_name = "_rjem_malloc_conf")]
    static JEMALLOC_CONF: CStringPtr = CStringPtr(c"percpu_arena:percpu,background_thread:true".as_ptr());

    /// A C `const char *`, the type jemalloc declares the symbol with.
    #[repr(transparent)]
    struct CStringPtr(*const std::ffi::c_char);

    // SAFETY: it points at a string literal, never written.
    unsafe impl Sync for CStringPtr {}
}
