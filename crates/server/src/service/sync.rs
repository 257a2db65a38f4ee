//! Sync with the license nodes: the upload, the schedule and backoff the agent
//! (`agent.rs`) follows, one sync through every node in random order (node calls through
//! the API client), and taking a bundle (from a node or a file) only when every check passes.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use leasehold_api_client::{parse_base_url, ApiClientError, NodeClient};
use leasehold_proto::{ErrorCode, SignedEnvelope, SyncUpload};
use leasehold_web::ApiError;
use rand::seq::SliceRandom;

use super::{lock, read, write, LicenseServer};
use crate::api::{NodeStatus, SyncOutcome};

/// Longest wait between retries of a failed sync (the seed asks for at least daily).
pub const MAX_RETRY: Duration = Duration::from_secs(3600);
const FIRST_RETRY: Duration = Duration::from_secs(30);

/// The wait before retrying after the `failures`-th failure in a row: 30 s doubling, at most
/// an hour.
pub fn backoff(failures: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1u32 << failures.clamp(1, 17).saturating_sub(1))
        .min(MAX_RETRY)
}

fn interval_of(secs: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(secs).unwrap_or(86_400))
}

/// The sync schedule and what the last attempts said.
#[derive(Debug, Default)]
pub(super) struct SyncState {
    /// The configured nodes (empty: air-gapped).
    pub nodes: Vec<String>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_node: Option<String>,
    pub last_error: Option<String>,
    pub next_due: Option<DateTime<Utc>>,
    pub failures: u32,
    pub node_status: BTreeMap<String, NodeStatus>,
}

impl SyncState {
    pub fn new(nodes: Vec<String>, last_success: Option<DateTime<Utc>>) -> Self {
        let node_status = nodes
            .iter()
            .map(|url| (url.clone(), NodeStatus::new(url)))
            .collect();
        Self {
            nodes,
            last_success,
            node_status,
            ..Self::default()
        }
    }

    /// When to sync next (`interval_secs` of the bundle, if any): now for a server that
    /// never synced; `None` when air-gapped.
    pub fn due(&self, interval_secs: Option<u64>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.nodes.is_empty() {
            return None;
        }
        Some(
            self.next_due
                .unwrap_or_else(|| match (self.last_success, interval_secs) {
                    (Some(last), Some(secs)) => last + interval_of(secs),
                    _ => now,
                }),
        )
    }

    fn succeeded(&mut self, now: DateTime<Utc>, via: &str, interval_secs: u64) {
        self.last_success = Some(now);
        self.last_node = Some(via.to_string());
        self.last_error = None;
        self.failures = 0;
        self.next_due = Some(now + interval_of(interval_secs));
    }

    /// Returns the wait before the next attempt.
    fn failed(&mut self, now: DateTime<Utc>, error: String) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = backoff(self.failures);
        self.next_due =
            Some(now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1)));
        self.last_error = Some(error);
        wait
    }

    /// A new GUID syncs at once.
    pub fn restart(&mut self) {
        self.next_due = None;
        self.failures = 0;
        self.last_error = None;
    }

    fn node(&mut self, url: &str) -> &mut NodeStatus {
        self.node_status
            .entry(url.to_string())
            .or_insert_with(|| NodeStatus::new(url))
    }
}

