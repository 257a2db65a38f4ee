//! The node's decisions, once for every backend: each function runs inside one store
//! transaction, reads domain rows, applies the licensing rules and writes. Refusals are
//! decided before the first write, so a refused request changes nothing (the one exception,
//! a detected fork, is counted by the caller; see [`sync`]).

pub mod audit;
pub mod batch;
pub mod events;
pub mod report;
pub mod retention;
mod sync;

pub use sync::{sync, SyncFailure, SyncInput};

use chrono::{DateTime, NaiveDate, Utc};
use leasehold_proto::rules::{
    check_backup_license, check_installation_shape, check_license_loads_on,
};
use leasehold_proto::{Context, ErrorCode, InstallationId, License, LicenseId, ServerGuid};

use crate::api::{
    InstallationView, LicenseView, ServerSummary, ServerView, TransferLicense, UpdateServer,
    UsageRow,
};
use crate::store::{LicenseRecord, ServerRecord, StoreError, StoreResult, StoreTx};

type Tx<'a> = &'a mut dyn StoreTx;

pub(crate) fn unknown_server(guid: ServerGuid) -> StoreError {
    StoreError::Refused(
        ErrorCode::UnknownServer,
        format!("server {guid} is not known to this license node; check the GUID"),
    )
}

async fn load_server(tx: Tx<'_>, guid: ServerGuid, for_update: bool) -> StoreResult<ServerRecord> {
    tx.server(guid, for_update)
        .await?
        .ok_or_else(|| unknown_server(guid))
}

async fn active_license(
    tx: Tx<'_>,
    id: &LicenseId,
    for_update: bool,
) -> StoreResult<LicenseRecord> {
    match tx.license(id, for_update).await? {
        Some(l) if l.revoked_at.is_none() => Ok(l),
        _ => Err(StoreError::NotFound(format!(
            "license {id} not found (or revoked)"
        ))),
    }
}

fn license_view(r: LicenseRecord) -> LicenseView {
    LicenseView {
        license: r.license,
        server: r.server,
        revoked_at: r.revoked_at,
    }
}

pub async fn create_installation(
    tx: Tx<'_>,
    id: &InstallationId,
    name: &str,
    now: DateTime<Utc>,
) -> StoreResult<InstallationView> {
    tx.insert_installation(id, name, now).await?;
    Ok(InstallationView {
        id: id.clone(),
        name: name.to_owned(),
        created_at: now,
        servers: Vec::new(),
    })
}

pub async fn list_installations(tx: Tx<'_>) -> StoreResult<Vec<InstallationView>> {
    let installations = tx.installations().await?;
    let servers = tx.servers().await?;
    Ok(installations
        .into_iter()
        .map(|i| InstallationView {
            servers: servers
                .iter()
                .filter(|s| s.installation == i.id)
                .map(|s| ServerSummary {
                    guid: s.guid,
                    context: s.context,
                })
                .collect(),
            id: i.id,
            name: i.name,
            created_at: i.created_at,
        })
        .collect())
}

/// Registers a server, if the installation's shape allows one more of `context`.
pub async fn add_server(
    tx: Tx<'_>,
    installation: &InstallationId,
    guid: ServerGuid,
    context: Context,
    now: DateTime<Utc>,
) -> StoreResult<ServerView> {
    // Locked: two nodes adding a server to one installation decide one after the other.
    if tx.installation(installation, true).await?.is_none() {
        return Err(StoreError::NotFound(format!(
            "installation {installation} not found"
        )));
    }
    let contexts: Vec<Context> = tx
        .servers_of(installation)
        .await?
        .iter()
        .map(|s| s.context)
        .collect();
    check_installation_shape(&contexts, context)?;
    tx.insert_server(installation, guid, context, now).await?;
    server_view(tx, guid).await
}

pub async fn server_view(tx: Tx<'_>, guid: ServerGuid) -> StoreResult<ServerView> {
    let s = load_server(tx, guid, false).await?;
    let licenses = tx.licenses_of(guid).await?;
    Ok(ServerView {
        guid: s.guid,
        context: s.context,
        installation: s.installation,
        licenses,
        last_sync: s.last_sync,
        instance_id: s.instance_id,
        grace_days: s.grace_days,
        sync_interval_secs: s.sync_interval_secs,
        bundle_serial: s.bundle_serial,
        acked_usage_seq: s.acked_usage_seq,
        software_version: s.software_version,
        forks_detected: s.forks_detected,
        last_fork: s.last_fork,
        reassigned_at: s.reassigned_at,
    })
}

