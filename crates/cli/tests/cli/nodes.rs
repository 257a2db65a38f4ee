//! Two `leasehold node serve` processes on one PostgreSQL database (a schema of its own; see
//! `leasehold_testkit::db`), as a vendor runs them behind a load balancer, and a real license
//! server given both: it syncs through either, survives one being killed, and a copy of its
//! data directory is refused through both.

use std::time::Duration;

use leasehold_api_client::{parse_base_url, NodeClient};
use leasehold_proto::ServerGuid;
use leasehold_testkit::blocking::wait_for;
use leasehold_testkit::db::{postgres_schema, postgres_server};
use leasehold_testkit::node::{usage_bucket, FakeServer};
use leasehold_testkit::proxy::{Proxy, ProxyMode};
use leasehold_testkit::SERVER_TOKEN;
use serde_json::Value;

use crate::faults::{copy_dir, refused_as_in_use};
use crate::support::{bootstrap_admin, keygen, leasehold, LicenseServer, Node, VendorKey};

/// `leasehold vendor --node URL --token TOKEN ARGS --json`: its one JSON object.
fn vendor(node: &Node, token: &str, args: &[&str]) -> Value {
    let out = leasehold()
        .args(["vendor", "--node", &node.url, "--token", token])
        .args(args)
        .arg("--json")
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

/// A vendor key and two `node serve` processes on database `db`, and the token of the
/// first admin account (made through node A; the nodes share it, as they share the database).
fn two_nodes(dir: &std::path::Path, db: &str) -> (VendorKey, Node, Node, String) {
    let key = keygen(&dir.join("vendor.pem"));
    let a = Node::start_db(dir, &key.path, db, "node-a");
    let b = Node::start_db(dir, &key.path, db, "node-b");
    let token = bootstrap_admin(&a.url, None);
    (key, a, b, token)
}

/// A new installation (made through `inst_via`) with a production server (added through
/// `server_via`); its GUID.
fn production_server(inst_via: &Node, server_via: &Node, token: &str) -> String {
    let inst = vendor(
        inst_via,
        token,
        &["installation", "create", "--name", "ACME"],
    );
    let inst = inst["id"].as_str().unwrap();
    let server = vendor(
        server_via,
        token,
        &[
            "server",
            "add",
            "--installation",
            inst,
            "--context",
            "production",
        ],
    );
    server["guid"].as_str().unwrap().to_owned()
}

fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn server_on(
    dir: &std::path::Path,
    name: &str,
    key: &str,
    guid: &str,
    nodes: &[&Node],
) -> LicenseServer {
    let urls: Vec<&str> = nodes.iter().map(|n| n.url.as_str()).collect();
    server_via(dir, name, key, guid, &urls, &[])
}

/// A license server syncing with the nodes at `urls`, with extra `run` arguments.
fn server_via(
    dir: &std::path::Path,
    name: &str,
    key: &str,
    guid: &str,
    urls: &[&str],
    extra: &[&str],
) -> LicenseServer {
    let mut args = vec![
        "--admin-token",
        SERVER_TOKEN,
        "--vendor-key",
        key,
        "--guid",
        guid,
    ];
    for url in urls {
        args.extend(["--node", url]);
    }
    args.extend(extra);
    let (cmd, log) = LicenseServer::command(&dir.join(name), "127.0.0.1:0", "127.0.0.1:0", &args);
    LicenseServer::spawn(cmd, log, SERVER_TOKEN)
}

#[test]
fn a_server_syncs_through_either_of_two_nodes_on_one_database_and_a_copy_is_refused_through_both() {
    let Some(pg) = postgres_server() else {
        return;
    };
    let db = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(postgres_schema(&pg));
    let dir = tempfile::tempdir().unwrap();
    let (key, a, b, token) = two_nodes(dir.path(), &db);

    // Provisioned through one node, seen through the other.
    let guid = production_server(&a, &b, &token);
    vendor(
        &a,
        &token,
        &[
            "license",
            "grant",
            "--server",
            &guid,
            "--feature",
            "tts",
            "--count",
            "5",
            "--maintenance",
            "2030-12-31",
        ],
    );

    let original = server_on(dir.path(), "original", &key.public_key, &guid, &[&a, &b]);
    // Random node order: within 40 syncs both answer (all on one: 2^-39).
    let mut via = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let o = original.sync_now();
        via.insert(o["node"].as_str().unwrap().to_owned());
        if via.len() == 2 {
            break;
        }
    }
    assert_eq!(via.len(), 2, "one node answered every sync: {via:?}");
    let seen_a = vendor(&a, &token, &["server", "show", &guid]);
    let seen_b = vendor(&b, &token, &["server", "show", &guid]);
    assert_eq!(seen_a, seen_b, "the two nodes disagree");
    assert_eq!(num(&seen_a, "forks_detected"), 0, "{seen_a}");
    let serial = num(&seen_a, "bundle_serial");

    // One node killed: the server's next attempts go through the other, no fork is seen and
    // the chain advances by one per sync.
    drop(a);
    for i in 1..=3 {
        let o = original.try_sync().expect("the other node answers");
        assert_eq!(o["node"].as_str(), Some(b.url.as_str()), "{o}");
        assert_eq!(o["serial"].as_u64(), Some(serial + i), "{o}");
    }
    let a = Node::start_db(dir.path(), &key.path, &db, "node-a2");

    // A copy of the data directory (with the lock file left out, as a VM clone) syncs
    // through both nodes: refused, through either.
    original.kill9();
    copy_dir(&dir.path().join("original"), &dir.path().join("copy"));
    let original = server_on(dir.path(), "original", &key.public_key, &guid, &[&a, &b]);
    let copy = server_on(dir.path(), "copy", &key.public_key, &guid, &[&a, &b]);
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(("original", original.try_sync()));
        outcomes.push(("copy", copy.try_sync()));
    }
    let refused = outcomes
        .iter()
        .filter(|(_, r)| refused_as_in_use(r))
        .count();
    assert!(
        refused > 0,
        "two copies synced and neither was refused: {outcomes:?}"
    );
    let (loser, winner) = if refused_as_in_use(&copy.try_sync()) {
        (&copy, &original)
    } else {
        (&original, &copy)
    };
    // Refused again and again, whichever node it reaches; the other keeps syncing.
    for _ in 0..4 {
        assert!(refused_as_in_use(&loser.try_sync()));
    }
    winner.try_sync().expect("the other copy keeps syncing");
    for node in [&a, &b] {
        let view = vendor(node, &token, &["server", "show", &guid]);
        assert!(num(&view, "forks_detected") >= 1, "{view}");
    }
}

