//! The client's decisions, as pure code: when to ask which server, what to ask for, what to
//! give back, which answer to install, when to fail over to a backup and when to come back.
//! The refresher (`refresher.rs`) runs it against the network and the cache; the
//! simulation (`crates/sim`) runs the very same code against simulated servers, so every
//! change to it is proved by the same invariants.
//!
//! Time is a monotonic clock in milliseconds, given by the caller. The policy never reads a
//! clock, sleeps or does I/O: it is driven by [`Policy::poll`] (a timer or a wake from the
//! cache) and [`Policy::on_answer`], and answers with [`Action`]s.
//!
//! The rules:
//! - At most one request per server is outstanding; sending a new one abandons nothing
//!   because none is sent while one is outstanding, and only the answer to the outstanding
//!   request is installed. The server relies on this: once a request arrives, every earlier
//!   answer of that server is installed or never will be.
//! - Before a request to the server whose answer is installed, the quota is lowered to what
//!   is held plus what the client keeps; the request's `quota` says so and the server frees
//!   the rest on receipt. To any other server the client reports no quota.
//! - Requests go out every `refresh` (regular), early when headroom runs low or out
//!   (no sooner than `refresh / 8` after the last), at once when calls wait for the server
//!   (deny-wait) and soon (`GIVE_BACK_GAP_MS`) when calls ended and more is held than the
//!   server lets the client keep.
//! - An answer that arrives within the request timeout (at most [`MAX_REQUEST_TIMEOUT_MS`],
//!   the server's safety margin) is good, however slow: slow is not dead. The client moves
//!   to a backup only when the primary gave no good answer for `failover_after`, counted
//!   from the last good answer's arrival, and it probes the primary every refresh from
//!   there, coming back on its first good answer (unless the primary, relearning after a
//!   restart, could not cover what is held) and giving the backup its grant back. An answer
//!   of a relearning primary is installed (it keeps the lease) but is no good answer: it
//!   grants nothing new, so the client moves to a backup as from a primary that is down.
//! - A lease is valid from the request's send time for min(lease, flush period): the cache
//!   flushes by itself when no answer renews it.
//! - Usage is reported exactly once: calls counted since the last request are assigned to
//!   the server the next request goes to, and each server is sent running totals of what
//!   was assigned to it (a re-sent report changes nothing there), with what it last
//!   confirmed as counted.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use leasehold_proto::{
    ClientId, Feature, FeatureRequest, LeaseRequest, LeaseResponse, QuotaReason,
};

/// The longest a client waits for one answer: the server's safety margin. A server relearning
/// its leases after a restart trusts what a request says is held only because the request
/// is at most this old.
pub const MAX_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Shortest gap after a request before a give-back.
pub const GIVE_BACK_GAP_MS: u64 = 20;

/// How the policy is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Number of servers: `[0]` is the primary, the rest are backups in order.
    pub servers: usize,
    pub refresh_ms: u64,
    pub failover_after_ms: u64,
    pub flush_after_ms: u64,
    /// At most [`MAX_REQUEST_TIMEOUT_MS`].
    pub request_timeout_ms: u64,
}

impl PolicyConfig {
    /// Shortest gap after a request before an early refresh (headroom low or out).
    fn early_gap(&self) -> u64 {
        (self.refresh_ms / 40).max(1)
    }

    /// The headroom a client wants covers its calls of this long.
    fn cover_ms(&self) -> u64 {
        self.refresh_ms / 4
    }
}

/// What the cache shows of one feature when a request is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Holding {
    pub in_use: u32,
    /// Highest in use since the last request was built (the cache resets it).
    pub peak: u32,
    /// Running totals of the cache since the client started.
    pub acquired: u64,
    pub denied: u64,
    /// Calls waiting now for the server (deny-wait).
    pub waiting: u32,
}

/// The cache, as the policy uses it.
pub trait Cache {
    /// The state of feature `i` (resets its peak).
    fn holding(&mut self, i: usize) -> Holding;
    /// What feature `i` holds now.
    fn held(&self, i: usize) -> u32;
    /// Lowers feature `i`'s quota to at most what is held, plus what calls waiting for the
    /// server need, plus `keep`, in one step with the in-use count; returns (in use, quota)
    /// as lowered.
    fn lower(&mut self, i: usize, keep: u32) -> (u32, u32);
    /// Installs an answer: every feature's quota (in the policy's feature order), valid
    /// until `valid_until_ms`. Called by the policy before anything it decides next, so that
    /// a request built after it lowers the new quota.
    fn install(&mut self, features: &[InstallFeature], valid_until_ms: u64);
}