/// The installation a server belongs to.
pub async fn installation_of(tx: Tx<'_>, guid: ServerGuid) -> StoreResult<InstallationId> {
    Ok(load_server(tx, guid, false).await?.installation)
}

/// Changes the grace period and sync interval; the interval must stay at most half the
/// grace period, so a missed sync can be retried before licenses lapse. (The bounds of each
/// value alone are checked by [`crate::Node`] before the transaction.)
pub async fn update_server(
    tx: Tx<'_>,
    guid: ServerGuid,
    update: &UpdateServer,
) -> StoreResult<ServerView> {
    let current = load_server(tx, guid, true).await?;
    let grace_secs = u64::from(update.grace_days.unwrap_or(current.grace_days)) * 86_400;
    let interval = update
        .sync_interval_secs
        .unwrap_or(current.sync_interval_secs);
    if interval * 2 > grace_secs {
        return Err(StoreError::Refused(
            ErrorCode::BadRequest,
            format!(
                "sync interval {interval} s must be at most half the grace period ({grace_secs} s), so a missed sync can be retried before licenses lapse"
            ),
        ));
    }
    tx.set_server_policy(guid, update.grace_days, update.sync_interval_secs)
        .await?;
    server_view(tx, guid).await
}

/// Frees the GUID for a new instance: forgets the bound instance and the token chain, and
/// resolves the forks refused so far.
pub async fn reassign_server(
    tx: Tx<'_>,
    guid: ServerGuid,
    now: DateTime<Utc>,
) -> StoreResult<ServerView> {
    load_server(tx, guid, true).await?;
    tx.unbind_server(guid, now).await?;
    server_view(tx, guid).await
}

/// Checks that `license`, placed on `server`, obeys the context and backup rules.
async fn check_placement(tx: Tx<'_>, license: &License, server: &ServerRecord) -> StoreResult<()> {
    check_license_loads_on(license.context, server.context)?;
    if let Some(target_id) = &license.backs_up {
        let target = active_license(tx, target_id, false).await.map_err(|_| {
            StoreError::Refused(
                ErrorCode::InstallationShape,
                format!("backs_up names license {target_id}, which does not exist or is revoked"),
            )
        })?;
        let target_server = load_server(tx, target.server, false).await?;
        check_backup_license(
            license,
            &server.installation,
            &target.license,
            &target_server.installation,
        )?;
    }
    Ok(())
}

/// What a grant asks for; the license's context defaults to the server's.
#[derive(Debug, Clone)]
pub struct NewLicense<'a> {
    pub id: LicenseId,
    pub grant: &'a crate::api::GrantLicense,
}

pub async fn grant_license(
    tx: Tx<'_>,
    new: NewLicense<'_>,
    now: DateTime<Utc>,
) -> StoreResult<LicenseView> {
    let req = new.grant;
    let server = load_server(tx, req.server, true).await?;
    let license = License {
        id: new.id,
        feature: req.feature.clone(),
        count: req.count,
        context: req.context.unwrap_or(server.context),
        maintenance_until: req.maintenance_until,
        expires: req.expires,
        backs_up: req.backs_up.clone(),
    };
    license
        .validate()
        .map_err(|e| StoreError::Refused(ErrorCode::BadRequest, e.to_string()))?;
    check_placement(tx, &license, &server).await?;
    tx.insert_license(req.server, &license, now).await?;
    active_license(tx, &license.id, false)
        .await
        .map(license_view)
}

pub async fn license(tx: Tx<'_>, id: &LicenseId) -> StoreResult<LicenseView> {
    tx.license(id, false)
        .await?
        .map(license_view)
        .ok_or_else(|| StoreError::NotFound(format!("license {id} not found")))
}

