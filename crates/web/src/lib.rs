//! The web layer every Leasehold service shares (the license node, the license server's
//! lease and admin listeners, the dashboard): one API error type with the stable JSON error
//! codes, the JSON body extractor with clear rejections, the bearer-token extractor with a
//! constant-time comparison, `/v1/health` in one JSON shape, `/metrics`, the not-found
//! fallback and what every OpenAPI description shares (`/openapi.json`). A service declares
//! its own routes and adds these.
#![forbid(unsafe_code)]

mod auth;
pub mod browser;
mod error;
mod json;
pub mod metrics;
pub mod openapi;
mod routes;
pub mod serve;
pub mod svg;
pub mod tls;

pub use auth::{same_secret, AdminAuth, AdminToken};
pub use error::ApiError;
pub use json::ApiJson;
pub use routes::{__path_health, health, metrics_response, not_found, Service};
pub use serve::{serve, Limits};
pub use tls::{Tls, TlsError, TlsFiles};
