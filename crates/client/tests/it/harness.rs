//! A node, license servers and TCP proxies in one process (after the server crate's harness),
//! driven from plain `#[test]` functions: the servers run on a runtime owned by [`Env`], the
//! clients are used synchronously, as applications use them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use leasehold_client::{Client, ClientBuilder, Denied};
use leasehold_node::api::GrantLicense;
use leasehold_node::{Node, NodeState};
use leasehold_proto::{
    Context, Feature, LicenseId, ManualClock, ServerGuid, TrustedKeys, VendorSigningKey,
};
use leasehold_server::api::{ClientStatus, ServerState, Status};
use leasehold_server::{Listeners, RunningServer, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

pub const TOKEN: &str = "server-admin-token";

pub fn release_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()
}

fn vendor_key() -> VendorSigningKey {
    VendorSigningKey::from_secret_bytes([11; 32])
}

/// Polls `f` every 10 ms until it returns `Some`, at most `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A node with one installation: a production and a backup server, `tts` ×10 and
/// `asr.en-US` ×20 each (maintenance to 2027-06-30).
pub struct Env {
    pub rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub node: Arc<Node>,
    pub node_url: String,
    pub prod: ServerGuid,
    pub backup: ServerGuid,
    pub tts: LicenseId,
    node_stop: Option<oneshot::Sender<()>>,
}

