//! What the node does, independent of HTTP: validates requests, makes identifiers, runs
//! each decision of [`crate::domain`] in one store transaction and signs bundles. Every
//! change takes a [`Change`] (who and why): its role is checked before anything is read,
//! and its audit entry is written in the change's own transaction.

mod queries;
mod staff;

pub use queries::INSTALLATIONS_PER_PAGE;

pub use staff::{
    ConsoleSession, NewSession, TokensOf, MAX_AUDIT_PAGE, SESSION_IDLE, SESSION_MAX_AGE,
};

use std::sync::Arc;

use chrono::NaiveDate;
use leasehold_proto::api::staff::AuditAction;
use leasehold_proto::{
    Clock, InstallationId, LicenseId, ServerGuid, SignedEnvelope, SyncToken, SyncUpload,
    VendorSigningKey, MIN_GRACE_DAYS,
};
use rand::RngCore;

use crate::api::{
    GrantLicense, InstallationView, LicenseView, ServerView, TransferLicense, UpdateServer,
    UsageRow,
};
use crate::domain::audit::{Change, Entry};
use crate::domain::batch::SyncWriter;
use crate::domain::retention::{self, MaintenanceReport, UsagePolicy};
use crate::domain::{self, NewLicense, SyncInput};
use crate::store::{DynStore, StoreTx};
use leasehold_web::ApiError;

/// What a change of one server does.
#[derive(Debug, Clone, Copy)]
enum ServerChange<'a> {
    Update(&'a UpdateServer),
    Reassign,
}

impl ServerChange<'_> {
    fn action(self) -> AuditAction {
        match self {
            ServerChange::Update(_) => AuditAction::ServerUpdate,
            ServerChange::Reassign => AuditAction::ServerReassign,
        }
    }
}

/// What a change of one license does.
#[derive(Debug, Clone, Copy)]
enum LicenseChange<'a> {
    Transfer(&'a TransferLicense),
    Revoke,
    Maintenance(NaiveDate),
}

impl LicenseChange<'_> {
    fn action(self) -> AuditAction {
        match self {
            LicenseChange::Transfer(_) => AuditAction::LicenseTransfer,
            LicenseChange::Revoke => AuditAction::LicenseRevoke,
            LicenseChange::Maintenance(_) => AuditAction::LicenseSetMaintenance,
        }
    }
}

/// Shortest sync interval a vendor may set: more often would only load the nodes.
pub const MIN_SYNC_INTERVAL_SECS: u64 = 60;

#[derive(Debug)]
pub struct Node {
    store: DynStore,
    syncs: SyncWriter,
    key: VendorSigningKey,
    clock: Arc<dyn Clock>,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

impl Node {
    /// A node on `store`; starts its sync writer, so it must be made inside a Tokio runtime.
    pub fn new(store: DynStore, key: VendorSigningKey, clock: Arc<dyn Clock>) -> Self {
        Self {
            syncs: SyncWriter::spawn(store.clone()),
            store,
            key,
            clock,
        }
    }

    async fn begin(&self) -> Result<Box<dyn StoreTx>, ApiError> {
        Ok(self.store.begin().await?)
    }

    pub fn signing_key(&self) -> &VendorSigningKey {
        &self.key
    }

    /// Sets the database pool gauges (`/metrics` calls it before rendering).
    pub fn update_gauges(&self) {
        let p = self.store.pool_stats();
        let in_use = p.size.saturating_sub(p.idle);
        metrics::gauge!("leasehold_node_db_connections", "state" => "in_use")
            .set(f64::from(in_use));
        metrics::gauge!("leasehold_node_db_connections", "state" => "idle").set(f64::from(p.idle));
        metrics::gauge!("leasehold_node_db_connections_max").set(f64::from(p.max));
    }

