//! PostgreSQL backend, for many nodes on one database: a connection pool, native types, and
//! row locks. Transactions run at READ COMMITTED; every decision of the domain layer rests
//! on one row it reads `FOR UPDATE` (the server for a sync, the installation for a new
//! server, the license for a transfer, revoke or maintenance change), so two nodes racing on
//! it decide one after the other, the second on what the first committed. Row locks were
//! chosen over SERIALIZABLE because each decision has exactly one such row: waiting on it
//! is cheaper than aborting and retrying whole sync batches. A batch that still hits a
//! deadlock or a serialization failure is retried by the batch writer
//! ([`StoreError::Conflict`]).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use leasehold_proto::{
    Context, Feature, InstallationId, InstanceId, License, LicenseId, ServerGuid, SyncToken,
    UsageBucket,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row, Transaction};

use super::{
    corrupt, day_bounds, i64_of, key, redact_url as redact, u64_of, DailyUsageRow,
    InstallationRecord, LicenseRecord, RecordedRefusal, ServerRecord, Store, StoreError,
    StoreResult, StoreTx, SyncRecord, TokenRecord, LICENSE_COLUMNS, SERVER_COLUMNS,
};
use crate::api::UsageRow;

mod staff;

/// Connections per node process unless the URL says otherwise (`?max_connections=N`).
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects (`postgres://user@host:port/db`, optionally `?max_connections=N` and any
    /// libpq option such as `options=-csearch_path%3Dschema`) and runs the migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let (base, max) = split_max_connections(url)?;
        let options = PgConnectOptions::from_str(&base)
            .map_err(|e| StoreError::Other(format!("database URL {}: {e}", redact(url))))?;
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Other(format!("cannot connect to {}: {e}", redact(url))))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Other(format!("migrating {}: {e}", redact(url))))?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Takes `max_connections=N` out of the URL's query (sqlx does not know it).
fn split_max_connections(url: &str) -> StoreResult<(String, u32)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), DEFAULT_MAX_CONNECTIONS));
    };
    let mut max = DEFAULT_MAX_CONNECTIONS;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("max_connections=") {
            Some(v) => {
                max = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    StoreError::Other(format!(
                        "database URL: max_connections must be a positive number, not {v:?}"
                    ))
                })?;
            }
            None => rest.push(pair),
        }
    }
    let base = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((base, max))
}

#[async_trait]
impl Store for PostgresStore {
    async fn begin(&self) -> StoreResult<Box<dyn StoreTx>> {
        Ok(Box::new(PgTx(self.pool.begin().await?)))
    }

