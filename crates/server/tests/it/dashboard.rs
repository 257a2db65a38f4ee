//! The dashboard through real HTTP with a cookie jar: sign-in and its limits, sessions,
//! CSRF, and each page's action.

use chrono::Days;
use leasehold_node::api::GrantLicense;
use leasehold_proto::ServerGuid;
use leasehold_server::api::ServerState;
use leasehold_server::config::FileConfig;
use leasehold_server::DashboardSettings;
use leasehold_testkit::node::TestNode;
use leasehold_testkit::server::{lease_request, options, Synced, TestServer};
use leasehold_testkit::{
    grant_request, maintenance_date, manual_clock, start_time, vendor_key, SERVER_TOKEN,
};
use reqwest::{Client, StatusCode};

pub(super) use leasehold_testkit::browser::{browser, get};
use leasehold_testkit::browser::{hidden, post};

/// Signs in and returns the session's CSRF token.
pub(super) async fn login(b: &Client, admin: &str, password: &str) -> String {
    let form = get(b, &format!("{admin}/login?next=/licenses")).await;
    assert_eq!(form.status, StatusCode::OK);
    let csrf = hidden(&form.body, "csrf");
    let r = post(
        b,
        &format!("{admin}/login"),
        &[
            ("csrf", &csrf),
            ("password", password),
            ("next", "/licenses"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/licenses"));
    let page = get(b, &format!("{admin}/licenses")).await;
    assert_eq!(page.status, StatusCode::OK);
    hidden(&page.body, "csrf")
}

#[tokio::test]
async fn pages_need_a_session_and_failed_logins_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let server = TestServer::start(options(&dir.path().join("s"), vec![], None), clock).await;
    let admin = server.admin_url.clone();
    let b = browser();
    // Pages refuse to be framed by another site, and their forms post only here.
    let r = b.get(format!("{admin}/login")).send().await.unwrap();
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));

    for path in [
        "/licenses",
        "/sync",
        "/clients",
        "/clients/table",
        "/config",
        "/usage",
        "/diagnostics",
        "/setup",
        "/",
    ] {
        let r = get(&b, &format!("{admin}{path}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            r.location.as_deref().unwrap().starts_with("/login?next=/"),
            "{path}: {:?}",
            r.location
        );
    }
    let r = get(&b, &format!("{admin}/sync?x=1")).await;
    assert_eq!(r.location.as_deref(), Some("/login?next=/sync%3Fx%3D1"));
    // A form posted without a session changes nothing and goes to the sign-in page.
    let r = post(
        &b,
        &format!("{admin}/setup"),
        &[("guid", "DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(server.status().await.guid.is_none());
    // What stays open: the sign-in page, the stylesheet, metrics, health and the token API.
    assert_eq!(
        get(&b, &format!("{admin}/login")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&b, &format!("{admin}/static/dashboard.css"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&b, &format!("{admin}/metrics")).await.status,
        StatusCode::OK
    );
    let health = get(&b, &format!("{admin}/v1/health")).await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(
        health.body.contains(r#""service":"server""#),
        "one JSON shape for every service: {}",
        health.body
    );
    assert_eq!(server.status().await.state, ServerState::Unconfigured);

    // A sign-in form without its token is refused.
    let r = post(&b, &format!("{admin}/login"), &[("password", "whatever")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    for attempt in 1..=5 {
        let form = get(&b, &format!("{admin}/login")).await;
        let csrf = hidden(&form.body, "csrf");
        let r = post(
            &b,
            &format!("{admin}/login"),
            &[("csrf", &csrf), ("password", "wrong password")],
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
        assert!(r.body.contains("Wrong password"), "{}", r.body);
    }
    let form = get(&b, &format!("{admin}/login")).await;
    let csrf = hidden(&form.body, "csrf");
    // Refused for now even with the right password.
    let password = server.dashboard_password();
    let r = post(
        &b,
        &format!("{admin}/login"),
        &[("csrf", &csrf), ("password", &password)],
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.body.contains("Too many failed sign-ins"), "{}", r.body);
    assert_eq!(
        get(&b, &format!("{admin}/licenses")).await.status,
        StatusCode::SEE_OTHER
    );
    server.stop().await;
}

#[tokio::test]
async fn login_shows_the_licenses_and_logout_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let node = TestNode::start(&dir.path().join("n"), clock.clone()).await;
    let prod = node.standard_installation().await.production;
    // Expires within 30 days: marked in words.
    let expires = start_time().date_naive() + Days::new(18);
    node.grant_directly(&GrantLicense {
        expires: Some(expires),
        ..grant_request(prod, "asr.de-DE", 3)
    })
    .await;
    let server = TestServer::start(
        options(&dir.path().join("s"), vec![node.url.clone()], Some(prod)),
        clock.clone(),
    )
    .await;
    server
        .wait_for("first sync", |s| s.state == ServerState::Ok)
        .await;
    let admin = server.admin_url.clone();
    let b = browser();
    let csrf = login(&b, &admin, &server.dashboard_password()).await;

    let page = get(&b, &format!("{admin}/licenses")).await;
    let maintenance = maintenance_date().to_string();
    for text in [
        "tts",
        "asr.en-US",
        &maintenance,
        "⚠ license ends in 18 days",
        "1 license needs attention",
        "production",
        &prod.to_string(),
        "Serving licenses",
        "Log out",
    ] {
        assert!(
            page.body.contains(text),
            "{text} missing from {}",
            page.body
        );
    }
    assert!(get(&b, &format!("{admin}/")).await.location.as_deref() == Some("/licenses"));
    // Every page renders.
    for path in [
        "/sync",
        "/clients",
        "/clients/table",
        "/usage",
        "/diagnostics",
        "/setup",
        "/config",
    ] {
        let r = get(&b, &format!("{admin}{path}")).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    }
    let setup = get(&b, &format!("{admin}/setup")).await;
    assert!(setup.body.contains("production") && setup.body.contains("Change the server GUID"));
    // Clients: one client leases, the table fragment shows it.
    server
        .lease(&lease_request(7, "tts", 1, 2, 0))
        .await
        .unwrap();
    let table = get(&b, &format!("{admin}/clients/table")).await;
    assert!(
        table.body.contains("tts") && !table.body.contains("<html"),
        "{}",
        table.body
    );
    let clients = get(&b, &format!("{admin}/clients")).await;
    assert!(
        clients.body.contains("/clients/table") && clients.body.contains("1 client "),
        "{}",
        clients.body
    );

    let r = post(&b, &format!("{admin}/logout"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/login?signed_out=1"));
    let r = get(&b, &format!("{admin}/licenses")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(get(&b, &format!("{admin}/login?signed_out=1"))
        .await
        .body
        .contains("signed out"));
    server.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn forms_need_the_csrf_token_and_a_bad_guid_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let node = TestNode::start(&dir.path().join("n"), clock.clone()).await;
    let prod = node.standard_installation().await.production;
    let server = TestServer::start(
        options(&dir.path().join("s"), vec![node.url.clone()], None),
        clock.clone(),
    )
    .await;
    let admin = server.admin_url.clone();
    let b = browser();
    let csrf = login(&b, &admin, &server.dashboard_password()).await;
    let guid = prod.to_string();

    let setup = get(&b, &format!("{admin}/setup")).await;
    assert!(
        setup.body.contains("Enter the server GUID"),
        "{}",
        setup.body
    );
    for form in [
        vec![("guid", guid.as_str())],
        vec![("guid", guid.as_str()), ("csrf", "0000")],
    ] {
        let r = post(&b, &format!("{admin}/setup"), &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(
            r.body.contains("CSRF") && r.body.contains("Nothing was changed"),
            "{}",
            r.body
        );
    }
    assert!(server.status().await.guid.is_none());
    let r = post(&b, &format!("{admin}/sync"), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = post(&b, &format!("{admin}/logout"), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&b, &format!("{admin}/licenses")).await.status,
        StatusCode::OK
    );

    let r = post(
        &b,
        &format!("{admin}/setup"),
        &[("csrf", &csrf), ("guid", "not-a-guid")],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body.contains("guid-error") && r.body.contains("not-a-guid"),
        "{}",
        r.body
    );
    assert!(server.status().await.guid.is_none());

    let r = post(
        &b,
        &format!("{admin}/setup"),
        &[("csrf", &csrf), ("guid", &guid)],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = get(&b, &format!("{admin}/setup")).await;
    assert!(page.body.contains("Server GUID set to"), "{}", page.body);
    assert_eq!(server.status().await.guid, Some(prod));
    // The flash shows once.
    assert!(!get(&b, &format!("{admin}/setup"))
        .await
        .body
        .contains("Server GUID set to"));
    let s = server
        .wait_for("sync after setup", |s| s.state == ServerState::Ok)
        .await;
    assert_eq!(s.guid, Some(ServerGuid::parse(&guid).unwrap()));
    let page = get(&b, &format!("{admin}/setup")).await;
    assert!(page.body.contains("production"), "{}", page.body);

    // Started without --config: the configuration page says where settings come from.
    let config = get(&b, &format!("{admin}/config")).await;
    assert!(
        config
            .body
            .contains("started without <code>--config</code>"),
        "{}",
        config.body
    );
    assert!(config.body.contains("leasehold-server.toml"));
    server.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn sync_now_shows_the_outcome_and_what_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let Synced { node, server, .. } = Synced::start(dir.path()).await;
    let admin = server.admin_url.clone();
    let b = browser();
    let csrf = login(&b, &admin, &server.dashboard_password()).await;

    let r = post(&b, &format!("{admin}/sync"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/sync"));
    let page = get(&b, &format!("{admin}/sync")).await;
    assert!(
        page.body.contains(&format!("Synced with {}", node.url)),
        "{}",
        page.body
    );
    assert!(page.body.contains("bundle serial 2"), "{}", page.body);
    assert!(
        page.body.contains("What we send") && page.body.contains("server_guid"),
        "{}",
        page.body
    );
    assert!(page.body.contains("60 days"), "{}", page.body);
    assert_eq!(server.status().await.bundle_serial, 2);

    // A failing sync says so.
    node.stop().await;
    let r = post(&b, &format!("{admin}/sync"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = get(&b, &format!("{admin}/sync")).await;
    assert!(page.body.contains("Sync did not succeed"), "{}", page.body);
    server.stop().await;
}

#[tokio::test]
async fn config_edits_are_checked_written_atomically_and_the_node_list_applies() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let node = TestNode::start(&dir.path().join("n"), clock.clone()).await;
    let prod = node.standard_installation().await.production;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let key = vendor_key().public_key_string();
    let conf_dir = dir.path().join("etc");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let path = conf_dir.join("server.toml");
    std::fs::write(
        &path,
        format!(
            "nodes = [\"{dead}\"]\nvendor_keys = [\"{key}\"]\nadmin_token = \"kept-secret\"\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n"
        ),
    )
    .unwrap();
    let server = TestServer::start_with_dashboard(
        options(&dir.path().join("s"), vec![dead.clone()], Some(prod)),
        clock.clone(),
        DashboardSettings {
            config_path: Some(path.clone()),
            vendor_keys: vec![key.clone()],
            ..Default::default()
        },
    )
    .await;
    let admin = server.admin_url.clone();
    let b = browser();
    let csrf = login(&b, &admin, &server.dashboard_password()).await;
    assert!(!server.sync_now().await.ok, "only a dead node so far");

    let page = get(&b, &format!("{admin}/config")).await;
    assert!(
        page.body.contains(&dead) && page.body.contains(&path.display().to_string()),
        "{}",
        page.body
    );
    assert!(!page.body.contains("kept-secret"));
    let before = std::fs::read_to_string(&path).unwrap();

    // Wrong values: named next to their field, nothing written, nothing applied.
    let r = post(
        &b,
        &format!("{admin}/config"),
        &[
            ("csrf", &csrf),
            ("nodes", "ftp://nope"),
            ("listen", "localhost"),
            ("admin_listen", "127.0.0.1:0"),
            ("node_timeout", "soon"),
            ("vendor_keys", &key),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    for id in ["nodes-error", "listen-error", "timeout-error"] {
        assert!(r.body.contains(id), "{id}: {}", r.body);
    }
    assert!(r.body.contains("ftp://nope"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    // Without the CSRF token: refused, unchanged.
    let r = post(
        &b,
        &format!("{admin}/config"),
        &[("nodes", node.url.as_str())],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);

    let nodes = format!("{}/\n\n", node.url);
    let r = post(
        &b,
        &format!("{admin}/config"),
        &[
            ("csrf", &csrf),
            ("nodes", &nodes),
            ("listen", "127.0.0.1:0"),
            ("admin_listen", "127.0.0.1:18080"),
            ("node_timeout", "5s"),
            ("vendor_keys", &key),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = get(&b, &format!("{admin}/config")).await;
    assert!(
        page.body.contains("Saved to") && page.body.contains("Restart needed"),
        "{}",
        page.body
    );
    assert!(page.body.contains("admin_listen"), "{}", page.body);

    let written = FileConfig::load(&path).unwrap();
    assert_eq!(written.nodes, Some(vec![node.url.clone()]));
    assert_eq!(written.admin_listen.as_deref(), Some("127.0.0.1:18080"));
    assert_eq!(written.admin_token.as_deref(), Some("kept-secret"));
    assert_eq!(written.vendor_keys, Some(vec![key.clone()]));
    let names: Vec<_> = std::fs::read_dir(&conf_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["server.toml"], "no temporary file is left");

    // The node list is in force without a restart.
    let o = server.sync_now().await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.node.as_deref(), Some(node.url.as_str()));
    server.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn usage_charts_node_checks_and_the_support_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let Synced {
        clock,
        node,
        installation,
        server,
    } = Synced::start(dir.path()).await;
    let prod = installation.production;
    // Some use this hour, then an hour later more, with a denial.
    server
        .lease(&lease_request(1, "tts", 0, 4, 0))
        .await
        .unwrap();
    server
        .lease(&lease_request(1, "tts", 3, 4, 4))
        .await
        .unwrap();
    clock.advance(chrono::Duration::hours(1));
    let mut r = lease_request(1, "tts", 4, 5, 4);
    r.features.values_mut().for_each(|f| f.denied = 2);
    server.lease(&r).await.unwrap();
    server.service().flush().await.unwrap();

    let admin = server.admin_url.clone();
    let b = browser();
    login(&b, &admin, &server.dashboard_password()).await;
    let usage = get(&b, &format!("{admin}/usage")).await;
    assert_eq!(usage.status, StatusCode::OK);
    assert!(usage.body.contains("<svg"), "{}", usage.body);
    assert!(usage.body.contains("tts: concurrent use, last 24 hours"));
    assert!(usage.body.contains("tts: concurrent use, last 30 days"));
    assert!(
        usage.body.contains(
            "Highest use 4 of 10 licensed; 2 requests denied, 2 of them while a license was free."
        ),
        "{}",
        usage.body
    );
    // The same count for Prometheus.
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("leasehold_server_denials_while_free_total{feature=\"tts\"}"),
        "{metrics}"
    );

    let diag = get(&b, &format!("{admin}/diagnostics?check=nodes")).await;
    assert_eq!(diag.status, StatusCode::OK);
    for step in ["DNS", "TCP connect", "HTTP health", "clock"] {
        assert!(
            diag.body.contains(&format!("{} — {step}", node.url)),
            "{step}: {}",
            diag.body
        );
    }
    assert!(diag.body.contains("Data directory"));

    let bundle = b
        .get(format!("{admin}/diagnostics/bundle"))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), StatusCode::OK);
    assert!(bundle
        .headers()
        .get("content-disposition")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let text = bundle.text().await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["status"]["guid"], serde_json::json!(prod.to_string()));
    assert_eq!(json["node_checks"][0]["url"], serde_json::json!(node.url));
    assert!(
        !text.contains(SERVER_TOKEN),
        "the admin token leaked into the support bundle"
    );

    // Without a session the bundle is not served.
    let anonymous = browser()
        .get(format!("{admin}/diagnostics/bundle"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    server.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn the_clients_page_and_api_are_paginated() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synced::start(dir.path()).await;
    let server = &s.server;
    for n in 1..=150u8 {
        server
            .lease(&lease_request(n, "tts", 0, 0, 0))
            .await
            .unwrap();
    }
    // The API: a page, and the total in a header.
    let page = |q: &str| {
        let url = format!("{}/v1/admin/clients{q}", server.admin_url);
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(leasehold_testkit::SERVER_TOKEN)
                .send()
                .await
                .unwrap()
        }
    };
    let r = page("?offset=140&limit=50").await;
    assert_eq!(r.headers()["x-total-count"], "150");
    let rows: Vec<leasehold_server::api::ClientStatus> = r.json().await.unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(
        page("")
            .await
            .json::<Vec<serde_json::Value>>()
            .await
            .unwrap()
            .len(),
        150
    );
    for bad in ["?limit=0", "?limit=10001", "?offset=-1", "?limit=x"] {
        assert_eq!(page(bad).await.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    // The dashboard: 100 a page, with links.
    let b = browser();
    login(&b, &server.admin_url, &server.dashboard_password()).await;
    let first = get(&b, &format!("{}/clients", server.admin_url)).await;
    assert!(
        first.body.contains("Clients 1–100 of 150"),
        "{}",
        first.body
    );
    assert!(
        first.body.contains("/clients?sort=name&#38;page=2") && !first.body.contains("page=0"),
        "{}",
        first.body
    );
    let second = get(&b, &format!("{}/clients/table?page=2", server.admin_url)).await;
    assert!(
        second.body.contains("Clients 101–150 of 150"),
        "{}",
        second.body
    );
    assert!(
        second
            .body
            .contains("href=\"/clients?sort=name\" rel=\"prev\"")
            && !second.body.contains("page=3"),
        "{}",
        second.body
    );
    // A search and an order are kept from page to page.
    let searched = get(
        &b,
        &format!("{}/clients?q=TTS&sort=in_use", server.admin_url),
    )
    .await;
    assert!(
        searched.body.contains("Clients 1–100 of 150")
            && searched
                .body
                .contains("/clients?sort=in_use&#38;q=TTS&#38;page=2"),
        "{}",
        searched.body
    );
    let none = get(
        &b,
        &format!("{}/clients?q=nothing+like+this", server.admin_url),
    )
    .await;
    assert!(
        none.body.contains("No client matches “nothing like this”"),
        "{}",
        none.body
    );
    let beyond = get(&b, &format!("{}/clients?page=9", server.admin_url)).await;
    assert!(
        beyond.body.contains("No clients on this page: 150 in all"),
        "{}",
        beyond.body
    );
    let junk = get(&b, &format!("{}/clients?page=abc", server.admin_url)).await;
    assert!(junk.body.contains("Clients 1–100 of 150"));
}

/// The value of an unlabelled metric in Prometheus text.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A file system of `size` mounted (tmpfs) on `dir` until dropped; `None` where the test may
/// not mount (not root), after saying so; in CI it must be able to.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self(dir.to_path_buf())),
            other => {
                let why = format!("cannot mount a small tmpfs (needs root): {other:?}");
                assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{why}");
                eprintln!("skipped: {why}");
                None
            }
        }
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.flush();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_data_directory_is_reported_by_status_banner_diagnostics_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&dir.path().join("disk"), "4m") else {
        return;
    };
    let clock = manual_clock();
    let node = TestNode::start(&dir.path().join("n"), clock.clone()).await;
    let prod = node.standard_installation().await.production;
    let server = TestServer::start_with_dashboard(
        options(&disk.0.join("s"), vec![node.url.clone()], Some(prod)),
        clock.clone(),
        DashboardSettings::default(),
    )
    .await;
    server
        .wait_for("the first sync", |s| s.state == ServerState::Ok)
        .await;
    let request = lease_request(1, "tts", 2, 2, 0);
    let granted = server.lease(&request).await.unwrap();
    assert_eq!(server.status().await.storage_failing_since, None);

    let filler = disk.fill();
    let failing = server
        .wait_for("writes to fail", |s| s.storage_failing_since.is_some())
        .await;
    assert!(failing.storage_error.is_some(), "{failing:?}");
    // Licenses are still served: a client keeping what it holds is answered.
    let mut keep = request.clone();
    keep.seq = 1;
    keep.epoch = granted.epoch;
    keep.features.values_mut().for_each(|f| f.quota = 2);
    server.lease(&keep).await.unwrap();

    let b = browser();
    let admin = server.admin_url.clone();
    login(&b, &admin, &server.dashboard_password()).await;
    let page = get(&b, &format!("{admin}/licenses")).await;
    assert!(
        page.body.contains("id=\"storage-banner\"") && page.body.contains("cannot be saved"),
        "no banner: {}",
        page.body
    );
    let diagnostics = get(&b, &format!("{admin}/diagnostics")).await;
    assert!(
        diagnostics.body.contains("Data directory")
            && diagnostics.body.contains("cannot be written since"),
        "{}",
        diagnostics.body
    );
    let metrics = get(&b, &format!("{admin}/metrics")).await.body;
    assert_eq!(
        gauge(&metrics, "leasehold_server_storage_healthy"),
        Some(0.0),
        "{metrics}"
    );
    let since = failing.storage_failing_since.unwrap().timestamp() as f64;
    assert_eq!(
        gauge(
            &metrics,
            "leasehold_server_storage_failing_since_timestamp_seconds"
        ),
        Some(since),
        "{metrics}"
    );

    // Space again: the next flush saves what was kept, and every surface says so.
    std::fs::remove_file(filler).unwrap();
    server
        .wait_for("writes to succeed again", |s| {
            s.storage_failing_since.is_none()
        })
        .await;
    let page = get(&b, &format!("{admin}/licenses")).await;
    assert!(!page.body.contains("storage-banner"), "{}", page.body);
    let metrics = get(&b, &format!("{admin}/metrics")).await.body;
    assert_eq!(
        gauge(&metrics, "leasehold_server_storage_healthy"),
        Some(1.0),
        "{metrics}"
    );
    server.stop().await;
    node.stop().await;
}
