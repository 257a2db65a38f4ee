//! The simulated world: hosts, clocks, network, faults, and the invariant checks.
//!
//! Time: one global true time in ms. Every host has a clock `local(t) = skew + t·(1 + drift)`
//! with |drift| ≤ 0.5 %, which drives its monotonic timers (refresh, timeouts, lease
//! validity, server holds, sync intervals).
//!
//! Network: every (client, server) pair and every (server, node) pair is a link that is
//! good (one-way delay 0–1.5 s, 1 % of messages dropped), slow (4.5–15 s, so every answer
//! outlives the client's 4 s request timeout) or cut (everything dropped). Faults cut or slow
//! links, isolate clients, crash servers (their process stops answering: requests are refused
//! at once; the disk survives) and crash or cleanly stop clients, each for a random time.
//!
//! Clients model the client library's refresher (crates/client/src/refresher.rs): a tick every
//! 2 s; on the primary, one request, and after 10 s without a good primary answer (counted from
//! the send time of the last good one) a request to the backup marked `failover`; in failover,
//! a probe to the primary and a request to the backup in parallel, back to the primary (and a
//! `DELETE` to the backup) on the first good primary answer; requests time out after 4 s; a
//! lease is valid until its send time + 120 s by the client's clock; `acquire` only under a
//! valid lease and within the quota.

use std::collections::{BTreeMap, VecDeque};

use chrono::NaiveDate;
use leasehold_node::chain::{decide, ChainStep, TokenLookup};
use leasehold_proto::{ClientId, Feature, FeatureRequest, InstanceId};
use leasehold_server::allocator::{Allocator, ClientRequest, PoolLicense, Serving, LEASE_MS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Config, Failure, Invariant, PlantedBug};

const REFRESH_MS: u64 = 2_000;
const FAILOVER_MS: u64 = 10_000;
const TIMEOUT_MS: u64 = 4_000;
const GOOD_DELAY_MAX_MS: u64 = 1_500;
/// Round trip on a good link.
const RTT_MAX_MS: u64 = 2 * GOOD_DELAY_MAX_MS;
const SLOW_DELAY_MS: (u64, u64) = (4_500, 15_000);
const DROP_PER_MILLE: u32 = 10;
const DRIFT_MAX_PPM: i64 = 5_000;
const SYNC_TIMEOUT_MS: u64 = 35_000;
const BUCKET_MS: u64 = 60_000;
const HOUSEKEEP_MS: u64 = 5_000;
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
    /// Grants in the servers' usage (node + disks). Can differ from `acquisitions`: a restarted
    /// server only takes a baseline of a client's running totals, and a backup counts a
    /// failing-over client's totals from its first report.
    pub grants_reported: u64,
    /// True time during which clients used licenses under both primary and backup leases.
    pub overlap_ms: u64,
    pub backup_use_ms_reported: u64,
    /// Calls (acquire attempts) counted: all of them, or after the warm-up of a calls load.
    pub calls: u64,
    /// Calls denied by the client's cache.
    pub denied: u64,
    /// Denials made while fewer licenses than the count were in use on the client's server.
    pub false_denials: u64,
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
    /// The open bucket, written through on every change.
    open: Counts,
    unacked: BTreeMap<u64, Counts>,
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
    next_close: u64,
    next_sync: u64,
    sync_interval: u64,
    inflight: Option<u64>,
}

#[derive(Debug, Clone)]
struct Grant {
    /// Client-local send time of the request.
    send: u64,
    /// Client-local end of validity.
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
    /// Grants each server made to this process, whether or not the answer arrived.
    issued: [Vec<Grant>; 2],
    /// Grants from server `s` for requests sent before this client-local time are
    /// superseded: the client installed a later answer, so it will never use them (a client
    /// acquires only under the answer it installed last).
    superseded: [u64; 2],
    /// The process gave its quota back to this server on a clean shutdown.
    released: [bool; 2],
    /// Send time of the latest request each server processed from it.
    last_seen: [u64; 2],
}

