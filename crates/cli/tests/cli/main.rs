//! The CLI crate's one integration-test binary: every test drives the real `leasehold`
//! binary, against a real `leasehold node serve` child process where a node is needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod demo;
mod faults;
mod keys;
mod nodes;
mod openapi;
mod packaging;
mod secrets;
mod server;
mod staff;
mod support;
mod tls;
mod vendor;
