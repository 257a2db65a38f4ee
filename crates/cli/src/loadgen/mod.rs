//! `leasehold loadgen`: measured load against a running node or license server. Bounded in
//! time and count, loopback only by intent; it prints what it measured.

mod calls;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use leasehold_api_client::{parse_base_url, LeaseApi, NodeClient};
use leasehold_proto::api::node::GrantLicense;
use leasehold_proto::{
    BundlePayload, ClientId, Feature, FeatureRequest, InstanceId, LeaseRequest, LeaseResponse,
    SignedEnvelope, SyncToken, SyncUpload, UsageBucket,
};
use rand::{RngCore, SeedableRng as _};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct LoadgenArgs {
    #[command(subcommand)]
    command: LoadgenCommand,
}

#[derive(Debug, Subcommand)]
enum LoadgenCommand {
    /// Many simulated license servers syncing with a node as fast as they can.
    Sync(SyncArgs),
    /// Many simulated clients refreshing their leases with a license server as fast as they can.
    Lease(LeaseArgs),
    /// Calls placed through real library clients at a given load: blocking and false
    /// denials against Erlang B.
    Calls(calls::CallsArgs),
}

#[derive(Debug, Args)]
struct SyncArgs {
    /// License node URL; repeat for several nodes on one database (the connections are
    /// spread over them, each simulated server keeps to one).
    #[arg(long, env = "LEASEHOLD_NODE", default_value = "http://127.0.0.1:8470")]
    node: Vec<String>,
    /// A vendor admin account's personal token (e.g. from `leasehold vendor login
    /// --print-token`), used once to create the simulated servers' installations, servers
    /// and licenses.
    #[arg(
        long,
        env = "LEASEHOLD_VENDOR_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    token: String,
    /// Number of simulated license servers (each its own installation).
    #[arg(long, default_value_t = 200)]
    servers: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long to run, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Usage buckets per sync upload.
    #[arg(long, default_value_t = 2)]
    buckets: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct LeaseArgs {
    /// License server URL.
    #[arg(long, env = "LEASEHOLD_SERVER")]
    server: String,
    /// File with the installation's client key (else LEASEHOLD_CLIENT_KEY or
    /// LEASEHOLD_CLIENT_KEY_FILE).
    #[arg(long, value_name = "FILE")]
    client_key_file: Option<std::path::PathBuf>,
    /// Number of simulated clients (each its own client id and lease).
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to run, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Features every client asks for, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "asr.en-US,tts", value_parser = Feature::parse)]
    features: Vec<Feature>,
    /// Release date of the simulated clients' product (for the maintenance check).
    #[arg(long = "release", default_value = "2026-01-01")]
    product_release: NaiveDate,
    /// Give every leased client's quota back when the run is over (not timed).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    release_at_end: bool,
    /// Process id of the server on this machine: its resident memory is read after the run.
    #[arg(long)]
    rss_pid: Option<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct SyncReport {
    servers: usize,
    concurrency: usize,
    seconds: f64,
    syncs: u64,
    errors: u64,
    syncs_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Serialize)]
struct LeaseReport {
    clients: usize,
    concurrency: usize,
    seconds: f64,
    /// Successful (2xx) lease requests; failed ones count as errors only.
    requests: u64,
    errors: u64,
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_rss_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_peak_rss_mib: Option<f64>,
}

pub fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.command {
        LoadgenCommand::Sync(a) => rt.block_on(sync_load(a)),
        LoadgenCommand::Lease(a) => rt.block_on(lease_load(a)),
        LoadgenCommand::Calls(a) => rt.block_on(calls::calls_load(a)),
    }
}

/// Latencies of successful requests in microseconds; percentiles come from sorting them.
#[derive(Debug, Default)]
struct Latencies(Vec<u32>);

/// What a run's latencies come to, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LatencySummary {
    count: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Latencies {
    fn record(&mut self, elapsed: Duration) {
        self.0
            .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
    }

    fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    fn summary(mut self) -> LatencySummary {
        let all = &mut self.0;
        all.sort_unstable();
        let pct = |p: f64| -> f64 {
            if all.is_empty() {
                return 0.0;
            }
            let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
            f64::from(all[idx]) / 1000.0
        };
        LatencySummary {
            count: all.len() as u64,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            max_ms: all.last().map(|v| f64::from(*v) / 1000.0).unwrap_or(0.0),
        }
    }
}

