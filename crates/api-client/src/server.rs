//! A license server's admin API (`/v1/admin/…`, the server's admin token).

use std::time::Duration;

use leasehold_proto::api::server::{
    ClientKeyView, ClientSort, ClientStatus, SetClientKey, SetGuid, Status, SyncOutcome,
    UsageExport,
};
use leasehold_proto::{Health, ServerGuid};
use reqwest::{Method, Url};

use crate::endpoint::{http_client, Auth, Body, Endpoint};
use crate::Result;

const SERVICE: &str = "license server";
const TOKEN_HINT: &str = "this command needs the server's admin token: pass --token TOKEN (or set \
     LEASEHOLD_SERVER_TOKEN), or --token-file DATA_DIR/admin-token";

#[derive(Debug, Clone)]
pub struct ServerAdminClient {
    endpoint: Endpoint,
}

impl ServerAdminClient {
    /// 10 s to connect, 300 s per call: a sync-now waits for every node in turn.
    pub fn new(base: Url, admin_token: Option<String>) -> Result<Self> {
        let http = http_client(
            Duration::from_secs(10),
            Duration::from_secs(300),
            concat!("leasehold/", env!("CARGO_PKG_VERSION")),
        )?;
        let endpoint = Endpoint::new(http, base, admin_token, SERVICE, TOKEN_HINT);
        endpoint.require_token()?;
        Ok(Self { endpoint })
    }

    pub fn base(&self) -> &Url {
        self.endpoint.base()
    }

    pub async fn health(&self) -> Result<Health> {
        self.endpoint
            .json(Method::GET, "v1/health", Body::<()>::None, Auth::Optional)
            .await
    }

    pub async fn status(&self) -> Result<Status> {
        self.get("v1/admin/status").await
    }

    /// Every client holding a lease, in id order (fetched a page of 10,000 at a time).
    pub async fn clients(&self) -> Result<Vec<ClientStatus>> {
        self.clients_where(None, ClientSort::Id).await
    }

    /// The clients whose name, address, id or a feature contains `search` (every client
    /// without it), in `sort` order, fetched a page of 10,000 at a time.
    pub async fn clients_where(
        &self,
        search: Option<&str>,
        sort: ClientSort,
    ) -> Result<Vec<ClientStatus>> {
        const PAGE: usize = 10_000;
        let search = search
            .map(|s| {
                let q =
                    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC);
                format!("&search={q}")
            })
            .unwrap_or_default();
        let mut all = Vec::new();
        loop {
            let page: Vec<ClientStatus> = self
                .get(&format!(
                    "v1/admin/clients?offset={}&limit={PAGE}&sort={}{search}",
                    all.len(),
                    sort.as_str()
                ))
                .await?;
            let done = page.len() < PAGE;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    pub async fn set_guid(&self, guid: ServerGuid) -> Result<Status> {
        let body = SetGuid {
            guid: guid.to_string(),
        };
        self.endpoint
            .json(
                Method::PUT,
                "v1/admin/guid",
                Body::Json(&body),
                Auth::Required,
            )
            .await
    }

    /// Runs a sync now and waits for its outcome (which may itself say it failed).
    pub async fn sync_now(&self) -> Result<SyncOutcome> {
        self.endpoint
            .json(
                Method::POST,
                "v1/admin/sync",
                Body::<()>::None,
                Auth::Required,
            )
            .await
    }

    /// The upload the server would send on its next sync, as the exact bytes it would send.
    pub async fn upload_raw(&self) -> Result<Vec<u8>> {
        self.endpoint
            .raw(
                Method::GET,
                "v1/admin/upload",
                Body::<()>::None,
                Auth::Required,
            )
            .await
    }

    /// The server's usage report, one row per feature per hour of the UTC days `from` to
    /// `to` (inclusive; the server's default is the last 30 days).
    pub async fn usage(
        &self,
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
    ) -> Result<UsageExport> {
        let query: Vec<String> = [("from", from), ("to", to)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|d| format!("{k}={d}")))
            .collect();
        let path = if query.is_empty() {
            "v1/admin/usage".to_owned()
        } else {
            format!("v1/admin/usage?{}", query.join("&"))
        };
        self.get(&path).await
    }

    /// Imports a signed bundle file, passed verbatim.
    pub async fn import_bundle(&self, bundle: Vec<u8>) -> Result<SyncOutcome> {
        self.endpoint
            .json(
                Method::POST,
                "v1/admin/bundle",
                Body::<()>::Raw(bundle),
                Auth::Required,
            )
            .await
    }

    /// The installation's client key and until when replaced keys are still accepted.
    pub async fn client_key(&self) -> Result<ClientKeyView> {
        self.get("v1/admin/client-key").await
    }

    /// Makes `key` the client key, or a fresh one with `None`; the replaced key stays valid
    /// for the server's overlap.
    pub async fn replace_client_key(&self, key: Option<String>) -> Result<ClientKeyView> {
        self.endpoint
            .json(
                Method::POST,
                "v1/admin/client-key",
                Body::Json(&SetClientKey { key }),
                Auth::Required,
            )
            .await
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.endpoint
            .json(Method::GET, path, Body::<()>::None, Auth::Required)
            .await
    }
}
