//! SQLite backend: one file, WAL, synchronous commits (a bundle acknowledges usage, so a
//! commit must be on disk before the answer leaves). Writes go through one connection, which
//! is all SQLite can do at once anyway and keeps transactions free of lock upgrades.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use leasehold_proto::rules::{
    check_backup_license, check_installation_shape, check_license_loads_on,
};
use leasehold_proto::{
    BundlePayload, Context, ErrorCode, Feature, InstallationId, InstanceId, License, LicenseId,
    ServerGuid,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{Store, StoreError, StoreResult, SyncInput};
use crate::api::{
    InstallationView, LicenseView, ServerSummary, ServerView, UpdateServer, UsageRow,
};
use crate::chain::{self, ChainStep, TokenLookup};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: mpsc::Sender<SyncJob>,
}

/// Syncs are committed in groups: one fsync makes a whole batch durable, and no answer
/// (which acknowledges usage) leaves before its batch is on disk.
#[derive(Debug)]
struct SyncJob {
    input: SyncInput,
    reply: oneshot::Sender<StoreResult<BundlePayload>>,
}

const MAX_SYNC_BATCH: usize = 128;

#[derive(Debug)]
struct SyncFailure {
    fork: bool,
    error: StoreError,
}

impl From<StoreError> for SyncFailure {
    fn from(error: StoreError) -> Self {
        Self { fork: false, error }
    }
}

impl From<sqlx::Error> for SyncFailure {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}

async fn sync_writer(pool: SqlitePool, mut jobs: mpsc::Receiver<SyncJob>) {
    let mut batch = Vec::with_capacity(MAX_SYNC_BATCH);
    while jobs.recv_many(&mut batch, MAX_SYNC_BATCH).await > 0 {
        match run_batch(&pool, &batch).await {
            Ok(results) => {
                for (job, result) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "sync batch failed; nothing of it was stored");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(StoreError::Other(e.to_string())));
                }
            }
        }
    }
}

/// Runs a batch in one transaction. A refused sync writes nothing (every refusal is decided
/// before its first write), so refusals need no savepoint; any database error fails the
/// whole batch, which then acknowledges nothing.
async fn run_batch(
    pool: &SqlitePool,
    batch: &[SyncJob],
) -> StoreResult<Vec<StoreResult<BundlePayload>>> {
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        match sync_in(&mut tx, &job.input).await {
            Ok(bundle) => results.push(Ok(bundle)),
            Err(SyncFailure {
                fork,
                error: StoreError::Refused(code, message),
            }) => {
                if fork {
                    // Recording the detection is the one write a refused sync makes.
                    sqlx::query(
                        "UPDATE servers SET forks_detected = forks_detected + 1 WHERE guid = ?",
                    )
                    .bind(key(job.input.upload.server_guid))
                    .execute(&mut *tx)
                    .await?;
                }
                results.push(Err(StoreError::Refused(code, message)));
            }
            Err(SyncFailure { error, .. }) => return Err(error),
        }
    }
    tx.commit().await?;
    Ok(results)
}

type Conn = SqliteConnection;

impl SqliteStore {
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("database URL {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Other(format!("cannot open {url}: {e}")))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Other(format!("migrating {url}: {e}")))?;
        let (writer, jobs) = mpsc::channel(4 * MAX_SYNC_BATCH);
        tokio::spawn(sync_writer(pool.clone(), jobs));
        Ok(Self { pool, writer })
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("stored {what} is unreadable: {e}"))
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt("timestamp", e))
}

fn opt_ts(s: Option<String>) -> StoreResult<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_ts).transpose()
}

fn parse_date(s: &str) -> StoreResult<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| corrupt("date", e))
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A guid as stored: canonical text, so lookups by any accepted input form agree.
fn key(g: ServerGuid) -> String {
    g.to_string()
}

struct ServerRow {
    guid: ServerGuid,
    installation: InstallationId,
    context: Context,
    grace_days: u32,
    sync_interval_secs: u64,
    instance_id: Option<InstanceId>,
    bundle_serial: u64,
    acked_usage_seq: u64,
    head_generation: u64,
    last_sync: Option<DateTime<Utc>>,
    software_version: Option<String>,
    forks_detected: u64,
}

