//! The admin commands: one small client for a running server's admin API, and one function
//! per command. Local input (GUID, bundle file) is checked before any request.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use leasehold_proto::{ServerGuid, SignedEnvelope, SyncUpload};
use leasehold_server::api::{ClientStatus, SetGuid, Status, SyncOutcome};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::render::{ClientList, ExportOutput};
use super::{AdminArgs, Secret};
use crate::http_util::{error_chain, error_from_body};
use crate::vendor::output::emit;

/// The largest bundle file accepted; the server's admin API takes no more.
const MAX_BUNDLE_BYTES: u64 = 4 * 1024 * 1024;

pub fn block_on<F: Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f)
}

#[derive(Debug)]
struct AdminClient {
    http: reqwest::Client,
    base: Url,
    token: Secret,
}

fn parse_admin_url(text: &str) -> anyhow::Result<Url> {
    let mut url = Url::parse(text.trim())
        .with_context(|| format!("--admin {text:?} is not a URL like http://127.0.0.1:8080"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("--admin {text:?} must be an http:// or https:// URL");
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn token_of(args: &AdminArgs) -> anyhow::Result<Secret> {
    if let Some(t) = &args.token {
        return Ok(t.clone());
    }
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the token file {} (--token-file)",
                path.display()
            )
        })?;
        return text
            .parse()
            .map_err(|_| anyhow!("the token file {} is empty", path.display()));
    }
    bail!(
        "this command needs the server's admin token: pass --token TOKEN (or set \
         LEASEHOLD_SERVER_TOKEN), or --token-file DATA_DIR/admin-token"
    )
}

impl AdminClient {
    fn new(args: &AdminArgs) -> anyhow::Result<Self> {
        let base = parse_admin_url(&args.admin)?;
        let token = token_of(args)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A sync-now waits for every node in turn.
            .timeout(Duration::from_secs(300))
            .user_agent(concat!(
                "leasehold-server-admin/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, base, token })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Vec<u8>> {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .with_context(|| format!("cannot build a URL for {path}"))?;
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.token.as_str());
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(|e| {
            anyhow!(
                "cannot reach the license server's admin API at {}: {}",
                self.base,
                error_chain(&e)
            )
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("the license server at {} broke off its answer", self.base))?;
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            Err(error_from_body("the license server", status, &bytes))
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<T> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!("the license server's answer to {path} is not what this CLI expects")
        })
    }
}

pub async fn status(args: &AdminArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    let status: Status = client.json(Method::GET, "/v1/admin/status", None).await?;
    emit(args.json, &status)
}

pub async fn clients(args: &AdminArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    let clients: Vec<ClientStatus> = client.json(Method::GET, "/v1/admin/clients", None).await?;
    emit(args.json, &ClientList { clients })
}

pub async fn set_guid(args: &AdminArgs, guid: ServerGuid) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    let body = serde_json::to_vec(&SetGuid {
        guid: guid.to_string(),
    })?;
    let status: Status = client
        .json(Method::PUT, "/v1/admin/guid", Some(body))
        .await?;
    emit(args.json, &status)
}

pub async fn sync_now(args: &AdminArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    let outcome: SyncOutcome = client.json(Method::POST, "/v1/admin/sync", None).await?;
    finish_outcome(args.json, &outcome, "sync failed")
}

/// Prints an outcome; one that is not ok is also the command's error.
fn finish_outcome(json: bool, outcome: &SyncOutcome, what: &str) -> anyhow::Result<()> {
    if outcome.ok || json {
        emit(json, outcome)?;
    }
    if outcome.ok {
        Ok(())
    } else {
        Err(anyhow!(
            "{what}: {}",
            outcome.error.as_deref().unwrap_or("no reason given")
        ))
    }
}

pub async fn export_upload(args: &AdminArgs, out: &Path) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    let bytes = client.call(Method::GET, "/v1/admin/upload", None).await?;
    let upload: SyncUpload = serde_json::from_slice(&bytes)
        .context("the license server's upload is not what this CLI expects")?;
    // Exactly what the server would send, so the node sees the same bytes as online.
    std::fs::write(out, &bytes)
        .with_context(|| format!("cannot write the upload to {}", out.display()))?;
    emit(
        args.json,
        &ExportOutput {
            out: out.display().to_string(),
            server_guid: upload.server_guid,
            last_bundle_serial: upload.last_bundle_serial,
            usage_buckets: upload.usage.len(),
        },
    )
}

pub async fn import_bundle(args: &AdminArgs, file: &Path) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read the bundle file {}", file.display()))?
        .len();
    if size > MAX_BUNDLE_BYTES {
        bail!(
            "the bundle file {} is {size} bytes; a bundle is at most {MAX_BUNDLE_BYTES}",
            file.display()
        );
    }
    let bytes = std::fs::read(file)
        .with_context(|| format!("cannot read the bundle file {}", file.display()))?;
    SignedEnvelope::from_json(&bytes).map_err(|e| {
        anyhow!(
            "{} is not a signed bundle written by `leasehold vendor sync-file`: {e}",
            file.display()
        )
    })?;
    let outcome: SyncOutcome = client
        .json(Method::POST, "/v1/admin/bundle", Some(bytes))
        .await?;
    finish_outcome(args.json, &outcome, "bundle rejected")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls_are_checked() {
        assert_eq!(
            parse_admin_url("http://127.0.0.1:8080").unwrap().as_str(),
            "http://127.0.0.1:8080/"
        );
        assert!(parse_admin_url("127.0.0.1:8080").is_err());
        assert!(parse_admin_url("ftp://x").is_err());
    }

    #[test]
    fn a_token_is_required_before_any_request() {
        let args = AdminArgs {
            admin: "http://127.0.0.1:1".into(),
            token: None,
            token_file: None,
            json: false,
        };
        let e = AdminClient::new(&args).unwrap_err().to_string();
        assert!(e.contains("--token"), "{e}");
    }
}
