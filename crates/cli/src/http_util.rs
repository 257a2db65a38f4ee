//! HTTP helpers shared by the commands that talk to a Leasehold service (`vendor` to a license
//! node, `server` to a license server's admin API): turning an `ErrorBody` into a
//! `code: message` error and digging the useful cause out of a transport error.

use anyhow::anyhow;
use leasehold_proto::ErrorBody;
use reqwest::StatusCode;

/// `code: message` from a Leasehold error body, or the status and the start of whatever else
/// `who` (e.g. "the license node") sent.
pub fn error_from_body(who: &str, status: StatusCode, body: &[u8]) -> anyhow::Error {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => anyhow!("{}: {}", e.error, e.message),
        Err(_) => {
            let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
            let text = text.trim();
            if text.is_empty() {
                anyhow!("{who} answered HTTP {status}")
            } else {
                anyhow!("{who} answered HTTP {status}: {text}")
            }
        }
    }
}

/// reqwest hides the useful part ("connection refused") in its source chain.
pub fn error_chain(error: &dyn std::error::Error) -> String {
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
        let e = error_from_body(
            "the license server",
            StatusCode::BAD_REQUEST,
            br#"{"error":"bad_request","message":"bundle rejected"}"#,
        );
        assert_eq!(e.to_string(), "bad_request: bundle rejected");
        let e = error_from_body("the license server", StatusCode::BAD_GATEWAY, b"");
        assert_eq!(
            e.to_string(),
            "the license server answered HTTP 502 Bad Gateway"
        );
    }
}