fn server_row(r: &SqliteRow) -> StoreResult<ServerRow> {
    let guid: String = r.try_get("guid")?;
    let inst: String = r.try_get("installation_id")?;
    let ctx: String = r.try_get("context")?;
    let instance: Option<String> = r.try_get("instance_id")?;
    Ok(ServerRow {
        guid: ServerGuid::parse(&guid).map_err(|e| corrupt("guid", e))?,
        installation: InstallationId::parse(&inst).map_err(|e| corrupt("installation id", e))?,
        context: Context::from_str(&ctx).map_err(|e| corrupt("context", e))?,
        grace_days: u32::try_from(r.try_get::<i64, _>("grace_days")?).unwrap_or(u32::MAX),
        sync_interval_secs: u64_of(r.try_get("sync_interval_secs")?),
        instance_id: instance
            .as_deref()
            .map(InstanceId::parse)
            .transpose()
            .map_err(|e| corrupt("instance id", e))?,
        bundle_serial: u64_of(r.try_get("bundle_serial")?),
        acked_usage_seq: u64_of(r.try_get("acked_usage_seq")?),
        head_generation: u64_of(r.try_get("head_generation")?),
        last_sync: opt_ts(r.try_get("last_sync")?)?,
        software_version: r.try_get("software_version")?,
        forks_detected: u64_of(r.try_get("forks_detected")?),
    })
}

fn license_row(r: &SqliteRow) -> StoreResult<LicenseView> {
    let id: String = r.try_get("id")?;
    let feature: String = r.try_get("feature")?;
    let ctx: String = r.try_get("context")?;
    let server: String = r.try_get("server_guid")?;
    let maint: String = r.try_get("maintenance_until")?;
    let expires: Option<String> = r.try_get("expires")?;
    let backs_up: Option<String> = r.try_get("backs_up")?;
    let revoked: Option<String> = r.try_get("revoked_at")?;
    Ok(LicenseView {
        license: License {
            id: LicenseId::parse(&id).map_err(|e| corrupt("license id", e))?,
            feature: Feature::parse(&feature).map_err(|e| corrupt("feature", e))?,
            count: u32::try_from(r.try_get::<i64, _>("count")?).unwrap_or(0),
            context: Context::from_str(&ctx).map_err(|e| corrupt("context", e))?,
            maintenance_until: parse_date(&maint)?,
            expires: expires.as_deref().map(parse_date).transpose()?,
            backs_up: backs_up
                .as_deref()
                .map(LicenseId::parse)
                .transpose()
                .map_err(|e| corrupt("license id", e))?,
        },
        server: ServerGuid::parse(&server).map_err(|e| corrupt("guid", e))?,
        revoked_at: opt_ts(revoked)?,
    })
}

const LICENSE_COLUMNS: &str =
    "id, server_guid, feature, count, context, maintenance_until, expires, backs_up, revoked_at";

async fn load_server(tx: &mut Conn, guid: ServerGuid) -> StoreResult<ServerRow> {
    let row = sqlx::query("SELECT * FROM servers WHERE guid = ?")
        .bind(key(guid))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| unknown_server(guid))?;
    server_row(&row)
}

fn unknown_server(guid: ServerGuid) -> StoreError {
    StoreError::Refused(
        ErrorCode::UnknownServer,
        format!("server {guid} is not known to this license node; check the GUID"),
    )
}

async fn active_license(tx: &mut Conn, id: &LicenseId) -> StoreResult<LicenseView> {
    let row = sqlx::query(&format!(
        "SELECT {LICENSE_COLUMNS} FROM licenses WHERE id = ? AND revoked_at IS NULL"
    ))
    .bind(id.as_str())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("license {id} not found (or revoked)")))?;
    license_row(&row)
}

