//! License node integration tests: a real node on port 0, driven over HTTP.

mod harness;
mod sync;
