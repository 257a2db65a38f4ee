//! Who calls the vendor admin API: a staff account's personal token (`Authorization: Bearer
//! lhv_…`), checked against the database on every request, so a revoked token or a disabled
//! account stops working at once on every node. The node's bootstrap token is accepted
//! only where [`StaffOrBootstrap`] says so (creating the first admin account). The reason
//! of a change comes in its own header.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use leasehold_proto::api::staff::{check_reason, REASON_HEADER};
use leasehold_proto::ErrorCode;
use leasehold_web::ApiError;

use super::NodeState;
use crate::domain::audit::Actor;

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

const NO_TOKEN: &str = "the vendor admin API needs 'Authorization: Bearer lhv_…' with a vendor account's own token: sign in with `leasehold vendor login` (or create a token in the console under Account)";

/// The actor of the request's bearer token: a staff account's, or (only where
/// `bootstrap` allows it) the node's bootstrap token.
async fn actor(parts: &Parts, state: &NodeState, bootstrap: bool) -> Result<Actor, ApiError> {
    let presented =
        bearer(parts).ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, NO_TOKEN))?;
    if state.is_bootstrap(presented) {
        if bootstrap {
            return Ok(Actor::bootstrap());
        }
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the node's bootstrap token only creates the first admin account (`leasehold vendor account add --role admin`); sign in with that account (`leasehold vendor login`) and use its own token",
        ));
    }
    state.node.authenticate(presented).await
}

/// A signed-in staff account (support or admin); the handler's service call checks the
/// role its change needs.
#[derive(Debug, Clone)]
pub struct Staff(pub Actor);

impl FromRequestParts<NodeState> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &NodeState,
    ) -> Result<Self, Self::Rejection> {
        actor(parts, state, false).await.map(Staff)
    }
}

/// A staff account, or the node's bootstrap token (only `POST /v1/admin/accounts` takes
/// it, and the service lets it create only the first admin).
#[derive(Debug, Clone)]
pub struct StaffOrBootstrap(pub Actor);

impl FromRequestParts<NodeState> for StaffOrBootstrap {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &NodeState,
    ) -> Result<Self, Self::Rejection> {
        actor(parts, state, true).await.map(StaffOrBootstrap)
    }
}

/// The reason of a change: the `leasehold-reason` header, percent-encoded UTF-8 (empty when
/// absent). A malformed one is refused before anything changes.
#[derive(Debug, Clone, Default)]
pub struct Reason(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Reason {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(REASON_HEADER) else {
            return Ok(Reason::default());
        };
        let bad = |why: &str| ApiError::bad_request(format!("the {REASON_HEADER} header {why}"));
        let text = value
            .to_str()
            .map_err(|_| bad("must be percent-encoded UTF-8"))?;
        let decoded = percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map_err(|_| bad("must be percent-encoded UTF-8"))?;
        check_reason(&decoded)
            .map(Reason)
            .map_err(|e| bad(&format!("is not a reason we can record: {e}")))
    }
}
