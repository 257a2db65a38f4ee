//! The node's sync contract through HTTP (DESIGN.md §3.1, §4.3, §4.4, §4.7).

use chrono::{Duration, NaiveDate};
use leasehold_node::api::{ServerView, UsageReport};
use leasehold_proto::{Context, ErrorCode, ServerGuid};
use reqwest::{Method, StatusCode};

use crate::harness::*;

fn guid_path(g: ServerGuid) -> String {
    let s = g.to_string();
    s[1..s.len() - 1].to_string()
}

async fn show(node: &TestNode, g: ServerGuid) -> ServerView {
    node.admin::<(), _>(Method::GET, &format!("/servers/{}", guid_path(g)), None)
        .await
        .unwrap()
}

async fn usage(node: &TestNode, g: ServerGuid) -> UsageReport {
    node.admin::<(), _>(
        Method::GET,
        &format!("/servers/{}/usage", guid_path(g)),
        None,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn first_sync_binds_the_instance_and_a_second_instance_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let inst = node.installation("Acme").await;
    let prod = node.add_server(&inst, Context::Production).await;
    node.grant(prod.guid, "asr.en-US", 20, None, None)
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
    node.admin::<(), ServerView>(
        Method::POST,
        &format!("/servers/{}/reassign", guid_path(prod.guid)),
        None,
    )
    .await
    .unwrap();
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
    let node = TestNode::start(dir.path()).await;
    let inst = node.installation("Acme").await;
    let prod = node.add_server(&inst, Context::Production).await;
    let mut server = FakeServer::new(prod.guid, 1);
    server.sync(&node, vec![]).await.unwrap();

    let batch = vec![bucket(1, "tts", 0, 4), bucket(2, "tts", 1, 6)];
    // The node stores the batch but the answer is lost: the server sends it again with the
    // same token.
    let lost = node.sync(&server.upload(batch.clone())).await.unwrap();
    assert_eq!(node.open(&lost, prod.guid).acked_usage_seq, 2);
    let again = server.sync(&node, batch.clone()).await.unwrap();
    assert_eq!(again.acked_usage_seq, 2);
    // And once more after it was acknowledged, plus a new bucket.
    let mut more = batch.clone();
    more.push(bucket(3, "tts", 2, 1));
    assert_eq!(server.sync(&node, more).await.unwrap().acked_usage_seq, 3);

    let rows = usage(&node, prod.guid).await.rows;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows.iter().map(|r| r.peak_in_use).sum::<u32>(), 11);
    node.stop().await;
}

#[tokio::test]
async fn transfer_and_revoke_show_up_in_the_next_bundle_and_expired_licenses_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let a = node.installation("A").await;
    let b = node.installation("B").await;
    let pa = node.add_server(&a, Context::Production).await;
    let pb = node.add_server(&b, Context::Production).await;
    let moving = node.grant(pa.guid, "tts", 5, None, None).await.unwrap();
    let revoked = node
        .grant(pa.guid, "asr.en-US", 2, None, None)
        .await
        .unwrap();
    let expiring = node
        .grant(
            pa.guid,
            "asr.de-DE",
            1,
            Some(NaiveDate::from_ymd_opt(2026, 11, 10).unwrap()),
            None,
        )
        .await
        .unwrap();

    let mut sa = FakeServer::new(pa.guid, 1);
    let mut sb = FakeServer::new(pb.guid, 2);
    assert_eq!(sa.sync(&node, vec![]).await.unwrap().licenses.len(), 3);
    assert!(sb.sync(&node, vec![]).await.unwrap().licenses.is_empty());

    let id = moving.license.id.as_str().to_string();
    node.admin::<_, serde_json::Value>(
        Method::POST,
        &format!("/licenses/{id}/transfer"),
        Some(&serde_json::json!({"to": pb.guid})),
    )
    .await
    .unwrap();
    let rid = revoked.license.id.as_str().to_string();
    node.admin::<(), serde_json::Value>(Method::POST, &format!("/licenses/{rid}/revoke"), None)
        .await
        .unwrap();

    let after_a = sa.sync(&node, vec![]).await.unwrap();
    let ids: Vec<_> = after_a.licenses.iter().map(|l| l.id.clone()).collect();
    assert_eq!(ids, vec![expiring.license.id.clone()]);
    let after_b = sb.sync(&node, vec![]).await.unwrap();
    assert_eq!(after_b.licenses.len(), 1);
    assert_eq!(after_b.licenses[0].id, moving.license.id);

    // The last day of validity is 2026-11-10: still there on that day, gone the day after.
    node.clock.set(start_time() + Duration::days(9));
    assert_eq!(sa.sync(&node, vec![]).await.unwrap().licenses.len(), 1);
    node.clock.set(start_time() + Duration::days(10));
    assert!(sa.sync(&node, vec![]).await.unwrap().licenses.is_empty());
    node.stop().await;
}

