//! The audit log, on SQLite and PostgreSQL: every change writes exactly the entries it
//! should (who, which role, which way, what, which installations, why, and the thing before
//! and after as the API shows it), a refused change writes none, the log's filters and pages
//! select what they say, and no interface (the API, nor SQL on the database) can change or
//! delete an entry.

use std::collections::BTreeSet;

use leasehold_node::Change;
use leasehold_proto::api::staff::{AccountName, AuditAction, AuditEntry, Role, Via};
use leasehold_proto::{ApiTokenId, Clock, ErrorCode, LicenseId};
use leasehold_testkit::db::node_databases;
use leasehold_testkit::node::{usage_bucket, FakeServer};
use leasehold_testkit::{grant_request, STAFF_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};

use crate::world::{assert_unchanged, bare, code, Call, World};

/// Where an expected value comes from.
#[derive(Debug, Clone)]
enum Source {
    /// Absent.
    Nothing,
    /// `GET path` as the admin: before the change for `before`, after it for `after`.
    Get(String),
    /// The token's line in `GET /v1/admin/tokens?all=true`, before the change.
    Token(ApiTokenId),
    /// A part of the change's answer (a JSON pointer; `""` is all of it).
    Answer(&'static str),
    Is(Value),
}

/// One audit entry a change must write.
#[derive(Debug, Clone)]
struct Expect {
    action: AuditAction,
    target: Source,
    installations: Vec<Source>,
    before: Source,
    after: Source,
}

fn expect(action: AuditAction, target: Source) -> Expect {
    Expect {
        action,
        target,
        installations: Vec::new(),
        before: Source::Nothing,
        after: Source::Nothing,
    }
}

impl Expect {
    fn installation(mut self, id: Source) -> Self {
        self.installations.push(id);
        self
    }
    fn before(mut self, source: Source) -> Self {
        self.before = source;
        self
    }
    fn after(mut self, source: Source) -> Self {
        self.after = source;
        self
    }
}

fn is(text: impl std::fmt::Display) -> Source {
    Source::Is(json!(text.to_string()))
}

/// A change over HTTP and the entries it must write.
struct Case {
    name: &'static str,
    /// The bearer token (none for a sign-in).
    token: Option<String>,
    /// The actor and role the entries must name.
    actor: &'static str,
    role: Role,
    call: Call,
    expect: Vec<Expect>,
}

/// Every mutating route of the admin API, each with the entries it must write. Support's
/// own changes are made by `sam`, the rest by the admin.
fn changes(w: &World) -> Vec<Case> {
    let admin = Some(w.node.admin_token.clone());
    let sam = Some(w.sam.token.clone());
    let acme = &w.acme;
    let server_path = |guid| format!("/v1/admin/servers/{}", bare(guid));
    let license_path = |id: &LicenseId| format!("/v1/admin/licenses/{id}");
    vec![
        Case {
            name: "create an installation (the reason is trimmed)",
            token: admin.clone(),
            actor: "admin",
            role: Role::Admin,
            call: Call::new(Method::POST, "/v1/admin/installations")
                .reason("  new customer, ticket #1\n")
                .body(json!({ "name": "Gamma" })),
            expect: vec![
                expect(AuditAction::InstallationCreate, Source::Answer("/id"))
                    .installation(Source::Answer("/id"))
                    .after(Source::Answer("")),
            ],
        },
        Case {
            name: "add a server (support)",
            token: sam.clone(),
            actor: "sam",
            role: Role::Support,
            call: Call::new(Method::POST, "/v1/admin/servers")
                .reason("Beta's backup, ticket #2")
                .body(json!({ "installation": w.beta, "context": "backup" })),
            expect: vec![expect(AuditAction::ServerAdd, Source::Answer("/guid"))
                .installation(is(&w.beta))
                .after(Source::Answer(""))],
        },
        Case {
            name: "set grace and sync interval (a GUID in the path in lower case, no braces)",
            token: admin.clone(),
            actor: "admin",
            role: Role::Admin,
            call: Call::new(Method::PATCH, server_path(acme.production))
                .reason("renewal — ça va, 契約")
                .body(json!({ "grace_days": 90, "sync_interval_secs": 3600 })),
            expect: vec![expect(AuditAction::ServerUpdate, is(acme.production))
                .installation(is(&acme.id))
                .before(Source::Get(server_path(acme.production)))
                .after(Source::Answer(""))],
        },
        Case {
            name: "reassign a GUID (support)",
            token: sam.clone(),
            actor: "sam",
            role: Role::Support,
            call: Call::new(
                Method::POST,
                format!("{}/reassign", server_path(w.beta_production)),
            )
            .reason("restored from a backup, ticket #3"),
            expect: vec![expect(AuditAction::ServerReassign, is(w.beta_production))
                .installation(is(&w.beta))
                .before(Source::Get(server_path(w.beta_production)))
                .after(Source::Answer(""))],
        },
        Case {
            name: "grant (no reason given)",
            token: admin.clone(),
            actor: "admin",
            role: Role::Admin,
            call: Call::new(Method::POST, "/v1/admin/licenses").body(json!(grant_request(
                w.beta_production,
                "asr.en-US",
                3
            ))),
            expect: vec![expect(AuditAction::LicenseGrant, Source::Answer("/id"))
                .installation(is(&w.beta))
                .after(Source::Answer(""))],
        },
        Case {
            name: "transfer between installations",
            token: admin.clone(),
            actor: "admin",
            role: Role::Admin,
            call: Call::new(Method::POST, format!("{}/transfer", license_path(&w.spare)))
                .reason("moving to Beta")
                .body(json!({ "to": w.beta_production, "from": acme.production })),
            expect: vec![expect(AuditAction::LicenseTransfer, is(&w.spare))
                .installation(is(&acme.id))
                .installation(is(&w.beta))
                .before(Source::Get(license_path(&w.spare)))
                .after(Source::Answer(""))],
        },
        Case {
            name: "revoke",
            token: admin.clone(),
            actor: "admin",
            role: Role::Admin,
            call: Call::new(
                Method::POST,
                format!("{}/revoke", license_path(&w.tts_twin)),
            )
            .reason("no longer needed"),
            expect: vec![expect(AuditAction::LicenseRevoke, is(&w.tts_twin))
                .installation(is(&acme.id))
                .before(Source::Get(license_path(&w.tts_twin)))
                .after(Source::Answer(""))],
        },
        Case {
            name: "set maintenance",
            token: admin.clone(),
            actor: "admin",
            role: Role::Admin,
            call: Call::new(
                Method::POST,
                format!("{}/maintenance", license_path(&acme.asr)),
            )
            .reason("maintenance renewed")
            .body(json!({ "until": "2028-01-31" })),
            expect: vec![expect(AuditAction::LicenseSetMaintenance, is(&acme.asr))
                .installation(is(&acme.id))
                .before(Source::Get(license_path(&acme.asr)))
                .after(Source::Answer(""))],
        },
        Case {
            name: "create an account",
            token: admin.clone(),
            actor: "admin",
            role: Role::Admin,
            call: Call::new(Method::POST, "/v1/admin/accounts")
                .reason("new hire")
                .body(json!({ "name": "Dana", "role": "support", "password": STAFF_PASSWORD })),
            expect: vec![expect(AuditAction::AccountCreate, is("dana")).after(Source::Answer(""))],
        },
        Case {
            name: "sign in over the API (a new token; no reason is taken)",
            token: None,
            actor: "dana",
            role: Role::Support,
            call: Call::new(Method::POST, "/v1/admin/login")
                .body(json!({ "name": "dana", "password": STAFF_PASSWORD, "label": "laptop" })),
            expect: vec![expect(AuditAction::TokenCreate, Source::Answer("/info/id"))
                .after(Source::Answer("/info"))],
        },
        Case {
            name: "create a token (support)",
            token: sam.clone(),
            actor: "sam",
            role: Role::Support,
            call: Call::new(Method::POST, "/v1/admin/tokens")
                .reason("for CI")
                .body(json!({ "label": "ci" })),
            expect: vec![expect(AuditAction::TokenCreate, Source::Answer("/info/id"))
                .after(Source::Answer("/info"))],
        },
        Case {
            name: "revoke one's own token (support)",
            token: sam.clone(),
            actor: "sam",
            role: Role::Support,
            call: Call::new(Method::DELETE, format!("/v1/admin/tokens/{}", w.sam_spare))
                .reason("laptop lost"),
            expect: vec![expect(AuditAction::TokenRevoke, is(&w.sam_spare))
                .before(Source::Token(w.sam_spare.clone()))
                .after(Source::Answer(""))],
        },
        Case {
            name: "revoke another account's token",
            token: admin.clone(),
            actor: "admin",
            role: Role::Admin,
            call: Call::new(
                Method::DELETE,
                format!("/v1/admin/tokens/{}", w.carol_token_id),
            )
            .reason("token leaked"),
            expect: vec![expect(AuditAction::TokenRevoke, is(&w.carol_token_id))
                .before(Source::Token(w.carol_token_id.clone()))
                .after(Source::Answer(""))],
        },
        Case {
            name: "change a role",
            token: admin.clone(),
            actor: "admin",
            role: Role::Admin,
            call: Call::new(Method::PATCH, "/v1/admin/accounts/carol")
                .reason("team lead")
                .body(json!({ "role": "admin" })),
            expect: vec![expect(AuditAction::AccountUpdate, is("carol"))
                .before(Source::Get("/v1/admin/accounts/carol".into()))
                .after(Source::Answer(""))],
        },
        Case {
            name: "disable an account and set its password: two entries",
            token: admin.clone(),
            actor: "admin",
            role: Role::Admin,
            call: Call::new(Method::PATCH, "/v1/admin/accounts/carol")
                .reason("left the company")
                .body(json!({ "disabled": true, "password": "a long random replacement" })),
            expect: vec![
                expect(AuditAction::AccountUpdate, is("carol"))
                    .before(Source::Get("/v1/admin/accounts/carol".into()))
                    .after(Source::Answer("")),
                expect(AuditAction::AccountSetPassword, is("carol")).after(Source::Is(
                    json!({ "account": "carol", "password": "changed" }),
                )),
            ],
        },
        Case {
            name: "set one's own password (support)",
            token: sam.clone(),
            actor: "sam",
            role: Role::Support,
            call: Call::new(Method::PATCH, "/v1/admin/accounts/sam")
                .reason("rotation")
                .body(json!({ "password": SAM_NEW_PASSWORD, "current_password": STAFF_PASSWORD })),
            expect: vec![
                expect(AuditAction::AccountSetPassword, is("sam")).after(Source::Is(
                    json!({ "account": "sam", "password": "changed" }),
                )),
            ],
        },
    ]
}

const SAM_NEW_PASSWORD: &str = "sam's rotated password";

/// The value of `source` now; `answer` is the change's answer (absent before it).
async fn resolve(w: &World, source: &Source, answer: Option<&Value>) -> Option<Value> {
    match source {
        Source::Nothing => None,
        Source::Get(path) => Some(w.get(path).await),
        Source::Token(id) => {
            let all = w.get("/v1/admin/tokens?all=true").await;
            all["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["id"] == json!(id))
                .cloned()
        }
        Source::Answer(pointer) => Some(
            answer
                .expect("the answer is known only after the change")
                .pointer(pointer)
                .unwrap_or_else(|| panic!("the answer has no {pointer}"))
                .clone(),
        ),
        Source::Is(v) => Some(v.clone()),
    }
}

/// Checks `entry` against what is expected of it (`before` resolved before the change).
#[allow(clippy::too_many_arguments)]
async fn check_entry(
    w: &World,
    what: &str,
    entry: &AuditEntry,
    x: &Expect,
    (actor, role, via): (&str, Role, Via),
    reason: &str,
    before: Option<Value>,
    answer: Option<&Value>,
) {
    let backend = w.backend;
    assert_eq!(entry.action, x.action, "{backend}: {what}: {entry:#?}");
    assert_eq!(
        (entry.actor.as_str(), entry.role, entry.via),
        (actor, Some(role), via),
        "{backend}: {what}: who"
    );
    assert_eq!(entry.at, w.node.clock.now(), "{backend}: {what}: when");
    assert_eq!(entry.reason, reason, "{backend}: {what}: reason");
    let target = resolve(w, &x.target, answer).await.unwrap();
    assert_eq!(json!(entry.target), target, "{backend}: {what}: target");
    let mut installations = Vec::new();
    for i in &x.installations {
        installations.push(resolve(w, i, answer).await.unwrap());
    }
    assert_eq!(
        json!(entry.installations),
        json!(installations),
        "{backend}: {what}: installations"
    );
    assert_eq!(entry.before, before, "{backend}: {what}: before");
    let after = resolve(w, &x.after, answer).await;
    assert_eq!(entry.after, after, "{backend}: {what}: after");
    // The servers it touched: a server's own change names it; a license's names the server
    // it was on before and the one it is on after (once when they are one).
    let server_of = |v: &Option<Value>| {
        v.as_ref()
            .and_then(|v| v.get("server"))
            .and_then(|s| s.as_str())
            .map(|s| leasehold_proto::ServerGuid::parse(s).unwrap())
    };
    let mut servers: Vec<leasehold_proto::ServerGuid> = Vec::new();
    if let Ok(g) = leasehold_proto::ServerGuid::parse(&entry.target) {
        servers.push(g);
    }
    for g in [server_of(&entry.before), server_of(&entry.after)]
        .into_iter()
        .flatten()
    {
        if entry.target.starts_with("lic_") && !servers.contains(&g) {
            servers.push(g);
        }
    }
    assert_eq!(entry.servers, servers, "{backend}: {what}: servers");
}

#[tokio::test]
async fn every_change_writes_exactly_its_audit_entries() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let w = World::new(backend, &url).await;
        let mut produced = BTreeSet::new();

        // The first admin, made with the bootstrap token, and the test's own setup.
        let log = w.audit_log().await;
        let first = log.last().unwrap();
        assert_eq!(
            (
                first.action,
                first.actor.as_str(),
                first.role,
                first.via,
                first.target.as_str(),
                first.reason.as_str()
            ),
            (
                AuditAction::AccountCreate,
                "bootstrap token",
                None,
                Via::Bootstrap,
                "admin",
                "first admin"
            ),
            "{backend}: {first:#?}"
        );
        assert_eq!(first.after.as_ref().unwrap()["role"], "admin", "{backend}");
        assert_eq!(
            first.after.as_ref().unwrap()["created_by"],
            "bootstrap token",
            "{backend}"
        );
        let setup = log
            .iter()
            .find(|e| e.action == AuditAction::InstallationCreate)
            .unwrap();
        assert_eq!(
            (
                setup.actor.as_str(),
                setup.role,
                setup.via,
                setup.reason.as_str()
            ),
            (
                "node database",
                Some(Role::Admin),
                Via::Database,
                "test setup"
            ),
            "{backend}"
        );

        for case in changes(&w) {
            let what = case.name;
            let mut befores = Vec::new();
            for x in &case.expect {
                befores.push(resolve(&w, &x.before, None).await);
            }
            let mark = w.last_audit_id().await;
            let (status, answer) = w.send(case.token.as_deref(), &case.call).await;
            assert!(
                status.is_success(),
                "{backend}: {what}: {} {status} {answer}",
                case.call
            );
            let entries = w.audit_since(mark).await;
            assert_eq!(
                entries.len(),
                case.expect.len(),
                "{backend}: {what}: {entries:#?}"
            );
            let reason = case.call.reason.as_deref().unwrap_or("").trim();
            for ((entry, x), before) in entries.iter().zip(&case.expect).zip(befores) {
                check_entry(
                    &w,
                    what,
                    entry,
                    x,
                    (case.actor, case.role, Via::Api),
                    reason,
                    before,
                    Some(&answer),
                )
                .await;
                produced.insert(entry.action);
            }
        }

        // The console's sign-in, and an air-gapped sync answered there.
        let sam = AccountName::parse("sam").unwrap();
        let mark = w.last_audit_id().await;
        let session = w
            .node
            .node
            .start_session(&sam, SAM_NEW_PASSWORD)
            .await
            .unwrap();
        let entries = w.audit_since(mark).await;
        assert_eq!(entries.len(), 1, "{backend}: {entries:#?}");
        check_entry(
            &w,
            "console sign-in",
            &entries[0],
            &expect(AuditAction::SessionSignIn, is("sam")),
            ("sam", Role::Support, Via::Console),
            "",
            None,
            None,
        )
        .await;
        produced.insert(entries[0].action);

        let console = w
            .node
            .node
            .console_session(&session.cookie)
            .await
            .unwrap()
            .unwrap();
        let upload = FakeServer::new(w.acme.backup, 9).upload(vec![usage_bucket(1, "tts", 0, 1)]);
        let uploaded = json!({
            "instance_id": upload.instance_id,
            "last_bundle_serial": 0,
            "usage_buckets": 1,
            "software_version": "test",
        });
        let mark = w.last_audit_id().await;
        w.node
            .node
            .offline_sync(
                Change::new(&console.actor, "air-gapped site, ticket #5"),
                upload,
            )
            .await
            .unwrap();
        let entries = w.audit_since(mark).await;
        assert_eq!(entries.len(), 1, "{backend}: {entries:#?}");
        let backup_path = format!("/v1/admin/servers/{}", bare(w.acme.backup));
        check_entry(
            &w,
            "air-gapped sync",
            &entries[0],
            &expect(AuditAction::ServerOfflineSync, is(w.acme.backup))
                .installation(is(&w.acme.id))
                .after(Source::Get(backup_path)),
            ("sam", Role::Support, Via::Console),
            "air-gapped site, ticket #5",
            Some(uploaded),
            None,
        )
        .await;
        produced.insert(entries[0].action);

        let missing: Vec<AuditAction> = AuditAction::ALL
            .into_iter()
            .filter(|a| !produced.contains(a))
            .collect();
        assert!(
            missing.is_empty(),
            "{backend}: no change above wrote {missing:?}: add one"
        );
        w.node.stop().await;
    }
}

