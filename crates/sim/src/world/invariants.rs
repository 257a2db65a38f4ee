//! The invariants of DESIGN.md §4, checked after every event: allocation (never more in
//! use under valid leases than the count), clients, usage counted once.

use super::*;

impl World<'_> {
    /// Tracks reachability since when, overlap and backup episodes, after every event.
    pub(super) fn update_views(&mut self) {
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
            let using = cl.cache.in_use.iter().any(|n| *n > 0);
            let from = cl.lease_from(local);
            if using {
                if let Some(s) = from {
                    in_use_on[s] = true;
                }
            }
            if using && from == Some(BACKUP) && cl.on_backup() && backup_ok {
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

    pub(super) fn check(&mut self) -> Result<(), Broken> {
        if let Some(b) = self.broken.take() {
            return Err(b);
        }
        self.check_allocation()?;
        self.check_clients()?;
        self.check_usage()?;
        if let Some(why) = self.refused.take() {
            return Err((Invariant::OneInstance, why));
        }
        Ok(())
    }

    /// §4.1(a), per server and feature: what each client holds under a valid lease of the
    /// server (its installed quota, lowered as it lowered it) or may still install (the
    /// answer to the request its policy waits for), summed, never exceeds the count.
    pub(super) fn check_allocation(&mut self) -> Result<(), Broken> {
        let now = self.now;
        let clients = &self.clients;
        for (pi, p) in self.procs.iter_mut().enumerate() {
            let c = &clients[p.slot];
            let local = c.clock.local(now);
            let policy = c.policy.as_ref().filter(|_| p.alive && c.proc_ == pi);
            p.issued.retain(|g| {
                g.until > local
                    && local <= g.send + TIMEOUT_MS
                    && policy.is_some_and(|pol| pol.outstanding(g.server) == Some(g.seq))
            });
        }
        for (s, server_name) in SERVER_NAMES.iter().enumerate() {
            for f in 0..self.features.len() {
                let count = self.servers[s].counts[f];
                let mut total = 0u64;
                let mut detail = Vec::new();
                for (pi, p) in self.procs.iter().enumerate() {
                    if !p.alive {
                        continue;
                    }
                    let c = &self.clients[p.slot];
                    if c.proc_ != pi || !c.up {
                        continue;
                    }
                    let local = c.clock.local(now);
                    let installed = if c.lease_from(local) == Some(s) {
                        c.cache.quota[f]
                    } else {
                        0
                    };
                    let pending = p
                        .issued
                        .iter()
                        .filter(|g| g.server == s)
                        .map(|g| g.quotas[f])
                        .max()
                        .unwrap_or(0);
                    let exposure = installed.max(pending);
                    total += u64::from(exposure);
                    if exposure > 0 {
                        detail.push(format!(
                            "client {} ({}) holds quota {installed} under a valid lease and may install {pending} more (grants {:?})",
                            p.slot,
                            p.id,
                            p.issued
                                .iter()
                                .filter(|g| g.server == s)
                                .map(|g| (g.seq, g.quotas[f], g.at, g.server_gen))
                                .collect::<Vec<_>>()
                        ));
                    }
                }
                if count > 0 {
                    let per_mille = total * 1000 / u64::from(count);
                    self.stats.peak_allocation_per_mille =
                        self.stats.peak_allocation_per_mille.max(per_mille);
                }
                if total > u64::from(count) {
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
    pub(super) fn check_clients(&mut self) -> Result<(), Broken> {
        let now = self.now;
        for (i, c) in self.clients.iter_mut().enumerate() {
            if !c.up {
                continue;
            }
            let local = c.clock.local(now);
            for f in 0..c.cache.in_use.len() {
                let valid = c.cache.valid_quota(local, f);
                if c.cache.in_use[f] > c.checked_in_use[f] && c.cache.in_use[f] > valid {
                    return Err((
                        Invariant::ClientGrantsWithinLease,
                        format!(
                            "client {i}: in use of feature {f} grew to {} beyond its valid quota {valid}",
                            c.cache.in_use[f]
                        ),
                    ));
                }
                c.checked_in_use[f] = c.cache.in_use[f];
            }
            // Failover: the primary unreachable since tp, the backup reachable without loss
            // since tb. The last good answer of the primary arrived at most a one-way delay
            // after tp; failover_after later the policy tries the backups (a refresh later
            // if a round of them had just failed); the backup answers within a round trip,
            // or its request times out and the next round comes a refresh later.
            if !c.on_backup() {
                if let (Some(tp), Some(tb)) = (c.unreach_since[PRIMARY], c.good_since[BACKUP]) {
                    let tp = tp.max(c.started_at);
                    let t0 = tb.max(c.started_at);
                    let deadline = (t0 + slow(REFRESH_MS + TIMEOUT_MS))
                        .max(tp + slow(GOOD_DELAY_MAX_MS + FAILOVER_MS))
                        + slow(TIMEOUT_MS + REFRESH_MS + RTT_MAX_MS)
                        + 10;
                    if now >= deadline {
                        return Err((
                            Invariant::Failover,
                            format!(
                                "client {i}: primary unreachable since t = {:.3} s and backup reachable since t = {:.3} s, but still on the primary at t = {:.3} s (bound t = {:.3} s)",
                                tp as f64 / 1000.0,
                                t0 as f64 / 1000.0,
                                now as f64 / 1000.0,
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
    pub(super) fn check_usage(&self) -> Result<(), Broken> {
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
