//! The license server's behaviour, independent of HTTP: what it serves, why, and how it
//! takes bundles and keeps usage.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use leasehold_proto::{
    BundlePayload, Clock, Context, ErrorCode, Feature, InstanceId, LeaseRequest, LeaseResponse,
    ServerGuid, SignedEnvelope, SyncUpload, TrustedKeys, LEASE_SECS,
};
use rand::seq::SliceRandom;
use rand::RngCore;

use crate::allocator::{Allocator, ClientRequest, PoolLicense, Serving, Start, HOLD_MS};
use crate::api::{
    ClientFeatureStatus, ClientStatus, LicenseStatus, NodeStatus, ServerState, Status, SyncOutcome,
};
use crate::history::{self, HistoryPoint};
use crate::ledger::{Counts, Ledger};
use crate::store::{keys, FlushWrite, ServerStore, StoreError, Write};
use crate::writer::Writer;
use leasehold_api_client::{parse_base_url, ApiClientError, NodeClient};
use leasehold_web::ApiError;

/// A wall clock further back than this below the highest time seen is tampering.
pub const CLOCK_STEP_BACK_TOLERANCE: chrono::Duration = chrono::Duration::hours(1);
/// Longest wait between retries of a failed sync (the seed asks for at least daily).
pub const MAX_RETRY: Duration = Duration::from_secs(3600);
const FIRST_RETRY: Duration = Duration::from_secs(30);
const MAX_FEATURES_PER_REQUEST: usize = 256;

#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub data_dir: PathBuf,
    pub nodes: Vec<String>,
    pub trusted_keys: TrustedKeys,
    pub guid: Option<ServerGuid>,
    /// Timeout of one sync request to one node.
    pub node_timeout: Duration,
}

#[derive(Debug, Default)]
struct BundleState {
    guid: Option<ServerGuid>,
    envelope: Option<SignedEnvelope>,
    payload: Option<BundlePayload>,
    /// Local time the bundle was taken; grace is counted from here in local time, so a
    /// clock set back before a sync cannot stretch it.
    received_at: Option<DateTime<Utc>>,
    licenses_day: Option<NaiveDate>,
}

impl BundleState {
    fn effective_not_after(&self) -> Option<DateTime<Utc>> {
        let p = self.payload.as_ref()?;
        Some(
            self.received_at
                .map_or(p.not_after, |r| r + (p.not_after - p.issued_at)),
        )
    }
}

#[derive(Debug, Default)]
struct SyncState {
    last_success: Option<DateTime<Utc>>,
    last_node: Option<String>,
    last_error: Option<String>,
    next_due: Option<DateTime<Utc>>,
    failures: u32,
    nodes: BTreeMap<String, NodeStatus>,
}

/// The lease path's state: the allocator and the usage ledger under one lock, so that a
/// flush takes both at the same moment (a call counted in one is counted in the other).
#[derive(Debug)]
struct LeaseState {
    alloc: Allocator,
    ledger: Ledger,
    /// Metric handles of every licensed feature, registered when the licenses change, so
    /// that the lease path counts without building a label per request.
    counters: BTreeMap<Feature, FeatureCounters>,
}

#[derive(Debug, Clone)]
struct FeatureCounters {
    grants: metrics::Counter,
    denials: metrics::Counter,
    denials_while_free: metrics::Counter,
}

impl FeatureCounters {
    fn new(feature: &Feature) -> Self {
        let label = feature.to_string();
        Self {
            grants: metrics::counter!("leasehold_server_grants_total", "feature" => label.clone()),
            denials: metrics::counter!("leasehold_server_denials_total", "feature" => label.clone()),
            denials_while_free: metrics::counter!("leasehold_server_denials_while_free_total", "feature" => label),
        }
    }

    fn record(&self, delta: &crate::allocator::UsageDelta) {
        self.grants.increment(delta.acquired);
        self.denials.increment(delta.denied);
        self.denials_while_free.increment(delta.denied_while_free);
    }
}

/// `leasehold_server_lease_requests_total{state}`, one handle per state.
#[derive(Debug)]
struct RequestCounters([metrics::Counter; 5]);

impl RequestCounters {
    const STATES: [ServerState; 5] = [
        ServerState::Unconfigured,
        ServerState::NotSynced,
        ServerState::Ok,
        ServerState::Expired,
        ServerState::ClockTampered,
    ];

    fn new() -> Self {
        Self(Self::STATES.map(|s| {
            metrics::counter!("leasehold_server_lease_requests_total", "state" => state_label(s))
        }))
    }

    fn get(&self, state: ServerState) -> &metrics::Counter {
        let i = Self::STATES.iter().position(|s| *s == state).unwrap_or(0);
        &self.0[i]
    }
}

