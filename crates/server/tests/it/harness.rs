//! A node and license servers in one process, sharing a manual clock.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use leasehold_node::api::GrantLicense;
use leasehold_node::{Node, NodeState};
use leasehold_proto::{
    ClientId, Context, Feature, FeatureRequest, LeaseRequest, LeaseResponse, LicenseId,
    ManualClock, ServerGuid, TrustedKeys, VendorSigningKey,
};
use leasehold_server::api::{Status, SyncOutcome};
use leasehold_server::{DashboardSettings, Listeners, RunningServer, ServerOptions};
use tokio::sync::oneshot;

pub const TOKEN: &str = "server-admin-token";

pub fn start_time() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 30, 0).unwrap()
}

pub fn vendor_key() -> VendorSigningKey {
    VendorSigningKey::from_secret_bytes([11; 32])
}

pub struct TestNode {
    pub url: String,
    pub node: Arc<Node>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestNode {
    pub async fn start(dir: &Path, clock: Arc<ManualClock>) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let store =
            leasehold_node::store::open(&format!("sqlite://{}", dir.join("node.db").display()))
                .await
                .unwrap();
        let node = Arc::new(Node::new(store, vendor_key(), clock));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let n = node.clone();
        let task = tokio::spawn(async move {
            leasehold_node::serve(NodeState::new(n, "node-token"), listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            url,
            node,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }

    /// An installation with a production and a backup server; returns their GUIDs and the
    /// production license ids (`tts` ×10 and `asr.en-US` ×20, maintenance to 2027-06-30).
    pub async fn installation(&self) -> (ServerGuid, ServerGuid, Vec<LicenseId>) {
        let inst = self.node.create_installation("Acme").await.unwrap();
        let prod = self
            .node
            .add_server(&inst.id, Context::Production)
            .await
            .unwrap();
        let backup = self
            .node
            .add_server(&inst.id, Context::Backup)
            .await
            .unwrap();
        let mut ids = Vec::new();
        for (feature, count) in [("tts", 10), ("asr.en-US", 20)] {
            let l = self.grant(prod.guid, feature, count, None).await;
            self.grant(backup.guid, feature, count, Some(l.clone()))
                .await;
            ids.push(l);
        }
        (prod.guid, backup.guid, ids)
    }

    pub async fn grant(
        &self,
        server: ServerGuid,
        feature: &str,
        count: u32,
        backs_up: Option<LicenseId>,
    ) -> LicenseId {
        self.node
            .grant_license(&GrantLicense {
                server,
                feature: Feature::parse(feature).unwrap(),
                count,
                context: None,
                maintenance_until: NaiveDate::from_ymd_opt(2027, 6, 30).unwrap(),
                expires: None,
                backs_up,
            })
            .await
            .unwrap()
            .license
            .id
    }
}

pub struct TestServer {
    pub running: Option<RunningServer>,
    pub lease_url: String,
    pub admin_url: String,
    pub http: reqwest::Client,
}

pub fn options(dir: &Path, nodes: Vec<String>, guid: Option<ServerGuid>) -> ServerOptions {
    ServerOptions {
        data_dir: dir.to_path_buf(),
        nodes,
        trusted_keys: TrustedKeys::new().with(vendor_key().verifying_key()),
        guid,
        node_timeout: Duration::from_secs(5),
    }
}

impl TestServer {
    pub async fn start(options: ServerOptions, clock: Arc<ManualClock>) -> Self {
        Self::start_with_dashboard(options, clock, DashboardSettings::default()).await
    }

    /// A server whose dashboard knows its config file (`--config`).
    pub async fn start_with_dashboard(
        options: ServerOptions,
        clock: Arc<ManualClock>,
        dashboard: DashboardSettings,
    ) -> Self {
        let running = leasehold_server::start_with_dashboard(
            options,
            Listeners {
                lease: "127.0.0.1:0".parse().unwrap(),
                admin: "127.0.0.1:0".parse().unwrap(),
                admin_token: TOKEN.into(),
                agent_tick: Duration::from_millis(20),
            },
            dashboard,
            clock,
        )
        .await
        .unwrap();
        Self {
            lease_url: format!("http://{}", running.lease_addr),
            admin_url: format!("http://{}", running.admin_addr),
            running: Some(running),
            http: reqwest::Client::new(),
        }
    }

    pub async fn stop(mut self) {
        self.running.take().unwrap().stop().await;
    }

    /// The dashboard password generated at start.
    pub fn dashboard_password(&self) -> String {
        self.running
            .as_ref()
            .unwrap()
            .dashboard_password
            .clone()
            .expect("a password was generated at start")
    }

    pub async fn status(&self) -> Status {
        self.http
            .get(format!("{}/v1/admin/status", self.admin_url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn sync_now(&self) -> SyncOutcome {
        self.http
            .post(format!("{}/v1/admin/sync", self.admin_url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits (real time, bounded) until the status satisfies `f`.
    pub async fn wait_for(&self, what: &str, f: impl Fn(&Status) -> bool) -> Status {
        for _ in 0..250 {
            let s = self.status().await;
            if f(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}: {:?}", self.status().await);
    }

    pub async fn lease(&self, req: &LeaseRequest) -> Result<LeaseResponse, (u16, String)> {
        let resp = self
            .http
            .post(format!("{}/v1/lease", self.lease_url))
            .json(req)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        if status == 200 {
            Ok(serde_json::from_str(&text).unwrap())
        } else {
            Err((status, text))
        }
    }
}

pub fn request(client: u8, feature: &str, in_use: u32, want: u32, quota: u32) -> LeaseRequest {
    let mut features = BTreeMap::new();
    features.insert(
        Feature::parse(feature).unwrap(),
        FeatureRequest {
            in_use,
            want,
            quota,
            acquired: u64::from(in_use),
            ..FeatureRequest::default()
        },
    );
    LeaseRequest {
        seq: 0,
        client_id: ClientId::from_random([client; 16]),
        product_release: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
        features,
        failover: false,
        epoch: 0,
        asks: false,
        release: false,
    }
}

pub fn quota(resp: &LeaseResponse, feature: &str) -> u32 {
    resp.features[&Feature::parse(feature).unwrap()].quota
}
