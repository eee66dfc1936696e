//! The few things a page does that differ between the server and the browser, each a
//! function with the same signature in both builds: the server twin reads or writes
//! the HTTP request and response, the browser twin reads or writes the document. With
//! these, components read the same in both builds and hold no `cfg` of their own.

#[cfg(feature = "hydrate")]
mod browser;
#[cfg(not(feature = "hydrate"))]
mod server;

#[cfg(feature = "hydrate")]
pub use browser::*;
#[cfg(not(feature = "hydrate"))]
pub use server::*;

/// Whether `event` happened on an element matching `selector` or inside one (a click on
/// a link's text lands on the text's element, not on the link). The same in both builds.
pub fn landed_within(event: &leptos::web_sys::Event, selector: &str) -> bool {
    use leptos::wasm_bindgen::JsCast;
    event
        .target()
        .and_then(|target| target.dyn_into::<leptos::web_sys::Element>().ok())
        .and_then(|element| element.closest(selector).ok().flatten())
        .is_some()
}