#[test]
fn a_node_killed_after_storing_a_sync_but_before_answering_leaves_the_usage_counted_once() {
    let Some(pg) = postgres_server() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(postgres_schema(&pg));
    let dir = tempfile::tempdir().unwrap();
    let (key, a, b, token) = two_nodes(dir.path(), &db);
    let guid = production_server(&a, &a, &token);
    // Node A behind a proxy, so the test decides when its answers stop.
    let addr = |n: &Node| n.url.trim_start_matches("http://").parse().unwrap();
    let to_a = rt.block_on(Proxy::start(addr(&a)));
    let client = |url: &str| NodeClient::new(parse_base_url("node", url).unwrap(), None).unwrap();
    let via_a = client(&format!("http://{}", to_a.addr()));
    let via_b = client(&b.url);
    let trusted = trusted_keys_of(&key.public_key);
    let mut server = FakeServer::new(ServerGuid::parse(&guid).unwrap(), 1);
    let accept = |server: &mut FakeServer, env: leasehold_proto::SignedEnvelope| {
        let bundle = env.open_bundle(&trusted, server.guid, None).unwrap();
        server.accept(&bundle);
        bundle
    };
    let first = rt.block_on(via_a.sync(&server.upload(vec![]))).unwrap();
    accept(&mut server, first);

    // An upload with usage reaches node A, which stores it; the answer never comes back,
    // and A is killed before it could answer.
    let upload = server.upload(vec![
        usage_bucket(1, "tts", 0, 4),
        usage_bucket(2, "tts", 1, 6),
    ]);
    to_a.set(ProxyMode::Freeze);
    let lost = rt.spawn({
        let upload = upload.clone();
        async move { via_a.sync(&upload).await }
    });
    let stored = wait_for("node A to store the sync", Duration::from_secs(20), || {
        let v = vendor(&b, &token, &["server", "show", &guid]);
        (num(&v, "acked_usage_seq") == 2).then_some(v)
    });
    assert_eq!(num(&stored, "bundle_serial"), 2, "{stored}");
    drop(a);
    lost.abort();

    // The server's next attempt goes to node B with the same token and the same usage:
    // served (the chain takes the unanswered token as a retry, not a fork), and the usage is
    // stored once.
    let env = rt.block_on(via_b.sync(&upload)).expect("node B answers");
    let bundle = accept(&mut server, env);
    assert_eq!((bundle.serial, bundle.acked_usage_seq), (3, 2));
    let view = vendor(&b, &token, &["server", "show", &guid]);
    assert_eq!(num(&view, "forks_detected"), 0, "{view}");
    let rows = vendor(&b, &token, &["usage", "--server", &guid]);
    let rows = rows["rows"].as_array().unwrap().clone();
    let seqs: Vec<u64> = rows.iter().map(|r| num(r, "seq")).collect();
    assert_eq!(seqs, vec![1, 2], "{rows:?}");
    let grants: u64 = rows.iter().map(|r| num(r, "grants")).sum();
    assert_eq!(grants, 30, "{rows:?}");
    // And the chain goes on through B.
    let env = rt
        .block_on(via_b.sync(&server.upload(vec![usage_bucket(3, "tts", 2, 1)])))
        .expect("the next sync");
    assert_eq!(accept(&mut server, env).acked_usage_seq, 3);
}

/// The trusted key set of a vendor public key as `vendor keygen` printed it.
fn trusted_keys_of(public_key: &str) -> leasehold_proto::TrustedKeys {
    leasehold_proto::TrustedKeys::new()
        .with(leasehold_proto::envelope::parse_public_key(public_key).unwrap())
}
