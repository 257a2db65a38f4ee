//! A server restart does not let two clients together hold more than the count, even while
//! one of them cannot reach the restarted server and keeps using its lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use leasehold_client::Denied;
use leasehold_testkit::blocking::{wait_for, Env};
use leasehold_testkit::proxy::ProxyMode;

use crate::harness::{client_builder, feature, hammer, HeldCounter};

#[test]
fn a_server_restart_does_not_let_two_clients_exceed_the_count() {
    let env = Env::new();
    let pdir = env.server_dir("p");
    let p = env.start_server(&pdir, env.installation.production, None);
    let paddr = p.lease_addr;
    // Client A reaches the server through a proxy that will cut it off; B goes direct.
    let proxy = env.proxy(paddr);
    let a = client_builder(&proxy.addr())
        .flush_after(Duration::from_secs(4))
        .build()
        .unwrap();
    let b = client_builder(&p.addr())
        .flush_after(Duration::from_secs(30))
        .build()
        .unwrap();
    assert!(a.wait_connected(Duration::from_secs(10)));
    assert!(b.wait_connected(Duration::from_secs(10)));

    let stop = AtomicBool::new(false);
    let held = HeldCounter::default();
    let (ha, hb) = (HeldCounter::default(), HeldCounter::default());
    let mut p = Some(p);
    let mut learning = None;
    std::thread::scope(|s| {
        let ta = s.spawn(|| hammer(&a, 4, &stop, &held, &ha));
        let tb = s.spawn(|| hammer(&b, 4, &stop, &held, &hb));
        wait_for(
            "both clients to hold licenses",
            Duration::from_secs(10),
            || (ha.max() > 0 && hb.max() > 0).then_some(()),
        );
        std::thread::sleep(Duration::from_millis(500));

        // A is cut off but keeps its lease (valid by its own clock); the server restarts.
        proxy.set(ProxyMode::Down);
        env.stop_server(p.take().unwrap());
        p = Some(env.start_server(&pdir, env.installation.production, Some(paddr)));
        learning = Some(p.as_ref().unwrap().status().learning_until);
        // The restarted server restored A's reservation: B keeps asking for more while A
        // still uses its old quota and gets only what A does not hold; A then flushes.
        wait_for("A to flush", Duration::from_secs(15), || {
            a.status().flushed.then_some(())
        });
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        ta.join().unwrap();
        tb.join().unwrap();
    });
    assert!(
        held.max() <= 10,
        "{} held at once across both clients",
        held.max()
    );
    assert_eq!(
        learning,
        Some(None),
        "restarted on its own data directory, the server restores its leases"
    );
    assert_eq!(a.acquire("tts").unwrap_err(), Denied::Flushed);

    // Once A's restored reservation has ended (one lease length plus margin after the
    // restart), B may have all.
    let p = p.unwrap();
    env.advance(131);
    let mut guards = Vec::new();
    wait_for("B to hold the whole count", Duration::from_secs(20), || {
        while let Ok(g) = b.acquire("tts") {
            guards.push(g);
            assert!(guards.len() <= 10);
        }
        (guards.len() == 10).then_some(())
    });
    assert_eq!(feature(&b, "tts").quota, 10);
    drop(guards);
    drop((a, b));
    env.stop_server(p);
}
