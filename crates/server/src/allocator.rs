//! The lease allocator: decides each client's quota so that, on this server, at every instant
//! the sum of quotas of unexpired leases never exceeds the licensed count (DESIGN.md §4.1).
//!
//! Pure and synchronous: time comes in as monotonic milliseconds, so tests and the property
//! test drive it directly.
//!
//! How it stays within the count:
//! - A grant made at `now` stays reserved until `now + LEASE + MARGIN`. The client counts its
//!   lease from its *send* time, which is earlier, so the server always frees later than the
//!   client stops using.
//! - When a quota shrinks, the larger old grant stays reserved until it expires: the client
//!   may never have seen the smaller answer.
//! - What a client holds beyond its quota (kept after its lease expired) counts against the
//!   pool first: each client weighs `max(reserved, in_use)`.
//! - With licenses of different maintenance dates, a client may only draw on licenses that
//!   cover its product release; grants respect every such nested limit (Hall's condition).
//! - A new allocator (after a restart) starts in learning mode for one lease length plus the
//!   margin: it only confirms what each client holds under a lease it still believes valid,
//!   so leases granted before the restart, which it cannot see, stay covered.
//!
//! Fair share (Doorman's proportional share): when total demand fits, everyone gets what it
//! wants; otherwise each client gets at least what it uses and up to its share of the count
//! in proportion to its demand.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use chrono::NaiveDate;
use leasehold_proto::{ClientId, Feature, FeatureQuota, FeatureRequest, QuotaReason};

