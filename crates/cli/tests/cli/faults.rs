//! Faults with the real binaries on loopback: a primary license server killed (SIGKILL) under
//! load and restarted, a server's data directory copied to a second machine, a node that
//! stopped answering. Every wait polls with a generous bound; no timing is asserted beyond
//! those bounds.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command as StdCommand, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leasehold_testkit::process::{free_addr, without_leasehold_env, ChildGuard};
use leasehold_testkit::release_date;
use serde_json::Value;

use crate::support::{leasehold, leasehold_path, Fixture, LicenseServer};

/// The count of `tts` on the production server and of the backup license on the backup.
const COUNT: u64 = 4;
/// What each client process tries to hold (3 × 2 = 6 > 4).
const HOLD: u64 = 2;

/// A `leasehold client ... watch --json` child process; its lines are collected by a reader
/// thread. Killed when dropped.
struct Watcher {
    _child: ChildGuard,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Watcher {
    fn start(primary: &str, backup: &str) -> Self {
        let mut cmd = StdCommand::new(leasehold_path());
        cmd.args(["client", "--servers", primary, "--backup-servers", backup])
            .args(["--product-release", &release_date().to_string()])
            .args(["--refresh", "200ms"])
            .args(["--failover-after", "1s", "--flush-after", "30s"])
            .args(["watch", "--feature", "tts", "--hold", &HOLD.to_string()])
            .arg("--json")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        without_leasehold_env(&mut cmd);
        cmd.env("LEASEHOLD_CLIENT_KEY", leasehold_testkit::CLIENT_KEY);
        let mut child = ChildGuard(cmd.spawn().unwrap());
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("watch printed a non-JSON line ({e}): {line:?}"));
                sink.lock().unwrap().push(v);
            }
        });
        Self {
            _child: child,
            lines,
        }
    }

    fn last(&self) -> Option<Value> {
        self.lines.lock().unwrap().last().cloned()
    }
}

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// The latest line of every client (`None` for a client that printed nothing yet).
fn snapshot(clients: &[Watcher]) -> Vec<Option<Value>> {
    clients.iter().map(Watcher::last).collect()
}

/// Checks one snapshot: no client above its target; per server, the quotas and what is held
/// under them (`min(held, quota)`) sum to at most the count; and all that clients of the
/// primary hold, too (in this test none goes to the backup and comes back). A client's
/// `held` never shrinks in `watch`, so the latest lines of all clients bound any earlier
/// moment's true state from above. Across servers, and on the backup counting what clients
/// brought from the primary, the sum may exceed the count: backup licenses parallel the
/// production ones.
fn check(snap: &[Option<Value>], when: &str) {
    // server → (sum of quotas, sum held under them, sum held)
    let mut per_server: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for line in snap.iter().flatten() {
        let held = num(line, "held");
        let quota = num(line, "quota");
        assert!(
            held <= HOLD,
            "{when}: a client holds more than asked: {snap:?}"
        );
        let server = line["server"].as_str().unwrap().to_owned();
        let entry = per_server.entry(server).or_default();
        entry.0 += quota;
        entry.1 += held.min(quota);
        entry.2 += held;
    }
    for (server, (quotas, leased, held)) in &per_server {
        if server == "none" {
            continue;
        }
        assert!(
            *quotas <= COUNT && *leased <= COUNT,
            "{when}: on the {server}, quotas sum to {quotas} and leased holdings to {leased} \
             > {COUNT}: {snap:?}"
        );
        if server == "primary" {
            assert!(
                *held <= COUNT,
                "{when}: clients of the primary hold {held} > {COUNT}: {snap:?}"
            );
        }
    }
}

/// The server's own view, taken at one moment under its allocator lock: the quotas of its
/// unexpired leases sum to at most the count (what the clients' lines cannot show exactly,
/// since each was printed at its own moment).
fn check_server(server: &LicenseServer, when: &str) {
    let v = server.json(&["clients", "--sort", "id"]);
    let quotas: u64 = v["clients"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["features"].as_array().unwrap().clone())
        .map(|f| num(&f, "quota"))
        .sum();
    assert!(
        quotas <= COUNT,
        "{when}: the server's own leases hold quotas summing to {quotas} > {COUNT}: {v}"
    );
}

