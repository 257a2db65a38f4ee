//! A license node: `POST /v1/sync` (no credentials: the sync-token chain is the credential)
//! and the vendor admin API (`/v1/admin/…`, the node's admin token).

use std::time::Duration;

use chrono::NaiveDate;

use leasehold_proto::api::node::{
    AddServer, CreateInstallation, GrantLicense, InstallationList, InstallationView, LicenseView,
    ServerView, SetMaintenance, TransferLicense, UpdateServer, UsageReport,
};
use leasehold_proto::{
    Context, Health, InstallationId, LicenseId, ServerGuid, SignedEnvelope, SyncUpload,
};
use reqwest::{Method, Url};

use crate::endpoint::{http_client, Auth, Body, Endpoint};
use crate::{guid_segment, Result};

const SERVICE: &str = "license node";
const TOKEN_HINT: &str =
    "this command needs the node's admin token: pass --token TOKEN or set LEASEHOLD_ADMIN_TOKEN";

#[derive(Debug, Clone)]
pub struct NodeClient {
    endpoint: Endpoint,
}

fn server_path(guid: ServerGuid) -> String {
    format!("v1/admin/servers/{}", guid_segment(guid))
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

    async fn admin<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body<'_, B>,
    ) -> Result<T> {
        self.endpoint.json(method, path, body, Auth::Required).await
    }
}
