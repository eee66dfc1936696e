//! The chat capability: the page (rendered on the server, hydrated in the browser),
//! the browser's socket client, and on the server the socket route, starting an
//! answer, the answers' own tasks and their SQL.

#[cfg(feature = "ssr")]
pub mod arrivals;
#[cfg(feature = "ssr")]
pub mod ask;
#[cfg(feature = "ssr")]
pub mod bus;
#[cfg(feature = "ssr")]
pub mod budget;
pub mod client;
#[cfg(feature = "ssr")]
pub mod first_answers;
#[cfg(feature = "ssr")]
pub mod leases;
#[cfg(feature = "ssr")]
pub mod limits;
#[cfg(feature = "ssr")]
pub mod live;
pub mod meter;
#[cfg(feature = "ssr")]
pub mod notices;
#[cfg(feature = "ssr")]
pub mod presence;
#[cfg(feature = "ssr")]
pub mod prompt;
#[cfg(feature = "ssr")]
pub mod socket;
pub mod state;
#[cfg(feature = "ssr")]
pub mod store;
#[cfg(feature = "ssr")]
pub mod takeover;
pub mod versions;
pub mod view;
