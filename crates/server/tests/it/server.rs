//! The license server's contract (DESIGN.md §3–§4) through real HTTP.

use chrono::Duration;
use leasehold_proto::{Context, ServerGuid, SignedEnvelope};
use leasehold_server::api::ServerState;
use leasehold_testkit::node::TestNode;
use leasehold_testkit::server::{lease_request, options, quota, Synced, TestServer};
use leasehold_testkit::{
    maintenance_date, manual_clock, other_vendor_key, start_time, trusted_keys, vendor_key,
    SERVER_TOKEN,
};

#[tokio::test]
async fn first_sync_serves_licenses_and_periodic_sync_follows_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let node = TestNode::start(&dir.path().join("n"), clock.clone()).await;
    let prod = node.standard_installation().await.production;
    let server = TestServer::start(
        options(&dir.path().join("s"), vec![node.url.clone()], Some(prod)),
        clock.clone(),
    )
    .await;

    let s = server
        .wait_for("first sync", |s| s.state == ServerState::Ok)
        .await;
    assert_eq!(s.guid, Some(prod));
    assert_eq!(s.context, Some(Context::Production));
    assert_eq!(s.bundle_serial, 1);
    assert_eq!(s.licenses.len(), 2);
    assert_eq!(s.grace_days_left, Some(60));
    assert_eq!(s.next_sync, Some(start_time() + Duration::hours(24)));

    let resp = server
        .lease(&lease_request(1, "tts", 0, 4, 0))
        .await
        .unwrap();
    assert_eq!(resp.server_guid, prod);
    assert_eq!(resp.lease_secs, 120);
    assert_eq!(quota(&resp, "tts"), 4);

    // Not due yet: nothing happens. A day later the agent syncs by itself.
    clock.advance(Duration::hours(23));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(server.status().await.bundle_serial, 1);
    clock.advance(Duration::hours(1));
    server
        .wait_for("second sync", |s| s.bundle_serial == 2)
        .await;
    server.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn tries_every_node_and_moves_past_a_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let node = TestNode::start(&dir.path().join("n"), clock.clone()).await;
    let prod = node.standard_installation().await.production;
    // A "node" that takes connections and drops them at once. (A port merely left closed
    // could be taken by another test's server while the tests run in parallel.)
    let dead_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", dead_listener.local_addr().unwrap());
    let dropper = tokio::spawn(async move {
        while let Ok((conn, _)) = dead_listener.accept().await {
            drop(conn);
        }
    });
    let server = TestServer::start(
        options(
            &dir.path().join("s"),
            vec![dead.clone(), node.url.clone()],
            Some(prod),
        ),
        clock.clone(),
    )
    .await;
    server
        .wait_for("sync", |s| s.state == ServerState::Ok)
        .await;
    // Nodes are tried in random order: sync until the dead one came first at least once
    // (each sync has even odds; 200 in a row without it would be a broken shuffle).
    let mut syncs = 0;
    let s = loop {
        let o = server.sync_now().await;
        assert!(o.ok, "{o:?}");
        assert_eq!(o.node.as_deref(), Some(node.url.as_str()));
        syncs += 1;
        let s = server.status().await;
        let tried = s
            .nodes
            .iter()
            .any(|n| n.url == dead && n.last_error.is_some());
        if tried && syncs >= 5 {
            break s;
        }
        assert!(syncs < 200, "the dead node was never tried first: {s:?}");
    };
    let dead_status = s.nodes.iter().find(|n| n.url == dead).unwrap();
    assert!(
        dead_status
            .last_error
            .as_deref()
            .unwrap()
            .contains("cannot reach"),
        "{s:?}"
    );
    assert!(s
        .nodes
        .iter()
        .find(|n| n.url == node.url)
        .unwrap()
        .last_ok
        .is_some());
    dropper.abort();
    server.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn a_bad_bundle_is_refused_and_the_old_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let node = TestNode::start(&dir.path().join("n"), clock.clone()).await;
    let inst = node.standard_installation().await;
    let (prod, backup) = (inst.production, inst.backup);
    let server = TestServer::start(
        options(&dir.path().join("s"), vec![node.url.clone()], Some(prod)),
        clock.clone(),
    )
    .await;
    server
        .wait_for("sync", |s| s.state == ServerState::Ok)
        .await;

    let post = |env: String| {
        let http = server.http.clone();
        let url = format!("{}/v1/admin/bundle", server.admin_url);
        async move {
            let r = http
                .post(url)
                .bearer_auth(SERVER_TOKEN)
                .header("content-type", "application/json")
                .body(env)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Signed by a key the server does not trust.
    let upload: leasehold_proto::SyncUpload =
        serde_json::from_slice(&server.admin.upload_raw().await.unwrap()).unwrap();
    let genuine = node.node.sync(upload.clone()).await.unwrap();
    let payload = genuine.verify(&trusted_keys()).unwrap();
    let foreign = other_vendor_key().sign_bytes(&payload);
    let (code, text) = post(foreign.to_json()).await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("does not trust"), "{text}");
    // One changed byte.
    let mut tampered = genuine.clone();
    let mut sig = tampered.sig.into_bytes();
    sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
    tampered.sig = String::from_utf8(sig).unwrap();
    let (code, text) = post(tampered.to_json()).await;
    assert_eq!(code, 400, "{text}");
    // Another server's bundle (the backup's).
    let mut other = upload.clone();
    other.server_guid = backup;
    other.sync_token = None;
    other.context = None;
    other.usage.clear();
    other.instance_id = leasehold_proto::InstanceId::from_random([5; 16]);
    let (code, text) = post(node.node.sync(other).await.unwrap().to_json()).await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("not this server"), "{text}");
    // Signed by the vendor, for this GUID, but for another context.
    let mut wrong_context: leasehold_proto::BundlePayload =
        serde_json::from_slice(&payload).unwrap();
    wrong_context.context = Context::Development;
    wrong_context.serial += 10;
    let (code, text) = post(vendor_key().sign_bundle(&wrong_context).to_json()).await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("context is production"), "{text}");
    // Not JSON at all.
    let (code, _) = post("garbage".into()).await;
    assert_eq!(code, 400);

    let s = server.status().await;
    assert_eq!((s.state, s.bundle_serial), (ServerState::Ok, 1));
    // The genuine one is accepted, and replaying it is refused.
    assert_eq!(post(genuine.to_json()).await.0, 200);
    let (code, text) = post(genuine.to_json()).await;
    assert_eq!(code, 400);
    assert!(text.contains("not newer"), "{text}");
    assert_eq!(server.status().await.bundle_serial, 2);
    server.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn sixty_days_without_contact_suspends_licenses_until_a_sync_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let node = TestNode::start(&dir.path().join("n"), clock.clone()).await;
    let prod = node.standard_installation().await.production;
    let node_dir = dir.path().join("n");
    let server = TestServer::start(
        options(&dir.path().join("s"), vec![node.url.clone()], Some(prod)),
        clock.clone(),
    )
    .await;
    server
        .wait_for("sync", |s| s.state == ServerState::Ok)
        .await;
    let node_addr = node.addr;
    node.stop().await;

    clock.advance(Duration::days(59));
    let s = server.status().await;
    assert_eq!(s.state, ServerState::Ok);
    assert_eq!(s.grace_days_left, Some(1));
    assert_eq!(
        server
            .quota_of(&lease_request(1, "tts", 0, 2, 0), "tts")
            .await,
        2
    );
    assert!(!server.sync_now().await.ok);

    clock.advance(Duration::days(1) + Duration::minutes(1));
    let s = server.status().await;
    assert_eq!(s.state, ServerState::Expired);
    assert!(s.reason.unwrap().contains("no successful sync"));
    let resp = server
        .lease(&lease_request(2, "tts", 0, 2, 0))
        .await
        .unwrap();
    let f = &resp.features[&leasehold_proto::Feature::parse("tts").unwrap()];
    assert_eq!(f.quota, 0);
    assert!(f.reason.as_deref().unwrap().contains("suspended"));

    // The node comes back (same address): a sync restores service.
    let node = TestNode::start_on(&node_dir, clock.clone(), node_addr).await;
    assert!(server.sync_now().await.ok);
    assert_eq!(server.status().await.state, ServerState::Ok);
    assert_eq!(
        server
            .quota_of(&lease_request(2, "tts", 0, 2, 0), "tts")
            .await,
        2
    );
    server.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn a_clock_set_back_suspends_licenses_until_it_is_right_or_a_sync_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let Synced {
        clock,
        node,
        server,
        ..
    } = Synced::start(dir.path()).await;
    clock.advance(Duration::days(10));
    server.status().await;
    // Back by 30 minutes: tolerated (time sync corrections). Back by 2 days: tampering.
    clock.set(start_time() + Duration::days(10) - Duration::minutes(30));
    assert_eq!(server.status().await.state, ServerState::Ok);
    clock.set(start_time() + Duration::days(8));
    let s = server.status().await;
    assert_eq!(s.state, ServerState::ClockTampered);
    assert!(s.reason.unwrap().contains("behind"));
    assert_eq!(
        server
            .quota_of(&lease_request(1, "tts", 0, 2, 0), "tts")
            .await,
        0
    );
    // Set right again: served again.
    clock.set(start_time() + Duration::days(10));
    assert_eq!(server.status().await.state, ServerState::Ok);
    // Back again, then a sync succeeds: trusted again from there.
    clock.set(start_time() + Duration::days(5));
    assert_eq!(server.status().await.state, ServerState::ClockTampered);
    assert!(server.sync_now().await.ok);
    assert_eq!(server.status().await.state, ServerState::Ok);
    server.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn a_second_process_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let server = TestServer::start(options(dir.path(), vec![], None), clock.clone()).await;
    let err =
        leasehold_server::LicenseServer::open(options(dir.path(), vec![], None), clock.clone())
            .await
            .unwrap_err();
    assert!(err.to_string().contains("in use by another"), "{err}");
    server.stop().await;
    // Once the first has stopped, the directory is free.
    let again =
        leasehold_server::LicenseServer::open(options(dir.path(), vec![], None), clock).await;
    assert!(again.is_ok());
}

