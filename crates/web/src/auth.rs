//! `Authorization: Bearer <token>` checked in constant time against the service's token.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use leasehold_proto::ErrorCode;
use subtle::ConstantTimeEq as _;

use crate::ApiError;

/// The admin token of one service, and the service's name for the refusal message. An
/// empty token refuses everyone. `Debug` never shows the token.
#[derive(Clone)]
pub struct AdminToken {
    token: Arc<str>,
    service: &'static str,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("service", &self.service)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl AdminToken {
    pub fn new(token: &str, service: &'static str) -> Self {
        Self {
            token: token.into(),
            service,
        }
    }

    /// Whether `presented` is this token (constant time in the token's content).
    pub fn accepts(&self, presented: &str) -> bool {
        same_secret(presented, &self.token)
    }

    /// Checks the request's `Authorization` header.
    pub fn check(&self, parts: &Parts) -> Result<(), ApiError> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if self.accepts(presented) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Unauthorized,
                format!(
                    "admin API needs 'Authorization: Bearer <token>' with this {}'s admin token",
                    self.service
                ),
            ))
        }
    }
}

/// Extractor: the request carries the service's admin token. The state provides it through
/// `FromRef`.
#[derive(Debug, Clone, Copy)]
pub struct AdminAuth;

impl<S> FromRequestParts<S> for AdminAuth
where
    S: Send + Sync,
    AdminToken: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        AdminToken::from_ref(state).check(parts).map(|()| AdminAuth)
    }
}

/// Compares two secrets without an early exit, so the time taken says nothing about their
/// content (only, as always, about the length). Empty secrets never match.
pub fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_when_equal_and_not_empty() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", ""));
    }

    #[test]
    fn the_token_is_checked_from_the_header_and_never_shown() {
        let token = AdminToken::new("s3cret", "license node");
        let req = |value: Option<&str>| {
            let mut b = axum::http::Request::builder();
            if let Some(v) = value {
                b = b.header(header::AUTHORIZATION, v);
            }
            b.body(()).map(|r| r.into_parts().0)
        };
        let ok = req(Some("Bearer s3cret")).unwrap();
        assert!(token.check(&ok).is_ok());
        for bad in [
            None,
            Some("Bearer wrong"),
            Some("s3cret"),
            Some("Basic s3cret"),
        ] {
            let parts = req(bad).unwrap();
            let e = token.check(&parts).unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthorized);
            assert!(e.message.contains("license node"), "{}", e.message);
        }
        assert!(!format!("{token:?}").contains("s3cret"));
        assert!(!AdminToken::new("", "x").accepts(""));
    }
}
