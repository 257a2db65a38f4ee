//! The lease path: `POST /v1/lease` and `DELETE /v1/lease/{client}`. The allocator and the
//! usage ledger sit under one lock (a flush takes both at the same moment, so a call counted
//! in one is counted in the other); metric handles are made when the licenses change, so a
//! request allocates no label.

use std::collections::{BTreeMap, HashMap};

use leasehold_proto::{
    ClientId, Context, ErrorCode, Feature, LeaseRequest, LeaseResponse, CLIENT_SECRET_HEADER,
    LEASE_SECS,
};
use leasehold_web::ApiError;
use sha2::Digest as _;

use super::{lock, read, LicenseServer};
use crate::allocator::{Allocator, ClientRequest, PoolLicense, Serving, UsageDelta};
use crate::api::ServerState;
use crate::ledger::{Counts, Ledger};
use crate::store::Write;

#[derive(Debug)]
pub(super) struct LeaseState {
    pub alloc: Allocator,
    pub ledger: Ledger,
    /// Metric handles of every licensed feature.
    counters: BTreeMap<Feature, FeatureCounters>,
    /// What the server knows of each client besides its holdings: the secret its id is
    /// bound to, its name and address (for the operator only; never uploaded).
    known: HashMap<ClientId, KnownClient>,
}

/// A client as the operator sees it, and the secret its id is bound to.
#[derive(Debug, Clone)]
pub(super) struct KnownClient {
    /// SHA-256 of its client secret, once it sent one.
    secret: Option<[u8; 32]>,
    pub name: Option<String>,
    pub address: Option<std::net::IpAddr>,
    pub product_release: chrono::NaiveDate,
    pub connected_since: chrono::DateTime<chrono::Utc>,
}

/// Who sent a lease request, besides what it says: its source address (for the rate limit
/// on new clients, and shown to the operator), its client secret
/// (`leasehold-client-secret`) and its name (`leasehold-client-name`, decoded).
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    pub peer: Option<std::net::IpAddr>,
    pub secret: Option<&'a str>,
    pub name: Option<&'a str>,
}

impl LeaseState {
    pub fn new(alloc: Allocator, ledger: Ledger) -> Self {
        Self {
            alloc,
            ledger,
            counters: BTreeMap::new(),
            known: HashMap::new(),
        }
    }

    /// Refuses a request for a known client id bound to another secret (or one without a
    /// secret, when the id is bound); changes nothing.
    fn check_owner(&self, client: &ClientId, secret: Option<&[u8; 32]>) -> Result<(), ApiError> {
        if !self.alloc.knows(client) {
            return Ok(());
        }
        match (
            self.known.get(client).and_then(|k| k.secret.as_ref()),
            secret,
        ) {
            (None, _) => Ok(()),
            (Some(bound), Some(given)) if bound == given => Ok(()),
            (Some(_), _) => {
                metrics::counter!("leasehold_server_client_id_refusals_total").increment(1);
                Err(ApiError::new(
                    ErrorCode::ClientIdInUse,
                    format!("client id {client} is in use by another process (its {CLIENT_SECRET_HEADER} differs); nothing was changed"),
                ))
            }
        }
    }

    /// Notes who `req`'s client is, after [`LeaseState::check_owner`] let it in: binds its
    /// id to `secret`, keeps its name, address and product release, and when it is new to
    /// the allocator (`was_known` false) the time it came. Forgets clients the allocator
    /// forgot once they outnumber the clients by far.
    fn note(
        &mut self,
        req: &LeaseRequest,
        secret: Option<[u8; 32]>,
        caller: &Caller<'_>,
        was_known: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        // Looked up first: the id is cloned only for a client new here, not every refresh.
        if !self.known.contains_key(&req.client_id) {
            self.known.insert(
                req.client_id.clone(),
                KnownClient {
                    secret: None,
                    name: None,
                    address: None,
                    product_release: req.product_release,
                    connected_since: now,
                },
            );
        }
        let Some(entry) = self.known.get_mut(&req.client_id) else {
            return;
        };
        if !was_known {
            entry.connected_since = now;
        }
        if secret.is_some() {
            entry.secret = secret;
        }
        if entry.name.as_deref() != caller.name {
            entry.name = caller.name.map(str::to_owned);
        }
        entry.address = caller.peer;
        entry.product_release = req.product_release;
        if self.known.len() > 2 * self.alloc.client_count() + 1024 {
            let alloc = &self.alloc;
            self.known.retain(|id, _| alloc.knows(id));
        }
    }

    /// What the server knows of `client` besides its holdings.
    pub fn known(&self, client: &ClientId) -> Option<&KnownClient> {
        self.known.get(client)
    }