#[derive(Debug, Clone)]
struct Lease {
    server: usize,
    until: u64,
    quotas: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Pending {
    req: u64,
    send: u64,
    /// `Some(Some(quotas))` good answer, `Some(None)` failed.
    result: Option<Option<Vec<u32>>>,
}

#[derive(Debug, Clone)]
enum Phase {
    Idle,
    Primary(Pending),
    TryBackup(Pending),
    Pair(Pending, Pending),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Primary,
    Failover,
}

#[derive(Debug)]
struct Client {
    up: bool,
    gen: u64,
    proc_: usize,
    clock: Clock,
    started_at: u64,
    mode: Mode,
    primary_ok_at: u64,
    lease: Option<Lease>,
    in_use: Vec<u32>,
    peak: Vec<u32>,
    acquired: Vec<u64>,
    denied: Vec<u64>,
    denied_seen: Vec<u64>,
    denied_pending: Vec<u64>,
    /// In use after the previous check, for §4.1(b).
    checked_in_use: Vec<u32>,
    phase: Phase,
    tick_start: u64,
    /// True time of the next scheduled tick (a queued tick at another time is stale).
    next_tick: u64,
    /// A denial asked for an early refresh while a request was in flight.
    early_wanted: bool,
    target: Vec<u32>,
    /// True time since which each server has been unreachable (down, link cut or slow).
    unreach_since: [Option<u64>; 2],
    /// True time since which each server has been reachable with no message lost.
    good_since: [Option<u64>; 2],
    backup_episode: Option<u64>,
}

impl Client {
    fn valid_quota(&self, local: u64, f: usize) -> u32 {
        self.lease
            .as_ref()
            .filter(|l| local < l.until)
            .map_or(0, |l| l.quotas[f])
    }

    fn lease_from(&self, local: u64) -> Option<usize> {
        self.lease
            .as_ref()
            .filter(|l| local < l.until)
            .map(|l| l.server)
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
        req: u64,
        send: u64,
        failover: bool,
        features: Vec<FeatureRequest>,
    },
    LeaseResp {
        slot: usize,
        gen: u64,
        req: u64,
        quotas: Option<Vec<u32>>,
    },
    Release {
        proc_: usize,
        server: usize,
        /// Client-local send time.
        send: u64,
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
    ClientTick {
        slot: usize,
        gen: u64,
    },
    ClientWork {
        slot: usize,
        gen: u64,
    },
    /// A call of the calls load arrives (at a client picked at random).
    CallArrive,
    /// A call of the calls load ends and releases its license.
    CallEnd {
        slot: usize,
        gen: u64,
    },
    ClientTimeout {
        slot: usize,
        gen: u64,
        req: u64,
    },
    ClientStart {
        slot: usize,
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
        msg: Msg,
    },
    Chaos,
    Heal {
        link: LinkId,
        epoch: u64,
    },
}

type Broken = (Invariant, String);

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
}

/// Exponentially distributed with the given mean, in whole ms (at least 1).
fn exp_ms(rng: &mut StdRng, mean: f64) -> u64 {
    let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    ((-u.ln() * mean) as u64).max(1)
}

fn feature(name: &str) -> Feature {
    Feature::parse(name).unwrap_or_else(|e| panic!("bad feature {name}: {e}"))
}

/// The client library's `want`: what is held plus bounded headroom.
fn want(in_use: u32, peak: u32, recent_denials: u64) -> u32 {
    let held = in_use.max(peak);
    let base = u64::from((held / 4).max(1));
    let cap = u64::from(held.max(8));
    let headroom = u32::try_from((base + recent_denials).min(cap)).unwrap_or(u32::MAX);
    held.saturating_add(headroom)
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
                },
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
                mode: Mode::Primary,
                primary_ok_at: 0,
                lease: None,
                in_use: vec![0; nf],
                peak: vec![0; nf],
                acquired: vec![0; nf],
                denied: vec![0; nf],
                denied_seen: vec![0; nf],
                denied_pending: vec![0; nf],
                checked_in_use: vec![0; nf],
                phase: Phase::Idle,
                tick_start: 0,
                next_tick: 0,
                early_wanted: false,
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

