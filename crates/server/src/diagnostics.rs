//! Diagnostics for the dashboard and the support bundle: can this server reach a license node
//! (DNS, TCP, TLS, HTTP, clock), is its data directory healthy, and one downloadable report
//! with all of it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use leasehold_proto::{Clock, SystemClock};
use serde::{Deserialize, Serialize};

use crate::api::Status;
use crate::outbound::NodeConnection;

/// A node clock further off than this is reported as a warning.
pub const CLOCK_SKEW_WARN_SECS: i64 = 60;
/// Free space below this in the data directory is reported as a warning.
pub const LOW_SPACE_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepLevel {
    Ok,
    Warn,
    Failed,
    /// Not tried (an earlier step failed) or not applicable (TLS on plain HTTP).
    Skipped,
}

/// One step of a node check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagStep {
    pub name: String,
    /// False only when the step failed (a warning or a skipped step is not a failure).
    pub ok: bool,
    pub level: StepLevel,
    pub detail: String,
    pub millis: u64,
}

impl DiagStep {
    fn new(name: &str, level: StepLevel, detail: impl Into<String>, millis: u64) -> Self {
        Self {
            name: name.to_string(),
            ok: level != StepLevel::Failed,
            level,
            detail: detail.into(),
            millis,
        }
    }
}

/// Step names, in order.
pub mod steps {
    pub const URL: &str = "URL";
    pub const DNS: &str = "DNS";
    pub const TCP: &str = "TCP connect";
    pub const TLS: &str = "TLS";
    pub const HTTP: &str = "HTTP health";
    pub const CLOCK: &str = "clock";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDiagnostics {
    pub url: String,
    pub checked_at: DateTime<Utc>,
    /// Every step ok (warnings allowed).
    pub ok: bool,
    pub steps: Vec<DiagStep>,
    /// Node clock minus local clock, in seconds, when the node sent a `Date` header.
    pub clock_skew_secs: Option<i64>,
}

impl NodeDiagnostics {
    pub fn step(&self, name: &str) -> Option<&DiagStep> {
        self.steps.iter().find(|s| s.name == name)
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Checks a license node as the sync agent would reach it, with the system clock.
pub async fn check_node(url: &str, timeout: Duration) -> NodeDiagnostics {
    check_node_with(url, timeout, &SystemClock, &NodeConnection::default()).await
}

/// Checks a license node: DNS, TCP connect to the first address, TLS (https only), `GET
/// {url}/v1/health`, and the node's `Date` header against `clock`. Each step is bounded by
/// `timeout`; later steps are skipped when an earlier one fails. Through a proxy (as `conn`
/// says for this URL) the DNS and TCP steps check the proxy, and the rest goes through it.
pub async fn check_node_with(
    url: &str,
    timeout: Duration,
    clock: &dyn Clock,
    conn: &NodeConnection,
) -> NodeDiagnostics {
    let checked_at = clock.now();
    let mut steps = Vec::new();
    let mut skew = None;
    run_checks(url, timeout, clock, conn, &mut steps, &mut skew).await;
    NodeDiagnostics {
        url: url.to_string(),
        checked_at,
        ok: steps.iter().all(|s| s.ok),
        steps,
        clock_skew_secs: skew,
    }
}

async fn run_checks(
    url: &str,
    timeout: Duration,
    clock: &dyn Clock,
    conn: &NodeConnection,
    steps: &mut Vec<DiagStep>,
    skew: &mut Option<i64>,
) {
    let skip_rest = |steps: &mut Vec<DiagStep>, from: usize, why: &str| {
        let names = [
            steps::DNS,
            steps::TCP,
            steps::TLS,
            steps::HTTP,
            steps::CLOCK,
        ];
        for name in &names[from..] {
            steps.push(DiagStep::new(name, StepLevel::Skipped, why, 0));
        }
    };
    let parsed = match reqwest::Url::parse(url.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
        Ok(u) => {
            steps.push(DiagStep::new(
                steps::URL,
                StepLevel::Failed,
                format!(
                    "{url}: not an http:// or https:// address with a host (scheme {})",
                    u.scheme()
                ),
                0,
            ));
            return skip_rest(steps, 0, "not tried: the node address is not usable");
        }
        Err(e) => {
            steps.push(DiagStep::new(
                steps::URL,
                StepLevel::Failed,
                format!("{url}: not a valid URL: {e}"),
                0,
            ));
            return skip_rest(steps, 0, "not tried: the node address is not usable");
        }
    };
    let https = parsed.scheme() == "https";
    // Through a proxy, the first hop is the proxy.
    let proxy = conn.proxy_for(&parsed);
    let first_hop = proxy.unwrap_or(&parsed);
    let host = first_hop.host_str().unwrap_or_default().to_string();
    let port = first_hop
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });
    let via = match proxy {
        Some(p) => format!(" (the proxy {})", crate::outbound::redact_proxy(p)),
        None => String::new(),
    };
    let timeout_text = format!("no answer within {} ms", timeout.as_millis());

