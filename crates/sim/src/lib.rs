//! A deterministic, discrete-event simulation of a whole Leasehold system: one license node,
//! a production (primary) license server, a backup server and several client processes, as
//! simulated hosts on a simulated network, with random partitions, slow links, dropped
//! messages, message delays, crashes and restarts (state on simulated disk), clock drift and
//! skew. Everything is driven by one seeded random number generator, so a run is replayable
//! from its seed.
//!
//! The real decision code runs inside: the servers run the real lease allocator
//! ([`leasehold_server::allocator::Allocator`], restored from what it persisted after a
//! crash), the node runs the real sync-token chain decision ([`leasehold_node::chain::decide`])
//! and every client runs the real client policy ([`leasehold_client::policy::Policy`]) over a
//! model of the cache's atomics. After every event the invariants of DESIGN.md §4 are checked
//! (see [`Invariant`]).
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
    /// The allocator frees a shrunk grant as soon as it answers with the smaller quota,
    /// without waiting for the client to acknowledge it (`allocator::Fault::FreeOnAnswer`).
    FreeOnAnswer,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 2] = [PlantedBug::Hold100s, PlantedBug::FreeOnAnswer];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::Hold100s => "hold-100s",
            PlantedBug::FreeOnAnswer => "free-on-answer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == s)
    }
}

/// Changes to the modelled servers that fix issues the simulation found, so that a test can
/// show each one is needed. The default models the code as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixes {
    /// A restarted server waits out the longest network delay before its first sync (fixed:
    /// the real server waits one node timeout). Before the fix it could sync at once; an
    /// upload sent just before a crash that reaches the node after the restarted server's
    /// first upload makes the node branch the token chain and revoke the token it just
    /// issued, so the next sync is refused as a fork (seed 633).
    pub sync_delay_after_restart: bool,
}

impl Default for Fixes {
    fn default() -> Self {
        Self {
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
                "none" => f.sync_delay_after_restart = false,
                "sync-delay-after-restart" | "all" => f.sync_delay_after_restart = true,
                _ => return None,
            }
        }
        Some(f)
    }

    pub fn names(&self) -> String {
        let mut v = Vec::new();
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
    /// The clients' deny-wait (ms; 0: answer from the cache only).
    pub deny_wait_ms: u64,
}

impl CallsLoad {
    /// Simulated time the run needs for its warm-up and counted calls.
    pub fn duration_ms(&self) -> u64 {
        let rate_per_ms = self.erlangs / self.hold_ms.max(1) as f64;
        CALLS_START_MS
            + self.warmup_ms
            + (self.calls as f64 / rate_per_ms.max(1e-12)) as u64
            + QUIET_MS
    }
}

/// When the first call of a [`CallsLoad`] arrives: every client has started and connected.
pub const CALLS_START_MS: u64 = 5_000;
/// For this long before the end of a run no call starts (and, with faults, no fault happens
/// for [`DRAIN_MS`] before the end): every call placed has been reported by then, so the
/// usage the servers counted must equal the calls placed.
pub const QUIET_MS: u64 = 60_000;
/// Faults stop this long before the end of a run, and every fault heals.
pub const DRAIN_MS: u64 = 4 * 60_000;

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
    /// Record the policy calls of the first client (for [`check_policy_replay`]).
    pub record_policy: bool,
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
            record_policy: false,
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
    /// §4.7 for calls: no client's calls are ever counted more than once across the
    /// servers, and once the run is quiet every call of a running client is counted.
    UsageExact,
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
            Invariant::UsageExact => "§4.7 every call counted exactly once",
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

/// Runs `seed` recording every call the simulation makes to the first client's policy, then
/// makes the same calls on a new real [`leasehold_client::policy::Policy`] over the recorded
/// cache states and checks every answer is the same: the simulated clients decide nothing
/// themselves. Returns the number of calls checked.
pub fn check_policy_replay(seed: u64, config: &Config) -> Result<usize, String> {
    let cfg = Config {
        record_policy: true,
        ..config.clone()
    };
    world::World::new(seed, &cfg).replay_policy()
}

/// Runs one seeded simulation, checking every invariant after every event.
pub fn run(seed: u64, config: &Config) -> Result<Stats, Box<Failure>> {
    world::World::new(seed, config).run()
}
