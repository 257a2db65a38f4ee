//! The lease allocator: decides each client's quota so that, on this server, at every instant
//! the sum of quotas of unexpired leases never exceeds the licensed count (DESIGN.md §4.1),
//! while licenses follow the calls (§4.2a).
//!
//! Pure and synchronous: time comes in as monotonic milliseconds, so tests, the property test
//! and the simulation drive it directly.
//!
//! How it stays within the count:
//! - A grant made at `now` stays reserved until `now + LEASE + MARGIN`. The client counts its
//!   lease from its *send* time, which is earlier, so the server always frees later than the
//!   client stops using.
//! - Freeing before that needs the client's word. Every request carries `quota`: the most the
//!   client will hold under this server's earlier answers from now on (it lowers its own
//!   quota to that before sending). A client has at most one request outstanding per server
//!   and installs only the answer to it, so once request `seq` arrives, every earlier answer
//!   is either installed (and bounded by `quota`) or will never be. The server then reserves
//!   `max(min(quota, reserved), new grant)`: a shrunk quota is freed as soon as the client's
//!   next request acknowledges it, and licenses the client gave back are free at once.
//! - It takes that word only from a request that is the client's newest (`seq` above every
//!   one seen) and that carries this allocator's `epoch` (so it was sent after the client
//!   heard from this process: a request delayed across a server restart cannot give back a
//!   grant made by the process before). Any other request only adds a grant.
//! - What a client holds beyond its quota (kept after its lease expired) counts against the
//!   pool first: each client weighs `max(reserved, in_use)`.
//! - With licenses of different maintenance dates, a client may only draw on licenses that
//!   cover its product release; grants respect every such nested limit (Hall's condition).
//! - A restart restores the reservations from disk ([`Allocator::restore`]: every grant that
//!   raised a reservation was persisted before it was answered), each held a full hold from
//!   the restart. Without them (a fresh or lost data directory, or one that was not in use
//!   within a hold) the allocator starts in learning mode for one hold: it only confirms
//!   what each client holds under a lease it reports, so leases it cannot see stay covered.
//!
//! Shares (`policy`): when everything wanted fits, every client gets its want; otherwise the
//! free licenses are shared as headroom in proportion to what each client wants beyond its
//! use, and a client that asks before it denies (deny-wait) gets at most half of its share,
//! so that the pool keeps licenses to answer asks.
//!
//! Usage is counted here too, exactly once: each client reports running totals of the calls
//! it reported *to this server*; the server counts what is new beyond the larger of its own
//! count and the count it last confirmed to the client.

mod policy;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use chrono::NaiveDate;
use leasehold_proto::{ClientId, Feature, FeatureQuota, FeatureRequest, LeaseRequest, QuotaReason};

pub use policy::{decide, Decision, Demand};

/// Lease length the client uses, counted from its send time.
pub const LEASE_MS: u64 = leasehold_proto::LEASE_SECS * 1000;
/// Extra time the server keeps a grant reserved after the client's lease has run out:
/// covers clock-rate differences and request transit.
pub const MARGIN_MS: u64 = 10_000;
/// How long a grant is reserved on the server.
pub const HOLD_MS: u64 = LEASE_MS + MARGIN_MS;
/// Usage totals of a client whose lease lapsed are kept this long, so that a client coming
/// back is not counted twice.
pub const DEPARTED_KEEP_MS: u64 = 24 * 3600 * 1000;

/// One license in force on this server, as the allocator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolLicense {
    pub feature: Feature,
    pub count: u32,
    pub maintenance_until: NaiveDate,
}

/// Whether this server may grant at all, decided by the caller (bundle state, context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serving {
    Yes,
    /// No license is served; the reason goes to every client.
    No(String),
}

/// One refresh from a client.
#[derive(Debug, Clone)]
pub struct ClientRequest<'a> {
    pub client: &'a ClientId,
    pub product_release: NaiveDate,
    pub features: &'a BTreeMap<Feature, FeatureRequest>,
    pub failover: bool,
    /// The client's request sequence number (0: unordered, never frees anything).
    pub seq: u64,
    /// The epoch of this server's last answer the client received.
    pub epoch: u64,
    /// The client asks before it denies (deny-wait).
    pub asks: bool,
    /// The client gives back everything and leaves.
    pub release: bool,
}