    // DNS
    let t = Instant::now();
    let target = format!("{host}:{port}");
    let addrs = match tokio::time::timeout(timeout, tokio::net::lookup_host(target.clone())).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<std::net::SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                steps.push(DiagStep::new(
                    steps::DNS,
                    StepLevel::Failed,
                    format!("{host}{via} resolves to no address"),
                    millis(t),
                ));
                return skip_rest(steps, 1, "not tried: DNS failed");
            }
            let list: Vec<String> = addrs.iter().take(4).map(ToString::to_string).collect();
            let more = addrs.len().saturating_sub(4);
            steps.push(DiagStep::new(
                steps::DNS,
                StepLevel::Ok,
                format!(
                    "{host}{via} resolves to {}{}",
                    list.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ),
                millis(t),
            ));
            addrs
        }
        Ok(Err(e)) => {
            steps.push(DiagStep::new(
                steps::DNS,
                StepLevel::Failed,
                format!("cannot resolve {host}{via}: {e}"),
                millis(t),
            ));
            return skip_rest(steps, 1, "not tried: DNS failed");
        }
        Err(_) => {
            steps.push(DiagStep::new(
                steps::DNS,
                StepLevel::Failed,
                format!("cannot resolve {host}{via}: {timeout_text}"),
                millis(t),
            ));
            return skip_rest(steps, 1, "not tried: DNS failed");
        }
    };

    // TCP
    let addr = addrs[0];
    let t = Instant::now();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => steps.push(DiagStep::new(
            steps::TCP,
            StepLevel::Ok,
            format!("connected to {addr}{via}"),
            millis(t),
        )),
        Ok(Err(e)) => {
            let why = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "connection refused: nothing is listening on that port, or a firewall rejects it".to_string()
                }
                _ => e.to_string(),
            };
            steps.push(DiagStep::new(
                steps::TCP,
                StepLevel::Failed,
                format!("cannot connect to {addr}{via}: {why}"),
                millis(t),
            ));
            return skip_rest(steps, 2, "not tried: TCP connect failed");
        }
        Err(_) => {
            steps.push(DiagStep::new(
                steps::TCP,
                StepLevel::Failed,
                format!(
                    "cannot connect to {addr}{via}: {timeout_text} (a firewall may drop the packets)"
                ),
                millis(t),
            ));
            return skip_rest(steps, 2, "not tried: TCP connect failed");
        }
    }

    // TLS and HTTP. The first request opens the connection (and does the TLS handshake); on
    // https a second one over the same connection times HTTP alone.
    let client = match conn.http_client(timeout) {
        Ok(c) => c,
        Err(e) => {
            steps.push(DiagStep::new(
                steps::TLS,
                StepLevel::Failed,
                format!("cannot set up the HTTP client: {e}"),
                0,
            ));
            return skip_rest(steps, 3, "not tried: no HTTP client");
        }
    };
    let health = format!("{}/v1/health", url.trim().trim_end_matches('/'));
    let get = |client: &reqwest::Client| {
        let health = health.clone();
        let client = client.clone();
        async move {
            let sent = clock.now();
            let t = Instant::now();
            let result = client.get(&health).send().await;
            let ms = millis(t);
            let received = clock.now();
            (result, ms, sent + (received - sent) / 2)
        }
    };
    let (mut result, mut ms, mut local_mid) = get(&client).await;
    if https {
        match &result {
            Ok(_) => {
                steps.push(DiagStep::new(
                    steps::TLS,
                    StepLevel::Ok,
                    "handshake done, certificate accepted",
                    ms,
                ));
                (result, ms, local_mid) = get(&client).await;
            }
            Err(e) if e.is_connect() => {
                steps.push(DiagStep::new(
                    steps::TLS,
                    StepLevel::Failed,
                    format!("TLS failed: {}{}", error_chain(e), tls_hint(e, conn)),
                    ms,
                ));
                return skip_rest(steps, 3, "not tried: TLS failed");
            }
            Err(e) => {
                steps.push(DiagStep::new(
                    steps::TLS,
                    StepLevel::Failed,
                    format!("no answer over TLS: {}", error_chain(e)),
                    ms,
                ));
                return skip_rest(steps, 3, "not tried: TLS failed");
            }
        }
    } else {
        steps.push(DiagStep::new(
            steps::TLS,
            StepLevel::Skipped,
            "not used (plain HTTP)",
            0,
        ));
    }
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            steps.push(DiagStep::new(
                steps::HTTP,
                StepLevel::Failed,
                format!("GET {health}: {}", error_chain(&e)),
                ms,
            ));
            return skip_rest(steps, 4, "not tried: no HTTP answer");
        }
    };
    let status = response.status();
    let date = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| DateTime::parse_from_rfc2822(s).ok())
        .map(|d| d.with_timezone(&Utc));
    let body = response.text().await.unwrap_or_default();
    let body: String = body.trim().chars().take(200).collect();
    let level = if status.is_success() {
        StepLevel::Ok
    } else {
        StepLevel::Failed
    };
    steps.push(DiagStep::new(
        steps::HTTP,
        level,
        format!(
            "GET {health}: HTTP {status} in {ms} ms{}",
            if body.is_empty() {
                String::new()
            } else {
                format!(": {body}")
            }
        ),
        ms,
    ));

    // Clock
    match date {
        Some(node_time) => {
            // The header has whole seconds; compare with the middle of the request.
            let secs = (node_time - local_mid).num_milliseconds() as f64 / 1000.0;
            let s = secs.round() as i64;
            *skew = Some(s);
            let words = match s {
                0 => "the node's clock agrees with this server's".to_string(),
                s if s > 0 => format!("the node's clock is {s} s ahead of this server's"),
                s => format!("the node's clock is {} s behind this server's", -s),
            };
            let level = if s.abs() > CLOCK_SKEW_WARN_SECS {
                StepLevel::Warn
            } else {
                StepLevel::Ok
            };
            let advice = if level == StepLevel::Warn {
                " — check NTP on this machine: license dates and grace are counted with this server's clock"
            } else {
                ""
            };
            steps.push(DiagStep::new(
                steps::CLOCK,
                level,
                format!("{words}{advice}"),
                0,
            ));
        }
        None => steps.push(DiagStep::new(
            steps::CLOCK,
            StepLevel::Warn,
            "the node sent no Date header; clock not compared",
            0,
        )),
    }
}

