//! With no server at all the cache flushes: new requests are denied, held licenses stay
//! held, and service resumes when a server answers.

use std::time::{Duration, Instant};

use leasehold_client::{Denied, ServerRole};
use leasehold_testkit::blocking::{wait_for, Env};
use leasehold_testkit::proxy::ProxyMode;

use crate::harness::{client_builder, feature};

#[test]
fn all_servers_gone_flushes_the_cache_until_one_answers() {
    let env = Env::new();
    let p = env.start_server(&env.server_dir("p"), env.installation.production, None);
    let b = env.start_server(&env.server_dir("b"), env.installation.backup, None);
    let (pp, bp) = (env.proxy(p.lease_addr), env.proxy(b.lease_addr));
    let flush_after = Duration::from_millis(1500);
    let c = client_builder(&format!("{};{}", pp.addr(), bp.addr()))
        .flush_after(flush_after)
        .build()
        .unwrap();
    assert!(c.wait_connected(Duration::from_secs(10)));
    let g1 = wait_for("a license", Duration::from_secs(10), || {
        c.acquire("tts").ok()
    });
    let g2 = wait_for("a second license", Duration::from_secs(10), || {
        c.acquire("tts").ok()
    });

    pp.set(ProxyMode::Down);
    bp.set(ProxyMode::Down);
    let t0 = Instant::now();
    wait_for("the flush", Duration::from_secs(10), || {
        (c.acquire("tts").err() == Some(Denied::Flushed)).then_some(())
    });
    let took = t0.elapsed();
    assert!(took < flush_after * 3, "flushed after {took:?}");
    let s = c.status();
    assert!(s.flushed);
    assert_eq!(s.server, ServerRole::None);
    assert_eq!(s.time_to_flush_ms, Some(0));
    assert!(s.last_error.is_some());
    let f = feature(&c, "tts");
    assert_eq!((f.in_use, f.held_without_lease), (2, 2), "{f:?}");
    // Held licenses can still be given back; new ones stay denied.
    drop(g1);
    assert_eq!(feature(&c, "tts").in_use, 1);
    assert_eq!(c.acquire("tts").unwrap_err(), Denied::Flushed);

    // The primary answers again: the held license is reported, service resumes.
    pp.set(ProxyMode::Pass);
    let g3 = wait_for("service to resume", Duration::from_secs(10), || {
        c.acquire("tts").ok()
    });
    let s = c.status();
    assert!(!s.flushed);
    assert_eq!(s.server, ServerRole::Primary);
    let f = feature(&c, "tts");
    assert_eq!((f.in_use, f.held_without_lease), (2, 0), "{f:?}");
    wait_for("the server to see both", Duration::from_secs(5), || {
        p.clients()
            .iter()
            .find(|x| &x.client == c.client_id())
            .filter(|x| x.features[0].in_use == 2)
            .map(|_| ())
    });
    drop((g2, g3));
    drop(c);
    env.stop_server(p);
    env.stop_server(b);
}

#[test]
fn a_held_license_survives_the_flush_and_is_reported_on_reconnect() {
    let env = Env::new();
    let p = env.start_server(&env.server_dir("p"), env.installation.production, None);
    let pp = env.proxy(p.lease_addr);
    let c = client_builder(&pp.addr()).build().unwrap();
    assert!(c.wait_connected(Duration::from_secs(10)));
    let g = wait_for("a license", Duration::from_secs(10), || {
        c.acquire("tts").ok()
    });
    pp.set(ProxyMode::Down);
    wait_for("the flush", Duration::from_secs(10), || {
        c.status().flushed.then_some(())
    });
    assert_eq!(feature(&c, "tts").held_without_lease, 1);
    // The server hears of it again when it can.
    pp.set(ProxyMode::Pass);
    wait_for("the reconnect", Duration::from_secs(10), || {
        (!c.status().flushed).then_some(())
    });
    let me = p
        .clients()
        .into_iter()
        .find(|x| &x.client == c.client_id())
        .unwrap();
    assert_eq!(me.features[0].in_use, 1);
    drop(g);
    drop(c);
    env.stop_server(p);
}
