//! Client ↔ server lease messages (DESIGN.md §3.2).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::guid::ServerGuid;
use crate::ids::{ClientId, Feature};
use crate::license::Context;

/// What a client tells the server every refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    pub client_id: ClientId,
    /// Release date of the client's product, for the maintenance check.
    pub product_release: NaiveDate,
    pub features: BTreeMap<Feature, FeatureRequest>,
    /// True when the client has given up on its primary and talks to a backup.
    #[serde(default)]
    pub failover: bool,
    /// Increases with every request the client sends (to any server). A release names the
    /// last one it covers, so a release that arrives late cannot free a newer grant.
    #[serde(default)]
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureRequest {
    /// Licenses the client holds now, with or without a valid lease.
    pub in_use: u32,
    /// Licenses it would like to be able to hold (in use plus head room).
    pub want: u32,
    /// The quota the client holds under a lease that has not expired by its own clock; 0 when
    /// it has none. A restarted server confirms at most this much while it relearns leases.
    #[serde(default)]
    pub quota: u32,
    /// Acquisitions granted from the cache since the client started (a running total, so a
    /// re-sent report is never counted twice).
    #[serde(default)]
    pub acquired: u64,
    /// Acquisitions denied by the cache since the client started (a running total).
    #[serde(default)]
    pub denied: u64,
}

/// What the server grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseResponse {
    pub server_guid: ServerGuid,
    pub context: Context,
    pub lease_secs: u64,
    pub features: BTreeMap<Feature, FeatureQuota>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureQuota {
    /// How many the client may hold at once until its lease expires.
    pub quota: u32,
    /// Why the quota is below what was wanted, for programs; `reason` says it for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<QuotaReason>,
    /// Why the quota is below what was wanted, when it is for a reason other than sharing
    /// (no such license, maintenance expired, backup not in failover, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why a quota is below what a client wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaReason {
    /// Every license of the feature is in use or promised to other clients.
    Exhausted,
    /// The server restarted recently and is relearning leases.
    Relearning,
    /// The server has no license for the feature.
    NoLicense,
    /// Maintenance of every license of the feature ends before the product's release.
    Maintenance,
    /// A backup server asked by a client that is not in failover.
    BackupOnly,
    /// The server serves no licenses at all now (not synced, grace over, clock set back).
    Suspended,
}
