//! Starts a node on an ephemeral port with a manual clock and a temporary SQLite file.

use std::path::Path;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use leasehold_node::api::{GrantLicense, InstallationView, LicenseView, ServerView};
use leasehold_node::{Node, NodeState};
use leasehold_proto::{
    BundlePayload, Context, ErrorBody, ErrorCode, Feature, InstanceId, LicenseId, ManualClock,
    ServerGuid, SignedEnvelope, SyncToken, SyncUpload, TrustedKeys, UsageBucket, VendorSigningKey,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-admin-token";

pub struct TestNode {
    pub url: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub key: VendorSigningKey,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn key() -> VendorSigningKey {
    VendorSigningKey::from_secret_bytes([42; 32])
}

pub fn start_time() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap()
}

impl TestNode {
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(dir, Arc::new(ManualClock::new(start_time()))).await
    }

    pub async fn start_with(dir: &Path, clock: Arc<ManualClock>) -> Self {
        let db_path = dir.join("node.db");
        let store = leasehold_node::store::open(&format!("sqlite://{}", db_path.display()))
            .await
            .unwrap();
        let node = Arc::new(Node::new(store, key(), clock.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            leasehold_node::serve(NodeState::new(node, TOKEN), listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            url,
            http: reqwest::Client::new(),
            clock,
            key: key(),

            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    pub async fn admin<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, (reqwest::StatusCode, ErrorBody)> {
        let mut req = self
            .http
            .request(method, format!("{}/v1/admin{path}", self.url))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        decode(resp).await
    }

    pub async fn installation(&self, name: &str) -> InstallationView {
        self.admin(
            reqwest::Method::POST,
            "/installations",
            Some(&serde_json::json!({"name": name})),
        )
        .await
        .unwrap()
    }

    pub async fn add_server(
        &self,
        installation: &InstallationView,
        context: Context,
    ) -> ServerView {
        self.admin(
            reqwest::Method::POST,
            "/servers",
            Some(&serde_json::json!({"installation": installation.id, "context": context})),
        )
        .await
        .unwrap()
    }

    pub async fn grant(
        &self,
        server: ServerGuid,
        feature: &str,
        count: u32,
        expires: Option<NaiveDate>,
        backs_up: Option<LicenseId>,
    ) -> Result<LicenseView, (reqwest::StatusCode, ErrorBody)> {
        let req = GrantLicense {
            server,
            feature: Feature::parse(feature).unwrap(),
            count,
            context: None,
            maintenance_until: NaiveDate::from_ymd_opt(2027, 12, 31).unwrap(),
            expires,
            backs_up,
        };
        self.admin(reqwest::Method::POST, "/licenses", Some(&req))
            .await
    }

    pub async fn sync(
        &self,
        upload: &SyncUpload,
    ) -> Result<SignedEnvelope, (reqwest::StatusCode, ErrorBody)> {
        let resp = self
            .http
            .post(format!("{}/v1/sync", self.url))
            .json(upload)
            .send()
            .await
            .unwrap();
        decode(resp).await
    }

    pub async fn sync_raw(&self, body: Vec<u8>) -> (reqwest::StatusCode, String) {
        let resp = self
            .http
            .post(format!("{}/v1/sync", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    pub fn open(&self, env: &SignedEnvelope, guid: ServerGuid) -> BundlePayload {
        env.open_bundle(
            &TrustedKeys::new().with(self.key.verifying_key()),
            guid,
            None,
        )
        .unwrap()
    }
}

pub async fn decode<T: DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<T, (reqwest::StatusCode, ErrorBody)> {
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap();
    if status.is_success() {
        Ok(serde_json::from_slice(&bytes).unwrap())
    } else {
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "error body is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Err((status, body))
    }
}

/// A simulated license server's sync state: instance id, token, usage sequence.
#[derive(Clone, Debug)]
pub struct FakeServer {
    pub guid: ServerGuid,
    pub instance: InstanceId,
    pub token: Option<SyncToken>,
    pub serial: u64,
    pub context: Option<Context>,
}

impl FakeServer {
    pub fn new(guid: ServerGuid, instance_byte: u8) -> Self {
        Self {
            guid,
            instance: InstanceId::from_random([instance_byte; 16]),
            token: None,
            serial: 0,
            context: None,
        }
    }

    pub fn upload(&self, usage: Vec<UsageBucket>) -> SyncUpload {
        SyncUpload {
            server_guid: self.guid,
            instance_id: self.instance.clone(),
            sync_token: self.token.clone(),
            last_bundle_serial: self.serial,
            context: self.context,
            software_version: "test".into(),
            usage,
        }
    }

    /// Takes a bundle as a real server would after verifying it.
    pub fn accept(&mut self, bundle: &BundlePayload) {
        self.token = Some(bundle.next_sync_token.clone());
        self.serial = bundle.serial;
        self.context = Some(bundle.context);
    }

    pub async fn sync(
        &mut self,
        node: &TestNode,
        usage: Vec<UsageBucket>,
    ) -> Result<BundlePayload, ErrorCode> {
        match node.sync(&self.upload(usage)).await {
            Ok(env) => {
                let b = node.open(&env, self.guid);
                self.accept(&b);
                Ok(b)
            }
            Err((_, e)) => Err(e.error),
        }
    }
}

pub fn bucket(seq: u64, feature: &str, hour_offset: i64, peak: u32) -> UsageBucket {
    UsageBucket {
        seq,
        feature: Feature::parse(feature).unwrap(),
        hour: start_time() + chrono::Duration::hours(hour_offset),
        peak_in_use: peak,
        grants: u64::from(peak) * 3,
        denials: 1,
        denials_while_free: 0,
        backup_use_secs: 0,
    }
}
