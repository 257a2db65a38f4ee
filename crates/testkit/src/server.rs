//! A license server in the test's process: `leasehold_server::start` on loopback (port 0 unless
//! it must come back on the same lease port), an agent looking at the manual clock every
//! 20 ms, [`SERVER_TOKEN`] and [`trusted_keys`](crate::trusted_keys). Also the lease requests
//! tests send as clients would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use leasehold_api_client::{ServerAdminClient, Url};
use leasehold_proto::{
    ClientId, Feature, FeatureRequest, LeaseRequest, LeaseResponse, ManualClock, ServerGuid,
};
use leasehold_server::api::{ClientStatus, Status, SyncOutcome};
use leasehold_server::{
    DashboardSettings, LicenseServer, Listeners, RunningServer, ServerOptions, StartError,
};

use crate::fixtures::{release_date, share_client_key, trusted_keys, CLIENT_KEY, SERVER_TOKEN};

/// A running server; [`TestServer::stop`] shuts it down.
#[derive(Debug)]
pub struct TestServer {
    running: Option<RunningServer>,
    pub lease_addr: SocketAddr,
    /// `http://127.0.0.1:PORT` of the lease API.
    pub lease_url: String,
    /// `http://127.0.0.1:PORT` of the admin API and the dashboard.
    pub admin_url: String,
    /// The admin API, typed, with [`SERVER_TOKEN`].
    pub admin: ServerAdminClient,
    /// A plain client for requests the typed ones would not send.
    pub http: reqwest::Client,
}

/// The options of a test server on `dir`, syncing with `nodes`, trusting the vendor key;
/// the directory is given the shared [`CLIENT_KEY`] (see [`share_client_key`]).
pub fn options(dir: &Path, nodes: Vec<String>, guid: Option<ServerGuid>) -> ServerOptions {
    share_client_key(dir);
    ServerOptions {
        data_dir: dir.to_path_buf(),
        nodes,
        trusted_keys: trusted_keys(),
        guid,
        node_timeout: Duration::from_secs(5),
        client_key_overlap: leasehold_server::client_key::DEFAULT_OVERLAP,
        client_limits: leasehold_server::ClientLimits::default(),
        node_connection: Default::default(),
    }
}

fn listeners(lease: SocketAddr) -> Listeners {
    Listeners {
        lease,
        admin: "127.0.0.1:0".parse().unwrap(),
        admin_token: SERVER_TOKEN.into(),
        agent_tick: Duration::from_millis(20),
        limits: leasehold_web::Limits::default(),
        tls: None,
    }
}

impl TestServer {
    pub async fn start(options: ServerOptions, clock: Arc<ManualClock>) -> Self {
        Self::start_with_dashboard(options, clock, DashboardSettings::default()).await
    }

    /// A server whose dashboard knows how it was configured (`--config`).
    pub async fn start_with_dashboard(
        options: ServerOptions,
        clock: Arc<ManualClock>,
        dashboard: DashboardSettings,
    ) -> Self {
        let listeners = listeners("127.0.0.1:0".parse().unwrap());
        let running =
            leasehold_server::start_with_dashboard(options, listeners, dashboard, clock).await;
        Self::new(running.unwrap())
    }