#[derive(Debug)]
pub struct LicenseServer {
    store: Arc<ServerStore>,
    writer: Writer,
    clock: Arc<dyn Clock>,
    keys: TrustedKeys,
    instance_id: InstanceId,
    nodes: RwLock<Vec<String>>,
    leases: Mutex<LeaseState>,
    bundle: RwLock<BundleState>,
    high_water: Mutex<DateTime<Utc>>,
    sync: Mutex<SyncState>,
    /// One sync at a time.
    sync_lock: tokio::sync::Mutex<()>,
    http: reqwest::Client,
    requests: RequestCounters,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

impl LicenseServer {
    /// Opens the data directory (refusing one in use by another process), restores state
    /// and verifies the stored bundle.
    pub async fn open(
        options: ServerOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StoreError> {
        // Metric handles are taken below: the recorder must be in place first.
        let _ = leasehold_web::metrics::prometheus();
        let store = ServerStore::open(&options.data_dir).await?;
        let meta = store.get_all().await?;
        let now = clock.now();
        let instance_id = match meta
            .get(keys::INSTANCE_ID)
            .and_then(|s| InstanceId::parse(s).ok())
        {
            Some(id) => id,
            None => {
                let mut b = [0u8; 16];
                rand::rngs::OsRng.fill_bytes(&mut b);
                let id = InstanceId::from_random(b);
                store
                    .put(&[(keys::INSTANCE_ID, id.to_string())], &[])
                    .await?;
                id
            }
        };
        let stored_guid = meta.get(keys::GUID).and_then(|s| ServerGuid::parse(s).ok());
        let high_water = meta
            .get(keys::HIGH_WATER)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now);
        // Leases granted by an earlier process may still be live on clients for one hold:
        // relearn them before granting anything new. A process that had a bundle may have
        // granted (also when this directory is a restored backup, or the clock jumped, so
        // the heartbeat alone is not trusted); a heartbeat within one hold of now catches a
        // process that synced and crashed before its bundle reached this check.
        let alive_at = meta
            .get(keys::ALIVE_AT)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        let recently_alive = alive_at.is_some_and(|a| {
            a > now
                || now - a
                    < chrono::Duration::milliseconds(i64::try_from(HOLD_MS).unwrap_or(0) + 10_000)
        });
        // What an earlier process granted: restored from disk when this directory was in use
        // within a hold (every grant that raised a reservation was written before it was
        // answered); otherwise something may have been granted that this directory does not
        // show (a restored backup of it, say), so relearn for one hold.
        // A process that was still learning could not see everything granted before it, so
        // neither can what it persisted: learn again.
        let (bounds, counts) = store.leases().await?;
        let had_grants = meta.contains_key(keys::ENVELOPE) || !bounds.is_empty();
        let was_learning = meta
            .get(keys::LEARNING_UNTIL)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .is_some_and(|until| until.with_timezone(&Utc) > now);
        let start = if recently_alive && !was_learning {
            Start::Restored { bounds, counts }
        } else if had_grants {
            Start::Learning { counts }
        } else {
            Start::Fresh
        };
        let mut alive = vec![(keys::ALIVE_AT, now.to_rfc3339())];
        if matches!(start, Start::Learning { .. }) {
            let hold = chrono::Duration::milliseconds(i64::try_from(HOLD_MS).unwrap_or(0));
            alive.push((keys::LEARNING_UNTIL, (now + hold).to_rfc3339()));
        }
        // From here on this process may grant.
        store.put(&alive, &[]).await?;
        let mut bundle = BundleState {
            guid: stored_guid,
            ..Default::default()
        };
        if let (Some(guid), Some(text)) = (stored_guid, meta.get(keys::ENVELOPE)) {
            match SignedEnvelope::from_json(text.as_bytes()).and_then(|e| {
                e.open_bundle(&options.trusted_keys, guid, None)
                    .map(|p| (e, p))
            }) {
                Ok((envelope, payload)) => {
                    bundle.envelope = Some(envelope);
                    bundle.payload = Some(payload);
                    bundle.received_at = meta
                        .get(keys::RECEIVED_AT)
                        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                        .map(|t| t.with_timezone(&Utc));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "stored bundle does not verify; serving no licenses until the next sync")
                }
            }
        }
        let backup = bundle
            .payload
            .as_ref()
            .is_some_and(|p| p.context == Context::Backup);
        let ledger = Ledger::restore(store.open_usage().await?);
        let epoch = rand::rngs::OsRng.next_u64();
        let alloc = Allocator::new(clock.monotonic_ms(), start, backup, epoch);
        let store = Arc::new(store);
        let writer = Writer::spawn(store.clone());
        let last_success = meta
            .get(keys::LAST_SYNC)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        // A process that synced before may have left an upload in flight when it stopped.
        // Syncing again before that one can have reached the node would present the same
        // token twice, and the node would take the late one for a copy of this server
        // (found by the simulation, seed 633). So the first sync after a restart waits out
        // one node timeout.
        let next_due = bundle.payload.as_ref().map(|p| {
            let interval =
                chrono::Duration::seconds(i64::try_from(p.sync_interval_secs).unwrap_or(86_400));
            let scheduled = last_success.map_or(now, |l| l + interval);
            let settled = now
                + chrono::Duration::from_std(options.node_timeout)
                    .unwrap_or(chrono::Duration::seconds(30));
            scheduled.max(settled)
        });
        let mut sync = SyncState {
            last_success,
            next_due,
            ..Default::default()
        };
        for url in &options.nodes {
            sync.nodes.insert(
                url.clone(),
                NodeStatus {
                    url: url.clone(),
                    last_ok: None,
                    last_error: None,
                },
            );
        }
        let server = Arc::new(Self {
            store,
            writer,
            leases: Mutex::new(LeaseState {
                alloc,
                ledger,
                counters: BTreeMap::new(),
            }),
            requests: RequestCounters::new(),
            clock,
            keys: options.trusted_keys,
            instance_id,
            nodes: RwLock::new(options.nodes),
            bundle: RwLock::new(bundle),
            high_water: Mutex::new(high_water.max(now)),
            sync: Mutex::new(sync),
            sync_lock: tokio::sync::Mutex::new(()),
            http: reqwest::Client::builder()
                .timeout(options.node_timeout)
                .build()
                .map_err(|e| StoreError::Db(format!("HTTP client: {e}")))?,
        });
        if let Some(guid) = options.guid {
            server
                .set_guid(guid)
                .await
                .map_err(|e| StoreError::Db(e.message))?;
        }
        server.refresh_licenses(now);
        Ok(server)
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.store.dir()
    }

