//! The node's sync contract through HTTP (DESIGN.md §3.1, §4.3, §4.4, §4.7).

use chrono::Duration;
use leasehold_node::api::{
    GrantLicense, InstallationView, ServerView, TransferLicense, UpdateServer,
};
use leasehold_proto::{Context, ErrorCode, ServerGuid};
use leasehold_testkit::node::{refusal, usage_bucket, FakeServer, TestNode};
use leasehold_testkit::{grant_request, manual_clock, start_time};
use reqwest::{Method, StatusCode};

async fn start(dir: &std::path::Path) -> TestNode {
    TestNode::start(dir, manual_clock()).await
}

/// An installation `name` with its production server.
async fn installation(node: &TestNode, name: &str) -> (InstallationView, ServerView) {
    let installation = node.admin.create_installation(name).await.unwrap();
    let production = node
        .admin
        .add_server(&installation.id, Context::Production)
        .await
        .unwrap();
    (installation, production)
}

async fn show(node: &TestNode, g: ServerGuid) -> ServerView {
    node.admin.server(g).await.unwrap()
}

#[tokio::test]
async fn first_sync_binds_the_instance_and_a_second_instance_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let (inst, prod) = installation(&node, "Acme").await;
    node.grant(&grant_request(prod.guid, "asr.en-US", 20))
        .await
        .unwrap();

    let mut server = FakeServer::new(prod.guid, 1);
    let bundle = server.sync(&node, vec![]).await.unwrap();
    assert_eq!(bundle.serial, 1);
    assert_eq!(bundle.server_guid, prod.guid);
    assert_eq!(bundle.context, Context::Production);
    assert_eq!(bundle.installation_id, inst.id);
    assert_eq!(bundle.licenses.len(), 1);
    assert_eq!(bundle.licenses[0].count, 20);
    assert_eq!(bundle.not_after - bundle.issued_at, Duration::days(60));
    assert_eq!(bundle.sync_interval_secs, 86_400);
    assert_eq!(
        show(&node, prod.guid).await.instance_id,
        Some(server.instance.clone())
    );

    let mut other = FakeServer::new(prod.guid, 2);
    assert_eq!(
        other.sync(&node, vec![]).await.unwrap_err(),
        ErrorCode::GuidInUse
    );
    // The refusal changed nothing: the first instance keeps syncing.
    assert_eq!(server.sync(&node, vec![]).await.unwrap().serial, 2);

    // The vendor reassigns the GUID: the new instance may bind, the old one is refused.
    node.admin.reassign_server(prod.guid).await.unwrap();
    assert_eq!(other.sync(&node, vec![]).await.unwrap().serial, 3);
    assert_eq!(
        server.sync(&node, vec![]).await.unwrap_err(),
        ErrorCode::GuidInUse
    );
    node.stop().await;
}

#[tokio::test]
async fn a_resent_usage_batch_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let (_, prod) = installation(&node, "Acme").await;
    let mut server = FakeServer::new(prod.guid, 1);
    server.sync(&node, vec![]).await.unwrap();

    let batch = vec![usage_bucket(1, "tts", 0, 4), usage_bucket(2, "tts", 1, 6)];
    // The node stores the batch but the answer is lost: the server sends it again with the
    // same token.
    let lost = node.sync(&server.upload(batch.clone())).await.unwrap();
    assert_eq!(node.open(&lost, prod.guid).acked_usage_seq, 2);
    let again = server.sync(&node, batch.clone()).await.unwrap();
    assert_eq!(again.acked_usage_seq, 2);
    // And once more after it was acknowledged, plus a new bucket.
    let mut more = batch.clone();
    more.push(usage_bucket(3, "tts", 2, 1));
    assert_eq!(server.sync(&node, more).await.unwrap().acked_usage_seq, 3);

    let rows = node.admin.usage(prod.guid).await.unwrap().rows;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows.iter().map(|r| r.peak_in_use).sum::<u32>(), 11);
    node.stop().await;
}

