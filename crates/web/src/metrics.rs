//! One Prometheus recorder per process. A node and a server running in one process (the
//! demo, the tests) must share it: a second recorder cannot be installed, so each service
//! asks here instead of installing its own, and registers its metrics' HELP text here.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

pub use metrics_exporter_prometheus::PrometheusHandle;

/// Bucket bounds of every histogram whose name ends `_seconds`: from a lease answered from
/// memory (tens of microseconds) to a sync through a slow proxy (the node timeout, 30 s).
pub const SECONDS_BUCKETS: [f64; 18] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Bucket bounds of every other histogram (counts, such as syncs per group commit).
pub const COUNT_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// How often samples recorded into histograms are folded into their buckets, so memory
/// stays bounded when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// What a metric is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric: its name, kind, unit and the `# HELP` text Prometheus shows. Each
/// crate lists its metrics in one table of these (`metrics.rs`), so a metric without a
/// description is easy to spot.
#[derive(Debug, Clone, Copy)]
pub struct Description {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: &'static str,
}

impl Description {
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self::new(name, Kind::Counter, None, help)
    }

    pub const fn gauge(name: &'static str, unit: Option<Unit>, help: &'static str) -> Self {
        Self::new(name, Kind::Gauge, unit, help)
    }

    pub const fn histogram(name: &'static str, unit: Option<Unit>, help: &'static str) -> Self {
        Self::new(name, Kind::Histogram, unit, help)
    }

    const fn new(name: &'static str, kind: Kind, unit: Option<Unit>, help: &'static str) -> Self {
        Self {
            name,
            kind,
            unit,
            help,
        }
    }
}

/// The metrics of this crate: what `serve` and the TLS reloader count.
pub const METRICS: &[Description] = &[
    Description::counter(
        "leasehold_http_connections_refused_total",
        "Connections closed at once because the listener already served --max-connections.",
    ),
    Description::counter(
        "leasehold_http_connections_idle_closed_total",
        "Keep-alive connections closed after --idle-timeout without a request.",
    ),
    Description::counter(
        "leasehold_http_tls_handshake_failures_total",
        "TLS handshakes that failed or did not finish within --header-read-timeout.",
    ),
    Description::counter(
        "leasehold_tls_reloads_total",
        "Changed TLS certificate and key files: result=loaded (now in service) or failed (the pair in service stays).",
    ),
];

/// The process-wide recorder's handle, installing it on first use (with this crate's
/// descriptions, histogram buckets and a thread folding histogram samples every few
/// seconds). `None` only when some other code installed a different recorder first.
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(install).clone()
}

fn install() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&COUNT_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        })
        .and_then(PrometheusBuilder::install_recorder)
        .ok()?;
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms are folded at each scrape only");
    }
    describe(METRICS);
    Some(handle)
}

/// Installs the recorder if needed and gives it the HELP text and unit of `metrics`. Each
/// service calls it with its crate's table when it starts; a second call changes nothing.
pub fn register(metrics: &[Description]) {
    let _ = prometheus();
    describe(metrics);
}

fn describe(metrics: &[Description]) {
    for d in metrics {
        match (d.kind, d.unit) {
            (Kind::Counter, Some(u)) => metrics::describe_counter!(d.name, u, d.help),
            (Kind::Counter, None) => metrics::describe_counter!(d.name, d.help),
            (Kind::Gauge, Some(u)) => metrics::describe_gauge!(d.name, u, d.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(d.name, d.help),
            (Kind::Histogram, Some(u)) => metrics::describe_histogram!(d.name, u, d.help),
            (Kind::Histogram, None) => metrics::describe_histogram!(d.name, d.help),
        }
    }
}

/// The metrics in Prometheus text format.
pub fn render() -> String {
    prometheus().map(|h| h.render()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_the_web_layer_records_is_described_and_nothing_else() {
        leasehold_testkit::metrics::assert_described(
            env!("CARGO_MANIFEST_DIR"),
            super::METRICS.iter().map(|d| d.name),
        );
    }
}
