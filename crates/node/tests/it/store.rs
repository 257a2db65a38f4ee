//! The store conformance suite: every scenario runs on each backend (SQLite, and PostgreSQL
//! in a schema of its own; see `leasehold_testkit::db`), through the node's service, so the
//! domain layer's decisions and each backend's SQL are checked together: licensing and sync,
//! then the vendor's staff (accounts, tokens, console sessions). The `two_nodes_…` tests run
//! two nodes on one PostgreSQL database, as a vendor does behind a load balancer.

use std::sync::Arc;

use leasehold_node::api::{GrantLicense, TransferLicense};
use leasehold_node::{Actor, Change, Node, TokensOf};
use leasehold_proto::api::staff::{AccountName, CreateAccount, Role, UpdateAccount};
use leasehold_proto::{BundlePayload, Clock, Context, ErrorCode, ManualClock};
use leasehold_testkit::db::{node_databases, postgres_schema, postgres_server};
use leasehold_testkit::node::{setup, usage_bucket, FakeServer};
use leasehold_testkit::{grant_request, manual_clock, trusted_keys, vendor_key, STAFF_PASSWORD};

async fn node_on(url: &str, clock: Arc<ManualClock>) -> Node {
    let store = leasehold_node::store::open(url)
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    Node::new(store, vendor_key(), clock)
}

/// One sync of `server` through `node`; the bundle is verified and taken.
async fn sync(
    node: &Node,
    server: &mut FakeServer,
    usage: Vec<leasehold_proto::UsageBucket>,
) -> Result<BundlePayload, ErrorCode> {
    match node.sync(server.upload(usage)).await {
        Ok(envelope) => {
            let bundle = envelope
                .open_bundle(&trusted_keys(), server.guid, None)
                .unwrap();
            server.accept(&bundle);
            Ok(bundle)
        }
        Err(e) => Err(e.code),
    }
}

#[tokio::test]
async fn the_sync_chain_binds_advances_branches_and_refuses_a_running_copy() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let node = node_on(&url, manual_clock()).await;
        let inst = node.create_installation(setup(), "Acme").await.unwrap();
        let prod = node
            .add_server(setup(), &inst.id, Context::Production)
            .await
            .unwrap();
        node.grant_license(setup(), &grant_request(prod.guid, "tts", 10))
            .await
            .unwrap();

        let mut first = FakeServer::new(prod.guid, 1);
        let b1 = sync(&node, &mut first, vec![]).await.unwrap();
        assert_eq!((b1.serial, b1.licenses.len()), (1, 1), "{backend}");
        // Another instance while the GUID is bound: refused, not a fork.
        let mut stranger = FakeServer::new(prod.guid, 2);
        assert_eq!(
            sync(&node, &mut stranger, vec![]).await,
            Err(ErrorCode::GuidInUse),
            "{backend}"
        );
        // A restored copy presents the older token: a new branch, served.
        let restored = first.clone();
        sync(&node, &mut first, vec![]).await.unwrap();
        let mut restored = restored;
        let b = sync(&node, &mut restored, vec![]).await.unwrap();
        assert_eq!(b.serial, 3, "{backend}");
        // The other copy, still running, now presents a revoked token: a fork, refused and
        // counted.
        assert_eq!(
            sync(&node, &mut first, vec![]).await,
            Err(ErrorCode::GuidInUse),
            "{backend}"
        );
        let view = node.server(prod.guid).await.unwrap();
        assert_eq!(view.forks_detected, 1, "{backend}");
        assert_eq!(view.bundle_serial, 3, "{backend}");
        // The vendor reassigns the GUID: the next instance binds.
        node.reassign_server(setup(), prod.guid).await.unwrap();
        let mut replacement = FakeServer::new(prod.guid, 3);
        assert_eq!(
            sync(&node, &mut replacement, vec![]).await.unwrap().serial,
            4,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn usage_is_stored_once_across_resends() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let node = node_on(&url, manual_clock()).await;
        let inst = node.create_installation(setup(), "Acme").await.unwrap();
        let prod = node
            .add_server(setup(), &inst.id, Context::Production)
            .await
            .unwrap();
        let mut server = FakeServer::new(prod.guid, 1);
        let buckets = vec![usage_bucket(1, "tts", 0, 4), usage_bucket(2, "tts", 1, 6)];
        let b = sync(&node, &mut server, buckets.clone()).await.unwrap();
        assert_eq!(b.acked_usage_seq, 2, "{backend}");
        // The answer was lost: the same buckets again, with one more.
        let mut resend = buckets;
        resend.push(usage_bucket(3, "tts", 2, 1));
        let b = sync(&node, &mut server, resend).await.unwrap();
        assert_eq!(b.acked_usage_seq, 3, "{backend}");
        let rows = node.usage(prod.guid).await.unwrap();
        let peaks: Vec<(u64, u32, u64)> = rows
            .iter()
            .map(|r| (r.seq, r.peak_in_use, r.license_secs))
            .collect();
        assert_eq!(
            peaks,
            vec![(1, 4, 4 * 1800), (2, 6, 6 * 1800), (3, 1, 1800)],
            "{backend}"
        );
        assert_eq!(rows[0].hour, usage_bucket(1, "tts", 0, 4).hour, "{backend}");
    }
}