/// Why the caller polls, as bits (the cache's wake reasons).
pub mod wake {
    /// Headroom ran low or out: refresh early.
    pub const EARLY: u8 = 1;
    /// More is held than the server lets the client keep: give it back.
    pub const GIVE_BACK: u8 = 2;
    /// Calls wait for the server (deny-wait).
    pub const ASK: u8 = 4;
}

/// One feature of an answer to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallFeature {
    pub quota: u32,
    pub code: Option<QuotaReason>,
    pub reason: Option<String>,
    /// Headroom at or below which an acquire asks for an early refresh.
    pub low_water: u32,
    /// Headroom above which a release asks to give licenses back.
    pub give_back_above: u32,
}

/// Something that happened, for logs and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first answer since the client started.
    Connected { server: usize },
    /// The primary gave no good answer for `failover_after`: now on a backup.
    FailedOver {
        backup: usize,
        primary_silent_ms: u64,
    },
    /// The backup in use failed: now on another one.
    BackupChanged { from: usize, to: usize },
    /// The primary answers again: back on it.
    Returned { from: usize },
    /// No answer renewed the lease: the cache is flushed.
    Flushed { last_server: Option<usize> },
    /// A server answers again after a flush.
    Resumed { server: usize },
    /// A request failed or timed out.
    Failed { server: usize, error: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this request to `server`.
    Send {
        server: usize,
        request: LeaseRequest,
    },
    /// Stop waiting for the outstanding request to `server` (timed out).
    Abandon {
        server: usize,
    },
    /// An answer of `server` was installed in the cache (by [`Cache::install`]): quotas
    /// valid until `valid_until_ms`.
    Install {
        server: usize,
        features: Vec<InstallFeature>,
        valid_until_ms: u64,
    },
    Event(Event),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Primary,
    Backup(usize),
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    seq: u64,
    sent: u64,
    /// A final request: its answer is not waited for.
    release: bool,
}

