//! A deterministic, discrete-event simulation of a whole Leasehold system: one license node,
//! a production (primary) license server, a backup server and several client processes, as
//! simulated hosts on a simulated network, with random partitions, slow links, dropped
//! messages, message delays, crashes and restarts (state on simulated disk), clock drift and
//! skew. Everything is driven by one seeded random number generator, so a run is replayable
//! from its seed.
//!
//! The servers run the real lease allocator ([`leasehold_server::allocator::Allocator`]), the
//! node runs the real sync-token chain decision ([`leasehold_node::chain::decide`]); the
//! clients are a model of the client library's refresher rules (see `world.rs`). After every
//! event the invariants of DESIGN.md §4 are checked (see [`Invariant`]).
//!
//! `cargo run -p leasehold-sim --release -- --seeds 100000` runs a soak; see docs/testing.md.

pub mod calls;
mod world;

use std::fmt;

pub use leasehold_proto::traffic::erlang_b;
pub use world::Stats;

/// A deliberately broken variant of the system, to show the simulation finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// The simulated servers free leases 100 s after the request instead of after
    /// 120 s plus the margin (the wrapper expires reservations 30 s early).
    Hold100s,
}

impl PlantedBug {
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::Hold100s => "hold-100s",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hold-100s" => Some(PlantedBug::Hold100s),
            _ => None,
        }
    }
}

/// Changes to the modelled client or servers that fix issues the simulation found. The
/// default models the code as it is: `quota_per_server` and `release_ordered` are fixed in
/// the real client and server, and so is `sync_delay_after_restart`: all on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixes {
    /// A client reports its `quota` only to the server that granted it (0 to any other).
    /// Found by this simulation (seed 3): a client reporting the backup's quota in its probe
    /// of a restarted primary in learning mode made it confirm a quota it never granted, on
    /// top of leases granted before the restart. Fixed in the real refresher.
    pub quota_per_server: bool,
    /// A server ignores a `DELETE` that a client sent before its latest lease request the
    /// server has seen. Found by this simulation (seed 958): a late `DELETE` from a client's
    /// earlier return to the primary freed the grant of its next failover while the client
    /// used it. Fixed: requests carry `seq`, `DELETE ?seq=N` is ignored after a later request.
    pub release_ordered: bool,
    /// A restarted server waits out the longest network delay before its first sync (fixed:
    /// the real server waits one node timeout). Before the fix it could sync at once; an upload sent just before a crash that reaches the
    /// node after the restarted server's first upload makes the node branch the token chain
    /// and revoke the token it just issued, so the next sync is refused as a fork.
    pub sync_delay_after_restart: bool,
}

impl Default for Fixes {
    fn default() -> Self {
        Self {
            quota_per_server: true,
            release_ordered: true,
            sync_delay_after_restart: true,
        }
    }
}

impl Fixes {
    /// The fixes named in `list`, on top of the default ones.
    pub fn parse(list: &str) -> Option<Self> {
        let mut f = Fixes::default();
        for name in list.split(',').filter(|s| !s.is_empty()) {
            match name {
                // The code before the fixes: every fix off.
                "none" => {
                    f.quota_per_server = false;
                    f.release_ordered = false;
                    f.sync_delay_after_restart = false;
                }
                "quota-per-server" => f.quota_per_server = true,
                "release-ordered" => f.release_ordered = true,
                "sync-delay-after-restart" => f.sync_delay_after_restart = true,
                "all" => {
                    f.quota_per_server = true;
                    f.release_ordered = true;
                    f.sync_delay_after_restart = true;
                }
                _ => return None,
            }
        }
        Some(f)
    }

    pub fn names(&self) -> String {
        let mut v = Vec::new();
        if self.quota_per_server {
            v.push("quota-per-server");
        }
        if self.release_ordered {
            v.push("release-ordered");
        }
        if self.sync_delay_after_restart {
            v.push("sync-delay-after-restart");
        }
        v.join(",")
    }
}

/// A measured workload instead of random faults: calls arrive as a Poisson process split at
/// random across the clients, each holds one license of one feature for an exponential
/// time; no faults, a LAN-like network. Blocking and false denials are measured against
/// Erlang B (see [`Stats`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallsLoad {
    /// Licenses of the one feature (N).
    pub licenses: u32,
    /// Client processes.
    pub processes: usize,
    /// Offered load in Erlangs.
    pub erlangs: f64,
    /// Mean hold (ms).
    pub hold_ms: u64,
    /// Calls before this time (ms after the first call) are placed but not counted.
    pub warmup_ms: u64,
    /// Counted calls; the run ends after about this many.
    pub calls: u64,
}