/// Changes refused for their role, their input, or what they name: each answer's status and
/// code.
fn refused_changes(w: &World) -> Vec<(Option<String>, Call, u16, ErrorCode)> {
    let admin = Some(w.node.admin_token.clone());
    let sam = Some(w.sam.token.clone());
    let acme = &w.acme;
    let production = bare(acme.production);
    let unknown_guid = "00000000-0000-0000-0000-00000000abcd";
    let unknown_license = LicenseId::from_random([0xab; 8]);
    let unknown_token = ApiTokenId::from_random([0xcd; 8]);
    let post = |path: String| Call::new(Method::POST, path).reason("refused");
    let patch = |path: String| Call::new(Method::PATCH, path).reason("refused");
    vec![
        // The role.
        (
            sam.clone(),
            post("/v1/admin/licenses".into()).body(json!(grant_request(acme.production, "tts", 1))),
            403,
            ErrorCode::Forbidden,
        ),
        (
            sam.clone(),
            patch("/v1/admin/accounts/sam".into()).body(json!({ "role": "admin" })),
            403,
            ErrorCode::Forbidden,
        ),
        // The input.
        (
            admin.clone(),
            post("/v1/admin/licenses".into()).body(json!(grant_request(acme.production, "tts", 0))),
            400,
            ErrorCode::BadRequest,
        ),
        (
            admin.clone(),
            post("/v1/admin/installations".into()).body(json!({ "name": "  " })),
            400,
            ErrorCode::BadRequest,
        ),
        (
            admin.clone(),
            patch(format!("/v1/admin/servers/{production}")).body(json!({ "grace_days": 10 })),
            400,
            ErrorCode::BadRequest,
        ),
        (
            admin.clone(),
            patch(format!("/v1/admin/servers/{production}")).body(json!({})),
            400,
            ErrorCode::BadRequest,
        ),
        (
            admin.clone(),
            post(format!("/v1/admin/licenses/{}/maintenance", acme.asr))
                .body(json!({ "until": "2028-02-30" })),
            400,
            ErrorCode::BadRequest,
        ),
        (
            admin.clone(),
            Call::new(
                Method::POST,
                format!("/v1/admin/licenses/{}/maintenance", acme.asr),
            )
            .reason("an escape \u{1b}[31m in red")
            .body(json!({ "until": "2028-01-31" })),
            400,
            ErrorCode::BadRequest,
        ),
        (
            admin.clone(),
            post("/v1/admin/accounts".into())
                .body(json!({ "name": "erin", "role": "support", "password": "too short" })),
            400,
            ErrorCode::BadRequest,
        ),
        (
            admin.clone(),
            post("/v1/admin/accounts".into())
                .body(json!({ "name": "Carol", "role": "support", "password": STAFF_PASSWORD })),
            409,
            ErrorCode::AlreadyExists,
        ),
        (
            admin.clone(),
            patch("/v1/admin/accounts/admin".into()).body(json!({ "disabled": true })),
            400,
            ErrorCode::BadRequest,
        ),
        (
            admin.clone(),
            patch("/v1/admin/accounts/admin".into()).body(json!({ "role": "support" })),
            400,
            ErrorCode::BadRequest,
        ),
        (
            sam.clone(),
            patch("/v1/admin/accounts/sam".into()).body(
                json!({ "password": SAM_NEW_PASSWORD, "current_password": "not my password" }),
            ),
            400,
            ErrorCode::BadRequest,
        ),
        (
            sam.clone(),
            post("/v1/admin/tokens".into()).body(json!({ "label": "" })),
            400,
            ErrorCode::BadRequest,
        ),
        (
            admin.clone(),
            post(format!("/v1/admin/licenses/{}/revoke", acme.tts)),
            422,
            ErrorCode::InstallationShape,
        ),
        (
            admin.clone(),
            post(format!("/v1/admin/licenses/{}/transfer", w.spare))
                .body(json!({ "to": acme.backup })),
            422,
            ErrorCode::ContextMismatch,
        ),
        (
            admin.clone(),
            post(format!("/v1/admin/licenses/{}/transfer", w.spare))
                .body(json!({ "to": w.beta_production, "from": w.beta_production })),
            409,
            ErrorCode::StaleRequest,
        ),
        (
            sam.clone(),
            post("/v1/admin/servers".into())
                .body(json!({ "installation": acme.id, "context": "production" })),
            422,
            ErrorCode::InstallationShape,
        ),
        // What they name.
        (
            sam.clone(),
            post(format!("/v1/admin/servers/{unknown_guid}/reassign")),
            404,
            ErrorCode::UnknownServer,
        ),
        (
            admin.clone(),
            patch(format!("/v1/admin/servers/{unknown_guid}")).body(json!({ "grace_days": 90 })),
            404,
            ErrorCode::UnknownServer,
        ),
        (
            admin.clone(),
            post(format!("/v1/admin/licenses/{unknown_license}/revoke")),
            404,
            ErrorCode::NotFound,
        ),
        (
            admin.clone(),
            post(format!("/v1/admin/licenses/{unknown_license}/transfer"))
                .body(json!({ "to": w.beta_production })),
            404,
            ErrorCode::NotFound,
        ),
        (
            admin.clone(),
            patch("/v1/admin/accounts/nobody".into()).body(json!({ "role": "admin" })),
            404,
            ErrorCode::NotFound,
        ),
        (
            admin.clone(),
            Call::new(Method::DELETE, format!("/v1/admin/tokens/{unknown_token}"))
                .reason("refused"),
            404,
            ErrorCode::NotFound,
        ),
        (
            None,
            Call::new(Method::POST, "/v1/admin/login")
                .body(json!({ "name": "sam", "password": "not sam's password" })),
            401,
            ErrorCode::Unauthorized,
        ),
    ]
}