/// Failed requests, shared by all workers: counted, and the first few printed.
#[derive(Debug, Clone, Default)]
struct Errors(Arc<AtomicU64>);

impl Errors {
    const PRINTED: u64 = 3;

    fn record(&self, what: &str, e: &anyhow::Error) {
        if self.0.fetch_add(1, Ordering::Relaxed) < Self::PRINTED {
            eprintln!("{what} failed: {e:#}");
        }
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Prints a report as one JSON object, or as the given line of text.
fn print_report(
    json: bool,
    report: &impl Serialize,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", text());
    }
    Ok(())
}

struct SimServer {
    guid: leasehold_proto::ServerGuid,
    instance: InstanceId,
    token: Option<SyncToken>,
    serial: u64,
    next_seq: u64,
}

async fn sync_load(a: SyncArgs) -> anyhow::Result<()> {
    if a.servers == 0 || a.concurrency == 0 {
        bail!("--servers and --concurrency must be at least 1");
    }
    let node_urls = a
        .node
        .iter()
        .map(|n| parse_base_url("--node", n))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(node_url) = node_urls.first().cloned() else {
        bail!("give at least one --node");
    };
    let node = node_urls
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let admin = NodeClient::with_http(http.clone(), node_url.clone(), Some(a.token.clone()))
        .with_reason("leasehold loadgen sync: simulated servers")?;
    eprintln!("creating {} simulated servers on {node} ...", a.servers);
    let mut sims = Vec::with_capacity(a.servers);
    for i in 0..a.servers {
        let inst = admin.create_installation(&format!("loadgen {i}")).await?;
        let server = admin
            .add_server(&inst.id, leasehold_proto::Context::Production)
            .await?;
        for feature in ["asr.en-US", "tts", "asr.de-DE"] {
            admin
                .grant_license(&GrantLicense {
                    server: server.guid,
                    feature: Feature::parse(feature)?,
                    count: 20,
                    context: None,
                    maintenance_until: NaiveDate::from_ymd_opt(2030, 1, 1).unwrap_or_default(),
                    expires: None,
                    backs_up: None,
                })
                .await?;
        }
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        sims.push(SimServer {
            guid: server.guid,
            instance: InstanceId::from_random(id),
            token: None,
            serial: 0,
            next_seq: 1,
        });
    }
    // Each worker owns a slice of servers, so every server's token chain stays linear.
    let mut shards: Vec<Vec<SimServer>> = (0..a.concurrency).map(|_| Vec::new()).collect();
    for (i, s) in sims.into_iter().enumerate() {
        shards[i % a.concurrency].push(s);
    }
    let errors = Errors::default();
    let deadline = Instant::now() + a.duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (k, mut shard) in shards.into_iter().filter(|s| !s.is_empty()).enumerate() {
        let url = node_urls[k % node_urls.len()].clone();
        let node = NodeClient::with_http(http.clone(), url, None);
        let errors = errors.clone();
        let buckets = a.buckets;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let mut i = 0usize;
            while Instant::now() < deadline {
                let n = shard.len();
                let s = &mut shard[i % n];
                i += 1;
                let hour = leasehold_proto::usage::hour_of(chrono::Utc::now());
                let usage: Vec<UsageBucket> = (0..buckets)
                    .map(|k| UsageBucket {
                        seq: s.next_seq + k,
                        feature: Feature::parse("tts").unwrap_or_else(|_| unreachable!()),
                        hour,
                        peak_in_use: 5,
                        grants: 100,
                        denials: 0,
                        denials_while_free: 0,
                        backup_use_secs: 0,
                        // Half the hour at the peak.
                        license_secs: 5 * 1800,
                    })
                    .collect();
                let upload = SyncUpload {
                    server_guid: s.guid,
                    instance_id: s.instance.clone(),
                    sync_token: s.token.clone(),
                    last_bundle_serial: s.serial,
                    context: None,
                    software_version: "loadgen".into(),
                    usage,
                };
                let t0 = Instant::now();
                let result = async {
                    let env = node.sync(&upload).await?;
                    base64_payload(&env)
                }
                .await;
                match result {
                    Ok(bundle) => {
                        latencies.record(t0.elapsed());
                        s.token = Some(bundle.next_sync_token);
                        s.serial = bundle.serial;
                        s.next_seq = bundle.acked_usage_seq + 1;
                    }
                    Err(e) => errors.record("sync", &e),
                }
            }
            latencies
        }));
    }
    let mut all = Latencies::default();
    for t in tasks {
        all.merge(t.await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let lat = all.summary();
    let report = SyncReport {
        servers: a.servers,
        concurrency: a.concurrency,
        seconds,
        syncs: lat.count,
        errors: errors.count(),
        syncs_per_sec: lat.count as f64 / seconds,
        p50_ms: lat.p50_ms,
        p99_ms: lat.p99_ms,
        max_ms: lat.max_ms,
    };
    print_report(a.json, &report, || {
        format!(
        "{} syncs in {:.1} s from {} servers over {} connections: {:.0} syncs/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
        report.syncs, report.seconds, report.servers, report.concurrency, report.syncs_per_sec,
        report.p50_ms, report.p99_ms, report.max_ms, report.errors
    )
    })
}

/// One simulated client: its id and, per feature of `--features` (in that order), its state.
#[derive(Debug)]
struct SimClient {
    id: ClientId,
    /// Whether the server ever granted it a lease, so there is something to release.
    leased: bool,
    /// Its last request's sequence number, and the epoch of the server's last answer.
    seq: u64,
    epoch: u64,
    features: Vec<SimFeature>,
}

#[derive(Debug, Clone, Copy, Default)]
struct SimFeature {
    in_use: u32,
    /// The quota of the last lease granted.
    quota: u32,
    acquired: u64,
    denied: u64,
    /// What the server last confirmed as counted.
    counted: (u64, u64),
}

impl SimClient {
    /// Moves every feature to a random in-use count within the last quota (what the client's
    /// cache could have granted) and builds the refresh that reports it.
    fn next_request(
        &mut self,
        rng: &mut impl rand::Rng,
        features: &[Feature],
        product_release: NaiveDate,
    ) -> LeaseRequest {
        let features = features
            .iter()
            .zip(&mut self.features)
            .map(|(feature, s)| {
                let in_use = rng.gen_range(0..=s.quota);
                s.acquired += u64::from(in_use.saturating_sub(s.in_use));
                // At its quota the client had to turn the next acquisition down.
                if in_use == s.quota {
                    s.denied += 1;
                }
                s.in_use = in_use;
                let request = FeatureRequest {
                    in_use,
                    want: in_use + 1,
                    quota: s.quota,
                    waiting: 0,
                    acquired: s.acquired,
                    denied: s.denied,
                    counted_acquired: s.counted.0,
                    counted_denied: s.counted.1,
                };
                (feature.clone(), request)
            })
            .collect::<BTreeMap<_, _>>();
        self.seq += 1;
        LeaseRequest {
            seq: self.seq,
            epoch: self.epoch,
            client_id: self.id.clone(),
            product_release,
            features,
            failover: false,
            asks: false,
            release: false,
        }
    }

    /// Takes the granted quotas; a feature the server left out is granted nothing.
    fn apply(&mut self, features: &[Feature], lease: &LeaseResponse) {
        for (feature, s) in features.iter().zip(&mut self.features) {
            let q = lease.features.get(feature);
            s.quota = q.map_or(0, |q| q.quota);
            s.counted = q.map_or(s.counted, |q| (q.counted_acquired, q.counted_denied));
        }
        self.epoch = lease.epoch;
        self.leased = true;
    }
}

async fn lease_load(a: LeaseArgs) -> anyhow::Result<()> {
    if a.clients == 0 || a.concurrency == 0 {
        bail!("--clients and --concurrency must be at least 1");
    }
    if a.features.is_empty() {
        bail!("--features must name at least one feature");
    }
    if let Some(pid) = a.rss_pid {
        // Fail before the run rather than after it.
        server_memory(pid)?;
    }
    let server_url = parse_base_url("--server", &a.server)?;
    let server = server_url.to_string();
    let authorization = crate::http_util::client_builder(a.client_key_file.as_deref())
        .authorization()
        .map_err(|e| anyhow::anyhow!(crate::http_util::flag_words(&e.to_string())))?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .default_headers(reqwest::header::HeaderMap::from_iter([(
            reqwest::header::AUTHORIZATION,
            authorization,
        )]))
        .build()?;
    let api = LeaseApi::with_http(http, server_url);
    let features: Arc<[Feature]> = a.features.clone().into();
    // Each worker owns a slice of clients, so every client's state stays consistent.
    let mut shards: Vec<Vec<SimClient>> = (0..a.concurrency).map(|_| Vec::new()).collect();
    for i in 0..a.clients {
        let mut id = [0u8; ClientId::RANDOM_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut id);
        shards[i % a.concurrency].push(SimClient {
            id: ClientId::from_random(id),
            leased: false,
            seq: 0,
            epoch: 0,
            features: vec![SimFeature::default(); features.len()],
        });
    }
    eprintln!(
        "{} simulated clients leasing {} from {server} over {} connections for {} ...",
        a.clients,
        a.features
            .iter()
            .map(Feature::to_string)
            .collect::<Vec<_>>()
            .join(","),
        a.concurrency,
        humantime::format_duration(a.duration)
    );
    let errors = Errors::default();
    let deadline = Instant::now() + a.duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut shard in shards.into_iter().filter(|s| !s.is_empty()) {
        let api = api.clone();
        let errors = errors.clone();
        let features = features.clone();
        let product_release = a.product_release;
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::from_entropy();
            let mut latencies = Latencies::default();
            let mut i = 0usize;
            while Instant::now() < deadline {
                let n = shard.len();
                let c = &mut shard[i % n];
                i += 1;
                let request = c.next_request(&mut rng, &features, product_release);
                let t0 = Instant::now();
                let result = api.lease(&request).await.map_err(anyhow::Error::from);
                match result {
                    Ok(lease) => {
                        latencies.record(t0.elapsed());
                        c.apply(&features, &lease);
                    }
                    Err(e) => errors.record("lease", &e),
                }
            }
            (shard, latencies)
        }));
    }
    let mut all = Latencies::default();
    let mut shards = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (shard, latencies) = t.await?;
        all.merge(latencies);
        shards.push(shard);
    }
    let seconds = started.elapsed().as_secs_f64();
    // Read while the server still holds every lease.
    let memory = a.rss_pid.map(server_memory).transpose()?;
    if a.release_at_end {
        release_all(&api, shards).await;
    }
    let lat = all.summary();
    let report = LeaseReport {
        clients: a.clients,
        concurrency: a.concurrency,
        seconds,
        requests: lat.count,
        errors: errors.count(),
        requests_per_sec: lat.count as f64 / seconds,
        p50_ms: lat.p50_ms,
        p99_ms: lat.p99_ms,
        max_ms: lat.max_ms,
        server_rss_mib: memory.map(|m| m.0),
        server_peak_rss_mib: memory.map(|m| m.1),
    };
    print_report(a.json, &report, || {
        let mut text = format!(
            "{} lease requests in {:.1} s from {} clients over {} connections: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
            report.requests, report.seconds, report.clients, report.concurrency,
            report.requests_per_sec, report.p50_ms, report.p99_ms, report.max_ms, report.errors
        );
        if let (Some(rss), Some(peak)) = (report.server_rss_mib, report.server_peak_rss_mib) {
            text.push_str(&format!(", server RSS {rss:.1} MiB (peak {peak:.1} MiB)"));
        }
        text
    })
}