/// What to do about a certificate this server does not trust.
fn tls_hint(e: &reqwest::Error, conn: &NodeConnection) -> String {
    let text = error_chain(e);
    if !(text.contains("UnknownIssuer") || text.contains("certificate")) {
        return String::new();
    }
    match &conn.ca_file {
        Some(f) => format!(
            " — the node's certificate does not chain to an authority in {} (--node-ca)",
            f.display()
        ),
        None => " — the node's certificate does not chain to an authority this system trusts; give the vendor's CA with --node-ca".to_string(),
    }
}

/// The state of the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDirHealth {
    pub path: PathBuf,
    pub exists: bool,
    pub writable: bool,
    /// Size of `server.db`, and of its write-ahead log `server.db-wal`.
    pub db_bytes: u64,
    pub wal_bytes: u64,
    /// Space available to this process on the file system holding the directory.
    pub available_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    /// Problems in words; empty when healthy.
    pub problems: Vec<String>,
}

impl DataDirHealth {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Looks at the data directory: exists, writable (a temporary file is created and removed),
/// database and WAL sizes, free space.
pub fn data_dir_health(dir: &Path) -> DataDirHealth {
    let mut h = DataDirHealth {
        path: dir.to_path_buf(),
        exists: dir.is_dir(),
        writable: false,
        db_bytes: 0,
        wal_bytes: 0,
        available_bytes: None,
        total_bytes: None,
        problems: Vec::new(),
    };
    if !h.exists {
        h.problems.push(if dir.exists() {
            format!("{} is not a directory", dir.display())
        } else {
            format!("{} does not exist", dir.display())
        });
        return h;
    }
    let probe = dir.join(format!(".leasehold-write-test-{}", std::process::id()));
    match std::fs::write(&probe, b"leasehold").and_then(|()| std::fs::remove_file(&probe)) {
        Ok(()) => h.writable = true,
        Err(e) => {
            let _ = std::fs::remove_file(&probe);
            h.problems
                .push(format!("{} is not writable: {e}", dir.display()));
        }
    }
    let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    h.db_bytes = size("server.db");
    h.wal_bytes = size("server.db-wal");
    match fs4::statvfs(dir) {
        Ok(s) => {
            h.available_bytes = Some(s.available_space());
            h.total_bytes = Some(s.total_space());
            if s.available_space() < LOW_SPACE_BYTES {
                h.problems.push(format!(
                    "only {} MiB free on the file system of {}",
                    s.available_space() / (1024 * 1024),
                    dir.display()
                ));
            }
        }
        Err(e) => h
            .problems
            .push(format!("cannot read free space of {}: {e}", dir.display())),
    }
    h
}

/// Keys whose values a support bundle must not show.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["token", "password", "secret"]
        .iter()
        .any(|w| k.contains(w))
}