    /// One pass of usage maintenance (partitions ahead, roll-up of old hours into days,
    /// retention); see [`retention::maintain`].
    pub async fn maintain_usage(&self, policy: UsagePolicy) -> Result<MaintenanceReport, ApiError> {
        let report = retention::maintain(&self.store, self.clock.now(), policy).await?;
        metrics::counter!("leasehold_node_usage_rows_rolled_up_total")
            .increment(report.hourly_rows_rolled_up);
        metrics::counter!("leasehold_node_usage_daily_rows_deleted_total")
            .increment(report.daily_rows_deleted);
        Ok(report)
    }

    /// Runs [`Node::maintain_usage`] now and then every `every`, for as long as the node
    /// lives; a failed pass is logged, counted and tried again at the next turn.
    pub fn spawn_usage_maintenance(
        self: &Arc<Self>,
        policy: UsagePolicy,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let node = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(node) = node.upgrade() else { return };
                match node.maintain_usage(policy).await {
                    Ok(r) => {
                        metrics::counter!("leasehold_node_usage_maintenance_total", "result" => "ok")
                            .increment(1);
                        tracing::info!(
                            partitions_created = r.partitions_created,
                            days_rolled_up = r.days_rolled_up,
                            hourly_rows_rolled_up = r.hourly_rows_rolled_up,
                            daily_rows_deleted = r.daily_rows_deleted,
                            "usage maintenance done"
                        );
                    }
                    Err(e) => {
                        metrics::counter!("leasehold_node_usage_maintenance_total", "result" => "error")
                            .increment(1);
                        tracing::warn!(error = %e.message, "usage maintenance failed; next try at the next turn");
                    }
                }
            }
        })
    }

    /// Takes an upload, stores its usage and returns the signed bundle.
    pub async fn sync(&self, upload: SyncUpload) -> Result<SignedEnvelope, ApiError> {
        upload.validate().map_err(ApiError::bad_request)?;
        let bundle = self
            .syncs
            .sync(SyncInput {
                upload,
                now: self.clock.now(),
                new_token: SyncToken::from_random(random()),
            })
            .await?;
        Ok(self.key.sign_bundle(&bundle))
    }

    pub async fn create_installation(
        &self,
        change: Change<'_>,
        name: &str,
    ) -> Result<InstallationView, ApiError> {
        change.actor.require(AuditAction::InstallationCreate)?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "installation name must be 1 to 200 printable characters",
            ));
        }
        let id = InstallationId::from_random(random());
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let out = domain::create_installation(&mut *tx, &id, name, now).await?;
        Entry::new(AuditAction::InstallationCreate, id.as_str())
            .installation(&id)
            .after(&out)
            .write(&mut *tx, change, now)
            .await?;
        tx.commit().await?;
        Ok(out)
    }

    pub async fn list_installations(&self) -> Result<Vec<InstallationView>, ApiError> {
        let mut tx = self.begin().await?;
        let out = domain::list_installations(&mut *tx).await?;
        tx.commit().await?;
        Ok(out)
    }

    pub async fn add_server(
        &self,
        change: Change<'_>,
        installation: &InstallationId,
        context: leasehold_proto::Context,
    ) -> Result<ServerView, ApiError> {
        change.actor.require(AuditAction::ServerAdd)?;
        let guid = ServerGuid::from_bytes(random());
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let out = domain::add_server(&mut *tx, installation, guid, context, now).await?;
        Entry::new(AuditAction::ServerAdd, guid.to_string())
            .installation(installation)
            .server(guid)
            .after(&out)
            .write(&mut *tx, change, now)
            .await?;
        tx.commit().await?;
        Ok(out)
    }

    pub async fn server(&self, guid: ServerGuid) -> Result<ServerView, ApiError> {
        let mut tx = self.begin().await?;
        let out = domain::server_view(&mut *tx, guid).await?;
        tx.commit().await?;
        Ok(out)
    }

    pub async fn update_server(
        &self,
        change: Change<'_>,
        guid: ServerGuid,
        update: &UpdateServer,
    ) -> Result<ServerView, ApiError> {
        // The role before the values: a support account learns nothing from a refusal.
        change.actor.require(AuditAction::ServerUpdate)?;
        if update.grace_days.is_none() && update.sync_interval_secs.is_none() {
            return Err(ApiError::bad_request(
                "nothing to change: give grace_days and/or sync_interval_secs",
            ));
        }
        if let Some(days) = update.grace_days {
            if days < MIN_GRACE_DAYS {
                return Err(ApiError::bad_request(format!(
                    "grace_days {days} is below the minimum of {MIN_GRACE_DAYS} days"
                )));
            }
            if days > 3650 {
                return Err(ApiError::bad_request(format!(
                    "grace_days {days} is above the maximum of 3650 days"
                )));
            }
        }
        if let Some(secs) = update.sync_interval_secs {
            if secs < MIN_SYNC_INTERVAL_SECS {
                return Err(ApiError::bad_request(format!(
                    "sync interval {secs} s is below the minimum of {MIN_SYNC_INTERVAL_SECS} s"
                )));
            }
        }
        self.change_server(change, guid, ServerChange::Update(update))
            .await
    }

    /// Frees the GUID for a new instance (a rebuilt machine, or the one copy to keep after
    /// a clone); resolves the forks refused so far.
    pub async fn reassign_server(
        &self,
        change: Change<'_>,
        guid: ServerGuid,
    ) -> Result<ServerView, ApiError> {
        self.change_server(change, guid, ServerChange::Reassign)
            .await
    }

    /// One change of a server in one transaction: the role first, then the change, then its
    /// audit entry with the server before and after.
    async fn change_server(
        &self,
        change: Change<'_>,
        guid: ServerGuid,
        what: ServerChange<'_>,
    ) -> Result<ServerView, ApiError> {
        let action = what.action();
        change.actor.require(action)?;
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let before = domain::server_view(&mut *tx, guid).await?;
        let out = match what {
            ServerChange::Update(update) => domain::update_server(&mut *tx, guid, update).await,
            ServerChange::Reassign => domain::reassign_server(&mut *tx, guid, now).await,
        }?;
        Entry::new(action, guid.to_string())
            .installation(&out.installation)
            .server(guid)
            .before(&before)
            .after(&out)
            .write(&mut *tx, change, now)
            .await?;
        tx.commit().await?;
        Ok(out)
    }

    pub async fn grant_license(
        &self,
        change: Change<'_>,
        req: &GrantLicense,
    ) -> Result<LicenseView, ApiError> {
        change.actor.require(AuditAction::LicenseGrant)?;
        let new = NewLicense {
            id: LicenseId::from_random(random()),
            grant: req,
        };
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let out = domain::grant_license(&mut *tx, new, now).await?;
        let installation = domain::installation_of(&mut *tx, out.server).await?;
        Entry::new(AuditAction::LicenseGrant, out.license.id.as_str())
            .installation(&installation)
            .server(out.server)
            .after(&out)
            .write(&mut *tx, change, now)
            .await?;
        tx.commit().await?;
        Ok(out)
    }

    /// One change of a license in one transaction: the role first, then the change, then
    /// its audit entry with the license before and after and the installations it was in.
    async fn change_license(
        &self,
        change: Change<'_>,
        id: &LicenseId,
        what: LicenseChange<'_>,
    ) -> Result<LicenseView, ApiError> {
        let action = what.action();
        change.actor.require(action)?;
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let before = domain::license(&mut *tx, id).await?;
        let out = match what {
            LicenseChange::Transfer(req) => domain::transfer_license(&mut *tx, id, req).await,
            LicenseChange::Revoke => domain::revoke_license(&mut *tx, id, now).await,
            LicenseChange::Maintenance(until) => domain::set_maintenance(&mut *tx, id, until).await,
        }?;
        let from = domain::installation_of(&mut *tx, before.server).await?;
        let to = domain::installation_of(&mut *tx, out.server).await?;
        Entry::new(action, id.as_str())
            .installation(&from)
            .installation(&to)
            .server(before.server)
            .server(out.server)
            .before(&before)
            .after(&out)
            .write(&mut *tx, change, now)
            .await?;
        tx.commit().await?;
        Ok(out)
    }

    pub async fn transfer_license(
        &self,
        change: Change<'_>,
        id: &LicenseId,
        req: &TransferLicense,
    ) -> Result<LicenseView, ApiError> {
        self.change_license(change, id, LicenseChange::Transfer(req))
            .await
    }

    pub async fn revoke_license(
        &self,
        change: Change<'_>,
        id: &LicenseId,
    ) -> Result<LicenseView, ApiError> {
        self.change_license(change, id, LicenseChange::Revoke).await
    }

    pub async fn set_maintenance(
        &self,
        change: Change<'_>,
        id: &LicenseId,
        until: NaiveDate,
    ) -> Result<LicenseView, ApiError> {
        self.change_license(change, id, LicenseChange::Maintenance(until))
            .await
    }

    /// An air-gapped sync answered by a person (the console): the same sync as
    /// `POST /v1/sync`, with an audit entry saying who handed out the bundle. The sync
    /// commits first (it goes through the sync writer like every other); a failure to write
    /// the entry afterwards withholds the bundle.
    pub async fn offline_sync(
        &self,
        change: Change<'_>,
        upload: SyncUpload,
    ) -> Result<SignedEnvelope, ApiError> {
        change.actor.require(AuditAction::ServerOfflineSync)?;
        let guid = upload.server_guid;
        let uploaded = serde_json::json!({
            "instance_id": upload.instance_id,
            "last_bundle_serial": upload.last_bundle_serial,
            "usage_buckets": upload.usage.len(),
            "software_version": upload.software_version,
        });
        let envelope = self.sync(upload).await?;
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let after = domain::server_view(&mut *tx, guid).await?;
        Entry::new(AuditAction::ServerOfflineSync, guid.to_string())
            .installation(&after.installation)
            .server(guid)
            .before(&uploaded)
            .after(&after)
            .write(&mut *tx, change, now)
            .await?;
        tx.commit().await?;
        Ok(envelope)
    }

    pub async fn usage(&self, guid: ServerGuid) -> Result<Vec<UsageRow>, ApiError> {
        let mut tx = self.begin().await?;
        let out = domain::usage(&mut *tx, guid).await?;
        tx.commit().await?;
        Ok(out)
    }
}

