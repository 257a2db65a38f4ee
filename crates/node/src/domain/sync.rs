//! One sync, inside a transaction: the context check, the sync-token chain step (the pure
//! [`crate::chain::decide`], which the simulation runs too), the usage stored once, the
//! chain advanced and the bundle to sign.

use chrono::{DateTime, Utc};
use leasehold_proto::{BundlePayload, ErrorCode, License, SyncToken, SyncUpload};

use super::{unknown_server, Tx};
use crate::chain::{self, ChainStep, TokenLookup};
use crate::store::{RecordedRefusal, StoreError, SyncRecord};

/// What a sync needs: the upload, the moment, and a fresh token.
#[derive(Debug, Clone)]
pub struct SyncInput {
    pub upload: SyncUpload,
    pub now: DateTime<Utc>,
    pub new_token: SyncToken,
}

/// A refused or failed sync. A refusal has written nothing; `record` says the refusal is
/// one the caller records on the server's row (a detected fork, a context rejection: the
/// one write a refused sync makes).
#[derive(Debug)]
pub struct SyncFailure {
    pub record: Option<RecordedRefusal>,
    pub error: StoreError,
}

impl From<StoreError> for SyncFailure {
    fn from(error: StoreError) -> Self {
        Self {
            record: None,
            error,
        }
    }
}

pub async fn sync(tx: Tx<'_>, input: &SyncInput) -> Result<BundlePayload, SyncFailure> {
    let upload = &input.upload;
    let guid = upload.server_guid;
    // Locked: two nodes syncing one GUID decide on the chain one after the other.
    let server = tx
        .server(guid, true)
        .await?
        .ok_or_else(|| unknown_server(guid))?;
    if let Some(claimed) = upload.context {
        if claimed != server.context {
            return Err(SyncFailure {
                record: Some(RecordedRefusal::Context),
                error: StoreError::Refused(
                    ErrorCode::ContextMismatch,
                    format!(
                        "server {guid} reports context {claimed}, but the vendor registered it as {}",
                        server.context
                    ),
                ),
            });
        }
    }
    let lookup = match &upload.sync_token {
        None => TokenLookup::Absent,
        Some(token) => match tx.token(guid, token).await? {
            // After the database was restored from a backup, the bound instance may hold a
            // token issued after the backup: taken, once, as the newest, when the server
            // has not synced since the restore. (A copy racing it in that window is the
            // same race as two copies at any time: the second of them is refused.)
            None if server.instance_id.as_ref() == Some(&upload.instance_id)
                && restored_after(tx, server.last_sync).await? =>
            {
                TokenLookup::Found {
                    generation: server.head_generation,
                    revoked: false,
                }
            }
            None => TokenLookup::Unknown,
            Some(t) => TokenLookup::Found {
                generation: t.generation,
                revoked: t.revoked,
            },
        },
    };
    let step = chain::decide(
        server.instance_id.as_ref(),
        server.head_generation,
        &upload.instance_id,
        lookup,
    )
    .map_err(|refusal| SyncFailure {
        record: refusal.fork.then_some(RecordedRefusal::Fork),
        error: StoreError::Refused(refusal.code, refusal.message),
    })?;
    let mut acked = server.acked_usage_seq;
    match step {
        ChainStep::Bind => {
            acked = 0;
            tx.revoke_tokens(guid, None).await?;
        }
        ChainStep::Branch { from_generation } => {
            tx.revoke_tokens(guid, Some(from_generation)).await?;
        }
        ChainStep::Advance => {}
    }
    let fresh: Vec<_> = upload.usage.iter().filter(|b| b.seq > acked).collect();
    if !fresh.is_empty() {
        tx.insert_usage(guid, &upload.instance_id, &fresh, input.now)
            .await?;
    }
    acked = upload.usage.iter().map(|b| b.seq).fold(acked, u64::max);
    let generation = server.head_generation + 1;
    tx.insert_token(guid, &input.new_token, generation, input.now)
        .await?;
    let serial = server.bundle_serial + 1;
    tx.record_sync(
        guid,
        &SyncRecord {
            instance_id: &upload.instance_id,
            acked_usage_seq: acked,
            head_generation: generation,
            bundle_serial: serial,
            at: input.now,
            software_version: &upload.software_version,
        },
    )
    .await?;
    let today = input.now.date_naive();
    let licenses: Vec<License> = tx
        .licenses_of(guid)
        .await?
        .into_iter()
        .filter(|l| !l.is_expired_on(today))
        .collect();
    Ok(BundlePayload {
        serial,
        server_guid: guid,
        context: server.context,
        installation_id: server.installation,
        issued_at: input.now,
        not_after: input.now + chrono::Duration::days(i64::from(server.grace_days)),
        sync_interval_secs: server.sync_interval_secs,
        next_sync_token: input.new_token.clone(),
        acked_usage_seq: acked,
        licenses,
    })
}

/// Whether the database was restored from a backup after `last_sync` (the server has not
/// synced since the restore).
async fn restored_after(tx: Tx<'_>, last_sync: Option<DateTime<Utc>>) -> Result<bool, StoreError> {
    Ok(match (tx.restored_at().await?, last_sync) {
        (Some(restored), Some(last)) => restored > last,
        (Some(_), None) => true,
        (None, _) => false,
    })
}