#[tokio::test]
async fn a_copied_server_is_detected_and_a_restored_one_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let inst = node.installation("Acme").await;
    let prod = node.add_server(&inst, Context::Production).await;
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
    let node = TestNode::start(dir.path()).await;
    let inst = node.installation("Acme").await;
    let prod = node.add_server(&inst, Context::Production).await;
    let path = format!("/servers/{}", guid_path(prod.guid));
    let err = node
        .admin::<_, ServerView>(
            Method::PATCH,
            &path,
            Some(&serde_json::json!({"grace_days": 59})),
        )
        .await
        .unwrap_err();
    assert_eq!(err.1.error, ErrorCode::BadRequest);
    assert!(err.1.message.contains("60"), "{}", err.1.message);
    let view: ServerView = node
        .admin(
            Method::PATCH,
            &path,
            Some(&serde_json::json!({"grace_days": 90, "sync_interval_secs": 3600})),
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
    let node = TestNode::start(dir.path()).await;
    let inst = node.installation("Acme").await;
    let prod = node.add_server(&inst, Context::Production).await;
    let backup = node.add_server(&inst, Context::Backup).await;
    let lic = node.grant(prod.guid, "tts", 4, None, None).await.unwrap();

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
        node.sync(&liar.upload(vec![bucket(1, "tts", 0, 1)]))
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
    assert!(usage(&node, prod.guid).await.rows.is_empty());

    // Malformed bodies.
    for body in [&b"not json"[..], b"{}", br#"{"server_guid":"nope"}"#] {
        let (status, text) = node.sync_raw(body.to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains("\"bad_request\""), "{text}");
    }
    // Out-of-order usage sequence numbers.
    let s = FakeServer::new(prod.guid, 1);
    let err = node
        .sync(&s.upload(vec![bucket(2, "tts", 0, 1), bucket(1, "tts", 1, 1)]))
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
        .admin::<_, serde_json::Value>(Method::POST, "/licenses", Some(&req))
        .await
        .unwrap_err();
    assert_eq!(e.1.error, ErrorCode::ContextMismatch);
    let e = node
        .admin::<_, serde_json::Value>(
            Method::POST,
            &format!("/licenses/{}/transfer", lic.license.id),
            Some(&serde_json::json!({"to": backup.guid})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.1.error, ErrorCode::ContextMismatch);
    let e = node
        .grant(backup.guid, "tts", 5, None, Some(lic.license.id.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.1.error, ErrorCode::InstallationShape, "{}", e.1.message);
    let e = node
        .grant(backup.guid, "tts", 2, None, None)
        .await
        .unwrap_err();
    assert_eq!(e.1.error, ErrorCode::BadRequest, "{}", e.1.message);
    let ok = node
        .grant(backup.guid, "tts", 4, None, Some(lic.license.id.clone()))
        .await
        .unwrap();
    assert_eq!(ok.license.context, Context::Backup);
    let e = node
        .admin::<_, ServerView>(
            Method::POST,
            "/servers",
            Some(&serde_json::json!({"installation": inst.id, "context": "development"})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.1.error, ErrorCode::InstallationShape);
    // A production license with a backup cannot be revoked from under it.
    let e = node
        .admin::<(), serde_json::Value>(
            Method::POST,
            &format!("/licenses/{}/revoke", lic.license.id),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.1.error, ErrorCode::InstallationShape);
    assert_eq!(show(&node, prod.guid).await.licenses.len(), 1);
    node.stop().await;
}

#[tokio::test]
async fn admin_api_needs_the_token_and_health_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
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
    let node = TestNode::start(dir.path()).await;
    let inst = node.installation("Acme").await;
    let prod = node.add_server(&inst, Context::Production).await;
    node.grant(prod.guid, "tts", 3, None, None).await.unwrap();
    let mut s = FakeServer::new(prod.guid, 1);
    s.sync(&node, vec![bucket(1, "tts", 0, 2)]).await.unwrap();
    let before = show(&node, prod.guid).await;
    let clock = node.clock.clone();
    node.stop().await;

    let node = TestNode::start_with(dir.path(), clock).await;
    assert_eq!(show(&node, prod.guid).await, before);
    assert_eq!(usage(&node, prod.guid).await.rows.len(), 1);
    // The token chain survived too: the same server continues.
    assert_eq!(s.sync(&node, vec![]).await.unwrap().serial, 2);
    node.stop().await;
}