#[tokio::test]
async fn a_refused_change_writes_no_audit_entry_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let w = World::new(backend, &url).await;
        for (token, call, status, error) in refused_changes(&w) {
            let before = w.snapshot().await;
            let (got, body) = w.send(token.as_deref(), &call).await;
            assert_eq!(
                (got.as_u16(), code(&body)),
                (status, Some(error)),
                "{backend}: {call}: {body}"
            );
            assert_unchanged(&before, &w.snapshot().await, &format!("{backend}: {call}"));
        }
        w.node.stop().await;
    }
}

/// Every id `GET /v1/admin/audit?{query}` lists, following `next_before` with pages of
/// `limit`; each page is checked to be newest first and at most `limit` long.
async fn audit_ids(w: &World, token: &str, query: &str, limit: u32) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut before = None::<u64>;
    loop {
        let mut path = format!("/v1/admin/audit?limit={limit}");
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(b) = before {
            path.push_str(&format!("&before={b}"));
        }
        let (status, page) = w.send(Some(token), &Call::new(Method::GET, &path)).await;
        assert!(
            status.is_success(),
            "{}: {path}: {status} {page}",
            w.backend
        );
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= limit as usize, "{}: {path}", w.backend);
        ids.extend(entries.iter().map(|e| e["id"].as_u64().unwrap()));
        match page["next_before"].as_u64() {
            Some(b) => {
                assert_eq!(Some(b), ids.last().copied(), "{}: {path}", w.backend);
                before = Some(b);
            }
            None => break,
        }
    }
    assert!(
        ids.windows(2).all(|p| p[0] > p[1]),
        "{}: {query}: not newest first: {ids:?}",
        w.backend
    );
    ids
}