    /// A server on the lease address `lease` (port 0 for any), for one restarted where its
    /// clients look for it. The port of a server just stopped can take a moment to be free
    /// again: starting is retried for up to 5 s.
    pub async fn start_on(
        options: ServerOptions,
        clock: Arc<ManualClock>,
        lease: SocketAddr,
    ) -> Self {
        let mut last: Option<StartError> = None;
        for _ in 0..100 {
            match leasehold_server::start(options.clone(), listeners(lease), clock.clone()).await {
                Ok(running) => return Self::new(running),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not start: {last:?}");
    }

    fn new(running: RunningServer) -> Self {
        let admin_url = format!("http://{}", running.admin_addr);
        let admin =
            ServerAdminClient::new(Url::parse(&admin_url).unwrap(), Some(SERVER_TOKEN.into()))
                .unwrap();
        Self {
            lease_addr: running.lease_addr,
            lease_url: format!("http://{}", running.lease_addr),
            admin_url,
            admin,
            http: lease_http(),
            running: Some(running),
        }
    }

    /// Stops serving and syncing and waits until the server has shut down.
    pub async fn stop(mut self) {
        self.running.take().unwrap().stop().await;
    }

    /// The service itself, for calls that need no HTTP (flush, upload, set GUID).
    pub fn service(&self) -> &LicenseServer {
        &self.running.as_ref().unwrap().server
    }

    /// `host:port` of the lease listener, as a client's server list takes it.
    pub fn addr(&self) -> String {
        self.lease_addr.to_string()
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
        self.admin.status().await.unwrap()
    }

    pub async fn clients(&self) -> Vec<ClientStatus> {
        self.admin.clients().await.unwrap()
    }

    /// A sync now, and its outcome (which may say it failed).
    pub async fn sync_now(&self) -> SyncOutcome {
        self.admin.sync_now().await.unwrap()
    }

    /// Waits (real time, at most 5 s) until the status satisfies `f`.
    pub async fn wait_for(&self, what: &str, f: impl Fn(&Status) -> bool) -> Status {
        for _ in 0..250 {
            let status = self.status().await;
            if f(&status) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}: {:?}", self.status().await);
    }

    /// `POST /v1/lease`: the answer, or the HTTP status and text of a refusal.
    pub async fn lease(&self, request: &LeaseRequest) -> Result<LeaseResponse, (u16, String)> {
        let response = self
            .http
            .post(format!("{}/v1/lease", self.lease_url))
            .json(request)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        if status == 200 {
            Ok(serde_json::from_str(&text).unwrap())
        } else {
            Err((status, text))
        }
    }
}

/// An HTTP client that sends [`CLIENT_KEY`] unless a request sets its own `Authorization`.
pub fn lease_http() -> reqwest::Client {
    let mut key = reqwest::header::HeaderValue::from_str(&format!("Bearer {CLIENT_KEY}")).unwrap();
    key.set_sensitive(true);
    reqwest::Client::builder()
        .default_headers(reqwest::header::HeaderMap::from_iter([(
            reqwest::header::AUTHORIZATION,
            key,
        )]))
        .build()
        .unwrap()
}

/// The id of test client `n`.
pub fn client_id(n: u8) -> ClientId {
    ClientId::from_random([n; ClientId::RANDOM_BYTES])
}

/// A lease request of client `client` (see [`client_id`]) for one feature, as a client sends
/// it: holding `in_use` (and having acquired as many), wanting `want`, keeping `quota` of its
/// earlier grant; released [`release_date`], sequence 0, not in failover.
pub fn lease_request(
    client: u8,
    feature: &str,
    in_use: u32,
    want: u32,
    quota: u32,
) -> LeaseRequest {
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
        client_id: client_id(client),
        product_release: release_date(),
        features,
        failover: false,
        epoch: 0,
        asks: false,
        release: false,
    }
}

/// The quota an answer grants for `feature`.
pub fn quota(response: &LeaseResponse, feature: &str) -> u32 {
    response.features[&Feature::parse(feature).unwrap()].quota
}

impl TestServer {
    /// The quota of `feature` a lease request is granted (the request must succeed).
    pub async fn quota_of(&self, request: &LeaseRequest, feature: &str) -> u32 {
        match self.lease(request).await {
            Ok(response) => quota(&response, feature),
            Err((status, body)) => panic!("lease request refused: {status} {body}"),
        }
    }
}

/// The setup most server tests start from: a node in `dir/n` with the standard
/// installation, and its production server in `dir/s` synced and serving, on one clock.
#[derive(Debug)]
pub struct Synced {
    pub clock: Arc<ManualClock>,
    pub node: crate::node::TestNode,
    pub installation: crate::node::StandardInstallation,
    pub server: TestServer,
}

impl Synced {
    pub async fn start(dir: &Path) -> Self {
        let clock = crate::fixtures::manual_clock();
        let node = crate::node::TestNode::start(&dir.join("n"), clock.clone()).await;
        let installation = node.standard_installation().await;
        let server = TestServer::start(
            options(
                &dir.join("s"),
                vec![node.url.clone()],
                Some(installation.production),
            ),
            clock.clone(),
        )
        .await;
        server
            .wait_for("the first sync", |s| {
                s.state == leasehold_server::api::ServerState::Ok
            })
            .await;
        Self {
            clock,
            node,
            installation,
            server,
        }
    }

    pub async fn stop(self) {
        self.server.stop().await;
        self.node.stop().await;
    }
}