    pub fn instance_id(&self) -> &InstanceId {
        &self.instance_id
    }

    pub fn guid(&self) -> Option<ServerGuid> {
        read(&self.bundle).guid
    }

    /// Records `now` in the high-water mark and says whether the clock was set back.
    fn observe_time(&self, now: DateTime<Utc>) -> bool {
        let mut hw = lock(&self.high_water);
        if now > *hw {
            *hw = now;
            false
        } else {
            *hw - now > CLOCK_STEP_BACK_TOLERANCE
        }
    }

    /// The state and whether (and why not) licenses are served.
    pub fn state(&self, now: DateTime<Utc>) -> (ServerState, Serving) {
        let tampered = self.observe_time(now);
        let b = read(&self.bundle);
        self.state_of(&b, now, tampered)
    }

    fn state_of(
        &self,
        b: &BundleState,
        now: DateTime<Utc>,
        tampered: bool,
    ) -> (ServerState, Serving) {
        if b.guid.is_none() {
            return (ServerState::Unconfigured, Serving::No("no server GUID is set: set it in the dashboard or with `leasehold server set-guid`".into()));
        }
        if b.payload.is_none() {
            return (
                ServerState::NotSynced,
                Serving::No("this license server has not synced with a license node yet".into()),
            );
        }
        if tampered {
            let hw = *lock(&self.high_water);
            return (
                ServerState::ClockTampered,
                Serving::No(format!(
                    "the system clock ({}) is behind the latest time this server has seen ({}) by more than an hour; licenses are suspended until the clock is right or a sync succeeds",
                    now.format("%Y-%m-%d %H:%M UTC"),
                    hw.format("%Y-%m-%d %H:%M UTC")
                )),
            );
        }
        if let Some(not_after) = b.effective_not_after() {
            if now > not_after {
                return (
                    ServerState::Expired,
                    Serving::No(format!(
                        "no successful sync with a license node since {}; licenses are suspended until a sync succeeds",
                        b.received_at.unwrap_or(not_after).format("%Y-%m-%d")
                    )),
                );
            }
        }
        (ServerState::Ok, Serving::Yes)
    }

