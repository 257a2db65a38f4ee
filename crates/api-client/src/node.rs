//! A license node: `POST /v1/sync` (no credentials: the sync-token chain is the credential)
//! and the vendor admin API (`/v1/admin/…`, a vendor account's personal token; the node's
//! bootstrap token only creates the first admin account). [`NodeClient::with_reason`] gives
//! a client that sends the reason of its changes, which the node records in its audit log.

use std::time::Duration;

use chrono::NaiveDate;

use leasehold_proto::api::node::{
    AddServer, CreateInstallation, GrantLicense, InstallationList, InstallationView, LicenseView,
    ServerView, SetMaintenance, TransferLicense, UpdateServer, UsageReport,
};
use leasehold_proto::api::staff::{
    check_reason, AccountList, AccountName, AccountView, AuditPage, CreateAccount, CreateToken,
    Login, NewToken, TokenList, TokenView, UpdateAccount, Whoami, REASON_HEADER,
};
use leasehold_proto::{
    ApiTokenId, Context, Health, InstallationId, LicenseId, ServerGuid, SignedEnvelope, SyncUpload,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};

use crate::endpoint::{http_client, Auth, Body, Endpoint};
use crate::{ApiClientError, Result};

const SERVICE: &str = "license node";
const TOKEN_HINT: &str = "this command needs a vendor account's token: sign in with `leasehold vendor login`, or pass --token TOKEN or set LEASEHOLD_VENDOR_TOKEN";

/// What the reason header escapes: controls (line breaks), `%` itself and, always, every
/// non-ASCII byte; the rest of printable ASCII stays readable in the header.
const REASON_ESCAPE: &AsciiSet = &CONTROLS.add(b'%');
/// What a query value or path segment escapes: all but RFC 3986's unreserved characters.
const COMPONENT_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Which audit entries to fetch (`GET /v1/admin/audit`); every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Entries that touched this installation.
    pub installation: Option<InstallationId>,
    /// Entries about this server.
    pub server: Option<ServerGuid>,
    /// Entries about this target (a license id, an account name, a token id); not with
    /// `server`.
    pub target: Option<String>,
    /// Entries by this actor (an account name, `bootstrap token`, `node database`).
    pub actor: Option<String>,
    /// Entries from this UTC day on.
    pub since: Option<NaiveDate>,
    /// Entries older than this id (the `next_before` of the page before).
    pub before: Option<u64>,
    /// At most this many (the node allows 1 to 500; its default is 100).
    pub limit: Option<u32>,
}

impl AuditFilter {
    /// The query string, `?` included (empty without filters).
    fn query(&self) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(i) = &self.installation {
            pairs.push(("installation", i.to_string()));
        }
        if let Some(g) = self.server {
            pairs.push(("server", g.bare()));
        }
        if let Some(t) = &self.target {
            pairs.push(("target", t.clone()));
        }
        if let Some(a) = &self.actor {
            pairs.push(("actor", a.clone()));
        }
        if let Some(d) = self.since {
            pairs.push(("since", d.to_string()));
        }
        if let Some(b) = self.before {
            pairs.push(("before", b.to_string()));
        }
        if let Some(l) = self.limit {
            pairs.push(("limit", l.to_string()));
        }
        query_string(&pairs)
    }
}

fn query_string(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.extend(utf8_percent_encode(v, COMPONENT_ESCAPE));
    }
    out
}

fn account_path(name: &AccountName) -> String {
    format!(
        "v1/admin/accounts/{}",
        utf8_percent_encode(name.as_str(), COMPONENT_ESCAPE)
    )
}

#[derive(Debug, Clone)]
pub struct NodeClient {
    endpoint: Endpoint,
}

fn server_path(guid: ServerGuid) -> String {
    format!("v1/admin/servers/{}", guid.bare())
}

fn license_path(id: &LicenseId, action: &str) -> String {
    format!("v1/admin/licenses/{id}/{action}")
}