impl<'a> From<&'a LeaseRequest> for ClientRequest<'a> {
    /// The refresh a lease request on the wire is (the lease handler, the simulation and
    /// the fuzz targets hand requests over so).
    fn from(r: &'a LeaseRequest) -> Self {
        Self {
            client: &r.client_id,
            product_release: r.product_release,
            features: &r.features,
            failover: r.failover,
            seq: r.seq,
            epoch: r.epoch,
            asks: r.asks,
            release: r.release,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeatureTotals {
    pub count: u32,
    /// Sum of reservations (quotas of unexpired leases, including shrunk ones not yet
    /// acknowledged).
    pub reserved: u32,
    /// Sum of what clients report holding.
    pub in_use: u32,
    pub clients: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientView {
    pub client: ClientId,
    pub failover: bool,
    pub last_seen_ms: u64,
    pub expires_ms: u64,
    pub features: BTreeMap<Feature, ClientFeatureView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFeatureView {
    pub quota: u32,
    pub reserved: u32,
    pub in_use: u32,
    pub want: u32,
}

/// Usage counters the ledger takes from one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageDelta {
    pub acquired: u64,
    pub denied: u64,
    /// Of `denied`: reported while this server had licenses neither in use nor reserved.
    pub denied_while_free: u64,
    /// License-milliseconds used by a client in failover since its previous request.
    pub failover_use_ms: u64,
}

/// How much a raised bound rounds a reservation of `reserved` up: an eighth, at least 2, so
/// that a client growing by a license or two answers without waiting for the disk. Taken
/// only from a quarter of the licenses no bound covers, so that the rounding never makes
/// what a restart would restore exceed the count, and leaves most of the rest free at once.
/// (Bounds themselves are lowered lazily, at the next snapshot, so right after shrinks and
/// new grants they may add up to more than the count until then; a restart in that moment
/// holds the excess until the clients' next refreshes.) A bound only ever over-states what
/// a client may hold, which is safe. Where licenses are plenty (the lease benchmark) the
/// rounding is full; where they are few, there is little or none.
fn padding(reserved: u32) -> u32 {
    (reserved / 8).max(2)
}

/// A reservation bound to persist: after a restart the client's reservation is restored as
/// this, held for a full hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundRow {
    pub client: ClientId,
    pub feature: Feature,
    pub bound: u32,
    pub product_release: NaiveDate,
    pub failover: bool,
}

/// A client's usage counted by this server, to persist together with the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountRow {
    pub client: ClientId,
    pub feature: Feature,
    pub acquired: u64,
    pub denied: u64,
}

/// What changed since the last snapshot: bounds to rewrite (lowered ones included), clients
/// whose bounds are gone (lease lapsed or released), counts to rewrite, and counts to forget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub bounds: Vec<BoundRow>,
    pub bounds_removed: Vec<ClientId>,
    pub counts: Vec<CountRow>,
    pub counts_removed: Vec<ClientId>,
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
            && self.bounds_removed.is_empty()
            && self.counts.is_empty()
            && self.counts_removed.is_empty()
    }
}

/// What a data directory holds of the leases after the raises and snapshots written so far:
/// the in-memory model of the `lease_bounds` and `client_counts` tables, for the simulation's
/// disk and the allocator's property test (the store writes the same rows to SQLite).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersistedLeases {
    pub bounds: BTreeMap<(ClientId, Feature), BoundRow>,
    pub counts: BTreeMap<(ClientId, Feature), CountRow>,
}

impl PersistedLeases {
    /// Raised bounds, written before the grant is answered.
    pub fn raise(&mut self, rows: &[BoundRow]) {
        for r in rows {
            self.bounds
                .insert((r.client.clone(), r.feature.clone()), r.clone());
        }
    }

    /// A snapshot written by a flush.
    pub fn apply(&mut self, s: &Snapshot) {
        for id in &s.bounds_removed {
            self.bounds.retain(|k, _| &k.0 != id);
        }
        for id in &s.counts_removed {
            self.counts.retain(|k, _| &k.0 != id);
        }
        self.raise(&s.bounds);
        for c in &s.counts {
            self.counts
                .insert((c.client.clone(), c.feature.clone()), c.clone());
        }
    }

    /// A start that restores these leases.
    pub fn restored(&self) -> Start {
        Start::Restored {
            bounds: self.bounds.values().cloned().collect(),
            counts: self.count_rows(),
        }
    }

    /// A start that relearns the leases (keeping the clients' counts).
    pub fn learning(&self) -> Start {
        Start::Learning {
            counts: self.count_rows(),
        }
    }

    fn count_rows(&self) -> Vec<CountRow> {
        self.counts.values().cloned().collect()
    }
}

/// The answer to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub features: BTreeMap<Feature, FeatureQuota>,
    pub usage: BTreeMap<Feature, UsageDelta>,
    /// Bounds raised by this answer: persist them before the answer leaves the server.
    pub raised: Vec<BoundRow>,
    /// The request was older than one already seen from the client: nothing changed and the
    /// quotas are 0 (the client does not wait for this answer any more).
    pub stale: bool,
}

/// A deliberately broken allocator, for the planted-bug tests of the property test and the
/// simulation (they must catch it). Never set outside those tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Frees a shrunk grant as soon as it answers with the smaller quota, without waiting
    /// for the client to acknowledge it (the client may never have received that answer).
    FreeOnAnswer,
}

