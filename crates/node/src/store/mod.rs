//! Storage behind a narrow trait: transactions that read and write domain rows. Every rule
//! (context refusals, the sync-token chain, placement, transfer and revoke refusals, the
//! bundle) is decided in [`crate::domain`], once for every backend; a backend only runs
//! SQL. The backend is picked at runtime from the URL scheme.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use leasehold_proto::api::staff::{AccountName, AuditAction, AuditEntry, Role, Via};
use leasehold_proto::rules::RuleError;
use leasehold_proto::{
    AccountId, ApiTokenId, Context, ErrorCode, InstallationId, InstanceId, License, LicenseId,
    ServerGuid, SyncToken, UsageBucket,
};

use crate::api::UsageRow;

pub mod postgres;
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
    /// Two transactions collided (a deadlock or a serialization failure); running it again
    /// may succeed.
    #[error("database conflict: {0}")]
    Conflict(String),
    #[error("database: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    /// Deadlocks and serialization failures (SQLSTATE 40P01, 40001: PostgreSQL; SQLite,
    /// with one writer, has neither) are [`StoreError::Conflict`].
    fn from(e: sqlx::Error) -> Self {
        match e.as_database_error().and_then(|d| d.code()).as_deref() {
            Some("40001" | "40P01") => StoreError::Conflict(e.to_string()),
            _ => StoreError::Other(e.to_string()),
        }
    }
}

/// Both backends' row helpers: what a stored value that does not parse becomes, the
/// integer conversions (SQL integers are signed), a GUID as stored (canonical text, so
/// lookups by any accepted input form agree), and the columns of the records.
fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("stored {what} is unreadable: {e}"))
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn key(g: ServerGuid) -> String {
    g.to_string()
}

/// The first instant of a UTC day and of the next.
pub(crate) fn day_bounds(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = day.and_time(chrono::NaiveTime::MIN).and_utc();
    (start, start + chrono::Duration::days(1))
}

const SERVER_COLUMNS: &str = "guid, installation_id, context, grace_days, sync_interval_secs, instance_id, bundle_serial, acked_usage_seq, head_generation, last_sync, software_version, forks_detected, last_fork, context_rejections, last_context_rejection, reassigned_at";
const ACCOUNT_COLUMNS: &str =
    "id, name, role, password_hash, disabled_at, created_at, created_by, last_sign_in";
const AUDIT_COLUMNS: &str = "id, at, actor, actor_role, via, action, installation_id, other_installation_id, server_guid, other_server_guid, target, reason, before_json, after_json";

/// `text` with the wildcards of SQL `LIKE` escaped (`\` is the escape character), inside
/// `%…%`: a substring match.
fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}
const LICENSE_COLUMNS: &str =
    "id, server_guid, feature, count, context, maintenance_until, expires, backs_up, revoked_at";

pub type StoreResult<T> = Result<T, StoreError>;

/// A license server as the vendor registered it, and where its sync chain stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRecord {
    pub guid: ServerGuid,
    pub installation: InstallationId,
    pub context: Context,
    pub grace_days: u32,
    pub sync_interval_secs: u64,
    /// The instance bound to the GUID (`None`: free for the next one that syncs).
    pub instance_id: Option<InstanceId>,
    pub bundle_serial: u64,
    pub acked_usage_seq: u64,
    /// Generation of the newest sync token issued.
    pub head_generation: u64,
    pub last_sync: Option<DateTime<Utc>>,
    pub software_version: Option<String>,
    pub forks_detected: u64,
    pub last_fork: Option<DateTime<Utc>>,
    /// Syncs refused because the server reported another context than registered.
    pub context_rejections: u64,
    pub last_context_rejection: Option<DateTime<Utc>>,
    /// When the vendor last reassigned the GUID.
    pub reassigned_at: Option<DateTime<Utc>>,
}

/// A refused sync the node records on the server's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedRefusal {
    /// A second copy of the server presented a superseded token.
    Fork,
    /// The server reported another context than the vendor registered.
    Context,
}

/// A license and the server it is placed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseRecord {
    pub license: License,
    pub server: ServerGuid,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationRecord {
    pub id: InstallationId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A sync token the server issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRecord {
    pub generation: u64,
    pub revoked: bool,
}

/// What a successful sync changes on the server's row.
#[derive(Debug, Clone)]
pub struct SyncRecord<'a> {
    pub instance_id: &'a InstanceId,
    pub acked_usage_seq: u64,
    pub head_generation: u64,
    pub bundle_serial: u64,
    pub at: DateTime<Utc>,
    pub software_version: &'a str,
}

