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
