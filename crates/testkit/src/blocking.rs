//! The kit for plain `#[test]` functions (and benchmarks): [`Env`] owns a tokio runtime with a
//! [`TestNode`] holding the [`StandardInstallation`], and starts [`TestServer`]s and proxies on
//! it; the tests themselves stay synchronous, as applications using the client library are.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use leasehold_proto::{ManualClock, ServerGuid};
use leasehold_server::api::{ClientStatus, ServerState, Status};
use tokio::runtime::{Handle, Runtime};

use crate::fixtures::{grant_request, manual_clock};
use crate::node::{StandardInstallation, TestNode};
use crate::proxy::Proxy;
use crate::server::{options, TestServer};

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

/// A node with the standard installation on a runtime of two worker threads, and a temporary
/// directory for it and the servers.
#[derive(Debug)]
pub struct Env {
    pub rt: Runtime,
    pub dir: tempfile::TempDir,
    /// The node's and every server's clock.
    pub clock: Arc<ManualClock>,
    pub node: TestNode,
    pub installation: StandardInstallation,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let clock = manual_clock();
        let (node, installation) = rt.block_on(async {
            let node = TestNode::start(&dir.path().join("node"), clock.clone()).await;
            let installation = node.standard_installation().await;
            (node, installation)
        });
        Self {
            rt,
            dir,
            clock,
            node,
            installation,
        }
    }

    /// A data directory for a server, below the environment's.
    pub fn server_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts a license server on `dir` under `guid` (port 0, or `lease` to come back on the
    /// same port), syncing with the node, and waits until it serves licenses.
    pub fn start_server(
        &self,
        dir: &Path,
        guid: ServerGuid,
        lease: Option<SocketAddr>,
    ) -> BlockingServer {
        let options = options(dir, vec![self.node.url.clone()], Some(guid));
        let lease = lease.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let server = self
            .rt
            .block_on(TestServer::start_on(options, self.clock.clone(), lease));
        let server = BlockingServer {
            lease_addr: server.lease_addr,
            server,
            rt: self.rt.handle().clone(),
        };
        wait_for(
            "the server to serve licenses",
            Duration::from_secs(10),
            || (server.status().state == ServerState::Ok).then_some(()),
        );
        server
    }

    pub fn stop_server(&self, server: BlockingServer) {
        self.rt.block_on(server.server.stop());
    }

    /// Adds `count` production licenses of `feature` (no backup twins).
    pub fn grant_more(&self, feature: &str, count: u32) {
        let grant = grant_request(self.installation.production, feature, count);
        self.rt.block_on(self.node.grant_directly(&grant));
    }

    /// Moves the shared clock `secs` seconds on.
    pub fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }

    /// A [`Proxy`] in front of `upstream`, on the environment's runtime.
    pub fn proxy(&self, upstream: SocketAddr) -> Proxy {
        self.rt.block_on(Proxy::start(upstream))
    }
}

/// A [`TestServer`] called synchronously.
#[derive(Debug)]
pub struct BlockingServer {
    pub lease_addr: SocketAddr,
    pub server: TestServer,
    rt: Handle,
}

impl BlockingServer {
    /// `host:port` of the lease listener, as a client's server list takes it.
    pub fn addr(&self) -> String {
        self.server.addr()
    }

    pub fn status(&self) -> Status {
        self.rt.block_on(self.server.status())
    }

    pub fn clients(&self) -> Vec<ClientStatus> {
        self.rt.block_on(self.server.clients())
    }

    /// A sync now; the call must succeed (its outcome is not looked at).
    pub fn sync_now(&self) {
        self.rt.block_on(self.server.sync_now());
    }
}
