//! Failover to the backup when the primary stops or turns slow, and back when it answers.

use std::time::{Duration, Instant};

use leasehold_client::{Client, ServerRole};
use leasehold_testkit::blocking::{wait_for, BlockingServer, Env};
use leasehold_testkit::proxy::ProxyMode;

use crate::harness::{client_builder, feature};

const REFRESH: Duration = Duration::from_millis(100);
const FAILOVER_AFTER: Duration = Duration::from_millis(500);

/// The bound asserted on the time to fail over: the expected value times three.
fn failover_bound() -> Duration {
    (FAILOVER_AFTER + REFRESH) * 3
}

fn on(client: &Client, role: ServerRole) -> Option<()> {
    (client.status().server == role).then_some(())
}

fn gone_from(server: &BlockingServer, client: &Client) -> Option<()> {
    (!server
        .clients()
        .iter()
        .any(|c| &c.client == client.client_id()))
    .then_some(())
}

#[test]
fn a_stopped_primary_sends_the_client_to_the_backup_and_back() {
    let env = Env::new();
    let pdir = env.server_dir("p");
    let p = env.start_server(&pdir, env.installation.production, None);
    let b = env.start_server(&env.server_dir("b"), env.installation.backup, None);
    let paddr = p.lease_addr;
    let c = client_builder(&format!("{};{}", p.addr(), b.addr()))
        .refresh(REFRESH)
        .failover_after(FAILOVER_AFTER)
        .flush_after(Duration::from_secs(30))
        .build()
        .unwrap();
    assert!(c.wait_connected(Duration::from_secs(10)));
    let g1 = wait_for("a license", Duration::from_secs(10), || {
        c.acquire("tts").ok()
    });
    let g2 = wait_for("a second license", Duration::from_secs(10), || {
        c.acquire("tts").ok()
    });
    assert_eq!(c.status().server, ServerRole::Primary);
    assert!(
        gone_from(&b, &c).is_some(),
        "a client not in failover does not talk to the backup"
    );

    env.stop_server(p);
    let t0 = Instant::now();
    wait_for("the backup", Duration::from_secs(10), || {
        on(&c, ServerRole::Backup)
    });
    let took = t0.elapsed();
    assert!(took < failover_bound(), "failover took {took:?}");
    let s = c.status();
    assert!(s.failover);
    assert_eq!(s.server_context.as_deref(), Some("backup"));
    assert_eq!(
        s.server_addr.as_deref(),
        Some(format!("http://{}", b.addr()).as_str())
    );
    assert_eq!(
        s.server_guid.as_deref(),
        Some(env.installation.backup.to_string().as_str())
    );
    // Held licenses are untouched and covered by the backup's grant.
    let f = feature(&c, "tts");
    assert_eq!((f.in_use, f.held_without_lease), (2, 0), "{f:?}");
    let seen = b.clients();
    let me = seen.iter().find(|x| &x.client == c.client_id()).unwrap();
    assert!(me.failover);
    assert_eq!(me.features[0].in_use, 2);
    let g3 = wait_for("a license from the backup", Duration::from_secs(10), || {
        c.acquire("tts").ok()
    });

    // The primary comes back on the same address and data directory. It restored its leases
    // (no relearning), so the client returns at once and gives the backup its grant back.
    let p = env.start_server(&pdir, env.installation.production, Some(paddr));
    wait_for("the primary again", Duration::from_secs(10), || {
        on(&c, ServerRole::Primary)
    });
    let s = c.status();
    assert!(!s.failover);
    assert_eq!(s.server_context.as_deref(), Some("production"));
    wait_for("the backup to be told", Duration::from_secs(5), || {
        gone_from(&b, &c)
    });
    let f = feature(&c, "tts");
    assert_eq!((f.in_use, f.held_without_lease), (3, 0), "{f:?}");
    drop((g1, g2, g3));
    drop(c);
    env.stop_server(p);
    env.stop_server(b);
}