#[tokio::test]
async fn grants_transfers_and_revokes_keep_the_licensing_rules() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let node = node_on(&url, manual_clock()).await;
        let a = node.create_installation(setup(), "A").await.unwrap();
        let b = node.create_installation(setup(), "B").await.unwrap();
        let prod = node
            .add_server(setup(), &a.id, Context::Production)
            .await
            .unwrap();
        let backup = node
            .add_server(setup(), &a.id, Context::Backup)
            .await
            .unwrap();
        let other = node
            .add_server(setup(), &b.id, Context::Production)
            .await
            .unwrap();
        // One production server per installation.
        let e = node
            .add_server(setup(), &a.id, Context::Production)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InstallationShape, "{backend}: {e:?}");
        // A backup license parallels a production one of its installation.
        let tts = node
            .grant_license(setup(), &grant_request(prod.guid, "tts", 10))
            .await
            .unwrap();
        let twin = node
            .grant_license(
                setup(),
                &GrantLicense {
                    backs_up: Some(tts.license.id.clone()),
                    ..grant_request(backup.guid, "tts", 10)
                },
            )
            .await
            .unwrap();
        assert_eq!(twin.license.context, Context::Backup, "{backend}");
        // A development license does not load on a production server.
        let e = node
            .grant_license(
                setup(),
                &GrantLicense {
                    context: Some(Context::Development),
                    ..grant_request(prod.guid, "asr.en-US", 1)
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ContextMismatch, "{backend}: {e:?}");
        // A backed-up license stays in its installation and is revoked after its twin.
        let e = node
            .transfer_license(
                setup(),
                &tts.license.id,
                &TransferLicense {
                    to: other.guid,
                    from: None,
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InstallationShape, "{backend}: {e:?}");
        let e = node
            .revoke_license(setup(), &tts.license.id)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InstallationShape, "{backend}: {e:?}");
        node.revoke_license(setup(), &twin.license.id)
            .await
            .unwrap();
        let moved = node
            .transfer_license(
                setup(),
                &tts.license.id,
                &TransferLicense {
                    to: other.guid,
                    from: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(moved.server, other.guid, "{backend}");
        // A transfer that names where the license was: refused now that it moved.
        let e = node
            .transfer_license(
                setup(),
                &tts.license.id,
                &TransferLicense {
                    to: prod.guid,
                    from: Some(prod.guid),
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::StaleRequest, "{backend}: {e:?}");
        let until = chrono::NaiveDate::from_ymd_opt(2028, 1, 31).unwrap();
        let l = node
            .set_maintenance(setup(), &tts.license.id, until)
            .await
            .unwrap();
        assert_eq!(l.license.maintenance_until, until, "{backend}");
        let revoked = node.revoke_license(setup(), &tts.license.id).await.unwrap();
        assert!(revoked.revoked_at.is_some(), "{backend}");
        assert!(node.server(other.guid).await.unwrap().licenses.is_empty());
        // (Created at the same instant of the manual clock: in id order, so sorted here.)
        let mut listed: Vec<(String, usize)> = node
            .list_installations()
            .await
            .unwrap()
            .into_iter()
            .map(|i| (i.name, i.servers.len()))
            .collect();
        listed.sort();
        assert_eq!(listed, vec![("A".into(), 2), ("B".into(), 1)], "{backend}");
    }
}

/// Two nodes on one PostgreSQL database, as behind a load balancer.
async fn two_nodes() -> Option<(Node, Node)> {
    let server = postgres_server()?;
    let url = postgres_schema(&server).await;
    let clock = manual_clock();
    let one = node_on(&url, clock.clone()).await;
    let two = node_on(&url, clock).await;
    Some((one, two))
}

#[tokio::test]
async fn two_nodes_on_one_database_bind_a_guid_to_one_instance_only() {
    let Some((one, two)) = two_nodes().await else {
        return;
    };
    let inst = one.create_installation(setup(), "Acme").await.unwrap();
    let prod = one
        .add_server(setup(), &inst.id, Context::Production)
        .await
        .unwrap();
    // Many rounds of two fresh instances racing for one free GUID through two nodes.
    for round in 0..20u8 {
        one.reassign_server(setup(), prod.guid).await.unwrap();
        let mut a = FakeServer::new(prod.guid, 2 * round + 1);
        let mut b = FakeServer::new(prod.guid, 2 * round + 2);
        let (ra, rb) = tokio::join!(sync(&one, &mut a, vec![]), sync(&two, &mut b, vec![]));
        let won = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {ra:?} {rb:?}");
        let loser = if ra.is_ok() { rb } else { ra };
        assert_eq!(loser, Err(ErrorCode::GuidInUse), "round {round}");
    }
}

#[tokio::test]
async fn two_nodes_on_one_database_keep_one_production_server_per_installation() {
    let Some((one, two)) = two_nodes().await else {
        return;
    };
    for round in 0..20 {
        let inst = one.create_installation(setup(), "Acme").await.unwrap();
        let (ra, rb) = tokio::join!(
            one.add_server(setup(), &inst.id, Context::Production),
            two.add_server(setup(), &inst.id, Context::Production)
        );
        assert_eq!(
            [ra.is_ok(), rb.is_ok()].iter().filter(|ok| **ok).count(),
            1,
            "round {round}: {ra:?} {rb:?}"
        );
    }
}

#[tokio::test]
async fn two_nodes_on_one_database_let_exactly_one_of_two_racing_transfers_win() {
    let Some((one, two)) = two_nodes().await else {
        return;
    };
    let a = one.create_installation(setup(), "A").await.unwrap();
    let b = one.create_installation(setup(), "B").await.unwrap();
    let c = one.create_installation(setup(), "C").await.unwrap();
    let from = one
        .add_server(setup(), &a.id, Context::Production)
        .await
        .unwrap();
    let to_b = one
        .add_server(setup(), &b.id, Context::Production)
        .await
        .unwrap();
    let to_c = one
        .add_server(setup(), &c.id, Context::Production)
        .await
        .unwrap();
    for round in 0..20 {
        let l = one
            .grant_license(setup(), &grant_request(from.guid, "tts", 5))
            .await
            .unwrap();
        let id = l.license.id;
        let (tb, tc) = (
            TransferLicense {
                to: to_b.guid,
                from: Some(from.guid),
            },
            TransferLicense {
                to: to_c.guid,
                from: Some(from.guid),
            },
        );
        let (rb, rc) = tokio::join!(
            one.transfer_license(setup(), &id, &tb),
            two.transfer_license(setup(), &id, &tc)
        );
        let (won, lost) = match (rb, rc) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        };
        assert_eq!(lost.code, ErrorCode::StaleRequest, "round {round}");
        assert_eq!(one.license(&id).await.unwrap().server, won.server);
    }
}

#[tokio::test]
async fn the_installation_report_adds_servers_per_day_and_flags_backup_use_beside_production() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let node = node_on(&url, manual_clock()).await;
        let inst = node.create_installation(setup(), "Acme").await.unwrap();
        let prod = node
            .add_server(setup(), &inst.id, Context::Production)
            .await
            .unwrap();
        let backup = node
            .add_server(setup(), &inst.id, Context::Backup)
            .await
            .unwrap();
        let mut p = FakeServer::new(prod.guid, 1);
        let mut b = FakeServer::new(backup.guid, 2);
        // Production: hours 0 and 1 (peaks 4, 6). Backup: hour 1 in failover for 600 s
        // while production also reported use (flagged), hour 3 alone (a real failover).
        sync(
            &node,
            &mut p,
            vec![usage_bucket(1, "tts", 0, 4), usage_bucket(2, "tts", 1, 6)],
        )
        .await
        .unwrap();
        let mut b1 = usage_bucket(1, "tts", 1, 2);
        b1.backup_use_secs = 600;
        let mut b2 = usage_bucket(2, "tts", 3, 5);
        b2.backup_use_secs = 3600;
        sync(&node, &mut b, vec![b1, b2]).await.unwrap();

        let day = usage_bucket(1, "tts", 0, 4).hour.date_naive();
        let r = node
            .installation_usage(&inst.id, Some(day), Some(day))
            .await
            .unwrap();
        let days: Vec<(Context, u32, u64, u64, u64)> = r
            .days
            .iter()
            .map(|d| {
                (
                    d.context,
                    d.peak_in_use,
                    d.peak_hours,
                    d.license_secs,
                    d.grants,
                )
            })
            .collect();
        assert_eq!(
            days,
            vec![
                (Context::Production, 6, 10, 10 * 1800, 30),
                (Context::Backup, 5, 7, 7 * 1800, 21)
            ],
            "{backend}: {r:?}"
        );
        assert_eq!(r.simultaneous.len(), 1, "{backend}: {r:?}");
        assert_eq!(r.simultaneous[0].backup_server, backup.guid);
        assert_eq!(r.simultaneous[0].production_peak, 6);
        assert_eq!(r.simultaneous[0].backup_use_secs, 600);
        // A period running backwards is refused, naming it.
        let e = node
            .installation_usage(&inst.id, Some(day), Some(day - chrono::Duration::days(1)))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{backend}: {e:?}");
    }
}

