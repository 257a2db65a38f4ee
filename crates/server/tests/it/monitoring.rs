//! What operators monitor with: both `/metrics` endpoints (the node's and the license
//! server's admin listener) pass `promtool check metrics` after real work, the alert rules
//! in `deploy/prometheus` pass `promtool check rules` and their unit tests, and every metric
//! the alerts and the Grafana dashboard (`deploy/grafana`) use is one the code records.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use leasehold_testkit::metrics::names_in_source;
use leasehold_testkit::server::{lease_request, Synced};

/// The lead's storage gauges, which may not be recorded yet: they are required as soon as
/// the server records any `leasehold_server_storage_…` metric.
const AWAITED: [&str; 2] = [
    "leasehold_server_storage_healthy",
    "leasehold_server_storage_failing_since_timestamp_seconds",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `promtool` from `PATH`; `None`, with a notice, where it is not installed. Under CI
/// (`CI=true`) a missing promtool fails the test.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "promtool is missing: apt-get install -y prometheus (.ci/run installs it)"
        );
        eprintln!("== promtool test skipped: run 'apt-get install -y prometheus' to enable it");
    }
    found
}

/// Runs `promtool ARGS` in `dir` with `stdin`; fails on a non-zero exit, and on any output
/// other than `SUCCESS` lines and the names of the files checked.
fn promtool_passes(promtool: &Path, dir: &Path, args: &[&str], stdin: &str) {
    let mut child = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let complaints: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("SUCCESS")
                && !l.starts_with("Checking ")
                && !l.starts_with("Unit Testing: ")
        })
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "promtool {args:?} complains ({}):\n{text}",
        out.status
    );
}

/// Fails naming every metric whose `# TYPE` line has no `# HELP` line before it.
fn every_type_has_help(scrape: &str) {
    let mut helped = BTreeSet::new();
    let mut without = Vec::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap_or_default());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !helped.contains(name) {
                without.push(name);
            }
        }
    }
    assert!(without.is_empty(), "# TYPE without # HELP: {without:?}");
}

#[tokio::test]
async fn both_metrics_endpoints_pass_promtool_after_a_sync_and_a_lease() {
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = Synced::start(dir.path()).await;
    assert!(s.server.sync_now().await.ok);
    s.server
        .lease(&lease_request(1, "tts", 0, 2, 0))
        .await
        .unwrap();
    for url in [
        format!("{}/metrics", s.server.admin_url),
        format!("{}/metrics", s.node.url),
    ] {
        let scrape = reqwest::get(&url).await.unwrap().text().await.unwrap();
        for want in [
            "# TYPE leasehold_server_lease_request_duration_seconds histogram",
            "# TYPE leasehold_server_sync_duration_seconds histogram",
            "# TYPE leasehold_node_sync_duration_seconds histogram",
            "# TYPE leasehold_node_sync_batch_size histogram",
            "# TYPE leasehold_server_grace_remaining_seconds gauge",
            "# TYPE leasehold_server_last_sync_success_timestamp_seconds gauge",
            "leasehold_server_state{state=\"ok\"} 1",
            "leasehold_server_context{context=\"production\"} 1",
            "leasehold_server_grants_total{feature=\"tts\"}",
        ] {
            assert!(scrape.contains(want), "{url}: no {want:?} in\n{scrape}");
        }
        every_type_has_help(&scrape);
        promtool_passes(&promtool, dir.path(), &["check", "metrics"], &scrape);
    }
    s.stop().await;
}

/// Every PromQL expression of the dashboard's panels and variables, with Grafana's
/// variables replaced so Prometheus can parse them.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr" | "definition", serde_json::Value::String(q)) => {
                            out.push(q.clone())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out.into_iter()
        .map(|q| {
            let q = q
                .replace("$__rate_interval", "5m")
                .replace("$server", ".*")
                .replace("$node", ".*");
            // A variable's `label_values(METRIC, LABEL)` is Grafana's, not PromQL: keep the metric.
            match q.strip_prefix("label_values(") {
                Some(rest) => rest.split(',').next().unwrap_or_default().to_owned(),
                None => q,
            }
        })
        .collect()
}

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/leasehold.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn the_alert_rules_and_the_dashboard_queries_pass_promtool_and_the_rules_their_tests() {
    let Some(promtool) = promtool() else { return };
    let rules = repo().join("deploy/prometheus");
    promtool_passes(&promtool, &rules, &["check", "rules", "alerts.yml"], "");
    promtool_passes(&promtool, &rules, &["test", "rules", "alerts.test.yml"], "");
    // The dashboard's queries, checked as recording rules (JSON is YAML).
    let recorded: Vec<_> = dashboard_queries(&dashboard())
        .into_iter()
        .enumerate()
        .map(
            |(i, expr)| serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr}),
        )
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": recorded}]});
    std::fs::write(dir.path().join("dashboard.yml"), file.to_string()).unwrap();
    promtool_passes(
        &promtool,
        dir.path(),
        &["check", "rules", "dashboard.yml"],
        "",
    );
}

/// The `leasehold_…` metric names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.match_indices("leasehold_")
        .filter(|(at, _)| {
            // Not the tail of a longer word.
            !text[..*at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn the_dashboard_imports_and_every_metric_it_and_the_alerts_use_is_recorded() {
    let dashboard = dashboard();
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel id twice: {p}");
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
            assert!(
                !p["targets"].as_array().unwrap().is_empty(),
                "{}",
                p["title"]
            );
        }
    }

    let crates = repo().join("crates");
    let recorded: BTreeSet<String> = ["web", "node", "server"]
        .iter()
        .flat_map(|c| names_in_source(&crates.join(c).join("src")))
        .collect();
    let storage_recorded = recorded
        .iter()
        .any(|n| n.starts_with("leasehold_server_storage_"));
    let alerts = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    let used = metric_names(&alerts).into_iter().chain(
        dashboard_queries(&dashboard)
            .into_iter()
            .flat_map(|q| metric_names(&q)),
    );
    let mut unknown = BTreeSet::new();
    for name in used {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| recorded.contains(*b))
            .unwrap_or(name.as_str());
        let awaited = AWAITED.contains(&base) && !storage_recorded;
        if !recorded.contains(base) && !awaited {
            unknown.insert(name.clone());
        }
    }
    assert!(
        unknown.is_empty(),
        "the alerts or the dashboard use metrics the code does not record: {unknown:?}"
    );
}
