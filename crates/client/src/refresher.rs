//! The background refresher: one thread per client, owning a small current-thread tokio
//! runtime for its HTTP requests. It sends the lease request every refresh period (or early,
//! when `acquire` found the cache full), installs the answers in the cache, fails over to the
//! backups and back, and notices the flush.
//!
//! Failover: while on the primary, each refresh goes to the primary. When no good answer came
//! from it for `failover_after` (errors, refusals and requests that outlive the request
//! timeout all count), the refresher tries the backups in order and stays with the first
//! that answers, saying `failover: true`. From then on each refresh probes the primary and
//! asks the backup at the same time; the first good answer of the primary brings the client
//! back, and the backup is told to free its grant (`DELETE`, best effort). A backup that fails
//! is replaced by the next one that answers.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use leasehold_proto::{
    ClientId, ErrorBody, FeatureRequest, LeaseRequest, LeaseResponse, QuotaReason,
};

use crate::cache::{Reason, Shared};
use crate::servers::ServerAddr;

/// How long the `DELETE` on shutdown or after a return to the primary may take.
pub(crate) const DELETE_TIMEOUT: Duration = Duration::from_millis(750);
/// Headroom above what is held is at least 1, and at most `max(MIN_HEADROOM_CAP, held)`.
pub(crate) const MIN_HEADROOM_CAP: u32 = 8;

#[derive(Debug)]
pub(crate) struct Config {
    /// `[0]` is the primary, the rest are backups in order of preference.
    pub(crate) servers: Vec<ServerAddr>,
    pub(crate) product_release: NaiveDate,
    pub(crate) client_id: ClientId,
    pub(crate) refresh: Duration,
    pub(crate) failover_after: Duration,
    pub(crate) flush_after: Duration,
    pub(crate) request_timeout: Duration,
}

impl Config {
    /// Shortest gap between two refreshes when `acquire` asks for an early one.
    fn min_gap(&self) -> Duration {
        self.refresh / 4
    }
}

/// What the refresher knows, for `status()`. Never touched by `acquire`.
#[derive(Debug, Default)]
pub(crate) struct Info {
    /// Index of the server whose answer the cache holds.
    pub(crate) current: Option<usize>,
    pub(crate) failover: bool,
    pub(crate) last_good_send: Option<Instant>,
    /// When the installed answer stops being usable (send + min(lease, flush period)).
    pub(crate) valid_until: Option<Instant>,
    pub(crate) server_guid: Option<String>,
    pub(crate) server_context: Option<String>,
    pub(crate) last_error: Option<String>,
    /// The server's reason per feature (parallel to the slots).
    pub(crate) reasons: Vec<Option<String>>,
}

pub(crate) fn lock(info: &Mutex<Info>) -> MutexGuard<'_, Info> {
    info.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many licenses to ask for: what is held (the peak since the last answer) plus headroom
/// `max(1, held/4) + denials since the last answer`, the headroom capped at
/// `max(8, held)`. So an idle feature asks for 1, a steady load for 25 % more than it uses, a
/// burst of denials for up to twice what is held, and the fair share on the server stays
/// proportional to real use.
pub(crate) fn want(in_use: u32, peak: u32, recent_denials: u64) -> u32 {
    let held = in_use.max(peak);
    let base = u64::from((held / 4).max(1));
    let cap = u64::from(held.max(MIN_HEADROOM_CAP));
    let headroom = u32::try_from((base + recent_denials).min(cap)).unwrap_or(u32::MAX);
    held.saturating_add(headroom)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Primary,
    Failover(usize),
}

#[derive(Debug, Default, Clone, Copy)]
struct FeatState {
    granted: u32,
    valid_until: Option<Instant>,
    denied_seen: u64,
    denied_pending: u64,
}

pub(crate) struct Refresher {
    shared: Arc<Shared>,
    info: Arc<Mutex<Info>>,
    cfg: Arc<Config>,
    http: reqwest::Client,
    mode: Mode,
    primary_ok_at: Instant,
    /// The server whose answer the current quotas came from.
    granted_by: Option<usize>,
    /// Sequence number of the last request sent, and of the last one sent to each server
    /// (a release names it, so a late release cannot free a newer grant).
    seq: u64,
    last_seq_to: Vec<u64>,
    features: Vec<FeatState>,
    flushed: bool,
}