#[tokio::test]
async fn events_report_forks_context_rejections_and_servers_near_the_end_of_grace() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let clock = manual_clock();
        let node = node_on(&url, clock.clone()).await;
        let inst = node.create_installation(setup(), "Acme").await.unwrap();
        let prod = node
            .add_server(setup(), &inst.id, Context::Production)
            .await
            .unwrap();
        let backup = node
            .add_server(setup(), &inst.id, Context::Backup)
            .await
            .unwrap();
        assert!(node.events(7).await.unwrap().events.is_empty(), "{backend}");
        // A copy refused: a fork.
        let mut first = FakeServer::new(prod.guid, 1);
        sync(&node, &mut first, vec![]).await.unwrap();
        let mut copy = first.clone();
        sync(&node, &mut first, vec![]).await.unwrap();
        sync(&node, &mut copy, vec![]).await.unwrap();
        assert_eq!(
            sync(&node, &mut first, vec![]).await,
            Err(ErrorCode::GuidInUse)
        );
        // The backup server claims to be a production server: refused, recorded.
        let mut liar = FakeServer::new(backup.guid, 3);
        liar.context = Some(Context::Production);
        assert_eq!(
            sync(&node, &mut liar, vec![]).await,
            Err(ErrorCode::ContextMismatch)
        );
        let e = node.events(7).await.unwrap().events;
        let kinds: Vec<_> = e.iter().map(|e| (e.kind, e.server)).collect();
        use leasehold_node::api::EventKind;
        assert_eq!(
            kinds,
            vec![
                (EventKind::Fork, prod.guid),
                (EventKind::ContextRejection, backup.guid)
            ],
            "{backend}: {e:?}"
        );
        assert!(
            e.iter().all(|e| e.at == Some(clock.now())),
            "{backend}: {e:?}"
        );
        // 50 days later the production server (last sync now) is near the end of grace and
        // silent.
        clock.advance(chrono::Duration::days(50));
        let e = node.events(7).await.unwrap().events;
        assert!(
            e.iter()
                .any(|e| e.kind == EventKind::GraceEnding && e.server == prod.guid),
            "{backend}: {e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.kind == EventKind::Silent && e.server == prod.guid),
            "{backend}: {e:?}"
        );
        // The database picks the servers that may have an event; deciding from those is
        // deciding from every server, day by day across grace periods of 60 and 90 days and
        // several silences.
        let other = node
            .add_server(
                setup(),
                &node.create_installation(setup(), "Beta").await.unwrap().id,
                Context::Production,
            )
            .await
            .unwrap();
        node.update_server(
            setup(),
            other.guid,
            &leasehold_node::api::UpdateServer {
                grace_days: Some(90),
                sync_interval_secs: None,
            },
        )
        .await
        .unwrap();
        let mut beta = FakeServer::new(other.guid, 9);
        sync(&node, &mut beta, vec![]).await.unwrap();
        let store = leasehold_node::store::open(&url).await.unwrap();
        // Silences of 1,000 days leave the grace periods alone to pick servers.
        for _ in 0..110 {
            clock.advance(chrono::Duration::hours(23));
            let all = store.begin().await.unwrap().servers().await.unwrap();
            for silent in [0, 7, 30, 1000] {
                let expected = leasehold_node::domain::events::events(&all, clock.now(), silent);
                assert_eq!(
                    node.events(silent).await.unwrap().events,
                    expected,
                    "{backend}: at {} silent {silent}",
                    clock.now()
                );
            }
        }
        assert!(
            node.events(7)
                .await
                .unwrap()
                .events
                .iter()
                .any(|e| e.kind == EventKind::GraceEnded),
            "{backend}: the walk reaches an ended grace period"
        );
    }
}

