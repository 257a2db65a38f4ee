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
    Allocator, ClientRequest, Fault, PersistedLeases, PoolLicense, Serving, Start, HOLD_MS,
    LEASE_MS,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Config, Failure, Invariant, PlantedBug, DRAIN_MS, QUIET_MS};

mod client;
mod clocks;
mod invariants;
mod network;
mod node;
mod server;

use clocks::{slow, Clock};

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
    /// Reservation bounds and client counts as persisted.
    leases: PersistedLeases,
    /// True time of the last persist (the real server's heartbeat).
    persisted_at: Option<u64>,
    /// True time until which the last process that started learning was learning.
    learning_until: u64,
    /// Ground truth for the usage invariant: calls counted per client process, as persisted.
    proc_counted: BTreeMap<usize, (u64, u64)>,
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
                    leases: PersistedLeases::default(),
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
}
