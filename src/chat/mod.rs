//! The chat capability: the page (rendered on the server, hydrated in the browser),
//! the browser's socket client, and the server's socket route.

pub mod client;
#[cfg(feature = "ssr")]
pub mod limits;
#[cfg(feature = "ssr")]
pub mod live;
#[cfg(feature = "ssr")]
pub mod socket;
pub mod state;
pub mod view;