    pub fn set_licenses(&mut self, licenses: &[PoolLicense], backup: bool) {
        self.alloc.set_backup(backup);
        self.alloc.set_licenses(licenses);
        for l in licenses {
            if !self.counters.contains_key(&l.feature) {
                self.counters
                    .insert(l.feature.clone(), FeatureCounters::new(&l.feature));
            }
        }
    }

    /// Licensed count per feature now (what the allocator serves).
    pub fn licensed_counts(&self) -> BTreeMap<Feature, u32> {
        self.alloc
            .totals()
            .into_iter()
            .map(|(f, t)| (f, t.count))
            .collect()
    }
}

/// `leasehold_server_{grants,denials,denials_while_free}_total{feature}` of one feature.
#[derive(Debug, Clone)]
struct FeatureCounters {
    grants: metrics::Counter,
    denials: metrics::Counter,
    denials_while_free: metrics::Counter,
}

impl FeatureCounters {
    fn new(feature: &Feature) -> Self {
        let label = feature.to_string();
        Self {
            grants: metrics::counter!("leasehold_server_grants_total", "feature" => label.clone()),
            denials: metrics::counter!("leasehold_server_denials_total", "feature" => label.clone()),
            denials_while_free: metrics::counter!("leasehold_server_denials_while_free_total", "feature" => label),
        }
    }

    fn record(&self, delta: &UsageDelta) {
        self.grants.increment(delta.acquired);
        self.denials.increment(delta.denied);
        self.denials_while_free.increment(delta.denied_while_free);
    }
}

/// `leasehold_server_lease_requests_total{state}`, one handle per state, and
/// `leasehold_server_lease_request_duration_seconds`.
#[derive(Debug)]
pub(super) struct RequestCounters {
    by_state: [metrics::Counter; 5],
    duration: metrics::Histogram,
}

impl RequestCounters {
    pub(super) const STATES: [ServerState; 5] = [
        ServerState::Unconfigured,
        ServerState::NotSynced,
        ServerState::Ok,
        ServerState::Expired,
        ServerState::ClockTampered,
    ];

    pub fn new() -> Self {
        Self {
            by_state: Self::STATES.map(|s| {
                metrics::counter!("leasehold_server_lease_requests_total", "state" => state_label(s))
            }),
            duration: metrics::histogram!("leasehold_server_lease_request_duration_seconds"),
        }
    }

    fn get(&self, state: ServerState) -> &metrics::Counter {
        let i = Self::STATES.iter().position(|s| *s == state).unwrap_or(0);
        &self.by_state[i]
    }
}

impl LicenseServer {
    /// Refuses a client id new to the server (`known` false) beyond the client limits, with
    /// `clients` held now (see [`LicenseServer::lease_from`]). Called under the leases lock,
    /// which the request takes anyway.
    fn admit(
        &self,
        known: bool,
        clients: usize,
        peer: Option<std::net::IpAddr>,
    ) -> Result<(), ApiError> {
        if known {
            return Ok(());
        }
        if clients >= self.client_limits.max_clients {
            metrics::counter!("leasehold_server_clients_refused_total", "reason" => "too_many_clients")
                .increment(1);
            return Err(ApiError::new(
                ErrorCode::TooManyClients,
                format!(
                    "this server holds {clients} clients, its limit (--max-clients); clients already connected are served"
                ),
            ));
        }
        if let Some(ip) = peer {
            if self.new_clients.check_key(&ip).is_err() {
                metrics::counter!("leasehold_server_clients_refused_total", "reason" => "rate_limited")
                    .increment(1);
                return Err(ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} new clients a minute from {ip} (--new-clients-per-minute); try again shortly",
                        self.client_limits.new_clients_per_minute
                    ),
                ));
            }
            // The limiter keeps a cell per address; forget the quiet ones now and then.
            if self.new_clients.len() > 10_000 {
                self.new_clients.retain_recent();
            }
        }
        Ok(())
    }
}

/// SHA-256 of a client secret whose form is checked.
fn secret_digest(secret: &str) -> Result<[u8; 32], ApiError> {
    leasehold_proto::check_client_secret(secret).map_err(ApiError::bad_request)?;
    Ok(sha2::Sha256::digest(secret.as_bytes()).into())
}

pub(super) fn state_label(s: ServerState) -> &'static str {
    match s {
        ServerState::Unconfigured => "unconfigured",
        ServerState::NotSynced => "not_synced",
        ServerState::Ok => "ok",
        ServerState::Expired => "expired",
        ServerState::ClockTampered => "clock_tampered",
    }
}

impl LicenseServer {
    /// `POST /v1/lease`. A grant that raises a client's reservation is on disk before it is
    /// answered (group-committed with others), so a restarted server knows it.
    pub async fn lease(&self, req: &LeaseRequest) -> Result<LeaseResponse, ApiError> {
        self.lease_from(req, Caller::default()).await
    }

