//! Vendor key rotation end to end with the real binaries: a new key made with
//! `leasehold vendor keygen`, servers told to trust old and new, the node switched to the
//! new key, bundles naming the key that signed them; a server that trusts only the old key
//! refuses the new bundles and keeps serving on its old one until it is told the new key.

use crate::support::{keygen, Fixture, LicenseServer, Node};
use leasehold_testkit::SERVER_TOKEN;

fn server(f: &Fixture, name: &str, guid: &str, keys: &[&str]) -> LicenseServer {
    let mut args = vec![
        "--admin-token",
        SERVER_TOKEN,
        "--node",
        &f.node().url,
        "--guid",
        guid,
    ];
    for k in keys {
        args.extend(["--vendor-key", k]);
    }
    let (cmd, log) = LicenseServer::command(&f.path(name), "127.0.0.1:0", "127.0.0.1:0", &args);
    LicenseServer::spawn(cmd, log, SERVER_TOKEN)
}

#[test]
fn a_vendor_key_rotation_reaches_servers_that_trust_the_new_key_and_no_other() {
    let mut f = Fixture::start();
    let old = f.key.public_key.clone();
    let new = keygen(&f.path("vendor-2.pem"));
    assert_ne!(new.kid, f.key.kid);
    let mut guids = Vec::new();
    for name in ["ready", "late"] {
        let inst = f.create_installation(name);
        let guid = f.add_server(&inst, "production");
        f.grant(&guid, "tts", 3, &[]);
        guids.push(guid);
    }
    // Step 1: servers are told the new key before the node uses it.
    let ready = server(&f, "ready", &guids[0], &[&old, &new.public_key]);
    let late = server(&f, "late", &guids[1], &[&old]);
    for s in [&ready, &late] {
        s.sync_now();
        let st = s.status();
        assert_eq!(
            st["bundle_key_id"].as_str(),
            Some(f.key.kid.as_str()),
            "{st}"
        );
    }

    // Step 2: the node switches to the new key (same database).
    drop(f.node.take());
    f.node = Some(Node::start(f.dir.path(), &new.path));
    let ready = {
        drop(ready);
        server(&f, "ready", &guids[0], &[&old, &new.public_key])
    };
    let late = {
        drop(late);
        server(&f, "late", &guids[1], &[&old])
    };
    ready.sync_now();
    let st = ready.status();
    assert_eq!(st["bundle_key_id"].as_str(), Some(new.kid.as_str()), "{st}");
    assert_eq!(st["state"], "ok", "{st}");

    // A server not told the new key refuses the bundle, says why, and keeps its old one.
    let e = late.try_sync().unwrap_err();
    assert!(
        e.contains("bundle rejected") && e.contains("previous one is kept"),
        "{e}"
    );
    let st = late.status();
    assert_eq!(st["state"], "ok", "{st}");
    assert_eq!(
        st["bundle_key_id"].as_str(),
        Some(f.key.kid.as_str()),
        "{st}"
    );

    // Told the new key (it may drop the old one now), it syncs again.
    drop(late);
    let late = server(&f, "late", &guids[1], &[&new.public_key]);
    late.sync_now();
    let st = late.status();
    assert_eq!(st["bundle_key_id"].as_str(), Some(new.kid.as_str()), "{st}");
}