/// Lease length the client uses, counted from its send time.
pub const LEASE_MS: u64 = leasehold_proto::LEASE_SECS * 1000;
/// Extra time the server keeps a grant reserved after the client's lease has run out:
/// covers clock-rate differences and request transit.
pub const MARGIN_MS: u64 = 10_000;
/// How long a grant is reserved on the server.
pub const HOLD_MS: u64 = LEASE_MS + MARGIN_MS;

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeatureTotals {
    pub count: u32,
    /// Sum of reservations (quotas of unexpired leases, including shrunk ones not yet expired).
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

#[derive(Debug, Default)]
struct Pool {
    /// Distinct maintenance dates, ascending; `tier_count[k]` licenses cover releases up to
    /// `tiers[k]`.
    tiers: Vec<NaiveDate>,
    tier_count: Vec<u32>,
    /// Sum of client weights per class; a client of class `c` may use tiers `c..`.
    class_weight: Vec<u64>,
    total_demand: u64,
    in_use: u64,
    clients: u32,
}

impl Pool {
    fn total(&self) -> u32 {
        self.tier_count.iter().sum()
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
    acquired: u64,
    denied: u64,
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
        self.grants.retain(|g| g.0 > quota);
        self.grants.push((quota, until));
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

/// Usage counters the ledger takes from one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageDelta {
    pub acquired: u64,
    pub denied: u64,
    /// License-milliseconds used by a client in failover since its previous request.
    pub failover_use_ms: u64,
}

#[derive(Debug)]
pub struct Allocator {
    pools: BTreeMap<Feature, Pool>,
    clients: HashMap<ClientId, ClientLease>,
    expiries: BinaryHeap<Reverse<(u64, ClientId)>>,
    learning_until_ms: u64,
    /// True on a backup server: only clients in failover are granted.
    backup: bool,
    /// Usage totals of clients whose lease lapsed, kept for a day so a returning client's
    /// running totals are not counted twice.
    departed: HashMap<ClientId, Departed>,
    last_departed_prune_ms: u64,
}

const DEPARTED_KEEP_MS: u64 = 24 * 3600 * 1000;

/// When a client's lease lapsed, and its running usage totals (acquired, denied) per feature.
type Departed = (u64, BTreeMap<Feature, (u64, u64)>);

impl Allocator {
    /// A fresh allocator at monotonic time `now_ms`. `restarted` puts it in learning mode for
    /// one lease length plus the margin (always true for a server process that starts: it
    /// cannot know what an earlier process granted).
    pub fn new(now_ms: u64, restarted: bool, backup: bool) -> Self {
        Self {
            pools: BTreeMap::new(),
            clients: HashMap::new(),
            expiries: BinaryHeap::new(),
            learning_until_ms: if restarted { now_ms + HOLD_MS } else { 0 },
            backup,
            departed: HashMap::new(),
            last_departed_prune_ms: now_ms,
        }
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

    /// Installs the licenses in force. Existing reservations are kept: a shrinking count
    /// cannot take back quotas already granted, it only stops new grants until they expire.
    pub fn set_licenses(&mut self, licenses: &[PoolLicense]) {
        let mut pools: BTreeMap<Feature, Pool> = BTreeMap::new();
        for l in licenses {
            let pool = pools.entry(l.feature.clone()).or_default();
            match pool.tiers.binary_search(&l.maintenance_until) {
                Ok(k) => pool.tier_count[k] = pool.tier_count[k].saturating_add(l.count),
                Err(k) => {
                    pool.tiers.insert(k, l.maintenance_until);
                    pool.tier_count.insert(k, l.count);
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
            self.departed
                .retain(|_, d| now_ms.saturating_sub(d.0) < DEPARTED_KEEP_MS);
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
            for (feature, h) in lease.features.iter_mut() {
                let before = h.weight();
                h.prune(now_ms);
                if let Some(pool) = self.pools.get_mut(feature) {
                    adjust_weight(pool, h.class, before, h.weight());
                }
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
            {
                if let Some(lease) = self.clients.remove(&client) {
                    let totals = lease
                        .features
                        .iter()
                        .map(|(f, h)| (f.clone(), (h.acquired, h.denied)))
                        .collect();
                    self.departed.insert(client.clone(), (now_ms, totals));
                    for (feature, h) in &lease.features {
                        if let Some(pool) = self.pools.get_mut(feature) {
                            adjust_weight(pool, h.class, h.weight(), 0);
                            pool.total_demand = pool.total_demand.saturating_sub(h.demand());
                            pool.in_use = pool.in_use.saturating_sub(u64::from(h.in_use));
                            pool.clients = pool.clients.saturating_sub(1);
                        }
                    }
                }
            }
        }
    }

    /// [`Allocator::request`] for a request carrying the client's sequence number.
    pub fn request_with_seq(
        &mut self,
        now_ms: u64,
        req: &ClientRequest<'_>,
        serving: &Serving,
        seq: u64,
    ) -> (
        BTreeMap<Feature, FeatureQuota>,
        BTreeMap<Feature, UsageDelta>,
    ) {
        let answer = self.request(now_ms, req, serving);
        if let Some(lease) = self.clients.get_mut(req.client) {
            lease.last_seq = lease.last_seq.max(seq);
        }
        answer
    }

    /// A release that covers the client's requests up to `seq`: ignored (false) when a later
    /// request already arrived, so a release delayed in the network cannot free a grant the
    /// client is using.
    pub fn release_upto(&mut self, client: &ClientId, seq: u64) -> bool {
        match self.clients.get(client) {
            Some(lease) if lease.last_seq > seq => false,
            Some(_) => self.release(client),
            None => false,
        }
    }

    /// A clean shutdown: the client has stopped using its quota and gives it back.
    pub fn release(&mut self, client: &ClientId) -> bool {
        let Some(lease) = self.clients.remove(client) else {
            return false;
        };
        for (feature, h) in &lease.features {
            if let Some(pool) = self.pools.get_mut(feature) {
                adjust_weight(pool, h.class, h.weight(), 0);
                pool.total_demand = pool.total_demand.saturating_sub(h.demand());
                pool.in_use = pool.in_use.saturating_sub(u64::from(h.in_use));
                pool.clients = pool.clients.saturating_sub(1);
            }
        }
        true
    }

    /// Answers one refresh: the quota for each feature asked for, and usage counters.
    pub fn request(
        &mut self,
        now_ms: u64,
        req: &ClientRequest<'_>,
        serving: &Serving,
    ) -> (
        BTreeMap<Feature, FeatureQuota>,
        BTreeMap<Feature, UsageDelta>,
    ) {
        self.expire(now_ms);
        let learning = self.is_learning(now_ms);
        let until = now_ms + HOLD_MS;
        let is_new_client = !self.clients.contains_key(req.client);
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
        let elapsed = now_ms.saturating_sub(lease.last_seen_ms).min(LEASE_MS);
        let was_failover = lease.failover;
        lease.failover = req.failover;
        lease.release = req.product_release;
        lease.last_seen_ms = now_ms;
        lease.expires_ms = until;
        // A client has exactly one entry in the expiry heap, at or before its earliest grant
        // expiry; later grants only expire later, so the entry stays early enough.
        if is_new_client {
            self.expiries.push(Reverse((until, req.client.clone())));
        }

        let mut answers = BTreeMap::new();
        let mut usage = BTreeMap::new();
        for (feature, fr) in req.features {
            let pool = self.pools.get_mut(feature);
            let is_new_holding = !lease.features.contains_key(feature);
            let h = lease.features.entry(feature.clone()).or_default();
            let old_weight = h.weight();
            let old_demand = h.demand();
            let old_in_use = h.in_use;
            let old_class = h.class;
            h.prune(now_ms);

            // Usage: running totals from the client. A first report after a restart only sets
            // the baseline, since the previous process may already have counted it; a client
            // that comes back after its lease lapsed continues from the totals it had.
            if is_new_holding {
                if let Some((acquired, denied)) =
                    self.departed.get(req.client).and_then(|d| d.1.get(feature))
                {
                    h.acquired = *acquired;
                    h.denied = *denied;
                }
            }
            let baseline_only = is_new_holding && learning;
            let delta = UsageDelta {
                acquired: if baseline_only {
                    0
                } else {
                    fr.acquired.saturating_sub(h.acquired)
                },
                denied: if baseline_only {
                    0
                } else {
                    fr.denied.saturating_sub(h.denied)
                },
                failover_use_ms: if was_failover && req.failover && !is_new_holding {
                    u64::from(h.in_use) * elapsed
                } else {
                    0
                },
            };
            h.acquired = h.acquired.max(fr.acquired);
            h.denied = h.denied.max(fr.denied);
            usage.insert(feature.clone(), delta);

            h.in_use = fr.in_use;
            let (quota, reason) = match pool {
                None => {
                    h.want = 0;
                    h.class = None;
                    (
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
                    pool.in_use = pool.in_use + u64::from(fr.in_use) - u64::from(old_in_use);
                    // Take this holding's old weight out; it is put back below.
                    remove_weight(pool, old_class, old_weight);
                    h.class = pool.class_of(req.product_release);
                    let refusal = match (serving, h.class) {
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
                    // A refused client's wish does not dilute the others' fair shares.
                    h.want = if refusal.is_some() { 0 } else { fr.want };
                    pool.total_demand = pool.total_demand + h.demand() - old_demand;
                    let quota = match (refusal.is_some(), h.class) {
                        (false, Some(class)) => {
                            let headroom = pool.headroom(class, 0);
                            let demand = h.demand();
                            let wanted = if learning {
                                u64::from(fr.in_use.min(fr.quota))
                            } else if pool.total_demand <= u64::from(pool.total()) {
                                demand
                            } else {
                                let share = (u64::from(pool.total()) * demand)
                                    .div_ceil(pool.total_demand.max(1));
                                demand.min(share.max(u64::from(fr.in_use)))
                            };
                            u32::try_from(wanted.min(u64::from(headroom))).unwrap_or(0)
                        }
                        _ => 0,
                    };
                    if quota > 0 {
                        h.add_grant(quota, until);
                    }
                    h.quota = quota;
                    let c = h.class.unwrap_or(pool.tiers.len().saturating_sub(1));
                    if let Some(w) = pool.class_weight.get_mut(c) {
                        *w += h.weight();
                    }
                    let reason = refusal.or_else(|| {
                        (quota < fr.want).then(|| {
                            if learning {
                                (QuotaReason::Relearning, "server restarted recently: it confirms what clients hold until it has relearned every lease".to_string())
                            } else {
                                (QuotaReason::Exhausted, format!("all {feature} licenses are in use or promised to other clients"))
                            }
                        })
                    });
                    (quota, reason)
                }
            };
            let (code, reason) = reason.map_or((None, None), |(c, r)| (Some(c), Some(r)));
            answers.insert(
                feature.clone(),
                FeatureQuota {
                    quota,
                    code,
                    reason,
                },
            );
        }
        (answers, usage)
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

    pub fn clients(&self) -> Vec<ClientView> {
        let mut v: Vec<ClientView> = self
            .clients
            .iter()
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
            .collect();
        v.sort_by(|a, b| a.client.cmp(&b.client));
        v
    }

    /// Checks the bookkeeping against a recount (tests and debug builds).
    pub fn check_consistency(&self) -> Result<(), String> {
        for (feature, pool) in &self.pools {
            let mut weights = vec![0u64; pool.tiers.len()];
            for lease in self.clients.values() {
                if let Some(h) = lease.features.get(feature) {
                    let c = h.class.unwrap_or(pool.tiers.len().saturating_sub(1));
                    if let Some(w) = weights.get_mut(c) {
                        *w += h.weight();
                    }
                }
            }
            if weights != pool.class_weight {
                return Err(format!(
                    "{feature}: class weights {:?} but recount {:?}",
                    pool.class_weight, weights
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