impl Env {
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 2, 9, 30, 0).unwrap(),
        ));
        let ndir = dir.path().join("node");
        std::fs::create_dir_all(&ndir).unwrap();
        let (node, node_url, node_stop) = rt.block_on(async {
            let store = leasehold_node::store::open(&format!(
                "sqlite://{}",
                ndir.join("node.db").display()
            ))
            .await
            .unwrap();
            let node = Arc::new(Node::new(store, vendor_key(), clock.clone()));
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let (tx, rx) = oneshot::channel::<()>();
            let n = node.clone();
            tokio::spawn(async move {
                leasehold_node::serve(NodeState::new(n, "node-token"), listener, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
            (node, url, tx)
        });
        let mut env = Self {
            rt,
            dir,
            clock,
            node,
            node_url,
            prod: ServerGuid::parse("{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}").unwrap(),
            backup: ServerGuid::parse("{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}").unwrap(),
            tts: LicenseId::from_random([0; 8]),
            node_stop: Some(node_stop),
        };
        env.rt.block_on(async {
            let inst = env.node.create_installation("Acme").await.unwrap();
            let prod = env
                .node
                .add_server(&inst.id, Context::Production)
                .await
                .unwrap();
            let backup = env
                .node
                .add_server(&inst.id, Context::Backup)
                .await
                .unwrap();
            for (feature, count) in [("tts", 10), ("asr.en-US", 20)] {
                let l = grant(&env.node, prod.guid, feature, count, None).await;
                grant(&env.node, backup.guid, feature, count, Some(l.clone())).await;
                if feature == "tts" {
                    env.tts = l;
                }
            }
            env.prod = prod.guid;
            env.backup = backup.guid;
        });
        env
    }

    pub fn server_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts a license server on `dir` (port 0, or `lease` to come back on the same port)
    /// and waits until it serves licenses.
    pub fn start_server(
        &self,
        dir: &Path,
        guid: ServerGuid,
        lease: Option<SocketAddr>,
    ) -> TestServer {
        let options = ServerOptions {
            data_dir: dir.to_path_buf(),
            nodes: vec![self.node_url.clone()],
            trusted_keys: TrustedKeys::new().with(vendor_key().verifying_key()),
            guid: Some(guid),
            node_timeout: Duration::from_secs(5),
        };
        let running = self.rt.block_on(async {
            let mut last = None;
            // The port of a server just stopped can take a moment to be free again.
            for _ in 0..100 {
                match leasehold_server::start(
                    options.clone(),
                    Listeners {
                        lease: lease.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()),
                        admin: "127.0.0.1:0".parse().unwrap(),
                        admin_token: TOKEN.into(),
                        agent_tick: Duration::from_millis(20),
                    },
                    self.clock.clone(),
                )
                .await
                {
                    Ok(r) => return r,
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("server did not start: {:?}", last);
        });
        let server = TestServer {
            lease_addr: running.lease_addr,
            admin_url: format!("http://{}", running.admin_addr),
            running: Some(running),
            http: reqwest::Client::new(),
            rt: self.rt.handle().clone(),
        };
        wait_for(
            "the server to serve licenses",
            Duration::from_secs(10),
            || (server.status().state == ServerState::Ok).then_some(()),
        );
        server
    }

    pub fn stop_server(&self, mut server: TestServer) {
        let running = server.running.take().unwrap();
        self.rt.block_on(running.stop());
    }

    /// Adds `count` production licenses of `feature` (and their backup twins are not needed).
    pub fn grant_more(&self, feature: &str, count: u32) {
        self.rt
            .block_on(grant(&self.node, self.prod, feature, count, None));
    }

    pub fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }

    pub fn proxy(&self, upstream: SocketAddr) -> Proxy {
        self.rt.block_on(Proxy::start(upstream))
    }

    /// A client builder on `servers` with the shortened timings most tests use.
    pub fn client(&self, servers: &str) -> ClientBuilder {
        Client::builder()
            .servers(servers)
            .product_release(release_date())
            .feature("tts")
            .refresh(Duration::from_millis(100))
            .failover_after(Duration::from_millis(500))
            .flush_after(Duration::from_millis(1500))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(tx) = self.node_stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn grant(
    node: &Node,
    server: ServerGuid,
    feature: &str,
    count: u32,
    backs_up: Option<LicenseId>,
) -> LicenseId {
    node.grant_license(&GrantLicense {
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

pub struct TestServer {
    pub running: Option<RunningServer>,
    pub lease_addr: SocketAddr,
    pub admin_url: String,
    http: reqwest::Client,
    rt: tokio::runtime::Handle,
}

impl TestServer {
    /// `host:port` of the lease listener, for a client's server list.
    pub fn addr(&self) -> String {
        self.lease_addr.to_string()
    }

    pub fn status(&self) -> Status {
        self.rt.block_on(async {
            self.http
                .get(format!("{}/v1/admin/status", self.admin_url))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    }

    pub fn clients(&self) -> Vec<ClientStatus> {
        self.rt.block_on(async {
            self.http
                .get(format!("{}/v1/admin/clients", self.admin_url))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    }

    pub fn sync_now(&self) {
        self.rt.block_on(async {
            let r = self
                .http
                .post(format!("{}/v1/admin/sync", self.admin_url))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{:?}", r.text().await);
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Pass,
    /// Answers arrive this late.
    Delay(Duration),
    /// Connections are dropped, new ones closed at once.
    Down,
    /// Connections stay open and requests reach the server, but no answer reaches the
    /// client: a server that hangs.
    Freeze,
}

/// A TCP proxy in front of a server: passes, delays, swallows or drops the traffic.
pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    last_answer: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(ProxyMode::Pass);
        let last_answer = Arc::new(std::sync::Mutex::new(None));
        let last = last_answer.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let mut rx = rx.clone();
                if *rx.borrow() == ProxyMode::Down {
                    drop(sock);
                    continue;
                }
                let last = last.clone();
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = sock.into_split();
                    let (mut ur, mut uw) = up.into_split();
                    let delay_rx = rx.clone();
                    let to_server = async move {
                        let _ = tokio::io::copy(&mut cr, &mut uw).await;
                        let _ = uw.shutdown().await;
                    };
                    let to_client = async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match ur.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let mode = *delay_rx.borrow();
                            if let ProxyMode::Delay(d) = mode {
                                tokio::time::sleep(d).await;
                            }
                            if *delay_rx.borrow() == ProxyMode::Freeze {
                                continue;
                            }
                            if cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            *last.lock().unwrap() = Some(Instant::now());
                        }
                        let _ = cw.shutdown().await;
                    };
                    tokio::select! {
                        _ = async { tokio::join!(to_server, to_client) } => {}
                        _ = rx.wait_for(|m| *m == ProxyMode::Down) => {}
                    }
                });
            }
        });
        Self {
            addr,
            mode,
            last_answer,
        }
    }

    /// When the proxy last passed an answer to the client.
    pub fn last_answer(&self) -> Option<Instant> {
        *self.last_answer.lock().unwrap()
    }

    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }
}

/// Counts licenses held across threads and clients and remembers the most held at once.
#[derive(Debug, Default)]
pub struct HeldCounter {
    held: AtomicU32,
    max: AtomicU32,
}

impl HeldCounter {
    /// Call right after a successful acquire.
    pub fn up(&self) {
        let now = self.held.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    /// Call right before dropping the guard.
    pub fn down(&self) {
        self.held.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn max(&self) -> u32 {
        self.max.load(Ordering::SeqCst)
    }
}

/// Feature status of `feature` in a client's status.
pub fn feature(client: &Client, feature: &str) -> leasehold_client::FeatureStatus {
    client
        .status()
        .features
        .into_iter()
        .find(|f| f.feature == feature)
        .unwrap()
}

/// Runs `threads` threads hammering `tts` on `client` until `stop`; counts into `held` (all
/// clients) and `mine` (this client). Returns the number of grants and of `Flushed`/`NotConnected` denials.
pub fn hammer(
    client: &Client,
    threads: usize,
    stop: &AtomicBool,
    held: &HeldCounter,
    mine: &HeldCounter,
) -> (u64, u64) {
    let grants = AtomicU64::new(0);
    let flushed = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let grants = &grants;
            let flushed = &flushed;
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    match client.acquire("tts") {
                        Ok(g) => {
                            held.up();
                            mine.up();
                            grants.fetch_add(1, Ordering::Relaxed);
                            // Hold it a little, sometimes longer.
                            if (i + t as u64).is_multiple_of(16) {
                                std::thread::sleep(Duration::from_micros(300));
                            } else {
                                std::thread::yield_now();
                            }
                            mine.down();
                            held.down();
                            drop(g);
                        }
                        Err(Denied::QuotaExhausted) => std::thread::yield_now(),
                        Err(Denied::Flushed | Denied::NotConnected) => {
                            flushed.fetch_add(1, Ordering::Relaxed);
                            std::thread::yield_now();
                        }
                        Err(e) => panic!("unexpected denial {e:?}"),
                    }
                }
            });
        }
    });
    (
        grants.load(Ordering::Relaxed),
        flushed.load(Ordering::Relaxed),
    )
}
