//! Who may be leased licenses: only requests with the installation's client key; a stranger
//! on the network gets 401 and changes nothing.

use leasehold_proto::{Clock, LeaseResponse};
use leasehold_server::api::ServerState;
use leasehold_testkit::server::{lease_request, Synced, TestServer};
use leasehold_testkit::CLIENT_KEY;

/// `POST /v1/lease` with the given `Authorization` (none with `None`): status and body.
async fn lease_with(server: &TestServer, authorization: Option<&str>, client: u8) -> (u16, String) {
    // A client without the kit's default header.
    let mut r = reqwest::Client::new()
        .post(format!("{}/v1/lease", server.lease_url))
        .json(&lease_request(client, "tts", 0, 5, 0));
    if let Some(a) = authorization {
        r = r.header("authorization", a);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.admin_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_lease_without_the_client_key_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synced::start(dir.path()).await;
    let server = &s.server;
    let refused = "leasehold_server_client_key_refusals_total";
    let before = metric(server, refused).await;
    for (auth, n) in [
        (None, 1),
        (Some("Bearer lhck_not-the-key".to_owned()), 2),
        (Some(format!("Basic {CLIENT_KEY}")), 3),
        (Some(format!("Bearer {CLIENT_KEY}x")), 4),
    ] {
        let (code, text) = lease_with(server, auth.as_deref(), n).await;
        assert_eq!(code, 401, "{auth:?}: {text}");
        assert!(
            text.contains("unauthorized") && text.contains("client key"),
            "{text}"
        );
    }
    // The release path is guarded too.
    let r = reqwest::Client::new()
        .delete(format!(
            "{}/v1/lease/{}?seq=1&epoch=1",
            server.lease_url,
            leasehold_testkit::server::client_id(1)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(metric(server, refused).await - before, 5.0);
    // Nothing was granted to the strangers: no clients, every license free.
    assert!(server.clients().await.is_empty());
    let status = server.status().await;
    assert!(
        status
            .licenses
            .iter()
            .all(|l| l.in_use == 0 && l.reserved == 0),
        "{status:?}"
    );
    // Health stays open; the key works.
    let health = reqwest::get(format!("{}/v1/health", server.lease_url))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let (code, text) = lease_with(server, Some(&format!("Bearer {CLIENT_KEY}")), 9).await;
    assert_eq!(code, 200, "{text}");
    let answer: LeaseResponse = serde_json::from_str(&text).unwrap();
    assert!(answer.features.values().any(|q| q.quota > 0), "{answer:?}");
    assert_eq!(server.status().await.state, ServerState::Ok);
}

#[tokio::test]
async fn a_rotated_key_keeps_the_old_one_working_for_the_overlap_then_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synced::start(dir.path()).await;
    let server = &s.server;
    let old = server.admin.client_key().await.unwrap();
    assert_eq!(old.key, CLIENT_KEY);
    assert!(old.previous_valid_until.is_empty());
    let new = server.admin.replace_client_key(None).await.unwrap();
    assert_ne!(new.key, CLIENT_KEY);
    assert_eq!(new.previous_valid_until.len(), 1);
    // The file holds the new key first (clients may read it with LEASEHOLD_CLIENT_KEY_FILE).
    let file = std::fs::read_to_string(dir.path().join("s").join("client-key")).unwrap();
    assert_eq!(file.lines().next(), Some(new.key.as_str()));
    let bearer = |k: &str| format!("Bearer {k}");
    assert_eq!(lease_with(server, Some(&bearer(&new.key)), 1).await.0, 200);
    assert_eq!(
        lease_with(server, Some(&bearer(CLIENT_KEY)), 2).await.0,
        200
    );
    // Past the overlap (7 days by default) the old key is refused.
    s.clock
        .advance(chrono::Duration::days(7) + chrono::Duration::seconds(1));
    assert_eq!(
        lease_with(server, Some(&bearer(CLIENT_KEY)), 3).await.0,
        401
    );
    assert_eq!(lease_with(server, Some(&bearer(&new.key)), 4).await.0, 200);
    // A malformed key is refused, naming what is wrong, and changes nothing; a good one
    // (the primary's, say) is taken.
    let e = server
        .admin
        .replace_client_key(Some("lhck_short".into()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("64 hexadecimal"), "{e}");
    assert_eq!(server.admin.client_key().await.unwrap().key, new.key);
    let set = server
        .admin
        .replace_client_key(Some(CLIENT_KEY.into()))
        .await
        .unwrap();
    assert_eq!(set.key, CLIENT_KEY);
    // The admin API needs the admin token, not the client key.
    let r = reqwest::Client::new()
        .get(format!("{}/v1/admin/client-key", server.admin_url))
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

/// A synced server with these client limits (and the node it syncs with).
async fn server_with(
    dir: &std::path::Path,
    limits: leasehold_server::ClientLimits,
) -> (leasehold_testkit::node::TestNode, TestServer) {
    let Synced {
        clock,
        node,
        installation,
        server: first,
    } = Synced::start(dir).await;
    first.stop().await;
    let mut opts = leasehold_testkit::server::options(
        &dir.join("s"),
        vec![node.url.clone()],
        Some(installation.production),
    );
    opts.client_limits = limits;
    let server = TestServer::start(opts, clock).await;
    server
        .wait_for("first sync", |st| st.state == ServerState::Ok)
        .await;
    (node, server)
}

#[tokio::test]
async fn a_new_client_beyond_the_limit_is_refused_and_known_clients_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let limits = leasehold_server::ClientLimits {
        max_clients: 3,
        new_clients_per_minute: 1000,
    };
    let (_s, server) = server_with(dir.path(), limits).await;
    let key = format!("Bearer {CLIENT_KEY}");
    for n in 1..=3 {
        assert_eq!(
            lease_with(&server, Some(&key), n).await.0,
            200,
            "client {n}"
        );
    }
    let (code, text) = lease_with(&server, Some(&key), 4).await;
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("too_many_clients"), "{text}");
    assert_eq!(server.clients().await.len(), 3);
    // A client already known keeps being served.
    assert_eq!(lease_with(&server, Some(&key), 2).await.0, 200);
}

#[tokio::test]
async fn new_client_ids_from_one_address_are_rate_limited_and_known_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let limits = leasehold_server::ClientLimits {
        max_clients: 1000,
        new_clients_per_minute: 2,
    };
    let (_s, server) = server_with(dir.path(), limits).await;
    let key = format!("Bearer {CLIENT_KEY}");
    assert_eq!(lease_with(&server, Some(&key), 1).await.0, 200);
    assert_eq!(lease_with(&server, Some(&key), 2).await.0, 200);
    let (code, text) = lease_with(&server, Some(&key), 3).await;
    assert_eq!(code, 429, "{text}");
    assert!(
        text.contains("rate_limited") && text.contains("127.0.0.1"),
        "{text}"
    );
    assert_eq!(
        server.clients().await.len(),
        2,
        "a refused client changed nothing"
    );
    for _ in 0..5 {
        assert_eq!(lease_with(&server, Some(&key), 1).await.0, 200);
    }
}

#[tokio::test]
async fn a_bundle_edited_in_the_data_directory_is_not_served_until_the_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let Synced {
        clock,
        node,
        installation,
        server,
    } = Synced::start(dir.path()).await;
    assert!(!server.status().await.licenses.is_empty());
    server.stop().await;

    // One character of the stored envelope changed, as someone editing server.db would.
    let db = dir.path().join("s").join("server.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let stored: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'bundle_envelope'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut edited = stored.into_bytes();
    let at = edited.len() / 2;
    edited[at] = if edited[at] == b'A' { b'B' } else { b'A' };
    sqlx::query("UPDATE meta SET value = ? WHERE key = 'bundle_envelope'")
        .bind(String::from_utf8(edited).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    // Without a node to sync with: no licenses are served, nobody is leased.
    let opts = |nodes| {
        leasehold_testkit::server::options(
            &dir.path().join("s"),
            nodes,
            Some(installation.production),
        )
    };
    let offline = TestServer::start(opts(vec![]), clock.clone()).await;
    let st = offline.status().await;
    assert!(
        st.licenses.is_empty(),
        "an edited bundle was served: {st:?}"
    );
    assert_ne!(st.state, ServerState::Ok, "{st:?}");
    let (code, text) = lease_with(&offline, Some(&format!("Bearer {CLIENT_KEY}")), 1).await;
    assert_ne!(code, 200, "{text}");
    offline.stop().await;
    // With the node: the next sync brings a genuine bundle and the licenses back.
    let online = TestServer::start(opts(vec![node.url.clone()]), clock).await;
    let st = online.sync_now().await;
    assert!(st.ok, "{st:?}");
    assert_eq!(online.status().await.state, ServerState::Ok);
}

#[tokio::test]
async fn a_client_lying_about_failover_is_served_by_the_backup_and_flagged_to_the_vendor() {
    let dir = tempfile::tempdir().unwrap();
    let Synced {
        clock,
        node,
        installation,
        server: primary,
    } = Synced::start(dir.path()).await;
    let backup = TestServer::start(
        leasehold_testkit::server::options(
            &dir.path().join("b"),
            vec![node.url.clone()],
            Some(installation.backup),
        ),
        clock.clone(),
    )
    .await;
    backup
        .wait_for("first sync", |st| st.state == ServerState::Ok)
        .await;
    // An honest client on the primary holds one license in this hour.
    primary
        .quota_of(&lease_request(1, "tts", 1, 1, 0), "tts")
        .await;
    // Another says it failed over, while the primary is healthy, and holds one on the backup.
    let mut lie = lease_request(2, "tts", 0, 1, 0);
    lie.failover = true;
    let first = backup.lease(&lie).await.unwrap();
    assert!(
        first.features.values().any(|q| q.quota > 0),
        "the backup serves a failover client"
    );
    clock.advance(chrono::Duration::minutes(1));
    let mut again = lease_request(2, "tts", 1, 1, 1);
    again.failover = true;
    again.seq = 1;
    again.epoch = first.epoch;
    backup.lease(&again).await.unwrap();
    // Held for a minute more: use the backup counts (held × time between requests).
    clock.advance(chrono::Duration::minutes(1));
    again.seq = 2;
    backup.lease(&again).await.unwrap();
    // The hour closes; both servers upload.
    clock.advance(chrono::Duration::minutes(30));
    primary
        .quota_of(&lease_request(1, "tts", 1, 1, 1), "tts")
        .await;
    assert!(primary.sync_now().await.ok);
    assert!(backup.sync_now().await.ok);
    let day = clock.now().date_naive();
    let report = node
        .admin
        .installation_usage(&installation.id, Some(day), Some(day))
        .await
        .unwrap();
    assert!(
        report
            .simultaneous
            .iter()
            .any(|u| u.backup_server == installation.backup && u.backup_use_secs > 0),
        "the vendor's report does not flag the backup's use beside production: {report:?}"
    );
}

/// `POST /v1/lease` with the kit's client key and, if given, a client secret.
async fn lease_as(
    server: &TestServer,
    request: &leasehold_proto::LeaseRequest,
    secret: Option<&str>,
) -> (u16, String) {
    let mut r = leasehold_testkit::server::lease_http()
        .post(format!("{}/v1/lease", server.lease_url))
        .json(request);
    if let Some(s) = secret {
        r = r.header(leasehold_proto::CLIENT_SECRET_HEADER, s);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_client_claiming_another_clients_id_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synced::start(dir.path()).await;
    let server = &s.server;
    const VICTIM: &str = "victim-secret-0123456789abcdef";
    const THIEF: &str = "thief-secret-0123456789abcdef";
    let (code, text) = lease_as(server, &lease_request(7, "tts", 1, 1, 0), Some(VICTIM)).await;
    assert_eq!(code, 200, "{text}");
    let held: LeaseResponse = serde_json::from_str(&text).unwrap();
    assert_eq!(leasehold_testkit::server::quota(&held, "tts"), 1);
    let in_use = |st: &leasehold_server::api::Status| {
        st.licenses
            .iter()
            .find(|l| l.feature.as_str() == "tts")
            .map(|l| (l.in_use, l.reserved))
    };
    let before = in_use(&server.status().await);
    let refusals = "leasehold_server_client_id_refusals_total";
    let refused_before = metric(server, refusals).await;

    // Another process with the victim's id: without a secret, with its own, giving back the
    // victim's licenses, or asking for everything.
    let mut give_back = lease_request(7, "tts", 0, 0, 0);
    give_back.seq = 5;
    give_back.epoch = held.epoch;
    give_back.release = true;
    let mut grab = lease_request(7, "tts", 0, 10, 0);
    grab.seq = 6;
    for (req, secret) in [
        (lease_request(7, "tts", 0, 10, 0), None),
        (grab, Some(THIEF)),
        (give_back, Some(THIEF)),
    ] {
        let (code, text) = lease_as(server, &req, secret).await;
        assert_eq!(code, 409, "{secret:?}: {text}");
        assert!(text.contains("client_id_in_use"), "{text}");
    }
    let r = reqwest::Client::new()
        .delete(format!(
            "{}/v1/lease/{}?seq=9&epoch={}",
            server.lease_url,
            leasehold_testkit::server::client_id(7),
            held.epoch
        ))
        .bearer_auth(CLIENT_KEY)
        .header(leasehold_proto::CLIENT_SECRET_HEADER, THIEF)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    // A secret of the wrong form is named.
    let (code, text) = lease_as(server, &lease_request(8, "tts", 0, 1, 0), Some("short")).await;
    assert_eq!(code, 400, "{text}");
    assert!(
        text.contains(leasehold_proto::CLIENT_SECRET_HEADER),
        "{text}"
    );

    assert_eq!(in_use(&server.status().await), before);
    assert_eq!(metric(server, refusals).await - refused_before, 4.0);
    // The victim is served as before.
    let mut next = lease_request(7, "tts", 1, 1, 1);
    next.seq = 1;
    next.epoch = held.epoch;
    let (code, text) = lease_as(server, &next, Some(VICTIM)).await;
    assert_eq!(code, 200, "{text}");
    let again: LeaseResponse = serde_json::from_str(&text).unwrap();
    assert_eq!(leasehold_testkit::server::quota(&again, "tts"), 1);
    s.stop().await;
}

#[tokio::test]
async fn a_clock_set_forward_and_back_suspends_licenses_until_a_sync_succeeds() {
    use chrono::Duration;
    let dir = tempfile::tempdir().unwrap();
    let s = Synced::start(dir.path()).await;
    let server = &s.server;
    let start = s.clock.now();
    // Forward past the grace: the licenses end (nothing is gained).
    s.clock.set(start + Duration::days(400));
    let st = server.status().await;
    assert_ne!(st.state, ServerState::Ok, "{st:?}");
    assert_eq!(
        server
            .quota_of(&lease_request(1, "tts", 0, 2, 0), "tts")
            .await,
        0
    );
    // Back to the right time: the jump forward left a high-water mark, so this is a clock
    // set back, and nothing is served until a sync vouches for the time.
    s.clock.set(start + Duration::hours(1));
    let st = server.status().await;
    assert_eq!(st.state, ServerState::ClockTampered, "{st:?}");
    assert_eq!(
        server
            .quota_of(&lease_request(2, "tts", 0, 2, 0), "tts")
            .await,
        0
    );
    assert!(server.sync_now().await.ok);
    assert_eq!(server.status().await.state, ServerState::Ok);
    assert_eq!(
        server
            .quota_of(&lease_request(3, "tts", 0, 2, 0), "tts")
            .await,
        2
    );
    s.stop().await;
}