#[tokio::test]
async fn after_a_recorded_restore_a_server_syncs_once_with_a_token_the_database_never_issued() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let clock = manual_clock();
        let node = node_on(&url, clock.clone()).await;
        let inst = node.create_installation(setup(), "Acme").await.unwrap();
        let prod = node
            .add_server(setup(), &inst.id, Context::Production)
            .await
            .unwrap();
        let mut server = FakeServer::new(prod.guid, 1);
        sync(&node, &mut server, vec![]).await.unwrap();
        // What a server holds after the vendor restored an older backup: a token the
        // database never issued. Refused while no restore is recorded.
        server.token = Some(leasehold_proto::SyncToken::from_random([7; 16]));
        let mut copy = server.clone();
        copy.token = Some(leasehold_proto::SyncToken::from_random([8; 16]));
        assert_eq!(
            sync(&node, &mut server, vec![]).await,
            Err(ErrorCode::GuidInUse),
            "{backend}"
        );
        clock.advance(chrono::Duration::minutes(5));
        node.record_restore().await.unwrap();
        // Once: the bound instance syncs with it and continues the chain.
        let b = sync(&node, &mut server, vec![]).await.unwrap();
        assert_eq!(b.serial, 2, "{backend}");
        sync(&node, &mut server, vec![]).await.unwrap();
        // A second holder of an unknown token is refused as before.
        assert_eq!(
            sync(&node, &mut copy, vec![]).await,
            Err(ErrorCode::GuidInUse),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn old_hours_roll_up_into_days_that_report_the_same_and_expire_after_the_retention() {
    use leasehold_node::domain::retention::UsagePolicy;
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let clock = manual_clock();
        let node = node_on(&url, clock.clone()).await;
        let inst = node.create_installation(setup(), "Acme").await.unwrap();
        let prod = node
            .add_server(setup(), &inst.id, Context::Production)
            .await
            .unwrap();
        let mut server = FakeServer::new(prod.guid, 1);
        // 100 days ago: hours 9 and 10 of "tts" (peaks 4, 6) and hour 9 of "asr"; 2 days
        // ago: one hour of "tts".
        let old = -100 * 24;
        let recent = -2 * 24;
        sync(
            &node,
            &mut server,
            vec![
                usage_bucket(1, "tts", old, 4),
                usage_bucket(2, "tts", old + 1, 6),
                usage_bucket(3, "asr", old, 2),
                usage_bucket(4, "tts", recent, 3),
            ],
        )
        .await
        .unwrap();
        let old_day = usage_bucket(1, "tts", old, 0).hour.date_naive();
        let today = clock.now().date_naive();
        let before = days_of(&node, &inst.id, old_day, today).await;
        assert_eq!(before.len(), 3, "{backend}: {before:?}");

        let policy = UsagePolicy::default();
        let r = node.maintain_usage(policy).await.unwrap();
        assert_eq!(
            (r.days_rolled_up, r.hourly_rows_rolled_up),
            (1, 3),
            "{backend}"
        );
        assert_eq!(
            r.partitions_created > 0,
            backend == "postgres",
            "{backend}: {r:?}"
        );
        // Only the recent hour is still kept hourly; the report is the same.
        let hourly: Vec<u64> = node
            .usage(prod.guid)
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(hourly, vec![4], "{backend}");
        assert_eq!(
            days_of(&node, &inst.id, old_day, today).await,
            before,
            "{backend}"
        );
        // Idempotent: a second pass finds nothing to do.
        let again = node.maintain_usage(policy).await.unwrap();
        assert_eq!(
            (again.partitions_created, again.days_rolled_up),
            (0, 0),
            "{backend}"
        );

        // A late bucket of the rolled-up day (a server that was offline): kept hourly until
        // the next pass folds it into the day; the report counts it once either way.
        sync(&node, &mut server, vec![usage_bucket(5, "tts", old + 2, 9)])
            .await
            .unwrap();
        let late = days_of(&node, &inst.id, old_day, today).await;
        let tts_old = |days: &[leasehold_node::api::DailyUsage]| {
            days.iter()
                .find(|d| d.day == old_day && d.feature.as_str() == "tts")
                .map(|d| (d.peak_in_use, d.peak_hours, d.license_secs, d.grants))
        };
        // License time is summed exactly: (4 + 6 + 9) licenses for half an hour each.
        assert_eq!(
            tts_old(&late),
            Some((9, 19, 19 * 1800, 57)),
            "{backend}: {late:?}"
        );
        let r = node.maintain_usage(policy).await.unwrap();
        assert_eq!(r.hourly_rows_rolled_up, 1, "{backend}");
        assert_eq!(
            days_of(&node, &inst.id, old_day, today).await,
            late,
            "{backend}"
        );

        // Past the retention, the days are gone (the recent hour is rolled up first).
        clock.advance(chrono::Duration::days(i64::from(policy.retention_days)));
        let r = node.maintain_usage(policy).await.unwrap();
        assert_eq!(r.hourly_rows_rolled_up, 1, "{backend}: {r:?}");
        assert_eq!(r.daily_rows_deleted, 3, "{backend}: {r:?}");
        if backend == "postgres" {
            // Only the window's day partitions remain (the 90 days kept hourly, today and 3
            // ahead) and the default one: those made ahead two years ago stayed empty and
            // were dropped.
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let partitions: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'usage'::regclass",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(partitions, 94 + 1);
        }
        let gone = node
            .installation_usage(&inst.id, Some(old_day), Some(old_day))
            .await
            .unwrap();
        assert!(gone.days.is_empty(), "{backend}: {gone:?}");
    }
}

