//! What the node does, independent of HTTP: validates requests, makes identifiers, applies
//! the store's transactions and signs bundles.

use std::sync::Arc;

use chrono::NaiveDate;
use leasehold_proto::{
    Clock, InstallationId, License, LicenseId, ServerGuid, SignedEnvelope, SyncToken, SyncUpload,
    VendorSigningKey, MIN_GRACE_DAYS,
};
use rand::RngCore;

use crate::api::{GrantLicense, InstallationView, LicenseView, ServerView, UpdateServer, UsageRow};
use crate::store::{DynStore, SyncInput};
use leasehold_web::ApiError;

/// Shortest sync interval a vendor may set: more often would only load the nodes.
pub const MIN_SYNC_INTERVAL_SECS: u64 = 60;

#[derive(Debug)]
pub struct Node {
    store: DynStore,
    key: VendorSigningKey,
    clock: Arc<dyn Clock>,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

impl Node {
    pub fn new(store: DynStore, key: VendorSigningKey, clock: Arc<dyn Clock>) -> Self {
        Self { store, key, clock }
    }

    pub fn signing_key(&self) -> &VendorSigningKey {
        &self.key
    }

    /// Takes an upload, stores its usage and returns the signed bundle.
    pub async fn sync(&self, upload: SyncUpload) -> Result<SignedEnvelope, ApiError> {
        upload.validate().map_err(ApiError::bad_request)?;
        let bundle = self
            .store
            .sync(SyncInput {
                upload,
                now: self.clock.now(),
                new_token: SyncToken::from_random(random()),
            })
            .await?;
        Ok(self.key.sign_bundle(&bundle))
    }

    pub async fn create_installation(&self, name: &str) -> Result<InstallationView, ApiError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "installation name must be 1 to 200 printable characters",
            ));
        }
        let id = InstallationId::from_random(random());
        Ok(self
            .store
            .create_installation(&id, name, self.clock.now())
            .await?)
    }

    pub async fn list_installations(&self) -> Result<Vec<InstallationView>, ApiError> {
        Ok(self.store.list_installations().await?)
    }

    pub async fn add_server(
        &self,
        installation: &InstallationId,
        context: leasehold_proto::Context,
    ) -> Result<ServerView, ApiError> {
        let guid = ServerGuid::from_bytes(random());
        Ok(self
            .store
            .add_server(installation, guid, context, self.clock.now())
            .await?)
    }

    pub async fn server(&self, guid: ServerGuid) -> Result<ServerView, ApiError> {
        Ok(self.store.server(guid).await?)
    }

    pub async fn update_server(
        &self,
        guid: ServerGuid,
        update: &UpdateServer,
    ) -> Result<ServerView, ApiError> {
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
        let current = self.store.server(guid).await?;
        let grace_secs = u64::from(update.grace_days.unwrap_or(current.grace_days)) * 86_400;
        if let Some(secs) = update.sync_interval_secs {
            if secs < MIN_SYNC_INTERVAL_SECS {
                return Err(ApiError::bad_request(format!(
                    "sync interval {secs} s is below the minimum of {MIN_SYNC_INTERVAL_SECS} s"
                )));
            }
        }
        let interval = update
            .sync_interval_secs
            .unwrap_or(current.sync_interval_secs);
        if interval * 2 > grace_secs {
            return Err(ApiError::bad_request(format!(
                "sync interval {interval} s must be at most half the grace period ({grace_secs} s), so a missed sync can be retried before licenses lapse"
            )));
        }
        Ok(self.store.update_server(guid, update).await?)
    }

    pub async fn reassign_server(&self, guid: ServerGuid) -> Result<ServerView, ApiError> {
        Ok(self.store.reassign_server(guid).await?)
    }

    pub async fn grant_license(&self, req: &GrantLicense) -> Result<LicenseView, ApiError> {
        let server = self.store.server(req.server).await?;
        let license = License {
            id: LicenseId::from_random(random()),
            feature: req.feature.clone(),
            count: req.count,
            context: req.context.unwrap_or(server.context),
            maintenance_until: req.maintenance_until,
            expires: req.expires,
            backs_up: req.backs_up.clone(),
        };
        license
            .validate()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(self
            .store
            .grant_license(req.server, &license, self.clock.now())
            .await?)
    }

    pub async fn transfer_license(
        &self,
        id: &LicenseId,
        to: ServerGuid,
    ) -> Result<LicenseView, ApiError> {
        Ok(self.store.transfer_license(id, to).await?)
    }

    pub async fn revoke_license(&self, id: &LicenseId) -> Result<LicenseView, ApiError> {
        Ok(self.store.revoke_license(id, self.clock.now()).await?)
    }

    pub async fn set_maintenance(
        &self,
        id: &LicenseId,
        until: NaiveDate,
    ) -> Result<LicenseView, ApiError> {
        Ok(self.store.set_maintenance(id, until).await?)
    }

    pub async fn usage(&self, guid: ServerGuid) -> Result<Vec<UsageRow>, ApiError> {
        Ok(self.store.usage(guid).await?)
    }
}

impl Node {
    pub async fn license(&self, id: &LicenseId) -> Result<LicenseView, ApiError> {
        Ok(self.store.license(id).await?)
    }
}