#[test]
fn a_slow_primary_sends_the_client_to_the_backup_and_back() {
    let env = Env::new();
    let p = env.start_server(&env.server_dir("p"), env.installation.production, None);
    let b = env.start_server(&env.server_dir("b"), env.installation.backup, None);
    let proxy = env.proxy(p.lease_addr);
    let c = client_builder(&proxy.addr())
        .backup_servers(&b.addr())
        .refresh(REFRESH)
        .failover_after(FAILOVER_AFTER)
        .flush_after(Duration::from_secs(30))
        .build()
        .unwrap();
    assert!(c.wait_connected(Duration::from_secs(10)));
    let g = wait_for("a license", Duration::from_secs(10), || {
        c.acquire("tts").ok()
    });
    assert_eq!(c.status().server, ServerRole::Primary);

    // Answers now take 3 s, far beyond the request timeout (200 ms by default here).
    proxy.set(ProxyMode::Delay(Duration::from_secs(3)));
    let t0 = Instant::now();
    wait_for("the backup", Duration::from_secs(10), || {
        on(&c, ServerRole::Backup)
    });
    let took = t0.elapsed();
    // The request in flight when the primary turned slow may time out first.
    assert!(
        took < failover_bound() + Duration::from_millis(200),
        "failover took {took:?}"
    );
    assert_eq!(feature(&c, "tts").in_use, 1);
    assert!(c.status().last_error.is_some());

    proxy.set(ProxyMode::Pass);
    wait_for("the primary again", Duration::from_secs(10), || {
        on(&c, ServerRole::Primary)
    });
    wait_for("the backup to be told", Duration::from_secs(5), || {
        gone_from(&b, &c)
    });
    assert_eq!(feature(&c, "tts").in_use, 1);
    drop(g);
    drop(c);
    env.stop_server(p);
    env.stop_server(b);
}

#[test]
fn slow_is_not_dead_six_second_round_trips_stay_on_the_primary_and_a_frozen_one_is_left() {
    // The seed's words, with the client's default timings: up to 10 s of delay with the
    // primary is allowed before the backup is used.
    let env = Env::new();
    let p = env.start_server(&env.server_dir("p"), env.installation.production, None);
    let b = env.start_server(&env.server_dir("b"), env.installation.backup, None);
    let proxy = env.proxy(p.lease_addr);
    let c = leasehold_client::Client::builder()
        .servers(&proxy.addr())
        .backup_servers(&b.addr())
        .client_key(leasehold_testkit::CLIENT_KEY)
        .product_release(leasehold_testkit::release_date())
        .feature("tts")
        .build()
        .unwrap();
    assert!(c.wait_connected(Duration::from_secs(10)));
    let g = wait_for("a license", Duration::from_secs(10), || {
        c.acquire("tts").ok()
    });

    // A congested link: every answer takes 6 s. For longer than failover_after the client
    // stays on the primary, and its lease stays valid.
    proxy.set(ProxyMode::Delay(Duration::from_secs(6)));
    let slow_until = Instant::now() + Duration::from_secs(14);
    while Instant::now() < slow_until {
        let s = c.status();
        assert_eq!(
            s.server,
            ServerRole::Primary,
            "moved off a slow primary: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.status().time_to_flush_ms.unwrap() > 100_000);

    // The primary hangs: no answer at all. The client leaves it once 10 s passed since its
    // last answer, and is on the backup within 12 s of it.
    proxy.set(ProxyMode::Freeze);
    let on_backup = wait_for("the backup", Duration::from_secs(30), || {
        on(&c, ServerRole::Backup).map(|()| Instant::now())
    });
    let last = proxy.last_answer().unwrap();
    let after = on_backup.duration_since(last);
    eprintln!("on the backup {after:?} after the primary's last answer");
    assert!(
        after >= Duration::from_millis(9_900),
        "left the primary {after:?} after its last answer, before 10 s"
    );
    assert!(
        after <= Duration::from_millis(12_000),
        "on the backup {after:?} after the primary's last answer"
    );
    assert_eq!(feature(&c, "tts").in_use, 1);
    drop(g);
    drop(c);
    env.stop_server(p);
    env.stop_server(b);
}
