//! JSON bodies of the vendor admin API (`/v1/admin/...`), shared by the node's handlers and
//! the `leasehold vendor` CLI so the two cannot drift apart. Every route is listed in
//! `crates/node/src/http.rs` and documented in `docs/protocol.md`.

use crate::{Context, Feature, InstallationId, InstanceId, License, LicenseId, ServerGuid};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// `POST /v1/admin/installations`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateInstallation {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallationView {
    pub id: InstallationId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub servers: Vec<ServerSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerSummary {
    pub guid: ServerGuid,
    pub context: Context,
}

/// `GET /v1/admin/installations`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallationList {
    pub installations: Vec<InstallationView>,
}

/// `POST /v1/admin/servers`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddServer {
    pub installation: InstallationId,
    pub context: Context,
}

/// `GET /v1/admin/servers/{guid}` and the answer of every server-changing call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerView {
    pub guid: ServerGuid,
    pub context: Context,
    pub installation: InstallationId,
    /// Licenses assigned and not revoked (expired ones included, marked by their date).
    pub licenses: Vec<License>,
    pub last_sync: Option<DateTime<Utc>>,
    pub instance_id: Option<InstanceId>,
    pub grace_days: u32,
    pub sync_interval_secs: u64,
    pub bundle_serial: u64,
    pub acked_usage_seq: u64,
    pub software_version: Option<String>,
    /// How many times a copy of this server presented a superseded sync token.
    pub forks_detected: u64,
    /// When the last of those was refused.
    #[serde(default)]
    pub last_fork: Option<DateTime<Utc>>,
    /// When the vendor last reassigned the GUID (a fork refused before then is resolved).
    #[serde(default)]
    pub reassigned_at: Option<DateTime<Utc>>,
}

impl ServerView {
    /// A copy of the server was refused since the GUID was last reassigned: someone must
    /// decide which copy keeps the GUID.
    pub fn fork_open(&self) -> bool {
        match (self.last_fork, self.reassigned_at) {
            (Some(fork), Some(reassigned)) => fork > reassigned,
            (Some(_), None) => true,
            (None, _) => self.forks_detected > 0 && self.reassigned_at.is_none(),
        }
    }
}

/// `PATCH /v1/admin/servers/{guid}`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateServer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval_secs: Option<u64>,
}

/// `POST /v1/admin/licenses`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GrantLicense {
    pub server: ServerGuid,
    pub feature: Feature,
    pub count: u32,
    /// Defaults to the server's context; a different one is refused with `context_mismatch`.
    #[serde(default)]
    pub context: Option<Context>,
    pub maintenance_until: NaiveDate,
    #[serde(default)]
    pub expires: Option<NaiveDate>,
    #[serde(default)]
    pub backs_up: Option<LicenseId>,
}

/// A license with the server it is assigned to; the answer of every license call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LicenseView {
    #[serde(flatten)]
    pub license: License,
    pub server: ServerGuid,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `POST /v1/admin/licenses/{id}/transfer`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TransferLicense {
    pub to: ServerGuid,
    /// The server the license must be on now; when it has moved since (another vendor
    /// tool, another node), the transfer is refused with `stale_request` and changes
    /// nothing, so of two racing transfers exactly one wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ServerGuid>,
}

/// `POST /v1/admin/licenses/{id}/maintenance`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetMaintenance {
    pub until: NaiveDate,
}

/// One usage row as received from a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageRow {
    pub instance_id: InstanceId,
    pub seq: u64,
    pub feature: Feature,
    pub hour: DateTime<Utc>,
    pub peak_in_use: u32,
    pub grants: u64,
    pub denials: u64,
    /// Of `denials`: reported while the server had licenses neither in use nor reserved.
    #[serde(default)]
    pub denials_while_free: u64,
    pub backup_use_secs: u64,
    /// License-seconds of the hour (0 from servers older than the field).
    #[serde(default)]
    pub license_secs: u64,
    pub received_at: DateTime<Utc>,
}

/// `GET /v1/admin/servers/{guid}/usage`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageReport {
    pub server: ServerGuid,
    pub rows: Vec<UsageRow>,
}

/// `GET /v1/admin/installations/{id}/usage?from=DATE&to=DATE`: the vendor's report of one
/// installation, per day (UTC), feature and server context, from the hourly rows its
/// servers uploaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallationUsage {
    pub installation: InstallationId,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub days: Vec<DailyUsage>,
    /// Hours in which a backup server served clients while the production server of the
    /// installation also reported use of the same feature: the backup licenses were used
    /// beside the production ones, not instead of them.
    pub simultaneous: Vec<SimultaneousUse>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DailyUsage {
    pub day: NaiveDate,
    pub feature: Feature,
    /// The context of the servers counted (production, backup or development).
    pub context: Context,
    /// Highest hourly peak of the day, summed over the installation's servers of this
    /// context (each server's peak of the hour; an upper bound when peaks did not coincide).
    pub peak_in_use: u32,
    /// Sum of the hourly peaks: an upper bound of licenses held × hours. (Named
    /// `license_hours` before the servers reported `license_secs`; read under that name too.)
    #[serde(alias = "license_hours")]
    pub peak_hours: u64,
    /// License-seconds: the time integral of the number in use, summed over the servers of
    /// this context (license-hours = this / 3600). Servers older than the field report none.
    #[serde(default)]
    pub license_secs: u64,
    pub grants: u64,
    pub denials: u64,
    pub denials_while_free: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimultaneousUse {
    pub hour: DateTime<Utc>,
    pub feature: Feature,
    pub backup_server: ServerGuid,
    /// Seconds of that hour the backup server served clients in failover.
    pub backup_use_secs: u64,
    /// The production server's peak in use that hour.
    pub production_peak: u32,
}

/// `GET /v1/admin/events?silent_days=N`: what a vendor should look at, per server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VendorEvents {
    pub at: DateTime<Utc>,
    pub silent_days: u32,
    pub events: Vec<VendorEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VendorEvent {
    pub kind: EventKind,
    pub server: ServerGuid,
    pub installation: InstallationId,
    pub context: Context,
    /// When it happened (the last one) or, for grace, when the grace period ends.
    pub at: Option<DateTime<Utc>>,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A copy of the server (copied data directory, cloned VM) was refused: a GUID conflict.
    Fork,
    /// The server reported another context than the vendor registered.
    ContextRejection,
    /// Its licenses are suspended: no sync within the grace period.
    GraceEnded,
    /// Within 14 days of the end of its grace period.
    GraceEnding,
    /// No sync for more than `silent_days` days.
    Silent,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Fork => "fork",
            EventKind::ContextRejection => "context_rejection",
            EventKind::GraceEnded => "grace_ended",
            EventKind::GraceEnding => "grace_ending",
            EventKind::Silent => "silent",
        }
    }
}
