//! One function per `leasehold vendor` command: build the request, call the node, print the
//! answer. Local files (signing key, upload, bundle) are read and written here too.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use leasehold_api_client::NodeClient;
use leasehold_proto::api::node::{
    GrantLicense, LicenseView, ServerView, TransferLicense, UpdateServer,
};
use leasehold_proto::{
    BundlePayload, ServerGuid, SignedEnvelope, SyncUpload, VendorSigningKey, MAX_SYNC_BODY_BYTES,
};
use rand::rngs::OsRng;
use rand::RngCore;

use super::output::emit;
use super::render::{KeygenOutput, SyncFileOutput};
use super::{InstallationCommand, LicenseCommand, ServerCommand};

pub fn keygen(json: bool, out: &Path) -> anyhow::Result<()> {
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let key = VendorSigningKey::from_secret_bytes(secret);
    secret.fill(0);
    let pem = key
        .to_pkcs8_pem()
        .context("cannot encode the signing key")?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => anyhow::anyhow!(
                "{} already exists; refusing to overwrite a signing key (choose another --out)",
                out.display()
            ),
            _ => anyhow::Error::new(e).context(format!("cannot create {}", out.display())),
        })?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write the signing key to {}", out.display()))?;
    emit(
        json,
        &KeygenOutput {
            kid: key.kid().to_string(),
            public_key: key.public_key_string(),
            out: out.display().to_string(),
        },
    )
}

pub async fn installation(
    client: &NodeClient,
    json: bool,
    cmd: InstallationCommand,
) -> anyhow::Result<()> {
    match cmd {
        InstallationCommand::Create { name } => {
            let name = name.trim().to_owned();
            if name.is_empty() {
                bail!("--name must not be empty");
            }
            emit(json, &client.create_installation(&name).await?)
        }
        InstallationCommand::List => emit(json, &client.list_installations().await?),
    }
}

pub async fn server(client: &NodeClient, json: bool, cmd: ServerCommand) -> anyhow::Result<()> {
    let view: ServerView = match cmd {
        ServerCommand::Add {
            installation,
            context,
        } => client.add_server(&installation, context).await?,
        ServerCommand::Show { guid } => client.server(guid).await?,
        ServerCommand::Set(set) => {
            if set.grace_days.is_none() && set.sync_interval.is_none() {
                bail!("server set changes nothing: pass --grace-days N and/or --sync-interval DURATION");
            }
            let update = UpdateServer {
                grace_days: set.grace_days,
                sync_interval_secs: set.sync_interval.map(|d| d.as_secs()),
            };
            client.update_server(set.guid, &update).await?
        }
        ServerCommand::Reassign { guid } => client.reassign_server(guid).await?,
    };
    emit(json, &view)
}

pub async fn license(client: &NodeClient, json: bool, cmd: LicenseCommand) -> anyhow::Result<()> {
    let view: LicenseView = match cmd {
        LicenseCommand::Grant(g) => {
            let grant = GrantLicense {
                server: g.server,
                feature: g.feature,
                count: g.count,
                context: g.context,
                maintenance_until: g.maintenance,
                expires: g.expires,
                backs_up: g.backs_up,
            };
            client.grant_license(&grant).await?
        }
        LicenseCommand::Show { id } => client.license(&id).await?,
        LicenseCommand::Transfer { id, to, from } => {
            client
                .transfer_license(&id, &TransferLicense { to, from })
                .await?
        }
        LicenseCommand::Revoke { id } => client.revoke_license(&id).await?,
        LicenseCommand::SetMaintenance { id, until } => client.set_maintenance(&id, until).await?,
    };
    emit(json, &view)
}

pub async fn usage(client: &NodeClient, json: bool, guid: ServerGuid) -> anyhow::Result<()> {
    emit(json, &client.usage(guid).await?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
}

pub async fn installation_usage(
    client: &NodeClient,
    format: ReportFormat,
    id: &leasehold_proto::InstallationId,
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
) -> anyhow::Result<()> {
    let report = client.installation_usage(id, from, to).await?;
    match format {
        ReportFormat::Table => emit(false, &report),
        ReportFormat::Json => emit(true, &report),
        ReportFormat::Csv => {
            let mut out = std::io::stdout().lock();
            write!(out, "{}", leasehold_node::export::usage_csv(&report))?;
            out.flush()?;
            Ok(())
        }
    }
}

pub async fn sync_file(
    client: &NodeClient,
    json: bool,
    upload_path: &Path,
    out: &Path,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(upload_path)
        .with_context(|| format!("cannot read the upload file {}", upload_path.display()))?;
    if bytes.len() > MAX_SYNC_BODY_BYTES {
        bail!(
            "the upload file {} is {} bytes; a node accepts at most {MAX_SYNC_BODY_BYTES}",
            upload_path.display(),
            bytes.len()
        );
    }
    let upload: SyncUpload = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not a sync upload written by `leasehold server export-upload`",
            upload_path.display()
        )
    })?;
    upload.validate().map_err(|e| {
        anyhow::anyhow!(
            "the upload file {} is not valid: {e}",
            upload_path.display()
        )
    })?;
    // The exact file goes to the node, as an online sync would send it.
    let answer = client.sync_raw(bytes).await?;
    let envelope = SignedEnvelope::from_json(&answer)
        .context("the license node answered the sync with something that is not a signed bundle")?;
    let payload = URL_SAFE_NO_PAD
        .decode(&envelope.payload)
        .context("the bundle payload is not base64url")?;
    let bundle: BundlePayload =
        serde_json::from_slice(&payload).context("the bundle payload is not a bundle")?;
    // The customer's server stores the envelope verbatim, so write exactly what the node sent.
    std::fs::write(out, &answer)
        .with_context(|| format!("cannot write the bundle to {}", out.display()))?;
    emit(
        json,
        &SyncFileOutput {
            out: out.display().to_string(),
            kid: envelope.kid.to_string(),
            server_guid: bundle.server_guid,
            context: bundle.context,
            serial: bundle.serial,
            not_after: bundle.not_after,
            licenses: bundle.licenses.len(),
            acked_usage_seq: bundle.acked_usage_seq,
        },
    )
}
