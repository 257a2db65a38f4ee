//! Storage behind one small trait. The backend is picked at runtime from the URL scheme
//! (`sqlite://` now; `postgres://` has its own module and migrations). Each method is one
//! transaction: it either changes everything it says or nothing.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use leasehold_proto::rules::RuleError;
use leasehold_proto::{
    BundlePayload, Context, ErrorCode, InstallationId, License, LicenseId, ServerGuid, SyncToken,
    SyncUpload,
};

use crate::api::{InstallationView, LicenseView, ServerView, UpdateServer, UsageRow};

pub mod sqlite;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    /// A licensing rule refused the change.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A request the node understands but refuses, with the code the client sees.
    #[error("{1}")]
    Refused(ErrorCode, String),
    #[error("database: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Other(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a sync needs from the store: the upload, the moment, and a fresh token.
#[derive(Debug, Clone)]
pub struct SyncInput {
    pub upload: SyncUpload,
    pub now: DateTime<Utc>,
    pub new_token: SyncToken,
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    async fn create_installation(
        &self,
        id: &InstallationId,
        name: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<InstallationView>;
    async fn list_installations(&self) -> StoreResult<Vec<InstallationView>>;

    async fn add_server(
        &self,
        installation: &InstallationId,
        guid: ServerGuid,
        context: Context,
        now: DateTime<Utc>,
    ) -> StoreResult<ServerView>;
    async fn server(&self, guid: ServerGuid) -> StoreResult<ServerView>;
    async fn update_server(
        &self,
        guid: ServerGuid,
        update: &UpdateServer,
    ) -> StoreResult<ServerView>;
    /// Frees the GUID for a new instance: forgets the bound instance and the token chain.
    async fn reassign_server(&self, guid: ServerGuid) -> StoreResult<ServerView>;

    async fn grant_license(
        &self,
        server: ServerGuid,
        license: &License,
        now: DateTime<Utc>,
    ) -> StoreResult<LicenseView>;
    async fn license(&self, id: &LicenseId) -> StoreResult<LicenseView>;
    async fn transfer_license(&self, id: &LicenseId, to: ServerGuid) -> StoreResult<LicenseView>;
    async fn revoke_license(&self, id: &LicenseId, now: DateTime<Utc>) -> StoreResult<LicenseView>;
    async fn set_maintenance(&self, id: &LicenseId, until: NaiveDate) -> StoreResult<LicenseView>;

    async fn usage(&self, guid: ServerGuid) -> StoreResult<Vec<UsageRow>>;

    /// Checks the upload against the server's binding and token chain, stores its usage,
    /// advances the chain and returns the bundle to sign — all in one transaction.
    async fn sync(&self, input: SyncInput) -> StoreResult<BundlePayload>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the backend the URL names, creating the database and running migrations.
pub async fn open(url: &str) -> StoreResult<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else {
        Err(StoreError::Other(format!(
            "database URL {url:?} is not supported: use sqlite://PATH"
        )))
    }
}
