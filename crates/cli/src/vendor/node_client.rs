//! The HTTP side of `leasehold vendor`: one small client for a license node's admin and sync
//! routes. It turns the node's `ErrorBody` into `code: message` errors and a refused
//! connection into an error naming the node.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use leasehold_proto::ServerGuid;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::http_util::error_chain;

/// The node's admin token. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl FromStr for AdminToken {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let token = s.trim();
        if token.is_empty() {
            return Err("the admin token is empty".into());
        }
        Ok(Self(token.to_owned()))
    }
}

/// The path segment of a server: the canonical GUID without braces.
pub fn guid_segment(guid: ServerGuid) -> String {
    guid.to_string()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .to_owned()
}

/// Checks a `--node` value and normalizes it to a base URL ending in `/`.
pub fn parse_node_url(text: &str) -> anyhow::Result<Url> {
    let mut url = Url::parse(text.trim())
        .with_context(|| format!("--node {text:?} is not a URL like http://127.0.0.1:8470"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("--node {text:?} must be an http:// or https:// URL");
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[derive(Debug)]
pub struct NodeClient {
    http: reqwest::Client,
    base: Url,
    token: Option<AdminToken>,
}

/// Whether a call needs the admin token or merely sends it when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Admin,
    Optional,
}

impl NodeClient {
    pub fn new(base: Url, token: Option<AdminToken>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("leasehold-vendor/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, base, token })
    }

    /// Fails before any request when an admin command has no token.
    pub fn require_token(&self) -> anyhow::Result<()> {
        if self.token.is_none() {
            bail!("this command needs the node's admin token: pass --token TOKEN or set LEASEHOLD_ADMIN_TOKEN");
        }
        Ok(())
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let bytes = self
            .call(Method::GET, path, None::<&()>, Auth::Admin)
            .await?;
        decode(path, &bytes)
    }

    pub async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let bytes = self.call(method, path, Some(body), Auth::Admin).await?;
        decode(path, &bytes)
    }

    /// Posts with no body, for actions named by their path alone.
    pub async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let bytes = self
            .call(Method::POST, path, None::<&()>, Auth::Admin)
            .await?;
        decode(path, &bytes)
    }

    /// Posts raw JSON bytes and returns the raw answer, for bodies that must pass verbatim.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>, auth: Auth) -> anyhow::Result<Vec<u8>> {
        let request = self
            .request(Method::POST, path, auth)?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.finish(request).await
    }

    async fn call<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        auth: Auth,
    ) -> anyhow::Result<Vec<u8>> {
        let mut request = self.request(method, path, auth)?;
        if let Some(body) = body {
            request = request.json(body);
        }
        self.finish(request).await
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        auth: Auth,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        if auth == Auth::Admin {
            self.require_token()?;
        }
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .with_context(|| format!("cannot build a URL for {path}"))?;
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.as_str());
        }
        Ok(request)
    }

    async fn finish(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Vec<u8>> {
        let response = request.send().await.map_err(|e| {
            anyhow!(
                "cannot reach the license node at {}: {}",
                self.base,
                error_chain(&e)
            )
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("the license node at {} broke off its answer", self.base))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        Err(node_error(status, &bytes))
    }
}

/// `code: message` from the node's error body, or the status and the start of whatever else
/// it sent.
fn node_error(status: StatusCode, body: &[u8]) -> anyhow::Error {
    crate::http_util::error_from_body("the license node", status, body)
}

fn decode<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).with_context(|| {
        format!("the license node's answer to {path} is not what this CLI expects")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_segment_has_no_braces() {
        let g = ServerGuid::parse("{df9960a1-7bd5-633b-f0f4-b1470bbd0b8e}").unwrap();
        assert_eq!(guid_segment(g), "DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E");
    }

    #[test]
    fn node_urls_are_checked_and_end_in_a_slash() {
        assert_eq!(
            parse_node_url("http://127.0.0.1:8470").unwrap().as_str(),
            "http://127.0.0.1:8470/"
        );
        assert_eq!(
            parse_node_url("https://lic.example/node")
                .unwrap()
                .join("v1/sync")
                .unwrap()
                .as_str(),
            "https://lic.example/node/v1/sync"
        );
        assert!(parse_node_url("127.0.0.1:8470").is_err());
        assert!(parse_node_url("ftp://x").is_err());
    }

    #[test]
    fn error_bodies_become_code_and_message() {
        let e = node_error(
            StatusCode::CONFLICT,
            br#"{"error":"installation_shape","message":"already has a production server"}"#,
        );
        assert_eq!(
            e.to_string(),
            "installation_shape: already has a production server"
        );
        let e = node_error(StatusCode::BAD_GATEWAY, b"<html>oops</html>");
        assert!(e.to_string().contains("502"), "{e}");
    }

    #[test]
    fn token_debug_is_redacted() {
        let t: AdminToken = "s3cret".parse().unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!("  ".parse::<AdminToken>().is_err());
    }
}
