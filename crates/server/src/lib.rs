//! The Leasehold license server: syncs with the license nodes, leases licenses to clients,
//! keeps the usage ledger and serves the admin API and the dashboard.
#![forbid(unsafe_code)]

pub use service::agent;
pub mod allocator;
pub use leasehold_proto::api::server as api;
pub mod charts;
pub mod client_key;
pub mod config;
pub mod dashboard;
pub mod diagnostics;
mod error;
pub mod export;
pub mod history;
pub mod ledger;
pub mod logbuf;
mod metrics;
pub mod outbound;
pub mod service;
pub mod store;
mod writer;

pub use leasehold_web::ApiError;
pub use service::{ClientLimits, ClientQuery, LicenseServer, ServerOptions};
mod http;

pub use dashboard::DashboardSettings;
pub use http::{admin_description, admin_router, lease_description, lease_router, AppState};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use leasehold_proto::Clock;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A server started by [`start`]: its addresses and the handles to stop it.
#[derive(Debug)]
pub struct RunningServer {
    pub server: Arc<LicenseServer>,
    pub agent: agent::AgentHandle,
    pub lease_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The dashboard password generated at this start because none was set; print it once.
    pub dashboard_password: Option<String>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    tls_reloader: Option<JoinHandle<()>>,
}

/// How to start a server besides its [`ServerOptions`].
#[derive(Debug, Clone)]
pub struct Listeners {
    pub lease: SocketAddr,
    pub admin: SocketAddr,
    pub admin_token: String,
    /// How often the sync agent looks at the clock.
    pub agent_tick: Duration,
    /// Bounds of both listeners (connections, header and idle timeouts).
    pub limits: leasehold_web::Limits,
    /// HTTPS on both listeners; the certificate files are re-read when they change.
    pub tls: Option<leasehold_web::Tls>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("dashboard password: {0}")]
    Password(String),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Opens the data directory, binds both listeners and starts serving and syncing, with a
/// dashboard that has no config file to edit.
pub async fn start(
    options: ServerOptions,
    listeners: Listeners,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, StartError> {
    start_with_dashboard(options, listeners, DashboardSettings::default(), clock).await
}

/// [`start`], telling the dashboard how the server was configured.
pub async fn start_with_dashboard(
    options: ServerOptions,
    listeners: Listeners,
    dashboard: DashboardSettings,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, StartError> {
    let _ = leasehold_web::metrics::prometheus();
    let running_settings = dashboard::RunningSettings {
        listen: listeners.lease,
        admin_listen: listeners.admin,
        nodes: options.nodes.clone(),
        node_timeout: options.node_timeout,
        vendor_key_ids: options
            .trusted_keys
            .kids()
            .map(|k| k.as_str().to_owned())
            .collect(),
        vendor_keys: Vec::new(),
        tls_fingerprint: listeners.tls.as_ref().map(leasehold_web::Tls::fingerprint),
        node_connection: options.node_connection.clone(),
    };
    let server = LicenseServer::open(options, clock).await?;
    let data_dir = server.data_dir().to_path_buf();
    let dashboard_password = {
        let dir = data_dir.clone();
        tokio::task::spawn_blocking(move || dashboard::ensure_password(&dir))
            .await
            .map_err(|e| StartError::Password(e.to_string()))?
            .map_err(StartError::Password)?
    };
    let lease_listener =
        TcpListener::bind(listeners.lease)
            .await
            .map_err(|source| StartError::Listen {
                what: "--listen",
                addr: listeners.lease,
                source,
            })?;
    let admin_listener =
        TcpListener::bind(listeners.admin)
            .await
            .map_err(|source| StartError::Listen {
                what: "--admin-listen",
                addr: listeners.admin,
                source,
            })?;
    let lease_addr = lease_listener
        .local_addr()
        .map_err(|source| StartError::Listen {
            what: "--listen",
            addr: listeners.lease,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Listen {
            what: "--admin-listen",
            addr: listeners.admin,
            source,
        })?;
    let (agent, agent_task) = agent::spawn(server.clone(), listeners.agent_tick);
    let dashboard = Arc::new(dashboard::DashboardState::new(
        &data_dir,
        dashboard,
        running_settings,
    ));
    let state = AppState::new(
        server.clone(),
        agent.clone(),
        &listeners.admin_token,
        dashboard,
    );
    let (stop, stopped) = watch::channel(false);
    let limits = listeners.limits;
    let tls = listeners.tls.clone();
    let serve = |name: &'static str,
                 listener: TcpListener,
                 router: axum::Router,
                 mut stopped: watch::Receiver<bool>| {
        let tls = tls.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            // The peer address (for the dashboard's limit on failed sign-ins) is in every
            // request; answers go out at once (TCP_NODELAY), see `leasehold_web::serve`.
            if let Err(e) =
                leasehold_web::serve(name, listener, router, limits, tls, shutdown).await
            {
                tracing::error!(listener = name, error = %e, "listener failed");
            }
        })
    };
    let tls_reloader = listeners
        .tls
        .as_ref()
        .map(|t| t.spawn_reloader("server", leasehold_web::tls::RELOAD_CHECK_EVERY));
    let tasks = vec![
        serve(
            "lease",
            lease_listener,
            lease_router(state.clone()),
            stopped.clone(),
        ),
        serve("admin", admin_listener, admin_router(state), stopped),
        agent_task,
    ];
    tracing::info!(%lease_addr, %admin_addr, instance = %server.instance_id(), "license server started");
    Ok(RunningServer {
        server,
        agent,
        lease_addr,
        admin_addr,
        dashboard_password,
        stop,
        tasks,
        tls_reloader,
    })
}

impl RunningServer {
    /// Stops listening, stops the agent, flushes usage and releases the data directory.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Some(r) = &self.tls_reloader {
            r.abort();
        }
        self.agent.stop().await;
        for t in self.tasks {
            let _ = t.await;
        }
        self.server.close().await;
    }
}
