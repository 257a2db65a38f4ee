//! License node integration tests: a real node on port 0 (the test kit's `TestNode`), driven
//! over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod console;
mod listeners;
mod openapi;
mod roles;
mod store;
mod sync;
mod world;
