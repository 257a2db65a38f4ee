//! SQLite backend: one file, WAL, synchronous commits (a bundle acknowledges usage, so a
//! commit must be on disk before the answer leaves). Writes go through one connection, which
//! is all SQLite can do at once anyway and keeps transactions free of lock upgrades, so row
//! locks (`for_update`) are implied: a transaction has the database to itself.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use leasehold_proto::{
    Context, Feature, InstallationId, InstanceId, License, LicenseId, ServerGuid, SyncToken,
    UsageBucket,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::{
    corrupt, day_bounds, i64_of, key, u64_of, DailyUsageRow, InstallationRecord, LicenseRecord,
    RecordedRefusal, ServerRecord, Store, StoreError, StoreResult, StoreTx, SyncRecord,
    TokenRecord, LICENSE_COLUMNS, SERVER_COLUMNS,
};
use crate::api::UsageRow;

mod staff;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

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
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn begin(&self) -> StoreResult<Box<dyn StoreTx>> {
        Ok(Box::new(SqliteTx(self.pool.begin().await?)))
    }

    fn pool_stats(&self) -> super::PoolStats {
        super::PoolStats {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }
}

struct SqliteTx(Transaction<'static, Sqlite>);

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

fn server_row(r: &SqliteRow) -> StoreResult<ServerRecord> {
    let guid: String = r.try_get("guid")?;
    let inst: String = r.try_get("installation_id")?;
    let ctx: String = r.try_get("context")?;
    let instance: Option<String> = r.try_get("instance_id")?;
    Ok(ServerRecord {
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
        last_fork: opt_ts(r.try_get("last_fork")?)?,
        context_rejections: u64_of(r.try_get("context_rejections")?),
        last_context_rejection: opt_ts(r.try_get("last_context_rejection")?)?,
        reassigned_at: opt_ts(r.try_get("reassigned_at")?)?,
    })
}

fn license_row(r: &SqliteRow) -> StoreResult<LicenseRecord> {
    let id: String = r.try_get("id")?;
    let feature: String = r.try_get("feature")?;
    let ctx: String = r.try_get("context")?;
    let server: String = r.try_get("server_guid")?;
    let maint: String = r.try_get("maintenance_until")?;
    let expires: Option<String> = r.try_get("expires")?;
    let backs_up: Option<String> = r.try_get("backs_up")?;
    let revoked: Option<String> = r.try_get("revoked_at")?;
    Ok(LicenseRecord {
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

#[async_trait]
impl StoreTx for SqliteTx {
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.0.commit().await?;
        Ok(())
    }

    async fn insert_installation(
        &mut self,
        id: &InstallationId,
        name: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO installations (id, name, created_at) VALUES (?, ?, ?)")
            .bind(id.as_str())
            .bind(name)
            .bind(ts(at))
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn installation(
        &mut self,
        id: &InstallationId,
        _for_update: bool,
    ) -> StoreResult<Option<InstallationRecord>> {
        sqlx::query("SELECT id, name, created_at FROM installations WHERE id = ?")
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
            "SELECT id, name, created_at FROM installations ORDER BY created_at, id LIMIT ? OFFSET ?",
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
        // LIKE ignores the case of ASCII letters in SQLite.
        sqlx::query(
            "SELECT id, name, created_at FROM installations WHERE name LIKE ? ESCAPE '\\' ORDER BY name, id LIMIT ?",
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
            "INSERT INTO servers (guid, installation_id, context, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(key(guid))
        .bind(installation.as_str())
        .bind(context.as_str())
        .bind(ts(at))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn server(
        &mut self,
        guid: ServerGuid,
        _for_update: bool,
    ) -> StoreResult<Option<ServerRecord>> {
        sqlx::query(&format!(
            "SELECT {SERVER_COLUMNS} FROM servers WHERE guid = ?"
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
                OR (last_sync IS NOT NULL AND (last_sync < ?1 \
                    OR julianday(last_sync) <= julianday(?2) - (grace_days - ?3))) \
             ORDER BY created_at, guid"
        ))
        .bind(ts(silent_since))
        .bind(ts(now))
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
            "SELECT {SERVER_COLUMNS} FROM servers WHERE installation_id = ? ORDER BY created_at, guid"
        ))
        .bind(installation.as_str())
        .fetch_all(&mut *self.0)
        .await?
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
            "UPDATE servers SET grace_days = coalesce(?, grace_days), sync_interval_secs = coalesce(?, sync_interval_secs) WHERE guid = ?",
        )
        .bind(grace_days.map(i64::from))
        .bind(sync_interval_secs.map(i64_of))
        .bind(key(guid))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn unbind_server(&mut self, guid: ServerGuid, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE servers SET instance_id = NULL, acked_usage_seq = 0, reassigned_at = ? WHERE guid = ?",
        )
        .bind(ts(at))
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
            "SELECT {SERVER_COLUMNS} FROM servers WHERE substr(guid, 1, length(?1)) = ?1 ORDER BY guid LIMIT ?2"
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
                "UPDATE servers SET forks_detected = forks_detected + 1, last_fork = ? WHERE guid = ?"
            }
            RecordedRefusal::Context => {
                "UPDATE servers SET context_rejections = context_rejections + 1, last_context_rejection = ? WHERE guid = ?"
            }
        };
        sqlx::query(sql)
            .bind(ts(at))
            .bind(key(guid))
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn record_sync(&mut self, guid: ServerGuid, s: &SyncRecord<'_>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE servers SET instance_id = ?, acked_usage_seq = ?, head_generation = ?, bundle_serial = ?, last_sync = ?, software_version = ? WHERE guid = ?",
        )
        .bind(s.instance_id.as_str())
        .bind(i64_of(s.acked_usage_seq))
        .bind(i64_of(s.head_generation))
        .bind(i64_of(s.bundle_serial))
        .bind(ts(s.at))
        .bind(s.software_version)
        .bind(key(guid))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn insert_license(
        &mut self,
        server: ServerGuid,
        license: &License,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
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
        .bind(ts(at))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn license(
        &mut self,
        id: &LicenseId,
        _for_update: bool,
    ) -> StoreResult<Option<LicenseRecord>> {
        sqlx::query(&format!(
            "SELECT {LICENSE_COLUMNS} FROM licenses WHERE id = ?"
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
            "SELECT {LICENSE_COLUMNS} FROM licenses WHERE server_guid = ? AND revoked_at IS NULL ORDER BY feature, created_at, id"
        ))
        .bind(key(guid))
        .fetch_all(&mut *self.0)
        .await?
        .iter()
        .map(|r| license_row(r).map(|v| v.license))
        .collect()
    }

    async fn backups_of(&mut self, id: &LicenseId) -> StoreResult<Vec<LicenseId>> {
        sqlx::query("SELECT id FROM licenses WHERE backs_up = ? AND revoked_at IS NULL ORDER BY id")
            .bind(id.as_str())
            .fetch_all(&mut *self.0)
            .await?
            .iter()
            .map(|r| {
                LicenseId::parse(&r.try_get::<String, _>("id")?)
                    .map_err(|e| corrupt("license id", e))
            })
            .collect()
    }

    async fn move_license(&mut self, id: &LicenseId, to: ServerGuid) -> StoreResult<()> {
        sqlx::query("UPDATE licenses SET server_guid = ? WHERE id = ?")
            .bind(key(to))
            .bind(id.as_str())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn revoke_license(&mut self, id: &LicenseId, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE licenses SET revoked_at = ? WHERE id = ?")
            .bind(ts(at))
            .bind(id.as_str())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn set_maintenance(&mut self, id: &LicenseId, until: NaiveDate) -> StoreResult<()> {
        sqlx::query("UPDATE licenses SET maintenance_until = ? WHERE id = ?")
            .bind(until.to_string())
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
            "SELECT generation, revoked FROM sync_tokens WHERE token = ? AND server_guid = ?",
        )
        .bind(token.as_str())
        .bind(key(guid))
        .fetch_optional(&mut *self.0)
        .await?;
        row.map(|r| {
            Ok(TokenRecord {
                generation: u64_of(r.try_get("generation")?),
                revoked: r.try_get::<i64, _>("revoked")? != 0,
            })
        })
        .transpose()
    }

    async fn revoke_tokens(&mut self, guid: ServerGuid, above: Option<u64>) -> StoreResult<()> {
        sqlx::query("UPDATE sync_tokens SET revoked = 1 WHERE server_guid = ? AND generation > ?")
            .bind(key(guid))
            .bind(above.map_or(-1, i64_of))
            .execute(&mut *self.0)
            .await?;
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
            "INSERT INTO sync_tokens (token, server_guid, generation, issued_at) VALUES (?, ?, ?, ?)",
        )
        .bind(token.as_str())
        .bind(key(guid))
        .bind(i64_of(generation))
        .bind(ts(at))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn restored_at(&mut self) -> StoreResult<Option<DateTime<Utc>>> {
        let t: Option<String> = sqlx::query_scalar("SELECT max(restored_at) FROM restores")
            .fetch_one(&mut *self.0)
            .await?;
        opt_ts(t)
    }

    async fn record_restore(&mut self, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("INSERT INTO restores (restored_at) VALUES (?)")
            .bind(ts(at))
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
        let received = ts(received_at);
        // One statement per chunk; 12 parameters a row stays below SQLite's variable limit.
        for chunk in buckets.chunks(2700) {
            let mut q = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT INTO usage (server_guid, instance_id, seq, feature, hour, peak_in_use, grants, denials, denials_while_free, backup_use_secs, license_secs, received_at) ",
            );
            q.push_values(chunk, |mut row, b| {
                row.push_bind(key(guid))
                    .push_bind(instance.as_str())
                    .push_bind(i64_of(b.seq))
                    .push_bind(b.feature.as_str())
                    .push_bind(ts(b.hour))
                    .push_bind(i64::from(b.peak_in_use))
                    .push_bind(i64_of(b.grants))
                    .push_bind(i64_of(b.denials))
                    .push_bind(i64_of(b.denials_while_free))
                    .push_bind(i64_of(b.backup_use_secs))
                    .push_bind(i64_of(b.license_secs))
                    .push_bind(received.clone());
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
        // Timestamps are stored as fixed-width RFC 3339 UTC text, so text order is time order.
        let rows = sqlx::query(
            "SELECT instance_id, seq, feature, hour, peak_in_use, grants, denials, denials_while_free, backup_use_secs, license_secs, received_at FROM usage WHERE server_guid = ? AND hour >= ? AND hour < ? ORDER BY hour, feature, instance_id, seq",
        )
        .bind(key(guid))
        .bind(ts(from))
        .bind(ts(until))
        .fetch_all(&mut *self.0)
        .await?;
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
                    license_secs: u64_of(r.try_get("license_secs")?),
                    received_at: parse_ts(&received)?,
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
            "SELECT feature, day, peak_in_use, license_hours, license_secs, grants, denials, denials_while_free, backup_use_secs FROM usage_daily WHERE server_guid = ? AND day >= ? AND day <= ? ORDER BY day, feature",
        )
        .bind(key(guid))
        .bind(from.to_string())
        .bind(to.to_string())
        .fetch_all(&mut *self.0)
        .await?;
        rows.iter()
            .map(|r| {
                let feature: String = r.try_get("feature")?;
                let day: String = r.try_get("day")?;
                Ok(DailyUsageRow {
                    feature: Feature::parse(&feature).map_err(|e| corrupt("feature", e))?,
                    day: day.parse().map_err(|e| corrupt("day", e))?,
                    peak_in_use: u32::try_from(r.try_get::<i64, _>("peak_in_use")?)
                        .unwrap_or(u32::MAX),
                    peak_hours: u64_of(r.try_get("license_hours")?),
                    license_secs: u64_of(r.try_get("license_secs")?),
                    grants: u64_of(r.try_get("grants")?),
                    denials: u64_of(r.try_get("denials")?),
                    denials_while_free: u64_of(r.try_get("denials_while_free")?),
                    backup_use_secs: u64_of(r.try_get("backup_use_secs")?),
                })
            })
            .collect()
    }

    async fn lock_usage_maintenance(&mut self) -> StoreResult<()> {
        Ok(())
    }

    async fn oldest_usage_hour(&mut self) -> StoreResult<Option<DateTime<Utc>>> {
        let oldest: Option<String> = sqlx::query_scalar("SELECT min(hour) FROM usage")
            .fetch_one(&mut *self.0)
            .await?;
        opt_ts(oldest)
    }

    async fn roll_up_usage_day(&mut self, day: NaiveDate) -> StoreResult<u64> {
        let (start, end) = day_bounds(day);
        let (start, end) = (ts(start), ts(end));
        let folded: i64 =
            sqlx::query_scalar("SELECT count(*) FROM usage WHERE hour >= ? AND hour < ?")
                .bind(&start)
                .bind(&end)
                .fetch_one(&mut *self.0)
                .await?;
        if folded == 0 {
            return Ok(0);
        }
        sqlx::query(
            "INSERT INTO usage_daily (server_guid, feature, day, peak_in_use, license_hours, license_secs, grants, denials, denials_while_free, backup_use_secs) \
             SELECT server_guid, feature, ?3, max(peak), sum(peak), sum(license), sum(grants), sum(denials), sum(dwf), sum(backup) FROM ( \
                 SELECT server_guid, feature, hour, sum(peak_in_use) AS peak, sum(grants) AS grants, sum(denials) AS denials, \
                        sum(denials_while_free) AS dwf, sum(backup_use_secs) AS backup, sum(license_secs) AS license \
                 FROM usage WHERE hour >= ?1 AND hour < ?2 GROUP BY server_guid, feature, hour) \
             WHERE true GROUP BY server_guid, feature \
             ON CONFLICT (server_guid, day, feature) DO UPDATE SET \
                 peak_in_use = max(usage_daily.peak_in_use, excluded.peak_in_use), \
                 license_hours = usage_daily.license_hours + excluded.license_hours, \
                 license_secs = usage_daily.license_secs + excluded.license_secs, \
                 grants = usage_daily.grants + excluded.grants, \
                 denials = usage_daily.denials + excluded.denials, \
                 denials_while_free = usage_daily.denials_while_free + excluded.denials_while_free, \
                 backup_use_secs = usage_daily.backup_use_secs + excluded.backup_use_secs",
        )
        .bind(&start)
        .bind(&end)
        .bind(day.to_string())
        .execute(&mut *self.0)
        .await?;
        sqlx::query("DELETE FROM usage WHERE hour >= ? AND hour < ?")
            .bind(&start)
            .bind(&end)
            .execute(&mut *self.0)
            .await?;
        Ok(u64_of(folded))
    }

    async fn delete_daily_usage_before(&mut self, before: NaiveDate) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM usage_daily WHERE day < ?")
            .bind(before.to_string())
            .execute(&mut *self.0)
            .await?;
        Ok(done.rows_affected())
    }

    async fn prepare_usage_partitions(
        &mut self,
        _from: NaiveDate,
        _to: NaiveDate,
    ) -> StoreResult<u32> {
        Ok(0)
    }
}

fn installation_row(r: &SqliteRow) -> StoreResult<InstallationRecord> {
    let id: String = r.try_get("id")?;
    let created: String = r.try_get("created_at")?;
    Ok(InstallationRecord {
        id: InstallationId::parse(&id).map_err(|e| corrupt("installation id", e))?,
        name: r.try_get("name")?,
        created_at: parse_ts(&created)?,
    })
}
