//! The demo's processes: the license node and the license servers, started and stopped.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use leasehold_node::{Node, NodeState};
use leasehold_proto::{ServerGuid, SystemClock, TrustedKeys};
use leasehold_server::logbuf::LogBuffer;
use leasehold_server::{DashboardSettings, Listeners, RunningServer, ServerOptions};

use super::port;
use super::provision::{random_token, write_private};

/// How long to wait for each server's first sync before going on without it.
pub(super) const SYNC_WAIT: Duration = Duration::from_secs(20);
/// The same file `leasehold server run` reads its generated token from.
pub(super) const SERVER_TOKEN_FILE: &str = "admin-token";

/// One license server of the demo and how to start it.
#[derive(Debug)]
pub(super) struct ServerSpec {
    pub(super) name: &'static str,
    pub(super) data_dir: PathBuf,
    pub(super) guid: ServerGuid,
    pub(super) lease: SocketAddr,
    pub(super) admin: SocketAddr,
    pub(super) token: String,
}

/// What the node and the servers share.
#[derive(Debug, Clone)]
pub(super) struct Common {
    pub(super) node_url: String,
    pub(super) trusted: TrustedKeys,
    pub(super) public_key: String,
    pub(super) logs: LogBuffer,
}

impl ServerSpec {
    /// The server's data directory and admin token (made once, kept in the directory).
    pub(super) fn new(
        dir: &Path,
        name: &'static str,
        guid: ServerGuid,
        base: u16,
        offset: u16,
    ) -> anyhow::Result<Self> {
        let data_dir = dir.join(name);
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let token_path = data_dir.join(SERVER_TOKEN_FILE);
        let token = match std::fs::read_to_string(&token_path) {
            Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
            Ok(_) => bail!(
                "the admin token file {} is empty; delete it to make a new one",
                token_path.display()
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let token = random_token();
                write_private(&token_path, &format!("{token}\n"), true)?;
                token
            }
            Err(e) => bail!("cannot read {}: {e}", token_path.display()),
        };
        Ok(Self {
            name,
            data_dir,
            guid,
            lease: port(base, offset),
            admin: port(base, offset + 1),
            token,
        })
    }
}

/// The installation's client key, the same on both servers (as an operator gives the
/// primary's key to its backup with `leasehold server client-key --set`).
pub(super) fn share_client_key(
    production: &ServerSpec,
    backup: Option<&ServerSpec>,
) -> anyhow::Result<String> {
    use leasehold_server::client_key::ClientKeys;
    let (keys, _) = ClientKeys::load_or_create(&production.data_dir).map_err(anyhow::Error::msg)?;
    let key = keys.current().to_owned();
    if let Some(backup) = backup {
        ClientKeys::install(&backup.data_dir, &key, chrono::Utc::now())
            .map_err(anyhow::Error::msg)?;
    }
    Ok(key)
}

pub(super) async fn start_server(
    spec: &ServerSpec,
    common: &Common,
) -> anyhow::Result<RunningServer> {
    let options = ServerOptions {
        data_dir: spec.data_dir.clone(),
        nodes: vec![common.node_url.clone()],
        trusted_keys: common.trusted.clone(),
        guid: Some(spec.guid),
        node_timeout: Duration::from_secs(10),
        client_key_overlap: leasehold_server::client_key::DEFAULT_OVERLAP,
        client_limits: leasehold_server::ClientLimits::default(),
        node_connection: Default::default(),
    };
    let listeners = Listeners {
        lease: spec.lease,
        admin: spec.admin,
        admin_token: spec.token.clone(),
        agent_tick: Duration::from_secs(1),
        limits: leasehold_web::Limits::default(),
        tls: None,
    };
    let dashboard = DashboardSettings {
        config_path: None,
        vendor_keys: vec![common.public_key.clone()],
        logs: common.logs.clone(),
    };
    leasehold_server::start_with_dashboard(options, listeners, dashboard, Arc::new(SystemClock))
        .await
        .map_err(anyhow::Error::new)
        .with_context(|| {
            format!(
                "starting the {} server (data {}; ports in use? choose others with --listen-base; another demo on this directory?)",
                spec.name,
                spec.data_dir.display()
            )
        })
}