impl NodeClient {
    /// A client with its own connection pool (10 s to connect, 60 s per call).
    pub fn new(base: Url, admin_token: Option<String>) -> Result<Self> {
        let http = http_client(
            Duration::from_secs(10),
            Duration::from_secs(60),
            concat!("leasehold/", env!("CARGO_PKG_VERSION")),
        )?;
        Ok(Self::with_http(http, base, admin_token))
    }

    /// A client sharing `http`'s pool and timeouts (a license server syncing with several
    /// nodes keeps one).
    pub fn with_http(http: reqwest::Client, base: Url, admin_token: Option<String>) -> Self {
        Self {
            endpoint: Endpoint::new(http, base, admin_token, SERVICE, TOKEN_HINT),
        }
    }

    pub fn base(&self) -> &Url {
        self.endpoint.base()
    }

    /// The same client sending `reason` with every request (percent-encoded UTF-8 in the
    /// `leasehold-reason` header): the node records it in the audit entry of each change.
    /// A reason the node would refuse (over 1,000 characters, control characters) is refused
    /// here, before any request.
    pub fn with_reason(&self, reason: &str) -> Result<Self> {
        let reason =
            check_reason(reason).map_err(|e| ApiClientError::Usage(format!("--reason: {e}")))?;
        let mut endpoint = self.endpoint.clone();
        if !reason.is_empty() {
            let encoded: String = utf8_percent_encode(&reason, REASON_ESCAPE).collect();
            let value = HeaderValue::from_str(&encoded).map_err(|e| {
                ApiClientError::Usage(format!("--reason cannot be sent as a header: {e}"))
            })?;
            endpoint.set_header(HeaderName::from_static(REASON_HEADER), value);
        }
        Ok(Self { endpoint })
    }

    /// The same client with another token (or none).
    pub fn with_token(&self, token: Option<String>) -> Self {
        Self {
            endpoint: self.endpoint.with_token(token),
        }
    }

    /// Whether this client has a token to send.
    pub fn has_token(&self) -> bool {
        self.endpoint.require_token().is_ok()
    }

    /// Fails before any request when an admin call has no token.
    pub fn require_token(&self) -> Result<()> {
        self.endpoint.require_token()
    }

    pub async fn health(&self) -> Result<Health> {
        self.endpoint
            .json(Method::GET, "v1/health", Body::<()>::None, Auth::Optional)
            .await
    }

    /// One sync: the upload goes up, the signed bundle comes back.
    pub async fn sync(&self, upload: &SyncUpload) -> Result<SignedEnvelope> {
        self.endpoint
            .json(Method::POST, "v1/sync", Body::Json(upload), Auth::Optional)
            .await
    }

    /// One sync with the upload's bytes passed verbatim (an air-gapped upload file); the
    /// answer's bytes come back verbatim too, for the bundle file.
    pub async fn sync_raw(&self, upload: Vec<u8>) -> Result<Vec<u8>> {
        self.endpoint
            .raw(
                Method::POST,
                "v1/sync",
                Body::<()>::Raw(upload),
                Auth::Optional,
            )
            .await
    }

    pub async fn create_installation(&self, name: &str) -> Result<InstallationView> {
        let body = CreateInstallation { name: name.into() };
        self.admin(Method::POST, "v1/admin/installations", Body::Json(&body))
            .await
    }

    pub async fn list_installations(&self) -> Result<InstallationList> {
        self.admin(Method::GET, "v1/admin/installations", Body::<()>::None)
            .await
    }

    pub async fn add_server(
        &self,
        installation: &InstallationId,
        context: Context,
    ) -> Result<ServerView> {
        let body = AddServer {
            installation: installation.clone(),
            context,
        };
        self.admin(Method::POST, "v1/admin/servers", Body::Json(&body))
            .await
    }

    pub async fn server(&self, guid: ServerGuid) -> Result<ServerView> {
        self.admin(Method::GET, &server_path(guid), Body::<()>::None)
            .await
    }