#[tokio::test]
async fn two_nodes_maintaining_one_postgres_database_at_once_roll_each_day_up_once() {
    use leasehold_node::domain::retention::UsagePolicy;
    let Some(server) = postgres_server() else {
        return;
    };
    let url = postgres_schema(&server).await;
    let clock = manual_clock();
    let a = node_on(&url, clock.clone()).await;
    let b = node_on(&url, clock.clone()).await;
    let inst = a.create_installation(setup(), "Acme").await.unwrap();
    let prod = a
        .add_server(setup(), &inst.id, Context::Production)
        .await
        .unwrap();
    let mut s = FakeServer::new(prod.guid, 1);
    let buckets = (0..48)
        .map(|h| usage_bucket(h + 1, "tts", -120 * 24 + h as i64, 2))
        .collect();
    sync(&a, &mut s, buckets).await.unwrap();
    let policy = UsagePolicy::default();
    let (ra, rb) = tokio::join!(a.maintain_usage(policy), b.maintain_usage(policy));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.hourly_rows_rolled_up + rb.hourly_rows_rolled_up, 48);
    // Hours 09:00 on day 1 to 08:00 on day 3.
    assert_eq!(ra.days_rolled_up + rb.days_rolled_up, 3);
    assert_eq!(ra.partitions_created + rb.partitions_created, 94);
    let day = usage_bucket(1, "tts", -120 * 24, 0).hour.date_naive();
    let r = b
        .installation_usage(&inst.id, Some(day), Some(day + chrono::Duration::days(2)))
        .await
        .unwrap();
    let hours: u64 = r.days.iter().map(|d| d.peak_hours).sum();
    assert_eq!(hours, 96, "{r:?}");
    let secs: u64 = r.days.iter().map(|d| d.license_secs).sum();
    assert_eq!(secs, 48 * 2 * 1800, "rolled up once: {r:?}");
}

async fn days_of(
    node: &Node,
    id: &leasehold_proto::InstallationId,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Vec<leasehold_node::api::DailyUsage> {
    node.installation_usage(id, Some(from), Some(to))
        .await
        .unwrap()
        .days
}

// Vendor staff: accounts, tokens, console sessions. The service is called directly, as
// the database actor (`setup()`) where a test only needs an account changed.

fn name(text: &str) -> AccountName {
    AccountName::parse(text).unwrap()
}

async fn create_account(
    node: &Node,
    change: Change<'_>,
    account: &str,
    role: Role,
) -> Result<leasehold_proto::api::staff::AccountView, leasehold_web::ApiError> {
    node.create_account(
        change,
        &CreateAccount {
            name: name(account),
            role,
            password: STAFF_PASSWORD.into(),
        },
    )
    .await
}

async fn set_account(
    node: &Node,
    account: &str,
    update: UpdateAccount,
) -> Result<leasehold_proto::api::staff::AccountView, leasehold_web::ApiError> {
    node.update_account(setup(), &name(account), &update).await
}

fn disable(disabled: bool) -> UpdateAccount {
    UpdateAccount {
        disabled: Some(disabled),
        ..UpdateAccount::default()
    }
}

fn role(role: Role) -> UpdateAccount {
    UpdateAccount {
        role: Some(role),
        ..UpdateAccount::default()
    }
}

/// `(name, role, disabled)` of every account.
async fn accounts(node: &Node) -> Vec<(String, Role, bool)> {
    node.accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.name.to_string(), a.role, a.disabled))
        .collect()
}

#[tokio::test]
async fn account_names_are_unique_whatever_their_case() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let node = node_on(&url, manual_clock()).await;
        let alice = create_account(&node, setup(), "Alice", Role::Support)
            .await
            .unwrap();
        assert_eq!(alice.name.as_str(), "alice", "{backend}");
        for taken in ["alice", "ALICE", " aLiCe "] {
            let e = create_account(&node, setup(), taken, Role::Admin)
                .await
                .unwrap_err();
            assert_eq!(
                e.code,
                ErrorCode::AlreadyExists,
                "{backend}: {taken}: {e:?}"
            );
        }
        assert_eq!(
            accounts(&node).await,
            vec![("alice".into(), Role::Support, false)],
            "{backend}"
        );
        // Signed in by any case of the name.
        let token = node
            .login(&name("ALICE"), STAFF_PASSWORD, None)
            .await
            .unwrap();
        assert_eq!(token.account.name.as_str(), "alice", "{backend}");
        assert_eq!(
            node.account(&name("Alice")).await.unwrap().role,
            Role::Support,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_revoked_token_and_the_tokens_of_a_disabled_account_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let node = node_on(&url, manual_clock()).await;
        create_account(&node, setup(), "sam", Role::Support)
            .await
            .unwrap();
        let one = node
            .login(&name("sam"), STAFF_PASSWORD, Some("one"))
            .await
            .unwrap();
        let two = node
            .login(&name("sam"), STAFF_PASSWORD, Some("two"))
            .await
            .unwrap();
        let sam = node.authenticate(&one.token).await.unwrap();
        assert_eq!(
            (sam.name.as_str(), sam.role, sam.token.as_ref()),
            ("sam", Role::Support, Some(&one.info.id)),
            "{backend}"
        );
        // Revoked by its owner: refused at once, the other token still works.
        node.revoke_token(Change::new(&sam, "done with it"), &one.info.id)
            .await
            .unwrap();
        let e = node.authenticate(&one.token).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized, "{backend}");
        assert!(e.message.contains("revoked"), "{backend}: {}", e.message);
        node.authenticate(&two.token).await.unwrap();
        // Tokens never issued, or not tokens at all.
        for bogus in [
            format!("lhv_{}", "0".repeat(64)),
            "lhv_short".into(),
            String::new(),
        ] {
            let e = node.authenticate(&bogus).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthorized, "{backend}: {bogus:?}");
        }
        // Disabled: every token is refused and revoked, and sign-in too.
        set_account(&node, "sam", disable(true)).await.unwrap();
        let e = node.authenticate(&two.token).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized, "{backend}");
        let e = node
            .login(&name("sam"), STAFF_PASSWORD, None)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized, "{backend}");
        assert!(e.message.contains("disabled"), "{backend}: {}", e.message);
        let tokens = node
            .tokens(&Actor::database(), &TokensOf::Account(name("sam")))
            .await
            .unwrap();
        assert_eq!(tokens.len(), 2, "{backend}");
        assert!(
            tokens.iter().all(|t| t.revoked_at.is_some()),
            "{backend}: {tokens:?}"
        );
        // Enabled again, the old tokens stay revoked; a new sign-in works.
        set_account(&node, "sam", disable(false)).await.unwrap();
        assert_eq!(
            node.authenticate(&two.token).await.unwrap_err().code,
            ErrorCode::Unauthorized,
            "{backend}"
        );
        let three = node
            .login(&name("sam"), STAFF_PASSWORD, None)
            .await
            .unwrap();
        node.authenticate(&three.token).await.unwrap();
    }
}

