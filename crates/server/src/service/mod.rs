//! The license server's behaviour, independent of HTTP, in parts:
//!
//! - [`serving`]: the bundle in force and the view of it the lease path reads, the clock
//!   check, whether licenses are served now and why not, the server's GUID;
//! - [`lease`]: the lease path (allocator and usage ledger under one lock);
//! - [`sync`]: the upload, one sync through the nodes, the schedule and backoff the
//!   [`agent`] follows, taking a bundle;
//! - [`usage`]: the periodic flush and the usage history;
//! - [`status`]: the views of the admin API, the dashboard and `/metrics`.
//!
//! This file holds the state they share and the start (restoring a data directory).
//!
//! Locks: `bundle` (RwLock), `leases`, `sync` (Mutexes) are each held only for a short
//! copy or update and never two at once, so there is no lock order to keep; `sync_lock`
//! (async) makes syncs run one at a time. The time high-water mark is an atomic.

mod access;
pub mod agent;
mod lease;
mod serving;
mod status;
mod sync;
mod usage;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use leasehold_proto::{Clock, InstanceId, ServerGuid, SignedEnvelope, TrustedKeys};
use leasehold_web::ApiError;
use rand::RngCore;

use crate::allocator::{Allocator, Start, HOLD_MS};
use crate::client_key::ClientKeys;
use crate::ledger::Ledger;
use crate::store::{PersistedState, ServerStore, StoreError};
use crate::writer::Writer;
pub use lease::Caller;
use lease::{LeaseState, RequestCounters};
pub use serving::CLOCK_STEP_BACK_TOLERANCE;
use serving::{BundleState, HighWater};
pub use status::ClientQuery;
use sync::SyncState;
pub use sync::{backoff, MAX_RETRY};

#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub data_dir: PathBuf,
    pub nodes: Vec<String>,
    pub trusted_keys: TrustedKeys,
    pub guid: Option<ServerGuid>,
    /// Timeout of one sync request to one node.
    pub node_timeout: Duration,
    /// How long a replaced client key stays valid.
    pub client_key_overlap: chrono::Duration,
    /// How many clients the server takes, and how fast new ones may come from one address.
    pub client_limits: ClientLimits,
    /// How the nodes are reached: trusted authorities, proxy.
    pub node_connection: crate::outbound::NodeConnection,
}

/// Bounds on clients, so a flood of fresh client ids cannot grow the server without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Clients holding a lease at once; a new one beyond is refused (`too_many_clients`),
    /// clients already known are served.
    pub max_clients: usize,
    /// New client ids per source address per minute (a burst of as many is allowed); more
    /// are refused (`rate_limited`) until the minute has passed.
    pub new_clients_per_minute: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            max_clients: 50_000,
            new_clients_per_minute: 600,
        }
    }
}