impl Node {
    /// The usage report of an installation, `from` to `to` (UTC days; default: the last 30
    /// days up to today).
    pub async fn installation_usage(
        &self,
        id: &InstallationId,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<crate::api::InstallationUsage, ApiError> {
        let to = to.unwrap_or_else(|| self.clock.now().date_naive());
        let from = from.unwrap_or(to - chrono::Duration::days(29));
        let mut tx = self.begin().await?;
        let out = domain::installation_usage(&mut *tx, id, from, to).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Records that the database was restored from a backup now: every server bound before
    /// may present, once, a sync token issued after the backup (instead of being refused
    /// until reassigned).
    pub async fn record_restore(&self) -> Result<(), ApiError> {
        let mut tx = self.begin().await?;
        domain::record_restore(&mut *tx, self.clock.now()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forks, context rejections, grace ending or ended, and servers silent for more than
    /// `silent_days` days.
    pub async fn events(&self, silent_days: u32) -> Result<crate::api::VendorEvents, ApiError> {
        let mut tx = self.begin().await?;
        let out = domain::vendor_events(&mut *tx, self.clock.now(), silent_days).await?;
        tx.commit().await?;
        Ok(out)
    }

    pub async fn license(&self, id: &LicenseId) -> Result<LicenseView, ApiError> {
        let mut tx = self.begin().await?;
        let out = domain::license(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(out)
    }
}