/// How an allocator starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// Nothing was granted before (a fresh data directory, or every earlier grant expired).
    Fresh,
    /// Something may have been granted that this allocator cannot see: learn for one hold.
    /// The counts persisted earlier still hold.
    Learning { counts: Vec<CountRow> },
    /// Reservations and counts persisted by the previous process of this data directory.
    Restored {
        bounds: Vec<BoundRow>,
        counts: Vec<CountRow>,
    },
}

#[derive(Debug, Default)]
struct Pool {
    /// Distinct maintenance dates, ascending; `tier_count[k]` licenses cover releases up to
    /// `tiers[k]`.
    tiers: Vec<NaiveDate>,
    tier_count: Vec<u32>,
    /// Sum of client weights per class; a client of class `c` may use tiers `c..`.
    class_weight: Vec<u64>,
    /// Sum over clients of `max(want, in_use)`.
    total_demand: u64,
    in_use: u64,
    clients: u32,
    /// Sum over clients of their persisted bounds: what a restart would restore. Rounding
    /// up never adds to it beyond the count.
    bound_total: u64,
}

impl Pool {
    fn total(&self) -> u32 {
        self.tier_count.iter().sum()
    }

    fn total_weight(&self) -> u64 {
        self.class_weight.iter().sum()
    }

    /// The class of a product released on `release`: the first tier whose maintenance covers
    /// it, or `None` when no license does.
    fn class_of(&self, release: NaiveDate) -> Option<usize> {
        self.tiers.iter().position(|m| release <= *m)
    }

    /// Most a client of `class` may be granted, with `own_weight` of its own weight set aside.
    fn headroom(&self, class: usize, own_weight: u64) -> u32 {
        let mut best = u64::MAX;
        let mut count_suffix: u64 = 0;
        let mut weight_suffix: u64 = 0;
        // Walk from the top tier down; every j <= class constrains this client.
        for j in (0..self.tiers.len()).rev() {
            count_suffix += u64::from(self.tier_count[j]);
            weight_suffix += self.class_weight[j];
            if j <= class {
                let others = weight_suffix.saturating_sub(own_weight);
                best = best.min(count_suffix.saturating_sub(others));
            }
        }
        u32::try_from(best.min(u64::from(u32::MAX))).unwrap_or(u32::MAX)
    }
}

#[derive(Debug, Default, Clone)]
struct Holding {
    /// Grants still reserved: (quota, reserved until), quotas strictly decreasing, expiry
    /// increasing. The first is the reservation.
    grants: Vec<(u32, u64)>,
    /// The latest quota told to the client.
    quota: u32,
    in_use: u32,
    want: u32,
    class: Option<usize>,
    /// Calls of this client counted here (acquired, denied), and the part of it persisted.
    counted: (u64, u64),
    durable: (u64, u64),
    /// The reservation bound persisted for a restart.
    bound: u32,
}

impl Holding {
    fn reserved(&self) -> u32 {
        self.grants.first().map_or(0, |g| g.0)
    }

    fn weight(&self) -> u64 {
        u64::from(self.reserved().max(self.in_use))
    }

    fn demand(&self) -> u64 {
        u64::from(self.want.max(self.in_use))
    }

    fn prune(&mut self, now: u64) {
        self.grants.retain(|g| g.1 > now);
    }

    fn add_grant(&mut self, quota: u32, until: u64) {
        if quota == 0 {
            return;
        }
        if self.grants.iter().any(|g| g.0 >= quota && g.1 >= until) {
            return;
        }
        self.grants.retain(|g| g.0 > quota);
        self.grants.push((quota, until));
    }

    /// The client's word: from now on it holds at most `promise` under earlier answers.
    fn acknowledge(&mut self, promise: u32) {
        let keep = promise.min(self.reserved());
        let until = self.grants.iter().map(|g| g.1).max().unwrap_or(0);
        self.grants.clear();
        if keep > 0 {
            self.grants.push((keep, until));
        }
    }
}

#[derive(Debug)]
struct ClientLease {
    failover: bool,
    release: NaiveDate,
    last_seen_ms: u64,
    expires_ms: u64,
    /// Time of this client's one entry in the expiry heap.
    heap_at: u64,
    /// Highest request sequence number seen from this client.
    last_seq: u64,
    features: BTreeMap<Feature, Holding>,
}

