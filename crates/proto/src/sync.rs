//! Node ↔ server sync messages (DESIGN.md §3.1): the upload a server sends and the bundle
//! payload a node signs in return.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::guid::ServerGuid;
use crate::ids::{InstallationId, InstanceId, SyncToken};
use crate::license::{Context, License};
use crate::usage::UsageBucket;

/// What a license server sends to a node ("Upload"): who it is and the usage summaries the
/// node has not yet acknowledged. Nothing per client, per call or personal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SyncUpload {
    pub server_guid: ServerGuid,
    pub instance_id: InstanceId,
    /// The token the last bundle carried; `None` before the first bundle.
    pub sync_token: Option<SyncToken>,
    /// Serial of the last bundle the server accepted; 0 before the first.
    pub last_bundle_serial: u64,
    /// The context the server has from its last bundle; `None` before the first.
    #[serde(default)]
    pub context: Option<Context>,
    pub software_version: String,
    /// Every usage bucket not yet acknowledged, in sequence order.
    pub usage: Vec<UsageBucket>,
}

impl SyncUpload {
    pub const MAX_BUCKETS: usize = 20_000;
    pub const MAX_VERSION_LEN: usize = 64;

    /// Checks what serde cannot: sizes and that sequence numbers are strictly increasing.
    pub fn validate(&self) -> Result<(), String> {
        if self.software_version.len() > Self::MAX_VERSION_LEN {
            return Err(format!(
                "software_version is longer than {} characters",
                Self::MAX_VERSION_LEN
            ));
        }
        if self.usage.len() > Self::MAX_BUCKETS {
            return Err(format!(
                "usage holds {} buckets; at most {} per sync",
                self.usage.len(),
                Self::MAX_BUCKETS
            ));
        }
        let mut last = 0u64;
        for b in &self.usage {
            b.validate()?;
            if b.seq <= last {
                return Err(format!(
                    "usage bucket sequence numbers must increase; {} follows {}",
                    b.seq, last
                ));
            }
            last = b.seq;
        }
        Ok(())
    }
}

/// The signed content of a bundle ("Download").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundlePayload {
    /// Increases with every bundle issued to this server.
    pub serial: u64,
    pub server_guid: ServerGuid,
    pub context: Context,
    pub installation_id: InstallationId,
    pub issued_at: DateTime<Utc>,
    /// After this instant the server must serve no licenses until it syncs again.
    pub not_after: DateTime<Utc>,
    pub sync_interval_secs: u64,
    pub next_sync_token: SyncToken,
    /// Highest usage sequence number the node has stored for this server's instance.
    pub acked_usage_seq: u64,
    pub licenses: Vec<License>,
}

impl BundlePayload {
    /// Licenses usable on `today`: the bundle never lists expired ones, but a server keeps
    /// a bundle for weeks and must drop a license the day it expires.
    pub fn licenses_in_force(&self, today: NaiveDate) -> impl Iterator<Item = &License> {
        self.licenses
            .iter()
            .filter(move |l| !l.is_expired_on(today))
    }
}