#[derive(Debug)]
pub struct LicenseServer {
    store: Arc<ServerStore>,
    writer: Writer,
    clock: Arc<dyn Clock>,
    keys: TrustedKeys,
    instance_id: InstanceId,
    bundle: RwLock<BundleState>,
    leases: Mutex<LeaseState>,
    sync: Mutex<SyncState>,
    high_water: HighWater,
    /// One sync at a time.
    sync_lock: tokio::sync::Mutex<()>,
    http: reqwest::Client,
    node_connection: crate::outbound::NodeConnection,
    requests: RequestCounters,
    client_keys: RwLock<ClientKeys>,
    client_key_overlap: chrono::Duration,
    client_limits: ClientLimits,
    new_clients: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
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

fn hold() -> chrono::Duration {
    chrono::Duration::milliseconds(i64::try_from(HOLD_MS).unwrap_or(0))
}

/// How a process starts on what an earlier one left: leases granted by an earlier process
/// may still be live on clients for one hold, so they are restored or relearned before
/// anything new is granted.
///
/// Restored from disk when this directory was in use within a hold (every grant that raised
/// a reservation was written before it was answered). Otherwise something may have been
/// granted that this directory does not show (a restored backup of it, the clock jumped), so
/// a directory that had a bundle or leases relearns for one hold. A process that was still
/// learning could not see everything granted before it, so neither can what it persisted:
/// learn again.
fn start_mode(p: &mut PersistedState, now: DateTime<Utc>) -> Start {
    // A heartbeat within one hold of now catches a process that synced and crashed before
    // its bundle reached this check.
    let recently_alive = p
        .alive_at
        .is_some_and(|a| a > now || now - a < hold() + chrono::Duration::seconds(10));
    let had_grants = p.bundle.is_some() || !p.bounds.is_empty();
    let was_learning = p.learning_until.is_some_and(|until| until > now);
    let bounds = std::mem::take(&mut p.bounds);
    let counts = std::mem::take(&mut p.counts);
    if recently_alive && !was_learning {
        Start::Restored { bounds, counts }
    } else if had_grants {
        Start::Learning { counts }
    } else {
        Start::Fresh
    }
}

impl LicenseServer {
    /// Opens the data directory (refusing one in use by another process), restores state
    /// and verifies the stored bundle.
    pub async fn open(
        options: ServerOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StoreError> {
        // Metric handles are taken below: the recorder must be in place first.
        leasehold_web::metrics::register(crate::metrics::METRICS);
        let store = ServerStore::open(&options.data_dir).await?;
        let (client_keys, made) =
            ClientKeys::load_or_create(&options.data_dir).map_err(StoreError::Db)?;
        if made {
            tracing::info!(file = %options.data_dir.join(crate::client_key::CLIENT_KEY_FILE).display(), "made this installation's client key (`leasehold server client-key` prints it)");
        }
        let mut persisted = store.load().await?;
        let now = clock.now();
        let instance_id = match persisted.instance_id.clone() {
            Some(id) => id,
            None => {
                let mut b = [0u8; 16];
                rand::rngs::OsRng.fill_bytes(&mut b);
                let id = InstanceId::from_random(b);
                store.save_instance_id(&id).await?;
                id
            }
        };
        let start = start_mode(&mut persisted, now);
        let learning_until = matches!(start, Start::Learning { .. }).then(|| now + hold());
        // From here on this process may grant.
        store.save_start(now, learning_until).await?;
        let mut bundle = BundleState::new(persisted.guid);
        if let (Some(guid), Some(stored)) = (persisted.guid, &persisted.bundle) {
            match SignedEnvelope::from_json(stored.envelope.as_bytes()).and_then(|e| {
                e.open_bundle(&options.trusted_keys, guid, None)
                    .map(|p| (e, p))
            }) {
                Ok((envelope, payload)) => bundle.take(envelope, payload, stored.received_at),
                Err(e) => {
                    tracing::warn!(error = %e, "stored bundle does not verify; serving no licenses until the next sync")
                }
            }
        }
        let backup = bundle.view.context == Some(leasehold_proto::Context::Backup);
        let ledger = Ledger::restore(std::mem::take(&mut persisted.open_usage));
        let epoch = rand::rngs::OsRng.next_u64();
        let alloc = Allocator::new(clock.monotonic_ms(), start, backup, epoch);
        let store = Arc::new(store);
        let writer = Writer::spawn(store.clone(), clock.clone());
        // A process that synced before may have left an upload in flight when it stopped.
        // Syncing again before that one can have reached the node would present the same
        // token twice, and the node would take the late one for a copy of this server
        // (found by the simulation, seed 633). So the first sync after a restart waits out
        // one node timeout.
        let mut sync = SyncState::new(options.nodes.clone(), persisted.last_sync);
        sync.next_due = bundle.payload.as_ref().map(|p| {
            let interval =
                chrono::Duration::seconds(i64::try_from(p.sync_interval_secs).unwrap_or(86_400));
            let scheduled = persisted.last_sync.map_or(now, |l| l + interval);
            let settled = now
                + chrono::Duration::from_std(options.node_timeout)
                    .unwrap_or(chrono::Duration::seconds(30));
            scheduled.max(settled)
        });
        let server = Arc::new(Self {
            store,
            writer,
            leases: Mutex::new(LeaseState::new(alloc, ledger)),
            requests: RequestCounters::new(),
            clock,
            keys: options.trusted_keys,
            instance_id,
            bundle: RwLock::new(bundle),
            high_water: HighWater::new(persisted.high_water.unwrap_or(now).max(now)),
            sync: Mutex::new(sync),
            sync_lock: tokio::sync::Mutex::new(()),
            client_keys: RwLock::new(client_keys),
            client_key_overlap: options.client_key_overlap,
            client_limits: options.client_limits,
            new_clients: governor::RateLimiter::keyed(governor::Quota::per_minute(
                std::num::NonZeroU32::new(options.client_limits.new_clients_per_minute)
                    .unwrap_or(std::num::NonZeroU32::MIN),
            )),
            http: options
                .node_connection
                .http_client(options.node_timeout)
                .map_err(StoreError::Db)?,
            node_connection: options.node_connection,
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

    /// How the nodes are reached (the dashboard's connection test takes the same path).
    pub fn node_connection(&self) -> &crate::outbound::NodeConnection {
        &self.node_connection
    }

    pub fn instance_id(&self) -> &InstanceId {
        &self.instance_id
    }

    /// Sets the server GUID. A different GUID drops the bundle of the old one.
    pub async fn set_guid(&self, guid: ServerGuid) -> Result<(), ApiError> {
        let old = read(&self.bundle).guid;
        if old == Some(guid) {
            return Ok(());
        }
        if let Some(old) = old {
            // Hours recorded under the old GUID are closed under it: they are never uploaded
            // under the new one (they stay in the history, and upload if the old GUID comes
            // back).
            if self.close_hours(old).await? {
                tracing::info!(guid = %old, "usage hours of the previous GUID closed under it");
            }
        }
        self.store.save_guid(guid).await?;
        *write(&self.bundle) = BundleState::new(Some(guid));
        lock(&self.sync).restart();
        self.refresh_licenses(self.clock.now());
        tracing::info!(%guid, "server GUID set");
        Ok(())
    }

    pub async fn close(&self) {
        let _ = self.flush().await;
        self.writer.stop().await;
        self.store.close().await;
    }
}