    pub(crate) fn run(mut self) -> Result<Stats, Box<Failure>> {
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
            self.update_views();
            if let Err((inv, msg)) = self.check() {
                return Err(self.failure(inv, msg));
            }
        }
        self.finish()
    }

    fn finish(mut self) -> Result<Stats, Box<Failure>> {
        let mut grants = 0;
        let mut backup_use = 0;
        for ((s, _), c) in &self.node.stored {
            grants += c.grants;
            if *s == BACKUP {
                backup_use += c.backup_use_ms;
            }
        }
        for (s, server) in self.servers.iter().enumerate() {
            for c in server.disk.unacked.values().chain([&server.disk.open]) {
                grants += c.grants;
                if s == BACKUP {
                    backup_use += c.backup_use_ms;
                }
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
        Ok(self.stats)
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
            Some(d) => self.at(self.now + d, Ev::Deliver { link, msg }),
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
            Ev::ClientStart { slot } => self.start_client(slot),
            Ev::ClientTick { slot, gen } => {
                let c = &self.clients[slot];
                if c.up && c.gen == gen && c.next_tick == self.now {
                    self.tick(slot);
                }
            }
            Ev::CallArrive => self.call_arrive(),
            Ev::CallEnd { slot, gen } => {
                let c = &mut self.clients[slot];
                if c.up && c.gen == gen && c.in_use[0] > 0 {
                    c.in_use[0] -= 1;
                }
            }
            Ev::ClientWork { slot, gen } => {
                if self.clients[slot].up && self.clients[slot].gen == gen {
                    self.work(slot);
                }
            }
            Ev::ClientTimeout { slot, gen, req } => {
                if self.clients[slot].up && self.clients[slot].gen == gen {
                    self.resolve(slot, req, None);
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
                    self.deliver(msg);
                }
            }
            Ev::Chaos => {
                self.chaos();
                let t = self.chaos_delay();
                self.at(t, Ev::Chaos);
            }
            Ev::Heal { link, epoch } => {
                if let Some(l) = self.links.get_mut(&link) {
                    if l.epoch == epoch {
                        l.state = LinkState::Good;
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
                req,
                send,
                failover,
                features,
            } => {
                let quotas = self.serve(s, proc_, send, failover, &features);
                self.send(
                    LinkId::Cs(slot, s),
                    Msg::LeaseResp {
                        slot,
                        gen,
                        req,
                        quotas,
                    },
                );
            }
            Msg::LeaseResp {
                slot,
                gen,
                req,
                quotas,
            } => {
                if self.clients[slot].up && self.clients[slot].gen == gen {
                    self.resolve(slot, req, quotas);
                }
            }
            Msg::Release {
                proc_,
                server: s,
                send,
            } => {
                let id = self.procs[proc_].id.clone();
                if self.cfg.fixes.release_ordered && self.procs[proc_].last_seen[s] > send {
                    return;
                }
                if let Some(a) = self.servers[s].alloc.as_mut() {
                    a.release(&id);
                }
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
        let server = &mut self.servers[s];
        let local = server.clock.local(self.now);
        let mut alloc = Allocator::new(local, restarted, server.backup);
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
            Some(PlantedBug::Hold100s) => {
                leasehold_server::allocator::HOLD_MS.saturating_sub(100_000)
            }
            None => 0,
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
            if !server.disk.open.is_empty() {
                let seq = server.disk.next_seq;
                server.disk.next_seq += 1;
                let bucket = std::mem::take(&mut server.disk.open);
                server.disk.unacked.insert(seq, bucket);
                self.created.insert((s, seq), bucket);
                self.stats.buckets_created += 1;
            }
        }
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
        failover: bool,
        features: &[FeatureRequest],
    ) -> Option<Vec<u32>> {
        let early = self.expire_early();
        let now = self.now;
        let feats = self.features.clone();
        let id = self.procs[proc_].id.clone();
        let release = self.release;
        let server = &mut self.servers[s];
        let local = server.clock.local(now);
        let server_gen = server.gen;
        let alloc = server.alloc.as_mut()?;
        self.stats.lease_requests += 1;
        if early > 0 {
            alloc.expire(local + early);
        }
        let map: BTreeMap<Feature, FeatureRequest> = feats
            .iter()
            .cloned()
            .zip(features.iter().cloned())
            .collect();
        let req = ClientRequest {
            client: &id,
            product_release: release,
            features: &map,
            failover,
        };
        let (answers, usage) = alloc.request(local, &req, &Serving::Yes);
        let seen = &mut self.procs[proc_].last_seen[s];
        *seen = (*seen).max(send);
        let quotas: Vec<u32> = feats
            .iter()
            .map(|f| answers.get(f).map_or(0, |a| a.quota))
            .collect();
        let peak = feats.iter().map(|f| alloc.in_use(f)).max().unwrap_or(0);
        let open = &mut server.disk.open;
        for d in usage.values() {
            open.grants += d.acquired;
            open.denials += d.denied;
            if server.backup {
                open.backup_use_ms += d.failover_use_ms;
            }
        }
        open.peak = open.peak.max(peak);
        if quotas.iter().any(|q| *q > 0) && !self.procs[proc_].released[s] {
            self.stats.grants_issued += 1;
            self.procs[proc_].issued[s].push(Grant {
                send,
                until: send + LEASE_MS,
                quotas: quotas.clone(),
                at: now,
                server_gen,
            });
        }
        Some(quotas)
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
        self.procs.push(Proc {
            slot,
            id: ClientId::from_random(bytes),
            alive: true,
            issued: [Vec::new(), Vec::new()],
            superseded: [0; 2],
            released: [false; 2],
            last_seen: [0; 2],
        });
        self.stats.client_processes += 1;
        let targets: Vec<u32> = (0..nf).map(|_| self.rng.gen_range(0..=6)).collect();
        let now = self.now;
        let c = &mut self.clients[slot];
        let local = c.clock.local(now);
        c.up = true;
        c.gen += 1;
        c.proc_ = p;
        c.started_at = now;
        c.mode = Mode::Primary;
        c.primary_ok_at = local;
        c.lease = None;
        for v in [&mut c.in_use, &mut c.peak, &mut c.checked_in_use] {
            v.iter_mut().for_each(|x| *x = 0);
        }
        for v in [
            &mut c.acquired,
            &mut c.denied,
            &mut c.denied_seen,
            &mut c.denied_pending,
        ] {
            v.iter_mut().for_each(|x| *x = 0);
        }
        c.phase = Phase::Idle;
        c.target = targets;
        c.backup_episode = None;
        let gen = c.gen;
        c.next_tick = now;
        c.early_wanted = false;
        self.at(now, Ev::ClientTick { slot, gen });
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
        if clean {
            // The refresher gives its quota back to the server whose answer it holds.
            if let Some(s) = self.clients[slot].lease_from(local) {
                // It stops using its quota now; whatever that server grants it later (requests
                // still in flight) is never used, and the release may free it.
                self.procs[p].released[s] = true;
                self.procs[p].issued[s].clear();
                self.send(
                    LinkId::Cs(slot, s),
                    Msg::Release {
                        proc_: p,
                        server: s,
                        send: local,
                    },
                );
            }
        } else {
            self.stats.client_crashes += 1;
        }
        let c = &mut self.clients[slot];
        c.up = false;
        c.gen += 1;
        c.phase = Phase::Idle;
        c.lease = None;
        c.in_use.iter_mut().for_each(|x| *x = 0);
        self.procs[p].alive = false;
        let t = self.now + self.rng.gen_range(500..=30_000);
        self.at(t, Ev::ClientStart { slot });
    }

    fn work(&mut self, slot: usize) {
        let nf = self.features.len();
        let now = self.now;
        for f in 0..nf {
            let r: u32 = self.rng.gen_range(0..10);
            let c = &mut self.clients[slot];
            let local = c.clock.local(now);
            let up = c.in_use[f] < c.target[f] || (c.in_use[f] == c.target[f] && r < 3);
            let down = c.in_use[f] > c.target[f] || (c.in_use[f] == c.target[f] && r >= 7);
            if up {
                // §4.1(b): only under an unexpired lease and within the quota.
                self.stats.calls += 1;
                if c.in_use[f] < c.valid_quota(local, f) {
                    c.in_use[f] += 1;
                    c.peak[f] = c.peak[f].max(c.in_use[f]);
                    c.acquired[f] += 1;
                    self.stats.acquisitions += 1;
                } else {
                    c.denied[f] += 1;
                    self.stats.denied += 1;
                    let s = c.lease_from(local).unwrap_or(PRIMARY);
                    if self.in_use_under(s, f) < self.servers[s].counts[f] {
                        self.stats.false_denials += 1;
                    }
                }
            } else if down && c.in_use[f] > 0 {
                c.in_use[f] -= 1;
            }
        }
        let gen = self.clients[slot].gen;
        let d = self.rng.gen_range(200..=1_500);
        let t = now + self.clients[slot].clock.true_dur(d);
        self.at(t, Ev::ClientWork { slot, gen });
    }

    /// Licenses of feature `f` in use at clients whose lease is from server `s`.
    fn in_use_under(&self, s: usize, f: usize) -> u32 {
        let now = self.now;
        self.clients
            .iter()
            .filter(|c| c.up && c.lease_from(c.clock.local(now)) == Some(s))
            .map(|c| c.in_use[f])
            .sum()
    }

    /// A call of the calls load: acquire at a random client, hold for an exponential time.
    fn call_arrive(&mut self) {
        let Some(load) = self.cfg.calls else {
            return;
        };
        let now = self.now;
        let counted = now >= crate::CALLS_START_MS + load.warmup_ms;
        let slot = self.rng.gen_range(0..self.clients.len());
        let hold = exp_ms(&mut self.rng, load.hold_ms as f64);
        let c = &mut self.clients[slot];
        let local = c.clock.local(now);
        if c.up {
            if c.in_use[0] < c.valid_quota(local, 0) {
                c.in_use[0] += 1;
                c.peak[0] = c.peak[0].max(c.in_use[0]);
                c.acquired[0] += 1;
                self.stats.acquisitions += 1;
                let gen = c.gen;
                self.at(now + hold, Ev::CallEnd { slot, gen });
                let total: u32 = self.clients.iter().map(|c| c.in_use[0]).sum();
                self.stats.max_in_use = self.stats.max_in_use.max(total);
                if counted {
                    self.stats.calls += 1;
                }
            } else {
                c.denied[0] += 1;
                if counted {
                    self.stats.calls += 1;
                    self.stats.denied += 1;
                    let total: u32 = self.clients.iter().map(|c| c.in_use[0]).sum();
                    if total < load.licenses {
                        self.stats.false_denials += 1;
                    }
                }
                self.early_refresh(slot);
            }
        }
        let gap = exp_ms(&mut self.rng, load.hold_ms as f64 / load.erlangs);
        self.at(now + gap, Ev::CallArrive);
    }

    /// The client library refreshes early when the cache is full (no sooner than a quarter
    /// of the refresh period after the last one started).
    fn early_refresh(&mut self, slot: usize) {
        let now = self.now;
        let c = &mut self.clients[slot];
        if !matches!(c.phase, Phase::Idle) {
            c.early_wanted = true;
            return;
        }
        let local = c.clock.local(now);
        let at_local = c.tick_start + REFRESH_MS / 4;
        let t = now + c.clock.true_dur(at_local.saturating_sub(local));
        if t < c.next_tick {
            c.next_tick = t;
            let gen = c.gen;
            self.at(t, Ev::ClientTick { slot, gen });
        }
    }

    fn lease_request(&mut self, slot: usize, server: usize, failover: bool, send: u64) -> Pending {
        let nf = self.features.len();
        let foreign = !self.cfg.fixes.quota_per_server;
        let c = &mut self.clients[slot];
        let features: Vec<FeatureRequest> = (0..nf)
            .map(|f| {
                c.denied_pending[f] = c.denied[f];
                FeatureRequest {
                    in_use: c.in_use[f],
                    want: want(
                        c.in_use[f],
                        c.peak[f],
                        c.denied[f].saturating_sub(c.denied_seen[f]),
                    ),
                    quota: if foreign || c.lease_from(send) == Some(server) {
                        c.valid_quota(send, f)
                    } else {
                        0
                    },
                    acquired: c.acquired[f],
                    denied: c.denied[f],
                }
            })
            .collect();
        let (gen, proc_) = (c.gen, c.proc_);
        let clock = c.clock;
        let req = self.id();
        self.send(
            LinkId::Cs(slot, server),
            Msg::LeaseReq {
                proc_,
                server,
                slot,
                gen,
                req,
                send,
                failover,
                features,
            },
        );
        let t = self.now + clock.true_dur(TIMEOUT_MS);
        self.at(t, Ev::ClientTimeout { slot, gen, req });
        Pending {
            req,
            send,
            result: None,
        }
    }

    fn tick(&mut self, slot: usize) {
        let local = self.clients[slot].clock.local(self.now);
        self.clients[slot].tick_start = local;
        let phase = match self.clients[slot].mode {
            Mode::Primary => Phase::Primary(self.lease_request(slot, PRIMARY, false, local)),
            Mode::Failover => {
                let p = self.lease_request(slot, PRIMARY, false, local);
                let b = self.lease_request(slot, BACKUP, true, local);
                Phase::Pair(p, b)
            }
        };
        self.clients[slot].phase = phase;
    }

    fn resolve(&mut self, slot: usize, req: u64, answer: Option<Vec<u32>>) {
        let c = &mut self.clients[slot];
        let mut hit = false;
        let mut set = |p: &mut Pending| {
            if p.req == req && p.result.is_none() {
                p.result = Some(answer.clone());
                hit = true;
            }
        };
        match &mut c.phase {
            Phase::Idle => {}
            Phase::Primary(p) | Phase::TryBackup(p) => set(p),
            Phase::Pair(p, b) => {
                set(p);
                set(b);
            }
        }
        if hit {
            self.advance(slot);
        }
    }

    fn advance(&mut self, slot: usize) {
        let local = self.clients[slot].clock.local(self.now);
        let phase = self.clients[slot].phase.clone();
        match phase {
            Phase::Idle => {}
            Phase::Primary(p) => match p.result {
                None => {}
                Some(Some(q)) => {
                    self.clients[slot].primary_ok_at = p.send;
                    self.install(slot, PRIMARY, p.send, q);
                    self.end_tick(slot);
                }
                Some(None) => {
                    if local.saturating_sub(self.clients[slot].primary_ok_at) >= FAILOVER_MS {
                        let b = self.lease_request(slot, BACKUP, true, local);
                        self.clients[slot].phase = Phase::TryBackup(b);
                    } else {
                        self.end_tick(slot);
                    }
                }
            },
            Phase::TryBackup(b) => match b.result {
                None => {}
                Some(Some(q)) => {
                    self.install(slot, BACKUP, b.send, q);
                    self.clients[slot].mode = Mode::Failover;
                    self.stats.failovers += 1;
                    self.end_tick(slot);
                }
                Some(None) => self.end_tick(slot),
            },
            Phase::Pair(p, b) => {
                let (Some(pr), Some(br)) = (p.result, b.result) else {
                    return;
                };
                if let Some(q) = pr {
                    self.clients[slot].primary_ok_at = p.send;
                    self.install(slot, PRIMARY, p.send, q);
                    self.clients[slot].mode = Mode::Primary;
                    self.stats.returns_to_primary += 1;
                    let proc_ = self.clients[slot].proc_;
                    self.send(
                        LinkId::Cs(slot, BACKUP),
                        Msg::Release {
                            proc_,
                            server: BACKUP,
                            send: local,
                        },
                    );
                } else if let Some(q) = br {
                    self.install(slot, BACKUP, b.send, q);
                }
                self.end_tick(slot);
            }
        }
    }

    fn install(&mut self, slot: usize, server: usize, send: u64, quotas: Vec<u32>) {
        let c = &mut self.clients[slot];
        c.lease = Some(Lease {
            server,
            until: send + LEASE_MS,
            quotas,
        });
        for f in 0..c.in_use.len() {
            c.peak[f] = c.in_use[f];
            c.denied_seen[f] = c.denied_pending[f];
        }
        // Every answer to a request sent before this one, from either server, and the other
        // server's answer to a request sent at the same moment, will never be installed.
        let p = &mut self.procs[c.proc_];
        let other = 1 - server;
        p.superseded[server] = p.superseded[server].max(send);
        p.superseded[other] = p.superseded[other].max(send + 1);
    }

    fn end_tick(&mut self, slot: usize) {
        let c = &mut self.clients[slot];
        c.phase = Phase::Idle;
        let local = c.clock.local(self.now);
        let gap = if std::mem::take(&mut c.early_wanted) {
            REFRESH_MS / 4
        } else {
            REFRESH_MS
        };
        let next = c.tick_start + gap;
        let t = self.now + c.clock.true_dur(next.saturating_sub(local));
        let gen = c.gen;
        c.next_tick = t;
        self.at(t, Ev::ClientTick { slot, gen });
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
            let using = cl.in_use.iter().any(|n| *n > 0);
            let from = cl.lease_from(local);
            if using {
                if let Some(s) = from {
                    in_use_on[s] = true;
                }
            }
            if using && from == Some(BACKUP) && cl.mode == Mode::Failover && backup_ok {
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
        self.check_allocation()?;
        self.check_clients()?;
        self.check_usage()?;
        if let Some(why) = self.refused.take() {
            return Err((Invariant::OneInstance, why));
        }
        Ok(())
    }

    /// §4.1(a), per server and feature.
    fn check_allocation(&mut self) -> Result<(), Broken> {
        let now = self.now;
        let clients = &self.clients;
        for p in &mut self.procs {
            let local = clients[p.slot].clock.local(now);
            for s in 0..2 {
                let sup = p.superseded[s];
                p.issued[s].retain(|g| g.until > local && g.send >= sup);
            }
        }
        for (s, server_name) in SERVER_NAMES.iter().enumerate() {
            for f in 0..self.features.len() {
                let count = self.servers[s].counts[f];
                let mut total = 0u64;
                for p in &self.procs {
                    total += u64::from(p.issued[s].iter().map(|g| g.quotas[f]).max().unwrap_or(0));
                }
                if count > 0 {
                    let per_mille = total * 1000 / u64::from(count);
                    self.stats.peak_allocation_per_mille =
                        self.stats.peak_allocation_per_mille.max(per_mille);
                }
                if total > u64::from(count) {
                    let mut detail = Vec::new();
                    for p in &self.procs {
                        if let Some(g) = p.issued[s].iter().max_by_key(|g| g.quotas[f]) {
                            if g.quotas[f] > 0 {
                                let cl = &self.clients[p.slot];
                                let local = cl.clock.local(now);
                                detail.push(format!(
                                    "client {} ({}{}) quota {} granted at t = {:.3} s by server life {}, valid {:.1} s more by its clock",
                                    p.slot,
                                    p.id,
                                    if p.alive { "" } else { ", dead" },
                                    g.quotas[f],
                                    g.at as f64 / 1000.0,
                                    g.server_gen,
                                    (g.until - local) as f64 / 1000.0
                                ));
                            }
                        }
                    }
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
            for f in 0..c.in_use.len() {
                if c.in_use[f] > c.checked_in_use[f] && c.in_use[f] > c.valid_quota(local, f) {
                    return Err((
                        Invariant::ClientGrantsWithinLease,
                        format!(
                            "client {i}: in use of {} grew to {} beyond its valid quota {}",
                            self.features[f],
                            c.in_use[f],
                            c.valid_quota(local, f)
                        ),
                    ));
                }
                c.checked_in_use[f] = c.in_use[f];
            }
            // Failover: the primary unreachable since tp, the backup reachable without loss
            // since tb. A tick in progress ends within 2 timeouts; then ticks start at least
            // every timeout; the first that starts once 10 s passed since the last good send
            // (≤ tp) fails within a timeout and reaches the backup within one round trip.
            if c.mode == Mode::Primary {
                if let (Some(tp), Some(tb)) = (c.unreach_since[PRIMARY], c.good_since[BACKUP]) {
                    let tp = tp.max(c.started_at);
                    let t0 = tb.max(c.started_at);
                    let deadline = (t0 + slow(2 * TIMEOUT_MS))
                        .max(tp + slow(FAILOVER_MS + TIMEOUT_MS))
                        + slow(TIMEOUT_MS + RTT_MAX_MS)
                        + 10;
                    if now >= deadline {
                        return Err((
                            Invariant::Failover,
                            format!(
                                "client {i}: primary unreachable since t = {:.3} s and backup reachable since t = {:.3} s, but still on the primary at t = {:.3} s (bound: max(backup ok + 2 timeouts, primary lost + failover_after {} s + timeout) + timeout + round trip = t {:.3} s)",
                                tp as f64 / 1000.0,
                                t0 as f64 / 1000.0,
                                now as f64 / 1000.0,
                                FAILOVER_MS / 1000,
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
