//! The simulated world: hosts, clocks, network, faults, and the invariant checks.
//!
//! Time: one global true time in ms. Every host has a clock `local(t) = skew + t·(1 + drift)`
//! with |drift| ≤ 0.5 %, which drives its monotonic timers (refresh, timeouts, lease
//! validity, server holds, sync intervals).
//!
//! Network: every (client, server) pair and every (server, node) pair is a link that is
//! good (one-way delay 0–1.5 s, 1 % of messages dropped), slow (10.5–20 s one way, so every
//! round trip over it outlives the client's 10 s request timeout) or cut (everything
//! dropped). Faults cut or
//! slow links, isolate clients, crash servers (their process stops answering: requests are
//! refused at once; the disk survives) and crash or cleanly stop clients, each for a random
//! time. A calls load runs on a LAN instead: sub-millisecond, nothing lost, no faults.
//!
//! Clients run the real client policy (`leasehold_client::policy`) over a model of the
//! cache's atomics (quota and in use per feature, lowered and installed as the refresher
//! does, waking the policy when headroom runs low, when more is held than the server lets it
//! keep, and when calls wait for the server). Servers run the real allocator, persist what it
//! raised before answering and its snapshot with the ledger every housekeeping round, and a
//! restarted server is restored from that, or learns, as the real server decides.

use std::collections::{BTreeMap, VecDeque};

use chrono::NaiveDate;
use leasehold_client::policy::{self, Action, Event, Holding, Policy, PolicyConfig};
use leasehold_node::chain::{decide, ChainStep, TokenLookup};
use leasehold_proto::{
    ClientId, Context, Feature, InstanceId, LeaseRequest, LeaseResponse, QuotaReason, ServerGuid,
};
use leasehold_server::allocator::{
    Allocator, BoundRow, ClientRequest, CountRow, Fault, PoolLicense, Serving, Snapshot, Start,
    HOLD_MS, LEASE_MS,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Config, Failure, Invariant, PlantedBug, DRAIN_MS, QUIET_MS};

const REFRESH_MS: u64 = 2_000;
const FAILOVER_MS: u64 = 10_000;
/// The policy's request timeout: min(failover_after, 10 s).
const TIMEOUT_MS: u64 = policy::MAX_REQUEST_TIMEOUT_MS;
const GOOD_DELAY_MAX_MS: u64 = 1_500;
/// Round trip on a good link.
const RTT_MAX_MS: u64 = 2 * GOOD_DELAY_MAX_MS;
/// One-way delay on a slow link: a round trip with one slow leg outlives the request timeout.
const SLOW_DELAY_MS: (u64, u64) = (TIMEOUT_MS + 500, 20_000);
const DROP_PER_MILLE: u32 = 10;
const DRIFT_MAX_PPM: i64 = 5_000;
const SYNC_TIMEOUT_MS: u64 = 35_000;
const BUCKET_MS: u64 = 60_000;
/// How often a server persists its allocator snapshot and ledger (the real one: every second).
const HOUSEKEEP_MS: u64 = 5_000;
/// A restarted server restores its leases if it persisted within this long (the real one:
/// the data directory's heartbeat within a hold plus 10 s).
const RESTORE_WITHIN_MS: u64 = HOLD_MS + 10_000;
/// A client on the backup with licenses in use for this long must show in backup usage.
const OVERLAP_EPISODE_MS: u64 = 20_000;
const TRACE_LEN: usize = 30;

const PRIMARY: usize = 0;
const BACKUP: usize = 1;
const SERVER_NAMES: [&str; 2] = ["primary", "backup"];

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub steps: u64,
    pub sim_ms: u64,
    pub clients: u64,
    pub client_processes: u64,
    pub lease_requests: u64,
    pub grants_issued: u64,
    pub failovers: u64,
    pub returns_to_primary: u64,
    pub server_crashes: u64,
    pub restores: u64,
    pub learning_starts: u64,
    pub client_crashes: u64,
    pub link_faults: u64,
    pub messages_dropped: u64,
    pub syncs_ok: u64,
    pub buckets_created: u64,
    pub duplicate_bucket_uploads: u64,
    /// Highest `usable quotas / count` seen on any server, in per mille.
    pub peak_allocation_per_mille: u64,
    /// Licenses acquired by the clients (ground truth).
    pub acquisitions: u64,
    /// Grants in the servers' usage (node, disks and open hours). Equal to the acquisitions
    /// of clients that did not crash with calls not yet reported.
    pub grants_reported: u64,
    /// Acquisitions of clients that crashed before a server counted them.
    pub acquisitions_lost_in_crashes: u64,
    /// True time during which clients used licenses under both primary and backup leases.
    pub overlap_ms: u64,
    pub backup_use_ms_reported: u64,
    /// Calls (acquire attempts) counted: all of them, or after the warm-up of a calls load.
    pub calls: u64,
    /// Calls denied by the client (after asking the server, with deny-wait).
    pub denied: u64,
    /// Denials made while fewer licenses than the count were in use on the client's server.
    pub false_denials: u64,
    /// Calls that asked the server (deny-wait).
    pub waited: u64,
    /// Most licenses ever in use at once on one server (calls load: must stay <= count).
    pub max_in_use: u32,
}

