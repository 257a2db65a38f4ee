//! Roles on every route of the node, on SQLite and PostgreSQL. The node's OpenAPI
//! description names, per operation, the least role that may call it (`vendor_token` scope
//! `support` or `admin`); these tests walk every operation of it with a request that would
//! succeed (the table below: real ids, real bodies, a reason) and check that the node does
//! what the description says: a support account is refused every admin operation with 403
//! `forbidden` and nothing changed, no token and the bootstrap token get 401 and nothing
//! changed, a support account may call every support operation, an admin every operation.
//! A new route without a line in the table fails them all.

use leasehold_proto::api::staff::Role;
use leasehold_proto::ErrorCode;
use leasehold_testkit::db::node_databases;
use leasehold_testkit::node::usage_bucket;
use leasehold_testkit::{grant_request, NODE_TOKEN, STAFF_PASSWORD};
use leasehold_web::openapi::security_scopes;
use reqwest::Method;
use serde_json::json;
use utoipa::openapi::path::Operation;

use crate::world::{assert_unchanged, bare, code, Call, World};

/// Who may call an operation, as the description says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// No security: license servers' sync, sign-in, health, metrics, the description.
    Public,
    Support,
    Admin,
}

fn scope_of(method: &Method, path: &str, operation: &Operation) -> Scope {
    if operation.security.as_ref().is_none_or(Vec::is_empty) {
        return Scope::Public;
    }
    match security_scopes(operation, "vendor_token").as_slice() {
        [s] if s == "support" => Scope::Support,
        [s] if s == "admin" => Scope::Admin,
        other => panic!(
            "{method} {path}: its security must name exactly one vendor_token scope, support or admin; it names {other:?}"
        ),
    }
}

/// Every operation of the node's description: method, path template and scope.
fn operations() -> Vec<(Method, String, Scope)> {
    let api = leasehold_node::description();
    let mut out = Vec::new();
    for (path, item) in &api.paths.paths {
        let methods = [
            (Method::GET, &item.get),
            (Method::PUT, &item.put),
            (Method::POST, &item.post),
            (Method::DELETE, &item.delete),
            (Method::PATCH, &item.patch),
            (Method::HEAD, &item.head),
            (Method::OPTIONS, &item.options),
            (Method::TRACE, &item.trace),
        ];
        for (method, operation) in methods {
            if let Some(operation) = operation {
                let scope = scope_of(&method, path, operation);
                out.push((method, path.clone(), scope));
            }
        }
    }
    out
}