    fn pool_stats(&self) -> super::PoolStats {
        super::PoolStats {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }
}

struct PgTx(Transaction<'static, Postgres>);

fn lock(for_update: bool) -> &'static str {
    if for_update {
        " FOR UPDATE"
    } else {
        ""
    }
}

fn server_row(r: &PgRow) -> StoreResult<ServerRecord> {
    let guid: String = r.try_get("guid")?;
    let inst: String = r.try_get("installation_id")?;
    let ctx: String = r.try_get("context")?;
    let instance: Option<String> = r.try_get("instance_id")?;
    let int = |c: &str| r.try_get::<i64, _>(c).map_err(StoreError::from);
    Ok(ServerRecord {
        guid: ServerGuid::parse(&guid).map_err(|e| corrupt("guid", e))?,
        installation: InstallationId::parse(&inst).map_err(|e| corrupt("installation id", e))?,
        context: Context::from_str(&ctx).map_err(|e| corrupt("context", e))?,
        grace_days: u32::try_from(int("grace_days")?).unwrap_or(u32::MAX),
        sync_interval_secs: u64_of(int("sync_interval_secs")?),
        instance_id: instance
            .as_deref()
            .map(InstanceId::parse)
            .transpose()
            .map_err(|e| corrupt("instance id", e))?,
        bundle_serial: u64_of(int("bundle_serial")?),
        acked_usage_seq: u64_of(int("acked_usage_seq")?),
        head_generation: u64_of(int("head_generation")?),
        last_sync: r.try_get("last_sync")?,
        software_version: r.try_get("software_version")?,
        forks_detected: u64_of(int("forks_detected")?),
        last_fork: r.try_get("last_fork")?,
        context_rejections: u64_of(int("context_rejections")?),
        last_context_rejection: r.try_get("last_context_rejection")?,
        reassigned_at: r.try_get("reassigned_at")?,
    })
}

fn license_row(r: &PgRow) -> StoreResult<LicenseRecord> {
    let id: String = r.try_get("id")?;
    let feature: String = r.try_get("feature")?;
    let ctx: String = r.try_get("context")?;
    let server: String = r.try_get("server_guid")?;
    let backs_up: Option<String> = r.try_get("backs_up")?;
    Ok(LicenseRecord {
        license: License {
            id: LicenseId::parse(&id).map_err(|e| corrupt("license id", e))?,
            feature: Feature::parse(&feature).map_err(|e| corrupt("feature", e))?,
            count: u32::try_from(r.try_get::<i64, _>("count")?).unwrap_or(0),
            context: Context::from_str(&ctx).map_err(|e| corrupt("context", e))?,
            maintenance_until: r.try_get("maintenance_until")?,
            expires: r.try_get("expires")?,
            backs_up: backs_up
                .as_deref()
                .map(LicenseId::parse)
                .transpose()
                .map_err(|e| corrupt("license id", e))?,
        },
        server: ServerGuid::parse(&server).map_err(|e| corrupt("guid", e))?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

fn installation_row(r: &PgRow) -> StoreResult<InstallationRecord> {
    let id: String = r.try_get("id")?;
    Ok(InstallationRecord {
        id: InstallationId::parse(&id).map_err(|e| corrupt("installation id", e))?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
    })
}

#[async_trait]
impl StoreTx for PgTx {
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.0.commit().await.map_err(StoreError::from)
    }

    async fn insert_installation(
        &mut self,
        id: &InstallationId,
        name: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO installations (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(id.as_str())
            .bind(name)
            .bind(at)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn installation(
        &mut self,
        id: &InstallationId,
        for_update: bool,
    ) -> StoreResult<Option<InstallationRecord>> {
        sqlx::query(&format!(
            "SELECT id, name, created_at FROM installations WHERE id = $1{}",
            lock(for_update)
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *self.0)
        .await?
        .as_ref()
        .map(installation_row)
        .transpose()
    }

    async fn installations(&mut self) -> StoreResult<Vec<InstallationRecord>> {
        sqlx::query("SELECT id, name, created_at FROM installations ORDER BY created_at, id")
            .fetch_all(&mut *self.0)
            .await?
            .iter()
            .map(installation_row)
            .collect()
    }

    async fn installations_page(
        &mut self,
        offset: u64,
        limit: u32,
    ) -> StoreResult<(Vec<InstallationRecord>, u64)> {
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM installations")
            .fetch_one(&mut *self.0)
            .await?;
        let rows = sqlx::query(
            "SELECT id, name, created_at FROM installations ORDER BY created_at, id LIMIT $1 OFFSET $2",
        )
        .bind(i64::from(limit))
        .bind(i64_of(offset))
        .fetch_all(&mut *self.0)
        .await?
        .iter()
        .map(installation_row)
        .collect::<StoreResult<Vec<_>>>()?;
        Ok((rows, u64_of(total)))
    }

    async fn installations_named(
        &mut self,
        fragment: &str,
        limit: u32,
    ) -> StoreResult<Vec<InstallationRecord>> {
        sqlx::query(
            "SELECT id, name, created_at FROM installations WHERE name ILIKE $1 ESCAPE '\\' ORDER BY name, id LIMIT $2",
        )
        .bind(super::like_pattern(fragment))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.0)
        .await?
        .iter()
        .map(installation_row)
        .collect()
    }

    async fn insert_server(
        &mut self,
        installation: &InstallationId,
        guid: ServerGuid,
        context: Context,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO servers (guid, installation_id, context, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(key(guid))
        .bind(installation.as_str())
        .bind(context.as_str())
        .bind(at)
        .execute(&mut *self.0)
        .await
        ?;
        Ok(())
    }

    async fn server(
        &mut self,
        guid: ServerGuid,
        for_update: bool,
    ) -> StoreResult<Option<ServerRecord>> {
        sqlx::query(&format!(
            "SELECT {SERVER_COLUMNS} FROM servers WHERE guid = $1{}",
            lock(for_update)
        ))
        .bind(key(guid))
        .fetch_optional(&mut *self.0)
        .await?
        .as_ref()
        .map(server_row)
        .transpose()
    }

    async fn servers(&mut self) -> StoreResult<Vec<ServerRecord>> {
        sqlx::query(&format!(
            "SELECT {SERVER_COLUMNS} FROM servers ORDER BY created_at, guid"
        ))
        .fetch_all(&mut *self.0)
        .await?
        .iter()
        .map(server_row)
        .collect()
    }

    async fn servers_with_events(
        &mut self,
        now: DateTime<Utc>,
        silent_days: u32,
    ) -> StoreResult<Vec<ServerRecord>> {
        let silent_since = now - chrono::Duration::days(i64::from(silent_days));
        sqlx::query(&format!(
            "SELECT {SERVER_COLUMNS} FROM servers \
             WHERE forks_detected > 0 OR context_rejections > 0 \
                OR (last_sync IS NOT NULL AND (last_sync < $1 \
                    OR last_sync <= $2 - make_interval(days => (grace_days - $3)::int))) \
             ORDER BY created_at, guid"
        ))
        .bind(silent_since)
        .bind(now)
        .bind(crate::domain::events::GRACE_WARNING_DAYS)
        .fetch_all(&mut *self.0)
        .await?
        .iter()
        .map(server_row)
        .collect()
    }

    async fn servers_of(
        &mut self,
        installation: &InstallationId,
    ) -> StoreResult<Vec<ServerRecord>> {
        sqlx::query(&format!(
            "SELECT {SERVER_COLUMNS} FROM servers WHERE installation_id = $1 ORDER BY created_at, guid"
        ))
        .bind(installation.as_str())
        .fetch_all(&mut *self.0)
        .await
        ?
        .iter()
        .map(server_row)
        .collect()
    }

    async fn set_server_policy(
        &mut self,
        guid: ServerGuid,
        grace_days: Option<u32>,
        sync_interval_secs: Option<u64>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE servers SET grace_days = coalesce($1, grace_days), sync_interval_secs = coalesce($2, sync_interval_secs) WHERE guid = $3",
        )
        .bind(grace_days.map(i64::from))
        .bind(sync_interval_secs.map(i64_of))
        .bind(key(guid))
        .execute(&mut *self.0)
        .await
        ?;
        Ok(())
    }

    async fn unbind_server(&mut self, guid: ServerGuid, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE servers SET instance_id = NULL, acked_usage_seq = 0, reassigned_at = $1 WHERE guid = $2",
        )
        .bind(at)
        .bind(key(guid))
        .execute(&mut *self.0)
        .await?;
        self.revoke_tokens(guid, None).await
    }

    async fn servers_with_guid_prefix(
        &mut self,
        prefix: &str,
        limit: u32,
    ) -> StoreResult<Vec<ServerRecord>> {
        // GUIDs are stored as canonical text: upper case, so a plain prefix comparison.
        sqlx::query(&format!(
            "SELECT {SERVER_COLUMNS} FROM servers WHERE left(guid, length($1)) = $1 ORDER BY guid LIMIT $2"
        ))
        .bind(prefix)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.0)
        .await?
        .iter()
        .map(server_row)
        .collect()
    }

    async fn record_refusal(
        &mut self,
        guid: ServerGuid,
        kind: RecordedRefusal,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let sql = match kind {
            RecordedRefusal::Fork => {
                "UPDATE servers SET forks_detected = forks_detected + 1, last_fork = $1 WHERE guid = $2"
            }
            RecordedRefusal::Context => {
                "UPDATE servers SET context_rejections = context_rejections + 1, last_context_rejection = $1 WHERE guid = $2"
            }
        };
        sqlx::query(sql)
            .bind(at)
            .bind(key(guid))
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn record_sync(&mut self, guid: ServerGuid, s: &SyncRecord<'_>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE servers SET instance_id = $1, acked_usage_seq = $2, head_generation = $3, bundle_serial = $4, last_sync = $5, software_version = $6 WHERE guid = $7",
        )
        .bind(s.instance_id.as_str())
        .bind(i64_of(s.acked_usage_seq))
        .bind(i64_of(s.head_generation))
        .bind(i64_of(s.bundle_serial))
        .bind(s.at)
        .bind(s.software_version)
        .bind(key(guid))
        .execute(&mut *self.0)
        .await
        ?;
        Ok(())
    }

    async fn insert_license(
        &mut self,
        server: ServerGuid,
        license: &License,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO licenses (id, server_guid, feature, count, context, maintenance_until, expires, backs_up, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(license.id.as_str())
        .bind(key(server))
        .bind(license.feature.as_str())
        .bind(i64::from(license.count))
        .bind(license.context.as_str())
        .bind(license.maintenance_until)
        .bind(license.expires)
        .bind(license.backs_up.as_ref().map(|l| l.as_str().to_owned()))
        .bind(at)
        .execute(&mut *self.0)
        .await
        ?;
        Ok(())
    }

    async fn license(
        &mut self,
        id: &LicenseId,
        for_update: bool,
    ) -> StoreResult<Option<LicenseRecord>> {
        sqlx::query(&format!(
            "SELECT {LICENSE_COLUMNS} FROM licenses WHERE id = $1{}",
            lock(for_update)
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *self.0)
        .await?
        .as_ref()
        .map(license_row)
        .transpose()
    }

    async fn licenses_of(&mut self, guid: ServerGuid) -> StoreResult<Vec<License>> {
        sqlx::query(&format!(
            "SELECT {LICENSE_COLUMNS} FROM licenses WHERE server_guid = $1 AND revoked_at IS NULL ORDER BY feature, created_at, id"
        ))
        .bind(key(guid))
        .fetch_all(&mut *self.0)
        .await
        ?
        .iter()
        .map(|r| license_row(r).map(|v| v.license))
        .collect()
    }

    async fn backups_of(&mut self, id: &LicenseId) -> StoreResult<Vec<LicenseId>> {
        sqlx::query(
            "SELECT id FROM licenses WHERE backs_up = $1 AND revoked_at IS NULL ORDER BY id",
        )
        .bind(id.as_str())
        .fetch_all(&mut *self.0)
        .await?
        .iter()
        .map(|r| {
            LicenseId::parse(&r.try_get::<String, _>("id")?).map_err(|e| corrupt("license id", e))
        })
        .collect()
    }

    async fn move_license(&mut self, id: &LicenseId, to: ServerGuid) -> StoreResult<()> {
        sqlx::query("UPDATE licenses SET server_guid = $1 WHERE id = $2")
            .bind(key(to))
            .bind(id.as_str())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn revoke_license(&mut self, id: &LicenseId, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE licenses SET revoked_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id.as_str())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn set_maintenance(&mut self, id: &LicenseId, until: NaiveDate) -> StoreResult<()> {
        sqlx::query("UPDATE licenses SET maintenance_until = $1 WHERE id = $2")
            .bind(until)
            .bind(id.as_str())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn token(
        &mut self,
        guid: ServerGuid,
        token: &SyncToken,
    ) -> StoreResult<Option<TokenRecord>> {
        let row = sqlx::query(
            "SELECT generation, revoked FROM sync_tokens WHERE token = $1 AND server_guid = $2",
        )
        .bind(token.as_str())
        .bind(key(guid))
        .fetch_optional(&mut *self.0)
        .await?;
        row.map(|r| {
            Ok(TokenRecord {
                generation: u64_of(r.try_get("generation")?),
                revoked: r.try_get("revoked")?,
            })
        })
        .transpose()
    }

    async fn revoke_tokens(&mut self, guid: ServerGuid, above: Option<u64>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sync_tokens SET revoked = TRUE WHERE server_guid = $1 AND generation > $2 AND NOT revoked",
        )
        .bind(key(guid))
        .bind(above.map_or(-1, i64_of))
        .execute(&mut *self.0)
        .await
        ?;
        Ok(())
    }

    async fn insert_token(
        &mut self,
        guid: ServerGuid,
        token: &SyncToken,
        generation: u64,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sync_tokens (token, server_guid, generation, issued_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token.as_str())
        .bind(key(guid))
        .bind(i64_of(generation))
        .bind(at)
        .execute(&mut *self.0)
        .await
        ?;
        Ok(())
    }

    async fn restored_at(&mut self) -> StoreResult<Option<DateTime<Utc>>> {
        sqlx::query_scalar("SELECT max(restored_at) FROM restores")
            .fetch_one(&mut *self.0)
            .await
            .map_err(StoreError::from)
    }

    async fn record_restore(&mut self, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("INSERT INTO restores (restored_at) VALUES ($1)")
            .bind(at)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn insert_usage(
        &mut self,
        guid: ServerGuid,
        instance: &InstanceId,
        buckets: &[&UsageBucket],
        received_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        // 12 parameters a row; PostgreSQL takes at most 65,535 per statement.
        for chunk in buckets.chunks(5000) {
            let mut q = sqlx::QueryBuilder::<Postgres>::new(
                "INSERT INTO usage (server_guid, instance_id, seq, feature, hour, peak_in_use, grants, denials, denials_while_free, backup_use_secs, license_secs, received_at) ",
            );
            q.push_values(chunk, |mut row, b| {
                row.push_bind(key(guid))
                    .push_bind(instance.as_str())
                    .push_bind(i64_of(b.seq))
                    .push_bind(b.feature.as_str())
                    .push_bind(b.hour)
                    .push_bind(i64::from(b.peak_in_use))
                    .push_bind(i64_of(b.grants))
                    .push_bind(i64_of(b.denials))
                    .push_bind(i64_of(b.denials_while_free))
                    .push_bind(i64_of(b.backup_use_secs))
                    .push_bind(i64_of(b.license_secs))
                    .push_bind(received_at);
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut *self.0).await?;
        }
        Ok(())
    }

    async fn usage_of(
        &mut self,
        guid: ServerGuid,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<UsageRow>> {
        let rows = sqlx::query(
            "SELECT instance_id, seq, feature, hour, peak_in_use, grants, denials, denials_while_free, backup_use_secs, license_secs, received_at FROM usage WHERE server_guid = $1 AND hour >= $2 AND hour < $3 ORDER BY hour, feature, instance_id, seq",
        )
        .bind(key(guid))
        .bind(from)
        .bind(until)
        .fetch_all(&mut *self.0)
        .await?;
        rows.iter()
            .map(|r| {
                let inst: String = r.try_get("instance_id")?;
                let feature: String = r.try_get("feature")?;
                let int = |c: &str| r.try_get::<i64, _>(c).map_err(StoreError::from);
                Ok(UsageRow {
                    instance_id: InstanceId::parse(&inst).map_err(|e| corrupt("instance id", e))?,
                    seq: u64_of(int("seq")?),
                    feature: Feature::parse(&feature).map_err(|e| corrupt("feature", e))?,
                    hour: r.try_get("hour")?,
                    peak_in_use: u32::try_from(int("peak_in_use")?).unwrap_or(u32::MAX),
                    grants: u64_of(int("grants")?),
                    denials: u64_of(int("denials")?),
                    denials_while_free: u64_of(int("denials_while_free")?),
                    backup_use_secs: u64_of(int("backup_use_secs")?),
                    license_secs: u64_of(int("license_secs")?),
                    received_at: r.try_get("received_at")?,
                })
            })
            .collect()
    }

    async fn daily_usage_of(
        &mut self,
        guid: ServerGuid,
        from: NaiveDate,
        to: NaiveDate,
    ) -> StoreResult<Vec<DailyUsageRow>> {
        let rows = sqlx::query(
            "SELECT feature, day, peak_in_use, license_hours, license_secs, grants, denials, denials_while_free, backup_use_secs FROM usage_daily WHERE server_guid = $1 AND day >= $2 AND day <= $3 ORDER BY day, feature",
        )
        .bind(key(guid))
        .bind(from)
        .bind(to)
        .fetch_all(&mut *self.0)
        .await?;
        rows.iter()
            .map(|r| {
                let feature: String = r.try_get("feature")?;
                let int = |c: &str| r.try_get::<i64, _>(c).map_err(StoreError::from);
                Ok(DailyUsageRow {
                    feature: Feature::parse(&feature).map_err(|e| corrupt("feature", e))?,
                    day: r.try_get("day")?,
                    peak_in_use: u32::try_from(int("peak_in_use")?).unwrap_or(u32::MAX),
                    peak_hours: u64_of(int("license_hours")?),
                    license_secs: u64_of(int("license_secs")?),
                    grants: u64_of(int("grants")?),
                    denials: u64_of(int("denials")?),
                    denials_while_free: u64_of(int("denials_while_free")?),
                    backup_use_secs: u64_of(int("backup_use_secs")?),
                })
            })
            .collect()
    }

    async fn lock_usage_maintenance(&mut self) -> StoreResult<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(USAGE_MAINTENANCE_LOCK)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn oldest_usage_hour(&mut self) -> StoreResult<Option<DateTime<Utc>>> {
        sqlx::query_scalar("SELECT min(hour) FROM usage")
            .fetch_one(&mut *self.0)
            .await
            .map_err(StoreError::from)
    }

    async fn roll_up_usage_day(&mut self, day: NaiveDate) -> StoreResult<u64> {
        let (start, end) = day_bounds(day);
        let folded: i64 =
            sqlx::query_scalar("SELECT count(*) FROM usage WHERE hour >= $1 AND hour < $2")
                .bind(start)
                .bind(end)
                .fetch_one(&mut *self.0)
                .await?;
        if folded == 0 {
            return Ok(0);
        }
        sqlx::query(
            "INSERT INTO usage_daily (server_guid, feature, day, peak_in_use, license_hours, license_secs, grants, denials, denials_while_free, backup_use_secs) \
             SELECT server_guid, feature, $3, max(peak), sum(peak), sum(license), sum(grants), sum(denials), sum(dwf), sum(backup) FROM ( \
                 SELECT server_guid, feature, hour, sum(peak_in_use) AS peak, sum(grants) AS grants, sum(denials) AS denials, \
                        sum(denials_while_free) AS dwf, sum(backup_use_secs) AS backup, sum(license_secs) AS license \
                 FROM usage WHERE hour >= $1 AND hour < $2 GROUP BY server_guid, feature, hour) h \
             GROUP BY server_guid, feature \
             ON CONFLICT (server_guid, day, feature) DO UPDATE SET \
                 peak_in_use = greatest(usage_daily.peak_in_use, excluded.peak_in_use), \
                 license_hours = usage_daily.license_hours + excluded.license_hours, \
                 license_secs = usage_daily.license_secs + excluded.license_secs, \
                 grants = usage_daily.grants + excluded.grants, \
                 denials = usage_daily.denials + excluded.denials, \
                 denials_while_free = usage_daily.denials_while_free + excluded.denials_while_free, \
                 backup_use_secs = usage_daily.backup_use_secs + excluded.backup_use_secs",
        )
        .bind(start)
        .bind(end)
        .bind(day)
        .execute(&mut *self.0)
        .await?;
        // The day's own partition goes whole (no dead rows, no vacuum); rows of the day that
        // arrived in the default partition are deleted there.
        let partition = partition_name(day);
        if self.partition_exists(&partition).await? {
            sqlx::query(&format!("DROP TABLE {partition}"))
                .execute(&mut *self.0)
                .await?;
        }
        sqlx::query("DELETE FROM usage WHERE hour >= $1 AND hour < $2")
            .bind(start)
            .bind(end)
            .execute(&mut *self.0)
            .await?;
        Ok(u64_of(folded))
    }

    async fn delete_daily_usage_before(&mut self, before: NaiveDate) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM usage_daily WHERE day < $1")
            .bind(before)
            .execute(&mut *self.0)
            .await?;
        Ok(done.rows_affected())
    }

    async fn prepare_usage_partitions(
        &mut self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> StoreResult<u32> {
        let mut created = 0;
        for day in from.iter_days().take_while(|d| *d <= to) {
            let name = partition_name(day);
            if self.partition_exists(&name).await? {
                continue;
            }
            // Rows of the day that arrived before its partition sit in the default partition:
            // moved into the new table before it is attached (attaching checks that the
            // default partition holds none of its range).
            let (start, end) = day_bounds(day);
            sqlx::query(&format!(
                "CREATE TABLE {name} (LIKE usage INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            ))
            .execute(&mut *self.0)
            .await?;
            sqlx::query(&format!(
                "WITH moved AS (DELETE FROM usage_default WHERE hour >= $1 AND hour < $2 RETURNING *) INSERT INTO {name} SELECT * FROM moved"
            ))
            .bind(start)
            .bind(end)
            .execute(&mut *self.0)
            .await?;
            sqlx::query(&format!(
                "ALTER TABLE usage ATTACH PARTITION {name} FOR VALUES FROM ('{start}') TO ('{end}')",
                start = start.to_rfc3339(),
                end = end.to_rfc3339()
            ))
            .execute(&mut *self.0)
            .await?;
            created += 1;
        }
        // Partitions of days before the window that hold no row (made ahead for days that
        // stayed idle): dropped. A day with rows is rolled up, which drops its partition.
        let partitions: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'usage'::regclass",
        )
        .fetch_all(&mut *self.0)
        .await?;
        for name in partitions {
            let Some(day) = name
                .strip_prefix("usage_p")
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
            else {
                continue; // the default partition
            };
            if day >= from {
                continue;
            }
            let empty: bool =
                sqlx::query_scalar(&format!("SELECT NOT EXISTS (SELECT 1 FROM {name})"))
                    .fetch_one(&mut *self.0)
                    .await?;
            if empty {
                sqlx::query(&format!("DROP TABLE {name}"))
                    .execute(&mut *self.0)
                    .await?;
            }
        }
        Ok(created)
    }
}

/// The advisory lock that serializes usage maintenance between nodes.
const USAGE_MAINTENANCE_LOCK: i64 = 0x004c_4855_5341_4745; // "LHUSAGE"

/// The hourly partition of one UTC day.
fn partition_name(day: NaiveDate) -> String {
    format!("usage_p{}", day.format("%Y%m%d"))
}

impl PgTx {
    /// Whether a partition of that name exists in the schema the connection uses.
    async fn partition_exists(&mut self, name: &str) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
                .bind(name)
                .fetch_one(&mut *self.0)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_connections_is_taken_out_of_the_url() {
        assert_eq!(
            split_max_connections("postgres://u@h/db").unwrap(),
            ("postgres://u@h/db".into(), DEFAULT_MAX_CONNECTIONS)
        );
        assert_eq!(
            split_max_connections("postgres://u@h/db?max_connections=3&sslmode=disable").unwrap(),
            ("postgres://u@h/db?sslmode=disable".into(), 3)
        );
        assert!(split_max_connections("postgres://u@h/db?max_connections=0").is_err());
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