#[derive(Debug, Clone, Default)]
struct ServerState {
    outstanding: Option<Outstanding>,
    epoch: u64,
    /// Running totals (acquired, denied) of calls assigned to this server, per feature.
    assigned: Vec<(u64, u64)>,
    /// What it confirmed as durably counted, per feature.
    counted: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct FeatState {
    /// Running totals already assigned to some server.
    reported: (u64, u64),
    /// Calls per ms, a moving average.
    rate: f64,
    rate_total: u64,
    rate_at: u64,
    /// The installed answer's `keep`.
    keep: u32,
}

/// The client's policy state; see the module documentation.
#[derive(Debug, Clone)]
pub struct Policy {
    cfg: PolicyConfig,
    client_id: ClientId,
    product_release: NaiveDate,
    features: Vec<Feature>,
    asks: bool,
    servers: Vec<ServerState>,
    mode: Mode,
    /// The backup being tried (a request with `failover` outstanding to it).
    trying: Option<usize>,
    /// Backups tried and failed since the last good answer from one.
    tried: Vec<usize>,
    /// After every backup failed, when to try them again.
    backups_retry_at: u64,
    primary_ok_at: u64,
    granted_by: Option<usize>,
    valid_until: u64,
    seq: u64,
    last_send: u64,
    next_regular: u64,
    /// Wake reasons not acted on yet (a request was outstanding, or the gap not over).
    pending: u8,
    connected: bool,
    flushed: bool,
    feats: Vec<FeatState>,
}

/// Moving average time constant of the call rate.
const RATE_WINDOW_REFRESHES: f64 = 4.0;

impl Policy {
    /// A client starting at `now` (ms): its first request goes out at once.
    pub fn new(
        cfg: PolicyConfig,
        client_id: ClientId,
        product_release: NaiveDate,
        features: Vec<Feature>,
        now: u64,
    ) -> Self {
        let cfg = PolicyConfig {
            servers: cfg.servers.max(1),
            request_timeout_ms: cfg.request_timeout_ms.clamp(1, MAX_REQUEST_TIMEOUT_MS),
            ..cfg
        };
        let n = features.len();
        Self {
            cfg,
            client_id,
            product_release,
            servers: vec![
                ServerState {
                    assigned: vec![(0, 0); n],
                    counted: vec![(0, 0); n],
                    ..ServerState::default()
                };
                cfg.servers.max(1)
            ],
            features,
            asks: false,
            mode: Mode::Primary,
            trying: None,
            tried: Vec::new(),
            backups_retry_at: 0,
            primary_ok_at: now,
            granted_by: None,
            valid_until: 0,
            seq: 0,
            last_send: 0,
            next_regular: now,
            pending: 0,
            connected: false,
            flushed: false,
            feats: vec![
                FeatState {
                    rate_at: now,
                    ..FeatState::default()
                };
                n
            ],
        }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    /// Whether calls ask the server before they are denied (deny-wait).
    pub fn set_asks(&mut self, asks: bool) {
        self.asks = asks;
    }

    /// The server whose answer is installed, if its lease is still valid at `now`.
    pub fn lease_from(&self, now: u64) -> Option<usize> {
        self.granted_by.filter(|_| now < self.valid_until)
    }

    pub fn valid_until(&self) -> u64 {
        self.valid_until
    }

    pub fn on_backup(&self) -> bool {
        matches!(self.mode, Mode::Backup(_))
    }

    pub fn is_flushed(&self) -> bool {
        self.flushed
    }

    /// The sequence number of the request outstanding to `server`, if any: only its answer
    /// can still be installed.
    pub fn outstanding(&self, server: usize) -> Option<u64> {
        self.servers
            .get(server)
            .and_then(|s| s.outstanding)
            .filter(|o| !o.release)
            .map(|o| o.seq)
    }

    /// The server requests go to: the primary, or the backup in use.
    fn current(&self) -> usize {
        match self.mode {
            Mode::Primary => 0,
            Mode::Backup(b) => b,
        }
    }

    /// When to poll next (ms), at the latest.
    pub fn next_wake(&self, now: u64) -> u64 {
        let mut at = self.next_regular;
        for s in &self.servers {
            if let Some(o) = s.outstanding {
                at = at.min(o.sent + self.cfg.request_timeout_ms);
            }
        }
        if self.mode == Mode::Primary && self.trying.is_none() && self.cfg.servers > 1 {
            at = at
                .min((self.primary_ok_at + self.cfg.failover_after_ms).max(self.backups_retry_at));
        }
        if self.valid_until > 0 && !self.flushed {
            at = at.min(self.valid_until);
        }
        // Wants wait for the gap after the last request, or for the answer to the one
        // outstanding (its arrival polls again).
        if self.pending != 0 && self.servers[self.current()].outstanding.is_none() {
            let gap = if self.pending & wake::ASK != 0 {
                0
            } else if self.pending & wake::EARLY != 0 {
                self.cfg.early_gap()
            } else {
                GIVE_BACK_GAP_MS
            };
            at = at.min(self.last_send + gap);
        }
        at.max(now)
    }

    /// Acts on the time and on why the caller was woken ([`wake`] bits).
    pub fn poll(&mut self, now: u64, woken: u8, cache: &mut impl Cache) -> Vec<Action> {
        let mut out = Vec::new();
        self.pending |= woken;
        // Requests outstanding too long have failed.
        for server in 0..self.servers.len() {
            if let Some(o) = self.servers[server].outstanding {
                if now >= o.sent + self.cfg.request_timeout_ms {
                    self.servers[server].outstanding = None;
                    out.push(Action::Abandon { server });
                    if !o.release {
                        self.failed(
                            now,
                            server,
                            "no answer within the request timeout".into(),
                            cache,
                            &mut out,
                        );
                    }
                }
            }
        }
        if self.valid_until > 0 && now >= self.valid_until && !self.flushed {
            self.flushed = true;
            out.push(Action::Event(Event::Flushed {
                last_server: self.granted_by,
            }));
        }
        // The primary has been silent for too long: try the backups.
        if self.mode == Mode::Primary
            && self.cfg.servers > 1
            && self.trying.is_none()
            && now >= self.backups_retry_at
            && now.saturating_sub(self.primary_ok_at) >= self.cfg.failover_after_ms
        {
            self.tried.clear();
            self.try_next_backup(now, None, cache, &mut out);
        }
        let regular = now >= self.next_regular;
        let current = self.current();
        let gap_over = |p: &Self, gap: u64| now >= p.last_send + gap;
        let wants_now = (self.pending & wake::ASK != 0)
            || (self.pending & wake::EARLY != 0 && gap_over(self, self.cfg.early_gap()))
            || (self.pending & wake::GIVE_BACK != 0 && gap_over(self, GIVE_BACK_GAP_MS));
        if (regular || wants_now) && self.servers[current].outstanding.is_none() {
            let failover = current != 0;
            self.send(now, current, failover, false, cache, &mut out);
            self.pending = 0;
        }
        if regular {
            if let Mode::Backup(_) = self.mode {
                // Probe the primary every refresh.
                if self.servers[0].outstanding.is_none() {
                    self.send(now, 0, false, false, cache, &mut out);
                }
            }
            // Calls reported to a server the client has left, that it has not confirmed as
            // counted yet, go to it again until it does (a release: nothing more is wanted
            // from it).
            for s in 0..self.servers.len() {
                let probed = s == 0 && self.mode != Mode::Primary;
                if s != current
                    && !probed
                    && self.unsettled(s)
                    && self.servers[s].outstanding.is_none()
                {
                    self.send(now, s, s != 0, true, cache, &mut out);
                }
            }
            self.next_regular = now + self.cfg.refresh_ms;
        }
        out
    }

    /// Calls were reported to `server` that it has not confirmed as counted.
    fn unsettled(&self, server: usize) -> bool {
        let st = &self.servers[server];
        st.assigned
            .iter()
            .zip(&st.counted)
            .any(|(a, c)| a.0 > c.0 || a.1 > c.1)
    }

    /// An answer (or failure) of the request `seq` to `server` arrived at `now`.
    pub fn on_answer(
        &mut self,
        now: u64,
        server: usize,
        seq: u64,
        result: Result<&LeaseResponse, String>,
        cache: &mut impl Cache,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(o) = self.servers.get(server).and_then(|s| s.outstanding) else {
            return out;
        };
        if o.seq != seq {
            return out;
        }
        self.servers[server].outstanding = None;
        if o.release {
            if let Ok(a) = result {
                self.take_counted(server, a);
            }
            return out;
        }
        let answer = match result {
            Ok(a) => match suspended(a) {
                Some(why) => Err(why),
                None => Ok(a),
            },
            Err(e) => Err(e),
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                self.failed(now, server, e, cache, &mut out);
                return out;
            }
        };
        self.take_counted(server, answer);
        match (self.mode, server) {
            (Mode::Primary, 0) => {
                // A primary relearning its leases after a restart keeps the lease alive but
                // grants nothing new: for failover that is no good answer, so calls that need
                // licenses move to a backup (backup licenses exist for exactly this).
                let relearning = answer
                    .features
                    .values()
                    .any(|q| q.code == Some(QuotaReason::Relearning));
                if !relearning {
                    self.primary_ok_at = now;
                }
                self.install(o.sent, 0, answer, cache, &mut out);
                if let Some(b) = self.trying.take() {
                    // The primary is back before a backup answered.
                    self.servers[b].outstanding = None;
                    out.push(Action::Abandon { server: b });
                }
            }
            (Mode::Backup(b), 0) => {
                let held: Vec<u32> = (0..self.features.len()).map(|i| cache.held(i)).collect();
                if let Some(why) = relearning_short(&held, answer, &self.features) {
                    out.push(Action::Event(Event::Failed {
                        server: 0,
                        error: why,
                    }));
                    return out;
                }
                self.primary_ok_at = now;
                self.mode = Mode::Primary;
                self.install(o.sent, 0, answer, cache, &mut out);
                out.push(Action::Event(Event::Returned { from: b }));
                // Give the backup its grant back: our licenses are the primary's now.
                if self.servers[b].outstanding.take().is_some() {
                    out.push(Action::Abandon { server: b });
                }
                if let Some(t) = self.trying.take() {
                    self.servers[t].outstanding = None;
                    out.push(Action::Abandon { server: t });
                }
                self.send(now, b, true, true, cache, &mut out);
            }
            (mode, s) if Some(s) == self.trying => {
                self.trying = None;
                self.tried.clear();
                let from = match mode {
                    Mode::Backup(b) => Some(b),
                    Mode::Primary => None,
                };
                self.mode = Mode::Backup(s);
                self.install(o.sent, s, answer, cache, &mut out);
                out.push(Action::Event(match from {
                    Some(from) => Event::BackupChanged { from, to: s },
                    None => Event::FailedOver {
                        backup: s,
                        primary_silent_ms: now.saturating_sub(self.primary_ok_at),
                    },
                }));
                if let Some(from) = from.filter(|f| *f != s) {
                    if self.servers[from].outstanding.take().is_some() {
                        out.push(Action::Abandon { server: from });
                    }
                }
            }
            (Mode::Backup(b), s) if s == b => {
                self.install(o.sent, s, answer, cache, &mut out);
            }
            _ => {}
        }
        // Calls may be waiting for what was just installed to be used up already.
        out.extend(self.poll(now, 0, cache));
        out
    }

