//! Many threads acquiring and releasing at once never hold more than the quota allows, on
//! one client or across two.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leasehold_client::Denied;
use leasehold_testkit::blocking::{wait_for, Env};

use crate::harness::{client_builder, feature, hammer, HeldCounter};

#[test]
fn many_threads_on_two_clients_never_exceed_the_quota_or_the_count() {
    let env = Env::new();
    let server = env.start_server(&env.server_dir("p"), env.installation.production, None);
    let a = client_builder(&server.addr()).build().unwrap();
    let b = client_builder(&server.addr()).build().unwrap();
    assert!(a.wait_connected(Duration::from_secs(10)));
    assert!(b.wait_connected(Duration::from_secs(10)));

    let stop = Arc::new(AtomicBool::new(false));
    let held = HeldCounter::default();
    let (held_a, held_b) = (HeldCounter::default(), HeldCounter::default());
    let ((grants_a, flushed_a), (grants_b, flushed_b)) = std::thread::scope(|s| {
        let ga = s.spawn(|| hammer(&a, 8, &stop, &held, &held_a));
        let gb = s.spawn(|| hammer(&b, 8, &stop, &held, &held_b));
        // Let the quotas settle through several refreshes, watching the cache meanwhile.
        for _ in 0..30 {
            for c in [&a, &b] {
                let f = feature(c, "tts");
                assert!(f.quota <= 10, "{f:?}");
                assert!(f.in_use <= 10, "{f:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        (ga.join().unwrap(), gb.join().unwrap())
    });
    assert!(grants_a > 0 && grants_b > 0, "{grants_a} {grants_b}");
    assert_eq!((flushed_a, flushed_b), (0, 0));
    assert!(
        held.max() <= 10,
        "held {} at once across both clients",
        held.max()
    );
    assert!(held_a.max() <= 10 && held_b.max() <= 10);
    assert!(held.max() >= 2, "the test exercised concurrency");
    // Everything was given back.
    assert_eq!(feature(&a, "tts").in_use, 0);
    assert_eq!(feature(&b, "tts").in_use, 0);
    let s = a.status();
    assert_eq!(s.features[0].acquired, grants_a);

    // The server saw both and never reserved more than the count.
    let st = server.status();
    let tts = st
        .licenses
        .iter()
        .find(|l| l.feature.as_str() == "tts")
        .unwrap();
    assert!(tts.reserved <= 10, "{tts:?}");
    drop(a);
    drop(b);
    // Dropping a client gives its quota back.
    wait_for(
        "clients to give their leases back",
        Duration::from_secs(5),
        || server.clients().is_empty().then_some(()),
    );
    env.stop_server(server);
}

#[test]
fn one_client_holds_at_most_its_quota() {
    let env = Env::new();
    let server = env.start_server(&env.server_dir("p"), env.installation.production, None);
    let c = client_builder(&server.addr()).build().unwrap();
    assert!(c.wait_connected(Duration::from_secs(10)));
    // Grab until the whole count is held; the cache only ever grows to the server's count.
    let mut guards = Vec::new();
    wait_for("all 10 licenses held", Duration::from_secs(20), || {
        while let Ok(g) = c.acquire("tts") {
            guards.push(g);
            assert!(guards.len() <= 10);
        }
        (guards.len() == 10).then_some(())
    });
    for _ in 0..20 {
        assert_eq!(c.acquire("tts").unwrap_err(), Denied::QuotaExhausted);
        std::thread::sleep(Duration::from_millis(20));
    }
    let f = feature(&c, "tts");
    assert_eq!((f.quota, f.in_use, f.held_without_lease), (10, 10, 0));
    assert!(f.denied >= 20);

    // A guard turned into a raw handle stays held until released through the client.
    let raw = guards.pop().unwrap().into_raw();
    guards.clear();
    assert_eq!(feature(&c, "tts").in_use, 1);
    assert!(c.release_raw(raw));
    assert!(!c.release_raw(raw), "nothing left to release");
    assert_eq!(feature(&c, "tts").in_use, 0);
    drop(guards);
    drop(c);
    env.stop_server(server);
}