/// Gives back the quota of every client that was granted a lease, one worker per shard. Not
/// timed; failures are counted and the first few printed.
async fn release_all(api: &LeaseApi, shards: Vec<Vec<SimClient>>) {
    let errors = Errors::default();
    let mut tasks = Vec::new();
    for shard in shards {
        let api = api.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut released = 0u64;
            for c in shard.iter().filter(|c| c.leased) {
                let result = api
                    .release(&c.id, c.seq, c.epoch)
                    .await
                    .map_err(anyhow::Error::from);
                match result {
                    Ok(()) => released += 1,
                    Err(e) => errors.record("release", &e),
                }
            }
            released
        }));
    }
    let mut released = 0;
    for t in tasks {
        released += t.await.unwrap_or(0);
    }
    eprintln!(
        "released {released} clients, {} releases failed",
        errors.count()
    );
}

/// Resident and peak resident memory of a process on this machine, in MiB, from
/// `/proc/PID/status` (Linux).
fn server_memory(pid: u32) -> anyhow::Result<(f64, f64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .with_context(|| format!("--rss-pid {pid}: cannot read {path}"))?;
    let mib = |key: &str| -> anyhow::Result<f64> {
        let kib = status_kib(&status, key).with_context(|| format!("{path} has no {key} line"))?;
        Ok(kib as f64 / 1024.0)
    };
    Ok((mib("VmRSS")?, mib("VmHWM")?))
}