#[tokio::test]
async fn transfer_and_revoke_show_up_in_the_next_bundle_and_expired_licenses_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let (_, pa) = installation(&node, "A").await;
    let (_, pb) = installation(&node, "B").await;
    let moving = node.grant(&grant_request(pa.guid, "tts", 5)).await.unwrap();
    let revoked = node
        .grant(&grant_request(pa.guid, "asr.en-US", 2))
        .await
        .unwrap();
    // The last day of validity is 8 days after the clock's start.
    let last_day = start_time().date_naive() + Duration::days(8);
    let expiring = node
        .grant(&GrantLicense {
            expires: Some(last_day),
            ..grant_request(pa.guid, "asr.de-DE", 1)
        })
        .await
        .unwrap();

    let mut sa = FakeServer::new(pa.guid, 1);
    let mut sb = FakeServer::new(pb.guid, 2);
    assert_eq!(sa.sync(&node, vec![]).await.unwrap().licenses.len(), 3);
    assert!(sb.sync(&node, vec![]).await.unwrap().licenses.is_empty());

    node.admin
        .transfer_license(
            &moving.license.id,
            &TransferLicense {
                to: pb.guid,
                from: None,
            },
        )
        .await
        .unwrap();
    node.admin
        .revoke_license(&revoked.license.id)
        .await
        .unwrap();

    let after_a = sa.sync(&node, vec![]).await.unwrap();
    let ids: Vec<_> = after_a.licenses.iter().map(|l| l.id.clone()).collect();
    assert_eq!(ids, vec![expiring.license.id.clone()]);
    let after_b = sb.sync(&node, vec![]).await.unwrap();
    assert_eq!(after_b.licenses.len(), 1);
    assert_eq!(after_b.licenses[0].id, moving.license.id);

    // Still there on the last day, gone the day after.
    node.clock.set(start_time() + Duration::days(8));
    assert_eq!(sa.sync(&node, vec![]).await.unwrap().licenses.len(), 1);
    node.clock.set(start_time() + Duration::days(9));
    assert!(sa.sync(&node, vec![]).await.unwrap().licenses.is_empty());
    node.stop().await;
}

#[tokio::test]
async fn a_copied_server_is_detected_and_a_restored_one_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let (_, prod) = installation(&node, "Acme").await;
    let mut original = FakeServer::new(prod.guid, 1);
    original.sync(&node, vec![]).await.unwrap();

    // A copy of the data directory (same instance id, same token) starts syncing.
    let mut clone = original.clone();
    original.sync(&node, vec![]).await.unwrap();
    clone.sync(&node, vec![]).await.unwrap();
    // The first to come back on the superseded branch is refused as a fork.
    assert_eq!(
        original.sync(&node, vec![]).await.unwrap_err(),
        ErrorCode::GuidInUse
    );
    assert_eq!(show(&node, prod.guid).await.forks_detected, 1);
    clone.sync(&node, vec![]).await.unwrap();

    // A server restored from an old backup, whose original is gone, keeps working.
    let backup_copy = clone.clone();
    clone.sync(&node, vec![]).await.unwrap();
    clone.sync(&node, vec![]).await.unwrap();
    drop(clone);
    let mut restored = backup_copy;
    restored.sync(&node, vec![]).await.unwrap();
    restored.sync(&node, vec![]).await.unwrap();
    node.stop().await;
}

#[tokio::test]
async fn grace_and_interval_are_vendor_settable_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let (_, prod) = installation(&node, "Acme").await;
    let err = node
        .admin
        .update_server(
            prod.guid,
            &UpdateServer {
                grace_days: Some(59),
                sync_interval_secs: None,
            },
        )
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(err.1.error, ErrorCode::BadRequest);
    assert!(err.1.message.contains("60"), "{}", err.1.message);
    let view = node
        .admin
        .update_server(
            prod.guid,
            &UpdateServer {
                grace_days: Some(90),
                sync_interval_secs: Some(3600),
            },
        )
        .await
        .unwrap();
    assert_eq!((view.grace_days, view.sync_interval_secs), (90, 3600));
    let mut s = FakeServer::new(prod.guid, 1);
    let b = s.sync(&node, vec![]).await.unwrap();
    assert_eq!(b.not_after - b.issued_at, Duration::days(90));
    assert_eq!(b.sync_interval_secs, 3600);
    node.stop().await;
}

