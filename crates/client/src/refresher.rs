//! The background refresher: one thread per client, owning a small current-thread tokio
//! runtime. It runs the client [`Policy`](crate::policy::Policy) against the network and
//! the cache: it polls the policy when the policy's timer is due or the cache wakes it
//! (headroom low, licenses to give back, calls waiting for the server), sends the requests
//! the policy asks for (several may be in flight, one per server), hands every answer back
//! to the policy, and installs what the policy says to install. Every decision is in the
//! policy; this module only does I/O, logs and keeps the status.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use leasehold_proto::{ClientId, ErrorBody, Feature, LeaseRequest, LeaseResponse};
use tokio::task::{AbortHandle, JoinSet};

use crate::cache::{Reason, Shared, Wake};
use crate::policy::{self, Action, Event, Holding, Policy, PolicyConfig};
use crate::servers::ServerAddr;

/// How long the final request on shutdown may take.
pub(crate) const SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(750);

#[derive(Debug)]
pub(crate) struct Config {
    /// `[0]` is the primary, the rest are backups in order of preference.
    pub(crate) servers: Vec<ServerAddr>,
    pub(crate) product_release: NaiveDate,
    pub(crate) client_id: ClientId,
    /// What the servers show the operator for this client.
    pub(crate) name: String,
    pub(crate) refresh: Duration,
    pub(crate) failover_after: Duration,
    pub(crate) flush_after: Duration,
    pub(crate) request_timeout: Duration,
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

/// The cache's atomics, as the policy sees them.
struct SlotCache<'a>(&'a Shared);

impl policy::Cache for SlotCache<'_> {
    fn holding(&mut self, i: usize) -> Holding {
        let slot = &self.0.slots[i];
        let in_use = slot.in_use();
        Holding {
            in_use,
            peak: slot.peak.swap(in_use, Ordering::Relaxed).max(in_use),
            acquired: slot.acquired.load(Ordering::Relaxed),
            denied: slot.denied.load(Ordering::Relaxed),
            waiting: slot.waiting.load(Ordering::Acquire),
        }
    }

    fn held(&self, i: usize) -> u32 {
        self.0.slots[i].in_use()
    }

    fn lower(&mut self, i: usize, keep: u32) -> (u32, u32) {
        self.0.slots[i].lower(keep)
    }

    fn install(&mut self, features: &[policy::InstallFeature], valid_until_ms: u64) {
        let valid_nanos = valid_until_ms.saturating_mul(1_000_000);
        for (slot, f) in self.0.slots.iter().zip(features) {
            slot.install(
                f.quota,
                Reason::classify(f.code),
                valid_nanos,
                f.low_water,
                f.give_back_above,
            );
        }
        self.0.connected.store(true, Ordering::Release);
    }
}

type Reply = (usize, u64, Result<LeaseResponse, String>);

pub(crate) struct Refresher {
    shared: Arc<Shared>,
    info: Arc<Mutex<Info>>,
    cfg: Arc<Config>,
    http: reqwest::Client,
    policy: Policy,
    inflight: JoinSet<Reply>,
    /// Per server: the request in flight, and the deny-wait registrations it covers.
    sent: Vec<Option<(u64, AbortHandle, u64)>>,
    /// Per server: GUID and context of its last answer.
    answered_by: Vec<Option<(String, String)>>,
}