impl Stats {
    /// Denied calls / calls.
    pub fn blocking(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.denied as f64 / self.calls as f64
        }
    }

    /// False denials / calls.
    pub fn false_denial_share(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.false_denials as f64 / self.calls as f64
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Clock {
    drift_ppm: i64,
    skew: u64,
}

impl Clock {
    fn local(&self, t: u64) -> u64 {
        let scaled = i128::from(t) * i128::from(1_000_000 + self.drift_ppm) / 1_000_000;
        self.skew + u64::try_from(scaled).unwrap_or(0)
    }

    /// True duration after which this clock has advanced by `local_ms` (rounded up).
    fn true_dur(&self, local_ms: u64) -> u64 {
        let den = u128::try_from(1_000_000 + self.drift_ppm).unwrap_or(1);
        u64::try_from((u128::from(local_ms) * 1_000_000).div_ceil(den)).unwrap_or(u64::MAX)
    }
}

/// A local duration in the worst case in true time (the slowest clock).
fn slow(local_ms: u64) -> u64 {
    let den = u64::try_from(1_000_000 - DRIFT_MAX_PPM).unwrap_or(1);
    (local_ms * 1_000_000).div_ceil(den)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Good,
    Slow,
    Cut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LinkId {
    /// Client slot ↔ server.
    Cs(usize, usize),
    /// Server ↔ node.
    Sn(usize),
}

#[derive(Debug, Clone, Copy)]
struct Link {
    state: LinkState,
    epoch: u64,
}

/// One usage bucket (summed over features).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    grants: u64,
    denials: u64,
    denials_while_free: u64,
    backup_use_ms: u64,
    peak: u32,
}

impl Counts {
    fn is_empty(&self) -> bool {
        *self == Counts::default()
    }
}

/// What survives a server crash.
#[derive(Debug)]
struct Disk {
    instance: InstanceId,
    token: Option<u64>,
    next_seq: u64,
    /// The open bucket as last persisted.
    open: Counts,
    unacked: BTreeMap<u64, Counts>,
    bounds: BTreeMap<(ClientId, Feature), BoundRow>,
    counts: BTreeMap<(ClientId, Feature), CountRow>,
    /// True time of the last persist (the real server's heartbeat).
    persisted_at: Option<u64>,
    /// True time until which the last process that started learning was learning.
    learning_until: u64,
    /// Ground truth for the usage invariant: calls counted per client process, as persisted.
    proc_counted: BTreeMap<usize, (u64, u64)>,
}

impl Disk {
    fn apply(&mut self, s: &Snapshot) {
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

    fn raise(&mut self, rows: &[BoundRow]) {
        for r in rows {
            self.bounds
                .insert((r.client.clone(), r.feature.clone()), r.clone());
        }
    }
}

#[derive(Debug)]
struct Server {
    backup: bool,
    up: bool,
    gen: u64,
    alloc: Option<Allocator>,
    counts: Vec<u32>,
    clock: Clock,
    disk: Disk,
    /// The open bucket in memory (lost in a crash).
    open: Counts,
    /// Calls counted per client process in memory (lost in a crash).
    proc_counted: BTreeMap<usize, (u64, u64)>,
    next_close: u64,
    next_sync: u64,
    sync_interval: u64,
    inflight: Option<u64>,
}

/// A grant a server made that its client may install.
#[derive(Debug, Clone)]
struct Grant {
    server: usize,
    seq: u64,
    /// Client-local send time of the request, and end of validity.
    send: u64,
    until: u64,
    quotas: Vec<u32>,
    /// True time the server granted it, and which life of the server.
    at: u64,
    server_gen: u64,
}

/// One client process (a restarted client is a new process with a new id).
#[derive(Debug)]
struct Proc {
    slot: usize,
    id: ClientId,
    alive: bool,
    issued: Vec<Grant>,
    /// Ground truth: calls granted and denied by this process.
    acquired: u64,
    denied: u64,
}

/// The cache's atomics of one client, as the policy sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SimCache {
    quota: Vec<u32>,
    in_use: Vec<u32>,
    peak: Vec<u32>,
    acquired: Vec<u64>,
    denied: Vec<u64>,
    waiting: Vec<u32>,
    low_water: Vec<u32>,
    give_back_above: Vec<u32>,
    /// A full cache is a sharing denial (not "not licensed" and the like).
    sharing: Vec<bool>,
    /// Client-local end of the installed answer's validity (0: none).
    valid_until: u64,
}

impl SimCache {
    fn new(nf: usize) -> Self {
        Self {
            quota: vec![0; nf],
            in_use: vec![0; nf],
            peak: vec![0; nf],
            acquired: vec![0; nf],
            denied: vec![0; nf],
            waiting: vec![0; nf],
            low_water: vec![0; nf],
            give_back_above: vec![u32::MAX; nf],
            sharing: vec![true; nf],
            valid_until: 0,
        }
    }

    fn valid(&self, local: u64) -> bool {
        local < self.valid_until
    }

    fn valid_quota(&self, local: u64, f: usize) -> u32 {
        if self.valid(local) {
            self.quota[f]
        } else {
            0
        }
    }

    /// `acquire`'s fast path: a license within a valid quota; the headroom left.
    fn take(&mut self, local: u64, f: usize) -> Option<u32> {
        if self.valid(local) && self.in_use[f] < self.quota[f] {
            self.in_use[f] += 1;
            self.peak[f] = self.peak[f].max(self.in_use[f]);
            Some(self.quota[f] - self.in_use[f])
        } else {
            None
        }
    }
}

impl policy::Cache for SimCache {
    fn holding(&mut self, i: usize) -> Holding {
        let peak = self.peak[i].max(self.in_use[i]);
        self.peak[i] = self.in_use[i];
        Holding {
            in_use: self.in_use[i],
            peak,
            acquired: self.acquired[i],
            denied: self.denied[i],
            waiting: self.waiting[i],
        }
    }

    fn held(&self, i: usize) -> u32 {
        self.in_use[i]
    }

    fn lower(&mut self, i: usize, keep: u32) -> (u32, u32) {
        let u = self.in_use[i];
        let q = self.quota[i];
        let keep = keep.saturating_add(self.waiting[i]);
        let lowered = q.min(u.saturating_add(keep)).max(u.min(q));
        self.quota[i] = lowered;
        (u, lowered)
    }

    fn install(&mut self, features: &[policy::InstallFeature], valid_until_ms: u64) {
        for (i, f) in features.iter().enumerate() {
            self.quota[i] = f.quota;
            self.low_water[i] = f.low_water;
            self.give_back_above[i] = f.give_back_above;
            self.sharing[i] = matches!(
                f.code,
                None | Some(QuotaReason::Exhausted | QuotaReason::Relearning)
            );
        }
        self.valid_until = valid_until_ms;
    }
}

/// A call waiting for the server (deny-wait).
#[derive(Debug, Clone)]
struct Waiter {
    id: u64,
    feature: usize,
    /// Registration number: an answer to a request sent after it covers it.
    reg: u64,
    /// How long the call holds its license once granted (calls load); `None` for the
    /// faults workload, whose holdings follow targets.
    hold: Option<u64>,
    /// Counted in the calls statistics (placed after the warm-up).
    counted: bool,
}

#[derive(Debug)]
struct Client {
    up: bool,
    gen: u64,
    proc_: usize,
    clock: Clock,
    started_at: u64,
    policy: Option<Policy>,
    cache: SimCache,
    deny_wait_ms: u64,
    /// Wake reasons for the policy not yet polled.
    wake: u8,
    /// True time of the next scheduled poll (a queued poll at another time is stale), and
    /// whether it is still queued.
    next_poll: u64,
    poll_queued: bool,
    waiters: VecDeque<Waiter>,
    asks_registered: u64,
    asks_covered: u64,
    /// Per server: the request in flight and the ask registrations it covers.
    sent_asks: [Option<(u64, u64)>; 2],
    /// In use after the previous check, for §4.1(b).
    checked_in_use: Vec<u32>,
    target: Vec<u32>,
    /// True time since which each server has been unreachable (down, link cut or slow).
    unreach_since: [Option<u64>; 2],
    /// True time since which each server has been reachable with no message lost.
    good_since: [Option<u64>; 2],
    backup_episode: Option<u64>,
}

impl Client {
    fn lease_from(&self, local: u64) -> Option<usize> {
        self.policy.as_ref().and_then(|p| p.lease_from(local))
    }

    fn on_backup(&self) -> bool {
        self.policy.as_ref().is_some_and(Policy::on_backup)
    }
}

#[derive(Debug, Default)]
struct NodeGuid {
    bound: Option<InstanceId>,
    tokens: BTreeMap<u64, (u64, bool)>,
    head: u64,
}

#[derive(Debug, Default)]
struct Node {
    guids: [NodeGuid; 2],
    stored: BTreeMap<(usize, u64), Counts>,
    max_seq: [u64; 2],
    total_grants: u64,
    /// A re-sent bucket that differs from the stored one.
    conflict: Option<String>,
}

#[derive(Debug, Clone)]
enum Msg {
    LeaseReq {
        proc_: usize,
        server: usize,
        slot: usize,
        gen: u64,
        /// Client-local send time.
        send: u64,
        request: Box<LeaseRequest>,
    },
    LeaseResp {
        slot: usize,
        gen: u64,
        server: usize,
        seq: u64,
        result: Result<Box<LeaseResponse>, String>,
    },
    SyncReq {
        server: usize,
        sgen: u64,
        id: u64,
        token: Option<u64>,
        buckets: Vec<(u64, Counts)>,
    },
    SyncResp {
        server: usize,
        sgen: u64,
        id: u64,
        result: Result<(u64, u64), String>,
    },
}

#[derive(Debug, Clone)]
enum Ev {
    ClientPoll {
        slot: usize,
        gen: u64,
    },
    ClientWork {
        slot: usize,
        gen: u64,
    },
    ClientStart {
        slot: usize,
    },
    /// A call waiting for the server reaches its deny-wait.
    WaitTimeout {
        slot: usize,
        gen: u64,
        id: u64,
    },
    /// A call of the calls load arrives (at a client picked at random).
    CallArrive,
    /// A call of the calls load ends and releases its license.
    CallEnd {
        slot: usize,
        gen: u64,
    },
    ServerHousekeep {
        s: usize,
        gen: u64,
    },
    ServerStart {
        s: usize,
    },
    SyncTimeout {
        s: usize,
        gen: u64,
        id: u64,
    },
    Deliver {
        link: LinkId,
        msg: Box<Msg>,
    },
    Chaos,
    Heal {
        link: LinkId,
        epoch: u64,
    },
    /// Faults stop: every link heals and every server starts.
    Drain,
}

type Broken = (Invariant, String);

/// One call of a client's policy, as the simulation made it (for the replay check).
#[derive(Debug, Clone)]
enum Call {
    Poll {
        now: u64,
        woken: u8,
    },
    Answer {
        now: u64,
        server: usize,
        seq: u64,
        answer: Result<LeaseResponse, String>,
    },
}

#[derive(Debug, Clone)]
struct PolicyCall {
    call: Call,
    before: SimCache,
    actions: Vec<Action>,
    after: SimCache,
}

/// How a recorded policy was created.
#[derive(Debug, Clone)]
struct PolicyStart {
    cfg: PolicyConfig,
    id: ClientId,
    release: NaiveDate,
    features: Vec<Feature>,
    now: u64,
    asks: bool,
}

#[derive(Debug)]
pub(crate) struct World<'a> {
    seed: u64,
    cfg: &'a Config,
    rng: StdRng,
    now: u64,
    seq: u64,
    step: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    features: Vec<Feature>,
    release: NaiveDate,
    maintenance: NaiveDate,
    clients: Vec<Client>,
    procs: Vec<Proc>,
    servers: Vec<Server>,
    node: Node,
    links: BTreeMap<LinkId, Link>,
    created: BTreeMap<(usize, u64), Counts>,
    trace: VecDeque<(u64, u64, Ev)>,
    stats: Stats,
    next_id: u64,
    chaos_mean_ms: u64,
    in_use_on: [bool; 2],
    backup_use_expected: Option<(usize, u64)>,
    refused: Option<String>,
    broken: Option<Broken>,
    draining: bool,
    first_proc_of_slot0: usize,
    policy_start: Option<PolicyStart>,
    policy_log: Vec<PolicyCall>,
}

fn feature(name: &str) -> Feature {
    Feature::parse(name).unwrap_or_else(|e| panic!("bad feature {name}: {e}"))
}