pub const REDACTED: &str = "<redacted>";

/// The configuration with the value of every key containing "token", "password" or "secret"
/// (at any depth, in tables, inline tables and arrays of tables) replaced by `<redacted>`,
/// and the password of any URL in a value (a proxy's `http://user:password@host`) too.
/// Comments are dropped (they may hold secrets too). Text that is not valid TOML keeps only
/// the lines that mention none of those words.
pub fn redact_config(toml_text: &str) -> String {
    match toml_text.parse::<toml::Table>() {
        Ok(mut table) => {
            redact_table(&mut table);
            toml::to_string_pretty(&table)
                .unwrap_or_else(|e| format!("# configuration could not be shown: {e}\n"))
        }
        Err(_) => {
            let mut out = String::from("# not valid TOML; lines that may hold secrets removed\n");
            for line in toml_text.lines() {
                if is_secret_key(line) {
                    out.push_str("# <line redacted>\n");
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out
        }
    }
}

fn redact_table(t: &mut toml::Table) {
    for (k, v) in t.iter_mut() {
        if is_secret_key(k) {
            *v = toml::Value::String(REDACTED.into());
        } else {
            redact_value(v);
        }
    }
}

fn redact_value(v: &mut toml::Value) {
    match v {
        toml::Value::Table(t) => redact_table(t),
        toml::Value::Array(a) => a.iter_mut().for_each(redact_value),
        toml::Value::String(s) => {
            if let Ok(url) = reqwest::Url::parse(s) {
                if url.password().is_some() {
                    *s = crate::outbound::redact_proxy(&url);
                }
            }
        }
        _ => {}
    }
}

/// Everything an operator sends to support, as one JSON document: software version, status,
/// configuration (redacted again here, whatever the caller did), data directory, node checks
/// and the recent log lines.
pub fn support_bundle(
    status: &Status,
    config_toml_without_secrets: &str,
    logs: &[String],
    data_dir: &DataDirHealth,
    nodes: &[NodeDiagnostics],
) -> String {
    let doc = serde_json::json!({
        "leasehold_support_bundle": 1,
        "software": format!("leasehold-server {}", env!("CARGO_PKG_VERSION")),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "status": status,
        "config": redact_config(config_toml_without_secrets),
        "data_dir": data_dir,
        "node_checks": nodes,
        "recent_logs": logs,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ServerState;

    async fn health_server() -> (String, tokio::task::JoinHandle<()>) {
        let app = axum::Router::new().route(
            "/v1/health",
            axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), task)
    }

    #[tokio::test]
    async fn reachable_node_passes_every_step() {
        let (url, task) = health_server().await;
        let d = check_node(&format!("{url}/"), Duration::from_secs(5)).await;
        task.abort();
        assert!(d.ok, "{d:#?}");
        let names: Vec<&str> = d.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                steps::DNS,
                steps::TCP,
                steps::TLS,
                steps::HTTP,
                steps::CLOCK
            ]
        );
        assert_eq!(d.step(steps::TLS).unwrap().level, StepLevel::Skipped);
        assert_eq!(d.step(steps::TLS).unwrap().detail, "not used (plain HTTP)");
        assert!(d.step(steps::HTTP).unwrap().detail.contains("200"));
        assert_eq!(d.step(steps::CLOCK).unwrap().level, StepLevel::Ok);
        assert!(d.clock_skew_secs.unwrap().abs() <= 2);
    }

    #[tokio::test]
    async fn skewed_clock_warns() {
        let (url, task) = health_server().await;
        let clock = leasehold_proto::ManualClock::new(Utc::now() + chrono::Duration::minutes(10));
        let d = check_node_with(
            &url,
            Duration::from_secs(5),
            &clock,
            &NodeConnection::default(),
        )
        .await;
        task.abort();
        assert!(d.ok, "a warning is not a failure");
        let step = d.step(steps::CLOCK).unwrap();
        assert_eq!(step.level, StepLevel::Warn, "{step:?}");
        assert!(step.detail.contains("behind"), "{}", step.detail);
        assert!(d.clock_skew_secs.unwrap() < -500);
    }

    #[tokio::test]
    async fn closed_port_fails_at_tcp() {
        // Bind and drop to find a port nothing listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let d = check_node(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).await;
        assert!(!d.ok);
        assert_eq!(d.step(steps::DNS).unwrap().level, StepLevel::Ok);
        let tcp = d.step(steps::TCP).unwrap();
        assert!(!tcp.ok);
        assert!(tcp.detail.contains("connection refused"), "{}", tcp.detail);
        assert_eq!(d.step(steps::HTTP).unwrap().level, StepLevel::Skipped);
    }

    #[tokio::test]
    async fn unresolvable_host_fails_at_dns() {
        let d = check_node("https://nonexistent.invalid:8443", Duration::from_secs(5)).await;
        assert!(!d.ok);
        let dns = d.step(steps::DNS).unwrap();
        assert!(!dns.ok);
        assert!(dns.detail.contains("nonexistent.invalid"), "{}", dns.detail);
        assert!(d
            .steps
            .iter()
            .skip(1)
            .all(|s| s.level == StepLevel::Skipped));
    }

    #[tokio::test]
    async fn bad_url_is_reported() {
        let d = check_node("ftp://example.invalid", Duration::from_secs(1)).await;
        assert!(!d.ok);
        assert_eq!(d.steps[0].name, steps::URL);
        let d = check_node("not a url", Duration::from_secs(1)).await;
        assert!(!d.steps[0].ok);
    }

    #[tokio::test]
    async fn http_error_status_fails() {
        let app = axum::Router::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let d = check_node(&format!("http://{addr}"), Duration::from_secs(5)).await;
        task.abort();
        let http = d.step(steps::HTTP).unwrap();
        assert!(!http.ok);
        assert!(http.detail.contains("404"), "{}", http.detail);
    }

    #[test]
    fn data_dir_health_reports() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.db"), vec![0u8; 4096]).unwrap();
        let h = data_dir_health(dir.path());
        assert!(h.exists && h.writable, "{h:?}");
        assert_eq!((h.db_bytes, h.wal_bytes), (4096, 0));
        assert!(h.available_bytes.unwrap() > 0);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "the write probe is removed");

        let missing = data_dir_health(&dir.path().join("nope"));
        assert!(!missing.exists && !missing.ok());
        assert!(missing.problems[0].contains("does not exist"));
    }

    #[test]
    fn redaction_removes_secrets_at_any_depth() {
        let cfg = r#"
# admin token below: s3cr3t-in-comment
admin_token = "tok-123"
listen = "0.0.0.0:7070"
nodes = ["https://n1.example.invalid"]

[dashboard]
password = "hunter2"
session_secret = "abc"
title = "Plant A"

[[proxies]]
url = "http://p"
api_token = "zzz"

[inline]
x = { refresh_token = "rrr", keep = 1 }

[outbound]
proxy = "http://me:pr0xypass@proxy.example:3128"
"#;
        let out = redact_config(cfg);
        assert!(out.contains("proxy.example:3128"), "{out}");
        for secret in [
            "tok-123",
            "hunter2",
            "abc",
            "zzz",
            "rrr",
            "s3cr3t",
            "pr0xypass",
        ] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
        for kept in ["0.0.0.0:7070", "n1.example.invalid", "Plant A", "http://p"] {
            assert!(out.contains(kept), "{kept} lost:\n{out}");
        }
        assert!(out.contains("admin_token = \"<redacted>\""), "{out}");
        // Idempotent, and still valid TOML.
        assert_eq!(redact_config(&out), out);

        let broken = redact_config("admin_token = \"abc\nlisten = [");
        assert!(!broken.contains("abc"));
        assert!(broken.contains("listen = ["));
    }

    #[test]
    fn support_bundle_is_one_json_document() {
        let status = Status {
            guid: None,
            context: None,
            installation: None,
            state: ServerState::Unconfigured,
            reason: Some("no GUID".into()),
            licenses: vec![],
            clients: 0,
            learning_until: None,
            last_sync: None,
            last_sync_node: None,
            last_sync_error: None,
            next_sync: None,
            not_after: None,
            grace_days_left: None,
            bundle_serial: 0,
            bundle_key_id: None,
            pending_usage_buckets: 0,
            storage_failing_since: None,
            storage_error: None,
            nodes: vec![],
        };
        let dir = tempfile::tempdir().unwrap();
        let node = NodeDiagnostics {
            url: "http://n".into(),
            checked_at: Utc::now(),
            ok: false,
            steps: vec![DiagStep::new(steps::DNS, StepLevel::Failed, "nope", 1)],
            clock_skew_secs: None,
        };
        let text = support_bundle(
            &status,
            "admin_token = \"leak\"\nlisten = \"x\"\n",
            &["line one".into()],
            &data_dir_health(dir.path()),
            &[node],
        );
        assert!(!text.contains("leak"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"]["state"], "unconfigured");
        assert_eq!(v["recent_logs"][0], "line one");
        assert_eq!(v["node_checks"][0]["steps"][0]["level"], "failed");
        assert_eq!(v["data_dir"]["writable"], true);
    }
}
