//! `leasehold loadgen calls`: allocation quality against the physical limit. P independent
//! library clients (each its own client id and refresher, as P application processes would
//! be) place calls that arrive as one Poisson stream split at random across them and hold
//! their license for an exponential time. A shared ground-truth counter of licenses in use
//! tells a denial made while every license was busy (what a checkout system would also
//! deny) from a false denial (made while fewer than `count` were in use). The report puts
//! the measured blocking next to Erlang B for the same count and load.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chrono::NaiveDate;
use clap::Args;
use leasehold_client::{Client, Denied};
use leasehold_proto::traffic::{blocking_ratio, erlang_b};
use leasehold_proto::Feature;
use rand::{Rng, SeedableRng as _};
use serde::Serialize;

use super::print_report;

#[derive(Debug, Args)]
pub(super) struct CallsArgs {
    /// The clients' server list (`;`-separated, the first is the primary), as an application
    /// would be configured.
    #[arg(long, env = "LEASEHOLD_SERVERS")]
    server: String,
    /// Backup servers, `;`-separated.
    #[arg(long)]
    backup_servers: Option<String>,
    /// File with the installation's client key (else LEASEHOLD_CLIENT_KEY or
    /// LEASEHOLD_CLIENT_KEY_FILE).
    #[arg(long, value_name = "FILE")]
    client_key_file: Option<std::path::PathBuf>,
    /// The feature every call acquires.
    #[arg(long, value_parser = Feature::parse)]
    feature: Feature,
    /// Number of independent clients (application processes).
    #[arg(long, default_value_t = 4)]
    processes: usize,
    /// Offered load in Erlangs: arrival rate × mean hold.
    #[arg(long)]
    erlangs: f64,
    /// Mean hold of a call (exponentially distributed), e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// How long calls are counted, after the warm-up.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Calls placed but not counted before the measurement, so it starts near the steady
    /// state (default: twice the mean hold).
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Licenses of the feature on the server (N). Read from the server's admin API with
    /// `--admin` when not given.
    #[arg(long)]
    licenses: Option<u32>,
    /// The server's admin URL, to read the licensed count.
    #[arg(long)]
    admin: Option<String>,
    /// The license server's admin token for `--admin`.
    #[arg(
        long,
        env = "LEASEHOLD_SERVER_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    token: Option<String>,
    /// Refresh period of every client.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    refresh: Duration,
    /// With the local quota used up, ask the server and wait at most this long for more
    /// before denying (0: purely local).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    deny_wait: Duration,
    /// Release date of the simulated product (for the maintenance check).
    #[arg(long = "release", default_value = "2026-01-01")]
    product_release: NaiveDate,
    /// Seed of the arrival and hold times (random when not given).
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct CallsReport {
    licenses: u32,
    processes: usize,
    erlangs: f64,
    hold_secs: f64,
    refresh_secs: f64,
    deny_wait_ms: f64,
    warmup_secs: f64,
    seconds: f64,
    /// Calls counted (placed after the warm-up).
    calls: u64,
    denied: u64,
    /// Denied calls / calls.
    blocking: f64,
    /// Erlang B(licenses, erlangs): what a checkout system asking the server for every call
    /// would deny.
    erlang_b: f64,
    /// blocking / erlang_b (null where Erlang B is below 0.1 %: the excess is the figure there).
    ratio: Option<f64>,
    /// blocking − erlang_b, in percentage points.
    excess_pp: f64,
    /// Denials made while fewer than `licenses` were in use.
    false_denials: u64,
    false_denial_share: f64,
    /// Denials by the client's reason code.
    denials_by_reason: std::collections::BTreeMap<String, u64>,
    /// The load actually offered: counted calls × mean hold / seconds.
    offered_erlangs: f64,
    /// Mean number of licenses in use during the measurement (carried load).
    mean_in_use: f64,
    /// Highest number of licenses ever in use at once, warm-up included (must stay ≤ N).
    max_in_use: u32,
    /// Acquires that asked the server (deny-wait), their share of calls, and their latency.
    waited: u64,
    waited_share: f64,
    wait_p50_ms: f64,
    wait_p99_ms: f64,
    wait_max_ms: f64,
}

/// The shared ground truth and the counters of the measurement.
#[derive(Debug, Default)]
struct Truth {
    in_use: AtomicU32,
    max_in_use: AtomicU32,
    calls: AtomicU64,
    denied: AtomicU64,
    false_denials: AtomicU64,
    /// Integral of licenses in use over the measurement, in license-microseconds.
    in_use_integral: AtomicU64,
    last_change_micros: AtomicU64,
    waited: AtomicU64,
}

impl Truth {
    /// Adds the time since the last change at the current level to the integral.
    fn account(&self, now_micros: u64) {
        let last = self.last_change_micros.swap(now_micros, Ordering::AcqRel);
        let level = u64::from(self.in_use.load(Ordering::Acquire));
        self.in_use_integral
            .fetch_add(level * now_micros.saturating_sub(last), Ordering::Relaxed);
    }
}

/// Exponentially distributed with the given mean.
fn exponential(rng: &mut impl Rng, mean: f64) -> f64 {
    let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    -u.ln() * mean
}

pub(super) async fn calls_load(a: CallsArgs) -> anyhow::Result<()> {
    if a.processes == 0 {
        bail!("--processes must be at least 1");
    }
    if !(a.erlangs.is_finite() && a.erlangs > 0.0) {
        bail!("--erlangs must be a positive number, got {}", a.erlangs);
    }
    if a.hold.is_zero() || a.duration.is_zero() {
        bail!("--hold and --duration must be longer than 0");
    }
    let licenses = match (a.licenses, &a.admin) {
        (Some(n), _) => n,
        (None, Some(admin)) => licensed_count(admin, a.token.as_deref(), &a.feature).await?,
        (None, None) => bail!("give the licensed count with --licenses N, or --admin URL (and --token) to read it from the server"),
    };
    let warmup = a.warmup.unwrap_or(a.hold * 2);
    let keyed = crate::http_util::client_builder(a.client_key_file.as_deref());
    let mut clients = Vec::with_capacity(a.processes);
    for _ in 0..a.processes {
        let mut b = keyed
            .clone()
            .servers(&a.server)
            .product_release(a.product_release)
            .feature(a.feature.as_str())
            .refresh(a.refresh)
            .deny_wait(a.deny_wait);
        if let Some(backups) = &a.backup_servers {
            b = b.backup_servers(backups);
        }
        let client = b
            .build()
            .map_err(|e| anyhow::anyhow!(crate::http_util::flag_words(&e.to_string())))
            .context("starting a client")?;
        clients.push(Arc::new(client));
    }
    for c in &clients {
        let c = c.clone();
        let ok =
            tokio::task::spawn_blocking(move || c.wait_connected(Duration::from_secs(30))).await?;
        if !ok {
            bail!(
                "no license server answered a client within 30 s ({})",
                a.server
            );
        }
    }
    eprintln!(
        "{} clients placing calls on {} ({licenses} licenses): {} Erlangs, mean hold {}, warm-up {}, measuring {} ...",
        a.processes,
        a.feature,
        a.erlangs,
        humantime::format_duration(a.hold),
        humantime::format_duration(warmup),
        humantime::format_duration(a.duration)
    );

    let truth = Arc::new(Truth::default());
    let reasons: Arc<Mutex<std::collections::BTreeMap<String, u64>>> = Arc::default();
    let waits: Arc<Mutex<Vec<u32>>> = Arc::default();
    let mut rng = match a.seed {
        Some(s) => rand::rngs::StdRng::seed_from_u64(s),
        None => rand::rngs::StdRng::from_entropy(),
    };
    let hold_secs = a.hold.as_secs_f64();
    let mean_gap = hold_secs / a.erlangs;
    let origin = Instant::now();
    let measure_from = origin + warmup;
    let end = measure_from + a.duration;
    let micros = move |t: Instant| u64::try_from(t.duration_since(origin).as_micros()).unwrap_or(0);
    let feature: Arc<str> = a.feature.as_str().into();
    let deny_wait = a.deny_wait;
    let mut at = origin;
    let mut measuring = false;
    loop {
        at += Duration::from_secs_f64(exponential(&mut rng, mean_gap));
        if at >= end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        if !measuring && at >= measure_from {
            measuring = true;
            truth
                .last_change_micros
                .store(micros(at), Ordering::Release);
            truth.in_use_integral.store(0, Ordering::Release);
        }
        let client = clients[rng.gen_range(0..clients.len())].clone();
        let hold = Duration::from_secs_f64(exponential(&mut rng, hold_secs));
        let call = Call {
            client,
            feature: feature.clone(),
            truth: truth.clone(),
            reasons: reasons.clone(),
            waits: waits.clone(),
            licenses,
            counted: measuring,
            hold,
            micros: Arc::new(micros),
        };
        if deny_wait.is_zero() {
            call.place();
        } else {
            // The acquire may wait for the server: off the arrival loop.
            tokio::task::spawn_blocking(move || call.place());
        }
    }
    truth.account(micros(Instant::now()));
    let seconds = a.duration.as_secs_f64();
    let calls = truth.calls.load(Ordering::Acquire);
    let denied = truth.denied.load(Ordering::Acquire);
    let false_denials = truth.false_denials.load(Ordering::Acquire);
    let waited = truth.waited.load(Ordering::Acquire);
    let blocking = ratio_of(denied, calls);
    let eb = erlang_b(licenses, a.erlangs);
    let (p50, p99, max) = {
        let mut w = waits.lock().map(|w| w.clone()).unwrap_or_default();
        w.sort_unstable();
        let pct = |p: f64| -> f64 {
            if w.is_empty() {
                return 0.0;
            }
            let idx = ((w.len() as f64 - 1.0) * p).round() as usize;
            f64::from(w[idx]) / 1000.0
        };
        (
            pct(0.5),
            pct(0.99),
            w.last().map_or(0.0, |v| f64::from(*v) / 1000.0),
        )
    };
    let report = CallsReport {
        licenses,
        processes: a.processes,
        erlangs: a.erlangs,
        hold_secs,
        refresh_secs: a.refresh.as_secs_f64(),
        deny_wait_ms: a.deny_wait.as_secs_f64() * 1000.0,
        warmup_secs: warmup.as_secs_f64(),
        seconds,
        calls,
        denied,
        blocking,
        erlang_b: eb,
        ratio: blocking_ratio(blocking, eb),
        excess_pp: (blocking - eb) * 100.0,
        false_denials,
        false_denial_share: ratio_of(false_denials, calls),
        denials_by_reason: reasons.lock().map(|r| r.clone()).unwrap_or_default(),
        offered_erlangs: calls as f64 * hold_secs / seconds,
        mean_in_use: truth.in_use_integral.load(Ordering::Acquire) as f64 / 1e6 / seconds,
        max_in_use: truth.max_in_use.load(Ordering::Acquire),
        waited,
        waited_share: ratio_of(waited, calls),
        wait_p50_ms: p50,
        wait_p99_ms: p99,
        wait_max_ms: max,
    };
    // Stop the clients (each gives its quota back); holds still running are abandoned.
    drop(clients);
    if report.max_in_use > licenses {
        eprintln!(
            "OVER-ALLOCATION: {} licenses were in use at once, more than the {licenses} licensed",
            report.max_in_use
        );
    }
    print_report(a.json, &report, || {
        let mut text = format!(
            "{calls} calls in {seconds:.0} s ({} clients, N = {licenses}, {:.2} Erlangs offered of {:.2} asked, hold {:.1} s): blocking {:.3} %, Erlang B {:.3} %, ratio {}, excess {:+.3} pp; false denials {false_denials} ({:.3} % of calls); mean in use {:.2}, max in use {} of {licenses}",
            report.processes,
            report.offered_erlangs,
            report.erlangs,
            hold_secs,
            blocking * 100.0,
            eb * 100.0,
            report.ratio.map_or("-".into(), |r| format!("{r:.2}")),
            report.excess_pp,
            report.false_denial_share * 100.0,
            report.mean_in_use,
            report.max_in_use,
        );
        if !a.deny_wait.is_zero() {
            text.push_str(&format!(
                "; waited for the server {waited} times ({:.2} % of calls), p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
                report.waited_share * 100.0
            ));
        }
        if !report.denials_by_reason.is_empty() {
            let reasons: Vec<String> = report
                .denials_by_reason
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            text.push_str(&format!("; denials: {}", reasons.join(", ")));
        }
        text
    })
}

fn ratio_of(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// One call: acquire, and on a grant hold the license for `hold` on a timer task.
struct Call {
    client: Arc<Client>,
    feature: Arc<str>,
    truth: Arc<Truth>,
    reasons: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
    waits: Arc<Mutex<Vec<u32>>>,
    licenses: u32,
    counted: bool,
    hold: Duration,
    micros: Arc<dyn Fn(Instant) -> u64 + Send + Sync>,
}

impl Call {
    fn place(self) {
        let t0 = Instant::now();
        let result = self.client.acquire(&self.feature);
        let elapsed = t0.elapsed();
        let truth = &self.truth;
        let waited = match &result {
            Ok(guard) => guard.waited(),
            Err(d) => *d == Denied::QuotaExhausted && !self.client.deny_wait().is_zero(),
        };
        if self.counted {
            truth.calls.fetch_add(1, Ordering::Relaxed);
            if waited {
                truth.waited.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut w) = self.waits.lock() {
                    w.push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                }
            }
        }
        match result {
            Ok(guard) => {
                let raw = guard.into_raw();
                // Ground truth follows the application: it counts a license once the client
                // granted it, and stops counting it before the client gets it back.
                let now = (self.micros)(Instant::now());
                if self.counted {
                    truth.account(now);
                }
                let n = truth.in_use.fetch_add(1, Ordering::AcqRel) + 1;
                truth.max_in_use.fetch_max(n, Ordering::AcqRel);
                let client = self.client.clone();
                let truth = self.truth.clone();
                let micros = self.micros.clone();
                let hold = self.hold;
                let release = async move {
                    tokio::time::sleep(hold).await;
                    truth.account(micros(Instant::now()));
                    truth.in_use.fetch_sub(1, Ordering::AcqRel);
                    client.release_raw(raw);
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(h) => {
                        h.spawn(release);
                    }
                    Err(_) => {
                        // Not on the runtime (cannot happen: both callers run inside it);
                        // release at once rather than leak the license.
                        self.truth.in_use.fetch_sub(1, Ordering::AcqRel);
                        self.client.release_raw(raw);
                    }
                }
            }
            Err(denied) => {
                if self.counted {
                    truth.denied.fetch_add(1, Ordering::Relaxed);
                    if truth.in_use.load(Ordering::Acquire) < self.licenses {
                        truth.false_denials.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Ok(mut r) = self.reasons.lock() {
                        *r.entry(denied.as_str().to_string()).or_default() += 1;
                    }
                }
            }
        }
    }
}

/// The licensed count of `feature` on the server, from its admin status.
async fn licensed_count(
    admin: &str,
    token: Option<&str>,
    feature: &Feature,
) -> anyhow::Result<u32> {
    let token = token.context("--admin needs --token (or LEASEHOLD_SERVER_TOKEN)")?;
    let base = leasehold_api_client::parse_base_url("--admin", admin)?;
    let s = leasehold_api_client::ServerAdminClient::new(base, Some(token.to_owned()))?
        .status()
        .await?;
    let n: u32 = s
        .licenses
        .iter()
        .filter(|l| &l.feature == feature)
        .map(|l| l.count)
        .sum();
    if n == 0 {
        bail!("the server at {admin} has no license for {feature}");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_has_the_mean_asked_for() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let n = 200_000;
        let mean: f64 = (0..n).map(|_| exponential(&mut rng, 5.0)).sum::<f64>() / n as f64;
        assert!((mean - 5.0).abs() < 0.05, "{mean}");
    }

    #[test]
    fn the_integral_of_in_use_adds_level_times_time() {
        let t = Truth::default();
        t.account(0);
        t.in_use.store(3, Ordering::Release);
        t.account(1_000_000);
        t.in_use.store(1, Ordering::Release);
        t.account(3_000_000);
        assert_eq!(
            t.in_use_integral.load(Ordering::Acquire),
            3_000_000 + 2_000_000
        );
    }
}
