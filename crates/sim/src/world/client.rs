//! The client processes: the real client policy over a model of the cache, calls arriving
//! and held, waiters of deny-wait, starts and stops.

use super::*;

impl World<'_> {
    pub(super) fn start_client(&mut self, slot: usize) {
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

    pub(super) fn stop_client(&mut self, slot: usize, clean: bool) {
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
    pub(super) fn poll_client(&mut self, slot: usize) {
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
    pub(super) fn recording(&self, slot: usize) -> bool {
        self.cfg.record_policy && slot == 0 && self.clients[0].proc_ == self.first_proc_of_slot0
    }

    pub(super) fn schedule_poll(&mut self, slot: usize) {
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
    pub(super) fn wake(&mut self, slot: usize, why: u8) {
        let c = &mut self.clients[slot];
        if c.wake & why == why {
            return;
        }
        c.wake |= why;
        self.schedule_poll(slot);
    }

    pub(super) fn execute(
        &mut self,
        slot: usize,
        actions: Vec<Action>,
        answered: Option<(usize, u64)>,
    ) {
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
    pub(super) fn serve_waiters(&mut self, slot: usize) {
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

    pub(super) fn deny_waiter(&mut self, slot: usize, w: &Waiter) {
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
    pub(super) fn granted(&mut self, slot: usize, f: usize, headroom: u32, hold: Option<u64>) {
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

    pub(super) fn release_one(&mut self, slot: usize, f: usize) {
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

    pub(super) fn total_in_use(&self, f: usize) -> u32 {
        self.clients
            .iter()
            .filter(|c| c.up)
            .map(|c| c.cache.in_use[f])
            .sum()
    }

    /// Licenses of feature `f` in use at clients whose lease is from server `s`.
    pub(super) fn in_use_under(&self, s: usize, f: usize) -> u32 {
        let now = self.now;
        self.clients
            .iter()
            .filter(|c| c.up && c.lease_from(c.clock.local(now)) == Some(s))
            .map(|c| c.cache.in_use[f])
            .sum()
    }

    /// One acquire attempt: from the cache, or asking the server (deny-wait).
    pub(super) fn acquire(&mut self, slot: usize, f: usize, hold: Option<u64>, counted: bool) {
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

    pub(super) fn work(&mut self, slot: usize) {
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
    pub(super) fn call_arrive(&mut self) {
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
}