impl Refresher {
    pub(crate) fn new(
        shared: Arc<Shared>,
        info: Arc<Mutex<Info>>,
        cfg: Arc<Config>,
        http: reqwest::Client,
    ) -> Self {
        let n = shared.slots.len();
        let servers = cfg.servers.len();
        Self {
            shared,
            info,
            cfg,
            http,
            mode: Mode::Primary,
            primary_ok_at: Instant::now(),
            granted_by: None,
            seq: 0,
            last_seq_to: vec![0; servers],
            features: vec![FeatState::default(); n],
            flushed: false,
        }
    }

    /// The thread's body: refresh until told to stop, then give the quota back.
    pub(crate) fn run(mut self, rt: tokio::runtime::Runtime) {
        let shared = self.shared.clone();
        while !shared.stop.load(Ordering::Acquire) {
            let started = Instant::now();
            shared.refresh_wanted.store(false, Ordering::Release);
            rt.block_on(async {
                tokio::select! {
                    () = self.tick() => {}
                    () = shared.stop_notify.notified() => {}
                }
            });
            self.check_flush();
            self.wait_next(started);
        }
        let current = lock(&self.info).current;
        if let Some(i) = current {
            rt.block_on(self.delete(i));
        }
        tracing::debug!(client = %self.cfg.client_id, "license refresher stopped");
    }

    fn wait_next(&mut self, started: Instant) {
        let shared = self.shared.clone();
        loop {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            let regular = started + self.cfg.refresh;
            if now >= regular {
                return;
            }
            let early = started + self.cfg.min_gap();
            let wanted = shared.refresh_wanted.load(Ordering::Acquire);
            if wanted && now >= early {
                return;
            }
            let until = if wanted { early } else { regular };
            // Wake in time to notice the flush, too.
            let flush_at = lock(&self.info).valid_until.filter(|_| !self.flushed);
            let until = flush_at.map_or(until, |f| until.min(f.max(now)));
            if until > now {
                std::thread::park_timeout(until - now);
            } else {
                self.check_flush();
            }
        }
    }

    fn check_flush(&mut self) {
        let mut info = lock(&self.info);
        if self.flushed {
            return;
        }
        if let (Some(valid), Some(sent)) = (info.valid_until, info.last_good_send) {
            if Instant::now() >= valid {
                self.flushed = true;
                let server = info.current.map(|i| self.cfg.servers[i].to_string());
                info.current = None;
                drop(info);
                tracing::warn!(
                    client = %self.cfg.client_id,
                    last_server = server.as_deref().unwrap_or("none"),
                    since_last_good_ms = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "no license server answered for the flush period: license cache flushed, new license requests are denied until a server answers"
                );
            }
        }
    }

    async fn tick(&mut self) {
        match self.mode {
            Mode::Primary => {
                let send = Instant::now();
                let req = self.request(0, false, send);
                match self.post(0, &req).await {
                    Ok(resp) => {
                        self.primary_ok_at = send;
                        self.install(0, send, &resp);
                    }
                    Err(e) => {
                        self.note_error(0, e);
                        let silent = self.primary_ok_at.elapsed();
                        if self.cfg.servers.len() > 1 && silent >= self.cfg.failover_after {
                            let order: Vec<usize> = (1..self.cfg.servers.len()).collect();
                            if let Some(i) = self.try_backups(&order).await {
                                tracing::warn!(
                                    client = %self.cfg.client_id,
                                    primary = %self.cfg.servers[0],
                                    backup = %self.cfg.servers[i],
                                    primary_silent_ms = u64::try_from(silent.as_millis()).unwrap_or(u64::MAX),
                                    "primary license server not answering: switched to backup"
                                );
                                self.mode = Mode::Failover(i);
                            }
                        }
                    }
                }
            }
            Mode::Failover(cur) => {
                let send = Instant::now();
                let probe = self.request(0, false, send);
                let on_backup = self.request(cur, true, send);
                let (p, b) = tokio::join!(self.post(0, &probe), self.post(cur, &on_backup));
                // A primary still relearning its leases after a restart cannot cover what the
                // backup granted: stay on the backup until the primary can.
                let p = p.and_then(|resp| match relearning_short(&probe, &resp) {
                    Some(why) => Err(why),
                    None => Ok(resp),
                });
                match p {
                    Ok(resp) => {
                        self.primary_ok_at = send;
                        self.install(0, send, &resp);
                        self.mode = Mode::Primary;
                        tracing::info!(
                            client = %self.cfg.client_id,
                            primary = %self.cfg.servers[0],
                            backup = %self.cfg.servers[cur],
                            "primary license server answers again: switched back from backup"
                        );
                        // Free the backup's grant; ours is now the primary's.
                        self.delete(cur).await;
                        return;
                    }
                    Err(e) => self.note_error(0, e),
                }
                match b {
                    Ok(resp) => self.install(cur, send, &resp),
                    Err(e) => {
                        self.note_error(cur, e);
                        let order: Vec<usize> =
                            (1..self.cfg.servers.len()).filter(|i| *i != cur).collect();
                        if let Some(i) = self.try_backups(&order).await {
                            tracing::warn!(
                                client = %self.cfg.client_id,
                                from = %self.cfg.servers[cur],
                                to = %self.cfg.servers[i],
                                "backup license server not answering: switched to another backup"
                            );
                            self.mode = Mode::Failover(i);
                        }
                    }
                }
            }
        }
    }

