//! The JSON error body every Leasehold HTTP service answers with: a stable code a program
//! can match on, and a message a person can act on.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The stable code of a refusal, for programs to match on; the HTTP status follows from it
/// (docs/protocol.md lists each with its status and meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    /// The credentials are good, but the account's role does not allow this; nothing changed.
    Forbidden,
    NotFound,
    /// A name that must be unique is taken (a vendor account's name).
    AlreadyExists,
    UnknownServer,
    ContextMismatch,
    InstallationShape,
    GuidInUse,
    PayloadTooLarge,
    NotReady,
    /// A lease request older than one the server already answered for the same client.
    StaleRequest,
    /// The server holds as many clients as it is configured for; existing clients are served.
    TooManyClients,
    /// Too many new clients from one address in a short time; try again shortly.
    RateLimited,
    /// The request names a client id the server knows under another client secret: another
    /// process is using that id (or the request is forged).
    ClientIdInUse,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnknownServer => "unknown_server",
            ErrorCode::ContextMismatch => "context_mismatch",
            ErrorCode::InstallationShape => "installation_shape",
            ErrorCode::GuidInUse => "guid_in_use",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::StaleRequest => "stale_request",
            ErrorCode::TooManyClients => "too_many_clients",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ClientIdInUse => "client_id_in_use",
            ErrorCode::Internal => "internal",
        }
    }
}

impl ErrorCode {
    /// The HTTP status every Leasehold service answers this code with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound | ErrorCode::UnknownServer => 404,
            ErrorCode::GuidInUse
            | ErrorCode::StaleRequest
            | ErrorCode::ClientIdInUse
            | ErrorCode::AlreadyExists => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::ContextMismatch | ErrorCode::InstallationShape => 422,
            ErrorCode::Internal => 500,
            ErrorCode::NotReady | ErrorCode::TooManyClients => 503,
            ErrorCode::RateLimited => 429,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every refusal of every Leasehold service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorCode,
    pub message: String,
}

/// `GET /v1/health` on every listener of every service (unauthenticated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `ok` while the process answers.
    pub status: String,
    /// `node` or `server`.
    pub service: String,
    /// The release.
    pub version: String,
}
