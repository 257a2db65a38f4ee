//! What the role and audit tests act on, once per backend: a node with its first admin, two
//! support accounts with tokens, the standard installation and a second one whose production
//! server has synced; raw calls of the HTTP API (a token, a reason header, a JSON body); and a
//! snapshot of everything the node can show, to prove that a refused call changed nothing.

use std::collections::BTreeMap;

use leasehold_node::store::AuditQuery;
use leasehold_node::{Actor, Change, TokensOf, MAX_AUDIT_PAGE};
use leasehold_proto::api::staff::{AuditEntry, Role, REASON_HEADER};
use leasehold_proto::{ApiTokenId, Context, ErrorCode, InstallationId, LicenseId, ServerGuid};
use leasehold_testkit::node::{
    setup, usage_bucket, FakeServer, StaffAccount, StandardInstallation, TestNode,
};
use leasehold_testkit::{grant_request, manual_clock};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A node and the data every role and audit test starts from.
pub struct World {
    pub backend: &'static str,
    pub node: TestNode,
    /// `sam`, a support account.
    pub sam: StaffAccount,
    /// A second token of sam's, which sam may revoke.
    pub sam_spare: ApiTokenId,
    /// The id of the token of `carol`, a support account that admins change.
    pub carol_token_id: ApiTokenId,
    /// "Acme": production and backup servers, `tts` and `asr.en-US` with backup twins.
    pub acme: StandardInstallation,
    /// The backup twin of Acme's `tts` (nothing rests on it, so it may be revoked).
    pub tts_twin: LicenseId,
    /// `asr.de-DE` ×5 on Acme's production server without a twin: it may move anywhere.
    pub spare: LicenseId,
    /// "Beta": one production server with `tts` ×4, synced once (bound, with usage).
    pub beta: InstallationId,
    pub beta_production: ServerGuid,
    pub beta_server: FakeServer,
}

impl World {
    pub async fn new(backend: &'static str, url: &str) -> Self {
        let node =
            TestNode::start_with_db(url, manual_clock(), "127.0.0.1:0".parse().unwrap()).await;
        let sam = node.staff("sam", Role::Support).await;
        let carol = node.staff("carol", Role::Support).await;
        let acme = node.standard_installation().await;
        let tts_twin = node
            .node
            .server(acme.backup)
            .await
            .unwrap()
            .licenses
            .iter()
            .find(|l| l.backs_up.as_ref() == Some(&acme.tts))
            .unwrap()
            .id
            .clone();
        let spare = node
            .grant_directly(&grant_request(acme.production, "asr.de-DE", 5))
            .await;
        let beta = node
            .node
            .create_installation(setup(), "Beta")
            .await
            .unwrap()
            .id;
        let beta_production = node
            .node
            .add_server(setup(), &beta, Context::Production)
            .await
            .unwrap()
            .guid;
        node.grant_directly(&grant_request(beta_production, "tts", 4))
            .await;
        let mut beta_server = FakeServer::new(beta_production, 7);
        beta_server
            .sync(&node, vec![usage_bucket(1, "tts", 0, 2)])
            .await
            .unwrap();
        // Each token is used once now: the manual clock stands still, so no later use within
        // the test touches `last_used_at` again (it is written at most once a minute).
        node.node.authenticate(&node.admin_token).await.unwrap();
        let sam_actor = node.node.authenticate(&sam.token).await.unwrap();
        let carol_actor = node.node.authenticate(&carol.token).await.unwrap();
        let sam_spare = node
            .node
            .create_token(Change::new(&sam_actor, "a spare"), "spare")
            .await
            .unwrap()
            .info
            .id;
        Self {
            backend,
            carol_token_id: carol_actor.token.clone().unwrap(),
            node,
            sam,
            sam_spare,
            acme,
            tts_twin,
            spare,
            beta,
            beta_production,
            beta_server,
        }
    }