/// A vendor staff account as stored (with its password's Argon2 hash).
#[derive(Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub id: AccountId,
    pub name: AccountName,
    pub role: Role,
    /// An Argon2 PHC string.
    pub password_hash: String,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub last_sign_in: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for AccountRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .field("disabled_at", &self.disabled_at)
            .finish()
    }
}

/// A personal API token as stored (the token's SHA-256 is kept beside it, never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: ApiTokenId,
    pub account_id: AccountId,
    pub account_name: AccountName,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A console session (stored under the SHA-256 of its cookie) and its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub account: AccountRecord,
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// A message for the next page the session shows.
    pub flash: Option<String>,
}

/// An audit entry to append.
#[derive(Debug, Clone)]
pub struct NewAuditEntry<'a> {
    pub at: DateTime<Utc>,
    pub actor: &'a str,
    pub role: Option<Role>,
    pub via: Via,
    pub action: AuditAction,
    pub installation: Option<&'a InstallationId>,
    pub other_installation: Option<&'a InstallationId>,
    pub server: Option<ServerGuid>,
    pub other_server: Option<ServerGuid>,
    pub target: &'a str,
    pub reason: &'a str,
    /// JSON.
    pub before: Option<String>,
    /// JSON.
    pub after: Option<String>,
}

/// Which audit entries to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Entries that touched this installation.
    pub installation: Option<InstallationId>,
    /// Entries about this server or a license on it (granted, moved to or from, revoked).
    pub server: Option<ServerGuid>,
    /// Entries by this actor (an account name).
    pub actor: Option<String>,
    /// Entries about this target (a GUID, license id, account name…).
    pub target: Option<String>,
    /// Entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Entries with an id below this one (the next page back).
    pub before_id: Option<u64>,
    pub limit: u32,
}

/// The connection pool now, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// The store: hands out transactions.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    async fn begin(&self) -> StoreResult<Box<dyn StoreTx>>;
    fn pool_stats(&self) -> PoolStats;
}

/// One transaction. Dropped without [`StoreTx::commit`], it changes nothing.
#[async_trait]
pub trait StoreTx: StaffTx + Send {
    async fn commit(self: Box<Self>) -> StoreResult<()>;