async fn licenses_of(tx: &mut Conn, guid: ServerGuid) -> StoreResult<Vec<License>> {
    let rows = sqlx::query(&format!(
        "SELECT {LICENSE_COLUMNS} FROM licenses WHERE server_guid = ? AND revoked_at IS NULL ORDER BY feature, created_at, id"
    ))
    .bind(key(guid))
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|r| license_row(r).map(|v| v.license))
        .collect()
}

async fn server_view(tx: &mut Conn, guid: ServerGuid) -> StoreResult<ServerView> {
    let s = load_server(tx, guid).await?;
    let licenses = licenses_of(tx, guid).await?;
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
    })
}

/// Backup licenses (not revoked) that parallel `id`.
async fn backups_of(tx: &mut Conn, id: &LicenseId) -> StoreResult<Vec<String>> {
    let rows = sqlx::query("SELECT id FROM licenses WHERE backs_up = ? AND revoked_at IS NULL")
        .bind(id.as_str())
        .fetch_all(&mut *tx)
        .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>("id")?))
        .collect()
}

/// Checks that `license`, placed on `server`, obeys the context and backup rules.
async fn check_placement(tx: &mut Conn, license: &License, server: &ServerRow) -> StoreResult<()> {
    check_license_loads_on(license.context, server.context)?;
    if let Some(target_id) = &license.backs_up {
        let target = active_license(tx, target_id).await.map_err(|_| {
            StoreError::Refused(
                ErrorCode::InstallationShape,
                format!("backs_up names license {target_id}, which does not exist or is revoked"),
            )
        })?;
        let target_server = load_server(tx, target.server).await?;
        check_backup_license(
            license,
            &server.installation,
            &target.license,
            &target_server.installation,
        )?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_installation(
        &self,
        id: &InstallationId,
        name: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<InstallationView> {
        sqlx::query("INSERT INTO installations (id, name, created_at) VALUES (?, ?, ?)")
            .bind(id.as_str())
            .bind(name)
            .bind(ts(now))
            .execute(&self.pool)
            .await?;
        Ok(InstallationView {
            id: id.clone(),
            name: name.to_owned(),
            created_at: now,
            servers: Vec::new(),
        })
    }

    async fn list_installations(&self) -> StoreResult<Vec<InstallationView>> {
        let mut tx = self.pool.begin().await?;
        let rows =
            sqlx::query("SELECT id, name, created_at FROM installations ORDER BY created_at, id")
                .fetch_all(&mut *tx)
                .await?;
        let servers = sqlx::query(
            "SELECT guid, context, installation_id FROM servers ORDER BY created_at, guid",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.try_get("id")?;
            let created: String = r.try_get("created_at")?;
            let mut view = InstallationView {
                id: InstallationId::parse(&id).map_err(|e| corrupt("installation id", e))?,
                name: r.try_get("name")?,
                created_at: parse_ts(&created)?,
                servers: Vec::new(),
            };
            for s in servers.iter().filter(|s| {
                s.try_get::<String, _>("installation_id").ok().as_deref() == Some(id.as_str())
            }) {
                let guid: String = s.try_get("guid")?;
                let ctx: String = s.try_get("context")?;
                view.servers.push(ServerSummary {
                    guid: ServerGuid::parse(&guid).map_err(|e| corrupt("guid", e))?,
                    context: Context::from_str(&ctx).map_err(|e| corrupt("context", e))?,
                });
            }
            out.push(view);
        }
        Ok(out)
    }

    async fn add_server(
        &self,
        installation: &InstallationId,
        guid: ServerGuid,
        context: Context,
        now: DateTime<Utc>,
    ) -> StoreResult<ServerView> {
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM installations WHERE id = ?")
            .bind(installation.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!(
                "installation {installation} not found"
            )));
        }
        let contexts = sqlx::query("SELECT context FROM servers WHERE installation_id = ?")
            .bind(installation.as_str())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                let c: String = r.try_get("context")?;
                Context::from_str(&c).map_err(|e| corrupt("context", e))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        check_installation_shape(&contexts, context)?;
        sqlx::query(
            "INSERT INTO servers (guid, installation_id, context, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(key(guid))
        .bind(installation.as_str())
        .bind(context.as_str())
        .bind(ts(now))
        .execute(&mut *tx)
        .await?;
        let view = server_view(&mut tx, guid).await?;
        tx.commit().await?;
        Ok(view)
    }

    async fn server(&self, guid: ServerGuid) -> StoreResult<ServerView> {
        let mut tx = self.pool.begin().await?;
        let view = server_view(&mut tx, guid).await?;
        tx.commit().await?;
        Ok(view)
    }

    async fn update_server(
        &self,
        guid: ServerGuid,
        update: &UpdateServer,
    ) -> StoreResult<ServerView> {
        let mut tx = self.pool.begin().await?;
        load_server(&mut tx, guid).await?;
        if let Some(days) = update.grace_days {
            sqlx::query("UPDATE servers SET grace_days = ? WHERE guid = ?")
                .bind(i64::from(days))
                .bind(key(guid))
                .execute(&mut *tx)
                .await?;
        }
        if let Some(secs) = update.sync_interval_secs {
            sqlx::query("UPDATE servers SET sync_interval_secs = ? WHERE guid = ?")
                .bind(i64_of(secs))
                .bind(key(guid))
                .execute(&mut *tx)
                .await?;
        }
        let view = server_view(&mut tx, guid).await?;
        tx.commit().await?;
        Ok(view)
    }

    async fn reassign_server(&self, guid: ServerGuid) -> StoreResult<ServerView> {
        let mut tx = self.pool.begin().await?;
        load_server(&mut tx, guid).await?;
        sqlx::query("UPDATE servers SET instance_id = NULL, acked_usage_seq = 0 WHERE guid = ?")
            .bind(key(guid))
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE sync_tokens SET revoked = 1 WHERE server_guid = ?")
            .bind(key(guid))
            .execute(&mut *tx)
            .await?;
        let view = server_view(&mut tx, guid).await?;
        tx.commit().await?;
        Ok(view)
    }

    async fn grant_license(
        &self,
        server: ServerGuid,
        license: &License,
        now: DateTime<Utc>,
    ) -> StoreResult<LicenseView> {
        let mut tx = self.pool.begin().await?;
        let s = load_server(&mut tx, server).await?;
        check_placement(&mut tx, license, &s).await?;
        sqlx::query(
            "INSERT INTO licenses (id, server_guid, feature, count, context, maintenance_until, expires, backs_up, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(license.id.as_str())
        .bind(key(server))
        .bind(license.feature.as_str())
        .bind(i64::from(license.count))
        .bind(license.context.as_str())
        .bind(license.maintenance_until.to_string())
        .bind(license.expires.map(|d| d.to_string()))
        .bind(license.backs_up.as_ref().map(|l| l.as_str().to_owned()))
        .bind(ts(now))
        .execute(&mut *tx)
        .await?;
        let view = active_license(&mut tx, &license.id).await?;
        tx.commit().await?;
        Ok(view)
    }

    async fn license(&self, id: &LicenseId) -> StoreResult<LicenseView> {
        let row = sqlx::query(&format!(
            "SELECT {LICENSE_COLUMNS} FROM licenses WHERE id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("license {id} not found")))?;
        license_row(&row)
    }

    async fn transfer_license(&self, id: &LicenseId, to: ServerGuid) -> StoreResult<LicenseView> {
        let mut tx = self.pool.begin().await?;
        let current = active_license(&mut tx, id).await?;
        let target = load_server(&mut tx, to).await?;
        check_placement(&mut tx, &current.license, &target).await?;
        let from = load_server(&mut tx, current.server).await?;
        let backups = backups_of(&mut tx, id).await?;
        if !backups.is_empty() && from.installation != target.installation {
            return Err(StoreError::Refused(
                ErrorCode::InstallationShape,
                format!(
                    "license {id} is backed up by {}; a backup license must stay in the installation of the license it backs up, so transfer or revoke those first",
                    backups.join(", ")
                ),
            ));
        }
        sqlx::query("UPDATE licenses SET server_guid = ? WHERE id = ?")
            .bind(key(to))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let view = active_license(&mut tx, id).await?;
        tx.commit().await?;
        Ok(view)
    }

    async fn revoke_license(&self, id: &LicenseId, now: DateTime<Utc>) -> StoreResult<LicenseView> {
        let mut tx = self.pool.begin().await?;
        active_license(&mut tx, id).await?;
        let backups = backups_of(&mut tx, id).await?;
        if !backups.is_empty() {
            return Err(StoreError::Refused(
                ErrorCode::InstallationShape,
                format!(
                    "license {id} is backed up by {}; revoke those backup licenses first",
                    backups.join(", ")
                ),
            ));
        }
        sqlx::query("UPDATE licenses SET revoked_at = ? WHERE id = ?")
            .bind(ts(now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.license(id).await
    }

    async fn set_maintenance(&self, id: &LicenseId, until: NaiveDate) -> StoreResult<LicenseView> {
        let mut tx = self.pool.begin().await?;
        active_license(&mut tx, id).await?;
        sqlx::query("UPDATE licenses SET maintenance_until = ? WHERE id = ?")
            .bind(until.to_string())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let view = active_license(&mut tx, id).await?;
        tx.commit().await?;
        Ok(view)
    }

    async fn usage(&self, guid: ServerGuid) -> StoreResult<Vec<UsageRow>> {
        let mut tx = self.pool.begin().await?;
        load_server(&mut tx, guid).await?;
        let rows = sqlx::query(
            "SELECT instance_id, seq, feature, hour, peak_in_use, grants, denials, denials_while_free, backup_use_secs, received_at FROM usage WHERE server_guid = ? ORDER BY hour, feature, instance_id, seq",
        )
        .bind(key(guid))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let inst: String = r.try_get("instance_id")?;
                let feature: String = r.try_get("feature")?;
                let hour: String = r.try_get("hour")?;
                let received: String = r.try_get("received_at")?;
                Ok(UsageRow {
                    instance_id: InstanceId::parse(&inst).map_err(|e| corrupt("instance id", e))?,
                    seq: u64_of(r.try_get("seq")?),
                    feature: Feature::parse(&feature).map_err(|e| corrupt("feature", e))?,
                    hour: parse_ts(&hour)?,
                    peak_in_use: u32::try_from(r.try_get::<i64, _>("peak_in_use")?)
                        .unwrap_or(u32::MAX),
                    grants: u64_of(r.try_get("grants")?),
                    denials: u64_of(r.try_get("denials")?),
                    denials_while_free: u64_of(r.try_get("denials_while_free")?),
                    backup_use_secs: u64_of(r.try_get("backup_use_secs")?),
                    received_at: parse_ts(&received)?,
                })
            })
            .collect()
    }

    async fn sync(&self, input: SyncInput) -> StoreResult<BundlePayload> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(SyncJob { input, reply })
            .await
            .map_err(|_| StoreError::Other("sync writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Other("sync writer stopped".into()))?
    }
}

/// One sync inside the writer's batch transaction. Refusals return before writing, except
/// the fork counter, which the caller records after rolling this sync's savepoint back.
async fn sync_in(tx: &mut Conn, input: &SyncInput) -> Result<BundlePayload, SyncFailure> {
    let upload = &input.upload;
    let guid = upload.server_guid;
    let row = sqlx::query(
        "SELECT s.*, t.generation AS token_generation, t.revoked AS token_revoked FROM servers s \
         LEFT JOIN sync_tokens t ON t.token = ? AND t.server_guid = s.guid WHERE s.guid = ?",
    )
    .bind(upload.sync_token.as_ref().map(|t| t.as_str().to_owned()))
    .bind(key(guid))
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| unknown_server(guid))?;
    let server = server_row(&row)?;
    if let Some(claimed) = upload.context {
        if claimed != server.context {
            return Err(StoreError::Refused(
                ErrorCode::ContextMismatch,
                format!(
                    "server {guid} reports context {claimed}, but the vendor registered it as {}",
                    server.context
                ),
            )
            .into());
        }
    }
    let token_generation: Option<i64> = row.try_get("token_generation")?;
    let token_revoked: Option<i64> = row.try_get("token_revoked")?;
    let lookup = match (&upload.sync_token, token_generation) {
        (None, _) => TokenLookup::Absent,
        (Some(_), None) => TokenLookup::Unknown,
        (Some(_), Some(generation)) => TokenLookup::Found {
            generation: u64_of(generation),
            revoked: token_revoked.unwrap_or(0) != 0,
        },
    };
    let step = match chain::decide(
        server.instance_id.as_ref(),
        server.head_generation,
        &upload.instance_id,
        lookup,
    ) {
        Ok(step) => step,
        Err(refusal) => {
            return Err(SyncFailure {
                fork: refusal.fork,
                error: StoreError::Refused(refusal.code, refusal.message),
            });
        }
    };
    let mut acked = server.acked_usage_seq;
    match step {
        ChainStep::Bind => {
            acked = 0;
            sqlx::query("UPDATE sync_tokens SET revoked = 1 WHERE server_guid = ?")
                .bind(key(guid))
                .execute(&mut *tx)
                .await?;
        }
        ChainStep::Branch { from_generation } => {
            sqlx::query(
                "UPDATE sync_tokens SET revoked = 1 WHERE server_guid = ? AND generation > ?",
            )
            .bind(key(guid))
            .bind(i64_of(from_generation))
            .execute(&mut *tx)
            .await?;
        }
        ChainStep::Advance => {}
    }
    let now_s = ts(input.now);
    let fresh: Vec<_> = upload.usage.iter().filter(|b| b.seq > acked).collect();
    // One statement per chunk; 11 parameters a row stays below SQLite's variable limit.
    for chunk in fresh.chunks(2900) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO usage (server_guid, instance_id, seq, feature, hour, peak_in_use, grants, denials, denials_while_free, backup_use_secs, received_at) ",
        );
        q.push_values(chunk, |mut row, b| {
            row.push_bind(key(guid))
                .push_bind(upload.instance_id.as_str())
                .push_bind(i64_of(b.seq))
                .push_bind(b.feature.as_str())
                .push_bind(ts(b.hour))
                .push_bind(i64::from(b.peak_in_use))
                .push_bind(i64_of(b.grants))
                .push_bind(i64_of(b.denials))
                .push_bind(i64_of(b.denials_while_free))
                .push_bind(i64_of(b.backup_use_secs))
                .push_bind(now_s.clone());
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }
    acked = upload.usage.iter().map(|b| b.seq).fold(acked, u64::max);
    let generation = server.head_generation + 1;
    sqlx::query(
        "INSERT INTO sync_tokens (token, server_guid, generation, issued_at) VALUES (?, ?, ?, ?)",
    )
    .bind(input.new_token.as_str())
    .bind(key(guid))
    .bind(i64_of(generation))
    .bind(&now_s)
    .execute(&mut *tx)
    .await?;
    let serial = server.bundle_serial + 1;
    sqlx::query(
        "UPDATE servers SET instance_id = ?, acked_usage_seq = ?, head_generation = ?, bundle_serial = ?, last_sync = ?, software_version = ? WHERE guid = ?",
    )
    .bind(upload.instance_id.as_str())
    .bind(i64_of(acked))
    .bind(i64_of(generation))
    .bind(i64_of(serial))
    .bind(&now_s)
    .bind(&upload.software_version)
    .bind(key(guid))
    .execute(&mut *tx)
    .await?;
    let today = input.now.date_naive();
    let licenses: Vec<License> = licenses_of(&mut *tx, guid)
        .await?
        .into_iter()
        .filter(|l| !l.is_expired_on(today))
        .collect();
    Ok(BundlePayload {
        serial,
        server_guid: guid,
        context: server.context,
        installation_id: server.installation,
        issued_at: input.now,
        not_after: input.now + chrono::Duration::days(i64::from(server.grace_days)),
        sync_interval_secs: server.sync_interval_secs,
        next_sync_token: input.new_token.clone(),
        acked_usage_seq: acked,
        licenses,
    })
}
