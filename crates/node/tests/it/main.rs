//! License node integration tests: a real node on port 0, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod sync;