/// Moves a license to another server. A license that backup licenses parallel stays in its
/// installation (they must be moved or revoked first).
pub async fn transfer_license(
    tx: Tx<'_>,
    id: &LicenseId,
    req: &TransferLicense,
) -> StoreResult<LicenseView> {
    let to = req.to;
    // Locked: of two transfers racing through two nodes, the second sees the first's move.
    let current = active_license(tx, id, true).await?;
    if let Some(from) = req.from {
        if current.server != from {
            return Err(StoreError::Refused(
                ErrorCode::StaleRequest,
                format!(
                    "license {id} is no longer on server {from} (it is on {}); nothing changed",
                    current.server
                ),
            ));
        }
    }
    let target = load_server(tx, to, false).await?;
    check_placement(tx, &current.license, &target).await?;
    let from = load_server(tx, current.server, false).await?;
    let backups = tx.backups_of(id).await?;
    if !backups.is_empty() && from.installation != target.installation {
        return Err(StoreError::Refused(
            ErrorCode::InstallationShape,
            format!(
                "license {id} is backed up by {}; a backup license must stay in the installation of the license it backs up, so transfer or revoke those first",
                join(&backups)
            ),
        ));
    }
    tx.move_license(id, to).await?;
    active_license(tx, id, false).await.map(license_view)
}

/// Revokes a license; one that backup licenses parallel is refused until they are revoked.
pub async fn revoke_license(
    tx: Tx<'_>,
    id: &LicenseId,
    now: DateTime<Utc>,
) -> StoreResult<LicenseView> {
    active_license(tx, id, true).await?;
    let backups = tx.backups_of(id).await?;
    if !backups.is_empty() {
        return Err(StoreError::Refused(
            ErrorCode::InstallationShape,
            format!(
                "license {id} is backed up by {}; revoke those backup licenses first",
                join(&backups)
            ),
        ));
    }
    tx.revoke_license(id, now).await?;
    license(tx, id).await
}

pub async fn set_maintenance(
    tx: Tx<'_>,
    id: &LicenseId,
    until: NaiveDate,
) -> StoreResult<LicenseView> {
    active_license(tx, id, true).await?;
    tx.set_maintenance(id, until).await?;
    active_license(tx, id, false).await.map(license_view)
}

/// The server's hourly rows still kept (older hours are rolled up into days).
pub async fn usage(tx: Tx<'_>, guid: ServerGuid) -> StoreResult<Vec<UsageRow>> {
    load_server(tx, guid, false).await?;
    // Years 1970 to 9999: every backend stores these as comparable text or timestamps.
    let until = NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or(NaiveDate::MAX);
    tx.usage_of(
        guid,
        DateTime::UNIX_EPOCH,
        crate::store::day_bounds(until).0,
    )
    .await
}

fn join(ids: &[LicenseId]) -> String {
    ids.iter()
        .map(LicenseId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Records that the database was just restored from a backup (see [`sync`]).
pub async fn record_restore(tx: Tx<'_>, now: DateTime<Utc>) -> StoreResult<()> {
    tx.record_restore(now).await
}

/// Longest report a request may ask for, in days.
pub const MAX_REPORT_DAYS: i64 = 3 * 366;

/// The vendor's usage report of an installation from `from` to `to` (inclusive, UTC days).
pub async fn installation_usage(
    tx: Tx<'_>,
    id: &InstallationId,
    from: NaiveDate,
    to: NaiveDate,
) -> StoreResult<crate::api::InstallationUsage> {
    if to < from || (to - from).num_days() >= MAX_REPORT_DAYS {
        return Err(StoreError::Refused(
            ErrorCode::BadRequest,
            format!(
                "the report period {from} to {to} must run forwards and span at most {MAX_REPORT_DAYS} days"
            ),
        ));
    }
    if tx.installation(id, false).await?.is_none() {
        return Err(StoreError::NotFound(format!("installation {id} not found")));
    }
    let mut servers = Vec::new();
    let (start, _) = crate::store::day_bounds(from);
    let (_, end) = crate::store::day_bounds(to);
    for s in tx.servers_of(id).await? {
        let rows = tx.usage_of(s.guid, start, end).await?;
        let daily = tx.daily_usage_of(s.guid, from, to).await?;
        servers.push(report::ServerUsage {
            guid: s.guid,
            context: s.context,
            rows,
            daily,
        });
    }
    let (days, simultaneous) = report::aggregate(&servers, from, to);
    Ok(crate::api::InstallationUsage {
        installation: id.clone(),
        from,
        to,
        days,
        simultaneous,
    })
}

/// What a vendor should look at across every server (see [`events::events`]).
pub async fn vendor_events(
    tx: Tx<'_>,
    now: DateTime<Utc>,
    silent_days: u32,
) -> StoreResult<crate::api::VendorEvents> {
    let servers = tx.servers_with_events(now, silent_days).await?;
    Ok(crate::api::VendorEvents {
        at: now,
        silent_days,
        events: events::events(&servers, now, silent_days),
    })
}