/// For each operation (method and path template as the description writes them), a request
/// that succeeds for an admin, and for a support account where the scope is `support`.
fn table(w: &World) -> Vec<(Method, &'static str, Call)> {
    let acme = &w.acme;
    let production = bare(acme.production);
    let beta_production = bare(w.beta_production);
    let reason = "ticket #1407 — the customer's request";
    let change = |method: Method, path: String| Call::new(method, path).reason(reason);
    vec![
        (
            Method::GET,
            "/v1/health",
            Call::new(Method::GET, "/v1/health"),
        ),
        (Method::GET, "/metrics", Call::new(Method::GET, "/metrics")),
        (
            Method::GET,
            "/openapi.json",
            Call::new(Method::GET, "/openapi.json"),
        ),
        (
            Method::POST,
            "/v1/sync",
            Call::new(Method::POST, "/v1/sync").body(json!(w
                .beta_server
                .upload(vec![usage_bucket(2, "tts", 1, 3)]))),
        ),
        (
            Method::POST,
            "/v1/admin/login",
            Call::new(Method::POST, "/v1/admin/login").body(json!({
                "name": "carol", "password": STAFF_PASSWORD, "label": "roles test"
            })),
        ),
        (
            Method::POST,
            "/v1/admin/installations",
            change(Method::POST, "/v1/admin/installations".into()).body(json!({ "name": "Gamma" })),
        ),
        (
            Method::GET,
            "/v1/admin/installations",
            Call::new(Method::GET, "/v1/admin/installations"),
        ),
        (
            Method::GET,
            "/v1/admin/installations/{id}/usage",
            Call::new(
                Method::GET,
                format!("/v1/admin/installations/{}/usage", acme.id),
            ),
        ),
        (
            Method::GET,
            "/v1/admin/events",
            Call::new(Method::GET, "/v1/admin/events?silent_days=3"),
        ),
        (
            Method::POST,
            "/v1/admin/servers",
            change(Method::POST, "/v1/admin/servers".into())
                .body(json!({ "installation": w.beta, "context": "backup" })),
        ),
        (
            Method::GET,
            "/v1/admin/servers/{guid}",
            Call::new(Method::GET, format!("/v1/admin/servers/{production}")),
        ),
        (
            Method::PATCH,
            "/v1/admin/servers/{guid}",
            change(Method::PATCH, format!("/v1/admin/servers/{production}"))
                .body(json!({ "grace_days": 90, "sync_interval_secs": 3600 })),
        ),
        (
            Method::POST,
            "/v1/admin/servers/{guid}/reassign",
            change(
                Method::POST,
                format!("/v1/admin/servers/{beta_production}/reassign"),
            ),
        ),
        (
            Method::GET,
            "/v1/admin/servers/{guid}/usage",
            Call::new(
                Method::GET,
                format!("/v1/admin/servers/{beta_production}/usage"),
            ),
        ),
        (
            Method::POST,
            "/v1/admin/licenses",
            change(Method::POST, "/v1/admin/licenses".into()).body(json!(grant_request(
                w.beta_production,
                "asr.en-US",
                3
            ))),
        ),
        (
            Method::GET,
            "/v1/admin/licenses/{id}",
            Call::new(Method::GET, format!("/v1/admin/licenses/{}", acme.tts)),
        ),
        (
            Method::POST,
            "/v1/admin/licenses/{id}/transfer",
            change(
                Method::POST,
                format!("/v1/admin/licenses/{}/transfer", w.spare),
            )
            .body(json!({ "to": w.beta_production, "from": acme.production })),
        ),
        (
            Method::POST,
            "/v1/admin/licenses/{id}/revoke",
            change(
                Method::POST,
                format!("/v1/admin/licenses/{}/revoke", w.tts_twin),
            ),
        ),
        (
            Method::POST,
            "/v1/admin/licenses/{id}/maintenance",
            change(
                Method::POST,
                format!("/v1/admin/licenses/{}/maintenance", acme.asr),
            )
            .body(json!({ "until": "2028-01-31" })),
        ),
        (
            Method::GET,
            "/v1/admin/whoami",
            Call::new(Method::GET, "/v1/admin/whoami"),
        ),
        (
            Method::GET,
            "/v1/admin/accounts",
            Call::new(Method::GET, "/v1/admin/accounts"),
        ),
        (
            Method::POST,
            "/v1/admin/accounts",
            change(Method::POST, "/v1/admin/accounts".into()).body(json!({
                "name": "dana", "role": "support", "password": STAFF_PASSWORD
            })),
        ),
        (
            Method::GET,
            "/v1/admin/accounts/{name}",
            Call::new(Method::GET, "/v1/admin/accounts/carol"),
        ),
        (
            Method::PATCH,
            "/v1/admin/accounts/{name}",
            change(Method::PATCH, "/v1/admin/accounts/carol".into())
                .body(json!({ "role": "admin" })),
        ),
        (
            Method::GET,
            "/v1/admin/tokens",
            Call::new(Method::GET, "/v1/admin/tokens"),
        ),
        (
            Method::POST,
            "/v1/admin/tokens",
            change(Method::POST, "/v1/admin/tokens".into()).body(json!({ "label": "ci" })),
        ),
        (
            Method::DELETE,
            "/v1/admin/tokens/{id}",
            change(Method::DELETE, format!("/v1/admin/tokens/{}", w.sam_spare)),
        ),
        (
            Method::GET,
            "/v1/admin/audit",
            Call::new(Method::GET, "/v1/admin/audit?limit=50"),
        ),
    ]
}

/// Every operation of the description with its scope and the table's request for it.
/// Panics when an operation has no line in the table, or a line no operation.
fn covered(w: &World) -> Vec<(Scope, Call)> {
    let mut table = table(w);
    let mut out = Vec::new();
    for (method, path, scope) in operations() {
        let Some(i) = table
            .iter()
            .position(|(m, p, _)| *m == method && *p == path)
        else {
            panic!("{method} {path} has no request in the table of roles.rs: add one that succeeds for an admin (and for support where its scope is support)");
        };
        let (_, _, call) = table.remove(i);
        out.push((scope, call));
    }
    let stale: Vec<String> = table.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
    assert!(
        stale.is_empty(),
        "the table of roles.rs names operations the description does not have: {stale:?}"
    );
    out
}

/// Refusals of a support account beyond the admin operations: changes to other accounts
/// and to itself that need an admin, other accounts' tokens.
fn more_refusals_for_support(w: &World) -> Vec<Call> {
    let reason = "trying";
    vec![
        Call::new(Method::PATCH, "/v1/admin/accounts/sam")
            .reason(reason)
            .body(json!({ "role": "admin" })),
        Call::new(Method::PATCH, "/v1/admin/accounts/sam")
            .reason(reason)
            .body(json!({ "disabled": true })),
        Call::new(Method::PATCH, "/v1/admin/accounts/carol")
            .reason(reason)
            .body(json!({ "disabled": true })),
        Call::new(Method::PATCH, "/v1/admin/accounts/carol")
            .reason(reason)
            .body(json!({ "password": "a brand new password" })),
        Call::new(Method::PATCH, "/v1/admin/accounts/admin")
            .reason(reason)
            .body(json!({ "role": "support" })),
        Call::new(Method::POST, "/v1/admin/accounts")
            .reason(reason)
            .body(json!({ "name": "eve", "role": "admin", "password": STAFF_PASSWORD })),
        Call::new(
            Method::DELETE,
            format!("/v1/admin/tokens/{}", w.carol_token_id),
        )
        .reason(reason),
        Call::new(Method::GET, "/v1/admin/tokens?all=true"),
        Call::new(Method::GET, "/v1/admin/tokens?account=carol"),
        Call::new(Method::GET, "/v1/admin/tokens?account=admin"),
    ]
}