impl LicenseServer {
    /// The exact upload the next sync sends (also `export-upload`).
    pub async fn upload(&self) -> Result<SyncUpload, ApiError> {
        let (guid, token, serial, context) = {
            let b = read(&self.bundle);
            let guid = b.guid.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotReady,
                    "no server GUID is set: set it before syncing",
                )
            })?;
            let p = b.payload.as_ref();
            (
                guid,
                p.map(|p| p.next_sync_token.clone()),
                b.serial(),
                p.map(|p| p.context),
            )
        };
        self.flush().await?;
        let usage = self
            .store
            .pending_buckets(guid, SyncUpload::MAX_BUCKETS)
            .await?;
        Ok(SyncUpload {
            server_guid: guid,
            instance_id: self.instance_id.clone(),
            sync_token: token,
            last_bundle_serial: serial,
            context,
            software_version: env!("CARGO_PKG_VERSION").into(),
            usage,
        })
    }

    /// Verifies a bundle and, only if every check passes, makes it the server's bundle.
    pub async fn apply_envelope(
        &self,
        envelope: SignedEnvelope,
        via: &str,
    ) -> Result<SyncOutcome, ApiError> {
        let (guid, context, serial) = {
            let b = read(&self.bundle);
            let guid = b
                .guid
                .ok_or_else(|| ApiError::new(ErrorCode::NotReady, "no server GUID is set"))?;
            (guid, b.view.context, b.serial())
        };
        let payload = envelope
            .open_bundle(&self.keys, guid, context)
            .map_err(|e| {
                ApiError::bad_request(format!("bundle rejected, the previous one is kept: {e}"))
            })?;
        if payload.serial <= serial {
            return Err(ApiError::bad_request(format!(
                "bundle rejected, the previous one is kept: its serial {} is not newer than the current {serial}",
                payload.serial
            )));
        }
        let now = self.clock.now();
        self.store
            .save_bundle(&envelope, now, guid, payload.acked_usage_seq)
            .await?;
        let outcome = SyncOutcome {
            ok: true,
            node: Some(via.to_string()),
            serial: Some(payload.serial),
            licenses: payload.licenses.len(),
            acked_usage_seq: Some(payload.acked_usage_seq),
            error: None,
        };
        let interval = payload.sync_interval_secs;
        write(&self.bundle).take(envelope, payload, Some(now));
        // A sync restores trust in the clock.
        self.high_water.reset(now);
        lock(&self.sync).succeeded(now, via, interval);
        self.refresh_licenses(now);
        metrics::counter!("leasehold_server_syncs_total", "result" => "ok").increment(1);
        tracing::info!(
            via,
            serial = outcome.serial,
            licenses = outcome.licenses,
            "bundle applied"
        );
        Ok(outcome)
    }

    /// One sync: tries every configured node in random order until one answers.
    pub async fn sync_now(&self) -> SyncOutcome {
        let _one = self.sync_lock.lock().await;
        let started = std::time::Instant::now();
        let result = self.sync_with_nodes().await;
        let label = if result.is_ok() { "ok" } else { "error" };
        metrics::histogram!("leasehold_server_sync_duration_seconds", "result" => label)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(outcome) => outcome,
            Err(error) => {
                let retry_in = lock(&self.sync).failed(self.clock.now(), error.clone());
                metrics::counter!("leasehold_server_syncs_total", "result" => "error").increment(1);
                tracing::warn!(%error, ?retry_in, "sync failed");
                SyncOutcome {
                    ok: false,
                    node: None,
                    serial: None,
                    licenses: 0,
                    acked_usage_seq: None,
                    error: Some(error),
                }
            }
        }
    }

    async fn sync_with_nodes(&self) -> Result<SyncOutcome, String> {
        let upload = self.upload().await.map_err(|e| e.message)?;
        let mut nodes = lock(&self.sync).nodes.clone();
        if nodes.is_empty() {
            return Err(
                "no license node is configured (air-gapped: use export-upload and import-bundle)"
                    .into(),
            );
        }
        nodes.shuffle(&mut rand::thread_rng());
        let mut errors = Vec::new();
        for node in nodes {
            let result = match parse_base_url("node", &node) {
                Ok(base) => {
                    NodeClient::with_http(self.http.clone(), base, None)
                        .sync(&upload)
                        .await
                }
                Err(e) => Err(e),
            };
            let now = self.clock.now();
            let outcome: Result<SyncOutcome, (String, bool)> = match result {
                Ok(env) => self
                    .apply_envelope(env, &node)
                    .await
                    .map_err(|e| (format!("{node}: {}", e.message), false)),
                Err(ApiClientError::Unreachable { detail, .. }) => {
                    Err((format!("{node}: cannot reach: {detail}"), false))
                }
                Err(ApiClientError::Decode { detail, .. }) => {
                    Err((format!("{node}: answer is not a bundle: {detail}"), false))
                }
                Err(e) => {
                    // Every node shares one database: its refusal of this server is the same
                    // everywhere. Anything else (a proxy's 404, say) concerns this node only.
                    let authoritative = matches!(
                        e.code(),
                        Some(
                            ErrorCode::GuidInUse
                                | ErrorCode::UnknownServer
                                | ErrorCode::ContextMismatch
                        )
                    );
                    Err((format!("{node}: {e}"), authoritative))
                }
            };
            let mut s = lock(&self.sync);
            let entry = s.node(&node);
            match outcome {
                Ok(o) => {
                    entry.last_ok = Some(now);
                    entry.last_error = None;
                    return Ok(o);
                }
                Err((e, authoritative)) => {
                    entry.last_error = Some(e.clone());
                    errors.push(e);
                    if authoritative {
                        break;
                    }
                }
            }
        }
        Err(errors.join("; "))
    }

    /// When the agent should sync next: now for a server that never synced; `None` without
    /// a GUID or when air-gapped (bundles come by file only).
    pub fn next_sync_due(&self) -> Option<DateTime<Utc>> {
        let interval = {
            let b = read(&self.bundle);
            b.guid?;
            b.payload.as_ref().map(|p| p.sync_interval_secs)
        };
        lock(&self.sync).due(interval, self.clock.now())
    }

    pub fn set_nodes(&self, nodes: Vec<String>) {
        lock(&self.sync).nodes = nodes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn backoff_doubles_from_thirty_seconds_to_an_hour() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn the_schedule_follows_the_interval_and_retries_with_backoff() {
        let t = Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap();
        let mut s = SyncState::new(vec!["http://n".into()], None);
        assert_eq!(s.due(None, t), Some(t), "never synced: now");
        s.succeeded(t, "http://n", 86_400);
        assert_eq!(s.due(Some(86_400), t), Some(t + chrono::Duration::days(1)));
        assert_eq!(s.failed(t, "down".into()), Duration::from_secs(30));
        assert_eq!(s.failed(t, "down".into()), Duration::from_secs(60));
        assert_eq!(
            s.due(Some(86_400), t),
            Some(t + chrono::Duration::seconds(60))
        );
        s.restart();
        assert_eq!(s.due(Some(86_400), t), Some(t + chrono::Duration::days(1)));
        assert_eq!(
            SyncState::new(vec![], None).due(None, t),
            None,
            "air-gapped"
        );
    }
}