/// Samples every ~200 ms, checking each snapshot and each live server, until `done` holds
/// for one (returned), or panics after `timeout`.
fn sample_until(
    clients: &[Watcher],
    servers: &[&LicenseServer],
    timeout: Duration,
    when: &str,
    done: impl Fn(&[Option<Value>]) -> bool,
    logs: impl Fn() -> String,
) -> Vec<Option<Value>> {
    let deadline = Instant::now() + timeout;
    loop {
        let snap = snapshot(clients);
        check(&snap, when);
        servers.iter().for_each(|s| check_server(s, when));
        if done(&snap) {
            return snap;
        }
        assert!(
            Instant::now() < deadline,
            "{when}: not reached within {timeout:?}; last lines: {snap:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Samples for `period`, checking every snapshot and every live server.
fn sample_for(clients: &[Watcher], servers: &[&LicenseServer], period: Duration, when: &str) {
    let end = Instant::now() + period;
    while Instant::now() < end {
        check(&snapshot(clients), when);
        servers.iter().for_each(|s| check_server(s, when));
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn all_on(snap: &[Option<Value>], server: &str) -> bool {
    snap.iter()
        .all(|l| l.as_ref().is_some_and(|l| l["server"] == server))
}

fn total_held(snap: &[Option<Value>]) -> u64 {
    snap.iter().flatten().map(|l| num(l, "held")).sum()
}

/// The usage rows the node holds for a server (`leasehold vendor usage --server GUID`).
fn usage_rows(f: &Fixture, guid: &str) -> Vec<Value> {
    let report = f.json(&["usage", "--server", guid]);
    report["rows"].as_array().unwrap().clone()
}

fn row_key(row: &Value) -> (String, u64) {
    (
        row["instance_id"].as_str().unwrap().to_owned(),
        num(row, "seq"),
    )
}

#[test]
fn killing_the_primary_under_load_moves_clients_to_the_backup_without_over_allocating() {
    let f = Fixture::start();
    let inst = f.create_installation("ACME");
    let prod = f.add_server(&inst, "production");
    let backup_guid = f.add_server(&inst, "backup");
    let lic = f.grant(&prod, "tts", 4, &[]);
    f.grant(&backup_guid, "tts", 4, &["--backs-up", &lic]);

    // Fixed addresses, so the restarted primary is where the clients look for it.
    let (lease_addr, admin_addr) = (free_addr(), free_addr());
    let primary = LicenseServer::start_on(&f, "primary", &prod, &lease_addr, &admin_addr);
    let backup = LicenseServer::start(&f, "backup", &backup_guid);
    primary.sync_now();
    backup.sync_now();
    let before = primary.status();
    assert_eq!(before["state"], "ok", "{before}");
    assert_eq!(before["learning_until"], Value::Null, "{before}");

    let clients: Vec<Watcher> = (0..3)
        .map(|_| Watcher::start(&lease_addr, backup.lease_addr()))
        .collect();
    let logs = || {
        format!(
            "primary log:\n{}\nbackup log:\n{}",
            primary.log_text(),
            backup.log_text()
        )
    };

    // Load: everyone on the primary, the 4 licenses taken, nobody over.
    sample_until(
        &clients,
        &[&primary, &backup],
        Duration::from_secs(20),
        "on the primary",
        |s| all_on(s, "primary") && total_held(s) == COUNT,
        logs,
    );
    sample_for(
        &clients,
        &[&primary, &backup],
        Duration::from_secs(2),
        "on the primary",
    );
    let snap = snapshot(&clients);
    assert_eq!(total_held(&snap), COUNT, "{snap:?}");

    // Usage the node acknowledged before the crash.
    primary.sync_now();
    let acked = usage_rows(&f, &prod);
    let serial = num(&primary.status(), "bundle_serial");

    // Crash: every client moves to the backup, which never grants over its count.
    primary.kill9();
    let logs = || format!("backup log:\n{}", backup.log_text());
    sample_until(
        &clients,
        &[&backup],
        Duration::from_secs(15),
        "after the primary was killed",
        |s| all_on(s, "backup"),
        logs,
    );
    sample_for(
        &clients,
        &[&backup],
        Duration::from_secs(3),
        "on the backup",
    );

    // Restart on the same data directory and addresses: the licenses are there, and so are
    // the leases it granted before the crash (every grant was on disk before it was
    // answered): no relearning, and the clients come back to it.
    let primary = LicenseServer::start_on(&f, "primary", &prod, &lease_addr, &admin_addr);
    let after = primary.status();
    assert_eq!(after["state"], "ok", "{after}");
    assert_eq!(after["bundle_serial"], serial, "{after}");
    assert!(
        after["learning_until"].is_null(),
        "a server restarted on its own data directory restores its leases: {after}"
    );
    sample_until(
        &clients,
        &[&primary, &backup],
        Duration::from_secs(15),
        "after the restart",
        |s| all_on(s, "primary"),
        logs,
    );
    sample_for(
        &clients,
        &[&primary, &backup],
        Duration::from_secs(3),
        "back on the primary",
    );

    // Nothing acknowledged before the crash is lost, nothing is stored twice.
    primary.sync_now();
    let rows = usage_rows(&f, &prod);
    for row in &acked {
        assert!(
            rows.contains(row),
            "{row} acknowledged before the crash is gone: {rows:?}"
        );
    }
    let keys: HashSet<(String, u64)> = rows.iter().map(row_key).collect();
    assert_eq!(
        keys.len(),
        rows.len(),
        "a usage bucket stored twice: {rows:?}"
    );
    check(&snapshot(&clients), "at the end");
}

/// Copies a data directory, without the lock file, as a backup tool or a VM clone would.
pub(crate) fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "server.lock" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub(crate) fn refused_as_in_use(result: &Result<Value, String>) -> bool {
    matches!(result, Err(e) if e.contains("guid_in_use"))
}

#[test]
fn a_copied_data_directory_is_refused_and_a_reassigned_guid_moves_to_a_new_server() {
    let f = Fixture::start();
    let inst = f.create_installation("ACME");
    let guid = f.add_server(&inst, "production");
    f.grant(&guid, "tts", 2, &[]);

    let original = LicenseServer::start(&f, "original", &guid);
    original.sync_now();
    original.kill9();
    copy_dir(&f.path("original"), &f.path("copy"));

    // Both run; each syncs (and may have synced once at start already). The chain tells them
    // apart: whichever presents a token the other superseded is refused.
    let original = LicenseServer::start(&f, "original", &guid);
    let copy = LicenseServer::start(&f, "copy", &guid);
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        outcomes.push(("original", original.try_sync()));
        outcomes.push(("copy", copy.try_sync()));
    }
    let refused: Vec<_> = outcomes
        .iter()
        .filter(|(_, r)| refused_as_in_use(r))
        .collect();
    assert!(
        !refused.is_empty(),
        "two copies synced and neither was refused: {outcomes:?}"
    );
    for (which, result) in &outcomes {
        if let Err(e) = result {
            assert!(
                e.starts_with("error: sync failed: ") && e.contains("guid_in_use"),
                "{which}: {e}"
            );
        }
    }
    assert!(
        refused
            .iter()
            .any(|(_, r)| matches!(r, Err(e) if e.contains("copy"))),
        "the refusal says a copy synced: {outcomes:?}"
    );
    // Once refused, a copy stays refused; the refusal is shown in its status.
    let (loser, winner) = if refused.iter().any(|(w, _)| *w == "copy") {
        (&copy, &original)
    } else {
        (&original, &copy)
    };
    assert!(refused_as_in_use(&loser.try_sync()));
    let status = loser.status();
    assert!(
        status["last_sync_error"]
            .as_str()
            .is_some_and(|e| e.contains("guid_in_use")),
        "{status}"
    );
    winner.try_sync().expect("the other copy keeps syncing");
    let view = f.json(&["server", "show", &guid]);
    assert!(num(&view, "forks_detected") >= 1, "{view}");
    let copied_instance = view["instance_id"].clone();
    assert!(copied_instance.is_string(), "{view}");

    // A replacement machine (a fresh data directory, so a new instance id) is refused until
    // the vendor reassigns the GUID, then syncs; the old instance is refused from then on.
    let third = LicenseServer::start(&f, "third", &guid);
    let e = third.try_sync().unwrap_err();
    assert!(e.contains("guid_in_use") && e.contains("reassign"), "{e}");
    f.json(&["server", "reassign", &guid]);
    let outcome = third
        .try_sync()
        .unwrap_or_else(|e| panic!("after reassign: {e}\n{}", third.log_text()));
    assert!(num(&outcome, "serial") >= 1, "{outcome}");
    assert_eq!(third.status()["state"], "ok");
    assert!(refused_as_in_use(&winner.try_sync()));
    assert!(refused_as_in_use(&loser.try_sync()));
    let view = f.json(&["server", "show", &guid]);
    assert!(view["instance_id"].is_string(), "{view}");
    assert_ne!(view["instance_id"], copied_instance, "{view}");
}

#[test]
fn without_its_node_a_server_reports_the_error_and_keeps_serving() {
    let mut f = Fixture::start();
    let inst = f.create_installation("ACME");
    let guid = f.add_server(&inst, "production");
    f.grant(&guid, "tts", 2, &[]);
    let server = LicenseServer::start(&f, "server", &guid);
    server.sync_now();
    let node_url = f.node().url.clone();
    drop(f.node.take());

    let e = server.try_sync().unwrap_err();
    assert!(
        e.starts_with("error: sync failed: ")
            && e.contains(&node_url)
            && e.contains("cannot reach"),
        "{e}"
    );
    let status = server.status();
    assert_eq!(status["state"], "ok", "{status}");
    assert!(status["last_sync"].is_string(), "{status}");
    assert!(
        status["last_sync_error"]
            .as_str()
            .is_some_and(|e| e.contains(&node_url)),
        "{status}"
    );
    let node = &status["nodes"][0];
    assert_eq!(node["url"], node_url.as_str(), "{status}");
    assert!(node["last_ok"].is_string(), "{status}");
    assert!(node["last_error"].is_string(), "{status}");

    // Licenses are still served.
    let out = leasehold()
        .args(["client", "--servers", server.lease_addr()])
        .args(["--product-release", &release_date().to_string()])
        .args(["acquire", "tts", "--json"])
        .timeout(Duration::from_secs(30))
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["granted"], true, "{v}");
}