    /// Puts the licenses in force today into the allocator when the bundle or the day changed.
    fn refresh_licenses(&self, now: DateTime<Utc>) {
        let today = now.date_naive();
        let mut b = write(&self.bundle);
        if b.licenses_day == Some(today) {
            return;
        }
        b.licenses_day = Some(today);
        let licenses: Vec<PoolLicense> = b
            .payload
            .as_ref()
            .map(|p| {
                p.licenses_in_force(today)
                    .map(|l| PoolLicense {
                        feature: l.feature.clone(),
                        count: l.count,
                        maintenance_until: l.maintenance_until,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let backup = b
            .payload
            .as_ref()
            .is_some_and(|p| p.context == Context::Backup);
        drop(b);
        let mut s = lock(&self.leases);
        s.alloc.set_backup(backup);
        s.alloc.set_licenses(&licenses);
        for l in &licenses {
            if !s.counters.contains_key(&l.feature) {
                let c = FeatureCounters::new(&l.feature);
                s.counters.insert(l.feature.clone(), c);
            }
        }
    }

    /// `POST /v1/lease`. A grant that raises a client's reservation is on disk before it is
    /// answered (group-committed with others), so a restarted server knows it.
    pub async fn lease(&self, req: &LeaseRequest) -> Result<LeaseResponse, ApiError> {
        if req.features.len() > MAX_FEATURES_PER_REQUEST {
            return Err(ApiError::bad_request(format!(
                "a lease request may name at most {MAX_FEATURES_PER_REQUEST} features"
            )));
        }
        let now = self.clock.now();
        let mono = self.clock.monotonic_ms();
        let tampered = self.observe_time(now);
        // One look at the bundle: the state, who we are and whether today's licenses are in.
        let (state, serving, ready, stale_day) = {
            let b = read(&self.bundle);
            let (state, serving) = self.state_of(&b, now, tampered);
            let ready = b.guid.zip(b.payload.as_ref().map(|p| p.context));
            (
                state,
                serving,
                ready,
                b.licenses_day != Some(now.date_naive()),
            )
        };
        let Some((guid, context)) = ready else {
            self.requests.get(state).increment(1);
            let why = match serving {
                Serving::No(why) => why,
                Serving::Yes => "not ready".into(),
            };
            return Err(ApiError::new(ErrorCode::NotReady, why));
        };
        if stale_day {
            self.refresh_licenses(now);
        }
        let request = ClientRequest {
            client: &req.client_id,
            product_release: req.product_release,
            features: &req.features,
            failover: req.failover,
            seq: req.seq,
            epoch: req.epoch,
            asks: req.asks,
            release: req.release,
        };
        let (answer, epoch, persisted) = {
            let mut s = lock(&self.leases);
            let answer = s.alloc.request(mono, &request, &serving);
            for (feature, delta) in &answer.usage {
                let in_use = s.alloc.in_use(feature);
                s.ledger.record(
                    feature,
                    now,
                    in_use,
                    &Counts {
                        peak_in_use: 0,
                        grants: delta.acquired,
                        denials: delta.denied,
                        denials_while_free: delta.denied_while_free,
                        backup_use_ms: if context == Context::Backup {
                            delta.failover_use_ms
                        } else {
                            0
                        },
                    },
                );
            }
            for (feature, delta) in &answer.usage {
                if delta.acquired == 0 && delta.denied == 0 {
                    continue;
                }
                match s.counters.get(feature) {
                    Some(c) => c.record(delta),
                    // A feature this server has no license for: rare, so registered here.
                    None => FeatureCounters::new(feature).record(delta),
                }
            }
            // Queued under the lock: the writer keeps the order of raises and snapshots.
            let persisted = (!answer.raised.is_empty())
                .then(|| self.writer.queue(Write::Bounds(answer.raised.clone())));
            (answer, s.alloc.epoch(), persisted)
        };
        self.requests.get(state).increment(1);
        if let Some(p) = persisted {
            // Not on disk: the client gets no answer, so it cannot use the grant (the
            // reservation stays until its hold ends).
            p.wait().await.map_err(|e| {
                ApiError::new(
                    ErrorCode::Internal,
                    format!("cannot record the grant in the data directory: {e}"),
                )
            })?;
        }
        if answer.stale {
            return Err(ApiError::new(
                ErrorCode::StaleRequest,
                "a later request of this client was already answered; this one changed nothing",
            ));
        }
        Ok(LeaseResponse {
            server_guid: guid,
            context,
            lease_secs: LEASE_SECS,
            features: answer.features,
            epoch,
        })
    }

    /// `DELETE /v1/lease/{client_id}?seq=N&epoch=E`: only if no later request of the client
    /// arrived and the epoch is this process's.
    pub fn release(&self, client: &leasehold_proto::ClientId, seq: u64, epoch: u64) -> bool {
        let mono = self.clock.monotonic_ms();
        lock(&self.leases)
            .alloc
            .release_upto(mono, client, seq, epoch)
    }

    /// Sets the server GUID. A different GUID drops the bundle of the old one.
    pub async fn set_guid(&self, guid: ServerGuid) -> Result<(), ApiError> {
        let old = read(&self.bundle).guid;
        if old == Some(guid) {
            return Ok(());
        }
        if old.is_some() {
            // Hours recorded under the old GUID are closed under it: they are never uploaded
            // under the new one (they stay in the history, and upload if the old GUID comes
            // back).
            let close = lock(&self.leases).ledger.take_all();
            if !close.is_empty() {
                let licensed = self.licensed_counts();
                self.writer
                    .queue(Write::Flush(Box::new(FlushWrite {
                        close,
                        guid: old,
                        licensed,
                        ..FlushWrite::default()
                    })))
                    .wait()
                    .await?;
                tracing::info!(guid = ?old, "usage hours of the previous GUID closed under it");
            }
        }
        self.store
            .put(
                &[(keys::GUID, guid.to_string())],
                &[keys::ENVELOPE, keys::RECEIVED_AT],
            )
            .await?;
        {
            let mut b = write(&self.bundle);
            *b = BundleState {
                guid: Some(guid),
                ..Default::default()
            };
        }
        {
            // A new GUID syncs at once.
            let mut s = lock(&self.sync);
            s.next_due = None;
            s.failures = 0;
            s.last_error = None;
        }
        self.refresh_licenses(self.clock.now());
        tracing::info!(%guid, "server GUID set");
        Ok(())
    }

    /// The exact upload the next sync sends (also `export-upload`).
    pub async fn upload(&self) -> Result<SyncUpload, ApiError> {
        let (guid, token, serial, context) = {
            let b = read(&self.bundle);
            let guid = b.guid.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotReady,
                    "no server GUID is set: set it before syncing",
                )
            })?;
            let p = b.payload.as_ref();
            (
                guid,
                p.map(|p| p.next_sync_token.clone()),
                p.map_or(0, |p| p.serial),
                p.map(|p| p.context),
            )
        };
        self.flush().await?;
        let usage = self
            .store
            .pending_buckets(guid, SyncUpload::MAX_BUCKETS)
            .await?;
        Ok(SyncUpload {
            server_guid: guid,
            instance_id: self.instance_id.clone(),
            sync_token: token,
            last_bundle_serial: serial,
            context,
            software_version: env!("CARGO_PKG_VERSION").into(),
            usage,
        })
    }

    /// Verifies a bundle and, only if every check passes, makes it the server's bundle.
    pub async fn apply_envelope(
        &self,
        envelope: SignedEnvelope,
        via: &str,
    ) -> Result<SyncOutcome, ApiError> {
        let (guid, context, serial) = {
            let b = read(&self.bundle);
            let guid = b
                .guid
                .ok_or_else(|| ApiError::new(ErrorCode::NotReady, "no server GUID is set"))?;
            (
                guid,
                b.payload.as_ref().map(|p| p.context),
                b.payload.as_ref().map_or(0, |p| p.serial),
            )
        };
        let payload = envelope
            .open_bundle(&self.keys, guid, context)
            .map_err(|e| {
                ApiError::bad_request(format!("bundle rejected, the previous one is kept: {e}"))
            })?;
        if payload.serial <= serial {
            return Err(ApiError::bad_request(format!(
                "bundle rejected, the previous one is kept: its serial {} is not newer than the current {serial}",
                payload.serial
            )));
        }
        let now = self.clock.now();
        self.store
            .apply_bundle(
                &[
                    (keys::ENVELOPE, envelope.to_json()),
                    (keys::RECEIVED_AT, now.to_rfc3339()),
                    (keys::HIGH_WATER, now.to_rfc3339()),
                    (keys::LAST_SYNC, now.to_rfc3339()),
                ],
                guid,
                payload.acked_usage_seq,
            )
            .await?;
        let outcome = SyncOutcome {
            ok: true,
            node: Some(via.to_string()),
            serial: Some(payload.serial),
            licenses: payload.licenses.len(),
            acked_usage_seq: Some(payload.acked_usage_seq),
            error: None,
        };
        let interval =
            chrono::Duration::seconds(i64::try_from(payload.sync_interval_secs).unwrap_or(86_400));
        {
            let mut b = write(&self.bundle);
            b.envelope = Some(envelope);
            b.payload = Some(payload);
            b.received_at = Some(now);
            b.licenses_day = None;
        }
        // A sync restores trust in the clock.
        *lock(&self.high_water) = now;
        {
            let mut s = lock(&self.sync);
            s.last_success = Some(now);
            s.last_node = Some(via.to_string());
            s.last_error = None;
            s.failures = 0;
            s.next_due = Some(now + interval);
        }
        self.refresh_licenses(now);
        metrics::counter!("leasehold_server_syncs_total", "result" => "ok").increment(1);
        tracing::info!(
            via,
            serial = outcome.serial,
            licenses = outcome.licenses,
            "bundle applied"
        );
        Ok(outcome)
    }

    /// One sync: tries every configured node in random order until one answers.
    pub async fn sync_now(&self) -> SyncOutcome {
        let _one = self.sync_lock.lock().await;
        let result = self.sync_with_nodes().await;
        match result {
            Ok(outcome) => outcome,
            Err(error) => {
                let now = self.clock.now();
                let mut s = lock(&self.sync);
                s.failures = s.failures.saturating_add(1);
                let backoff = FIRST_RETRY
                    .saturating_mul(1u32 << s.failures.min(16).saturating_sub(1))
                    .min(MAX_RETRY);
                s.next_due = Some(
                    now + chrono::Duration::from_std(backoff).unwrap_or(chrono::Duration::hours(1)),
                );
                s.last_error = Some(error.clone());
                metrics::counter!("leasehold_server_syncs_total", "result" => "error").increment(1);
                tracing::warn!(%error, retry_in = ?backoff, "sync failed");
                SyncOutcome {
                    ok: false,
                    node: None,
                    serial: None,
                    licenses: 0,
                    acked_usage_seq: None,
                    error: Some(error),
                }
            }
        }
    }

    async fn sync_with_nodes(&self) -> Result<SyncOutcome, String> {
        let upload = self.upload().await.map_err(|e| e.message)?;
        let mut nodes = read(&self.nodes).clone();
        if nodes.is_empty() {
            return Err(
                "no license node is configured (air-gapped: use export-upload and import-bundle)"
                    .into(),
            );
        }
        nodes.shuffle(&mut rand::thread_rng());
        let mut errors = Vec::new();
        for node in nodes {
            let result = match parse_base_url("node", &node) {
                Ok(base) => {
                    NodeClient::with_http(self.http.clone(), base, None)
                        .sync(&upload)
                        .await
                }
                Err(e) => Err(e),
            };
            let now = self.clock.now();
            let outcome: Result<SyncOutcome, (String, bool)> = match result {
                Ok(env) => self
                    .apply_envelope(env, &node)
                    .await
                    .map_err(|e| (format!("{node}: {}", e.message), false)),
                Err(ApiClientError::Unreachable { detail, .. }) => {
                    Err((format!("{node}: cannot reach: {detail}"), false))
                }
                Err(ApiClientError::Decode { detail, .. }) => {
                    Err((format!("{node}: answer is not a bundle: {detail}"), false))
                }
                Err(e) => {
                    // Every node shares one database: its refusal of this server is the same
                    // everywhere. Anything else (a proxy's 404, say) concerns this node only.
                    let authoritative = matches!(
                        e.code(),
                        Some(
                            ErrorCode::GuidInUse
                                | ErrorCode::UnknownServer
                                | ErrorCode::ContextMismatch
                        )
                    );
                    Err((format!("{node}: {e}"), authoritative))
                }
            };
            let mut s = lock(&self.sync);
            let entry = s.nodes.entry(node.clone()).or_insert_with(|| NodeStatus {
                url: node.clone(),
                last_ok: None,
                last_error: None,
            });
            match outcome {
                Ok(o) => {
                    entry.last_ok = Some(now);
                    entry.last_error = None;
                    return Ok(o);
                }
                Err((e, authoritative)) => {
                    entry.last_error = Some(e.clone());
                    errors.push(e);
                    if authoritative {
                        break;
                    }
                }
            }
        }
        Err(errors.join("; "))
    }

    /// When the agent should sync next: now for a server that never synced.
    pub fn next_sync_due(&self) -> Option<DateTime<Utc>> {
        // Lock order everywhere: bundle, then sync.
        let b = read(&self.bundle);
        b.guid?;
        if read(&self.nodes).is_empty() {
            // Air-gapped: bundles come by file only.
            return None;
        }
        let interval = b.payload.as_ref().map(|p| p.sync_interval_secs);
        drop(b);
        let s = lock(&self.sync);
        Some(
            s.next_due
                .unwrap_or_else(|| match (s.last_success, interval) {
                    (Some(last), Some(secs)) => {
                        last + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(86_400))
                    }
                    _ => self.clock.now(),
                }),
        )
    }

