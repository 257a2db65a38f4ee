//! The admin commands: one small client for a running server's admin API, and one function
//! per command. Local input (GUID, bundle file) is checked before any request.

use std::future::Future;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _};
use leasehold_api_client::{parse_base_url, ServerAdminClient};
use leasehold_proto::api::server::SyncOutcome;
use leasehold_proto::{ServerGuid, SignedEnvelope, SyncUpload};

use super::render::{ClientList, ExportOutput};
use super::{AdminArgs, Secret};
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

fn client(args: &AdminArgs) -> anyhow::Result<ServerAdminClient> {
    let base = parse_base_url("--admin", &args.admin)?;
    let token = token_of(args)?;
    Ok(ServerAdminClient::new(
        base,
        Some(token.as_str().to_owned()),
    )?)
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

pub async fn status(args: &AdminArgs) -> anyhow::Result<()> {
    emit(args.json, &client(args)?.status().await?)
}

pub async fn clients(
    args: &AdminArgs,
    search: Option<&str>,
    sort: leasehold_proto::api::server::ClientSort,
) -> anyhow::Result<()> {
    let clients = client(args)?.clients_where(search, sort).await?;
    emit(args.json, &ClientList { clients })
}

pub async fn usage(
    args: &AdminArgs,
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
    csv: bool,
) -> anyhow::Result<()> {
    let report = client(args)?.usage(from, to).await?;
    if !csv {
        return emit(args.json, &report);
    }
    let text = leasehold_server::export::csv(&report.rows)
        .map_err(|e| anyhow!("cannot write the report as CSV: {e}"))?;
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, text.as_bytes())?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}

pub async fn set_guid(args: &AdminArgs, guid: ServerGuid) -> anyhow::Result<()> {
    emit(args.json, &client(args)?.set_guid(guid).await?)
}

pub async fn client_key(args: &AdminArgs, rotate: bool, set: Option<String>) -> anyhow::Result<()> {
    let c = client(args)?;
    let view = if rotate || set.is_some() {
        c.replace_client_key(set.map(|k| k.trim().to_owned()))
            .await?
    } else {
        c.client_key().await?
    };
    emit(args.json, &view)
}

pub async fn sync_now(args: &AdminArgs) -> anyhow::Result<()> {
    let outcome = client(args)?.sync_now().await?;
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
    let bytes = client(args)?.upload_raw().await?;
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
    let client = client(args)?;
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
    let outcome = client.import_bundle(bytes).await?;
    finish_outcome(args.json, &outcome, "bundle rejected")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_required_before_any_request() {
        let args = AdminArgs {
            admin: "http://127.0.0.1:1".into(),
            token: None,
            token_file: None,
            json: false,
        };
        let e = client(&args).unwrap_err().to_string();
        assert!(e.contains("--token"), "{e}");
    }
}