    /// Asks each backup in `order` until one answers; installs its answer.
    async fn try_backups(&mut self, order: &[usize]) -> Option<usize> {
        for &i in order {
            let send = Instant::now();
            let req = self.request(i, true, send);
            match self.post(i, &req).await {
                Ok(resp) => {
                    self.install(i, send, &resp);
                    return Some(i);
                }
                Err(e) => self.note_error(i, e),
            }
        }
        None
    }

    /// The request for server `to`. It reports a held quota only to the server that granted
    /// it: another server (a restarted primary relearning its leases, say) must not confirm
    /// a quota it never gave, on top of leases it granted before that are still valid.
    fn request(&mut self, to: usize, failover: bool, now: Instant) -> LeaseRequest {
        let ours = self.granted_by == Some(to);
        self.seq += 1;
        if let Some(last) = self.last_seq_to.get_mut(to) {
            *last = self.seq;
        }
        let mut features = std::collections::BTreeMap::new();
        for (slot, st) in self.shared.slots.iter().zip(self.features.iter_mut()) {
            let in_use = slot.in_use.load(Ordering::Acquire);
            let peak = slot.peak.load(Ordering::Relaxed);
            let acquired = slot.acquired.load(Ordering::Relaxed);
            let denied = slot.denied.load(Ordering::Relaxed);
            st.denied_pending = denied;
            let quota = match st.valid_until {
                Some(v) if ours && now < v => st.granted,
                _ => 0,
            };
            features.insert(
                slot.feature.clone(),
                FeatureRequest {
                    in_use,
                    want: want(in_use, peak, denied.saturating_sub(st.denied_seen)),
                    quota,
                    acquired,
                    denied,
                },
            );
        }
        LeaseRequest {
            client_id: self.cfg.client_id.clone(),
            product_release: self.cfg.product_release,
            seq: self.seq,
            features,
            failover,
        }
    }

    fn install(&mut self, server: usize, send: Instant, resp: &LeaseResponse) {
        self.granted_by = Some(server);
        let lease = Duration::from_secs(resp.lease_secs).min(self.cfg.flush_after);
        let valid = send + lease;
        let valid_nanos = self.shared.nanos_at(valid);
        let mut reasons = Vec::with_capacity(self.shared.slots.len());
        for (slot, st) in self.shared.slots.iter().zip(self.features.iter_mut()) {
            let (quota, code, reason) = match resp.features.get(&slot.feature) {
                Some(fq) => (fq.quota, fq.code, fq.reason.clone()),
                None => (
                    0,
                    Some(QuotaReason::NoLicense),
                    Some(format!(
                        "the server did not answer for feature {}",
                        slot.feature
                    )),
                ),
            };
            slot.install(quota, Reason::classify(code), valid_nanos);
            slot.peak
                .store(slot.in_use.load(Ordering::Relaxed), Ordering::Relaxed);
            st.granted = quota;
            st.valid_until = Some(valid);
            st.denied_seen = st.denied_pending;
            reasons.push(reason);
        }
        self.shared.connected.store(true, Ordering::Release);
        let mut info = lock(&self.info);
        let first = info.last_good_send.is_none();
        info.current = Some(server);
        info.failover = server != 0;
        info.last_good_send = Some(send);
        info.valid_until = Some(valid);
        info.server_guid = Some(resp.server_guid.to_string());
        info.server_context = Some(resp.context.to_string());
        if server == 0 {
            // On a backup the primary's last error stays visible: it is why we are there.
            info.last_error = None;
        }
        info.reasons = reasons;
        drop(info);
        if self.flushed {
            self.flushed = false;
            tracing::info!(
                client = %self.cfg.client_id,
                server = %self.cfg.servers[server],
                "license server answers again: license cache restored, serving requests"
            );
        } else if first {
            tracing::info!(
                client = %self.cfg.client_id,
                server = %self.cfg.servers[server],
                "connected to license server"
            );
        }
    }