/// Waits until the server's state is `ok` (it syncs at start), at most [`SYNC_WAIT`].
pub(super) async fn wait_synced(server: Option<&RunningServer>) -> Result<(), String> {
    let Some(server) = server else { return Ok(()) };
    let deadline = Instant::now() + SYNC_WAIT;
    loop {
        let last = match server.server.status().await {
            Ok(s) if s.state == leasehold_server::api::ServerState::Ok => return Ok(()),
            Ok(s) => format!(
                "{}{}",
                state_name(s.state),
                s.reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) fn state_name(state: leasehold_server::api::ServerState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{state:?}"))
}

/// The license node, serving in this process until stopped.
pub(super) struct NodeProcess {
    pub(super) url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl NodeProcess {
    /// The node has no bootstrap token: the demo makes its admin account directly.
    pub(super) async fn start(node: Arc<Node>, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for the node (choose other ports with --listen-base)")
        })?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(leasehold_node::serve(
            NodeState::new(node, ""),
            listener,
            None,
            leasehold_web::Limits::default(),
            None,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            url: format!("http://{addr}"),
            stop,
            task,
        })
    }

    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the node stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "the node task failed"),
        }
    }
}

/// The installation's license servers: the production one (stopped and started from the
/// console) and the backup, if any.
pub(super) struct Servers {
    pub(super) common: Common,
    pub(super) production: ServerSpec,
    pub(super) backup: Option<ServerSpec>,
    pub(super) primary: Option<RunningServer>,
    pub(super) standby: Option<RunningServer>,
}

impl Servers {
    /// Starts both servers together; if either fails, stops the other.
    pub(super) async fn start(
        common: Common,
        production: ServerSpec,
        backup: Option<ServerSpec>,
    ) -> anyhow::Result<Self> {
        let (primary, standby) = tokio::join!(start_server(&production, &common), async {
            match &backup {
                Some(spec) => start_server(spec, &common).await.map(Some),
                None => Ok(None),
            }
        });
        match (primary, standby) {
            (Ok(p), Ok(s)) => Ok(Self {
                common,
                production,
                backup,
                primary: Some(p),
                standby: s,
            }),
            (p, s) => {
                let mut error = None;
                for r in [p.map(Some), s] {
                    match r {
                        Ok(Some(server)) => server.stop().await,
                        Ok(None) => {}
                        Err(e) => error = error.or(Some(e)),
                    }
                }
                Err(error.unwrap_or_else(|| anyhow::anyhow!("a server did not start")))
            }
        }
    }

    /// The clients' server list: the production server, then the backup.
    pub(super) fn client_list(&self) -> String {
        match &self.backup {
            Some(b) => format!("{};{}", self.production.lease, b.lease),
            None => self.production.lease.to_string(),
        }
    }

    /// Stops the production server; says what happened.
    pub(super) async fn stop_primary(&mut self) -> &'static str {
        match self.primary.take() {
            Some(server) => {
                server.stop().await;
                if self.backup.is_some() {
                    "production server stopped: the clients move to the backup within ~12 s (s + Enter starts it again)"
                } else {
                    "production server stopped (s + Enter starts it again)"
                }
            }
            None => "the production server is already stopped (s + Enter starts it)",
        }
    }

    /// Starts the production server again on its data directory; says what happened.
    pub(super) async fn start_primary(&mut self) -> String {
        if self.primary.is_some() {
            return "the production server is already running".into();
        }
        match start_server(&self.production, &self.common).await {
            Ok(server) => {
                self.primary = Some(server);
                "production server started again on its data directory: it restores its leases and grants at once (after more than ~2 minutes away it relearns them first); the clients return to it within a few seconds".into()
            }
            Err(e) => format!("cannot start the production server again: {e:#}"),
        }
    }

    pub(super) async fn stop(mut self) {
        if let Some(server) = self.primary.take() {
            server.stop().await;
        }
        if let Some(server) = self.standby.take() {
            server.stop().await;
        }
    }
}
