//! Client integration tests: a real node and real license servers in this process on
//! loopback (the test kit's `blocking::Env`: port 0, a manual clock for the servers), and
//! real clients with shortened timings. Nothing here depends on tight timing: every wait polls with a generous timeout,
//! and the few time bounds asserted have several times the expected value as slack.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod allocation;
mod concurrency;
mod failover;
mod flush;
mod harness;
mod refresh;
mod restart;
