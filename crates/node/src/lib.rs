//! The Leasehold license node: the vendor-side service that holds every customer's licenses,
//! takes usage summaries and returns signed license bundles. Many identical nodes may share
//! one database; all state lives in the store.
#![forbid(unsafe_code)]

pub use leasehold_proto::api::node as api;
pub mod chain;
mod console;
pub mod domain;
mod error;
pub mod export;
mod http;
mod metrics;
mod service;
pub mod store;

pub use domain::audit::{Actor, Change};
pub use http::{admin_router, description, public_router, router, serve, NodeState};
pub use service::{
    ConsoleSession, NewSession, Node, TokensOf, MAX_AUDIT_PAGE, SESSION_IDLE, SESSION_MAX_AGE,
};
