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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientStatus {
    pub client: ClientId,
    pub failover: bool,
    pub last_seen_secs_ago: u64,
    pub features: Vec<ClientFeatureStatus>,
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
