//! The cache follows the server: refreshed in the background, growing when the server grants
//! more, telling denials apart by the server's reason.

use std::time::Duration;

use chrono::Days;
use leasehold_client::{Client, Denied, ServerRole};
use leasehold_testkit::blocking::{wait_for, Env};
use leasehold_testkit::{maintenance_date, release_date};

use crate::harness::{client_builder, feature};

#[test]
fn the_cache_is_refreshed_and_grows_when_the_server_grants_more() {
    let env = Env::new();
    let server = env.start_server(&env.server_dir("p"), env.installation.production, None);
    let c = client_builder(&server.addr())
        .feature("asr.en-US")
        .feature("not.licensed")
        .build()
        .unwrap();
    assert!(c.wait_connected(Duration::from_secs(10)));
    let s = c.status();
    assert_eq!(s.server, ServerRole::Primary);
    assert_eq!(
        s.server_addr.as_deref(),
        Some(format!("http://{}", server.addr()).as_str())
    );
    assert_eq!(
        s.server_guid.as_deref(),
        Some(env.installation.production.to_string().as_str())
    );
    assert_eq!(s.server_context.as_deref(), Some("production"));
    assert!(!s.flushed && !s.failover);
    // Refreshes keep coming: the last good one is always recent.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(300));
        let s = c.status();
        let ago = s.last_good_refresh_ms_ago.unwrap();
        assert!(ago < 1_000, "last refresh {ago} ms ago");
        assert!(s.time_to_flush_ms.unwrap() > 0);
    }

    assert_eq!(c.acquire("not.licensed").unwrap_err(), Denied::NotLicensed);
    assert!(feature(&c, "not.licensed")
        .reason
        .unwrap()
        .contains("no license for feature not.licensed"));
    assert_eq!(c.acquire("nope").unwrap_err(), Denied::NoSuchFeature);

    // The quota grows with demand up to the count.
    let mut guards = Vec::new();
    wait_for("the whole count held", Duration::from_secs(20), || {
        while let Ok(g) = c.acquire("tts") {
            guards.push(g);
        }
        (guards.len() == 10).then_some(())
    });
    assert_eq!(c.acquire("tts").unwrap_err(), Denied::QuotaExhausted);
    assert_eq!(feature(&c, "tts").quota, 10);
    // The reason comes with the first answer to a request that wanted more than the count.
    wait_for(
        "the reason for the full quota",
        Duration::from_secs(10),
        || {
            feature(&c, "tts")
                .reason
                .filter(|r| r.contains("in use or promised"))
        },
    );

    // The vendor grants 5 more; after a sync the client's quota follows.
    env.grant_more("tts", 5);
    server.sync_now();
    wait_for("15 licenses held", Duration::from_secs(20), || {
        while let Ok(g) = c.acquire("tts") {
            guards.push(g);
            assert!(guards.len() <= 15);
        }
        (guards.len() == 15).then_some(())
    });
    assert_eq!(feature(&c, "tts").quota, 15);
    drop(guards);
    drop(c);
    env.stop_server(server);
}

#[test]
fn a_product_released_after_maintenance_is_denied_with_that_reason() {
    let env = Env::new();
    let server = env.start_server(&env.server_dir("p"), env.installation.production, None);
    let c = Client::builder()
        .servers(&server.addr())
        .client_key(leasehold_testkit::CLIENT_KEY)
        .product_release(maintenance_date() + Days::new(1))
        .feature("tts")
        .refresh(Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(c.wait_connected(Duration::from_secs(10)));
    assert_eq!(c.acquire("tts").unwrap_err(), Denied::MaintenanceExpired);
    assert!(feature(&c, "tts").reason.unwrap().contains("maintenance"));
    // The same server serves a product released in time.
    let ok = client_builder(&server.addr()).build().unwrap();
    assert!(ok.wait_connected(Duration::from_secs(10)));
    let g = wait_for("a license", Duration::from_secs(10), || {
        ok.acquire("tts").ok()
    });
    assert!(release_date() < maintenance_date());
    drop(g);
    drop((c, ok));
    env.stop_server(server);
}

#[test]
fn another_process_using_this_clients_id_is_refused() {
    let env = Env::new();
    let server = env.start_server(&env.server_dir("p"), env.installation.production, None);
    let c = client_builder(&server.addr())
        .feature("tts")
        .build()
        .unwrap();
    assert!(c.wait_connected(Duration::from_secs(10)));
    let held = c.acquire("tts").unwrap();
    // A process that learned the id (from the admin API, say) but not the client's secret.
    let mut request = leasehold_testkit::server::lease_request(0, "tts", 0, 10, 0);
    request.client_id = c.client_id().clone();
    request.seq = u64::MAX / 2;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (code, text) = rt.block_on(async {
        let r = leasehold_testkit::server::lease_http()
            .post(format!("http://{}/v1/lease", server.addr()))
            .json(&request)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("client_id_in_use"), "{text}");
    // The client goes on refreshing and holding its license.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.status().server, ServerRole::Primary);
    assert_eq!(feature(&c, "tts").in_use, 1);
    drop(held);
    drop(c);
    env.stop_server(server);
}