    /// What `server` confirmed as counted, and its epoch.
    fn take_counted(&mut self, server: usize, answer: &LeaseResponse) {
        let st = &mut self.servers[server];
        st.epoch = answer.epoch;
        for (i, f) in self.features.iter().enumerate() {
            if let Some(q) = answer.features.get(f) {
                let c = &mut st.counted[i];
                *c = (c.0.max(q.counted_acquired), c.1.max(q.counted_denied));
            }
        }
    }

    /// The final request to the server whose answer is installed: everything is given back
    /// (clean shutdown). `None` when no server granted anything.
    pub fn shutdown(&mut self, now: u64, cache: &mut impl Cache) -> Option<Action> {
        let server = self.granted_by?;
        let mut out = Vec::new();
        self.servers[server].outstanding = None;
        self.send(now, server, server != 0, true, cache, &mut out);
        out.into_iter().next()
    }

    fn failed(
        &mut self,
        now: u64,
        server: usize,
        error: String,
        cache: &mut impl Cache,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Event(Event::Failed { server, error }));
        let backup_failed = Some(server) == self.trying || self.mode == Mode::Backup(server);
        if server != 0 && backup_failed {
            if Some(server) == self.trying {
                self.trying = None;
            }
            if !self.tried.contains(&server) {
                self.tried.push(server);
            }
            let current = match self.mode {
                Mode::Backup(b) => Some(b),
                Mode::Primary => None,
            };
            self.try_next_backup(now, current, cache, out);
        }
    }