    /// Persists usage counts, closes finished hours, lowers the persisted reservation bounds
    /// and records the time high-water mark, in one transaction.
    pub async fn flush(&self) -> Result<(), ApiError> {
        let now = self.clock.now();
        self.observe_time(now);
        let hw = *lock(&self.high_water);
        let guid = read(&self.bundle).guid;
        let licensed = self.licensed_counts();
        let (pending, snapshot, closed) = {
            let mut s = lock(&self.leases);
            let (open, close) = s.ledger.take_flush(now).unwrap_or_default();
            let snapshot = s.alloc.snapshot();
            let write = FlushWrite {
                open,
                close: close.clone(),
                guid,
                licensed: if close.is_empty() {
                    BTreeMap::new()
                } else {
                    licensed
                },
                history_from: (!close.is_empty())
                    .then(|| now - chrono::Duration::days(history::HISTORY_KEEP_DAYS)),
                snapshot: snapshot.clone(),
                meta: vec![
                    (keys::HIGH_WATER, hw.to_rfc3339()),
                    (keys::ALIVE_AT, now.to_rfc3339()),
                ],
            };
            // Queued under the lock, in order with the raises of the lease path.
            (
                self.writer.queue(Write::Flush(Box::new(write))),
                snapshot,
                close,
            )
        };
        match pending.wait().await {
            Ok(()) => {
                lock(&self.leases).alloc.mark_durable(&snapshot);
                Ok(())
            }
            Err(e) => {
                let mut s = lock(&self.leases);
                s.ledger.retry(closed);
                s.alloc.snapshot_failed(&snapshot);
                Err(e.into())
            }
        }
    }

