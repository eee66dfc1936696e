//! Integration tests: the whole app on port 0 against our OpenAI-compatible test
//! server, driven over real HTTP and WebSocket connections. One module per capability;
//! `helpers` holds the harness they share.

mod abuse;
mod accounts;
mod allocator;
mod budget;
mod chat;
mod cleanup;
mod escalations;
mod export;
mod faq;
mod guest_numbers;
mod dashboard;
mod deployment;
mod feedback;
mod headers;
mod helpers;
mod history;
mod instances;
mod leftovers;
mod lessons;
mod limits;
mod markdown;
mod metrics;
mod pages;
mod resume;
mod search;
mod sessions;
mod shutdown;
mod soak;
mod static_files;
mod storage;
mod teachers;
mod upstream;
mod versions;
