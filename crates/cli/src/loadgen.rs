//! `leasehold loadgen`: measured load against a running node (and later a server). Bounded
//! in time and count, loopback only by intent; it prints what it measured.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use leasehold_node::api::{InstallationView, ServerView};
use leasehold_proto::{
    BundlePayload, Feature, InstanceId, SignedEnvelope, SyncToken, SyncUpload, UsageBucket,
};
use rand::RngCore;
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
}

#[derive(Debug, Args)]
struct SyncArgs {
    /// License node URL.
    #[arg(long, env = "LEASEHOLD_NODE", default_value = "http://127.0.0.1:8470")]
    node: String,
    /// Admin token, used once to create the simulated servers.
    #[arg(long, env = "LEASEHOLD_ADMIN_TOKEN", hide_env_values = true)]
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

pub fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.command {
        LoadgenCommand::Sync(a) => rt.block_on(sync_load(a)),
    }
}

struct SimServer {
    guid: leasehold_proto::ServerGuid,
    instance: InstanceId,
    token: Option<SyncToken>,
    serial: u64,
    next_seq: u64,
}

async fn admin_post<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: String,
    token: &str,
    body: serde_json::Value,
) -> anyhow::Result<T> {
    let resp = http
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("{url}: {status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

async fn sync_load(a: SyncArgs) -> anyhow::Result<()> {
    if a.servers == 0 || a.concurrency == 0 {
        bail!("--servers and --concurrency must be at least 1");
    }
    let node = a.node.trim_end_matches('/').to_string();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    eprintln!("creating {} simulated servers on {node} ...", a.servers);
    let mut sims = Vec::with_capacity(a.servers);
    for i in 0..a.servers {
        let inst: InstallationView = admin_post(
            &http,
            format!("{node}/v1/admin/installations"),
            &a.token,
            serde_json::json!({"name": format!("loadgen {i}")}),
        )
        .await?;
        let server: ServerView = admin_post(
            &http,
            format!("{node}/v1/admin/servers"),
            &a.token,
            serde_json::json!({"installation": inst.id, "context": "production"}),
        )
        .await?;
        for feature in ["asr.en-US", "tts", "asr.de-DE"] {
            let _: serde_json::Value = admin_post(&http, format!("{node}/v1/admin/licenses"), &a.token,
                serde_json::json!({"server": server.guid, "feature": feature, "count": 20, "maintenance_until": "2030-01-01"})).await?;
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
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + a.duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut shard in shards.into_iter().filter(|s| !s.is_empty()) {
        let http = http.clone();
        let url = format!("{node}/v1/sync");
        let errors = errors.clone();
        let buckets = a.buckets;
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
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
                        backup_use_secs: 0,
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
                    let resp = http.post(&url).json(&upload).send().await?;
                    if !resp.status().is_success() {
                        anyhow::bail!(
                            "{}: {}",
                            resp.status(),
                            resp.text().await.unwrap_or_default()
                        );
                    }
                    let env: SignedEnvelope = resp.json().await?;
                    let payload = base64_payload(&env)?;
                    Ok(payload)
                }
                .await;
                match result {
                    Ok(bundle) => {
                        latencies.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                        s.token = Some(bundle.next_sync_token);
                        s.serial = bundle.serial;
                        s.next_seq = bundle.acked_usage_seq + 1;
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("sync failed: {e:#}");
                        }
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
        f64::from(all[idx]) / 1000.0
    };
    let report = SyncReport {
        servers: a.servers,
        concurrency: a.concurrency,
        seconds,
        syncs: all.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        syncs_per_sec: all.len() as f64 / seconds,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: all.last().map(|v| f64::from(*v) / 1000.0).unwrap_or(0.0),
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} syncs in {:.1} s from {} servers over {} connections: {:.0} syncs/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
            report.syncs, report.seconds, report.servers, report.concurrency, report.syncs_per_sec,
            report.p50_ms, report.p99_ms, report.max_ms, report.errors
        );
    }
    Ok(())
}

/// The load generator reads the payload without verifying it: it measures the node, and the
/// node's own signing is what costs.
fn base64_payload(env: &SignedEnvelope) -> anyhow::Result<BundlePayload> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&env.payload)?;
    Ok(serde_json::from_slice(&bytes)?)
}
