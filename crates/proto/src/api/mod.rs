//! The JSON bodies of the HTTP APIs besides sync and lease: the vendor admin API of a license
//! node and the admin API of a license server. They live here, next to the protocol types,
//! so that the services, `crates/api-client`, the CLI and the tests share one definition.

pub mod node;
pub mod server;
pub mod staff;
