//! The vendor console through real HTTP with a cookie jar: sign-in and its limits, pages
//! that need a session, CSRF on every form, the confirmation step and its reason, roles
//! (a support account is refused an admin's change at every step, and nothing changes), the
//! audit entry of a console change, searches, the downloads, and every page answering.

use leasehold_proto::api::staff::{AuditAction, Role, Via};
use leasehold_proto::Context;
use leasehold_testkit::browser::{browser, hidden, page, Page};
use leasehold_testkit::node::{setup, usage_bucket, FakeServer, TestNode};
use leasehold_testkit::{grant_request, manual_clock, STAFF_PASSWORD};
use reqwest::{Client, StatusCode};

struct Console {
    base: String,
    b: Client,
    csrf: String,
}

impl Console {
    /// Signs `name` in.
    async fn sign_in(node: &TestNode, name: &str) -> Self {
        let b = browser();
        let base = node.url.clone();
        let form = page(b.get(format!("{base}/console/login")).send().await.unwrap()).await;
        assert_eq!(form.status, StatusCode::OK);
        let login_csrf = hidden(&form.body, "csrf");
        let r = page(
            b.post(format!("{base}/console/login"))
                .form(&[
                    ("csrf", login_csrf.as_str()),
                    ("name", name),
                    ("password", STAFF_PASSWORD),
                    ("next", "/console"),
                ])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(r.location.as_deref(), Some("/console"));
        let home = page(b.get(format!("{base}/console")).send().await.unwrap()).await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        assert!(home.body.contains(name), "{}", home.body);
        let csrf = hidden(&home.body, "csrf");
        Self { base, b, csrf }
    }

    async fn get(&self, path: &str) -> Page {
        page(
            self.b
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Posts `form` with the session's CSRF token.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(form);
        page(
            self.b
                .post(format!("{}{path}", self.base))
                .form(&all)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

#[tokio::test]
async fn pages_need_a_session_and_a_sign_in_is_checked_and_limited() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), manual_clock()).await;
    let b = browser();
    for path in [
        "/console",
        "/console/installations",
        "/console/audit",
        "/console/events",
        "/console/reports/usage",
        "/console/accounts",
        "/console/account",
        "/console/audit.csv",
    ] {
        let r = page(b.get(format!("{}{path}", node.url)).send().await.unwrap()).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            r.location
                .as_deref()
                .unwrap()
                .starts_with("/console/login?next=/console"),
            "{path}: {:?}",
            r.location
        );
    }
    // Pages refuse to be framed by another site, and their forms post only here.
    let r = b
        .get(format!("{}/console/login", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    // `/` is the console.
    let r = page(b.get(format!("{}/", node.url)).send().await.unwrap()).await;
    assert_eq!(r.location.as_deref(), Some("/console"));
    // The stylesheet needs nothing.
    let r = page(
        b.get(format!("{}/console/static/console.css", node.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type.starts_with("text/css"));

    // The sign-in form's own CSRF token must come back with it.
    let r = page(
        b.post(format!("{}/console/login", node.url))
            .form(&[
                ("name", "admin"),
                ("password", STAFF_PASSWORD),
                ("csrf", "x"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Wrong passwords: one message for a wrong name and a wrong password, then a lockout.
    // Each answer is the sign-in form again, with a fresh token of its own.
    let form = page(
        b.get(format!("{}/console/login", node.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let mut csrf = hidden(&form.body, "csrf");
    for name in ["admin", "nobody", "admin", "admin", "nobody"] {
        let r = page(
            b.post(format!("{}/console/login", node.url))
                .form(&[
                    ("name", name),
                    ("password", "wrong password!"),
                    ("csrf", &csrf),
                ])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        assert!(
            r.body.contains("Wrong account name or password"),
            "{}",
            r.body
        );
        csrf = hidden(&r.body, "csrf");
    }
    let r = page(
        b.post(format!("{}/console/login", node.url))
            .form(&[
                ("name", "admin"),
                ("password", STAFF_PASSWORD),
                ("csrf", &csrf),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    // Nothing but the failures happened: no sign-in was recorded.
    let audit = node
        .node
        .audit(leasehold_node::store::AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(audit
        .entries
        .iter()
        .all(|e| e.action != AuditAction::SessionSignIn));
    node.stop().await;
}

#[tokio::test]
async fn a_support_desk_reassigns_a_guid_with_a_reason_and_is_refused_an_admins_change() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), manual_clock()).await;
    node.staff("sam", Role::Support).await;
    let acme = node.standard_installation().await;
    // A copied server: the first copy syncs twice, a restored copy once, the first again.
    let mut first = FakeServer::new(acme.production, 1);
    first
        .sync(&node, vec![usage_bucket(1, "tts", 0, 4)])
        .await
        .unwrap();
    let restored = first.clone();
    first.sync(&node, vec![]).await.unwrap();
    let mut restored = restored;
    restored.sync(&node, vec![]).await.unwrap();
    assert!(
        first.sync(&node, vec![]).await.is_err(),
        "the running copy is refused"
    );

    let sam = Console::sign_in(&node, "sam").await;
    // Search by GUID (lower case, no braces) goes straight to the server, which shows the
    // fork alert.
    let q = acme.production.bare().to_lowercase();
    let r = sam.get(&format!("/console/search?q={q}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let server_page = r.location.unwrap();
    assert_eq!(
        server_page,
        format!("/console/servers/{}", acme.production.bare())
    );
    let r = sam.get(&server_page).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("id=\"fork-alert\""), "{}", r.body);
    // Support sees no admin buttons.
    assert!(!r.body.contains("/grant\""), "{}", r.body);

    // Reassign: the form, then the confirmation (nothing changed yet), then the change.
    let path = format!("{server_page}/reassign");
    assert_eq!(sam.get(&path).await.status, StatusCode::OK);
    let confirm = sam.post(&path, &[]).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Please confirm"), "{}", confirm.body);
    assert!(node.node.server(acme.production).await.unwrap().fork_open());
    // Without a reason: asked again, nothing changed.
    let r = sam
        .post(&path, &[("stage", "confirm"), ("reason", "  ")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("Give a reason"), "{}", r.body);
    assert!(node.node.server(acme.production).await.unwrap().fork_open());
    // Without the CSRF token: refused, nothing changed.
    let r = page(
        sam.b
            .post(format!("{}{path}", sam.base))
            .form(&[("stage", "confirm"), ("reason", "ticket 1")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(node.node.server(acme.production).await.unwrap().fork_open());
    // Confirmed with a reason: done, the fork is resolved, and the audit log says who and why.
    let r = sam
        .post(
            &path,
            &[
                ("stage", "confirm"),
                ("reason", "ticket 4711: restored VM keeps the GUID"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let after = node.node.server(acme.production).await.unwrap();
    assert!(!after.fork_open());
    assert!(after.instance_id.is_none());
    let r = sam.get(&server_page).await;
    assert!(r.body.contains("reassigned"), "the flash: {}", r.body);
    assert!(!r.body.contains("id=\"fork-alert\""));
    let audit = sam
        .get(&format!("/console/audit?server={}", acme.production.bare()))
        .await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(audit
        .body
        .contains("ticket 4711: restored VM keeps the GUID"));
    assert!(audit.body.contains("server.reassign"));
    let entry = node
        .node
        .audit(leasehold_node::store::AuditQuery {
            target: Some(acme.production.to_string()),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .entries
        .remove(0);
    assert_eq!(entry.actor, "sam");
    assert_eq!(entry.via, Via::Console);
    assert_eq!(entry.role, Some(Role::Support));
    assert_eq!(entry.installations, vec![acme.id.clone()]);

    // An admin's change: refused to support at the form, the confirmation and the change.
    let transfer = format!("/console/licenses/{}/transfer", acme.tts);
    let other = node
        .node
        .create_installation(setup(), "Other")
        .await
        .unwrap();
    let target = node
        .node
        .add_server(setup(), &other.id, Context::Production)
        .await
        .unwrap();
    let before = node.node.license(&acme.tts).await.unwrap();
    let entries_before = node
        .node
        .audit(leasehold_node::store::AuditQuery {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .entries
        .len();
    assert_eq!(sam.get(&transfer).await.status, StatusCode::FORBIDDEN);
    let to = target.guid.to_string();
    for form in [
        vec![("to", to.as_str())],
        vec![
            ("to", to.as_str()),
            ("stage", "confirm"),
            ("reason", "sneaky"),
        ],
    ] {
        let r = sam.post(&transfer, &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(r.body.contains("needs the admin role"), "{}", r.body);
    }
    assert_eq!(node.node.license(&acme.tts).await.unwrap(), before);
    let entries_after = node
        .node
        .audit(leasehold_node::store::AuditQuery {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .entries
        .len();
    assert_eq!(
        entries_after, entries_before,
        "a refused change writes no entry"
    );
    // The same for the other admin-only pages.
    for path in [
        format!("/console/licenses/{}/revoke", acme.tts),
        format!("/console/licenses/{}/maintenance", acme.tts),
        format!("{server_page}/settings"),
        format!("{server_page}/grant"),
        "/console/installations/new".to_string(),
        "/console/accounts/new".to_string(),
        "/console/accounts/admin/edit".to_string(),
    ] {
        assert_eq!(sam.get(&path).await.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(
            sam.post(&path, &[("stage", "confirm"), ("reason", "x")])
                .await
                .status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    node.stop().await;
}

#[tokio::test]
async fn an_admin_transfers_grants_and_every_page_and_download_answers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let node = TestNode::start(dir.path(), clock.clone()).await;
    let acme = node.standard_installation().await;
    let other = node
        .node
        .create_installation(setup(), "Globex, Springfield")
        .await
        .unwrap();
    let target = node
        .node
        .add_server(setup(), &other.id, Context::Production)
        .await
        .unwrap();
    // Usage on both servers in one hour: the backup was used beside production.
    let mut prod = FakeServer::new(acme.production, 1);
    prod.sync(&node, vec![usage_bucket(1, "tts", 0, 6)])
        .await
        .unwrap();
    let mut backup = FakeServer::new(acme.backup, 2);
    let mut b = usage_bucket(1, "tts", 0, 2);
    b.backup_use_secs = 900;
    backup.sync(&node, vec![b]).await.unwrap();

    let admin = Console::sign_in(&node, "admin").await;
    // Every page answers.
    let pages = [
        "/console".to_string(),
        "/console/installations".to_string(),
        format!("/console/installations/{}", acme.id),
        format!("/console/servers/{}", acme.production.bare()),
        format!("/console/servers/{}", acme.backup.bare()),
        format!("/console/licenses/{}", acme.tts),
        "/console/events".to_string(),
        "/console/audit".to_string(),
        // The filter form sends every field, empty ones too.
        "/console/audit?installation=&server=&target=&actor=&since=".to_string(),
        format!("/console/reports/usage?installation={}", acme.id),
        "/console/accounts".to_string(),
        "/console/account".to_string(),
        format!("/console/servers/{}/grant", acme.backup.bare()),
        format!("/console/servers/{}/settings", acme.production.bare()),
        format!("/console/servers/{}/offline-sync", acme.production.bare()),
        format!("/console/licenses/{}/transfer", acme.asr),
        format!("/console/installations/{}/servers/new", other.id),
        "/console/accounts/new".to_string(),
        "/console/search?q=acme".to_string(),
    ];
    for p in &pages {
        let r = admin.get(p).await;
        assert_eq!(r.status, StatusCode::OK, "{p}: {}", r.body);
        assert!(r.body.contains("</html>"), "{p}");
    }
    // The installation page charts the overlap and lists it.
    let r = admin
        .get(&format!("/console/installations/{}", acme.id))
        .await;
    assert!(r.body.contains("<svg"), "charts");
    assert!(
        r.body.contains("backup used beside production"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("id=\"no-overlap\""));
    // A search by customer name, in another case.
    let r = admin.get("/console/search?q=GLOBEX").await;
    assert!(r.body.contains("Globex, Springfield"), "{}", r.body);
    let r = admin.get("/console/search?q=no+such+customer").await;
    assert!(r.body.contains("id=\"no-results\""));

    // Transfer tts to the other installation's server: form, confirmation, change.
    let path = format!("/console/licenses/{}/transfer", acme.asr);
    let to = target.guid.to_string();
    // A malformed GUID is refused next to the field, nothing changed.
    let r = admin.post(&path, &[("to", "{nope}")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("aria-invalid=\"true\""));
    let r = admin.post(&path, &[("to", &to)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("another installation"), "{}", r.body);
    let r = admin
        .post(
            &path,
            &[
                ("to", &to),
                ("stage", "confirm"),
                ("reason", "moved to Globex"),
            ],
        )
        .await;
    // The asr license has a backup twin: the node refuses, and says why; nothing changed.
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("backed up by"), "{}", r.body);
    assert_eq!(
        node.node.license(&acme.asr).await.unwrap().server,
        acme.production
    );
    // A license without a backup moves.
    let lone = node
        .grant_directly(&grant_request(acme.production, "asr.de-DE", 3))
        .await;
    let path = format!("/console/licenses/{lone}/transfer");
    let r = admin
        .post(
            &path,
            &[
                ("to", &to),
                ("stage", "confirm"),
                ("reason", "moved to Globex"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(node.node.license(&lone).await.unwrap().server, target.guid);
    let audit = node
        .node
        .audit(leasehold_node::store::AuditQuery {
            installation: Some(other.id.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let e = audit
        .entries
        .iter()
        .find(|e| e.action == AuditAction::LicenseTransfer)
        .unwrap();
    assert_eq!(e.installations, vec![acme.id.clone(), other.id.clone()]);
    assert_eq!(e.reason, "moved to Globex");
    assert_eq!(e.actor, "admin");

    // Grant on the backup server: it must name the production license it parallels.
    let path = format!("/console/servers/{}/grant", acme.backup.bare());
    let r = admin
        .post(
            &path,
            &[
                ("feature", "tts"),
                ("count", "2"),
                ("maintenance_until", "2027-06-30"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body.contains("Choose the production license"),
        "{}",
        r.body
    );

    // The downloads.
    let csv = admin
        .get(&format!(
            "/console/reports/usage.csv?installation={}",
            acme.id
        ))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.content_type.starts_with("text/csv"));
    assert!(csv.disposition.unwrap().starts_with("attachment"));
    assert!(csv.body.starts_with("kind,day_or_hour,feature"));
    assert!(csv.body.contains("simultaneous,"), "{}", csv.body);
    let csv = admin.get("/console/audit.csv").await;
    assert!(csv.body.lines().count() > 5, "{}", csv.body);
    assert!(csv.body.contains("moved to Globex"));
    let csv = admin.get("/console/events.csv").await;
    assert!(csv.body.starts_with("kind,server,"), "{}", csv.body);
    node.stop().await;
}