/// When a client's lease lapsed, and its counted usage per feature: (acquired, denied)
/// counted, and the part of it persisted.
type Departed = (u64, BTreeMap<Feature, DepartedCounts>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DepartedCounts {
    counted: (u64, u64),
    durable: (u64, u64),
}

#[derive(Debug)]
pub struct Allocator {
    pools: BTreeMap<Feature, Pool>,
    clients: HashMap<ClientId, ClientLease>,
    expiries: BinaryHeap<Reverse<(u64, ClientId)>>,
    learning_until_ms: u64,
    /// True on a backup server: only clients in failover are granted.
    backup: bool,
    /// Random per allocator (per server process), never 0.
    epoch: u64,
    departed: HashMap<ClientId, Departed>,
    last_departed_prune_ms: u64,
    /// Clients changed since the last snapshot.
    dirty: HashSet<ClientId>,
    bounds_removed: HashSet<ClientId>,
    counts_removed: HashSet<ClientId>,
    fault: Option<Fault>,
}

impl Allocator {
    /// A fresh allocator at monotonic time `now_ms`. `start` says what an earlier process may
    /// have granted; `epoch` is this process's random epoch (0 is replaced by 1).
    pub fn new(now_ms: u64, start: Start, backup: bool, epoch: u64) -> Self {
        let mut a = Self {
            pools: BTreeMap::new(),
            clients: HashMap::new(),
            expiries: BinaryHeap::new(),
            learning_until_ms: 0,
            backup,
            epoch: epoch.max(1),
            departed: HashMap::new(),
            last_departed_prune_ms: now_ms,
            dirty: HashSet::new(),
            bounds_removed: HashSet::new(),
            counts_removed: HashSet::new(),
            fault: None,
        };
        match start {
            Start::Fresh => {}
            Start::Learning { counts } => {
                a.learning_until_ms = now_ms + HOLD_MS;
                a.restore(now_ms, Vec::new(), counts);
            }
            Start::Restored { bounds, counts } => a.restore(now_ms, bounds, counts),
        }
        a
    }

    /// Breaks the allocator on purpose (planted-bug tests only).
    pub fn set_fault(&mut self, fault: Option<Fault>) {
        self.fault = fault;
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn is_learning(&self, now_ms: u64) -> bool {
        now_ms < self.learning_until_ms
    }

    pub fn learning_until_ms(&self) -> u64 {
        self.learning_until_ms
    }

    pub fn set_backup(&mut self, backup: bool) {
        self.backup = backup;
    }

    /// Puts back what the previous process persisted: every bound as a reservation held a
    /// full hold from now (the previous process may have extended it up to its crash), every
    /// count as counted and durable.
    fn restore(&mut self, now_ms: u64, bounds: Vec<BoundRow>, counts: Vec<CountRow>) {
        let until = now_ms + HOLD_MS;
        for b in bounds {
            let lease = self
                .clients
                .entry(b.client.clone())
                .or_insert_with(|| ClientLease {
                    failover: b.failover,
                    release: b.product_release,
                    last_seen_ms: now_ms,
                    expires_ms: until,
                    heap_at: until,
                    last_seq: 0,
                    features: BTreeMap::new(),
                });
            let h = lease.features.entry(b.feature).or_default();
            h.add_grant(b.bound, until);
            h.bound = b.bound;
        }
        for id in self.clients.keys() {
            self.expiries.push(Reverse((until, id.clone())));
        }
        for c in counts {
            let counted = (c.acquired, c.denied);
            match self.clients.get_mut(&c.client) {
                // A client with a lease: its holding, whether or not it holds this feature.
                Some(lease) => {
                    let h = lease.features.entry(c.feature).or_default();
                    h.counted = counted;
                    h.durable = counted;
                }
                None => {
                    self.departed
                        .entry(c.client)
                        .or_insert_with(|| (now_ms, BTreeMap::new()))
                        .1
                        .insert(
                            c.feature,
                            DepartedCounts {
                                counted,
                                durable: counted,
                            },
                        );
                }
            }
        }
    }

    /// Installs the licenses in force. Existing reservations are kept: a shrinking count
    /// cannot take back quotas already granted, it only stops new grants until they expire.
    pub fn set_licenses(&mut self, licenses: &[PoolLicense]) {
        let mut pools: BTreeMap<Feature, Pool> = BTreeMap::new();
        for l in licenses {
            let pool = pools.entry(l.feature.clone()).or_default();
            // A feature's licenses count up to u32::MAX at most, so that its total and every
            // sum of its reservations fit a u32.
            let count = l.count.min(u32::MAX - pool.total());
            match pool.tiers.binary_search(&l.maintenance_until) {
                Ok(k) => pool.tier_count[k] = pool.tier_count[k].saturating_add(count),
                Err(k) => {
                    pool.tiers.insert(k, l.maintenance_until);
                    pool.tier_count.insert(k, count);
                }
            }
        }
        for pool in pools.values_mut() {
            pool.class_weight = vec![0; pool.tiers.len()];
        }
        // Re-place every holding in the new tiers.
        for lease in self.clients.values_mut() {
            for (feature, h) in lease.features.iter_mut() {
                match pools.get_mut(feature) {
                    Some(pool) => {
                        h.class = pool.class_of(lease.release);
                        // A client no license covers still weighs on the top class.
                        let c = h.class.unwrap_or(pool.tiers.len().saturating_sub(1));
                        if let Some(w) = pool.class_weight.get_mut(c) {
                            *w += h.weight();
                        }
                        pool.total_demand += h.demand();
                        pool.in_use += u64::from(h.in_use);
                        pool.clients += 1;
                        pool.bound_total += u64::from(h.bound);
                    }
                    None => h.class = None,
                }
            }
        }
        self.pools = pools;
    }

    /// Frees every grant whose hold has run out and forgets clients with nothing left.
    pub fn expire(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.last_departed_prune_ms) > 60_000 {
            self.last_departed_prune_ms = now_ms;
            let removed = &mut self.counts_removed;
            self.departed.retain(|id, d| {
                let keep = now_ms.saturating_sub(d.0) < DEPARTED_KEEP_MS;
                if !keep {
                    removed.insert(id.clone());
                }
                keep
            });
        }
        while let Some(Reverse((at, _))) = self.expiries.peek() {
            if *at > now_ms {
                break;
            }
            let Some(Reverse((at, client))) = self.expiries.pop() else {
                break;
            };
            let Some(lease) = self.clients.get_mut(&client) else {
                continue;
            };
            if lease.heap_at != at {
                // Left over from an earlier life of this client id (released, then back).
                continue;
            }
            let mut changed = false;
            for (feature, h) in lease.features.iter_mut() {
                let before = h.weight();
                h.prune(now_ms);
                changed |= h.weight() != before;
                if let Some(pool) = self.pools.get_mut(feature) {
                    adjust_weight(pool, h.class, before, h.weight());
                }
            }
            if changed {
                self.dirty.insert(client.clone());
            }
            if lease.expires_ms > now_ms {
                // One heap entry per client: the next moment something of it runs out.
                let next = lease
                    .features
                    .values()
                    .filter_map(|h| h.grants.first().map(|g| g.1))
                    .fold(lease.expires_ms, u64::min);
                lease.heap_at = next;
                self.expiries.push(Reverse((next, client)));
                continue;
            }
            self.remove_client(&client, now_ms);
        }
    }

    /// Takes a client out (lease lapsed or released), keeping its counted usage for a day.
    fn remove_client(&mut self, client: &ClientId, now_ms: u64) -> bool {
        let Some(lease) = self.clients.remove(client) else {
            return false;
        };
        let totals = lease
            .features
            .iter()
            .map(|(f, h)| {
                (
                    f.clone(),
                    DepartedCounts {
                        counted: h.counted,
                        durable: h.durable,
                    },
                )
            })
            .collect();
        self.departed.insert(client.clone(), (now_ms, totals));
        for (feature, h) in &lease.features {
            if let Some(pool) = self.pools.get_mut(feature) {
                adjust_weight(pool, h.class, h.weight(), 0);
                pool.total_demand = pool.total_demand.saturating_sub(h.demand());
                pool.in_use = pool.in_use.saturating_sub(u64::from(h.in_use));
                pool.clients = pool.clients.saturating_sub(1);
                pool.bound_total = pool.bound_total.saturating_sub(u64::from(h.bound));
            }
        }
        self.bounds_removed.insert(client.clone());
        // Its counts are rewritten from `departed` at the next snapshot.
        self.dirty.insert(client.clone());
        true
    }

    /// A release (`DELETE /v1/lease/{client}?seq=N&epoch=E`): the client has stopped using
    /// every grant of this server up to its request `seq`. Ignored (false) unless `epoch` is
    /// this allocator's and no later request of the client arrived, so a release delayed in
    /// the network, or sent to an earlier process of the server, cannot free a grant the
    /// client is using.
    pub fn release_upto(&mut self, now_ms: u64, client: &ClientId, seq: u64, epoch: u64) -> bool {
        if epoch != self.epoch {
            return false;
        }
        match self.clients.get(client) {
            Some(lease) if lease.last_seq > seq => false,
            Some(_) => self.remove_client(client, now_ms),
            None => false,
        }
    }

    /// Answers one refresh: the quota for each feature asked for, and usage counters.
    pub fn request(&mut self, now_ms: u64, req: &ClientRequest<'_>, serving: &Serving) -> Answer {
        self.expire(now_ms);
        let learning = self.is_learning(now_ms);
        let until = now_ms + HOLD_MS;
        if let Some(lease) = self.clients.get(req.client) {
            if req.seq > 0 && req.seq <= lease.last_seq {
                return self.stale_answer(req);
            }
        }
        // The client's word frees: only from its newest request, sent after it heard from
        // this very process.
        let trusted = req.seq > 0 && req.epoch == self.epoch;
        let is_new_client = !self.clients.contains_key(req.client);
        let departed = if is_new_client {
            self.departed.remove(req.client)
        } else {
            None
        };
        let lease = self
            .clients
            .entry(req.client.clone())
            .or_insert_with(|| ClientLease {
                failover: req.failover,
                release: req.product_release,
                last_seen_ms: now_ms,
                expires_ms: until,
                heap_at: until,
                last_seq: 0,
                features: BTreeMap::new(),
            });
        self.dirty.insert(req.client.clone());
        let elapsed = now_ms.saturating_sub(lease.last_seen_ms).min(LEASE_MS);
        let was_failover = lease.failover;
        lease.failover = req.failover;
        lease.release = req.product_release;
        lease.last_seen_ms = now_ms;
        lease.expires_ms = until;
        lease.last_seq = lease.last_seq.max(req.seq);
        // A client has exactly one entry in the expiry heap, at or before its earliest grant
        // expiry; later grants only expire later, so the entry stays early enough.
        if is_new_client {
            self.expiries.push(Reverse((until, req.client.clone())));
        }

        let mut answer = Answer::default();
        for (feature, fr) in req.features {
            let pool = self.pools.get_mut(feature);
            let is_new_holding = !lease.features.contains_key(feature);
            let h = lease.features.entry(feature.clone()).or_default();
            if is_new_holding {
                if let Some(d) = departed.as_ref().and_then(|d| d.1.get(feature)) {
                    h.counted = d.counted;
                    h.durable = d.durable;
                }
            }
            let old_weight = h.weight();
            let old_demand = h.demand();
            let old_in_use = h.in_use;
            let old_class = h.class;
            let free_before = pool
                .as_ref()
                .map_or(0, |p| u64::from(p.total()).saturating_sub(p.total_weight()));
            h.prune(now_ms);
            if trusted {
                h.acknowledge(if req.release { 0 } else { fr.quota });
            }

            // Usage: running totals of what the client reported to this server; count what
            // is beyond both our own count and what we last confirmed to it.
            let base_acquired = h.counted.0.max(fr.counted_acquired);
            let base_denied = h.counted.1.max(fr.counted_denied);
            let denied = fr.denied.saturating_sub(base_denied);
            let delta = UsageDelta {
                acquired: fr.acquired.saturating_sub(base_acquired),
                denied,
                denied_while_free: if free_before > 0 { denied } else { 0 },
                failover_use_ms: if was_failover && req.failover && !is_new_holding {
                    u64::from(old_in_use) * elapsed
                } else {
                    0
                },
            };
            h.counted = (
                h.counted.0.max(fr.acquired).max(base_acquired),
                h.counted.1.max(fr.denied).max(base_denied),
            );
            answer.usage.insert(feature.clone(), delta);

            h.in_use = if req.release { 0 } else { fr.in_use };
            let (quota, keep, reason) = match pool {
                None => {
                    h.want = 0;
                    h.class = None;
                    (
                        0,
                        0,
                        Some((
                            QuotaReason::NoLicense,
                            format!("this server has no license for feature {feature}"),
                        )),
                    )
                }
                Some(pool) => {
                    if is_new_holding {
                        pool.clients += 1;
                    }
                    pool.in_use = pool.in_use + u64::from(h.in_use) - u64::from(old_in_use);
                    // Take this holding's old weight out; it is put back below.
                    remove_weight(pool, old_class, old_weight);
                    h.class = pool.class_of(req.product_release);
                    let refusal = match (serving, h.class) {
                        _ if req.release => None,
                        (Serving::No(why), _) => Some((QuotaReason::Suspended, why.clone())),
                        _ if self.backup && !req.failover => Some((
                            QuotaReason::BackupOnly,
                            "this is a backup server: it grants licenses only to clients in failover from their primary".to_string(),
                        )),
                        (_, None) => Some((
                            QuotaReason::Maintenance,
                            format!(
                                "maintenance of every {feature} license on this server ends before this product's release date {}",
                                req.product_release
                            ),
                        )),
                        _ => None,
                    };
                    // A refused client's wish does not dilute the others' shares.
                    h.want = if refusal.is_some() || req.release {
                        0
                    } else {
                        fr.want.max(fr.in_use.saturating_add(fr.waiting))
                    };
                    pool.total_demand = pool.total_demand + h.demand() - old_demand;
                    let (quota, keep) = match (refusal.is_some() || req.release, h.class) {
                        (false, Some(class)) => {
                            let available = pool.headroom(class, 0);
                            if learning {
                                (fr.in_use.min(fr.quota).min(available), 0)
                            } else {
                                let d = decide(&Demand {
                                    count: pool.total(),
                                    available,
                                    in_use: fr.in_use,
                                    waiting: fr.waiting,
                                    want: h.want,
                                    asks: req.asks,
                                    pool_in_use: pool.in_use,
                                    pool_demand: pool.total_demand,
                                });
                                (d.quota, d.keep)
                            }
                        }
                        _ => (0, 0),
                    };
                    if self.fault == Some(Fault::FreeOnAnswer) {
                        h.grants.clear();
                    }
                    h.add_grant(quota, until);
                    h.quota = quota;
                    let c = h.class.unwrap_or(pool.tiers.len().saturating_sub(1));
                    if let Some(w) = pool.class_weight.get_mut(c) {
                        *w += h.weight();
                    }
                    if h.reserved() > h.bound {
                        // A grant the next process must know of, should this one crash:
                        // persisted before the client can use it, rounded up (`padding`)
                        // within what no other bound covers.
                        let others = pool.bound_total.saturating_sub(u64::from(h.bound));
                        let room = u64::from(pool.total())
                            .saturating_sub(others + u64::from(h.reserved()));
                        let pad = u32::try_from(room / 4)
                            .unwrap_or(u32::MAX)
                            .min(padding(h.reserved()));
                        h.bound = h.reserved().saturating_add(pad);
                        pool.bound_total = others + u64::from(h.bound);
                        answer.raised.push(BoundRow {
                            client: req.client.clone(),
                            feature: feature.clone(),
                            bound: h.bound,
                            product_release: req.product_release,
                            failover: req.failover,
                        });
                    }
                    let reason = refusal.or_else(|| {
                        (quota < fr.want && !req.release).then(|| {
                            if learning {
                                (QuotaReason::Relearning, "server restarted recently: it confirms what clients hold until it has relearned every lease".to_string())
                            } else {
                                (QuotaReason::Exhausted, format!("all {feature} licenses are in use or promised to other clients"))
                            }
                        })
                    });
                    (quota, keep, reason)
                }
            };
            let (code, reason) = reason.map_or((None, None), |(c, r)| (Some(c), Some(r)));
            answer.features.insert(
                feature.clone(),
                FeatureQuota {
                    quota,
                    code,
                    reason,
                    keep,
                    counted_acquired: h.durable.0,
                    counted_denied: h.durable.1,
                },
            );
        }
        if req.release && trusted {
            self.remove_client(req.client, now_ms);
        }
        answer
    }

    /// The answer to a request older than one already seen: quotas 0, nothing changed.
    fn stale_answer(&self, req: &ClientRequest<'_>) -> Answer {
        let features = req
            .features
            .keys()
            .map(|f| {
                (
                    f.clone(),
                    FeatureQuota {
                        quota: 0,
                        code: None,
                        reason: Some("an older request than one already answered".into()),
                        keep: 0,
                        counted_acquired: 0,
                        counted_denied: 0,
                    },
                )
            })
            .collect();
        Answer {
            features,
            stale: true,
            ..Answer::default()
        }
    }

    /// What changed since the last snapshot, for the disk: every changed client's bounds
    /// (lowered ones too: a smaller bound after a restart frees sooner) and counts. Write it
    /// in one transaction with the ledger taken at the same moment, then call
    /// [`Allocator::mark_durable`].
    pub fn snapshot(&mut self) -> Snapshot {
        let mut s = Snapshot::default();
        let pools = &mut self.pools;
        for id in std::mem::take(&mut self.dirty) {
            match self.clients.get_mut(&id) {
                Some(lease) => {
                    for (feature, h) in lease.features.iter_mut() {
                        // Only ever lowered here: a snapshot is not durable before it
                        // is written, so it must not let a later grant skip the disk.
                        let lowered = h
                            .bound
                            .min(h.reserved().saturating_add(padding(h.reserved())));
                        if let Some(pool) = pools.get_mut(feature) {
                            pool.bound_total = pool
                                .bound_total
                                .saturating_sub(u64::from(h.bound - lowered));
                        }
                        h.bound = lowered;
                        s.bounds.push(BoundRow {
                            client: id.clone(),
                            feature: feature.clone(),
                            bound: h.bound,
                            product_release: lease.release,
                            failover: lease.failover,
                        });
                        s.counts.push(CountRow {
                            client: id.clone(),
                            feature: feature.clone(),
                            acquired: h.counted.0,
                            denied: h.counted.1,
                        });
                    }
                }
                None => {
                    if let Some(d) = self.departed.get(&id) {
                        for (feature, c) in &d.1 {
                            s.counts.push(CountRow {
                                client: id.clone(),
                                feature: feature.clone(),
                                acquired: c.counted.0,
                                denied: c.counted.1,
                            });
                        }
                    }
                }
            }
        }
        s.bounds_removed = self
            .bounds_removed
            .drain()
            .filter(|id| !self.clients.contains_key(id))
            .collect();
        s.counts_removed = self
            .counts_removed
            .drain()
            .filter(|id| !self.clients.contains_key(id) && !self.departed.contains_key(id))
            .collect();
        s.bounds
            .sort_by(|a, b| (&a.client, &a.feature).cmp(&(&b.client, &b.feature)));
        s.counts
            .sort_by(|a, b| (&a.client, &a.feature).cmp(&(&b.client, &b.feature)));
        s
    }

    /// The counts of `snapshot` are on disk: confirm them to the clients from now on.
    pub fn mark_durable(&mut self, snapshot: &Snapshot) {
        let raise = |durable: &mut (u64, u64), counted: (u64, u64), c: &CountRow| {
            *durable = (
                durable.0.max(c.acquired.min(counted.0)),
                durable.1.max(c.denied.min(counted.1)),
            );
        };
        for c in &snapshot.counts {
            if let Some(h) = self
                .clients
                .get_mut(&c.client)
                .and_then(|l| l.features.get_mut(&c.feature))
            {
                raise(&mut h.durable, h.counted, c);
            } else if let Some(d) = self
                .departed
                .get_mut(&c.client)
                .and_then(|d| d.1.get_mut(&c.feature))
            {
                raise(&mut d.durable, d.counted, c);
            }
        }
    }

    /// A snapshot could not be written: take its clients as changed again.
    pub fn snapshot_failed(&mut self, snapshot: &Snapshot) {
        for c in snapshot
            .bounds
            .iter()
            .map(|b| &b.client)
            .chain(snapshot.counts.iter().map(|c| &c.client))
        {
            self.dirty.insert(c.clone());
        }
        self.bounds_removed
            .extend(snapshot.bounds_removed.iter().cloned());
        self.counts_removed
            .extend(snapshot.counts_removed.iter().cloned());
    }

    pub fn totals(&self) -> BTreeMap<Feature, FeatureTotals> {
        let mut out: BTreeMap<Feature, FeatureTotals> = self
            .pools
            .iter()
            .map(|(f, p)| {
                (
                    f.clone(),
                    FeatureTotals {
                        count: p.total(),
                        in_use: u32::try_from(p.in_use).unwrap_or(u32::MAX),
                        clients: p.clients,
                        reserved: 0,
                    },
                )
            })
            .collect();
        for lease in self.clients.values() {
            for (f, h) in &lease.features {
                if let Some(t) = out.get_mut(f) {
                    t.reserved += h.reserved();
                }
            }
        }
        out
    }

    /// Sum of what clients report holding of one feature (O(1), for the ledger).
    pub fn in_use(&self, feature: &Feature) -> u32 {
        self.pools
            .get(feature)
            .map_or(0, |p| u32::try_from(p.in_use).unwrap_or(u32::MAX))
    }

    /// Sum of reservations for one feature, as the invariant checks it.
    pub fn reserved(&self, feature: &Feature) -> u64 {
        self.clients
            .values()
            .filter_map(|l| l.features.get(feature))
            .map(|h| u64::from(h.reserved()))
            .sum()
    }

    pub fn count(&self, feature: &Feature) -> u32 {
        self.pools.get(feature).map_or(0, Pool::total)
    }

    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Whether `client` holds a lease here now.
    pub fn knows(&self, client: &ClientId) -> bool {
        self.clients.contains_key(client)
    }

    /// Every client's view, in id order.
    pub fn clients(&self) -> Vec<ClientView> {
        let mut ids: Vec<(&ClientId, &ClientLease)> = self.clients.iter().collect();
        ids.sort_unstable_by(|a, b| a.0.cmp(b.0));
        ids.into_iter()
            .map(|(id, l)| ClientView {
                client: id.clone(),
                failover: l.failover,
                last_seen_ms: l.last_seen_ms,
                expires_ms: l.expires_ms,
                features: l
                    .features
                    .iter()
                    .map(|(f, h)| {
                        (
                            f.clone(),
                            ClientFeatureView {
                                quota: h.quota,
                                reserved: h.reserved(),
                                in_use: h.in_use,
                                want: h.want,
                            },
                        )
                    })
                    .collect(),
            })
            .collect()
    }

    /// Checks the bookkeeping against a recount (tests and debug builds).
    pub fn check_consistency(&self) -> Result<(), String> {
        for (feature, pool) in &self.pools {
            let mut weights = vec![0u64; pool.tiers.len()];
            let mut demand = 0u64;
            let mut in_use = 0u64;
            for lease in self.clients.values() {
                if let Some(h) = lease.features.get(feature) {
                    let c = h.class.unwrap_or(pool.tiers.len().saturating_sub(1));
                    if let Some(w) = weights.get_mut(c) {
                        *w += h.weight();
                    }
                    demand += h.demand();
                    in_use += u64::from(h.in_use);
                }
            }
            if weights != pool.class_weight {
                return Err(format!(
                    "{feature}: class weights {:?} but recount {:?}",
                    pool.class_weight, weights
                ));
            }
            if (demand, in_use) != (pool.total_demand, pool.in_use) {
                return Err(format!(
                    "{feature}: demand {} and in use {} but recount {demand} and {in_use}",
                    pool.total_demand, pool.in_use
                ));
            }
        }
        Ok(())
    }
}

fn remove_weight(pool: &mut Pool, class: Option<usize>, weight: u64) {
    let c = class.unwrap_or(pool.tiers.len().saturating_sub(1));
    if let Some(w) = pool.class_weight.get_mut(c) {
        *w = w.saturating_sub(weight);
    }
}

fn adjust_weight(pool: &mut Pool, class: Option<usize>, before: u64, after: u64) {
    let c = class.unwrap_or(pool.tiers.len().saturating_sub(1));
    if let Some(w) = pool.class_weight.get_mut(c) {
        *w = w.saturating_sub(before) + after;
    }
}

#[cfg(test)]
mod tests;