#[tokio::test]
async fn the_audit_log_filters_by_installation_server_target_actor_and_day_and_pages_back() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let w = World::new(backend, &url).await;
        let admin = w.node.admin_token.clone();
        // A day later: support reassigns Acme's production server, the admin moves a
        // license from Acme to Beta and changes carol.
        w.node.clock.advance(chrono::Duration::days(1));
        let day_two = w.node.clock.now().date_naive();
        for (token, call) in [
            (
                &w.sam.token,
                Call::new(
                    Method::POST,
                    format!("/v1/admin/servers/{}/reassign", bare(w.acme.production)),
                )
                .reason("rebuilt"),
            ),
            (
                &admin,
                Call::new(
                    Method::POST,
                    format!("/v1/admin/licenses/{}/transfer", w.spare),
                )
                .body(json!({ "to": w.beta_production })),
            ),
            (
                &admin,
                Call::new(Method::PATCH, "/v1/admin/accounts/carol")
                    .body(json!({ "role": "admin" })),
            ),
        ] {
            let (status, body) = w.send(Some(token), &call).await;
            assert!(status.is_success(), "{backend}: {call}: {body}");
        }

        let full = w.audit_log().await;
        // The transfer is found under both installations.
        let transfer = full
            .iter()
            .find(|e| e.action == AuditAction::LicenseTransfer)
            .unwrap()
            .id;
        for installation in [&w.acme.id, &w.beta] {
            let ids = audit_ids(&w, &admin, &format!("installation={installation}"), 500).await;
            assert!(ids.contains(&transfer), "{backend}: {installation}");
        }
        let since = day_two.and_hms_opt(0, 0, 0).unwrap().and_utc();
        let acme = w.acme.id.clone();
        let beta = w.beta.clone();
        let production = w.acme.production.to_string();
        let spare = w.spare.to_string();
        type Keep = Box<dyn Fn(&AuditEntry) -> bool>;
        let filters: Vec<(String, Keep)> = vec![
            (
                format!("installation={acme}"),
                Box::new({
                    let acme = acme.clone();
                    move |e| e.installations.contains(&acme)
                }),
            ),
            (
                format!("installation={beta}"),
                Box::new(move |e| e.installations.contains(&beta)),
            ),
            // The server itself, and the licenses granted to it, revoked on it, or moved
            // from or to it.
            (
                format!("server={}", bare(w.acme.production)),
                Box::new({
                    let production = production.clone();
                    let guid = w.acme.production;
                    move |e| e.target == production || e.servers.contains(&guid)
                }),
            ),
            (
                format!("server={}&target={}", bare(w.acme.production), w.acme.tts),
                Box::new({
                    let guid = w.acme.production;
                    let tts = w.acme.tts.to_string();
                    move |e| e.servers.contains(&guid) && e.target == tts
                }),
            ),
            (
                format!("target={spare}"),
                Box::new(move |e| e.target == spare),
            ),
            ("target=carol".into(), Box::new(|e| e.target == "carol")),
            ("actor=SAM".into(), Box::new(|e| e.actor == "sam")),
            (
                "actor=bootstrap%20token".into(),
                Box::new(|e| e.actor == "bootstrap token"),
            ),
            (format!("since={day_two}"), Box::new(move |e| e.at >= since)),
            (
                format!("installation={acme}&actor=admin&since={day_two}"),
                Box::new(move |e| {
                    e.installations.contains(&acme) && e.actor == "admin" && e.at >= since
                }),
            ),
        ];
        for (query, keep) in filters {
            let expected: Vec<u64> = full.iter().filter(|e| keep(e)).map(|e| e.id).collect();
            assert!(
                !expected.is_empty() && expected.len() < full.len(),
                "{backend}: {query} selects {} of {}: make it select some",
                expected.len(),
                full.len()
            );
            assert_eq!(
                audit_ids(&w, &w.sam.token, &query, 500).await,
                expected,
                "{backend}: {query}"
            );
            // The same in pages of two.
            assert_eq!(
                audit_ids(&w, &w.sam.token, &query, 2).await,
                expected,
                "{backend}: {query}, by twos"
            );
        }
        let all: Vec<u64> = full.iter().map(|e| e.id).collect();
        for limit in [1, 3, 7, 500] {
            assert_eq!(
                audit_ids(&w, &admin, "", limit).await,
                all,
                "{backend}: pages of {limit}"
            );
        }
        // The default page is the newest 100 (there are fewer here: all of them).
        let (_, page) = w
            .send(Some(&admin), &Call::new(Method::GET, "/v1/admin/audit"))
            .await;
        assert_eq!(
            page["entries"].as_array().unwrap().len(),
            all.len().min(100)
        );
        w.node.stop().await;
    }
}