#[tokio::test]
async fn disabling_an_account_or_resetting_its_password_ends_its_sessions_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let node = node_on(&url, manual_clock()).await;
        create_account(&node, setup(), "sam", Role::Support)
            .await
            .unwrap();
        let live = |cookie: String| {
            let node = &node;
            async move { node.console_session(&cookie).await.unwrap().is_some() }
        };
        let one = node
            .start_session(&name("sam"), STAFF_PASSWORD)
            .await
            .unwrap();
        let two = node
            .start_session(&name("sam"), STAFF_PASSWORD)
            .await
            .unwrap();
        assert!(live(one.cookie.clone()).await, "{backend}");
        assert!(live(two.cookie.clone()).await, "{backend}");
        assert!(!live("not a cookie".into()).await, "{backend}");
        set_account(&node, "sam", disable(true)).await.unwrap();
        assert!(!live(one.cookie.clone()).await, "{backend}");
        assert!(!live(two.cookie.clone()).await, "{backend}");
        let e = node
            .start_session(&name("sam"), STAFF_PASSWORD)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized, "{backend}");
        // Enabled again: the ended sessions stay ended.
        set_account(&node, "sam", disable(false)).await.unwrap();
        assert!(!live(one.cookie.clone()).await, "{backend}");

        // Sam sets a new password in the console: that session goes on. An admin setting it
        // signs sam out everywhere.
        let three = node
            .start_session(&name("sam"), STAFF_PASSWORD)
            .await
            .unwrap();
        let session = node.console_session(&three.cookie).await.unwrap().unwrap();
        node.update_account(
            Change::new(&session.actor, ""),
            &name("sam"),
            &UpdateAccount {
                password: Some("sam's second password".into()),
                current_password: Some(STAFF_PASSWORD.into()),
                ..UpdateAccount::default()
            },
        )
        .await
        .unwrap();
        assert!(live(three.cookie.clone()).await, "{backend}");
        // A token made with the password sam set: it survives sam's own change, not a reset.
        let token = node
            .login(&name("sam"), "sam's second password", None)
            .await
            .unwrap()
            .token;
        assert!(node.authenticate(&token).await.is_ok(), "{backend}");
        set_account(
            &node,
            "sam",
            UpdateAccount {
                password: Some("set by an admin".into()),
                ..UpdateAccount::default()
            },
        )
        .await
        .unwrap();
        assert!(!live(three.cookie.clone()).await, "{backend}");
        let e = node.authenticate(&token).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized, "{backend}: {e:?}");
        assert!(e.message.contains("revoked"), "{backend}: {}", e.message);
    }
}

#[tokio::test]
async fn the_last_enabled_admin_can_be_neither_disabled_nor_demoted() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let node = node_on(&url, manual_clock()).await;
        create_account(&node, setup(), "root", Role::Admin)
            .await
            .unwrap();
        create_account(&node, setup(), "sam", Role::Support)
            .await
            .unwrap();
        let refused = |result: Result<_, leasehold_web::ApiError>, what: &str| {
            let e = result.unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{backend}: {what}: {e:?}");
            assert!(
                e.message.contains("last enabled admin"),
                "{backend}: {what}: {}",
                e.message
            );
        };
        refused(
            set_account(&node, "root", disable(true)).await,
            "disable root",
        );
        refused(
            set_account(&node, "root", role(Role::Support)).await,
            "demote root",
        );
        // Both at once, too.
        refused(
            set_account(
                &node,
                "root",
                UpdateAccount {
                    role: Some(Role::Support),
                    disabled: Some(true),
                    ..UpdateAccount::default()
                },
            )
            .await,
            "demote and disable root",
        );
        assert_eq!(
            accounts(&node).await,
            vec![
                ("root".into(), Role::Admin, false),
                ("sam".into(), Role::Support, false)
            ],
            "{backend}"
        );
        // With a second admin, root may go; then the second is the last.
        set_account(&node, "sam", role(Role::Admin)).await.unwrap();
        set_account(&node, "root", role(Role::Support))
            .await
            .unwrap();
        refused(
            set_account(&node, "sam", disable(true)).await,
            "disable sam",
        );
        refused(
            set_account(&node, "sam", role(Role::Support)).await,
            "demote sam",
        );
        // A disabled admin does not count.
        set_account(&node, "root", role(Role::Admin)).await.unwrap();
        set_account(&node, "root", disable(true)).await.unwrap();
        refused(
            set_account(&node, "sam", role(Role::Support)).await,
            "demote sam",
        );
        assert_eq!(
            accounts(&node).await,
            vec![
                ("root".into(), Role::Admin, true),
                ("sam".into(), Role::Admin, false)
            ],
            "{backend}"
        );
        // An admin may not disable itself even when another admin is left.
        set_account(&node, "root", disable(false)).await.unwrap();
        let sam = node
            .authenticate(
                &node
                    .login(&name("sam"), STAFF_PASSWORD, None)
                    .await
                    .unwrap()
                    .token,
            )
            .await
            .unwrap();
        let e = node
            .update_account(Change::new(&sam, ""), &name("sam"), &disable(true))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{backend}: {e:?}");
        // It may step down to support while root is an admin.
        node.update_account(Change::new(&sam, ""), &name("sam"), &role(Role::Support))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_bootstrap_token_creates_only_the_first_admin() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let node = node_on(&url, manual_clock()).await;
        let bootstrap = Actor::bootstrap();
        let by_bootstrap = || Change::new(&bootstrap, "first admin");
        assert!(!node.has_admin().await.unwrap(), "{backend}");
        // Only an admin, and nothing but an account.
        let e = create_account(&node, by_bootstrap(), "sam", Role::Support)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{backend}: {e:?}");
        let e = node
            .create_installation(by_bootstrap(), "Acme")
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized, "{backend}: {e:?}");
        let root = create_account(&node, by_bootstrap(), "root", Role::Admin)
            .await
            .unwrap();
        assert_eq!(root.created_by, "bootstrap token", "{backend}");
        assert!(node.has_admin().await.unwrap(), "{backend}");
        // Once an admin exists, the bootstrap token is refused whatever it asks.
        for (account, role) in [("other", Role::Admin), ("sam", Role::Support)] {
            let e = create_account(&node, by_bootstrap(), account, role)
                .await
                .unwrap_err();
            assert_eq!(
                e.code,
                ErrorCode::Unauthorized,
                "{backend}: {account}: {e:?}"
            );
        }
        let e = node
            .create_account(
                by_bootstrap(),
                &CreateAccount {
                    name: name("short"),
                    role: Role::Admin,
                    password: "short".into(),
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized, "{backend}: {e:?}");
        assert_eq!(
            accounts(&node).await,
            vec![("root".into(), Role::Admin, false)],
            "{backend}"
        );
    }
}

