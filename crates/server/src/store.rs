//! The server's persisted state in its data directory: one SQLite file (WAL, synchronous
//! commits) and a lock file that keeps a second process off the same directory.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use leasehold_proto::{ClientId, Feature, InstanceId, ServerGuid, SignedEnvelope, UsageBucket};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::allocator::{BoundRow, CountRow, Snapshot};
use crate::history::{HistoryPoint, HOUR_SECS};
use crate::ledger::{Counts, HourKey};

/// One periodic flush, written in one transaction: the ledger (open hours rewritten,
/// finished ones closed into buckets of `guid` and into the history), the allocator's
/// snapshot taken at the same moment (bounds and counts), and meta values.
#[derive(Debug, Default)]
pub struct FlushWrite {
    pub open: BTreeMap<HourKey, Counts>,
    pub close: Vec<(HourKey, Counts)>,
    /// The GUID the closed hours were recorded under.
    pub guid: Option<ServerGuid>,
    /// Licensed count of each feature now, for the history of closed hours.
    pub licensed: BTreeMap<Feature, u32>,
    /// Prune the history to hours from here on.
    pub history_from: Option<DateTime<Utc>>,
    pub snapshot: Snapshot,
    /// The time high-water mark to record (the clock-tamper check).
    pub high_water: Option<DateTime<Utc>>,
    /// The process's heartbeat: a restart within one hold of it restores the leases.
    pub alive_at: Option<DateTime<Utc>>,
}

