//! How the server's storage failures reach a caller: as the shared [`ApiError`], logged
//! once, with a message that sends the operator to the log.

use leasehold_web::ApiError;

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal("license server", e)
    }
}