/// A `Key:   1234 kB` line of `/proc/PID/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The load generator reads the payload without verifying it: it measures the node, and the
/// node's own signing is what costs.
fn base64_payload(env: &SignedEnvelope) -> anyhow::Result<BundlePayload> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&env.payload)?;
    Ok(serde_json::from_slice(&bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latencies(micros: impl IntoIterator<Item = u32>) -> Latencies {
        Latencies(micros.into_iter().collect())
    }

    #[test]
    fn percentiles_of_nothing_are_zero() {
        let s = Latencies::default().summary();
        assert_eq!(
            s,
            LatencySummary {
                count: 0,
                p50_ms: 0.0,
                p99_ms: 0.0,
                max_ms: 0.0
            }
        );
    }

    #[test]
    fn percentiles_come_from_the_sorted_values() {
        // 1..=1000 µs, shuffled and split over two workers.
        let mut a = latencies((1..=1000).rev().filter(|v| v % 2 == 0));
        a.merge(latencies((1..=1000).filter(|v| v % 2 == 1)));
        let s = a.summary();
        assert_eq!(s.count, 1000);
        // Index round(999 * p): 500 -> value 501, 989 -> value 990.
        assert_eq!(s.p50_ms, 0.501);
        assert_eq!(s.p99_ms, 0.990);
        assert_eq!(s.max_ms, 1.0);
    }

    #[test]
    fn a_single_latency_is_every_percentile() {
        let mut l = Latencies::default();
        l.record(Duration::from_micros(2500));
        let s = l.summary();
        assert_eq!((s.count, s.p50_ms, s.p99_ms, s.max_ms), (1, 2.5, 2.5, 2.5));
    }

    #[test]
    fn huge_latencies_saturate() {
        let mut l = Latencies::default();
        l.record(Duration::from_secs(100_000));
        assert_eq!(l.summary().max_ms, f64::from(u32::MAX) / 1000.0);
    }

    #[test]
    fn memory_lines_parse_from_proc_status() {
        let status = "Name:\tleasehold\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(40960));
        assert_eq!(status_kib(status, "VmHWM"), Some(51200));
        assert_eq!(status_kib(status, "VmSwap"), None);
        assert_eq!(status_kib("VmRSSx: 1 kB", "VmRSS"), None);
    }

    #[test]
    fn own_memory_is_readable() {
        let (rss, peak) = server_memory(std::process::id()).unwrap();
        assert!(rss > 0.0 && peak >= rss, "rss {rss} peak {peak}");
    }

    #[test]
    fn simulated_clients_stay_within_their_quota() {
        let features = [
            Feature::parse("tts").unwrap(),
            Feature::parse("asr.en-US").unwrap(),
        ];
        let mut c = SimClient {
            id: ClientId::from_random([7; ClientId::RANDOM_BYTES]),
            leased: false,
            seq: 0,
            epoch: 0,
            features: vec![SimFeature::default(); 2],
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let release = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let first = c.next_request(&mut rng, &features, release);
        assert_eq!(first.features[&features[0]].in_use, 0);
        assert_eq!(first.features[&features[0]].want, 1);
        let grant = LeaseResponse {
            server_guid: leasehold_proto::ServerGuid::from_bytes([1; 16]),
            context: leasehold_proto::Context::Production,
            lease_secs: 120,
            features: [(
                features[0].clone(),
                leasehold_proto::FeatureQuota {
                    quota: 3,
                    ..Default::default()
                },
            )]
            .into(),
            epoch: 5,
        };
        c.apply(&features, &grant);
        assert!(c.leased);
        assert_eq!(c.epoch, 5, "requests carry the epoch of the last answer");
        let mut last_acquired = 0;
        for _ in 0..50 {
            let r = c.next_request(&mut rng, &features, release);
            let tts = r.features[&features[0]];
            assert!(tts.in_use <= 3 && tts.quota == 3 && tts.want == tts.in_use + 1);
            assert!(tts.acquired >= last_acquired);
            last_acquired = tts.acquired;
            let asr = r.features[&features[1]];
            assert_eq!(
                (asr.in_use, asr.quota),
                (0, 0),
                "left out means nothing granted"
            );
        }
    }
}