/// One job of the group-committing writer.
#[derive(Debug)]
pub enum Write {
    /// Raised reservation bounds (the grant is answered once they are on disk).
    Bounds(Vec<BoundRow>),
    Flush(Box<FlushWrite>),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {0} is in use by another leasehold server process")]
    Locked(PathBuf),
    #[error("data directory {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("server state database: {0}")]
    Db(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Everything an earlier process left in the data directory, read once at start.
#[derive(Debug, Default)]
pub struct PersistedState {
    /// This data directory's instance id (made once, at its first start).
    pub instance_id: Option<InstanceId>,
    pub guid: Option<ServerGuid>,
    /// The last bundle taken, verbatim (verified again by the caller).
    pub bundle: Option<StoredBundle>,
    /// The highest wall-clock time seen.
    pub high_water: Option<DateTime<Utc>>,
    pub last_sync: Option<DateTime<Utc>>,
    /// The last heartbeat of a process on this directory.
    pub alive_at: Option<DateTime<Utc>>,
    /// Until when the last process that started in learning mode was learning.
    pub learning_until: Option<DateTime<Utc>>,
    /// Reservation bounds and client counts of the leases an earlier process granted.
    pub bounds: Vec<BoundRow>,
    pub counts: Vec<CountRow>,
    /// Usage of the hours still open when the earlier process last flushed.
    pub open_usage: BTreeMap<HourKey, Counts>,
}

#[derive(Debug, Clone)]
pub struct StoredBundle {
    pub envelope: String,
    /// Local time the bundle was taken (grace counts from here).
    pub received_at: Option<DateTime<Utc>>,
}

/// Keys of the `meta` table (private: callers use the typed methods).
mod keys {
    pub const GUID: &str = "guid";
    pub const INSTANCE_ID: &str = "instance_id";
    pub const ENVELOPE: &str = "bundle_envelope";
    pub const RECEIVED_AT: &str = "bundle_received_at";
    pub const HIGH_WATER: &str = "time_high_water";
    pub const NEXT_SEQ: &str = "next_usage_seq";
    pub const LAST_SYNC: &str = "last_sync";
    pub const ALIVE_AT: &str = "alive_at";
    /// Until when the last process that started in learning mode was learning.
    pub const LEARNING_UNTIL: &str = "learning_until";
}

#[derive(Debug)]
pub struct ServerStore {
    pool: SqlitePool,
    _lock: File,
    dir: PathBuf,
}

impl ServerStore {
    /// Opens (creating if needed) the data directory and takes its lock.
    pub async fn open(dir: &Path) -> StoreResult<Self> {
        let io = |e: std::io::Error| StoreError::Io {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("server.lock"))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(dir.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let options = SqliteConnectOptions::from_str("sqlite://server.db")
            .map_err(|e| StoreError::Db(e.to_string()))?
            .filename(dir.join("server.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Db(format!("migrating: {e}")))?;
        Ok(Self {
            pool,
            _lock: lock,
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads everything an earlier process persisted. Values that do not parse are taken
    /// as absent (and rewritten by this process).
    pub async fn load(&self) -> StoreResult<PersistedState> {
        let rows = sqlx::query("SELECT key, value FROM meta")
            .fetch_all(&self.pool)
            .await?;
        let meta: BTreeMap<String, String> = rows
            .iter()
            .map(|r| (r.get::<String, _>("key"), r.get::<String, _>("value")))
            .collect();
        let time = |key: &str| {
            meta.get(key)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let (bounds, counts) = self.leases().await?;
        Ok(PersistedState {
            instance_id: meta
                .get(keys::INSTANCE_ID)
                .and_then(|s| InstanceId::parse(s).ok()),
            guid: meta.get(keys::GUID).and_then(|s| ServerGuid::parse(s).ok()),
            bundle: meta.get(keys::ENVELOPE).map(|e| StoredBundle {
                envelope: e.clone(),
                received_at: time(keys::RECEIVED_AT),
            }),
            high_water: time(keys::HIGH_WATER),
            last_sync: time(keys::LAST_SYNC),
            alive_at: time(keys::ALIVE_AT),
            learning_until: time(keys::LEARNING_UNTIL),
            bounds,
            counts,
            open_usage: self.open_usage().await?,
        })
    }

    pub async fn save_instance_id(&self, id: &InstanceId) -> StoreResult<()> {
        self.put(&[(keys::INSTANCE_ID, id.to_string())], &[]).await
    }

    /// Records that a process started granting at `now` (and, in learning mode, until when
    /// it learns).
    pub async fn save_start(
        &self,
        now: DateTime<Utc>,
        learning_until: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        let mut set = vec![(keys::ALIVE_AT, now.to_rfc3339())];
        if let Some(until) = learning_until {
            set.push((keys::LEARNING_UNTIL, until.to_rfc3339()));
        }
        self.put(&set, &[]).await
    }

    /// Sets the server GUID and drops the bundle (it was for the old GUID).
    pub async fn save_guid(&self, guid: ServerGuid) -> StoreResult<()> {
        self.put(
            &[(keys::GUID, guid.to_string())],
            &[keys::ENVELOPE, keys::RECEIVED_AT],
        )
        .await
    }

    /// Stores a verified bundle of `guid` taken at `now` and its consequences in one
    /// transaction: the envelope verbatim, the sync time (which is also the new time
    /// high-water mark), and the deletion of every bucket of `guid` the node acknowledged.
    pub async fn save_bundle(
        &self,
        envelope: &SignedEnvelope,
        now: DateTime<Utc>,
        guid: ServerGuid,
        acked_seq: u64,
    ) -> StoreResult<()> {
        let now = now.to_rfc3339();
        let mut tx = self.pool.begin().await?;
        for (k, v) in [
            (keys::ENVELOPE, envelope.to_json()),
            (keys::RECEIVED_AT, now.clone()),
            (keys::HIGH_WATER, now.clone()),
            (keys::LAST_SYNC, now),
        ] {
            upsert_meta(&mut tx, k, &v).await?;
        }
        ack_usage(&mut tx, guid, acked_seq).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the buckets of `guid` up to `acked_seq` (what a bundle acknowledges).
    #[cfg(test)]
    pub async fn ack_usage(&self, guid: ServerGuid, acked_seq: u64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        ack_usage(&mut tx, guid, acked_seq).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets and removes several `meta` values in one transaction.
    async fn put(&self, set: &[(&str, String)], remove: &[&str]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for (k, v) in set {
            upsert_meta(&mut tx, k, v).await?;
        }
        for k in remove {
            sqlx::query("DELETE FROM meta WHERE key = ?")
                .bind(k)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Writes a batch of jobs in one transaction, in order (a later bound overwrites an
    /// earlier one).
    pub async fn write(&self, jobs: &[&Write]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for job in jobs {
            match job {
                Write::Bounds(rows) => write_bounds(&mut tx, rows).await?,
                Write::Flush(f) => write_flush(&mut tx, f).await?,
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Reservation bounds and client counts persisted by an earlier process.
    async fn leases(&self) -> StoreResult<(Vec<BoundRow>, Vec<CountRow>)> {
        let rows = sqlx::query(
            "SELECT client_id, feature, bound, product_release, failover FROM lease_bounds",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut bounds = Vec::with_capacity(rows.len());
        for r in rows {
            let (Ok(client), Ok(feature), Ok(release)) = (
                ClientId::parse(&r.get::<String, _>("client_id")),
                Feature::parse(&r.get::<String, _>("feature")),
                NaiveDate::parse_from_str(&r.get::<String, _>("product_release"), "%Y-%m-%d"),
            ) else {
                continue;
            };
            bounds.push(BoundRow {
                client,
                feature,
                bound: u32::try_from(r.get::<i64, _>("bound")).unwrap_or(u32::MAX),
                product_release: release,
                failover: r.get::<i64, _>("failover") != 0,
            });
        }
        let rows = sqlx::query("SELECT client_id, feature, acquired, denied FROM client_counts")
            .fetch_all(&self.pool)
            .await?;
        let mut counts = Vec::with_capacity(rows.len());
        for r in rows {
            let (Ok(client), Ok(feature)) = (
                ClientId::parse(&r.get::<String, _>("client_id")),
                Feature::parse(&r.get::<String, _>("feature")),
            ) else {
                continue;
            };
            counts.push(CountRow {
                client,
                feature,
                acquired: u64_of(r.get("acquired")),
                denied: u64_of(r.get("denied")),
            });
        }
        Ok((bounds, counts))
    }

    async fn open_usage(&self) -> StoreResult<BTreeMap<HourKey, Counts>> {
        let rows = sqlx::query(
            "SELECT feature, hour, peak_in_use, grants, denials, denials_while_free, backup_use_ms, license_ms FROM open_usage",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = BTreeMap::new();
        for r in rows {
            let (Ok(feature), Ok(hour)) = (
                Feature::parse(&r.get::<String, _>("feature")),
                DateTime::parse_from_rfc3339(&r.get::<String, _>("hour")),
            ) else {
                continue;
            };
            out.insert(
                (feature, hour.with_timezone(&Utc)),
                Counts {
                    peak_in_use: u32::try_from(r.get::<i64, _>("peak_in_use")).unwrap_or(0),
                    grants: u64_of(r.get("grants")),
                    denials: u64_of(r.get("denials")),
                    denials_while_free: u64_of(r.get("denials_while_free")),
                    backup_use_ms: u64_of(r.get("backup_use_ms")),
                    license_ms: u64_of(r.get("license_ms")),
                },
            );
        }
        Ok(out)
    }

    /// Closed buckets recorded under `guid` and not yet acknowledged, oldest first.
    pub async fn pending_buckets(
        &self,
        guid: ServerGuid,
        limit: usize,
    ) -> StoreResult<Vec<UsageBucket>> {
        let rows = sqlx::query("SELECT seq, feature, hour, peak_in_use, grants, denials, denials_while_free, backup_use_secs, license_secs FROM usage_buckets WHERE server_guid = ? ORDER BY seq LIMIT ?")
            .bind(guid.to_string())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let feature = Feature::parse(&r.get::<String, _>("feature"))
                .map_err(|e| StoreError::Db(format!("stored feature: {e}")))?;
            let hour = DateTime::parse_from_rfc3339(&r.get::<String, _>("hour"))
                .map_err(|e| StoreError::Db(format!("stored hour: {e}")))?
                .with_timezone(&Utc);
            out.push(UsageBucket {
                seq: u64_of(r.get("seq")),
                feature,
                hour,
                peak_in_use: u32::try_from(r.get::<i64, _>("peak_in_use")).unwrap_or(0),
                grants: u64_of(r.get("grants")),
                denials: u64_of(r.get("denials")),
                denials_while_free: u64_of(r.get("denials_while_free")),
                backup_use_secs: u64_of(r.get("backup_use_secs")),
                license_secs: u64_of(r.get("license_secs")),
            });
        }
        Ok(out)
    }

    /// Closed hours from `since` on (hours starting before `since` but ending after it
    /// included), of one feature or all, oldest first.
    pub async fn usage_history(
        &self,
        feature: Option<&Feature>,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<HistoryPoint>> {
        let from = since.timestamp() - i64::from(HOUR_SECS) + 1;
        let rows = sqlx::query(
            "SELECT feature, hour, peak_in_use, grants, denials, denials_while_free, licensed, backup_use_secs, license_secs FROM usage_history \
             WHERE hour >= ? AND (? IS NULL OR feature = ?) ORDER BY hour, feature",
        )
        .bind(from)
        .bind(feature.map(Feature::as_str))
        .bind(feature.map(Feature::as_str))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let (Ok(feature), Some(start)) = (
                Feature::parse(&r.get::<String, _>("feature")),
                DateTime::from_timestamp(r.get::<i64, _>("hour"), 0),
            ) else {
                continue;
            };
            out.push(HistoryPoint {
                feature,
                start,
                secs: HOUR_SECS,
                peak_in_use: u32::try_from(r.get::<i64, _>("peak_in_use")).unwrap_or(0),
                grants: u64_of(r.get("grants")),
                denials: u64_of(r.get("denials")),
                denials_while_free: u64_of(r.get("denials_while_free")),
                licensed: u32::try_from(r.get::<i64, _>("licensed")).unwrap_or(0),
                backup_use_secs: u64_of(r.get("backup_use_secs")),
                license_secs: u64_of(r.get("license_secs")),
                open: false,
            });
        }
        Ok(out)
    }

    /// Every feature with stored history.
    pub async fn history_features(&self) -> StoreResult<Vec<Feature>> {
        let rows = sqlx::query("SELECT DISTINCT feature FROM usage_history ORDER BY feature")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Feature::parse(&r.get::<String, _>("feature")).ok())
            .collect())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The ledger, the allocator's snapshot and the meta values of one flush.
async fn write_flush(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    f: &FlushWrite,
) -> Result<(), sqlx::Error> {
    for ((feature, hour), c) in &f.open {
        sqlx::query(
            "INSERT INTO open_usage (feature, hour, peak_in_use, grants, denials, denials_while_free, backup_use_ms, license_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (feature, hour) DO UPDATE SET peak_in_use = excluded.peak_in_use, grants = excluded.grants, denials = excluded.denials, \
             denials_while_free = excluded.denials_while_free, backup_use_ms = excluded.backup_use_ms, license_ms = excluded.license_ms",
        )
        .bind(feature.as_str())
        .bind(hour.to_rfc3339())
        .bind(i64::from(c.peak_in_use))
        .bind(i64_of(c.grants))
        .bind(i64_of(c.denials))
        .bind(i64_of(c.denials_while_free))
        .bind(i64_of(c.backup_use_ms))
        .bind(i64_of(c.license_ms))
        .execute(&mut **tx)
        .await?;
    }
    if !f.close.is_empty() {
        let next: i64 = sqlx::query("SELECT value FROM meta WHERE key = ?")
            .bind(keys::NEXT_SEQ)
            .fetch_optional(&mut **tx)
            .await?
            .and_then(|r| r.get::<String, _>("value").parse().ok())
            .unwrap_or(1);
        let mut seq = next;
        let guid = f.guid.map(|g| g.to_string()).unwrap_or_default();
        for ((feature, hour), c) in &f.close {
            sqlx::query(
                "INSERT INTO usage_buckets (seq, feature, hour, peak_in_use, grants, denials, denials_while_free, backup_use_secs, server_guid, license_secs) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(seq)
            .bind(feature.as_str())
            .bind(hour.to_rfc3339())
            .bind(i64::from(c.peak_in_use))
            .bind(i64_of(c.grants))
            .bind(i64_of(c.denials))
            .bind(i64_of(c.denials_while_free))
            .bind(i64_of(c.backup_use_ms / 1000))
            .bind(&guid)
            .bind(i64_of(c.license_ms / 1000))
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "INSERT INTO usage_history (feature, hour, peak_in_use, grants, denials, denials_while_free, licensed, backup_use_secs, license_secs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (feature, hour) DO UPDATE SET peak_in_use = max(peak_in_use, excluded.peak_in_use), grants = grants + excluded.grants, \
                 denials = denials + excluded.denials, denials_while_free = denials_while_free + excluded.denials_while_free, \
                 licensed = excluded.licensed, backup_use_secs = backup_use_secs + excluded.backup_use_secs, \
                 license_secs = license_secs + excluded.license_secs",
            )
            .bind(feature.as_str())
            .bind(hour.timestamp())
            .bind(i64::from(c.peak_in_use))
            .bind(i64_of(c.grants))
            .bind(i64_of(c.denials))
            .bind(i64_of(c.denials_while_free))
            .bind(i64::from(f.licensed.get(feature).copied().unwrap_or(0)))
            .bind(i64_of(c.backup_use_ms / 1000))
            .bind(i64_of(c.license_ms / 1000))
            .execute(&mut **tx)
            .await?;
            sqlx::query("DELETE FROM open_usage WHERE feature = ? AND hour = ?")
                .bind(feature.as_str())
                .bind(hour.to_rfc3339())
                .execute(&mut **tx)
                .await?;
            seq += 1;
        }
        upsert_meta(tx, keys::NEXT_SEQ, &seq.to_string()).await?;
    }
    if let Some(from) = f.history_from {
        sqlx::query("DELETE FROM usage_history WHERE hour < ?")
            .bind(from.timestamp())
            .execute(&mut **tx)
            .await?;
    }
    let snap = &f.snapshot;
    delete_clients(tx, "lease_bounds", &snap.bounds_removed).await?;
    delete_clients(tx, "client_counts", &snap.counts_removed).await?;
    write_bounds(tx, &snap.bounds).await?;
    write_counts(tx, &snap.counts).await?;
    if let Some(t) = f.high_water {
        upsert_meta(tx, keys::HIGH_WATER, &t.to_rfc3339()).await?;
    }
    if let Some(t) = f.alive_at {
        upsert_meta(tx, keys::ALIVE_AT, &t.to_rfc3339()).await?;
    }
    Ok(())
}

/// Rows per multi-row statement: one statement per row made a snapshot of 10,000 clients
/// hold the writer (and every grant queued behind it) for over a second.
const ROWS_PER_STATEMENT: usize = 500;

async fn write_bounds(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    rows: &[BoundRow],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO lease_bounds (client_id, feature, bound, product_release, failover) ",
        );
        q.push_values(chunk, |mut row, b| {
            row.push_bind(b.client.as_str())
                .push_bind(b.feature.as_str())
                .push_bind(i64::from(b.bound))
                .push_bind(b.product_release.format("%Y-%m-%d").to_string())
                .push_bind(i64::from(b.failover));
        });
        q.push(
            " ON CONFLICT (client_id, feature) DO UPDATE SET bound = excluded.bound, \
             product_release = excluded.product_release, failover = excluded.failover",
        );
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn write_counts(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    rows: &[CountRow],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO client_counts (client_id, feature, acquired, denied) ",
        );
        q.push_values(chunk, |mut row, c| {
            row.push_bind(c.client.as_str())
                .push_bind(c.feature.as_str())
                .push_bind(i64_of(c.acquired))
                .push_bind(i64_of(c.denied));
        });
        q.push(
            " ON CONFLICT (client_id, feature) DO UPDATE SET acquired = excluded.acquired, \
             denied = excluded.denied",
        );
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Deletes the rows of `table` whose `client_id` is one of `ids`.
async fn delete_clients(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    table: &str,
    ids: &[ClientId],
) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
            "DELETE FROM {table} WHERE client_id IN ("
        ));
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(id.as_str());
        }
        q.push(")");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn ack_usage(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    guid: ServerGuid,
    acked_seq: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM usage_buckets WHERE seq <= ? AND server_guid = ?")
        .bind(i64::try_from(acked_seq).unwrap_or(i64::MAX))
        .bind(guid.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Sets one `meta` value inside a transaction.
async fn upsert_meta(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    key: &str,
    value: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .bind(key)
        .bind(value)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