    async fn insert_installation(
        &mut self,
        id: &InstallationId,
        name: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The installation; with `for_update`, locked until the transaction ends (its shape is
    /// decided under that lock).
    async fn installation(
        &mut self,
        id: &InstallationId,
        for_update: bool,
    ) -> StoreResult<Option<InstallationRecord>>;
    /// Every installation, oldest first.
    async fn installations(&mut self) -> StoreResult<Vec<InstallationRecord>>;
    /// Installations `offset..offset + limit`, oldest first, and how many there are.
    async fn installations_page(
        &mut self,
        offset: u64,
        limit: u32,
    ) -> StoreResult<(Vec<InstallationRecord>, u64)>;
    /// Installations whose name contains `fragment` (case-insensitive), by name.
    async fn installations_named(
        &mut self,
        fragment: &str,
        limit: u32,
    ) -> StoreResult<Vec<InstallationRecord>>;

    async fn insert_server(
        &mut self,
        installation: &InstallationId,
        guid: ServerGuid,
        context: Context,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The server's row; with `for_update`, locked until the transaction ends (where the
    /// backend has row locks), so two nodes cannot both decide on the same old row.
    async fn server(
        &mut self,
        guid: ServerGuid,
        for_update: bool,
    ) -> StoreResult<Option<ServerRecord>>;
    /// Every server, oldest first.
    async fn servers(&mut self) -> StoreResult<Vec<ServerRecord>>;
    /// The servers that may have an event at `now` (see [`crate::domain::events`]): a fork
    /// or context rejection recorded, a grace period ending within
    /// [`crate::domain::events::GRACE_WARNING_DAYS`] or ended, or no sync for more than
    /// `silent_days` days. A superset the events are decided from, found in the database
    /// rather than by reading every server.
    async fn servers_with_events(
        &mut self,
        now: DateTime<Utc>,
        silent_days: u32,
    ) -> StoreResult<Vec<ServerRecord>>;
    /// The servers of one installation.
    async fn servers_of(&mut self, installation: &InstallationId)
        -> StoreResult<Vec<ServerRecord>>;
    async fn set_server_policy(
        &mut self,
        guid: ServerGuid,
        grace_days: Option<u32>,
        sync_interval_secs: Option<u64>,
    ) -> StoreResult<()>;
    /// Frees the GUID: no bound instance, nothing acknowledged, every token revoked; records
    /// `at` as when it was reassigned.
    async fn unbind_server(&mut self, guid: ServerGuid, at: DateTime<Utc>) -> StoreResult<()>;
    /// Servers whose GUID (canonical text, `{` included) starts with `prefix`, by GUID.
    async fn servers_with_guid_prefix(
        &mut self,
        prefix: &str,
        limit: u32,
    ) -> StoreResult<Vec<ServerRecord>>;
    async fn record_refusal(
        &mut self,
        guid: ServerGuid,
        kind: RecordedRefusal,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn record_sync(&mut self, guid: ServerGuid, sync: &SyncRecord<'_>) -> StoreResult<()>;

    async fn insert_license(
        &mut self,
        server: ServerGuid,
        license: &License,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// A license, revoked or not; with `for_update`, locked until the transaction ends.
    async fn license(
        &mut self,
        id: &LicenseId,
        for_update: bool,
    ) -> StoreResult<Option<LicenseRecord>>;
    /// The server's licenses that are not revoked, by feature, then age.
    async fn licenses_of(&mut self, guid: ServerGuid) -> StoreResult<Vec<License>>;
    /// Licenses (not revoked) that back up `id`.
    async fn backups_of(&mut self, id: &LicenseId) -> StoreResult<Vec<LicenseId>>;
    async fn move_license(&mut self, id: &LicenseId, to: ServerGuid) -> StoreResult<()>;
    async fn revoke_license(&mut self, id: &LicenseId, at: DateTime<Utc>) -> StoreResult<()>;
    async fn set_maintenance(&mut self, id: &LicenseId, until: NaiveDate) -> StoreResult<()>;

    async fn token(
        &mut self,
        guid: ServerGuid,
        token: &SyncToken,
    ) -> StoreResult<Option<TokenRecord>>;
    /// Revokes the server's tokens of a generation above `above` (all with `None`).
    async fn revoke_tokens(&mut self, guid: ServerGuid, above: Option<u64>) -> StoreResult<()>;
    async fn insert_token(
        &mut self,
        guid: ServerGuid,
        token: &SyncToken,
        generation: u64,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// When the database was last restored from a backup, if ever.
    async fn restored_at(&mut self) -> StoreResult<Option<DateTime<Utc>>>;
    async fn record_restore(&mut self, at: DateTime<Utc>) -> StoreResult<()>;

    /// Stores usage buckets of one instance; a bucket already stored (same instance and
    /// sequence number) is left as it is.
    async fn insert_usage(
        &mut self,
        guid: ServerGuid,
        instance: &InstanceId,
        buckets: &[&UsageBucket],
        received_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The server's hourly usage with `from <= hour < until`, by hour, feature, instance and
    /// sequence number.
    async fn usage_of(
        &mut self,
        guid: ServerGuid,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<UsageRow>>;
    /// The server's rolled-up days from `from` to `to` (inclusive), by day and feature.
    async fn daily_usage_of(
        &mut self,
        guid: ServerGuid,
        from: NaiveDate,
        to: NaiveDate,
    ) -> StoreResult<Vec<DailyUsageRow>>;

    /// Serializes usage maintenance between nodes on one database (a transaction-scoped
    /// lock where the backend has one; SQLite has one writer anyway).
    async fn lock_usage_maintenance(&mut self) -> StoreResult<()>;
    /// The oldest hour of any stored hourly row.
    async fn oldest_usage_hour(&mut self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Folds every hourly row of UTC day `day` into the daily table (adding to a day already
    /// there) and deletes those hourly rows; the number of hourly rows folded.
    async fn roll_up_usage_day(&mut self, day: NaiveDate) -> StoreResult<u64>;
    /// Deletes rolled-up days before `before`; the number of daily rows deleted.
    async fn delete_daily_usage_before(&mut self, before: NaiveDate) -> StoreResult<u64>;
    /// Makes sure hourly rows of the days `from` to `to` have their own partition, and drops
    /// empty partitions of days before `from` (where the backend partitions); the number of
    /// partitions created.
    async fn prepare_usage_partitions(
        &mut self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> StoreResult<u32>;
}

/// Staff accounts, their tokens and console sessions, and the audit log: a part of every
/// transaction (a change and its audit entry commit together).
#[async_trait]
pub trait StaffTx: Send {
    /// Serializes decisions about the set of accounts (the first admin, the last admin)
    /// between nodes on one database.
    async fn lock_accounts(&mut self) -> StoreResult<()>;
    /// A taken name is [`StoreError::Refused`] with `already_exists`.
    async fn insert_account(&mut self, account: &AccountRecord) -> StoreResult<()>;
    async fn account_by_name(&mut self, name: &AccountName) -> StoreResult<Option<AccountRecord>>;
    /// Every account, by name.
    async fn accounts(&mut self) -> StoreResult<Vec<AccountRecord>>;
    /// Writes the role, password hash, disabled time and last sign-in of `account.id`.
    async fn update_account(&mut self, account: &AccountRecord) -> StoreResult<()>;

    async fn insert_api_token(&mut self, token: &ApiTokenRecord, hash: &str) -> StoreResult<()>;
    /// The token with this SHA-256 (hex) and its account, revoked or not.
    async fn api_token_by_hash(
        &mut self,
        hash: &str,
    ) -> StoreResult<Option<(ApiTokenRecord, AccountRecord)>>;
    async fn api_token(&mut self, id: &ApiTokenId) -> StoreResult<Option<ApiTokenRecord>>;
    /// The tokens of one account, or of all, newest first.
    async fn api_tokens(&mut self, account: Option<&AccountId>)
        -> StoreResult<Vec<ApiTokenRecord>>;
    async fn revoke_api_token(&mut self, id: &ApiTokenId, at: DateTime<Utc>) -> StoreResult<()>;
    /// Revokes every token of `account` not yet revoked.
    async fn revoke_api_tokens_of(
        &mut self,
        account: &AccountId,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn touch_api_token(&mut self, id: &ApiTokenId, at: DateTime<Utc>) -> StoreResult<()>;

    async fn insert_session(
        &mut self,
        hash: &str,
        account: &AccountId,
        csrf: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn session(&mut self, hash: &str) -> StoreResult<Option<SessionRecord>>;
    async fn touch_session(&mut self, hash: &str, at: DateTime<Utc>) -> StoreResult<()>;
    async fn set_session_flash(&mut self, hash: &str, flash: Option<&str>) -> StoreResult<()>;
    async fn delete_session(&mut self, hash: &str) -> StoreResult<()>;
    async fn delete_sessions_of(&mut self, account: &AccountId) -> StoreResult<()>;
    /// Deletes sessions last seen before `before`.
    async fn delete_idle_sessions(&mut self, before: DateTime<Utc>) -> StoreResult<()>;

    /// Appends an entry; its id.
    async fn insert_audit(&mut self, entry: &NewAuditEntry<'_>) -> StoreResult<u64>;
    /// Entries matching `query`, newest first, at most `query.limit`.
    async fn audit(&mut self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>>;
}

/// An audit row's stored JSON, read back.
fn audit_json(text: Option<String>) -> StoreResult<Option<serde_json::Value>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt("audit JSON", e)))
        .transpose()
}

/// The servers of an audit row, as stored in two columns.
fn audit_servers(first: Option<String>, second: Option<String>) -> StoreResult<Vec<ServerGuid>> {
    [first, second]
        .into_iter()
        .flatten()
        .map(|t| ServerGuid::parse(&t).map_err(|e| corrupt("guid", e)))
        .collect()
}

/// The installations of an audit row, as stored in two columns.
fn audit_installations(
    first: Option<String>,
    second: Option<String>,
) -> StoreResult<Vec<InstallationId>> {
    [first, second]
        .into_iter()
        .flatten()
        .map(|t| InstallationId::parse(&t).map_err(|e| corrupt("installation id", e)))
        .collect()
}

/// One server's usage of one feature on one UTC day, rolled up from its hourly rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyUsageRow {
    pub feature: leasehold_proto::Feature,
    pub day: NaiveDate,
    /// Highest hourly peak of the day (each hour's peaks summed over the server's instances).
    pub peak_in_use: u32,
    /// Sum of the hourly peaks (the column `license_hours`).
    pub peak_hours: u64,
    /// Sum of the hours' license-seconds.
    pub license_secs: u64,
    pub grants: u64,
    pub denials: u64,
    pub denials_while_free: u64,
    pub backup_use_secs: u64,
}

pub type DynStore = Arc<dyn Store>;

/// A database URL with its password replaced, for logs and messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// Opens the backend the URL names, creating the database and running migrations.
pub async fn open(url: &str) -> StoreResult<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(postgres::PostgresStore::open(url).await?))
    } else {
        Err(StoreError::Other(
            "the database URL must start with sqlite:// (one node) or postgres:// (many nodes on one database)".into(),
        ))
    }
}
