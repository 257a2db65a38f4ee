//! License server integration tests: real nodes and servers on port 0 (the test kit's
//! `TestNode` and `TestServer`), driven over HTTP, with time moved by an injected clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod clients;
mod dashboard;
mod hostile;
mod monitoring;
mod openapi;
mod security;
mod server;
mod usage;
