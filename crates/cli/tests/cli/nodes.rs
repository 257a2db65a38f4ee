//! Two `leasehold node serve` processes on one PostgreSQL database (a schema of its own; see
//! `leasehold_testkit::db`), as a vendor runs them behind a load balancer, and a real license
//! server given both: it syncs through either, survives one being killed, and a copy of its
//! data directory is refused through both.

use leasehold_testkit::db::{postgres_schema, postgres_server};
use leasehold_testkit::{NODE_TOKEN, SERVER_TOKEN};
use serde_json::Value;

use crate::faults::{copy_dir, refused_as_in_use};
use crate::support::{keygen, leasehold, LicenseServer, Node};

fn vendor(node: &Node, args: &[&str]) -> Value {
    let out = leasehold()
        .args(["vendor", "--node", &node.url, "--token", NODE_TOKEN])
        .args(args)
        .arg("--json")
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
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
    let mut args = vec![
        "--admin-token",
        SERVER_TOKEN,
        "--vendor-key",
        key,
        "--guid",
        guid,
    ];
    for n in nodes {
        args.extend(["--node", n.url.as_str()]);
    }
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
    let key = keygen(&dir.path().join("vendor.pem"));
    let a = Node::start_db(dir.path(), &key.path, &db, "node-a");
    let b = Node::start_db(dir.path(), &key.path, &db, "node-b");

    // Provisioned through one node, seen through the other.
    let inst = vendor(&a, &["installation", "create", "--name", "ACME"]);
    let inst = inst["id"].as_str().unwrap().to_owned();
    let server = vendor(
        &b,
        &[
            "server",
            "add",
            "--installation",
            &inst,
            "--context",
            "production",
        ],
    );
    let guid = server["guid"].as_str().unwrap().to_owned();
    vendor(
        &a,
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
    let seen_a = vendor(&a, &["server", "show", &guid]);
    let seen_b = vendor(&b, &["server", "show", &guid]);
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
        let view = vendor(node, &["server", "show", &guid]);
        assert!(num(&view, "forks_detected") >= 1, "{view}");
    }
}
