//! License server integration tests: real servers on port 0, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]