    pub async fn update_server(
        &self,
        guid: ServerGuid,
        update: &UpdateServer,
    ) -> Result<ServerView> {
        self.admin(Method::PATCH, &server_path(guid), Body::Json(update))
            .await
    }

    pub async fn reassign_server(&self, guid: ServerGuid) -> Result<ServerView> {
        let path = format!("{}/reassign", server_path(guid));
        self.admin(Method::POST, &path, Body::<()>::None).await
    }

    pub async fn usage(&self, guid: ServerGuid) -> Result<UsageReport> {
        let path = format!("{}/usage", server_path(guid));
        self.admin(Method::GET, &path, Body::<()>::None).await
    }

    /// The usage report of an installation (`from`/`to`: UTC days, inclusive; the node's
    /// default is the last 30 days).
    pub async fn installation_usage(
        &self,
        id: &leasehold_proto::InstallationId,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<leasehold_proto::api::node::InstallationUsage> {
        let mut path = format!("v1/admin/installations/{id}/usage");
        let mut sep = '?';
        for (k, v) in [("from", from), ("to", to)] {
            if let Some(d) = v {
                path.push_str(&format!("{sep}{k}={d}"));
                sep = '&';
            }
        }
        self.admin(Method::GET, &path, Body::<()>::None).await
    }

    /// Forks, context rejections, grace ending or ended, servers silent for more than
    /// `silent_days` days (the node's default: 7).
    pub async fn events(
        &self,
        silent_days: Option<u32>,
    ) -> Result<leasehold_proto::api::node::VendorEvents> {
        let path = match silent_days {
            Some(d) => format!("v1/admin/events?silent_days={d}"),
            None => "v1/admin/events".to_owned(),
        };
        self.admin(Method::GET, &path, Body::<()>::None).await
    }

    pub async fn grant_license(&self, grant: &GrantLicense) -> Result<LicenseView> {
        self.admin(Method::POST, "v1/admin/licenses", Body::Json(grant))
            .await
    }

    pub async fn license(&self, id: &LicenseId) -> Result<LicenseView> {
        let path = format!("v1/admin/licenses/{id}");
        self.admin(Method::GET, &path, Body::<()>::None).await
    }

    pub async fn transfer_license(
        &self,
        id: &LicenseId,
        transfer: &TransferLicense,
    ) -> Result<LicenseView> {
        self.admin(
            Method::POST,
            &license_path(id, "transfer"),
            Body::Json(transfer),
        )
        .await
    }

    pub async fn revoke_license(&self, id: &LicenseId) -> Result<LicenseView> {
        self.admin(Method::POST, &license_path(id, "revoke"), Body::<()>::None)
            .await
    }

    pub async fn set_maintenance(&self, id: &LicenseId, until: NaiveDate) -> Result<LicenseView> {
        let body = SetMaintenance { until };
        self.admin(
            Method::POST,
            &license_path(id, "maintenance"),
            Body::Json(&body),
        )
        .await
    }

    /// Signs in with a name and password: a new personal API token (shown this once). Sends
    /// no token.
    pub async fn login(&self, login: &Login) -> Result<NewToken> {
        self.endpoint
            .with_token(None)
            .json(
                Method::POST,
                "v1/admin/login",
                Body::Json(login),
                Auth::Optional,
            )
            .await
    }

    /// The account (and token id) the token belongs to.
    pub async fn whoami(&self) -> Result<Whoami> {
        self.admin(Method::GET, "v1/admin/whoami", Body::<()>::None)
            .await
    }

    pub async fn accounts(&self) -> Result<AccountList> {
        self.admin(Method::GET, "v1/admin/accounts", Body::<()>::None)
            .await
    }

    /// Creates an account: with an admin's token, or (the first admin only) with the node's
    /// bootstrap token.
    pub async fn create_account(&self, account: &CreateAccount) -> Result<AccountView> {
        self.admin(Method::POST, "v1/admin/accounts", Body::Json(account))
            .await
    }

    pub async fn account(&self, name: &AccountName) -> Result<AccountView> {
        self.admin(Method::GET, &account_path(name), Body::<()>::None)
            .await
    }

    /// Changes an account's role, disables or enables it, or sets its password.
    pub async fn update_account(
        &self,
        name: &AccountName,
        update: &UpdateAccount,
    ) -> Result<AccountView> {
        self.admin(Method::PATCH, &account_path(name), Body::Json(update))
            .await
    }

    /// API tokens (never the tokens themselves): the caller's own, another account's
    /// (`account`, an admin) or everyone's (`all`, an admin).
    pub async fn tokens(&self, account: Option<&AccountName>, all: bool) -> Result<TokenList> {
        let mut pairs = Vec::new();
        if let Some(name) = account {
            pairs.push(("account", name.to_string()));
        }
        if all {
            pairs.push(("all", "true".to_owned()));
        }
        let path = format!("v1/admin/tokens{}", query_string(&pairs));
        self.admin(Method::GET, &path, Body::<()>::None).await
    }

    /// A new token for the caller's own account (shown this once).
    pub async fn create_token(&self, label: &str) -> Result<NewToken> {
        let body = CreateToken {
            label: label.to_owned(),
        };
        self.admin(Method::POST, "v1/admin/tokens", Body::Json(&body))
            .await
    }

    /// Revokes a token: one's own, or (an admin) anyone's.
    pub async fn revoke_token(&self, id: &ApiTokenId) -> Result<TokenView> {
        let path = format!("v1/admin/tokens/{id}");
        self.admin(Method::DELETE, &path, Body::<()>::None).await
    }

    /// One page of the audit log, newest first.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<AuditPage> {
        let path = format!("v1/admin/audit{}", filter.query());
        self.admin(Method::GET, &path, Body::<()>::None).await
    }

