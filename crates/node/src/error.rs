//! The one error type of the node's HTTP surface: a status, a stable code and a message.
//! Internal details are logged once and never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use leasehold_proto::rules::RuleError;
use leasehold_proto::{ErrorBody, ErrorCode};

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct NodeError {
    pub code: ErrorCode,
    pub message: String,
}

impl NodeError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<RuleError> for NodeError {
    fn from(e: RuleError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<StoreError> for NodeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Self::new(ErrorCode::NotFound, m),
            StoreError::Rule(r) => r.into(),
            StoreError::Refused(code, m) => Self::new(code, m),
            StoreError::Other(m) => {
                tracing::error!(error = %m, "storage failure");
                Self::new(
                    ErrorCode::Internal,
                    "the license node could not complete the request; it changed nothing, try again",
                )
            }
        }
    }
}

impl IntoResponse for NodeError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: self.code,
            message: self.message,
        };
        (status, Json(body)).into_response()
    }
}
