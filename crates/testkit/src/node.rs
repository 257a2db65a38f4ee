//! A license node in the test's process: a temporary SQLite file (or any database URL),
//! port 0, a shared manual clock, [`vendor_key`](crate::vendor_key), [`NODE_TOKEN`] as its
//! bootstrap token and a first admin account [`NODE_ADMIN`]. Tests call it through its
//! typed admin client (that admin's own token), or raw where the HTTP contract itself is
//! what they check; [`TestNode::staff`] adds accounts of either role; [`FakeServer`] plays a
//! license server syncing with it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use leasehold_api_client::{ApiClientError, NodeClient, Url};
use leasehold_node::api::{GrantLicense, LicenseView};
use leasehold_node::{Actor, Change, Node, NodeState};
use leasehold_proto::api::staff::{AccountName, CreateAccount, Role};
use leasehold_proto::usage::hour_of;
use leasehold_proto::{
    BundlePayload, Context, ErrorBody, ErrorCode, Feature, InstallationId, InstanceId, LicenseId,
    ManualClock, ServerGuid, SignedEnvelope, SyncToken, SyncUpload, UsageBucket,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::fixtures::{
    grant_request, start_time, trusted_keys, vendor_key, NODE_ADMIN, NODE_TOKEN, STAFF_PASSWORD,
};

/// A running node; [`TestNode::stop`] shuts it down (dropping it does too, without waiting).
#[derive(Debug)]
pub struct TestNode {
    /// `http://127.0.0.1:PORT`, as servers are configured with it.
    pub url: String,
    pub addr: SocketAddr,
    /// The service itself, for calls that need no HTTP.
    pub node: Arc<Node>,
    pub clock: Arc<ManualClock>,
    /// The vendor admin API and sync, typed, as the admin [`NODE_ADMIN`].
    pub admin: NodeClient,
    /// [`NODE_ADMIN`]'s personal API token.
    pub admin_token: String,
    /// A plain client for requests the typed one would not send.
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// A production and a backup server of one installation: `tts` ×10 and `asr.en-US` ×20 on
/// the production server, each with its backup twin on the backup server (granted with
/// [`grant_request`]'s defaults).
#[derive(Debug, Clone)]
pub struct StandardInstallation {
    pub id: InstallationId,
    pub production: ServerGuid,
    pub backup: ServerGuid,
    /// The production `tts` license.
    pub tts: LicenseId,
    /// The production `asr.en-US` license.
    pub asr: LicenseId,
}

impl TestNode {
    /// A node on `dir/node.db` (the directory is created) and a free loopback port.
    pub async fn start(dir: &Path, clock: Arc<ManualClock>) -> Self {
        Self::start_on(dir, clock, "127.0.0.1:0".parse().unwrap()).await
    }

    /// A node on `addr`, for one that comes back where its servers look for it. A port just
    /// released can take a moment to be free again: binding is retried for up to 5 s.
    pub async fn start_on(dir: &Path, clock: Arc<ManualClock>, addr: SocketAddr) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let url = format!("sqlite://{}", dir.join("node.db").display());
        Self::start_with_db(&url, clock, addr).await
    }

    /// A node on the database `url` (SQLite or PostgreSQL) and `addr`. Its first admin
    /// account [`NODE_ADMIN`] is made (once per database) and signed in.
    pub async fn start_with_db(url: &str, clock: Arc<ManualClock>, addr: SocketAddr) -> Self {
        let store = leasehold_node::store::open(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
        let node = Arc::new(Node::new(store, vendor_key(), clock.clone()));
        let admin_token = first_admin_token(&node).await;
        let listener = bind(addr).await;
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let (tx, rx) = oneshot::channel();
        let state = NodeState::new(node.clone(), NODE_TOKEN);
        let task = tokio::spawn(async move {
            leasehold_node::serve(
                state,
                listener,
                None,
                leasehold_web::Limits::default(),
                None,
                async {
                    let _ = rx.await;
                },
            )
            .await
            .unwrap();
        });
        let admin = NodeClient::new(Url::parse(&url).unwrap(), Some(admin_token.clone())).unwrap();
        Self {
            url,
            addr,
            node,
            clock,
            admin,
            admin_token,
            http: reqwest::Client::new(),
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops serving and waits until the node has shut down.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// A staff account `name` of `role` (created now, password [`STAFF_PASSWORD`]) and
    /// its own token.
    pub async fn staff(&self, name: &str, role: Role) -> StaffAccount {
        let name = AccountName::parse(name).unwrap();
        self.node
            .create_account(
                Change::new(&Actor::database(), "test account"),
                &CreateAccount {
                    name: name.clone(),
                    role,
                    password: STAFF_PASSWORD.into(),
                },
            )
            .await
            .unwrap();
        let token = self
            .node
            .login(&name, STAFF_PASSWORD, Some("test"))
            .await
            .unwrap()
            .token;
        StaffAccount {
            client: NodeClient::new(Url::parse(&self.url).unwrap(), Some(token.clone())).unwrap(),
            name,
            token,
        }
    }

    /// `METHOD /v1/admin{path}` with the admin's token and an optional JSON body: the
    /// decoded answer, or the status and error body of a refusal (which must be JSON).
    pub async fn admin_raw<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, (StatusCode, ErrorBody)> {
        let mut request = self
            .http
            .request(method, format!("{}/v1/admin{path}", self.url))
            .bearer_auth(&self.admin_token);
        if let Some(body) = body {
            request = request.json(body);
        }
        decode(request.send().await.unwrap()).await
    }

    /// Grants over the admin API.
    pub async fn grant(
        &self,
        grant: &GrantLicense,
    ) -> Result<LicenseView, (StatusCode, ErrorBody)> {
        self.admin.grant_license(grant).await.map_err(refusal)
    }

    /// One `POST /v1/sync`.
    pub async fn sync(
        &self,
        upload: &SyncUpload,
    ) -> Result<SignedEnvelope, (StatusCode, ErrorBody)> {
        self.admin.sync(upload).await.map_err(refusal)
    }

    /// `POST /v1/sync` with `body` as it is: the status and the answer's text.
    pub async fn sync_raw(&self, body: Vec<u8>) -> (StatusCode, String) {
        let response = self
            .http
            .post(format!("{}/v1/sync", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// Verifies a bundle as the server `guid` would and returns what it says.
    pub fn open(&self, envelope: &SignedEnvelope, guid: ServerGuid) -> BundlePayload {
        envelope.open_bundle(&trusted_keys(), guid, None).unwrap()
    }

    /// Creates the [`StandardInstallation`] ("Acme") in the service directly.
    pub async fn standard_installation(&self) -> StandardInstallation {
        let installation = self
            .node
            .create_installation(setup(), "Acme")
            .await
            .unwrap();
        let production = self
            .node
            .add_server(setup(), &installation.id, Context::Production)
            .await
            .unwrap();
        let backup = self
            .node
            .add_server(setup(), &installation.id, Context::Backup)
            .await
            .unwrap();
        let mut ids = Vec::new();
        for (feature, count) in [("tts", 10), ("asr.en-US", 20)] {
            let license = self
                .grant_directly(&grant_request(production.guid, feature, count))
                .await;
            self.grant_directly(&GrantLicense {
                backs_up: Some(license.clone()),
                ..grant_request(backup.guid, feature, count)
            })
            .await;
            ids.push(license);
        }
        let asr = ids.pop().unwrap();
        let tts = ids.pop().unwrap();
        StandardInstallation {
            id: installation.id,
            production: production.guid,
            backup: backup.guid,
            tts,
            asr,
        }
    }

    /// Grants in the service directly (no HTTP) and returns the license id.
    pub async fn grant_directly(&self, grant: &GrantLicense) -> LicenseId {
        self.node
            .grant_license(setup(), grant)
            .await
            .unwrap()
            .license
            .id
    }
}

/// A staff account of a [`TestNode`] and its own token.
#[derive(Debug, Clone)]
pub struct StaffAccount {
    pub name: AccountName,
    pub token: String,
    /// The vendor admin API with this account's token.
    pub client: NodeClient,
}

/// A change the test makes in the service directly: by the node's own database actor.
pub fn setup() -> Change<'static> {
    static ACTOR: std::sync::OnceLock<Actor> = std::sync::OnceLock::new();
    Change::new(ACTOR.get_or_init(Actor::database), "test setup")
}

/// Makes [`NODE_ADMIN`] through the bootstrap path when the database has no admin yet, and
/// signs it in: its token.
async fn first_admin_token(node: &Node) -> String {
    let name = AccountName::parse(NODE_ADMIN).unwrap();
    if !node.has_admin().await.unwrap() {
        node.create_account(
            Change::new(&Actor::bootstrap(), "first admin"),
            &CreateAccount {
                name: name.clone(),
                role: Role::Admin,
                password: STAFF_PASSWORD.into(),
            },
        )
        .await
        .unwrap();
    }
    node.login(&name, STAFF_PASSWORD, Some("test"))
        .await
        .unwrap()
        .token
}

async fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    let mut last = None;
    for _ in 0..100 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot listen on {addr}: {last:?}");
}

/// The status and error body of a call the service refused; panics on any other failure.
pub fn refusal(error: ApiClientError) -> (StatusCode, ErrorBody) {
    match error {
        ApiClientError::Refused { status, body } => (StatusCode::from_u16(status).unwrap(), body),
        other => panic!("not a refusal with an error code: {other}"),
    }
}

async fn decode<T: DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, (StatusCode, ErrorBody)> {
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
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

/// A simulated license server's sync state: instance id, token, last bundle serial.
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

    /// Syncs with `node` and takes the bundle; a refusal gives its error code.
    pub async fn sync(
        &mut self,
        node: &TestNode,
        usage: Vec<UsageBucket>,
    ) -> Result<BundlePayload, ErrorCode> {
        match node.sync(&self.upload(usage)).await {
            Ok(envelope) => {
                let bundle = node.open(&envelope, self.guid);
                self.accept(&bundle);
                Ok(bundle)
            }
            Err((_, e)) => Err(e.error),
        }
    }
}

/// A usage bucket of the hour `hour_offset` hours after the one [`start_time`] falls in:
/// peak `peak`, three grants per license of the peak, one denial, half the hour at the peak
/// (`peak` × 1800 license-seconds).
pub fn usage_bucket(seq: u64, feature: &str, hour_offset: i64, peak: u32) -> UsageBucket {
    UsageBucket {
        seq,
        feature: Feature::parse(feature).unwrap(),
        hour: hour_of(start_time()) + chrono::Duration::hours(hour_offset),
        peak_in_use: peak,
        grants: u64::from(peak) * 3,
        denials: 1,
        denials_while_free: 0,
        backup_use_secs: 0,
        license_secs: u64::from(peak) * 1800,
    }
}
