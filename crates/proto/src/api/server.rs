//! JSON bodies of the server's admin API, shared with the `leasehold server` CLI and the
//! dashboard.

use crate::{ClientId, Context, Feature, InstallationId, ServerGuid};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Why the server serves licenses or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// No GUID set yet.
    Unconfigured,
    /// GUID set, no bundle yet.
    NotSynced,
    /// Serving licenses.
    Ok,
    /// Past `not_after`: no contact with the license nodes for too long.
    Expired,
    /// The wall clock went back more than an hour below the highest time seen.
    ClockTampered,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    pub guid: Option<ServerGuid>,
    pub context: Option<Context>,
    pub installation: Option<InstallationId>,
    pub state: ServerState,
    /// Why the state is not `ok`, in words.
    pub reason: Option<String>,
    pub licenses: Vec<LicenseStatus>,
    pub clients: usize,
    pub learning_until: Option<DateTime<Utc>>,
    pub last_sync: Option<DateTime<Utc>>,
    pub last_sync_node: Option<String>,
    pub last_sync_error: Option<String>,
    pub next_sync: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
    pub grace_days_left: Option<i64>,
    pub bundle_serial: u64,
    /// Key id of the vendor key that signed the bundle in force (after a key rotation: which
    /// key this server's licenses rest on).
    #[serde(default)]
    pub bundle_key_id: Option<String>,
    pub pending_usage_buckets: usize,
    /// Since when writes to the data directory fail (a full disk, a read-only file system):
    /// licenses are still served and usage is kept in memory and retried, but nothing new
    /// is durable. `None` while writes succeed.
    #[serde(default)]
    pub storage_failing_since: Option<DateTime<Utc>>,
    /// The last failed write's words, while writes fail.
    #[serde(default)]
    pub storage_error: Option<String>,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LicenseStatus {
    pub id: String,
    pub feature: Feature,
    pub count: u32,
    pub in_use: u32,
    pub reserved: u32,
    pub context: Context,
    pub maintenance_until: NaiveDate,
    pub expires: Option<NaiveDate>,
    pub backs_up: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeStatus {
    pub url: String,
    pub last_ok: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl NodeStatus {
    /// A node not tried yet.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            last_ok: None,
            last_error: None,
        }
    }
}

/// One client process holding a lease, for the site's operator (`GET /v1/admin/clients`,
/// the Clients page, `leasehold server clients`). Name and address stay on this server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientStatus {
    pub client: ClientId,
    /// What the client calls itself (`hostname/program[pid]` unless its application or
    /// `LEASEHOLD_CLIENT_NAME` says otherwise); `None` from a client that sends no name.
    #[serde(default)]
    pub name: Option<String>,
    /// The source address of its last request.
    #[serde(default)]
    pub address: Option<String>,
    /// The release date of its product (for the maintenance check).
    #[serde(default)]
    pub product_release: Option<NaiveDate>,
    /// When this server first served it (since it last came: a client gone longer than its
    /// lease, or a server restart, starts again).
    #[serde(default)]
    pub connected_since: Option<DateTime<Utc>>,
    pub failover: bool,
    pub last_seen_secs_ago: u64,
    pub features: Vec<ClientFeatureStatus>,
}

impl ClientStatus {
    /// Licenses it holds now, over all features.
    pub fn in_use(&self) -> u64 {
        self.features.iter().map(|f| u64::from(f.in_use)).sum()
    }
}

/// How `GET /v1/admin/clients` orders clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientSort {
    /// By name, then id (clients without a name last).
    #[default]
    Name,
    /// By source address.
    Address,
    /// Most licenses in use first.
    InUse,
    /// Longest connected first.
    ConnectedSince,
    /// Most recently seen first.
    LastSeen,
    /// By client id (the order of the pages before names existed).
    Id,
}

impl ClientSort {
    pub const ALL: [ClientSort; 6] = [
        ClientSort::Name,
        ClientSort::Address,
        ClientSort::InUse,
        ClientSort::ConnectedSince,
        ClientSort::LastSeen,
        ClientSort::Id,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientSort::Name => "name",
            ClientSort::Address => "address",
            ClientSort::InUse => "in_use",
            ClientSort::ConnectedSince => "connected_since",
            ClientSort::LastSeen => "last_seen",
            ClientSort::Id => "id",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = Self::ALL.iter().map(|c| c.as_str()).collect();
                format!("sort must be one of {}, got {s:?}", all.join(", "))
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientFeatureStatus {
    pub feature: Feature,
    pub quota: u32,
    pub in_use: u32,
}

/// `PUT /v1/admin/guid`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetGuid {
    pub guid: String,
}

/// The answer of a sync or an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncOutcome {
    pub ok: bool,
    pub node: Option<String>,
    pub serial: Option<u64>,
    pub licenses: usize,
    pub acked_usage_seq: Option<u64>,
    pub error: Option<String>,
}

/// `GET /v1/admin/client-key`, and the answer of `POST /v1/admin/client-key`: the key
/// applications send (`Authorization: Bearer KEY`) to be leased licenses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientKeyView {
    pub key: String,
    /// Until when each replaced key is still accepted.
    pub previous_valid_until: Vec<DateTime<Utc>>,
}

/// `POST /v1/admin/client-key`: make `key` the client key (from another server of the
/// installation, say), or a fresh one when it is absent. The replaced key stays valid for the
/// server's overlap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetClientKey {
    #[serde(default)]
    pub key: Option<String>,
}

/// `GET /v1/admin/usage?from=DATE&to=DATE`: the customer's own usage report, one row per
/// feature per hour of the UTC days `from` to `to` (inclusive) that the server still keeps.
/// Counts only: nothing per client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageExport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub rows: Vec<HourUsage>,
}

/// One feature over one hour, as the export's JSON and CSV carry it (the CSV header is
/// these field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HourUsage {
    /// Start of the hour (UTC).
    pub hour: DateTime<Utc>,
    pub feature: Feature,
    /// Highest number in use at once during the hour, summed over clients.
    pub peak_in_use: u32,
    /// The time integral of the number in use over the hour (license-seconds / 3600).
    pub license_hours: f64,
    pub grants: u64,
    pub denials: u64,
    /// Of `denials`: those reported while licenses were neither in use nor reserved.
    pub denials_while_free: u64,
    /// On a backup server: license time used by clients in failover, in hours.
    pub backup_use_hours: f64,
    /// The hour is still in progress.
    pub open: bool,
}