#[tokio::test]
async fn without_a_token_or_with_the_bootstrap_token_every_protected_route_is_401_and_changes_nothing(
) {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let w = World::new(backend, &url).await;
        let mut checked = 0;
        for (scope, call) in covered(&w) {
            if scope == Scope::Public {
                continue;
            }
            // An admin exists, so the bootstrap token is refused on POST /accounts too.
            for (token, who) in [
                (None, "no token"),
                (Some(NODE_TOKEN), "the bootstrap token"),
            ] {
                let before = w.snapshot().await;
                let (status, body) = w.send(token, &call).await;
                assert_eq!(
                    (status.as_u16(), code(&body)),
                    (401, Some(ErrorCode::Unauthorized)),
                    "{backend}: {call} with {who}: {body}"
                );
                assert_unchanged(
                    &before,
                    &w.snapshot().await,
                    &format!("{backend}: {call} with {who}"),
                );
                checked += 1;
            }
        }
        assert!(checked >= 2 * 20, "{backend}: only {checked} checks");
        w.node.stop().await;
    }
}

#[tokio::test]
async fn a_support_account_is_refused_every_admin_route_with_403_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let w = World::new(backend, &url).await;
        let admin_calls: Vec<Call> = covered(&w)
            .into_iter()
            .filter(|(scope, _)| *scope == Scope::Admin)
            .map(|(_, call)| call)
            .collect();
        assert!(admin_calls.len() >= 8, "{backend}: {admin_calls:?}");
        for call in admin_calls.into_iter().chain(more_refusals_for_support(&w)) {
            let before = w.snapshot().await;
            let (status, body) = w.send(Some(&w.sam.token), &call).await;
            assert_eq!(
                (status.as_u16(), code(&body)),
                (403, Some(ErrorCode::Forbidden)),
                "{backend}: {call} as support: {body}"
            );
            let message = body["message"].as_str().unwrap();
            assert!(
                message.contains("sam is a support account")
                    && message.contains("nothing was changed"),
                "{backend}: {call}: {message}"
            );
            assert_unchanged(
                &before,
                &w.snapshot().await,
                &format!("{backend}: {call} as support"),
            );
        }
        w.node.stop().await;
    }
}

#[tokio::test]
async fn a_support_account_may_call_every_support_route_and_anyone_the_public_ones() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let w = World::new(backend, &url).await;
        let routes = covered(&w);
        assert!(
            routes.iter().filter(|(s, _)| *s == Scope::Support).count() >= 10,
            "{backend}"
        );
        // The public operations first: the sync continues Beta's chain before support
        // reassigns its GUID below.
        for (_, call) in routes.iter().filter(|(s, _)| *s == Scope::Public) {
            let (status, body) = w.send(None, call).await;
            assert!(
                status.is_success(),
                "{backend}: {call} without a token: {status} {body}"
            );
        }
        for (_, call) in routes.iter().filter(|(s, _)| *s == Scope::Support) {
            let (status, body) = w.send(Some(&w.sam.token), call).await;
            assert!(
                status.is_success(),
                "{backend}: {call} as support, which the description allows: {status} {body}"
            );
        }
        w.node.stop().await;
    }
}

#[tokio::test]
async fn an_admin_may_call_every_route() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in node_databases(dir.path()).await {
        let w = World::new(backend, &url).await;
        let routes = covered(&w);
        assert!(routes.iter().any(|(s, _)| *s == Scope::Admin), "{backend}");
        for (scope, call) in routes {
            if scope == Scope::Public {
                continue;
            }
            let (status, body) = w.send(Some(&w.node.admin_token), &call).await;
            assert!(
                status.is_success(),
                "{backend}: {call} as admin: {status} {body}"
            );
        }
        // What the admin did is there to see.
        let carol = w.get("/v1/admin/accounts/carol").await;
        assert_eq!(carol["role"], json!(Role::Admin), "{backend}");
        let dana = w.get("/v1/admin/accounts/dana").await;
        assert_eq!(dana["created_by"], "admin", "{backend}");
        let spare = w.get(&format!("/v1/admin/licenses/{}", w.spare)).await;
        assert_eq!(spare["server"], json!(w.beta_production), "{backend}");
        let twin = w.get(&format!("/v1/admin/licenses/{}", w.tts_twin)).await;
        assert!(!twin["revoked_at"].is_null(), "{backend}");
        w.node.stop().await;
    }
}