#[tokio::test]
async fn malformed_audit_filters_are_refused_and_no_method_changes_the_log() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let w = World::new(backend, &url).await;
        let admin = w.node.admin_token.clone();
        for query in [
            "installation=acme",
            "installation=inst_12",
            "server=not-a-guid",
            "since=2026-13-01",
            "since=yesterday",
            "before=-1",
            "before=abc",
            "limit=0",
            "limit=501",
            "limit=many",
            "colour=blue",
        ] {
            let before = w.snapshot().await;
            let call = Call::new(Method::GET, format!("/v1/admin/audit?{query}"));
            let (status, body) = w.send(Some(&admin), &call).await;
            assert_eq!(
                (status.as_u16(), code(&body)),
                (400, Some(ErrorCode::BadRequest)),
                "{backend}: {call}: {body}"
            );
            assert_unchanged(&before, &w.snapshot().await, &format!("{backend}: {call}"));
        }
        let first = w.audit_log().await.last().unwrap().id;
        for (method, path) in [
            (Method::PUT, "/v1/admin/audit".to_string()),
            (Method::PATCH, "/v1/admin/audit".into()),
            (Method::DELETE, "/v1/admin/audit".into()),
            (Method::POST, "/v1/admin/audit".into()),
        ] {
            let before = w.snapshot().await;
            let call = Call::new(method, path)
                .reason("tidying up")
                .body(json!({ "id": first, "reason": "edited" }));
            let (status, body) = w.send(Some(&admin), &call).await;
            assert_eq!(status.as_u16(), 405, "{backend}: {call}: {body}");
            assert_unchanged(&before, &w.snapshot().await, &format!("{backend}: {call}"));
        }
        // Nor is there a route to one entry.
        let before = w.snapshot().await;
        let call = Call::new(Method::DELETE, format!("/v1/admin/audit/{first}"));
        let (status, body) = w.send(Some(&admin), &call).await;
        assert_eq!(status.as_u16(), 404, "{backend}: {call}: {body}");
        assert_unchanged(&before, &w.snapshot().await, &format!("{backend}: {call}"));
        w.node.stop().await;
    }
}