    /// Sends a failover request to the next backup not tried yet (none once all were).
    fn try_next_backup(
        &mut self,
        now: u64,
        current: Option<usize>,
        cache: &mut impl Cache,
        out: &mut Vec<Action>,
    ) {
        let next = (1..self.cfg.servers).find(|b| {
            Some(*b) != current && !self.tried.contains(b) && self.servers[*b].outstanding.is_none()
        });
        if let Some(b) = next {
            self.trying = Some(b);
            self.send(now, b, true, false, cache, out);
        } else {
            // Every backup failed this round: start over a refresh later.
            self.tried.clear();
            self.backups_retry_at = now + self.cfg.refresh_ms;
        }
    }

    fn install(
        &mut self,
        sent: u64,
        server: usize,
        answer: &LeaseResponse,
        cache: &mut impl Cache,
        out: &mut Vec<Action>,
    ) {
        let lease_ms = answer
            .lease_secs
            .saturating_mul(1000)
            .min(self.cfg.flush_after_ms);
        let valid_until = sent + lease_ms;
        let features: Vec<InstallFeature> = self
            .features
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let (quota, code, reason, keep) = match answer.features.get(f) {
                    Some(q) => (q.quota, q.code, q.reason.clone(), q.keep),
                    None => (
                        0,
                        Some(QuotaReason::NoLicense),
                        Some(format!("the server did not answer for feature {f}")),
                        0,
                    ),
                };
                self.feats[i].keep = keep;
                let low_water = keep / 2;
                // What it may not keep goes back at once: a license idle here is one that
                // another client's call may be refused for (measured: slack here costs more
                // in blocking than the requests it saves).
                let give_back_above = keep;
                InstallFeature {
                    quota,
                    code,
                    reason,
                    low_water,
                    give_back_above,
                }
            })
            .collect();
        let first = !self.connected;
        self.connected = true;
        self.granted_by = Some(server);
        self.valid_until = valid_until;
        cache.install(&features, valid_until);
        out.push(Action::Install {
            server,
            features,
            valid_until_ms: valid_until,
        });
        if first {
            out.push(Action::Event(Event::Connected { server }));
        }
        if self.flushed {
            self.flushed = false;
            out.push(Action::Event(Event::Resumed { server }));
        }
    }

    /// Builds and sends a request to `server`.
    fn send(
        &mut self,
        now: u64,
        server: usize,
        failover: bool,
        release: bool,
        cache: &mut impl Cache,
        out: &mut Vec<Action>,
    ) {
        self.seq += 1;
        let ours = self.granted_by == Some(server) && now < self.valid_until;
        let current = self.current();
        let mut features = BTreeMap::new();
        for i in 0..self.features.len() {
            let h = cache.holding(i);
            let fs = &mut self.feats[i];
            // The call rate, a moving average over a few refreshes.
            let total = h.acquired + h.denied;
            let dt = now.saturating_sub(fs.rate_at);
            if dt > 0 {
                let inst = total.saturating_sub(fs.rate_total) as f64 / dt as f64;
                let tau = RATE_WINDOW_REFRESHES * self.cfg.refresh_ms as f64;
                let alpha = 1.0 - (-(dt as f64) / tau).exp();
                fs.rate += alpha * (inst - fs.rate);
                fs.rate_total = total;
                fs.rate_at = now;
            }
            // Headroom for the calls of a quarter of the refresh period, and one more: early
            // refreshes replenish it long before a refresh period is over.
            let cover = (fs.rate * self.cfg.cover_ms() as f64).ceil();
            let headroom = if cover.is_finite() {
                cover.min(f64::from(u32::MAX / 4)) as u32
            } else {
                0
            } + 1;
            let held = h.in_use.max(h.peak);
            let want = if release {
                0
            } else {
                held.saturating_add(h.waiting).saturating_add(headroom)
            };
            let (in_use, quota) = if ours {
                let keep = if release { 0 } else { fs.keep.min(headroom) };
                cache.lower(i, keep)
            } else {
                (h.in_use, 0)
            };
            // Calls counted since the last request go to the server in use (a probe, a try
            // or a release only carries what was reported to its server before), so that
            // they stay with a server the client keeps talking to.
            let to_current = server == current;
            let st = &mut self.servers[server];
            if !release && to_current {
                let new = (
                    h.acquired.saturating_sub(fs.reported.0),
                    h.denied.saturating_sub(fs.reported.1),
                );
                st.assigned[i].0 += new.0;
                st.assigned[i].1 += new.1;
                fs.reported = (h.acquired.max(fs.reported.0), h.denied.max(fs.reported.1));
            }
            features.insert(
                self.features[i].clone(),
                FeatureRequest {
                    in_use: if release { 0 } else { in_use },
                    want,
                    quota: if release { 0 } else { quota },
                    waiting: if release { 0 } else { h.waiting },
                    acquired: st.assigned[i].0,
                    denied: st.assigned[i].1,
                    counted_acquired: st.counted[i].0,
                    counted_denied: st.counted[i].1,
                },
            );
        }
        let request = LeaseRequest {
            client_id: self.client_id.clone(),
            product_release: self.product_release,
            features,
            failover,
            seq: self.seq,
            epoch: self.servers[server].epoch,
            asks: self.asks,
            release,
        };
        self.servers[server].outstanding = Some(Outstanding {
            seq: self.seq,
            sent: now,
            release,
        });
        if !release {
            self.last_send = now;
        }
        out.push(Action::Send { server, request });
    }
}