impl CallsLoad {
    /// Simulated time the run needs for its warm-up and counted calls.
    pub fn duration_ms(&self) -> u64 {
        let rate_per_ms = self.erlangs / self.hold_ms.max(1) as f64;
        CALLS_START_MS + self.warmup_ms + (self.calls as f64 / rate_per_ms.max(1e-12)) as u64
    }
}

/// When the first call of a [`CallsLoad`] arrives: every client has started and connected.
pub const CALLS_START_MS: u64 = 5_000;

/// What one run simulates.
#[derive(Debug, Clone)]
pub struct Config {
    /// Stop after this many events.
    pub steps: u64,
    /// Stop after this much simulated time (ms).
    pub duration_ms: u64,
    pub planted_bug: Option<PlantedBug>,
    /// Fixes to model that the real code does not have yet (see [`Fixes`]).
    pub fixes: Fixes,
    /// Print every event (for replaying one seed).
    pub verbose: bool,
    /// A measured workload instead of random faults.
    pub calls: Option<CallsLoad>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            steps: 200_000,
            duration_ms: 30 * 60 * 1000,
            planted_bug: None,
            fixes: Fixes::default(),
            verbose: false,
            calls: None,
        }
    }
}

impl Config {
    /// A run of a calls workload, long enough for its calls.
    pub fn for_calls(load: CallsLoad) -> Self {
        Self {
            steps: u64::MAX,
            duration_ms: load.duration_ms(),
            calls: Some(load),
            ..Self::default()
        }
    }
}

impl Config {
    /// The command that replays `seed` with this configuration.
    pub fn replay_command(&self, seed: u64) -> String {
        let defaults = Config::default();
        let mut cmd = format!("cargo run -p leasehold-sim --release -- --seed {seed}");
        if self.steps != defaults.steps {
            cmd.push_str(&format!(" --steps {}", self.steps));
        }
        if self.duration_ms != defaults.duration_ms {
            cmd.push_str(&format!(" --minutes {}", self.duration_ms / 60_000));
        }
        if self.fixes != Fixes::default() {
            // `--fix` adds to the defaults, so name the exact set from nothing.
            let names = self.fixes.names();
            cmd.push_str(&format!(
                " --fix none{}{names}",
                if names.is_empty() { "" } else { "," }
            ));
        }
        if let Some(bug) = self.planted_bug {
            cmd.push_str(&format!(" --planted-bug {}", bug.name()));
        }
        cmd
    }
}

/// The invariants checked after every step, named after DESIGN.md §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invariant {
    /// §4.1(a): per server and feature, the quotas of leases still valid by each client's
    /// own clock (and not superseded by an answer from another server) sum to at most the
    /// licensed count.
    NeverOverAllocate,
    /// §4.1(b): a client grants `acquire` only under a valid lease and within its quota.
    ClientGrantsWithinLease,
    /// §4.2: a client whose primary is unreachable and whose backup is reachable is on the
    /// backup within the failover bound.
    Failover,
    /// §4.2: a client that reached no server for the lease length has flushed.
    Flush,
    /// §4.7 at the node: every usage bucket is stored once and unchanged, and every bucket a
    /// server made is at the node or still on the server's disk.
    NothingLost,
    /// §4.4: the node never refuses the one honest instance of a GUID.
    OneInstance,
    /// §4.3: simultaneous production/backup use shows in the backup's usage.
    OverlapReported,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::NeverOverAllocate => "§4.1(a) never over-allocate",
            Invariant::ClientGrantsWithinLease => "§4.1(b) client grants only under a valid lease",
            Invariant::Failover => "§4.2 failover to the backup",
            Invariant::Flush => "§4.2 flush without any server",
            Invariant::NothingLost => "§4.7 usage neither lost nor counted twice",
            Invariant::OneInstance => "§4.4 one honest instance is never refused",
            Invariant::OverlapReported => "§4.3 production/backup overlap reported",
        })
    }
}

/// A broken invariant, with what is needed to replay it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub time_ms: u64,
    pub invariant: Invariant,
    pub message: String,
    /// The last events before the failure, oldest first.
    pub trace: Vec<String>,
    pub replay: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} FAILED at step {} (t = {:.3} s): {}",
            self.seed,
            self.step,
            self.time_ms as f64 / 1000.0,
            self.invariant
        )?;
        writeln!(f, "  {}", self.message)?;
        writeln!(f, "  last events:")?;
        for line in &self.trace {
            writeln!(f, "    {line}")?;
        }
        write!(f, "  replay: {}", self.replay)
    }
}

impl std::error::Error for Failure {}

/// Runs one seeded simulation, checking every invariant after every event.
pub fn run(seed: u64, config: &Config) -> Result<Stats, Box<Failure>> {
    world::World::new(seed, config).run()
}