#[tokio::test]
async fn console_sessions_end_when_idle_or_too_old() {
    use leasehold_node::{SESSION_IDLE, SESSION_MAX_AGE};
    let (idle, max_age) = (SESSION_IDLE, SESSION_MAX_AGE);
    let minute = chrono::Duration::minutes(1);
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let clock = manual_clock();
        let node = node_on(&url, clock.clone()).await;
        create_account(&node, setup(), "sam", Role::Support)
            .await
            .unwrap();
        let live = |cookie: String| {
            let node = &node;
            async move { node.console_session(&cookie).await.unwrap().is_some() }
        };
        // Idle: each use keeps it open for another SESSION_IDLE.
        let s = node
            .start_session(&name("sam"), STAFF_PASSWORD)
            .await
            .unwrap();
        clock.advance(idle - minute);
        assert!(live(s.cookie.clone()).await, "{backend}");
        clock.advance(idle - minute);
        assert!(live(s.cookie.clone()).await, "{backend}");
        clock.advance(idle);
        assert!(!live(s.cookie.clone()).await, "{backend}: idle");
        // Too old: used every 11 hours, it still ends SESSION_MAX_AGE after the sign-in.
        let s = node
            .start_session(&name("sam"), STAFF_PASSWORD)
            .await
            .unwrap();
        let signed_in = clock.now();
        let step = chrono::Duration::hours(11);
        while clock.now() + step < signed_in + max_age {
            clock.advance(step);
            assert!(live(s.cookie.clone()).await, "{backend}");
        }
        clock.advance(signed_in + max_age - minute - clock.now());
        assert!(live(s.cookie.clone()).await, "{backend}");
        clock.advance(minute);
        assert!(!live(s.cookie.clone()).await, "{backend}: too old");
        // Ended is ended, also for the idle sweep of the next sign-in.
        node.start_session(&name("sam"), STAFF_PASSWORD)
            .await
            .unwrap();
        assert!(!live(s.cookie.clone()).await, "{backend}");
    }
}

#[tokio::test]
async fn a_tokens_last_use_is_written_at_most_once_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let clock = manual_clock();
        let node = node_on(&url, clock.clone()).await;
        create_account(&node, setup(), "sam", Role::Support)
            .await
            .unwrap();
        let token = node
            .login(&name("sam"), STAFF_PASSWORD, None)
            .await
            .unwrap()
            .token;
        let last_used = || async {
            node.tokens(&Actor::database(), &TokensOf::Account(name("sam")))
                .await
                .unwrap()[0]
                .last_used_at
        };
        assert_eq!(last_used().await, None, "{backend}");
        let first = clock.now();
        node.authenticate(&token).await.unwrap();
        assert_eq!(last_used().await, Some(first), "{backend}");
        for seconds in [1, 30, 28] {
            clock.advance(chrono::Duration::seconds(seconds));
            node.authenticate(&token).await.unwrap();
            assert_eq!(last_used().await, Some(first), "{backend}: +{seconds} s");
        }
        clock.advance(chrono::Duration::seconds(1));
        node.authenticate(&token).await.unwrap();
        assert_eq!(
            last_used().await,
            Some(clock.now()),
            "{backend}: a minute on"
        );
    }
}

#[tokio::test]
async fn reassigning_a_guid_resolves_its_fork_until_the_next_one() {
    use leasehold_node::api::EventKind;
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let clock = manual_clock();
        let node = node_on(&url, clock.clone()).await;
        let inst = node.create_installation(setup(), "Acme").await.unwrap();
        let prod = node
            .add_server(setup(), &inst.id, Context::Production)
            .await
            .unwrap();
        let forks = || async {
            node.events(7)
                .await
                .unwrap()
                .events
                .iter()
                .filter(|e| e.kind == EventKind::Fork && e.server == prod.guid)
                .count()
        };
        // A copy of the server syncs after the original: the original is refused, a fork.
        let fork = |instance: u8| {
            let node = &node;
            async move {
                let mut first = FakeServer::new(prod.guid, instance);
                sync(node, &mut first, vec![]).await.unwrap();
                let mut copy = first.clone();
                sync(node, &mut first, vec![]).await.unwrap();
                sync(node, &mut copy, vec![]).await.unwrap();
                assert_eq!(
                    sync(node, &mut first, vec![]).await,
                    Err(ErrorCode::GuidInUse)
                );
            }
        };
        fork(1).await;
        assert!(
            node.server(prod.guid).await.unwrap().fork_open(),
            "{backend}"
        );
        assert_eq!(forks().await, 1, "{backend}");

        clock.advance(chrono::Duration::minutes(5));
        let view = node.reassign_server(setup(), prod.guid).await.unwrap();
        assert_eq!(view.reassigned_at, Some(clock.now()), "{backend}");
        assert_eq!(view.instance_id, None, "{backend}");
        assert!(!view.fork_open(), "{backend}: {view:?}");
        assert!(
            !node.server(prod.guid).await.unwrap().fork_open(),
            "{backend}"
        );
        assert_eq!(forks().await, 0, "{backend}");

        // A new copy later: open again.
        clock.advance(chrono::Duration::minutes(5));
        fork(2).await;
        let view = node.server(prod.guid).await.unwrap();
        assert!(view.fork_open(), "{backend}: {view:?}");
        assert_eq!(view.forks_detected, 2, "{backend}");
        assert_eq!(forks().await, 1, "{backend}");
    }
}

