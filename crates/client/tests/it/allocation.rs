//! Licenses follow the calls (DESIGN.md §4.2a): quota idle in one client reaches another
//! that needs it within two refreshes, and with deny-wait a call beyond the local quota asks
//! the server and is refused only when the server has no license to give.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use leasehold_client::Denied;
use leasehold_testkit::blocking::{wait_for, Env};

use crate::harness::{client_builder, feature};

const REFRESH: Duration = Duration::from_secs(1);

#[test]
fn an_idle_quota_in_one_client_reaches_another_that_needs_it_within_two_refreshes() {
    let env = Env::new();
    let p = env.start_server(&env.server_dir("p"), env.installation.production, None);
    let long = Duration::from_secs(30);
    let a = client_builder(&p.addr())
        .refresh(REFRESH)
        .failover_after(long)
        .flush_after(long)
        .build()
        .unwrap();
    assert!(a.wait_connected(Duration::from_secs(10)));
    // A busy client: many short calls, so it wants headroom for many; the server grants it
    // its share of the 10 and keeps the rest in the pool.
    let stop = AtomicBool::new(false);
    let reached = std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    drop(a.acquire("tts"));
                    std::thread::yield_now();
                }
            });
        }
        let deadline = Instant::now() + long;
        let reached = loop {
            let f = feature(&a, "tts");
            if f.quota >= 3 || Instant::now() >= deadline {
                break f;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        stop.store(true, Ordering::Relaxed);
        reached
    });
    assert!(reached.quota >= 3, "A never got a quota: {reached:?}");
    // A goes quiet, its quota idle. C takes every license it can get from the pool.
    let c = client_builder(&p.addr())
        .refresh(REFRESH)
        .failover_after(long)
        .flush_after(long)
        .build()
        .unwrap();
    assert!(c.wait_connected(Duration::from_secs(10)));
    let mut held_by_c = Vec::new();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        match c.acquire("tts") {
            Ok(g) => held_by_c.push(g),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let idle = feature(&a, "tts");
    assert!(idle.quota > 0 && idle.in_use == 0, "{idle:?}");
    // B needs one: the pool has none, A's idle quota must move.
    let b = client_builder(&p.addr())
        .refresh(REFRESH)
        .failover_after(long)
        .flush_after(long)
        .build()
        .unwrap();
    assert!(b.wait_connected(Duration::from_secs(10)));
    let t0 = Instant::now();
    let first = b.acquire("tts");
    let denied_first = first.is_err();
    drop(first);
    // A's next refresh shrinks its grant, the one after acknowledges it; B's next early
    // refresh then gets the license.
    let g = wait_for("B to get a license", Duration::from_secs(20), || {
        b.acquire("tts").ok()
    });
    let took = t0.elapsed();
    assert!(
        took <= REFRESH * 2 + Duration::from_millis(900),
        "B waited {took:?} for a license idle in A's quota (two refreshes are {:?})",
        REFRESH * 2
    );
    drop(g);
    drop(held_by_c);
    drop((a, b, c));
    // B was refused at first (the pool was empty): the license came from A's idle quota.
    assert!(
        denied_first,
        "B got a license at once: the pool was not empty"
    );
    env.stop_server(p);
}

#[test]
fn deny_wait_asks_the_server_and_is_refused_only_when_it_has_none() {
    let env = Env::new();
    let p = env.start_server(&env.server_dir("p"), env.installation.production, None);
    let long = Duration::from_secs(30);
    let wait = Duration::from_secs(2);
    // Regular refreshes far apart: every license beyond the first quota comes from asking.
    let a = client_builder(&p.addr())
        .refresh(long)
        .failover_after(long)
        .flush_after(Duration::from_secs(60))
        .deny_wait(wait)
        .build()
        .unwrap();
    assert_eq!(a.deny_wait(), wait);
    assert!(a.wait_connected(Duration::from_secs(10)));
    let mut held = Vec::new();
    let mut waited = 0;
    for i in 0..10 {
        let g = a
            .acquire("tts")
            .unwrap_or_else(|d| panic!("license {i} denied ({d}) with 10 licensed"));
        waited += usize::from(g.waited());
        held.push(g);
    }
    assert!(waited >= 5, "only {waited} of 10 asked the server");
    assert_eq!(feature(&a, "tts").waited, waited as u64);
    // The server has none left: the answer says so, long before the deny-wait is over.
    let t0 = Instant::now();
    assert_eq!(a.acquire("tts").unwrap_err(), Denied::QuotaExhausted);
    let took = t0.elapsed();
    assert!(took < wait, "a denial waited {took:?}, the whole deny-wait");

    // Another client asking is refused too, until A lets one go: then its ask is granted.
    let b = client_builder(&p.addr())
        .refresh(long)
        .failover_after(long)
        .flush_after(Duration::from_secs(60))
        .deny_wait(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(b.wait_connected(Duration::from_secs(10)));
    assert_eq!(b.acquire("tts").unwrap_err(), Denied::QuotaExhausted);
    drop(held.pop());
    let g = wait_for("B's ask to be granted", Duration::from_secs(10), || {
        b.acquire("tts").ok()
    });
    assert!(g.waited());
    // Zero turns deny-wait off: a full cache is refused at once, from the cache.
    b.set_deny_wait(Duration::ZERO).unwrap();
    let t0 = Instant::now();
    assert_eq!(b.acquire("tts").unwrap_err(), Denied::QuotaExhausted);
    assert!(t0.elapsed() < Duration::from_millis(100));
    assert!(b.set_deny_wait(Duration::from_secs(61)).is_err());
    drop(g);
    drop(held);
    drop((a, b));
    env.stop_server(p);
}
