//! The network: links between clients, servers and the node, their delays, drops and
//! faults, and the delivery of every message to the host it is for.

use super::*;

impl World<'_> {
    pub(super) fn chaos_delay(&mut self) -> u64 {
        // Roughly exponential with the seed's mean.
        let u: f64 = self.rng.gen_range(0.0001..1.0);
        self.now + (-(u.ln()) * self.chaos_mean_ms as f64) as u64
    }

    // ---------------------------------------------------------------------------------
    // Network

    pub(super) fn send(&mut self, link: LinkId, msg: Msg) {
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

    pub(super) fn reachable(&self, c: usize, s: usize) -> bool {
        self.servers[s].up
            && self
                .links
                .get(&LinkId::Cs(c, s))
                .is_some_and(|l| l.state == LinkState::Good)
    }

    // ---------------------------------------------------------------------------------
    // Events

    pub(super) fn deliver(&mut self, msg: Msg) {
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

    pub(super) fn fault_link(&mut self, link: LinkId, state: LinkState, dur: u64) {
        self.stats.link_faults += 1;
        let epoch = self.id();
        if let Some(l) = self.links.get_mut(&link) {
            l.state = state;
            l.epoch = epoch;
        }
        self.at(self.now + dur, Ev::Heal { link, epoch });
    }

    pub(super) fn chaos(&mut self) {
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
}