#[tokio::test]
async fn the_audit_log_cannot_be_changed_or_emptied_with_sql() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let w = World::new(backend, &url).await;
        let log = w.audit_log().await;
        let first = log.last().unwrap().id;
        let mut statements = vec![
            "UPDATE audit_log SET reason = 'edited'".to_string(),
            format!("UPDATE audit_log SET actor = 'someone else' WHERE id = {first}"),
            "DELETE FROM audit_log".into(),
            format!("DELETE FROM audit_log WHERE id = {first}"),
        ];
        let refused = |e: sqlx::Error| {
            let text = e.to_string();
            assert!(text.contains("append-only"), "{backend}: {text}");
        };
        if backend == "postgres" {
            statements.push("TRUNCATE audit_log".into());
            statements.push(format!(
                "INSERT INTO audit_log (id, at, actor, via, action, target, reason) OVERRIDING SYSTEM VALUE \
                 VALUES ({first}, now(), 'x', 'api', 'x', 'x', 'x') \
                 ON CONFLICT (id) DO UPDATE SET reason = 'edited'"
            ));
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            for statement in &statements {
                match sqlx::query(statement).execute(&pool).await {
                    Ok(r) => panic!("{backend}: {statement} changed {} rows", r.rows_affected()),
                    Err(e) => refused(e),
                }
            }
            pool.close().await;
        } else {
            // SQLite's REPLACE deletes the row it conflicts with without firing delete
            // triggers (recursive triggers are off): refused by its own trigger.
            statements.push(format!(
                "INSERT OR REPLACE INTO audit_log (id, at, actor, via, action, target, reason) \
                 VALUES ({first}, '2026-01-01T00:00:00.000000Z', 'x', 'api', 'x', 'x', 'edited')"
            ));
            statements.push(format!(
                "REPLACE INTO audit_log (id, at, actor, via, action, target, reason) \
                 VALUES ({first}, '2026-01-01T00:00:00.000000Z', 'x', 'api', 'x', 'x', 'edited')"
            ));
            statements.push(format!(
                "INSERT INTO audit_log (id, at, actor, via, action, target, reason) \
                 VALUES ({first}, '2026-01-01T00:00:00.000000Z', 'x', 'api', 'x', 'x', 'x') \
                 ON CONFLICT (id) DO UPDATE SET reason = 'edited'"
            ));
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            for statement in &statements {
                match sqlx::query(statement).execute(&pool).await {
                    Ok(r) => panic!("{backend}: {statement} changed {} rows", r.rows_affected()),
                    Err(e) => refused(e),
                }
            }
            pool.close().await;
        }
        assert_eq!(w.audit_log().await, log, "{backend}");
        // Appending still works.
        let (status, body) = w
            .send(
                Some(&w.sam.token),
                &Call::new(Method::POST, "/v1/admin/tokens").body(json!({ "label": "after" })),
            )
            .await;
        assert!(status.is_success(), "{backend}: {body}");
        assert_eq!(w.audit_log().await.len(), log.len() + 1, "{backend}");
        w.node.stop().await;
    }
}
