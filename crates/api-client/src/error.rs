//! What went wrong with a call, in words a person can act on.

use leasehold_proto::{ErrorBody, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    /// The request could not be built (no token where one is needed, a bad URL).
    #[error("{0}")]
    Usage(String),
    /// No answer: connection refused, timed out, broken off.
    #[error("cannot reach the {service} at {url}: {detail}")]
    Unreachable {
        service: &'static str,
        url: String,
        detail: String,
    },
    /// The service refused with one of its stable error codes.
    #[error("{}: {}", body.error, body.message)]
    Refused { status: u16, body: ErrorBody },
    /// Something answered, but not with a Leasehold error (a proxy's page, say).
    #[error("the {service} at {url} answered HTTP {status}{}", text_suffix(text))]
    Http {
        service: &'static str,
        url: String,
        status: u16,
        text: String,
    },
    /// The answer is not the JSON this client expects.
    #[error("the {service}'s answer to {path} is not what this client expects: {detail}")]
    Decode {
        service: &'static str,
        path: String,
        detail: String,
    },
}

fn text_suffix(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

impl ApiClientError {
    /// The service's error code, when it refused with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ApiClientError::Refused { body, .. } => Some(body.error),
            _ => None,
        }
    }

    /// The HTTP status of an answer that was not a success.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiClientError::Refused { status, .. } | ApiClientError::Http { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    pub(crate) fn from_answer(service: &'static str, url: &str, status: u16, body: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(body) => ApiClientError::Refused { status, body },
            Err(_) => {
                let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
                ApiClientError::Http {
                    service,
                    url: url.to_owned(),
                    status,
                    text: text.trim().to_owned(),
                }
            }
        }
    }
}

/// reqwest hides the useful part ("connection refused") in its source chain.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_code_and_message() {
        let e = ApiClientError::from_answer(
            "license node",
            "http://x/",
            409,
            br#"{"error":"installation_shape","message":"already has a production server"}"#,
        );
        assert_eq!(
            e.to_string(),
            "installation_shape: already has a production server"
        );
        assert_eq!(e.code(), Some(ErrorCode::InstallationShape));
        let e = ApiClientError::from_answer("license node", "http://x/", 502, b"<html>oops</html>");
        assert_eq!(
            e.to_string(),
            "the license node at http://x/ answered HTTP 502: <html>oops</html>"
        );
        assert_eq!((e.code(), e.status()), (None, Some(502)));
        let e = ApiClientError::from_answer("license server", "http://x/", 502, b"");
        assert_eq!(
            e.to_string(),
            "the license server at http://x/ answered HTTP 502"
        );
    }
}