#[tokio::test]
async fn rejections_carry_codes_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let (inst, prod) = installation(&node, "Acme").await;
    let backup = node
        .admin
        .add_server(&inst.id, Context::Backup)
        .await
        .unwrap();
    let lic = node
        .grant(&grant_request(prod.guid, "tts", 4))
        .await
        .unwrap();

    // Unknown server.
    let stranger = FakeServer::new(ServerGuid::from_bytes([9; 16]), 1);
    assert_eq!(
        node.sync(&stranger.upload(vec![]))
            .await
            .unwrap_err()
            .1
            .error,
        ErrorCode::UnknownServer
    );
    // Context mismatch: the server claims to be something the vendor did not register.
    let mut liar = FakeServer::new(prod.guid, 1);
    liar.context = Some(Context::Development);
    assert_eq!(
        node.sync(&liar.upload(vec![usage_bucket(1, "tts", 0, 1)]))
            .await
            .unwrap_err()
            .1
            .error,
        ErrorCode::ContextMismatch
    );
    let view = show(&node, prod.guid).await;
    assert_eq!(
        view.instance_id, None,
        "a refused sync must not bind the GUID"
    );
    assert!(node.admin.usage(prod.guid).await.unwrap().rows.is_empty());

    // Malformed bodies.
    for body in [&b"not json"[..], b"{}", br#"{"server_guid":"nope"}"#] {
        let (status, text) = node.sync_raw(body.to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains("\"bad_request\""), "{text}");
    }
    // Out-of-order usage sequence numbers.
    let s = FakeServer::new(prod.guid, 1);
    let err = node
        .sync(&s.upload(vec![
            usage_bucket(2, "tts", 0, 1),
            usage_bucket(1, "tts", 1, 1),
        ]))
        .await
        .unwrap_err();
    assert_eq!(err.1.error, ErrorCode::BadRequest);
    // Oversized body.
    let (status, text) = node.sync_raw(vec![b' '; 5 * 1024 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(show(&node, prod.guid).await.bundle_serial, 0);

    // Context mismatch on grant and on transfer; bad backs_up; second production server.
    let req = serde_json::json!({"server": backup.guid, "feature": "tts", "count": 1, "context": "production", "maintenance_until": "2027-01-01"});
    let e = node
        .admin_raw::<_, serde_json::Value>(Method::POST, "/licenses", Some(&req))
        .await
        .unwrap_err();
    assert_eq!(e.1.error, ErrorCode::ContextMismatch);
    let e = node
        .admin
        .transfer_license(
            &lic.license.id,
            &TransferLicense {
                to: backup.guid,
                from: None,
            },
        )
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(e.1.error, ErrorCode::ContextMismatch);
    let backs_up = |count| GrantLicense {
        backs_up: Some(lic.license.id.clone()),
        ..grant_request(backup.guid, "tts", count)
    };
    let e = node.grant(&backs_up(5)).await.unwrap_err();
    assert_eq!(e.1.error, ErrorCode::InstallationShape, "{}", e.1.message);
    let e = node
        .grant(&grant_request(backup.guid, "tts", 2))
        .await
        .unwrap_err();
    assert_eq!(e.1.error, ErrorCode::BadRequest, "{}", e.1.message);
    let ok = node.grant(&backs_up(4)).await.unwrap();
    assert_eq!(ok.license.context, Context::Backup);
    let e = node
        .admin
        .add_server(&inst.id, Context::Development)
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(e.1.error, ErrorCode::InstallationShape);
    // A production license with a backup cannot be revoked from under it.
    let e = node
        .admin
        .revoke_license(&lic.license.id)
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(e.1.error, ErrorCode::InstallationShape);
    assert_eq!(show(&node, prod.guid).await.licenses.len(), 1);
    node.stop().await;
}

#[tokio::test]
async fn admin_api_needs_the_token_and_health_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let r = node
        .http
        .get(format!("{}/v1/admin/installations", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = node
        .http
        .get(format!("{}/v1/admin/installations", node.url))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("unauthorized"));
    let r = node
        .http
        .get(format!("{}/v1/health", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let health: leasehold_proto::Health = r.json().await.unwrap();
    assert_eq!(
        (health.status.as_str(), health.service.as_str()),
        ("ok", "node")
    );
    node.stop().await;
}

#[tokio::test]
async fn a_restarted_node_keeps_all_data() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let (_, prod) = installation(&node, "Acme").await;
    node.grant(&grant_request(prod.guid, "tts", 3))
        .await
        .unwrap();
    let mut s = FakeServer::new(prod.guid, 1);
    s.sync(&node, vec![usage_bucket(1, "tts", 0, 2)])
        .await
        .unwrap();
    let before = show(&node, prod.guid).await;
    let clock = node.clock.clone();
    node.stop().await;

    let node = TestNode::start(dir.path(), clock).await;
    assert_eq!(show(&node, prod.guid).await, before);
    assert_eq!(node.admin.usage(prod.guid).await.unwrap().rows.len(), 1);
    // The token chain survived too: the same server continues.
    assert_eq!(s.sync(&node, vec![]).await.unwrap().serial, 2);
    node.stop().await;
}

#[tokio::test]
async fn metrics_show_syncs_by_result_latency_batches_and_the_database_pool() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let (_, prod) = installation(&node, "Acme").await;
    let mut server = FakeServer::new(prod.guid, 1);
    server.sync(&node, vec![]).await.unwrap();
    let mut stranger = FakeServer::new(prod.guid, 2);
    assert_eq!(
        stranger.sync(&node, vec![]).await,
        Err(ErrorCode::GuidInUse)
    );
    let text = node
        .http
        .get(format!("{}/metrics", node.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "leasehold_node_syncs_total{result=\"ok\"}",
        "leasehold_node_syncs_total{result=\"guid_in_use\"}",
        "leasehold_node_sync_duration_seconds_bucket",
        "leasehold_node_sync_batch_size",
        "leasehold_node_db_connections{state=\"idle\"}",
        "leasehold_node_db_connections_max 1",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
}