/// Why an answer that is relearning after a restart would leave licenses the client holds
/// uncovered, if it would.
pub fn relearning_short(
    held: &[u32],
    answer: &LeaseResponse,
    features: &[Feature],
) -> Option<String> {
    features.iter().zip(held).find_map(|(feature, &held)| {
        let q = answer.features.get(feature)?;
        (q.code == Some(QuotaReason::Relearning) && q.quota < held).then(|| {
            format!("primary is relearning its leases after a restart and cannot yet cover the {held} {feature} licenses held")
        })
    })
}

/// A server that answers but serves no licenses at all (grace over, clock set back) leaves
/// its licenses unavailable: for failover that is no good answer, so the client moves to a
/// backup as it would from a server that is down.
pub fn suspended(answer: &LeaseResponse) -> Option<String> {
    let mut reasons = answer.features.values();
    let first = reasons.next()?;
    let all = std::iter::once(first)
        .chain(reasons)
        .all(|f| f.code == Some(QuotaReason::Suspended));
    all.then(|| {
        format!(
            "server serves no licenses: {}",
            first.reason.as_deref().unwrap_or("suspended")
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use leasehold_proto::{Context, FeatureQuota, ServerGuid};

    #[derive(Debug, Default)]
    struct TestCache {
        quota: u32,
        in_use: u32,
        acquired: u64,
        waiting: u32,
        valid_until: u64,
    }

    impl Cache for TestCache {
        fn holding(&mut self, _: usize) -> Holding {
            Holding {
                in_use: self.in_use,
                peak: self.in_use,
                acquired: self.acquired,
                denied: 0,
                waiting: self.waiting,
            }
        }
        fn held(&self, _: usize) -> u32 {
            self.in_use
        }
        fn lower(&mut self, _: usize, keep: u32) -> (u32, u32) {
            let keep = keep + self.waiting;
            self.quota = self
                .quota
                .min(self.in_use + keep)
                .max(self.in_use.min(self.quota));
            (self.in_use, self.quota)
        }
        fn install(&mut self, f: &[InstallFeature], valid_until_ms: u64) {
            self.quota = f[0].quota;
            self.valid_until = valid_until_ms;
        }
    }

    fn tts() -> Feature {
        Feature::parse("tts").unwrap()
    }

    fn policy(servers: usize) -> Policy {
        Policy::new(
            PolicyConfig {
                servers,
                refresh_ms: 2_000,
                failover_after_ms: 10_000,
                flush_after_ms: 120_000,
                request_timeout_ms: 10_000,
            },
            ClientId::from_random([1; 16]),
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            vec![tts()],
            0,
        )
    }

    fn answer(quota: u32, keep: u32, code: Option<QuotaReason>, counted: u64) -> LeaseResponse {
        LeaseResponse {
            server_guid: ServerGuid::from_bytes([1; 16]),
            context: Context::Production,
            lease_secs: 120,
            features: [(
                tts(),
                FeatureQuota {
                    quota,
                    code,
                    keep,
                    counted_acquired: counted,
                    ..FeatureQuota::default()
                },
            )]
            .into(),
            epoch: 7,
        }
    }

    fn sends(actions: &[Action]) -> Vec<(usize, LeaseRequest)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { server, request } => Some((*server, request.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_request_per_server_and_only_its_answer_is_installed() {
        let mut p = policy(1);
        let mut c = TestCache::default();
        let first = sends(&p.poll(0, 0, &mut c));
        assert_eq!(first.len(), 1);
        // Woken while it is outstanding: nothing more is sent.
        assert!(sends(&p.poll(10, wake::ASK, &mut c)).is_empty());
        // An answer to another sequence number is ignored.
        assert!(p
            .on_answer(
                20,
                0,
                first[0].1.seq + 5,
                Ok(&answer(4, 2, None, 0)),
                &mut c
            )
            .is_empty());
        assert_eq!(c.quota, 0);
        // The answer to it is installed, valid from the send time; the pending ask goes out
        // (lowering the quota to what it keeps first).
        let out = p.on_answer(30, 0, first[0].1.seq, Ok(&answer(4, 2, None, 0)), &mut c);
        assert!(out.iter().any(|a| matches!(a, Action::Install { server: 0, features, valid_until_ms: 120_000 } if features[0].quota == 4)));
        assert_eq!(sends(&out).len(), 1, "the ask that waited");
        assert_eq!(c.quota, 1);
        assert_eq!(p.lease_from(100), Some(0));
    }

    #[test]
    fn the_quota_is_lowered_before_sending_and_the_request_says_so() {
        let mut p = policy(1);
        let mut c = TestCache::default();
        let r = sends(&p.poll(0, 0, &mut c));
        p.on_answer(5, 0, r[0].1.seq, Ok(&answer(6, 1, None, 0)), &mut c);
        c.in_use = 2;
        // The regular refresh: keep at most 1 beyond the 2 held.
        let r = sends(&p.poll(2_000, 0, &mut c));
        let f = r[0].1.features[&tts()];
        assert_eq!((f.in_use, f.quota), (2, 3));
        assert_eq!(c.quota, 3, "lowered in the cache too");
        assert_eq!(r[0].1.epoch, 7, "the epoch of the answer");
        // A waiting call keeps its license through the lowering.
        c.waiting = 1;
        p.on_answer(2_005, 0, r[0].1.seq, Ok(&answer(6, 0, None, 0)), &mut c);
        let r = sends(&p.poll(2_030, wake::ASK, &mut c));
        assert_eq!(r[0].1.features[&tts()].quota, 3, "2 held + 1 waiting");
    }

    #[test]
    fn slow_is_not_dead_and_silence_moves_to_the_backup() {
        let mut p = policy(2);
        let mut c = TestCache::default();
        let r = sends(&p.poll(0, 0, &mut c));
        // A 6 s round trip is a good answer; the regular refresh it held up goes out.
        let out = p.on_answer(6_000, 0, r[0].1.seq, Ok(&answer(2, 1, None, 0)), &mut c);
        assert_eq!(p.lease_from(6_000), Some(0));
        assert_eq!(sends(&out).len(), 1);
        // Then nothing: 10 s after the last answer arrived the backup is tried, not before.
        assert!(p.next_wake(6_001) <= 16_000);
        assert!(sends(&p.poll(15_999, 0, &mut c))
            .iter()
            .all(|(s, _)| *s == 0));
        let tried = sends(&p.poll(16_000, 0, &mut c));
        let (server, req) = tried.iter().find(|(s, _)| *s == 1).unwrap();
        assert!(req.failover && *server == 1);
        let out = p.on_answer(16_010, 1, req.seq, Ok(&answer(2, 1, None, 0)), &mut c);
        assert!(out
            .iter()
            .any(|a| matches!(a, Action::Event(Event::FailedOver { backup: 1, .. }))));
        assert!(p.on_backup());
    }

    #[test]
    fn a_relearning_primary_keeps_the_lease_but_the_client_moves_to_the_backup() {
        let mut p = policy(2);
        let mut c = TestCache::default();
        let mut at = 0;
        let mut tried = None;
        while at <= 12_000 && tried.is_none() {
            for (s, r) in sends(&p.poll(at, 0, &mut c)) {
                if s == 0 {
                    let a = answer(0, 0, Some(QuotaReason::Relearning), 0);
                    p.on_answer(at + 1, 0, r.seq, Ok(&a), &mut c);
                } else {
                    tried = Some(at);
                }
            }
            at += 100;
        }
        assert_eq!(
            p.lease_from(at),
            Some(0),
            "the relearning answers keep the lease"
        );
        let t = tried.expect("the backup was tried");
        assert!((10_000..=10_100).contains(&t), "{t}");
    }

    #[test]
    fn calls_are_reported_to_the_server_in_use_and_settled_with_one_left() {
        let mut p = policy(2);
        let mut c = TestCache::default();
        let r = sends(&p.poll(0, 0, &mut c));
        p.on_answer(1, 0, r[0].1.seq, Ok(&answer(2, 1, None, 0)), &mut c);
        c.acquired = 5;
        let r = sends(&p.poll(2_000, 0, &mut c));
        assert_eq!(r[0].1.features[&tts()].acquired, 5);
        // That answer is lost; the primary then goes silent and the backup takes over.
        let mut at = 2_000;
        let backup_req = loop {
            at += 100;
            let s = sends(&p.poll(at, 0, &mut c));
            if let Some((_, r)) = s.into_iter().find(|(s, _)| *s == 1) {
                break r;
            }
        };
        c.acquired = 7;
        assert_eq!(
            backup_req.features[&tts()].acquired,
            0,
            "a failover attempt carries nothing new"
        );
        p.on_answer(
            at + 1,
            1,
            backup_req.seq,
            Ok(&answer(2, 1, None, 0)),
            &mut c,
        );
        let r = sends(&p.poll(at + 2_000, 0, &mut c));
        let to_backup = r.iter().find(|(s, _)| *s == 1).unwrap();
        assert_eq!(
            to_backup.1.features[&tts()].acquired,
            2,
            "new calls go to the backup"
        );
        let probe = r.iter().find(|(s, _)| *s == 0).unwrap();
        assert_eq!(
            probe.1.features[&tts()].acquired,
            5,
            "the primary is sent again what it may not have counted"
        );
        assert_eq!(probe.1.features[&tts()].quota, 0, "no quota reported to it");
        // Back on the primary: the backup gets a release with its totals, and again every
        // refresh until it confirms them.
        let out = p.on_answer(
            at + 2_001,
            0,
            probe.1.seq,
            Ok(&answer(3, 1, None, 5)),
            &mut c,
        );
        let release = sends(&out).into_iter().find(|(s, _)| *s == 1).unwrap();
        assert!(release.1.release && release.1.features[&tts()].acquired == 2);
        // The primary answers from now on; the backup's answers are lost for a while, then
        // it confirms: the releases stop.
        let mut releases = 1;
        let mut t = at + 2_001;
        let mut settled_at = None;
        while t < at + 40_000 {
            t += 100;
            for (s, r) in sends(&p.poll(t, 0, &mut c)) {
                if s == 0 {
                    p.on_answer(t + 1, 0, r.seq, Ok(&answer(3, 1, None, 5)), &mut c);
                } else {
                    assert!(r.release, "only releases go to the backup: {r:?}");
                    assert!(settled_at.is_none(), "a release after the backup confirmed");
                    releases += 1;
                    if t > at + 12_000 {
                        p.on_answer(t + 1, 1, r.seq, Ok(&answer(0, 0, None, 2)), &mut c);
                        settled_at = Some(t);
                    }
                }
            }
        }
        assert!(
            releases >= 2,
            "sent again after the first was lost: {releases}"
        );
        assert!(settled_at.is_some());
        let later = sends(&p.poll(t + 2_000, 0, &mut c));
        assert!(later.iter().all(|(s, _)| *s == 0), "settled: {later:?}");
    }
}
