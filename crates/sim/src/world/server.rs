//! The license servers: start (restored or learning, as the real server decides), crash,
//! persistence of what the real allocator raised and of its snapshots, housekeeping, and
//! answering lease requests with the real allocator.

use super::*;

impl World<'_> {
    pub(super) fn start_server(&mut self, s: usize, restarted: bool) {
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
            if recently && now >= server.disk.learning_until {
                self.stats.restores += 1;
                server.disk.leases.restored()
            } else {
                self.stats.learning_starts += 1;
                server.disk.learning_until = now + HOLD_MS;
                server.disk.leases.learning()
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

    pub(super) fn crash_server(&mut self, s: usize) {
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

    pub(super) fn expire_early(&self) -> u64 {
        match self.cfg.planted_bug {
            Some(PlantedBug::Hold100s) => HOLD_MS.saturating_sub(100_000),
            _ => 0,
        }
    }

    /// Persists the allocator's snapshot with the ledger, in one step.
    pub(super) fn persist(&mut self, s: usize) {
        let now = self.now;
        let server = &mut self.servers[s];
        let Some(alloc) = server.alloc.as_mut() else {
            return;
        };
        let snap = alloc.snapshot();
        server.disk.leases.apply(&snap);
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

    pub(super) fn housekeep(&mut self, s: usize) {
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
    pub(super) fn serve(
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
        let req = ClientRequest::from(request);
        let answer = alloc.request(local, &req, &Serving::Yes);
        // What raised a reservation is on disk before the answer leaves.
        server.disk.leases.raise(&answer.raised);
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
}
