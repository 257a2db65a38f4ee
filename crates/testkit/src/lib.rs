//! The one test kit of the workspace (a dev-dependency only): the keys, tokens and dates every
//! test shares, a license node and license servers started in the test's process on port 0,
//! the TCP fault proxy, a blocking facade for plain `#[test]` functions, and helpers for tests
//! that run the real binaries as child processes.
//!
//! - [`fixtures`] (re-exported here): [`vendor_key`], [`NODE_TOKEN`], [`SERVER_TOKEN`],
//!   [`start_time`], [`release_date`], [`maintenance_date`], [`grant_request`];
//! - [`node::TestNode`]: a node over HTTP, with its typed admin client and the raw calls that
//!   tests of the HTTP contract need; [`node::FakeServer`] plays a license server syncing;
//! - [`server::TestServer`]: a license server with its admin client, lease calls and waits;
//! - [`proxy::Proxy`]: passes, delays, freezes or drops a server's traffic;
//! - [`browser`]: a cookie-keeping client for the dashboard's and the console's pages;
//! - [`blocking::Env`]: a node with the standard installation and servers on a runtime it owns;
//! - [`process`]: child processes waited for until ready and killed on drop;
//! - [`stub`]: a one-thread stub license server for tests that only need a filled cache;
//! - [`tls::TestCa`]: a certificate authority and the certificates it issues, for HTTPS;
//! - [`metrics`]: checks that a crate describes every metric it records.
//! - [`openapi`]: a listener serves its OpenAPI description and every operation in it.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod blocking;
pub mod browser;
pub mod db;
pub mod fixtures;
pub mod metrics;
pub mod node;
pub mod openapi;
pub mod process;
pub mod proxy;
pub mod server;
pub mod stub;
pub mod tls;

pub use fixtures::*;