impl Refresher {
    pub(crate) fn new(
        shared: Arc<Shared>,
        info: Arc<Mutex<Info>>,
        cfg: Arc<Config>,
        http: reqwest::Client,
    ) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let policy = Policy::new(
            PolicyConfig {
                servers: cfg.servers.len(),
                refresh_ms: ms(cfg.refresh),
                failover_after_ms: ms(cfg.failover_after),
                flush_after_ms: ms(cfg.flush_after),
                request_timeout_ms: ms(cfg.request_timeout),
            },
            cfg.client_id.clone(),
            cfg.product_release,
            shared
                .slots
                .iter()
                .map(|s| s.feature.clone())
                .collect::<Vec<Feature>>(),
            0,
        );
        let servers = cfg.servers.len();
        Self {
            shared,
            info,
            cfg,
            http,
            policy,
            inflight: JoinSet::new(),
            sent: (0..servers).map(|_| None).collect(),
            answered_by: vec![None; servers],
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.shared.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn instant(&self, ms: u64) -> Instant {
        self.shared.epoch + Duration::from_millis(ms)
    }

    /// The thread's body: refresh until told to stop, then give the quota back.
    pub(crate) fn run(mut self, rt: tokio::runtime::Runtime) {
        rt.block_on(self.serve());
        rt.block_on(self.shutdown());
        tracing::debug!(client = %self.cfg.client_id, "license refresher stopped");
    }

    async fn serve(&mut self) {
        let shared = self.shared.clone();
        loop {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            let now = self.now_ms();
            self.policy
                .set_asks(shared.deny_wait_ms.load(Ordering::Relaxed) > 0);
            let woken = shared.take_wake() & !Wake::STOP;
            let actions = self.policy.poll(now, woken, &mut SlotCache(&shared));
            self.execute(actions);
            let wake_at = self.instant(self.policy.next_wake(self.now_ms()));
            tokio::select! {
                Some(done) = self.inflight.join_next(), if !self.inflight.is_empty() => {
                    if let Ok((server, seq, result)) = done {
                        self.answer(server, seq, result);
                    }
                }
                () = tokio::time::sleep_until(wake_at.into()) => {}
                () = shared.wake_notify.notified() => {}
            }
        }
    }

    fn answer(&mut self, server: usize, seq: u64, result: Result<LeaseResponse, String>) {
        let covers = match self.sent[server] {
            Some((s, _, covers)) if s == seq => {
                self.sent[server] = None;
                Some(covers)
            }
            _ => None,
        };
        if let Ok(a) = &result {
            self.answered_by[server] = Some((a.server_guid.to_string(), a.context.to_string()));
        }
        let now = self.now_ms();
        let shared = self.shared.clone();
        let actions = self.policy.on_answer(
            now,
            server,
            seq,
            result.as_ref().map_err(Clone::clone),
            &mut SlotCache(&shared),
        );
        let installed = actions
            .iter()
            .any(|a| matches!(a, Action::Install { server: s, .. } if *s == server));
        self.execute(actions);
        if let (true, Some(covers)) = (installed, covers) {
            // What the server could give for calls that asked before this request left is
            // installed now: those still without a license are denied.
            self.shared.answered(covers);
        }
    }

    fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { server, request } => self.send(server, request),
                Action::Abandon { server } => {
                    if let Some((_, handle, _)) = self.sent[server].take() {
                        handle.abort();
                    }
                }
                Action::Install {
                    server,
                    features,
                    valid_until_ms,
                } => self.installed(server, &features, valid_until_ms),
                Action::Event(e) => self.event(e),
            }
        }
    }

    fn send(&mut self, server: usize, request: LeaseRequest) {
        let seq = request.seq;
        let covers = self.shared.asks.registered.load(Ordering::Acquire);
        let http = self.http.clone();
        let url = format!("{}/v1/lease", self.cfg.servers[server]);
        let handle = self.inflight.spawn(async move {
            let result = post(&http, &url, &request).await;
            (server, seq, result)
        });
        if let Some((_, old, _)) = self.sent[server].replace((seq, handle, covers)) {
            old.abort();
        }
    }

    /// The status after an answer was installed (the policy installed it in the cache).
    fn installed(
        &mut self,
        server: usize,
        features: &[policy::InstallFeature],
        valid_until_ms: u64,
    ) {
        let valid = self.instant(valid_until_ms);
        let send = valid.checked_sub(
            Duration::from_secs(leasehold_proto::LEASE_SECS).min(self.cfg.flush_after),
        );
        let reasons = features.iter().map(|f| f.reason.clone()).collect();
        let mut info = lock(&self.info);
        info.current = Some(server);
        info.failover = server != 0;
        info.last_good_send = send;
        info.valid_until = Some(valid);
        if let Some((guid, context)) = self.answered_by[server].clone() {
            info.server_guid = Some(guid);
            info.server_context = Some(context);
        }
        if server == 0 {
            // On a backup the primary's last error stays visible: it is why we are there.
            info.last_error = None;
        }
        info.reasons = reasons;
    }

    fn event(&mut self, e: Event) {
        let client = &self.cfg.client_id;
        let name = |i: usize| self.cfg.servers[i].to_string();
        match e {
            Event::Connected { server } => {
                tracing::info!(%client, server = %name(server), "connected to license server");
            }
            Event::FailedOver {
                backup,
                primary_silent_ms,
            } => {
                let mut info = lock(&self.info);
                if info.last_error.is_none() {
                    info.last_error = Some(format!(
                        "{}: no good answer for {primary_silent_ms} ms",
                        name(0)
                    ));
                }
                drop(info);
                tracing::warn!(
                    %client,
                    primary = %name(0),
                    backup = %name(backup),
                    primary_silent_ms,
                    "primary license server not answering: switched to backup"
                );
            }
            Event::BackupChanged { from, to } => tracing::warn!(
                %client,
                from = %name(from),
                to = %name(to),
                "backup license server not answering: switched to another backup"
            ),
            Event::Returned { from } => tracing::info!(
                %client,
                primary = %name(0),
                backup = %name(from),
                "primary license server answers again: switched back from backup"
            ),
            Event::Flushed { last_server } => {
                lock(&self.info).current = None;
                tracing::warn!(
                    %client,
                    last_server = last_server.map(name).as_deref().unwrap_or("none"),
                    "no license server answered for the flush period: license cache flushed, new license requests are denied until a server answers"
                );
            }
            Event::Resumed { server } => tracing::info!(
                %client,
                server = %name(server),
                "license server answers again: license cache restored, serving requests"
            ),
            Event::Failed { server, error } => {
                tracing::debug!(%client, server = %name(server), %error, "lease refresh failed");
                lock(&self.info).last_error = Some(format!("{}: {error}", name(server)));
            }
        }
    }

    /// Gives everything back to the server whose answer is installed (best effort, short).
    async fn shutdown(&mut self) {
        self.inflight.abort_all();
        let now = self.now_ms();
        let shared = self.shared.clone();
        if let Some(Action::Send { server, request }) =
            self.policy.shutdown(now, &mut SlotCache(&shared))
        {
            let url = format!("{}/v1/lease", self.cfg.servers[server]);
            match tokio::time::timeout(SHUTDOWN_TIMEOUT, post(&self.http, &url, &request)).await {
                Ok(Ok(_)) => tracing::debug!(server = %url, "lease given back"),
                Ok(Err(e)) => {
                    tracing::debug!(server = %url, error = %e, "giving the lease back failed")
                }
                Err(_) => tracing::debug!(server = %url, "giving the lease back timed out"),
            }
        }
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    req: &LeaseRequest,
) -> Result<LeaseResponse, String> {
    let resp = http
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
    resp.json::<LeaseResponse>()
        .await
        .map_err(|e| format!("bad answer: {}", error_chain(&e)))
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
