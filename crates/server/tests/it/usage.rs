//! The customer's own usage report: license time counted exactly from what clients held (on
//! the manual clock), kept across a restart, uploaded in the buckets, served by
//! `GET /v1/admin/usage` and by the Usage page's downloads behind the sign-in.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use leasehold_server::api::HourUsage;
use leasehold_testkit::server::{lease_request, options, Synced, TestServer};
use leasehold_testkit::SERVER_TOKEN;
use reqwest::StatusCode;

use super::dashboard::{browser, get, login};

/// The day [`hold_known_times`] uses (the test kit's start day).
fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 2).unwrap()
}

/// Clients hold `tts` for known times across 10:00, refreshing right after each step of the
/// clock: 09:30–09:50 two, 09:50–10:10 three, 10:10–10:15 one, then none. The 09:00 hour
/// has 2×20 + 3×10 = 70 license-minutes, the 10:00 hour 3×10 + 1×5 = 35.
async fn hold_known_times(s: &Synced) {
    hold(s, 1, 2, 0).await;
    s.clock.advance(Duration::minutes(20));
    hold(s, 1, 2, 2).await;
    hold(s, 2, 1, 0).await;
    s.clock.advance(Duration::minutes(20));
    hold(s, 1, 0, 2).await;
    hold(s, 2, 1, 1).await;
    s.clock.advance(Duration::minutes(5));
    hold(s, 2, 0, 1).await;
    s.server.service().flush().await.unwrap();
}

/// One refresh of `client` holding (and wanting) `in_use` of `tts`, keeping `quota`.
async fn hold(s: &Synced, client: u8, in_use: u32, quota: u32) {
    let request = lease_request(client, "tts", in_use, in_use, quota);
    s.server.quota_of(&request, "tts").await;
}

fn expected() -> Vec<HourUsage> {
    let row = |h, license_secs: u64, grants| HourUsage {
        hour: Utc.with_ymd_and_hms(2026, 11, 2, h, 0, 0).unwrap(),
        feature: leasehold_proto::Feature::parse("tts").unwrap(),
        peak_in_use: 3,
        license_hours: license_secs as f64 / 3600.0,
        grants,
        denials: 0,
        denials_while_free: 0,
        backup_use_hours: 0.0,
        open: false,
    };
    vec![row(9, 70 * 60, 3), row(10, 35 * 60, 0)]
}

#[tokio::test]
async fn license_time_is_exact_survives_a_restart_and_reaches_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synced::start(dir.path()).await;
    hold_known_times(&s).await;
    // 10:15: the 10:00 hour is still open; a restart keeps what it counted.
    let Synced {
        clock,
        node,
        installation,
        server,
    } = s;
    server.stop().await;
    let server = TestServer::start(
        options(
            &dir.path().join("s"),
            vec![node.url.clone()],
            Some(installation.production),
        ),
        clock.clone(),
    )
    .await;
    let open = server.admin.usage(Some(day()), Some(day())).await.unwrap();
    let mut want = expected();
    want[1].open = true;
    assert_eq!(open.rows, want);

    clock.advance(Duration::hours(1));
    server.service().flush().await.unwrap();
    let report = server.admin.usage(Some(day()), Some(day())).await.unwrap();
    assert_eq!((report.from, report.to), (day(), day()));
    assert_eq!(report.rows, expected());
    let upload = server.service().upload().await.unwrap();
    let secs: Vec<(u32, u64)> = upload
        .usage
        .iter()
        .map(|b| (b.peak_in_use, b.license_secs))
        .collect();
    assert_eq!(secs, vec![(3, 70 * 60), (3, 35 * 60)]);

    // The node stores what the buckets carry and reports it to the vendor.
    assert!(server.sync_now().await.ok);
    let rows = node
        .admin
        .usage(installation.production)
        .await
        .unwrap()
        .rows;
    let got: Vec<u64> = rows.iter().map(|r| r.license_secs).collect();
    assert_eq!(got, vec![70 * 60, 35 * 60]);
    let vendor = node
        .admin
        .installation_usage(&installation.id, Some(day()), Some(day()))
        .await
        .unwrap();
    assert_eq!(vendor.days.len(), 1, "{vendor:?}");
    assert_eq!(vendor.days[0].license_secs, 105 * 60);
    assert_eq!(vendor.days[0].peak_hours, 6, "the sum of hourly peaks");
    server.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn the_admin_route_and_the_downloads_need_auth_and_refuse_a_bad_period() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synced::start(dir.path()).await;
    hold_known_times(&s).await;
    s.clock.advance(Duration::hours(1));
    s.server.service().flush().await.unwrap();
    let admin = s.server.admin_url.clone();
    let query = "?from=2026-11-02&to=2026-11-02";

    // The admin API: the bearer token, and a period named when wrong.
    let anonymous = reqwest::get(format!("{admin}/v1/admin/usage"))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let http = reqwest::Client::new();
    let ask = |q: &str| {
        http.get(format!("{admin}/v1/admin/usage{q}"))
            .bearer_auth(SERVER_TOKEN)
            .send()
    };
    for (q, names) in [
        ("?from=2026-11-31", "from must be a date"),
        ("?to=tomorrow", "to must be a date"),
        ("?from=2026-11-03&to=2026-11-02", "is after to"),
        ("?from=2025-01-01&to=2026-11-02", "at most 400"),
        ("?since=2026-11-01", "unknown field `since`"),
    ] {
        let r = ask(q).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
        let body = r.text().await.unwrap();
        assert!(body.contains(names), "{q}: {body}");
    }
    // Defaults: the last 30 days, today included.
    let r = s.server.admin.usage(None, None).await.unwrap();
    assert_eq!((r.from, r.to), (day() - Duration::days(29), day()));
    assert_eq!(r.rows, expected());

    // The downloads redirect to the sign-in without a session.
    let b = browser();
    for path in ["/usage/export.csv", "/usage/export.json"] {
        let r = get(&b, &format!("{admin}{path}{query}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert!(r.location.unwrap().starts_with("/login?next="));
    }
    login(&b, &admin, &s.server.dashboard_password()).await;
    let page = get(&b, &format!("{admin}/usage")).await;
    assert!(
        page.body
            .contains("/usage/export.csv?from=2026-10-04&amp;to=2026-11-02"),
        "{}",
        page.body
    );

    let csv = b
        .get(format!("{admin}/usage/export.csv{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    let disposition = csv.headers()["content-disposition"].to_str().unwrap();
    assert_eq!(
        disposition,
        "attachment; filename=\"leasehold-usage-2026-11-02-to-2026-11-02.csv\""
    );
    let text = csv.text().await.unwrap();
    assert_eq!(
        text.lines().next(),
        Some(
            "hour,feature,peak_in_use,license_hours,grants,denials,denials_while_free,backup_use_hours,open"
        )
    );
    let rows: Vec<HourUsage> = ::csv::Reader::from_reader(text.as_bytes())
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, expected());

    let json = b
        .get(format!("{admin}/usage/export.json{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), StatusCode::OK);
    assert!(json.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .ends_with(".json\""));
    let report: leasehold_server::api::UsageExport = json.json().await.unwrap();
    assert_eq!(report.rows, expected());
    assert!(
        !serde_json::to_string(&report).unwrap().contains("client"),
        "counts only, nothing per client"
    );

    let bad = get(
        &b,
        &format!("{admin}/usage/export.csv?from=2026-11-05&to=2026-11-01"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("is after to"), "{}", bad.body);
    s.stop().await;
}
