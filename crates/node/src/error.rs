//! How the node's storage failures reach a caller: as the shared [`ApiError`] with a stable
//! code. Internal details are logged once and never sent.

use leasehold_proto::ErrorCode;
use leasehold_web::ApiError;

use crate::store::StoreError;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::new(ErrorCode::NotFound, m),
            StoreError::Rule(r) => r.into(),
            StoreError::Refused(code, m) => ApiError::new(code, m),
            StoreError::Conflict(m) | StoreError::Other(m) => ApiError::internal("license node", m),
        }
    }
}