    pub fn set_nodes(&self, nodes: Vec<String>) {
        *write(&self.nodes) = nodes;
    }

    pub async fn status(&self) -> Result<Status, ApiError> {
        let now = self.clock.now();
        let mono = self.clock.monotonic_ms();
        let (state, serving) = self.state(now);
        let (totals, clients, learning_until) = {
            let mut s = lock(&self.leases);
            let a = &mut s.alloc;
            a.expire(mono);
            let learning = a.is_learning(mono).then(|| {
                now + chrono::Duration::milliseconds(
                    i64::try_from(a.learning_until_ms() - mono).unwrap_or(0),
                )
            });
            (a.totals(), a.client_count(), learning)
        };
        let current_guid = read(&self.bundle).guid;
        let pending = match current_guid {
            Some(g) => self
                .store
                .pending_buckets(g, SyncUpload::MAX_BUCKETS)
                .await?
                .len(),
            None => 0,
        };
        let next_sync = self.next_sync_due();
        let b = read(&self.bundle);
        let s = lock(&self.sync);
        let today = now.date_naive();
        let licenses = b
            .payload
            .as_ref()
            .map(|p| {
                p.licenses
                    .iter()
                    .map(|l| {
                        let t = totals.get(&l.feature).copied().unwrap_or_default();
                        LicenseStatus {
                            id: l.id.to_string(),
                            feature: l.feature.clone(),
                            count: if l.is_expired_on(today) { 0 } else { l.count },
                            in_use: t.in_use,
                            reserved: t.reserved,
                            context: l.context,
                            maintenance_until: l.maintenance_until,
                            expires: l.expires,
                            backs_up: l.backs_up.as_ref().map(ToString::to_string),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let not_after = b.effective_not_after();
        Ok(Status {
            guid: b.guid,
            context: b.payload.as_ref().map(|p| p.context),
            installation: b.payload.as_ref().map(|p| p.installation_id.clone()),
            state,
            reason: match serving {
                Serving::No(why) => Some(why),
                Serving::Yes => None,
            },
            licenses,
            clients,
            learning_until,
            last_sync: s.last_success,
            last_sync_node: s.last_node.clone(),
            last_sync_error: s.last_error.clone(),
            next_sync,
            not_after,
            grace_days_left: not_after.map(|n| (n - now).num_days().max(0)),
            bundle_serial: b.payload.as_ref().map_or(0, |p| p.serial),
            pending_usage_buckets: pending,
            nodes: s.nodes.values().cloned().collect(),
        })
    }

    pub fn clients(&self) -> Vec<ClientStatus> {
        let mono = self.clock.monotonic_ms();
        let mut s = lock(&self.leases);
        s.alloc.expire(mono);
        s.alloc
            .clients()
            .into_iter()
            .map(|c| ClientStatus {
                client: c.client,
                failover: c.failover,
                last_seen_secs_ago: mono.saturating_sub(c.last_seen_ms) / 1000,
                features: c
                    .features
                    .into_iter()
                    .map(|(feature, f)| ClientFeatureStatus {
                        feature,
                        quota: f.quota,
                        in_use: f.in_use,
                    })
                    .collect(),
            })
            .collect()
    }

    /// Totals per feature for metrics.
    pub fn update_gauges(&self) {
        let now = self.clock.now();
        let totals = lock(&self.leases).alloc.totals();
        for (f, t) in &totals {
            let label = f.to_string();
            metrics::gauge!("leasehold_server_licenses", "feature" => label.clone())
                .set(f64::from(t.count));
            metrics::gauge!("leasehold_server_in_use", "feature" => label.clone())
                .set(f64::from(t.in_use));
            metrics::gauge!("leasehold_server_quota_reserved", "feature" => label)
                .set(f64::from(t.reserved));
        }
        if let Some(n) = read(&self.bundle).effective_not_after() {
            metrics::gauge!("leasehold_server_grace_days_left")
                .set((n - now).num_seconds() as f64 / 86_400.0);
        }
    }

    /// Licensed count per feature now (what the allocator serves).
    fn licensed_counts(&self) -> BTreeMap<Feature, u32> {
        lock(&self.leases)
            .alloc
            .totals()
            .into_iter()
            .map(|(f, t)| (f, t.count))
            .collect()
    }

    /// Hourly usage from `since` on, of one feature or all: the stored closed hours merged
    /// with the hours still open in the ledger (those carry today's licensed count). Sorted
    /// by start, then feature.
    pub async fn usage_history(
        &self,
        feature: Option<&Feature>,
        since: DateTime<Utc>,
    ) -> Result<Vec<HistoryPoint>, ApiError> {
        let stored = self.store.usage_history(feature, since).await?;
        let licensed = self.licensed_counts();
        let open: Vec<HistoryPoint> = lock(&self.leases)
            .ledger
            .current()
            .iter()
            .filter(|((f, hour), _)| {
                feature.is_none_or(|want| want == f)
                    && *hour + chrono::Duration::seconds(i64::from(history::HOUR_SECS)) > since
            })
            .map(|((f, hour), c)| {
                let l = licensed.get(f).copied().unwrap_or(0);
                HistoryPoint::from_counts(f.clone(), *hour, history::HOUR_SECS, c, l, true)
            })
            .collect();
        Ok(history::merge(stored, open))
    }

    /// Usage from `since` on in five-minute slots where this process recorded them (the last
    /// day at most), hourly before that; for the 24-hour chart. Slots carry today's licensed
    /// count.
    pub async fn usage_recent(
        &self,
        feature: Option<&Feature>,
        since: DateTime<Utc>,
    ) -> Result<Vec<HistoryPoint>, ApiError> {
        let hourly = self.usage_history(feature, since).await?;
        let licensed = self.licensed_counts();
        let (recent, recent_from) = {
            let s = lock(&self.leases);
            let ledger = &s.ledger;
            let slot = i64::from(history::RECENT_SLOT_SECS);
            let now_slot = history::slot_of(self.clock.now());
            let recent: Vec<HistoryPoint> = ledger
                .recent()
                .iter()
                .filter(|(start, _)| **start + chrono::Duration::seconds(slot) > since)
                .flat_map(|(start, features)| {
                    features
                        .iter()
                        .filter(|(f, _)| feature.is_none_or(|want| want == *f))
                        .map(|(f, c)| {
                            let l = licensed.get(f).copied().unwrap_or(0);
                            HistoryPoint::from_counts(
                                f.clone(),
                                *start,
                                history::RECENT_SLOT_SECS,
                                c,
                                l,
                                *start >= now_slot,
                            )
                        })
                })
                .collect();
            (recent, ledger.recent_from())
        };
        Ok(history::recent_series(hourly, recent, recent_from))
    }

    /// Features to offer in the usage charts: those with history, those in use this hour
    /// and those licensed now.
    pub async fn history_features(&self) -> Result<Vec<Feature>, ApiError> {
        let mut out: std::collections::BTreeSet<Feature> =
            self.store.history_features().await?.into_iter().collect();
        out.extend(
            lock(&self.leases)
                .ledger
                .current()
                .keys()
                .map(|(f, _)| f.clone()),
        );
        out.extend(self.licensed_counts().into_keys());
        Ok(out.into_iter().collect())
    }

    pub async fn close(&self) {
        let _ = self.flush().await;
        self.writer.stop().await;
        self.store.close().await;
    }
}

fn state_label(s: ServerState) -> &'static str {
    match s {
        ServerState::Unconfigured => "unconfigured",
        ServerState::NotSynced => "not_synced",
        ServerState::Ok => "ok",
        ServerState::Expired => "expired",
        ServerState::ClockTampered => "clock_tampered",
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;
    use chrono::{TimeZone, Timelike};
    use leasehold_proto::ManualClock;

    #[tokio::test]
    async fn usage_history_merges_closed_and_open_hours() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 28, 9, 10, 0).unwrap();
        let clock = Arc::new(ManualClock::new(t0));
        let options = ServerOptions {
            data_dir: dir.path().to_path_buf(),
            nodes: vec![],
            trusted_keys: TrustedKeys::new(),
            guid: None,
            node_timeout: Duration::from_secs(1),
        };
        let server = LicenseServer::open(options.clone(), clock.clone())
            .await
            .unwrap();
        let tts = Feature::parse("tts").unwrap();
        let asr = Feature::parse("asr.en-US").unwrap();
        lock(&server.leases).alloc.set_licenses(&[PoolLicense {
            feature: tts.clone(),
            count: 8,
            maintenance_until: t0.date_naive(),
        }]);
        let record = |f: &Feature, in_use: u32, denials: u64| {
            let c = Counts {
                grants: 1,
                denials,
                ..Counts::default()
            };
            lock(&server.leases)
                .ledger
                .record(f, clock.now(), in_use, &c);
        };
        record(&tts, 5, 0);
        record(&asr, 1, 0);
        clock.advance(chrono::Duration::minutes(20));
        record(&tts, 7, 2);
        server.flush().await.unwrap();
        // 10:05: 09:00 closes (licensed 8 recorded), 10:00 is open.
        clock.advance(chrono::Duration::minutes(35));
        record(&tts, 3, 0);
        server.flush().await.unwrap();

        let since = t0 - chrono::Duration::hours(24);
        let h = server.usage_history(Some(&tts), since).await.unwrap();
        let got: Vec<(u32, u32, u64, u32, bool)> = h
            .iter()
            .map(|p| (p.start.hour(), p.peak_in_use, p.denials, p.licensed, p.open))
            .collect();
        assert_eq!(got, vec![(9, 7, 2, 8, false), (10, 3, 0, 8, true)]);
        assert_eq!(server.usage_history(None, since).await.unwrap().len(), 3);
        assert_eq!(
            server.history_features().await.unwrap(),
            vec![asr.clone(), tts.clone()]
        );
        // Five-minute slots where recorded, hourly before.
        let r = server.usage_recent(Some(&tts), since).await.unwrap();
        assert_eq!(r.len(), 3, "{r:#?}");
        assert!(r.iter().all(|p| p.secs == history::RECENT_SLOT_SECS));
        assert_eq!(r[1].denials, 2);
        assert!(r[2].open && !r[0].open);

        // The history survives a restart and outlives acknowledgement (buckets are deleted on
        // ack, the history is not); hourly only after a restart.
        let guid = ServerGuid::from_bytes([1; 16]);
        server
            .store
            .apply_bundle(&[], guid, u64::MAX)
            .await
            .unwrap();
        server.close().await;
        drop(server);
        let server = LicenseServer::open(options.clone(), clock.clone())
            .await
            .unwrap();
        let h = server.usage_history(Some(&tts), since).await.unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].peak_in_use, h[0].licensed), (7, 8));
        assert_eq!(server.usage_recent(Some(&tts), since).await.unwrap(), h);

        // Pruned after 35 days.
        clock.advance(chrono::Duration::days(36));
        let one = Counts {
            grants: 1,
            ..Counts::default()
        };
        lock(&server.leases)
            .ledger
            .record(&tts, clock.now(), 1, &one);
        server.flush().await.unwrap();
        clock.advance(chrono::Duration::hours(1));
        server.flush().await.unwrap();
        let h = server.usage_history(Some(&tts), since).await.unwrap();
        assert_eq!(h.len(), 1, "{h:#?}");
        assert_eq!(
            h[0].start,
            hour_of_test(clock.now() - chrono::Duration::hours(1))
        );
        server.close().await;
    }

    fn hour_of_test(t: DateTime<Utc>) -> DateTime<Utc> {
        leasehold_proto::usage::hour_of(t)
    }
}