    fn note_error(&self, server: usize, e: String) {
        tracing::debug!(client = %self.cfg.client_id, server = %self.cfg.servers[server], error = %e, "lease refresh failed");
        lock(&self.info).last_error = Some(format!("{}: {e}", self.cfg.servers[server]));
    }

    async fn post(&self, server: usize, req: &LeaseRequest) -> Result<LeaseResponse, String> {
        let url = format!("{}/v1/lease", self.cfg.servers[server]);
        let resp = self
            .http
            .post(url)
            .json(req)
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let msg = serde_json::from_str::<ErrorBody>(&body)
                .map(|b| format!("{}: {}", b.error, b.message))
                .unwrap_or_else(|_| body.chars().take(200).collect());
            return Err(format!("HTTP {status}: {msg}"));
        }
        let answer = resp
            .json::<LeaseResponse>()
            .await
            .map_err(|e| format!("bad answer: {}", error_chain(&e)))?;
        match suspended(&answer) {
            Some(why) => Err(why),
            None => Ok(answer),
        }
    }

    async fn delete(&self, server: usize) {
        let url = format!(
            "{}/v1/lease/{}?seq={}",
            self.cfg.servers[server],
            self.cfg.client_id,
            self.last_seq_to.get(server).copied().unwrap_or(u64::MAX)
        );
        match self
            .http
            .delete(url)
            .timeout(DELETE_TIMEOUT.min(self.cfg.request_timeout))
            .send()
            .await
        {
            Ok(r) => {
                tracing::debug!(server = %self.cfg.servers[server], status = %r.status(), "lease given back")
            }
            Err(e) => {
                tracing::debug!(server = %self.cfg.servers[server], error = %error_chain(&e), "giving the lease back failed")
            }
        }
    }
}

/// Why an answer that is relearning after a restart would leave licenses the client holds
/// uncovered, if it would.
pub(crate) fn relearning_short(req: &LeaseRequest, answer: &LeaseResponse) -> Option<String> {
    answer.features.iter().find_map(|(feature, q)| {
        let held = req.features.get(feature).map_or(0, |f| f.in_use);
        (q.code == Some(QuotaReason::Relearning) && q.quota < held).then(|| {
            format!("primary is relearning its leases after a restart and cannot yet cover the {held} {feature} licenses held")
        })
    })
}

/// A server that answers but serves no licenses at all (grace over, clock set back) leaves
/// its licenses unavailable: for failover that is no good answer, so the client moves to a
/// backup as it would from a server that is down.
pub(crate) fn suspended(answer: &LeaseResponse) -> Option<String> {
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let c_s = c.to_string();
        if !s.contains(&c_s) {
            s.push_str(": ");
            s.push_str(&c_s);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_serving_no_licenses_is_not_a_good_answer() {
        use leasehold_proto::{Context, Feature, FeatureQuota, ServerGuid};
        let fq = |code| FeatureQuota {
            quota: 0,
            code,
            reason: Some("grace over".into()),
        };
        let answer = |codes: &[Option<QuotaReason>]| LeaseResponse {
            server_guid: ServerGuid::from_bytes([1; 16]),
            context: Context::Production,
            lease_secs: 120,
            features: codes
                .iter()
                .enumerate()
                .map(|(i, c)| (Feature::parse(&format!("f{i}")).unwrap(), fq(*c)))
                .collect(),
        };
        let s = Some(QuotaReason::Suspended);
        assert!(suspended(&answer(&[s, s])).unwrap().contains("grace over"));
        assert!(suspended(&answer(&[s, Some(QuotaReason::Exhausted)])).is_none());
        assert!(suspended(&answer(&[None])).is_none());
        assert!(suspended(&answer(&[])).is_none());
    }

    #[test]
    fn want_adds_bounded_headroom() {
        assert_eq!(want(0, 0, 0), 1);
        assert_eq!(want(4, 0, 0), 5);
        assert_eq!(want(2, 9, 0), 11, "the peak since the last answer counts");
        assert_eq!(want(40, 0, 0), 50);
        assert_eq!(want(1, 0, 3), 5);
        assert_eq!(
            want(1, 0, 1_000_000),
            9,
            "denials are capped at max(8, held)"
        );
        assert_eq!(want(100, 0, 1_000_000), 200);
        assert_eq!(want(u32::MAX, 0, 5), u32::MAX);
    }
}