    async fn admin<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body<'_, B>,
    ) -> Result<T> {
        self.endpoint.json(method, path, body, Auth::Required).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_filters_become_an_escaped_query() {
        assert_eq!(AuditFilter::default().query(), "");
        let f = AuditFilter {
            installation: Some(InstallationId::from_random([1; 8])),
            server: Some(ServerGuid::parse("{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}").unwrap()),
            actor: Some("node database".into()),
            since: NaiveDate::from_ymd_opt(2026, 11, 1),
            before: Some(42),
            limit: Some(7),
            ..AuditFilter::default()
        };
        let q = f.query();
        assert_eq!(
            q,
            "?installation=inst_0101010101010101&server=DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E\
             &actor=node%20database&since=2026-11-01&before=42&limit=7"
        );
        assert_eq!(
            account_path(&AccountName::parse("bob@x.example").unwrap()),
            "v1/admin/accounts/bob%40x.example"
        );
    }

    #[test]
    fn the_reason_travels_percent_encoded_and_is_checked_first() {
        let c = NodeClient::new(Url::parse("http://127.0.0.1:9/").unwrap(), None).unwrap();
        let with = c
            .with_reason("ticket 42: Zürich 100%\nsecond line")
            .unwrap();
        let value = with.endpoint.header(REASON_HEADER).unwrap();
        assert_eq!(value, "ticket 42: Z%C3%BCrich 100%25%0Asecond line");
        let decoded = percent_encoding::percent_decode_str(&value)
            .decode_utf8()
            .unwrap();
        assert_eq!(decoded, "ticket 42: Zürich 100%\nsecond line");
        assert!(c
            .with_reason("   ")
            .unwrap()
            .endpoint
            .header(REASON_HEADER)
            .is_none());
        let e = c.with_reason("bell \u{7}").unwrap_err().to_string();
        assert!(e.contains("--reason") && e.contains("control"), "{e}");
        assert!(c.with_reason(&"r".repeat(1001)).is_err());
    }
}