#[tokio::test]
async fn a_sign_in_racing_a_disable_never_enables_the_account_again() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let node = node_on(&url, manual_clock()).await;
        create_account(&node, setup(), "sam", Role::Support)
            .await
            .unwrap();
        // Checking the password takes a while (Argon2); the disable lands in the middle of
        // it or around it. Whatever the order, the account ends disabled and no token or
        // session of it works.
        for round in 0..4 {
            if round > 0 {
                set_account(&node, "sam", disable(false)).await.unwrap();
            }
            let console = round % 2 == 1;
            let sign_in = async {
                if console {
                    node.start_session(&name("sam"), STAFF_PASSWORD)
                        .await
                        .map(|s| s.cookie)
                } else {
                    node.login(&name("sam"), STAFF_PASSWORD, None)
                        .await
                        .map(|t| t.token)
                }
            };
            let disabling = async {
                tokio::task::yield_now().await;
                set_account(&node, "sam", disable(true)).await
            };
            let (signed_in, disabled) = tokio::join!(sign_in, disabling);
            disabled.unwrap();
            assert!(
                node.account(&name("sam")).await.unwrap().disabled,
                "{backend}: round {round}: the sign-in enabled the account again"
            );
            if let Ok(secret) = signed_in {
                if console {
                    assert!(
                        node.console_session(&secret).await.unwrap().is_none(),
                        "{backend}: round {round}: a session of a disabled account"
                    );
                } else {
                    assert!(
                        node.authenticate(&secret).await.is_err(),
                        "{backend}: round {round}: a token of a disabled account"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn two_nodes_on_one_database_share_tokens_revocations_and_console_sessions() {
    let Some((one, two)) = two_nodes().await else {
        return;
    };
    create_account(&one, setup(), "sam", Role::Support)
        .await
        .unwrap();
    let token = one.login(&name("sam"), STAFF_PASSWORD, None).await.unwrap();
    let at_two = two.authenticate(&token.token).await.unwrap();
    assert_eq!(at_two.name, "sam");
    assert_eq!(at_two.token.as_ref(), Some(&token.info.id));
    // Revoked through one node: refused by the other at once.
    let at_one = one.authenticate(&token.token).await.unwrap();
    one.revoke_token(Change::new(&at_one, "lost"), &token.info.id)
        .await
        .unwrap();
    assert_eq!(
        two.authenticate(&token.token).await.unwrap_err().code,
        ErrorCode::Unauthorized
    );
    // A console session begun at one node is live at the other, and ends there when the
    // account is disabled through the first.
    let session = one
        .start_session(&name("sam"), STAFF_PASSWORD)
        .await
        .unwrap();
    let seen = two.console_session(&session.cookie).await.unwrap().unwrap();
    assert_eq!(seen.account.name.as_str(), "sam");
    let other = two.login(&name("sam"), STAFF_PASSWORD, None).await.unwrap();
    set_account(&one, "sam", disable(true)).await.unwrap();
    assert!(two
        .console_session(&session.cookie)
        .await
        .unwrap()
        .is_none());
    assert!(two.authenticate(&other.token).await.is_err());
}

#[tokio::test]
async fn two_nodes_on_one_database_let_exactly_one_of_two_racing_bootstrap_creations_win() {
    for round in 0..5 {
        let Some((one, two)) = two_nodes().await else {
            return;
        };
        let bootstrap = Actor::bootstrap();
        let (a, b) = tokio::join!(
            create_account(
                &one,
                Change::new(&bootstrap, "first"),
                "root-a",
                Role::Admin
            ),
            create_account(
                &two,
                Change::new(&bootstrap, "first"),
                "root-b",
                Role::Admin
            ),
        );
        let lost = match (a, b) {
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => e,
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        };
        assert_eq!(
            lost.code,
            ErrorCode::Unauthorized,
            "round {round}: {lost:?}"
        );
        assert_eq!(accounts(&two).await.len(), 1, "round {round}");
    }
}

#[tokio::test]
async fn two_nodes_on_one_database_never_demote_both_of_the_last_two_admins() {
    let Some((one, two)) = two_nodes().await else {
        return;
    };
    create_account(&one, setup(), "ann", Role::Admin)
        .await
        .unwrap();
    create_account(&one, setup(), "bob", Role::Admin)
        .await
        .unwrap();
    for round in 0..10 {
        let (a, b) = tokio::join!(
            set_account(&one, "ann", role(Role::Support)),
            set_account(&two, "bob", role(Role::Support)),
        );
        assert_eq!(
            [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
            1,
            "round {round}: {a:?} {b:?}"
        );
        let admins: Vec<_> = accounts(&one)
            .await
            .into_iter()
            .filter(|(_, r, disabled)| *r == Role::Admin && !disabled)
            .collect();
        assert_eq!(admins.len(), 1, "round {round}: {admins:?}");
        let demoted = if a.is_ok() { "ann" } else { "bob" };
        set_account(&one, demoted, role(Role::Admin)).await.unwrap();
    }
}