    /// Sends `call` with `token` as the bearer (none with `None`): the status and the answer
    /// (JSON, or the text as a JSON string when it is not JSON).
    pub async fn send(&self, token: Option<&str>, call: &Call) -> (StatusCode, Value) {
        let mut request = self.node.http.request(
            call.method.clone(),
            format!("{}{}", self.node.url, call.path),
        );
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(reason) = &call.reason {
            request = request.header(REASON_HEADER, encode_reason(reason));
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// `GET {path}` as the admin, which must succeed: the answer.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self
            .send(Some(&self.node.admin_token), &Call::new(Method::GET, path))
            .await;
        assert!(
            status.is_success(),
            "{}: GET {path}: {status} {body}",
            self.backend
        );
        body
    }

    /// The whole audit log, newest first, read in the service (no HTTP, no token).
    pub async fn audit_log(&self) -> Vec<AuditEntry> {
        let mut out = Vec::new();
        let mut before_id = None;
        loop {
            let page = self
                .node
                .node
                .audit(AuditQuery {
                    before_id,
                    limit: MAX_AUDIT_PAGE,
                    ..AuditQuery::default()
                })
                .await
                .unwrap();
            out.extend(page.entries);
            match page.next_before {
                Some(id) => before_id = Some(id),
                None => return out,
            }
        }
    }

    /// The id of the newest audit entry (0 when there is none).
    pub async fn last_audit_id(&self) -> u64 {
        self.audit_log().await.first().map_or(0, |e| e.id)
    }

    /// The entries written after `mark`, oldest first.
    pub async fn audit_since(&self, mark: u64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = self
            .audit_log()
            .await
            .into_iter()
            .filter(|e| e.id > mark)
            .collect();
        out.reverse();
        out
    }

    /// Everything the node shows, read in the service: installations, every server (its
    /// view and usage), every license (the known ones too, revoked or moved), the events,
    /// accounts, every token and the audit log.
    pub async fn snapshot(&self) -> Value {
        let node = &self.node.node;
        let installations = node.list_installations().await.unwrap();
        let mut servers = BTreeMap::new();
        let mut license_ids: BTreeMap<String, LicenseId> =
            [&self.acme.tts, &self.acme.asr, &self.tts_twin, &self.spare]
                .into_iter()
                .map(|id| (id.to_string(), id.clone()))
                .collect();
        for guid in installations
            .iter()
            .flat_map(|i| i.servers.iter().map(|s| s.guid))
        {
            let view = node.server(guid).await.unwrap();
            for license in &view.licenses {
                license_ids.insert(license.id.to_string(), license.id.clone());
            }
            let usage = node.usage(guid).await.unwrap();
            servers.insert(guid.to_string(), json!({ "view": view, "usage": usage }));
        }
        let mut licenses = BTreeMap::new();
        for (key, id) in license_ids {
            licenses.insert(key, node.license(&id).await.unwrap());
        }
        json!({
            "installations": installations,
            "servers": servers,
            "licenses": licenses,
            "events": node.events(7).await.unwrap(),
            "accounts": node.accounts().await.unwrap(),
            "tokens": node.tokens(&Actor::database(), &TokensOf::All).await.unwrap(),
            "audit": self.audit_log().await,
        })
    }
}

/// A request of the node's HTTP API.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// From the root: `/v1/admin/…`.
    pub path: String,
    pub body: Option<Value>,
    /// Sent in the `leasehold-reason` header (percent-encoded).
    pub reason: Option<String>,
}

impl Call {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            body: None,
            reason: None,
        }
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_owned());
        self
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// The reason header's value: UTF-8, percent-encoded.
pub fn encode_reason(reason: &str) -> String {
    percent_encoding::utf8_percent_encode(reason, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A GUID as a path segment: lower case, without braces (the node takes every form).
pub fn bare(guid: ServerGuid) -> String {
    guid.to_string()
        .trim_matches(['{', '}'])
        .to_ascii_lowercase()
}

/// The error code of a refusal's JSON body (none in an answer that is not one).
pub fn code(body: &Value) -> Option<ErrorCode> {
    serde_json::from_value(body["error"].clone()).ok()
}

/// Panics, naming the parts that differ, unless the two snapshots are equal.
pub fn assert_unchanged(before: &Value, after: &Value, what: &str) {
    if before == after {
        return;
    }
    let mut differences = String::new();
    for (key, old) in before.as_object().unwrap() {
        let new = &after[key];
        if old != new {
            differences.push_str(&format!(
                "\n--- {key} before:\n{}\n--- {key} after:\n{}",
                serde_json::to_string_pretty(old).unwrap(),
                serde_json::to_string_pretty(new).unwrap()
            ));
        }
    }
    panic!("{what} changed something:{differences}");
}
