//! Status views: what the admin API, the dashboard and `/metrics` show. Each takes one
//! lock at a time and copies out what it needs.

use leasehold_proto::{Context, SyncUpload};
use leasehold_web::ApiError;

use super::lease::{state_label, RequestCounters};
use super::{lock, read, LicenseServer};
use crate::allocator::Serving;
use crate::api::{ClientFeatureStatus, ClientSort, ClientStatus, LicenseStatus, Status};

/// Which clients to list, in what order (admin API, dashboard, CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientQuery {
    /// Case-insensitive text found in the name, address, client id or a feature held.
    pub search: Option<String>,
    pub sort: ClientSort,
    pub offset: usize,
    pub limit: usize,
}

impl Default for ClientQuery {
    fn default() -> Self {
        Self {
            search: None,
            sort: ClientSort::Name,
            offset: 0,
            limit: usize::MAX,
        }
    }
}

impl ClientQuery {
    /// Longest search text taken.
    pub const MAX_SEARCH: usize = 200;

    /// Whether `c` has the search text (lowered once, in `needle`) anywhere.
    fn matches(needle: &str, c: &ClientStatus) -> bool {
        let has = |s: &str| s.to_lowercase().contains(needle);
        c.name.as_deref().is_some_and(has)
            || c.address.as_deref().is_some_and(has)
            || has(c.client.as_str())
            || c.features.iter().any(|f| has(f.feature.as_str()))
    }

    /// The clients matching the search, sorted by the query's order, then by client id so
    /// pages are stable.
    fn select(&self, mut clients: Vec<ClientStatus>) -> Vec<ClientStatus> {
        let needle = self
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase);
        if let Some(needle) = needle {
            clients.retain(|c| Self::matches(&needle, c));
        }
        match self.sort {
            // Each name lowered once, not at every comparison.
            ClientSort::Name => clients.sort_by_cached_key(|c| {
                (
                    c.name.is_none(),
                    c.name.as_deref().map(str::to_lowercase),
                    c.client.clone(),
                )
            }),
            // Each address parsed once.
            ClientSort::Address => {
                clients.sort_by_cached_key(|c| (address_key(c), c.client.clone()));
            }
            ClientSort::InUse => clients.sort_by(|a, b| {
                b.in_use()
                    .cmp(&a.in_use())
                    .then_with(|| a.client.cmp(&b.client))
            }),
            ClientSort::ConnectedSince => clients.sort_by(|a, b| {
                (a.connected_since, &a.client).cmp(&(b.connected_since, &b.client))
            }),
            ClientSort::LastSeen => clients.sort_by(|a, b| {
                (a.last_seen_secs_ago, &a.client).cmp(&(b.last_seen_secs_ago, &b.client))
            }),
            ClientSort::Id => clients.sort_by(|a, b| a.client.cmp(&b.client)),
        }
        clients
    }
}

/// Addresses in numeric order, clients without one last.
fn address_key(c: &ClientStatus) -> (bool, Option<std::net::IpAddr>) {
    let ip = c.address.as_deref().and_then(|a| a.parse().ok());
    (ip.is_none(), ip)
}

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
        let failing = self.storage_failing();
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
            storage_failing_since: failing.as_ref().map(|f| f.since),
            storage_error: failing.map(|f| f.error),
            nodes: s.node_status.values().cloned().collect(),
        })
    }

    /// The clients `query` selects, sorted, from its offset: at most its limit of them, and
    /// how many match in all.
    pub fn clients_query(&self, query: &ClientQuery) -> (Vec<ClientStatus>, usize) {
        let mono = self.clock.monotonic_ms();
        let all: Vec<ClientStatus> = {
            let mut s = lock(&self.leases);
            s.alloc.expire(mono);
            s.alloc
                .clients()
                .into_iter()
                .map(|c| {
                    let known = s.known(&c.client);
                    ClientStatus {
                        name: known.and_then(|k| k.name.clone()),
                        address: known.and_then(|k| k.address).map(|a| a.to_string()),
                        product_release: known.map(|k| k.product_release),
                        connected_since: known.map(|k| k.connected_since),
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
                    }
                })
                .collect()
        };
        let matching = query.select(all);
        let total = matching.len();
        let page = matching
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .collect();
        (page, total)
    }

    /// Whether writes to the data directory fail now, since when and why.
    pub(crate) fn storage_failing(&self) -> Option<crate::writer::Failing> {
        self.writer.failing()
    }

    /// `leasehold_server_storage_healthy` (1, or 0 while writes fail) and
    /// `leasehold_server_storage_failing_since_timestamp_seconds` (0 while healthy).
    fn update_storage_gauges(&self) {
        let failing = self.storage_failing();
        metrics::gauge!("leasehold_server_storage_healthy").set(if failing.is_some() {
            0.0
        } else {
            1.0
        });
        metrics::gauge!("leasehold_server_storage_failing_since_timestamp_seconds")
            .set(failing.map_or(0.0, |f| f.since.timestamp() as f64));
    }

    /// Every client, by name.
    pub fn clients(&self) -> Vec<ClientStatus> {
        self.clients_query(&ClientQuery::default()).0
    }

    /// The gauges `/metrics` shows: totals per feature, the state, the context, the grace
    /// left and the sync's nodes and last success.
    pub fn update_gauges(&self) {
        self.update_storage_gauges();
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