    /// [`LicenseServer::lease`] from `caller`: a client id new to this server is refused when
    /// the server holds `max_clients`, or when the caller's address has sent more new ids
    /// than `new_clients_per_minute`; a known client id bound to another client secret is
    /// refused (`client_id_in_use`). Known clients are otherwise always served. Its time is
    /// recorded in `leasehold_server_lease_request_duration_seconds`.
    pub async fn lease_from(
        &self,
        req: &LeaseRequest,
        caller: Caller<'_>,
    ) -> Result<LeaseResponse, ApiError> {
        let started = std::time::Instant::now();
        let answer = self.answer_lease(req, caller).await;
        self.requests
            .duration
            .record(started.elapsed().as_secs_f64());
        answer
    }

    async fn answer_lease(
        &self,
        req: &LeaseRequest,
        caller: Caller<'_>,
    ) -> Result<LeaseResponse, ApiError> {
        req.validate().map_err(ApiError::bad_request)?;
        let secret = caller.secret.map(secret_digest).transpose()?;
        let peer = caller.peer;
        let now = self.clock.now();
        let mono = self.clock.monotonic_ms();
        let tampered = self.high_water.observe(now);
        // One look at the bundle: the state, who we are and whether today's licenses are in.
        let view = read(&self.bundle).view;
        let (state, serving) = self.state_of(&view, now, tampered);
        let (Some(guid), Some(context)) = (view.guid, view.context) else {
            self.requests.get(state).increment(1);
            let why = match serving {
                Serving::No(why) => why,
                Serving::Yes => "not ready".into(),
            };
            return Err(ApiError::new(ErrorCode::NotReady, why));
        };
        if view.day != Some(now.date_naive()) {
            self.refresh_licenses(now);
        }
        let request = ClientRequest::from(req);
        let (answer, epoch, persisted) = {
            let mut guard = lock(&self.leases);
            let s = &mut *guard;
            s.check_owner(&req.client_id, secret.as_ref())?;
            let was_known = s.alloc.knows(&req.client_id);
            self.admit(was_known, s.alloc.client_count(), peer)?;
            s.note(req, secret, &caller, was_known, now);
            let answer = s.alloc.request(mono, &request, &serving);
            for (feature, delta) in &answer.usage {
                let in_use = s.alloc.in_use(feature);
                s.ledger.record(
                    feature,
                    now,
                    in_use,
                    &Counts {
                        peak_in_use: 0,
                        grants: delta.acquired,
                        denials: delta.denied,
                        denials_while_free: delta.denied_while_free,
                        backup_use_ms: if context == Context::Backup {
                            delta.failover_use_ms
                        } else {
                            0
                        },
                        license_ms: 0,
                    },
                );
                if delta.acquired == 0 && delta.denied == 0 {
                    continue;
                }
                match s.counters.get(feature) {
                    Some(c) => c.record(delta),
                    // A feature this server has no license for: rare, so registered here.
                    None => FeatureCounters::new(feature).record(delta),
                }
            }
            // Queued under the lock: the writer keeps the order of raises and snapshots.
            let persisted = (!answer.raised.is_empty())
                .then(|| self.writer.queue(Write::Bounds(answer.raised.clone())));
            (answer, s.alloc.epoch(), persisted)
        };
        self.requests.get(state).increment(1);
        if let Some(p) = persisted {
            // Not on disk: the client gets no answer, so it cannot use the grant (the
            // reservation stays until its hold ends).
            p.wait().await.map_err(|e| {
                ApiError::new(
                    ErrorCode::Internal,
                    format!("cannot record the grant in the data directory: {e}"),
                )
            })?;
        }
        if answer.stale {
            return Err(ApiError::new(
                ErrorCode::StaleRequest,
                "a later request of this client was already answered; this one changed nothing",
            ));
        }
        Ok(LeaseResponse {
            server_guid: guid,
            context,
            lease_secs: LEASE_SECS,
            features: answer.features,
            epoch,
        })
    }

    /// `DELETE /v1/lease/{client_id}?seq=N&epoch=E`: only if no later request of the client
    /// arrived and the epoch is this process's, and only by the client's own secret (as for
    /// a lease). `Ok(false)`: nothing to release.
    pub fn release(
        &self,
        client: &ClientId,
        seq: u64,
        epoch: u64,
        secret: Option<&str>,
    ) -> Result<bool, ApiError> {
        let secret = secret.map(secret_digest).transpose()?;
        let now = self.clock.now();
        let mono = self.clock.monotonic_ms();
        let mut guard = lock(&self.leases);
        let s = &mut *guard;
        s.check_owner(client, secret.as_ref())?;
        let released = s.alloc.release_upto(mono, client, seq, epoch);
        if released {
            // The license time ends now, not at the next flush.
            s.ledger.observe_all(now, |f| s.alloc.in_use(f));
        }
        Ok(released)
    }
}