#[tokio::test]
async fn backup_grants_only_in_failover_and_maintenance_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let node = TestNode::start(&dir.path().join("n"), clock.clone()).await;
    let inst = node.standard_installation().await;
    let (prod, backup) = (inst.production, inst.backup);
    let p = TestServer::start(
        options(&dir.path().join("p"), vec![node.url.clone()], Some(prod)),
        clock.clone(),
    )
    .await;
    let b = TestServer::start(
        options(&dir.path().join("b"), vec![node.url.clone()], Some(backup)),
        clock.clone(),
    )
    .await;
    let s = b
        .wait_for("backup sync", |s| s.state == ServerState::Ok)
        .await;
    assert_eq!(s.context, Some(Context::Backup));
    assert!(s.licenses.iter().all(|l| l.backs_up.is_some()));
    p.wait_for("primary sync", |s| s.state == ServerState::Ok)
        .await;

    let normal = lease_request(1, "tts", 0, 3, 0);
    let resp = b.lease(&normal).await.unwrap();
    assert_eq!(quota(&resp, "tts"), 0);
    assert!(resp
        .features
        .values()
        .next()
        .unwrap()
        .reason
        .as_deref()
        .unwrap()
        .contains("failover"));
    let mut failover = lease_request(2, "tts", 0, 3, 0);
    failover.failover = true;
    assert_eq!(b.quota_of(&failover, "tts").await, 3);

    // A product released after the licenses' maintenance date is not served.
    let mut newer = lease_request(3, "tts", 0, 1, 0);
    newer.product_release = maintenance_date() + Duration::days(1);
    let resp = p.lease(&newer).await.unwrap();
    assert_eq!(quota(&resp, "tts"), 0);
    assert!(resp
        .features
        .values()
        .next()
        .unwrap()
        .reason
        .as_deref()
        .unwrap()
        .contains("maintenance"));
    p.stop().await;
    b.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn usage_is_uploaded_without_client_data_counted_once_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let node = TestNode::start(&dir.path().join("n"), clock.clone()).await;
    let prod = node.standard_installation().await.production;
    let sdir = dir.path().join("s");
    let server = TestServer::start(
        options(&sdir, vec![node.url.clone()], Some(prod)),
        clock.clone(),
    )
    .await;
    server
        .wait_for("sync", |s| s.state == ServerState::Ok)
        .await;
    // Two clients use tts during this hour.
    server
        .lease(&lease_request(1, "tts", 0, 4, 0))
        .await
        .unwrap();
    server
        .lease(&lease_request(2, "tts", 0, 4, 0))
        .await
        .unwrap();
    server
        .lease(&lease_request(1, "tts", 3, 4, 4))
        .await
        .unwrap();
    server
        .lease(&lease_request(2, "tts", 4, 5, 4))
        .await
        .unwrap();
    clock.advance(Duration::hours(1));
    server.service().flush().await.unwrap();
    server.stop().await;

    // Restarted before any sync: the closed hour is still there.
    let server = TestServer::start(
        options(&sdir, vec![node.url.clone()], Some(prod)),
        clock.clone(),
    )
    .await;
    let upload = server.service().upload().await.unwrap();
    assert_eq!(upload.usage.len(), 1, "{upload:?}");
    let b = &upload.usage[0];
    assert_eq!((b.peak_in_use, b.grants), (7, 7));

    // The serialized upload holds only summary fields: no client ids, no addresses.
    let json = serde_json::to_value(&upload).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "context",
            "instance_id",
            "last_bundle_serial",
            "server_guid",
            "software_version",
            "sync_token",
            "usage"
        ]
    );
    let bucket_keys: Vec<&str> = json["usage"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        bucket_keys,
        [
            "backup_use_secs",
            "denials",
            "denials_while_free",
            "feature",
            "grants",
            "hour",
            "license_secs",
            "peak_in_use",
            "seq"
        ]
    );
    let text = json.to_string();
    for c in [1u8, 2] {
        let id = leasehold_proto::ClientId::from_random([c; 16]).to_string();
        assert!(
            !text.contains(&id[2..]),
            "a client id leaked into the upload: {text}"
        );
    }
    assert!(!text.contains("127.0.0.1"));

    // The node gets it; the answer is lost; the server sends it again: counted once.
    node.node.sync(upload.clone()).await.unwrap();
    let o = server.sync_now().await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.acked_usage_seq, Some(1));
    let rows = node.node.usage(prod).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].peak_in_use, 7);
    // Acknowledged buckets are gone from the server.
    assert!(server.service().upload().await.unwrap().usage.is_empty());
    server.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn hours_recorded_under_one_guid_are_never_uploaded_under_another() {
    let dir = tempfile::tempdir().unwrap();
    let Synced {
        clock,
        node,
        installation,
        server,
    } = Synced::start(dir.path()).await;
    let prod = installation.production;
    server
        .lease(&lease_request(1, "tts", 3, 4, 0))
        .await
        .unwrap();
    let s = server.service();
    s.flush().await.unwrap();
    // The operator sets another GUID: the hour recorded under the first one is closed under
    // it and not part of the new GUID's upload, now or after more hours close.
    let other = ServerGuid::from_bytes([9; 16]);
    s.set_guid(other).await.unwrap();
    let upload = s.upload().await.unwrap();
    assert_eq!(upload.server_guid, other);
    assert!(upload.usage.is_empty(), "{upload:?}");
    clock.advance(Duration::hours(2));
    s.flush().await.unwrap();
    assert!(s.upload().await.unwrap().usage.is_empty());
    // Back to the first GUID, its hour uploads under it.
    s.set_guid(prod).await.unwrap();
    let upload = s.upload().await.unwrap();
    assert_eq!(upload.server_guid, prod);
    assert_eq!(upload.usage.len(), 1, "{upload:?}");
    assert_eq!(upload.usage[0].grants, 3);
    server.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn a_restarted_server_restores_its_leases_and_grants_the_rest_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let node = TestNode::start(&dir.path().join("n"), clock.clone()).await;
    let prod = node.standard_installation().await.production;
    let sdir = dir.path().join("s");
    let server = TestServer::start(
        options(&sdir, vec![node.url.clone()], Some(prod)),
        clock.clone(),
    )
    .await;
    server
        .wait_for("sync", |s| s.state == ServerState::Ok)
        .await;
    assert_eq!(
        server
            .quota_of(&lease_request(1, "tts", 0, 6, 0), "tts")
            .await,
        6
    );
    // The grant was on disk before it was answered (a kill -9 keeps it too: cli::server).
    server.stop().await;

    let server = TestServer::start(
        options(&sdir, vec![node.url.clone()], Some(prod)),
        clock.clone(),
    )
    .await;
    let s = server.status().await;
    assert_eq!(s.state, ServerState::Ok, "licenses survive the restart");
    assert!(
        s.learning_until.is_none(),
        "no learning: the leases are on disk"
    );
    // Client 1 still holds its lease of 6, on disk as a bound of 7 (rounded up by a quarter
    // of the 4 no bound covered, so that growing needs no disk write): a new client gets
    // the other 3 at once.
    assert_eq!(
        server
            .quota_of(&lease_request(2, "tts", 0, 5, 0), "tts")
            .await,
        3
    );
    // Client 1 never comes back: its reservation ends one hold after the restart.
    clock.advance(Duration::seconds(131));
    assert_eq!(
        server
            .quota_of(&lease_request(2, "tts", 0, 9, 0), "tts")
            .await,
        9
    );
    server.stop().await;

    // A data directory not in use for longer than a hold may be an old copy: what it shows
    // cannot be complete, so the server relearns for one hold.
    clock.advance(Duration::seconds(200));
    let server = TestServer::start(
        options(&sdir, vec![node.url.clone()], Some(prod)),
        clock.clone(),
    )
    .await;
    let s = server.status().await;
    assert!(s.learning_until.is_some());
    assert_eq!(
        server
            .quota_of(&lease_request(3, "tts", 0, 5, 0), "tts")
            .await,
        0
    );
    server.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn bad_lease_requests_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let server = TestServer::start(options(dir.path(), vec![], None), clock.clone()).await;
    // No GUID yet.
    let (code, text) = server
        .lease(&lease_request(1, "tts", 0, 1, 0))
        .await
        .unwrap_err();
    assert_eq!(code, 503);
    assert!(text.contains("GUID"), "{text}");
    for body in [
        "{",
        "{}",
        r#"{"client_id":"nope","product_release":"2026-01-01","features":{}}"#,
    ] {
        let r = server
            .http
            .post(format!("{}/v1/lease", server.lease_url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        assert!(r.text().await.unwrap().contains("bad_request"));
    }
    let r = server
        .http
        .delete(format!("{}/v1/lease/not-an-id", server.lease_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // The admin API needs the token; a bad GUID is refused.
    let r = server
        .http
        .get(format!("{}/v1/admin/status", server.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = server
        .http
        .put(format!("{}/v1/admin/guid", server.admin_url))
        .bearer_auth(SERVER_TOKEN)
        .json(&serde_json::json!({"guid": "{123}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("server GUID"));
    assert_eq!(server.status().await.state, ServerState::Unconfigured);
    let r = server
        .http
        .put(format!("{}/v1/admin/guid", server.admin_url))
        .bearer_auth(SERVER_TOKEN)
        .json(&serde_json::json!({"guid": ServerGuid::from_bytes([1; 16]).to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(server.status().await.state, ServerState::NotSynced);
    // Metrics need no token and name what they count.
    server
        .lease(&lease_request(1, "tts", 0, 1, 0))
        .await
        .unwrap_err();
    let metrics = server
        .http
        .get(format!("{}/metrics", server.admin_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("leasehold_server_lease_requests_total"),
        "{metrics}"
    );
    // The lease listener does not serve the admin API.
    let r = server
        .http
        .get(format!("{}/v1/admin/status", server.lease_url))
        .bearer_auth(SERVER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let _ = SignedEnvelope::from_json(b"{}");
    server.stop().await;
}

#[tokio::test]
async fn a_release_that_arrives_after_a_later_request_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let Synced { node, server, .. } = Synced::start(dir.path()).await;
    let mut req = lease_request(1, "tts", 0, 4, 0);
    req.seq = 5;
    let answer = server.lease(&req).await.unwrap();
    assert_eq!(quota(&answer, "tts"), 4);
    let epoch = answer.epoch;
    let url = |q: &str| format!("{}/v1/lease/{}{q}", server.lease_url, req.client_id);
    let r = server
        .http
        .delete(url(&format!("?seq=3&epoch={epoch}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "sent before request 5");
    let r = server
        .http
        .delete(url(&format!("?seq=5&epoch={}", epoch ^ 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "meant for another server process");
    assert_eq!(
        server
            .status()
            .await
            .licenses
            .iter()
            .find(|l| l.feature.as_str() == "tts")
            .unwrap()
            .reserved,
        4
    );
    let r = server.http.delete(url("?seq=nope")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("bad_request"));
    let r = server
        .http
        .delete(url(&format!("?seq=5&epoch={epoch}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        server
            .status()
            .await
            .licenses
            .iter()
            .find(|l| l.feature.as_str() == "tts")
            .unwrap()
            .reserved,
        0
    );
    server.stop().await;
    node.stop().await;
}