/// Exponentially distributed with the given mean, in whole ms, rounded at random in
/// proportion to the fraction so that the mean is exact (truncating would shorten every gap
/// by half a millisecond: 2 % more load at 36 calls a second).
fn exp_ms(rng: &mut StdRng, mean: f64) -> u64 {
    let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let x = -u.ln() * mean;
    let whole = x.floor();
    let up = rng.gen_bool((x - whole).clamp(0.0, 1.0));
    whole as u64 + u64::from(up)
}

impl<'a> World<'a> {
    pub(crate) fn new(seed: u64, cfg: &'a Config) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let load = cfg.calls;
        let features = if load.is_some() {
            vec![feature("calls")]
        } else {
            vec![feature("tts"), feature("asr.en-US")]
        };
        let nf = features.len();
        let clock = |rng: &mut StdRng| Clock {
            drift_ppm: rng.gen_range(-DRIFT_MAX_PPM..=DRIFT_MAX_PPM),
            skew: rng.gen_range(0..1_000_000_000),
        };
        let primary_counts: Vec<u32> = match load {
            Some(l) => vec![l.licenses],
            None => (0..nf).map(|_| rng.gen_range(1..=8)).collect(),
        };
        let backup_counts: Vec<u32> = primary_counts
            .iter()
            .map(|c| {
                if rng.gen_bool(0.5) {
                    *c
                } else {
                    rng.gen_range(1..=*c)
                }
            })
            .collect();
        let mut servers = Vec::new();
        for (s, counts) in [primary_counts, backup_counts].into_iter().enumerate() {
            let c = clock(&mut rng);
            servers.push(Server {
                backup: s == BACKUP,
                up: false,
                gen: 0,
                alloc: None,
                counts,
                clock: c,
                disk: Disk {
                    instance: InstanceId::from_random(rng.gen()),
                    token: None,
                    next_seq: 1,
                    open: Counts::default(),
                    unacked: BTreeMap::new(),
                    bounds: BTreeMap::new(),
                    counts: BTreeMap::new(),
                    persisted_at: None,
                    learning_until: 0,
                    proc_counted: BTreeMap::new(),
                },
                open: Counts::default(),
                proc_counted: BTreeMap::new(),
                next_close: 0,
                next_sync: 0,
                sync_interval: rng.gen_range(20_000..=90_000),
                inflight: None,
            });
        }
        let n_clients = match load {
            Some(l) => l.processes,
            None => rng.gen_range(3..=8),
        };
        let clients = (0..n_clients)
            .map(|_| Client {
                up: false,
                gen: 0,
                proc_: usize::MAX,
                clock: clock(&mut rng),
                started_at: 0,
                policy: None,
                cache: SimCache::new(nf),
                deny_wait_ms: 0,
                wake: 0,
                next_poll: 0,
                poll_queued: false,
                waiters: VecDeque::new(),
                asks_registered: 0,
                asks_covered: 0,
                sent_asks: [None; 2],
                checked_in_use: vec![0; nf],
                target: vec![0; nf],
                unreach_since: [None; 2],
                good_since: [None; 2],
                backup_episode: None,
            })
            .collect();
        let mut links = BTreeMap::new();
        for c in 0..n_clients {
            for s in 0..2 {
                links.insert(
                    LinkId::Cs(c, s),
                    Link {
                        state: LinkState::Good,
                        epoch: 0,
                    },
                );
            }
        }
        for s in 0..2 {
            links.insert(
                LinkId::Sn(s),
                Link {
                    state: LinkState::Good,
                    epoch: 0,
                },
            );
        }
        let chaos_mean_ms = rng.gen_range(3_000..=15_000);
        let stats = Stats {
            clients: n_clients as u64,
            ..Stats::default()
        };
        Self {
            seed,
            cfg,
            rng,
            now: 0,
            seq: 0,
            step: 0,
            queue: BTreeMap::new(),
            features,
            release: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default(),
            maintenance: NaiveDate::from_ymd_opt(2030, 1, 1).unwrap_or_default(),
            clients,
            procs: Vec::new(),
            servers,
            node: Node::default(),
            links,
            created: BTreeMap::new(),
            trace: VecDeque::new(),
            stats,
            next_id: 1,
            chaos_mean_ms,
            in_use_on: [false; 2],
            backup_use_expected: None,
            refused: None,
            broken: None,
            draining: false,
            first_proc_of_slot0: usize::MAX,
            policy_start: None,
            policy_log: Vec::new(),
        }
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t, self.seq), ev);
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// No call or acquisition starts from here to the end of the run.
    fn quiet(&self) -> bool {
        self.now + QUIET_MS >= self.cfg.duration_ms
    }

    pub(crate) fn run(mut self) -> Result<Stats, Box<Failure>> {
        self.run_mut()
    }

    fn run_mut(&mut self) -> Result<Stats, Box<Failure>> {
        for s in 0..2 {
            self.start_server(s, false);
        }
        for c in 0..self.clients.len() {
            let t = self.rng.gen_range(0..3_000);
            self.at(t, Ev::ClientStart { slot: c });
        }
        if self.cfg.calls.is_some() {
            self.at(crate::CALLS_START_MS, Ev::CallArrive);
        } else {
            let t = self.chaos_delay();
            self.at(t, Ev::Chaos);
            let drain = self.cfg.duration_ms.saturating_sub(DRAIN_MS);
            self.at(drain, Ev::Drain);
        }
        while let Some(((t, _), ev)) = self.queue.pop_first() {
            if t > self.cfg.duration_ms || self.step >= self.cfg.steps {
                break;
            }
            if self.in_use_on[PRIMARY] && self.in_use_on[BACKUP] {
                self.stats.overlap_ms += t - self.now;
            }
            self.now = t;
            self.step += 1;
            if self.cfg.verbose {
                println!("{:>10.3}s #{:<7} {:?}", t as f64 / 1000.0, self.step, ev);
            }
            if self.trace.len() == TRACE_LEN {
                self.trace.pop_front();
            }
            self.trace.push_back((self.step, t, ev.clone()));
            self.handle(ev);
            if self.cfg.verbose && std::env::var_os("SIM_DEBUG").is_some() {
                for (i, c) in self.clients.iter().enumerate() {
                    println!(
                        "      client {i}: quota {:?} in_use {:?} waiting {:?} valid_until {}",
                        c.cache.quota, c.cache.in_use, c.cache.waiting, c.cache.valid_until
                    );
                }
            }
            self.update_views();
            if let Err((inv, msg)) = self.check() {
                return Err(self.failure(inv, msg));
            }
        }
        self.finish()
    }

    fn finish(&mut self) -> Result<Stats, Box<Failure>> {
        let mut grants = 0;
        let mut backup_use = 0;
        for ((s, _), c) in &self.created {
            grants += c.grants;
            if *s == BACKUP {
                backup_use += c.backup_use_ms;
            }
        }
        for (s, server) in self.servers.iter().enumerate() {
            grants += server.open.grants;
            if s == BACKUP {
                backup_use += server.open.backup_use_ms;
            }
        }
        self.stats.grants_reported = grants;
        self.stats.backup_use_ms_reported = backup_use;
        self.stats.steps = self.step;
        self.stats.sim_ms = self.now;
        if let Some((slot, since)) = self.backup_use_expected {
            if backup_use == 0 {
                let msg = format!(
                    "client {slot} used licenses on the backup in failover from t = {:.3} s for {} s or more (clients used primary and backup licenses at the same time for {:.1} s in all), but the backup's usage shows no backup use",
                    since as f64 / 1000.0,
                    OVERLAP_EPISODE_MS / 1000,
                    self.stats.overlap_ms as f64 / 1000.0
                );
                return Err(self.failure(Invariant::OverlapReported, msg));
            }
        }
        // Usage counted exactly once: the servers' per-process counts add up to their
        // ledgers, and once quiet every running process's calls are counted.
        let counted_total: u64 = self
            .servers
            .iter()
            .flat_map(|s| s.proc_counted.values())
            .map(|c| c.0)
            .sum();
        if counted_total != grants {
            let msg = format!(
                "the servers' usage holds {grants} grants, but they counted {counted_total} calls of their clients"
            );
            return Err(self.failure(Invariant::UsageExact, msg));
        }
        self.stats.acquisitions_lost_in_crashes = (0..self.procs.len())
            .filter(|p| !self.procs[*p].alive)
            .map(|p| self.procs[p].acquired.saturating_sub(self.counted(p).0))
            .sum();
        if self.now + QUIET_MS / 2 >= self.cfg.duration_ms && self.step < self.cfg.steps {
            for (p, proc_) in self.procs.iter().enumerate() {
                if !proc_.alive {
                    continue;
                }
                let counted = self.counted(p);
                if counted != (proc_.acquired, proc_.denied) {
                    let msg = format!(
                        "client {} ({}) made {} acquisitions and {} denials, but the servers counted {} and {} (primary {:?}, backup {:?}) after {} s without new calls",
                        proc_.slot,
                        proc_.id,
                        proc_.acquired,
                        proc_.denied,
                        counted.0,
                        counted.1,
                        self.servers[PRIMARY].proc_counted.get(&p),
                        self.servers[BACKUP].proc_counted.get(&p),
                        QUIET_MS / 1000
                    );
                    return Err(self.failure(Invariant::UsageExact, msg));
                }
            }
        }
        Ok(self.stats.clone())
    }

    /// Runs the world recording the policy calls of its first client, then makes the same
    /// calls on a new real policy over the recorded cache states: every answer must be the
    /// same. Returns the number of calls checked.
    pub(crate) fn replay_policy(mut self) -> Result<usize, String> {
        let seed = self.seed;
        self.run_mut().map_err(|f| f.to_string())?;
        let start = self
            .policy_start
            .take()
            .ok_or_else(|| format!("seed {seed}: client 0 never started"))?;
        let log = std::mem::take(&mut self.policy_log);
        let mut policy = Policy::new(
            start.cfg,
            start.id,
            start.release,
            start.features,
            start.now,
        );
        policy.set_asks(start.asks);
        for (i, call) in log.iter().enumerate() {
            let mut cache = call.before.clone();
            let actions = match &call.call {
                Call::Poll { now, woken } => policy.poll(*now, *woken, &mut cache),
                Call::Answer {
                    now,
                    server,
                    seq,
                    answer,
                } => policy.on_answer(
                    *now,
                    *server,
                    *seq,
                    answer.as_ref().map_err(Clone::clone),
                    &mut cache,
                ),
            };
            if actions != call.actions || cache != call.after {
                return Err(format!(
                    "seed {seed}: call {i} ({:?}) differs: the simulation got {:?} and {:?}, the policy gives {actions:?} and {cache:?}",
                    call.call, call.actions, call.after
                ));
            }
        }
        Ok(log.len())
    }

    fn counted(&self, p: usize) -> (u64, u64) {
        self.servers
            .iter()
            .filter_map(|s| s.proc_counted.get(&p))
            .fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1))
    }

    fn failure(&self, invariant: Invariant, message: String) -> Box<Failure> {
        Box::new(Failure {
            seed: self.seed,
            step: self.step,
            time_ms: self.now,
            invariant,
            message,
            trace: self
                .trace
                .iter()
                .map(|(step, t, ev)| format!("{:>10.3}s #{step:<7} {ev:?}", *t as f64 / 1000.0))
                .collect(),
            replay: self.cfg.replay_command(self.seed),
        })
    }

    fn chaos_delay(&mut self) -> u64 {
        // Roughly exponential with the seed's mean.
        let u: f64 = self.rng.gen_range(0.0001..1.0);
        self.now + (-(u.ln()) * self.chaos_mean_ms as f64) as u64
    }

    // ---------------------------------------------------------------------------------
    // Network

    fn send(&mut self, link: LinkId, msg: Msg) {
        let state = self.links.get(&link).map_or(LinkState::Cut, |l| l.state);
        let delay = match state {
            // A calls load runs on a LAN: sub-millisecond, nothing lost.
            LinkState::Good if self.cfg.calls.is_some() => Some(self.rng.gen_range(0..=1)),
            LinkState::Cut => None,
            LinkState::Good => {
                if self.rng.gen_ratio(DROP_PER_MILLE, 1000) {
                    if let LinkId::Cs(c, s) = link {
                        self.clients[c].good_since[s] = None;
                    }
                    None
                } else {
                    Some(self.rng.gen_range(0..=GOOD_DELAY_MAX_MS))
                }
            }
            LinkState::Slow => Some(self.rng.gen_range(SLOW_DELAY_MS.0..=SLOW_DELAY_MS.1)),
        };
        match delay {
            Some(d) => self.at(
                self.now + d,
                Ev::Deliver {
                    link,
                    msg: Box::new(msg),
                },
            ),
            None => self.stats.messages_dropped += 1,
        }
    }

    fn reachable(&self, c: usize, s: usize) -> bool {
        self.servers[s].up
            && self
                .links
                .get(&LinkId::Cs(c, s))
                .is_some_and(|l| l.state == LinkState::Good)
    }

    // ---------------------------------------------------------------------------------
    // Events

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::ClientStart { slot } => {
                if !self.clients[slot].up {
                    self.start_client(slot);
                }
            }
            Ev::ClientPoll { slot, gen } => {
                let c = &mut self.clients[slot];
                if c.up && c.gen == gen && c.next_poll == self.now && c.poll_queued {
                    c.poll_queued = false;
                    self.poll_client(slot);
                }
            }
            Ev::ClientWork { slot, gen } => {
                if self.clients[slot].up && self.clients[slot].gen == gen {
                    self.work(slot);
                }
            }
            Ev::WaitTimeout { slot, gen, id } => {
                let c = &self.clients[slot];
                if c.up && c.gen == gen {
                    if let Some(i) = c.waiters.iter().position(|w| w.id == id) {
                        if let Some(w) = self.clients[slot].waiters.remove(i) {
                            self.deny_waiter(slot, &w);
                        }
                    }
                }
            }
            Ev::CallArrive => self.call_arrive(),
            Ev::CallEnd { slot, gen } => {
                let c = &self.clients[slot];
                if c.up && c.gen == gen && c.cache.in_use[0] > 0 {
                    self.release_one(slot, 0);
                }
            }
            Ev::ServerStart { s } => self.start_server(s, true),
            Ev::ServerHousekeep { s, gen } => {
                if self.servers[s].up && self.servers[s].gen == gen {
                    self.housekeep(s);
                }
            }
            Ev::SyncTimeout { s, gen, id } => {
                let server = &mut self.servers[s];
                if server.up && server.gen == gen && server.inflight == Some(id) {
                    server.inflight = None;
                }
            }
            Ev::Deliver { link, msg } => {
                if self.links.get(&link).map(|l| l.state) == Some(LinkState::Cut) {
                    self.stats.messages_dropped += 1;
                    if let LinkId::Cs(c, s) = link {
                        self.clients[c].good_since[s] = None;
                    }
                } else {
                    self.deliver(*msg);
                }
            }
            Ev::Chaos => {
                if !self.draining {
                    self.chaos();
                    let t = self.chaos_delay();
                    self.at(t, Ev::Chaos);
                }
            }
            Ev::Heal { link, epoch } => {
                if let Some(l) = self.links.get_mut(&link) {
                    if l.epoch == epoch {
                        l.state = LinkState::Good;
                    }
                }
            }
            Ev::Drain => {
                self.draining = true;
                for l in self.links.values_mut() {
                    l.state = LinkState::Good;
                }
                for s in 0..2 {
                    if !self.servers[s].up {
                        self.start_server(s, true);
                    }
                }
                for c in 0..self.clients.len() {
                    if !self.clients[c].up {
                        self.start_client(c);
                    }
                }
            }
        }
    }

    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::LeaseReq {
                proc_,
                server: s,
                slot,
                gen,
                send,
                request,
            } => {
                let seq = request.seq;
                let result = self.serve(s, proc_, send, &request);
                self.send(
                    LinkId::Cs(slot, s),
                    Msg::LeaseResp {
                        slot,
                        gen,
                        server: s,
                        seq,
                        result,
                    },
                );
            }
            Msg::LeaseResp {
                slot,
                gen,
                server,
                seq,
                result,
            } => {
                let c = &self.clients[slot];
                if !(c.up && c.gen == gen) {
                    return;
                }
                let local = c.clock.local(self.now);
                let Some(mut p) = self.clients[slot].policy.take() else {
                    return;
                };
                let before = self
                    .recording(slot)
                    .then(|| self.clients[slot].cache.clone());
                let answer = result.as_deref().map_err(Clone::clone);
                let actions = p.on_answer(
                    local,
                    server,
                    seq,
                    answer.clone(),
                    &mut self.clients[slot].cache,
                );
                if let Some(before) = before {
                    self.policy_log.push(PolicyCall {
                        call: Call::Answer {
                            now: local,
                            server,
                            seq,
                            answer: answer.cloned(),
                        },
                        before,
                        actions: actions.clone(),
                        after: self.clients[slot].cache.clone(),
                    });
                }
                self.clients[slot].policy = Some(p);
                self.execute(slot, actions, Some((server, seq)));
                self.schedule_poll(slot);
            }
            Msg::SyncReq {
                server,
                sgen,
                id,
                token,
                buckets,
            } => {
                let result = self.node_sync(server, token, &buckets);
                self.send(
                    LinkId::Sn(server),
                    Msg::SyncResp {
                        server,
                        sgen,
                        id,
                        result,
                    },
                );
            }
            Msg::SyncResp {
                server,
                sgen,
                id,
                result,
            } => {
                let srv = &mut self.servers[server];
                if !srv.up || srv.gen != sgen || srv.inflight != Some(id) {
                    return;
                }
                srv.inflight = None;
                match result {
                    Ok((token, acked)) => {
                        srv.disk.token = Some(token);
                        srv.disk.unacked.retain(|seq, _| *seq > acked);
                        self.stats.syncs_ok += 1;
                    }
                    Err(why) => {
                        self.refused = Some(format!(
                            "the node refused the {} server's only instance: {why}",
                            SERVER_NAMES[server]
                        ));
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Servers

    fn start_server(&mut self, s: usize, restarted: bool) {
        let features = self.features.clone();
        let maintenance = self.maintenance;
        let now = self.now;
        let epoch: u64 = self.rng.gen();
        let server = &mut self.servers[s];
        let local = server.clock.local(now);
        // As the real server decides: restore what was persisted if this disk was in use
        // within a hold (and its last process was not still learning), else learn.
        let start = if !restarted {
            Start::Fresh
        } else {
            let recently = server
                .disk
                .persisted_at
                .is_some_and(|t| now.saturating_sub(t) <= RESTORE_WITHIN_MS);
            let counts: Vec<CountRow> = server.disk.counts.values().cloned().collect();
            if recently && now >= server.disk.learning_until {
                self.stats.restores += 1;
                Start::Restored {
                    bounds: server.disk.bounds.values().cloned().collect(),
                    counts,
                }
            } else {
                self.stats.learning_starts += 1;
                server.disk.learning_until = now + HOLD_MS;
                Start::Learning { counts }
            }
        };
        let mut alloc = Allocator::new(local, start, server.backup, epoch);
        if self.cfg.planted_bug == Some(PlantedBug::FreeOnAnswer) {
            alloc.set_fault(Some(Fault::FreeOnAnswer));
        }
        let licenses: Vec<PoolLicense> = features
            .iter()
            .zip(&server.counts)
            .map(|(f, c)| PoolLicense {
                feature: f.clone(),
                count: *c,
                maintenance_until: maintenance,
            })
            .collect();
        alloc.set_licenses(&licenses);
        server.alloc = Some(alloc);
        server.up = true;
        server.gen += 1;
        server.inflight = None;
        server.open = server.disk.open;
        server.proc_counted = server.disk.proc_counted.clone();
        server.disk.persisted_at = Some(now);
        server.next_close = local + BUCKET_MS;
        let wait = if restarted && self.cfg.fixes.sync_delay_after_restart {
            SLOW_DELAY_MS.1 + 1_000
        } else {
            0
        };
        server.next_sync = local + wait + self.rng.gen_range(0..5_000);
        let gen = server.gen;
        if s == BACKUP {
            for c in &mut self.clients {
                c.backup_episode = None;
            }
        }
        self.at(self.now, Ev::ServerHousekeep { s, gen });
    }

    fn crash_server(&mut self, s: usize) {
        let server = &mut self.servers[s];
        if !server.up {
            return;
        }
        server.up = false;
        server.gen += 1;
        server.alloc = None;
        server.inflight = None;
        // What was not persisted is lost.
        server.open = server.disk.open;
        server.proc_counted = server.disk.proc_counted.clone();
        self.stats.server_crashes += 1;
        let down = if self.rng.gen_bool(0.3) {
            self.rng.gen_range(60_000..=200_000)
        } else {
            self.rng.gen_range(1_000..=60_000)
        };
        self.at(self.now + down, Ev::ServerStart { s });
    }

    fn expire_early(&self) -> u64 {
        match self.cfg.planted_bug {
            Some(PlantedBug::Hold100s) => HOLD_MS.saturating_sub(100_000),
            _ => 0,
        }
    }

    /// Persists the allocator's snapshot with the ledger, in one step.
    fn persist(&mut self, s: usize) {
        let now = self.now;
        let server = &mut self.servers[s];
        let Some(alloc) = server.alloc.as_mut() else {
            return;
        };
        let snap = alloc.snapshot();
        server.disk.apply(&snap);
        alloc.mark_durable(&snap);
        server.disk.open = server.open;
        server.disk.proc_counted = server.proc_counted.clone();
        server.disk.persisted_at = Some(now);
        if std::env::var_os("SIM_DEBUG").is_some() {
            println!(
                "      PERSIST server {s} counts {:?}",
                snap.counts
                    .iter()
                    .map(|c| (
                        c.client.to_string(),
                        c.feature.to_string(),
                        c.acquired,
                        c.denied
                    ))
                    .collect::<Vec<_>>()
            );
        }
    }

    fn housekeep(&mut self, s: usize) {
        let early = self.expire_early();
        let now = self.now;
        let server = &mut self.servers[s];
        let local = server.clock.local(now);
        if let Some(a) = server.alloc.as_mut() {
            a.expire(local + early);
        }
        if local >= server.next_close {
            server.next_close += BUCKET_MS;
            if !server.open.is_empty() {
                let seq = server.disk.next_seq;
                server.disk.next_seq += 1;
                let bucket = std::mem::take(&mut server.open);
                server.disk.unacked.insert(seq, bucket);
                self.created.insert((s, seq), bucket);
                self.stats.buckets_created += 1;
            }
        }
        self.persist(s);
        let server = &mut self.servers[s];
        if local >= server.next_sync && server.inflight.is_none() {
            server.next_sync = local + server.sync_interval;
            let id = self.id();
            let server = &mut self.servers[s];
            server.inflight = Some(id);
            let msg = Msg::SyncReq {
                server: s,
                sgen: server.gen,
                id,
                token: server.disk.token,
                buckets: server.disk.unacked.iter().map(|(k, v)| (*k, *v)).collect(),
            };
            let gen = server.gen;
            let t = now + server.clock.true_dur(SYNC_TIMEOUT_MS);
            self.at(t, Ev::SyncTimeout { s, gen, id });
            self.send(LinkId::Sn(s), msg);
        }
        let server = &self.servers[s];
        let t = now + server.clock.true_dur(HOUSEKEEP_MS);
        let gen = server.gen;
        self.at(t, Ev::ServerHousekeep { s, gen });
    }

    /// A lease request arrives at server `s`: the real allocator answers it.
    fn serve(
        &mut self,
        s: usize,
        proc_: usize,
        send: u64,
        request: &LeaseRequest,
    ) -> Result<Box<LeaseResponse>, String> {
        let early = self.expire_early();
        let now = self.now;
        let feats = self.features.clone();
        let server = &mut self.servers[s];
        let local = server.clock.local(now);
        let server_gen = server.gen;
        let Some(alloc) = server.alloc.as_mut() else {
            return Err("connection refused: the server is down".into());
        };
        self.stats.lease_requests += 1;
        if early > 0 {
            alloc.expire(local + early);
        }
        let req = ClientRequest {
            client: &request.client_id,
            product_release: request.product_release,
            features: &request.features,
            failover: request.failover,
            seq: request.seq,
            epoch: request.epoch,
            asks: request.asks,
            release: request.release,
        };
        let answer = alloc.request(local, &req, &Serving::Yes);
        // What raised a reservation is on disk before the answer leaves.
        server.disk.raise(&answer.raised);
        if answer.stale {
            return Err("stale_request".into());
        }
        let quotas: Vec<u32> = feats
            .iter()
            .map(|f| answer.features.get(f).map_or(0, |a| a.quota))
            .collect();
        let peak = feats.iter().map(|f| alloc.in_use(f)).max().unwrap_or(0);
        let epoch = alloc.epoch();
        let mut counted = (0, 0);
        for d in answer.usage.values() {
            server.open.grants += d.acquired;
            server.open.denials += d.denied;
            server.open.denials_while_free += d.denied_while_free;
            if server.backup {
                server.open.backup_use_ms += d.failover_use_ms;
            }
            counted.0 += d.acquired;
            counted.1 += d.denied;
        }
        server.open.peak = server.open.peak.max(peak);
        if std::env::var_os("SIM_DEBUG").is_some() && (counted.0 > 0 || counted.1 > 0) {
            println!(
                "      COUNT server {s} proc {proc_} {} seq {} release {} +{counted:?} req {:?}",
                request.client_id,
                request.seq,
                request.release,
                request
                    .features
                    .values()
                    .map(|f| (f.denied, f.counted_denied))
                    .collect::<Vec<_>>()
            );
        }
        let c = server.proc_counted.entry(proc_).or_default();
        c.0 += counted.0;
        c.1 += counted.1;
        let total = self.counted(proc_);
        let truth = (self.procs[proc_].acquired, self.procs[proc_].denied);
        if (total.0 > truth.0 || total.1 > truth.1) && self.broken.is_none() {
            self.broken = Some((
                Invariant::UsageExact,
                format!(
                    "the {} server counted client {}'s calls again: the servers counted {} acquisitions and {} denials of it, but it made only {} and {}",
                    SERVER_NAMES[s],
                    self.procs[proc_].slot,
                    total.0,
                    total.1,
                    truth.0,
                    truth.1
                ),
            ));
        }
        if quotas.iter().any(|q| *q > 0) && !request.release {
            self.stats.grants_issued += 1;
            self.procs[proc_].issued.push(Grant {
                server: s,
                seq: request.seq,
                send,
                until: send + LEASE_MS,
                quotas,
                at: now,
                server_gen,
            });
        }
        Ok(Box::new(LeaseResponse {
            server_guid: ServerGuid::from_bytes([u8::try_from(s).unwrap_or(0) + 1; 16]),
            context: if s == BACKUP {
                Context::Backup
            } else {
                Context::Production
            },
            lease_secs: leasehold_proto::LEASE_SECS,
            features: answer.features,
            epoch,
        }))
    }

    // ---------------------------------------------------------------------------------
    // Node

    fn node_sync(
        &mut self,
        s: usize,
        token: Option<u64>,
        buckets: &[(u64, Counts)],
    ) -> Result<(u64, u64), String> {
        let instance = self.servers[s].disk.instance.clone();
        let g = &self.node.guids[s];
        let lookup = match token {
            None => TokenLookup::Absent,
            Some(t) => match g.tokens.get(&t) {
                Some((generation, revoked)) => TokenLookup::Found {
                    generation: *generation,
                    revoked: *revoked,
                },
                None => TokenLookup::Unknown,
            },
        };
        let step = decide(g.bound.as_ref(), g.head, &instance, lookup).map_err(|r| r.message)?;
        for (seq, c) in buckets {
            match self.node.stored.get(&(s, *seq)) {
                Some(old) => {
                    self.stats.duplicate_bucket_uploads += 1;
                    if old != c && self.node.conflict.is_none() {
                        self.node.conflict = Some(format!(
                            "the {} server uploaded bucket {seq} again as {c:?}, but the node holds it as {old:?}",
                            SERVER_NAMES[s]
                        ));
                    }
                }
                None => {
                    self.node.stored.insert((s, *seq), *c);
                    self.node.total_grants += c.grants;
                    self.node.max_seq[s] = self.node.max_seq[s].max(*seq);
                }
            }
        }
        let token: u64 = self.rng.gen();
        let g = &mut self.node.guids[s];
        let generation = match step {
            ChainStep::Bind => {
                g.bound = Some(instance);
                g.tokens.clear();
                1
            }
            ChainStep::Advance => g.head + 1,
            ChainStep::Branch { from_generation } => {
                for (gen, revoked) in g.tokens.values_mut() {
                    if *gen > from_generation {
                        *revoked = true;
                    }
                }
                from_generation + 1
            }
        };
        g.tokens.insert(token, (generation, false));
        g.head = generation;
        Ok((token, self.node.max_seq[s]))
    }

    // ---------------------------------------------------------------------------------
    // Clients

    fn start_client(&mut self, slot: usize) {
        let nf = self.features.len();
        let mut bytes = [0u8; 16];
        self.rng.fill(&mut bytes);
        let p = self.procs.len();
        let id = ClientId::from_random(bytes);
        self.procs.push(Proc {
            slot,
            id: id.clone(),
            alive: true,
            issued: Vec::new(),
            acquired: 0,
            denied: 0,
        });
        self.stats.client_processes += 1;
        let targets: Vec<u32> = (0..nf).map(|_| self.rng.gen_range(0..=6)).collect();
        let deny_wait_ms = match self.cfg.calls {
            Some(l) => l.deny_wait_ms,
            None => [0, 0, 50, 500][self.rng.gen_range(0..4)],
        };
        let now = self.now;
        let features = self.features.clone();
        let release = self.release;
        let c = &mut self.clients[slot];
        let local = c.clock.local(now);
        let policy_cfg = PolicyConfig {
            servers: 2,
            refresh_ms: REFRESH_MS,
            failover_after_ms: FAILOVER_MS,
            flush_after_ms: LEASE_MS,
            request_timeout_ms: TIMEOUT_MS,
        };
        if slot == 0 && self.policy_start.is_none() {
            self.first_proc_of_slot0 = p;
            self.policy_start = Some(PolicyStart {
                cfg: policy_cfg,
                id: id.clone(),
                release,
                features: features.clone(),
                now: local,
                asks: deny_wait_ms > 0,
            });
        }
        let mut policy = Policy::new(policy_cfg, id, release, features, local);
        policy.set_asks(deny_wait_ms > 0);
        c.up = true;
        c.gen += 1;
        c.proc_ = p;
        c.started_at = now;
        c.policy = Some(policy);
        c.cache = SimCache::new(nf);
        c.deny_wait_ms = deny_wait_ms;
        c.wake = 0;
        c.waiters.clear();
        c.asks_registered = 0;
        c.asks_covered = 0;
        c.sent_asks = [None; 2];
        c.checked_in_use.iter_mut().for_each(|x| *x = 0);
        c.target = targets;
        c.backup_episode = None;
        let gen = c.gen;
        c.next_poll = now;
        c.poll_queued = true;
        self.at(now, Ev::ClientPoll { slot, gen });
        if self.cfg.calls.is_none() {
            let t = now + self.rng.gen_range(100..1_000);
            self.at(t, Ev::ClientWork { slot, gen });
        }
    }

    fn stop_client(&mut self, slot: usize, clean: bool) {
        if !self.clients[slot].up {
            return;
        }
        let local = self.clients[slot].clock.local(self.now);
        let p = self.clients[slot].proc_;
        // Calls still waiting for the server are denied as the process stops.
        while let Some(w) = self.clients[slot].waiters.pop_front() {
            self.deny_waiter(slot, &w);
        }
        if clean {
            // The application lets go of its licenses, then the refresher gives the quota
            // back to the server whose answer it holds.
            let c = &mut self.clients[slot];
            c.cache.in_use.iter_mut().for_each(|x| *x = 0);
            if let Some(mut policy) = c.policy.take() {
                if let Some(Action::Send { server, request }) = policy.shutdown(local, &mut c.cache)
                {
                    let gen = c.gen;
                    self.send(
                        LinkId::Cs(slot, server),
                        Msg::LeaseReq {
                            proc_: p,
                            server,
                            slot,
                            gen,
                            send: local,
                            request: Box::new(request),
                        },
                    );
                }
            }
        } else {
            self.stats.client_crashes += 1;
        }
        let c = &mut self.clients[slot];
        c.up = false;
        c.gen += 1;
        c.policy = None;
        c.cache.in_use.iter_mut().for_each(|x| *x = 0);
        c.cache.valid_until = 0;
        self.procs[p].alive = false;
        self.procs[p].issued.clear();
        if !self.draining {
            let t = self.now + self.rng.gen_range(500..=30_000);
            self.at(t, Ev::ClientStart { slot });
        }
    }

    /// Runs the policy now and schedules its next poll.
    fn poll_client(&mut self, slot: usize) {
        let c = &mut self.clients[slot];
        let local = c.clock.local(self.now);
        let woken = std::mem::take(&mut c.wake);
        let Some(mut p) = c.policy.take() else {
            return;
        };
        let before = self
            .recording(slot)
            .then(|| self.clients[slot].cache.clone());
        let c = &mut self.clients[slot];
        let actions = p.poll(local, woken, &mut c.cache);
        if let Some(before) = before {
            let after = c.cache.clone();
            self.policy_log.push(PolicyCall {
                call: Call::Poll { now: local, woken },
                before,
                actions: actions.clone(),
                after,
            });
        }
        self.clients[slot].policy = Some(p);
        self.execute(slot, actions, None);
        self.schedule_poll(slot);
    }

    /// Whether the policy calls of this slot are recorded: the first process of slot 0,
    /// when the configuration asks for it.
    fn recording(&self, slot: usize) -> bool {
        self.cfg.record_policy && slot == 0 && self.clients[0].proc_ == self.first_proc_of_slot0
    }

    fn schedule_poll(&mut self, slot: usize) {
        let now = self.now;
        let c = &mut self.clients[slot];
        let Some(p) = c.policy.as_ref() else {
            return;
        };
        let local = c.clock.local(now);
        let at = if c.wake != 0 {
            local
        } else {
            p.next_wake(local)
        };
        let t = now + c.clock.true_dur(at.saturating_sub(local));
        if c.poll_queued && c.next_poll == t {
            return;
        }
        c.next_poll = t;
        c.poll_queued = true;
        let gen = c.gen;
        self.at(t, Ev::ClientPoll { slot, gen });
    }

    /// The cache woke the refresher.
    fn wake(&mut self, slot: usize, why: u8) {
        let c = &mut self.clients[slot];
        if c.wake & why == why {
            return;
        }
        c.wake |= why;
        self.schedule_poll(slot);
    }

    fn execute(&mut self, slot: usize, actions: Vec<Action>, answered: Option<(usize, u64)>) {
        let now = self.now;
        for action in actions {
            match action {
                Action::Send { server, request } => {
                    let c = &mut self.clients[slot];
                    let local = c.clock.local(now);
                    c.sent_asks[server] = Some((request.seq, c.asks_registered));
                    let (gen, proc_) = (c.gen, c.proc_);
                    self.send(
                        LinkId::Cs(slot, server),
                        Msg::LeaseReq {
                            proc_,
                            server,
                            slot,
                            gen,
                            send: local,
                            request: Box::new(request),
                        },
                    );
                }
                Action::Abandon { .. } => {}
                Action::Install { server, .. } => {
                    let c = &mut self.clients[slot];
                    if let (Some((s, seq)), Some((sent_seq, reg))) = (answered, c.sent_asks[server])
                    {
                        if s == server && sent_seq == seq {
                            c.asks_covered = c.asks_covered.max(reg);
                        }
                    }
                    self.serve_waiters(slot);
                }
                Action::Event(e) => match e {
                    Event::FailedOver { .. } | Event::BackupChanged { .. } => {
                        self.stats.failovers += 1;
                    }
                    Event::Returned { .. } => self.stats.returns_to_primary += 1,
                    _ => {}
                },
            }
        }
    }

    /// Calls waiting for the server take what was installed, or are denied once an answer
    /// covered their ask and left nothing.
    fn serve_waiters(&mut self, slot: usize) {
        let now = self.now;
        let mut keep = VecDeque::new();
        while let Some(w) = self.clients[slot].waiters.pop_front() {
            let c = &mut self.clients[slot];
            let local = c.clock.local(now);
            if let Some(headroom) = c.cache.take(local, w.feature) {
                c.cache.waiting[w.feature] -= 1;
                self.granted(slot, w.feature, headroom, w.hold);
            } else if c.asks_covered >= w.reg || !c.cache.valid(local) {
                self.deny_waiter(slot, &w);
            } else {
                keep.push_back(w);
            }
        }
        self.clients[slot].waiters = keep;
    }

    fn deny_waiter(&mut self, slot: usize, w: &Waiter) {
        let c = &mut self.clients[slot];
        c.cache.waiting[w.feature] = c.cache.waiting[w.feature].saturating_sub(1);
        c.cache.denied[w.feature] += 1;
        let p = c.proc_;
        self.procs[p].denied += 1;
        if w.counted {
            self.stats.denied += 1;
            if self.total_in_use(w.feature) < self.servers[PRIMARY].counts[w.feature] {
                self.stats.false_denials += 1;
                if std::env::var_os("SIM_FALSE").is_some() {
                    let f = &self.features[w.feature];
                    let a = self.servers[PRIMARY].alloc.as_ref();
                    let views: Vec<String> = a
                        .map(|a| {
                            a.clients()
                                .iter()
                                .map(|v| {
                                    let x = v.features[f];
                                    format!(
                                        "q{} r{} u{} w{}",
                                        x.quota, x.reserved, x.in_use, x.want
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let caches: Vec<String> = self
                        .clients
                        .iter()
                        .map(|c| {
                            format!(
                                "q{} u{} wait{}",
                                c.cache.quota[0], c.cache.in_use[0], c.cache.waiting[0]
                            )
                        })
                        .collect();
                    println!(
                        "FALSE t={} slot={slot} total_in_use={} server={views:?} caches={caches:?}",
                        self.now,
                        self.total_in_use(w.feature)
                    );
                }
            }
        }
    }

    /// A license taken from the cache: counted, and the refresher woken at low water.
    fn granted(&mut self, slot: usize, f: usize, headroom: u32, hold: Option<u64>) {
        let now = self.now;
        let c = &mut self.clients[slot];
        c.cache.acquired[f] += 1;
        let low = headroom <= c.cache.low_water[f];
        let (gen, p) = (c.gen, c.proc_);
        self.procs[p].acquired += 1;
        self.stats.acquisitions += 1;
        if let Some(hold) = hold {
            self.at(now + hold, Ev::CallEnd { slot, gen });
            let total = self.total_in_use(f);
            self.stats.max_in_use = self.stats.max_in_use.max(total);
        }
        if low {
            self.wake(slot, policy::wake::EARLY);
        }
    }

    fn release_one(&mut self, slot: usize, f: usize) {
        let c = &mut self.clients[slot];
        if c.cache.in_use[f] == 0 {
            return;
        }
        c.cache.in_use[f] -= 1;
        let headroom = c.cache.quota[f].saturating_sub(c.cache.in_use[f]);
        if headroom > c.cache.give_back_above[f] {
            self.wake(slot, policy::wake::GIVE_BACK);
        }
    }

    fn total_in_use(&self, f: usize) -> u32 {
        self.clients
            .iter()
            .filter(|c| c.up)
            .map(|c| c.cache.in_use[f])
            .sum()
    }

    /// Licenses of feature `f` in use at clients whose lease is from server `s`.
    fn in_use_under(&self, s: usize, f: usize) -> u32 {
        let now = self.now;
        self.clients
            .iter()
            .filter(|c| c.up && c.lease_from(c.clock.local(now)) == Some(s))
            .map(|c| c.cache.in_use[f])
            .sum()
    }

    /// One acquire attempt: from the cache, or asking the server (deny-wait).
    fn acquire(&mut self, slot: usize, f: usize, hold: Option<u64>, counted: bool) {
        let now = self.now;
        let c = &mut self.clients[slot];
        let local = c.clock.local(now);
        if counted {
            self.stats.calls += 1;
        }
        if let Some(headroom) = c.cache.take(local, f) {
            self.granted(slot, f, headroom, hold);
            return;
        }
        let sharing = c.cache.valid(local) && c.cache.sharing[f];
        if sharing && c.deny_wait_ms > 0 {
            c.cache.waiting[f] += 1;
            c.asks_registered += 1;
            let id = self.next_id + 1;
            self.next_id += 1;
            let w = Waiter {
                id,
                feature: f,
                reg: c.asks_registered,
                hold,
                counted,
            };
            c.waiters.push_back(w);
            let (gen, wait) = (c.gen, c.clock.true_dur(c.deny_wait_ms));
            if counted {
                self.stats.waited += 1;
            }
            self.at(now + wait, Ev::WaitTimeout { slot, gen, id });
            self.wake(slot, policy::wake::ASK);
            return;
        }
        c.cache.denied[f] += 1;
        let p = c.proc_;
        self.procs[p].denied += 1;
        if counted {
            self.stats.denied += 1;
            let s = self.clients[slot].lease_from(local).unwrap_or(PRIMARY);
            let in_use = if self.cfg.calls.is_some() {
                self.total_in_use(f)
            } else {
                self.in_use_under(s, f)
            };
            if in_use < self.servers[s].counts[f] {
                self.stats.false_denials += 1;
            }
        }
        if sharing {
            self.wake(slot, policy::wake::EARLY);
        }
    }

    fn work(&mut self, slot: usize) {
        let nf = self.features.len();
        let quiet = self.quiet();
        for f in 0..nf {
            let r: u32 = self.rng.gen_range(0..10);
            let c = &self.clients[slot];
            let target = if quiet { 0 } else { c.target[f] };
            let in_use = c.cache.in_use[f] + c.cache.waiting[f];
            let up = in_use < target || (in_use == target && r < 3 && !quiet);
            let down = in_use > target || (in_use == target && r >= 7);
            if up {
                self.acquire(slot, f, None, true);
            } else if down && self.clients[slot].cache.in_use[f] > 0 {
                self.release_one(slot, f);
            }
        }
        let gen = self.clients[slot].gen;
        let d = self.rng.gen_range(200..=1_500);
        let t = self.now + self.clients[slot].clock.true_dur(d);
        self.at(t, Ev::ClientWork { slot, gen });
    }

    /// A call of the calls load: acquire at a random client, hold for an exponential time.
    fn call_arrive(&mut self) {
        let Some(load) = self.cfg.calls else {
            return;
        };
        if self.quiet() {
            return;
        }
        let counted = self.now >= crate::CALLS_START_MS + load.warmup_ms;
        let slot = self.rng.gen_range(0..self.clients.len());
        let hold = exp_ms(&mut self.rng, load.hold_ms as f64);
        if self.clients[slot].up {
            self.acquire(slot, 0, Some(hold), counted);
        }
        let gap = exp_ms(&mut self.rng, load.hold_ms as f64 / load.erlangs);
        self.at(self.now + gap, Ev::CallArrive);
    }

    // ---------------------------------------------------------------------------------
    // Faults

    fn fault_link(&mut self, link: LinkId, state: LinkState, dur: u64) {
        self.stats.link_faults += 1;
        let epoch = self.id();
        if let Some(l) = self.links.get_mut(&link) {
            l.state = state;
            l.epoch = epoch;
        }
        self.at(self.now + dur, Ev::Heal { link, epoch });
    }

    fn chaos(&mut self) {
        let n = self.clients.len();
        let c = self.rng.gen_range(0..n);
        let s = if self.rng.gen_bool(0.7) {
            PRIMARY
        } else {
            BACKUP
        };
        match self.rng.gen_range(0..100) {
            0..=29 => {
                let d = self.rng.gen_range(1_000..=150_000);
                self.fault_link(LinkId::Cs(c, s), LinkState::Cut, d);
            }
            30..=37 => {
                let d = self.rng.gen_range(5_000..=60_000);
                self.fault_link(LinkId::Cs(c, s), LinkState::Slow, d);
            }
            38..=47 => {
                let d = self.rng.gen_range(10_000..=200_000);
                self.fault_link(LinkId::Cs(c, PRIMARY), LinkState::Cut, d);
                self.fault_link(LinkId::Cs(c, BACKUP), LinkState::Cut, d);
            }
            48..=53 => {
                let d = self.rng.gen_range(10_000..=300_000);
                let state = if self.rng.gen_bool(0.5) {
                    LinkState::Cut
                } else {
                    LinkState::Slow
                };
                self.fault_link(LinkId::Sn(s), state, d);
            }
            54..=63 => self.crash_server(s),
            64..=71 => self.stop_client(c, false),
            72..=75 => self.stop_client(c, true),
            _ => {
                let f = self.rng.gen_range(0..self.features.len());
                let max = self.servers[PRIMARY].counts[f] + 2;
                self.clients[c].target[f] = self.rng.gen_range(0..=max);
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Invariants

    /// Tracks reachability since when, overlap and backup episodes, after every event.
    fn update_views(&mut self) {
        let now = self.now;
        let mut in_use_on = [false; 2];
        for c in 0..self.clients.len() {
            for s in 0..2 {
                let r = self.reachable(c, s);
                let cl = &mut self.clients[c];
                if r {
                    cl.unreach_since[s] = None;
                    cl.good_since[s].get_or_insert(now);
                } else {
                    cl.good_since[s] = None;
                    cl.unreach_since[s].get_or_insert(now);
                }
            }
            let backup_ok = self.reachable(c, BACKUP);
            let cl = &mut self.clients[c];
            if !cl.up {
                cl.backup_episode = None;
                continue;
            }
            let local = cl.clock.local(now);
            let using = cl.cache.in_use.iter().any(|n| *n > 0);
            let from = cl.lease_from(local);
            if using {
                if let Some(s) = from {
                    in_use_on[s] = true;
                }
            }
            if using && from == Some(BACKUP) && cl.on_backup() && backup_ok {
                let since = *cl.backup_episode.get_or_insert(now);
                if now - since >= OVERLAP_EPISODE_MS && self.backup_use_expected.is_none() {
                    self.backup_use_expected = Some((c, since));
                }
            } else {
                cl.backup_episode = None;
            }
        }
        self.in_use_on = in_use_on;
    }

    fn check(&mut self) -> Result<(), Broken> {
        if let Some(b) = self.broken.take() {
            return Err(b);
        }
        self.check_allocation()?;
        self.check_clients()?;
        self.check_usage()?;
        if let Some(why) = self.refused.take() {
            return Err((Invariant::OneInstance, why));
        }
        Ok(())
    }

    /// §4.1(a), per server and feature: what each client holds under a valid lease of the
    /// server (its installed quota, lowered as it lowered it) or may still install (the
    /// answer to the request its policy waits for), summed, never exceeds the count.
    fn check_allocation(&mut self) -> Result<(), Broken> {
        let now = self.now;
        let clients = &self.clients;
        for (pi, p) in self.procs.iter_mut().enumerate() {
            let c = &clients[p.slot];
            let local = c.clock.local(now);
            let policy = c.policy.as_ref().filter(|_| p.alive && c.proc_ == pi);
            p.issued.retain(|g| {
                g.until > local
                    && local <= g.send + TIMEOUT_MS
                    && policy.is_some_and(|pol| pol.outstanding(g.server) == Some(g.seq))
            });
        }
        for (s, server_name) in SERVER_NAMES.iter().enumerate() {
            for f in 0..self.features.len() {
                let count = self.servers[s].counts[f];
                let mut total = 0u64;
                let mut detail = Vec::new();
                for (pi, p) in self.procs.iter().enumerate() {
                    if !p.alive {
                        continue;
                    }
                    let c = &self.clients[p.slot];
                    if c.proc_ != pi || !c.up {
                        continue;
                    }
                    let local = c.clock.local(now);
                    let installed = if c.lease_from(local) == Some(s) {
                        c.cache.quota[f]
                    } else {
                        0
                    };
                    let pending = p
                        .issued
                        .iter()
                        .filter(|g| g.server == s)
                        .map(|g| g.quotas[f])
                        .max()
                        .unwrap_or(0);
                    let exposure = installed.max(pending);
                    total += u64::from(exposure);
                    if exposure > 0 {
                        detail.push(format!(
                            "client {} ({}) holds quota {installed} under a valid lease and may install {pending} more (grants {:?})",
                            p.slot,
                            p.id,
                            p.issued
                                .iter()
                                .filter(|g| g.server == s)
                                .map(|g| (g.seq, g.quotas[f], g.at, g.server_gen))
                                .collect::<Vec<_>>()
                        ));
                    }
                }
                if count > 0 {
                    let per_mille = total * 1000 / u64::from(count);
                    self.stats.peak_allocation_per_mille =
                        self.stats.peak_allocation_per_mille.max(per_mille);
                }
                if total > u64::from(count) {
                    return Err((
                        Invariant::NeverOverAllocate,
                        format!(
                            "{} server, feature {}: quotas of unexpired leases sum to {total} > licensed count {count}: {}",
                            server_name,
                            self.features[f],
                            detail.join("; ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// §4.1(b) and §4.2, per client.
    fn check_clients(&mut self) -> Result<(), Broken> {
        let now = self.now;
        for (i, c) in self.clients.iter_mut().enumerate() {
            if !c.up {
                continue;
            }
            let local = c.clock.local(now);
            for f in 0..c.cache.in_use.len() {
                let valid = c.cache.valid_quota(local, f);
                if c.cache.in_use[f] > c.checked_in_use[f] && c.cache.in_use[f] > valid {
                    return Err((
                        Invariant::ClientGrantsWithinLease,
                        format!(
                            "client {i}: in use of feature {f} grew to {} beyond its valid quota {valid}",
                            c.cache.in_use[f]
                        ),
                    ));
                }
                c.checked_in_use[f] = c.cache.in_use[f];
            }
            // Failover: the primary unreachable since tp, the backup reachable without loss
            // since tb. The last good answer of the primary arrived at most a one-way delay
            // after tp; failover_after later the policy tries the backups (a refresh later
            // if a round of them had just failed); the backup answers within a round trip,
            // or its request times out and the next round comes a refresh later.
            if !c.on_backup() {
                if let (Some(tp), Some(tb)) = (c.unreach_since[PRIMARY], c.good_since[BACKUP]) {
                    let tp = tp.max(c.started_at);
                    let t0 = tb.max(c.started_at);
                    let deadline = (t0 + slow(REFRESH_MS + TIMEOUT_MS))
                        .max(tp + slow(GOOD_DELAY_MAX_MS + FAILOVER_MS))
                        + slow(TIMEOUT_MS + REFRESH_MS + RTT_MAX_MS)
                        + 10;
                    if now >= deadline {
                        return Err((
                            Invariant::Failover,
                            format!(
                                "client {i}: primary unreachable since t = {:.3} s and backup reachable since t = {:.3} s, but still on the primary at t = {:.3} s (bound t = {:.3} s)",
                                tp as f64 / 1000.0,
                                t0 as f64 / 1000.0,
                                now as f64 / 1000.0,
                                deadline as f64 / 1000.0
                            ),
                        ));
                    }
                }
            }
            // Flush: no server reachable since t; the last good answer was sent before t, so
            // the lease ends within its length (by the client's clock).
            if let (Some(a), Some(b)) = (c.unreach_since[PRIMARY], c.unreach_since[BACKUP]) {
                let t = a.max(b).max(c.started_at);
                let deadline = t + slow(LEASE_MS) + 10;
                if now >= deadline && c.lease_from(local).is_some() {
                    return Err((
                        Invariant::Flush,
                        format!(
                            "client {i}: no server reachable since t = {:.3} s, yet at t = {:.3} s it still holds a valid lease and serves new requests",
                            t as f64 / 1000.0,
                            now as f64 / 1000.0
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// §4.7 at the node.
    fn check_usage(&self) -> Result<(), Broken> {
        if let Some(why) = &self.node.conflict {
            return Err((Invariant::NothingLost, why.clone()));
        }
        for (&(s, seq), c) in &self.created {
            let at_node = self.node.stored.get(&(s, seq));
            let on_disk = self.servers[s].disk.unacked.get(&seq);
            if at_node != Some(c) && on_disk != Some(c) {
                return Err((
                    Invariant::NothingLost,
                    format!(
                        "usage bucket {seq} of the {} server is lost: neither at the node ({at_node:?}) nor on the server's disk ({on_disk:?}); it was {c:?}",
                        SERVER_NAMES[s]
                    ),
                ));
            }
        }
        let mut total = 0;
        for (&(s, seq), c) in &self.node.stored {
            if self.created.get(&(s, seq)) != Some(c) {
                return Err((
                    Invariant::NothingLost,
                    format!(
                        "the node holds bucket {seq} of the {} server as {c:?}, which that server never made",
                        SERVER_NAMES[s]
                    ),
                ));
            }
            total += c.grants;
        }
        if total != self.node.total_grants {
            return Err((
                Invariant::NothingLost,
                format!(
                    "the node counted {} grants but its buckets hold {total}: a bucket was counted twice",
                    self.node.total_grants
                ),
            ));
        }
        Ok(())
    }
}
