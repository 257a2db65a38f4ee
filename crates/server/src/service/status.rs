//! Status views: what the admin API, the dashboard and `/metrics` show. Each takes one
//! lock at a time and copies out what it needs.

use leasehold_proto::{Context, SyncUpload};
use leasehold_web::ApiError;

use super::lease::{state_label, RequestCounters};
use super::{lock, read, LicenseServer};
use crate::allocator::Serving;
use crate::api::{ClientFeatureStatus, ClientStatus, LicenseStatus, Status};

impl LicenseServer {
    pub async fn status(&self) -> Result<Status, ApiError> {
        let now = self.clock.now();
        let mono = self.clock.monotonic_ms();
        let (state, serving) = self.state(now);
        let (totals, clients, learning_until) = {
            let mut s = lock(&self.leases);
            let a = &mut s.alloc;
            a.expire(mono);
            let learning = a.is_learning(mono).then(|| {
                now + chrono::Duration::milliseconds(
                    i64::try_from(a.learning_until_ms() - mono).unwrap_or(0),
                )
            });
            (a.totals(), a.client_count(), learning)
        };
        let next_sync = self.next_sync_due();
        let today = now.date_naive();
        let (guid, context, installation, serial, not_after, licenses, key_id) = {
            let b = read(&self.bundle);
            let p = b.payload.as_ref();
            let licenses = p
                .map(|p| {
                    p.licenses
                        .iter()
                        .map(|l| {
                            let t = totals.get(&l.feature).copied().unwrap_or_default();
                            LicenseStatus {
                                id: l.id.to_string(),
                                feature: l.feature.clone(),
                                count: if l.is_expired_on(today) { 0 } else { l.count },
                                in_use: t.in_use,
                                reserved: t.reserved,
                                context: l.context,
                                maintenance_until: l.maintenance_until,
                                expires: l.expires,
                                backs_up: l.backs_up.as_ref().map(ToString::to_string),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                b.guid,
                p.map(|p| p.context),
                p.map(|p| p.installation_id.clone()),
                b.serial(),
                b.view.not_after,
                licenses,
                b.envelope.as_ref().map(|e| e.kid.to_string()),
            )
        };
        let pending = match guid {
            Some(g) => self
                .store
                .pending_buckets(g, SyncUpload::MAX_BUCKETS)
                .await?
                .len(),
            None => 0,
        };
        let s = lock(&self.sync);
        Ok(Status {
            guid,
            context,
            installation,
            state,
            reason: match serving {
                Serving::No(why) => Some(why),
                Serving::Yes => None,
            },
            licenses,
            clients,
            learning_until,
            last_sync: s.last_success,
            last_sync_node: s.last_node.clone(),
            last_sync_error: s.last_error.clone(),
            next_sync,
            not_after,
            grace_days_left: not_after.map(|n| (n - now).num_days().max(0)),
            bundle_serial: serial,
            bundle_key_id: key_id,
            pending_usage_buckets: pending,
            nodes: s.node_status.values().cloned().collect(),
        })
    }

    /// Clients `offset` to `offset + limit` in client id order, and how many there are.
    pub fn clients_page(&self, offset: usize, limit: usize) -> (Vec<ClientStatus>, usize) {
        let mono = self.clock.monotonic_ms();
        let (page, total) = {
            let mut s = lock(&self.leases);
            s.alloc.expire(mono);
            s.alloc.clients_page(offset, limit)
        };
        let page = page
            .into_iter()
            .map(|c| ClientStatus {
                client: c.client,
                failover: c.failover,
                last_seen_secs_ago: mono.saturating_sub(c.last_seen_ms) / 1000,
                features: c
                    .features
                    .into_iter()
                    .map(|(feature, f)| ClientFeatureStatus {
                        feature,
                        quota: f.quota,
                        in_use: f.in_use,
                    })
                    .collect(),
            })
            .collect();
        (page, total)
    }

    pub fn clients(&self) -> Vec<ClientStatus> {
        self.clients_page(0, usize::MAX).0
    }

    /// The gauges `/metrics` shows: totals per feature, the state, the context, the grace
    /// left and the sync's nodes and last success.
    pub fn update_gauges(&self) {
        let now = self.clock.now();
        let (state, _) = self.state(now);
        for s in RequestCounters::STATES {
            metrics::gauge!("leasehold_server_state", "state" => state_label(s))
                .set(f64::from(u8::from(s == state)));
        }
        let (context, not_after) = {
            let b = read(&self.bundle);
            (b.view.context, b.view.not_after)
        };
        for c in Context::ALL {
            metrics::gauge!("leasehold_server_context", "context" => c.as_str())
                .set(f64::from(u8::from(Some(c) == context)));
        }
        if let Some(n) = not_after {
            metrics::gauge!("leasehold_server_grace_remaining_seconds")
                .set((n - now).num_seconds().max(0) as f64);
        }
        let (nodes, last_success) = {
            let s = lock(&self.sync);
            (s.nodes.len(), s.last_success)
        };
        metrics::gauge!("leasehold_server_nodes").set(nodes as f64);
        if let Some(t) = last_success {
            metrics::gauge!("leasehold_server_last_sync_success_timestamp_seconds")
                .set(t.timestamp() as f64);
        }
        let totals = lock(&self.leases).alloc.totals();
        for (f, t) in &totals {
            let label = f.to_string();
            metrics::gauge!("leasehold_server_licenses", "feature" => label.clone())
                .set(f64::from(t.count));
            metrics::gauge!("leasehold_server_in_use", "feature" => label.clone())
                .set(f64::from(t.in_use));
            metrics::gauge!("leasehold_server_quota_reserved", "feature" => label)
                .set(f64::from(t.reserved));
        }
    }
}
