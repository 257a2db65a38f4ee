//! One base URL, one optional bearer token, one reqwest client: what every typed client
//! is built on.

use std::fmt;

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::error_chain;
use crate::{ApiClientError, Result};

/// Checks a service URL (`flag` names where it came from, e.g. `--node`) and normalizes it to
/// a base URL ending in `/`, so that paths join below it.
pub fn parse_base_url(flag: &str, text: &str) -> Result<Url> {
    let mut url = Url::parse(text.trim()).map_err(|e| {
        ApiClientError::Usage(format!(
            "{flag} {text:?} is not a URL like http://127.0.0.1:8470 ({e})"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiClientError::Usage(format!(
            "{flag} {text:?} must be an http:// or https:// URL"
        )));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// A bearer token whose `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    http: reqwest::Client,
    base: Url,
    token: Option<Token>,
    /// Headers sent with every request (the reason of a change, say).
    headers: reqwest::header::HeaderMap,
    /// "license node", "license server": who is called, in messages.
    service: &'static str,
    /// What to tell the user when a call needs the token and there is none.
    token_hint: &'static str,
}

/// Whether a call needs the token or merely sends it when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    Required,
    Optional,
}

pub(crate) enum Body<'a, B: Serialize> {
    None,
    Json(&'a B),
    /// JSON bytes that must pass verbatim (a bundle or upload file).
    Raw(Vec<u8>),
}

impl Endpoint {
    pub(crate) fn new(
        http: reqwest::Client,
        base: Url,
        token: Option<String>,
        service: &'static str,
        token_hint: &'static str,
    ) -> Self {
        let token = token
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .map(Token);
        Self {
            http,
            base,
            token,
            headers: reqwest::header::HeaderMap::new(),
            service,
            token_hint,
        }
    }

    /// Sends `value` as header `name` with every request from now on.
    pub(crate) fn set_header(
        &mut self,
        name: reqwest::header::HeaderName,
        value: reqwest::header::HeaderValue,
    ) {
        self.headers.insert(name, value);
    }

    /// The same endpoint with another token (or none).
    pub(crate) fn with_token(&self, token: Option<String>) -> Self {
        let mut other = Self::new(
            self.http.clone(),
            self.base.clone(),
            token,
            self.service,
            self.token_hint,
        );
        other.headers = self.headers.clone();
        other
    }

    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// A header sent with every request, as text.
    #[cfg(test)]
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub(crate) fn require_token(&self) -> Result<()> {
        if self.token.is_none() {
            return Err(ApiClientError::Usage(self.token_hint.to_owned()));
        }
        Ok(())
    }

    pub(crate) async fn raw<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Body<'_, B>,
        auth: Auth,
    ) -> Result<Vec<u8>> {
        if auth == Auth::Required {
            self.require_token()?;
        }
        let url = self.base.join(path.trim_start_matches('/')).map_err(|e| {
            ApiClientError::Usage(format!(
                "cannot build a URL for {path} below {}: {e}",
                self.base
            ))
        })?;
        let mut request = self.http.request(method, url).headers(self.headers.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(&token.0);
        }
        request = match body {
            Body::None => request,
            Body::Json(b) => request.json(b),
            Body::Raw(bytes) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes),
        };
        let unreachable = |e: &reqwest::Error| ApiClientError::Unreachable {
            service: self.service,
            url: self.base.to_string(),
            detail: error_chain(e),
        };
        let response = request.send().await.map_err(|e| unreachable(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| unreachable(&e))?;
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            Err(ApiClientError::from_answer(
                self.service,
                self.base.as_str(),
                status.as_u16(),
                &bytes,
            ))
        }
    }

    pub(crate) async fn json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body<'_, B>,
        auth: Auth,
    ) -> Result<T> {
        let bytes = self.raw(method, path, body, auth).await?;
        self.decode(path, &bytes)
    }

    pub(crate) fn decode<T: DeserializeOwned>(&self, path: &str, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| ApiClientError::Decode {
            service: self.service,
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }
}

/// A reqwest client with the given timeouts and user agent.
pub(crate) fn http_client(
    connect: std::time::Duration,
    total: std::time::Duration,
    agent: &str,
) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(total)
        .user_agent(agent)
        .build()
        .map_err(|e| ApiClientError::Usage(format!("cannot build the HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_end_in_a_slash() {
        assert_eq!(
            parse_base_url("--node", "http://127.0.0.1:8470")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8470/"
        );
        assert_eq!(
            parse_base_url("--node", "https://lic.example/node")
                .unwrap()
                .join("v1/sync")
                .unwrap()
                .as_str(),
            "https://lic.example/node/v1/sync"
        );
        let e = parse_base_url("--admin", "127.0.0.1:8470")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--admin"), "{e}");
        assert!(parse_base_url("--node", "ftp://x").is_err());
    }

    #[test]
    fn the_token_is_never_shown() {
        let e = Endpoint::new(
            reqwest::Client::new(),
            parse_base_url("--node", "http://x").unwrap(),
            Some("s3cret".into()),
            "license node",
            "needs a token",
        );
        assert!(!format!("{e:?}").contains("s3cret"));
        let e = Endpoint::new(
            reqwest::Client::new(),
            parse_base_url("--node", "http://x").unwrap(),
            Some("  ".into()),
            "license node",
            "needs a token",
        );
        assert_eq!(e.require_token().unwrap_err().to_string(), "needs a token");
    }
}
