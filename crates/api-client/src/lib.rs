//! Typed clients for every Leasehold HTTP API, used by the license server's sync, every CLI
//! command, the load generators and the tests, so that a route, its body and its error
//! handling are written once on the calling side too:
//! - [`NodeClient`]: a license node's `POST /v1/sync` and vendor admin API (`/v1/admin/…`);
//! - [`ServerAdminClient`]: a license server's admin API;
//! - [`LeaseApi`]: a license server's lease API as a raw protocol client (the client library,
//!   `crates/client`, is what applications use; this is for load generators and tests).
//!
//! Every failure is an [`ApiClientError`] that says who could not be reached or what they
//! answered, with the service's stable error code when it sent one.
#![forbid(unsafe_code)]

mod endpoint;
mod error;
mod lease;
mod node;
mod server;

pub use endpoint::parse_base_url;
pub use error::ApiClientError;
pub use lease::LeaseApi;
pub use node::{AuditFilter, NodeClient};
pub use reqwest::Url;
pub use server::ServerAdminClient;

/// The result of every call.
pub type Result<T> = std::result::Result<T, ApiClientError>;
