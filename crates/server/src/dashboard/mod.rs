//! The dashboard: server-rendered pages (askama templates in `templates/`) on the admin
//! listener, behind a password and a session. It uses the same `LicenseServer` and sync
//! agent the admin API uses. Routes are listed in [`router`]; handlers are named for page and
//! method (`pages.rs` renders, `forms.rs` takes POSTs).

pub mod auth;
mod forms;
mod pages;
mod views;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use axum::routing::get;
use axum::Router;

pub use auth::{ensure_password, set_password, verify_password, PASSWORD_FILE};
// The forms' decoding and checks, for the fuzz targets (`fuzz/`).
pub use forms::{
    check_config_form, lines, CheckedConfig, ConfigPost, CsrfOnly, LoginForm, SetupForm,
};
pub use views::ConfigErrors;

use crate::config::DATA_DIR_CONFIG_FILE;
use crate::http::AppState;

/// What the dashboard needs to know about how the server was started.
#[derive(Debug, Clone, Default)]
pub struct DashboardSettings {
    /// The `--config` file the configuration page edits; `None` when the settings came from
    /// flags and the environment only.
    pub config_path: Option<PathBuf>,
    /// The vendor keys as configured (public keys or key file names), to prefill the form.
    pub vendor_keys: Vec<String>,
    /// Recent log lines of this process (the CLI installs its layer next to the log output).
    pub logs: crate::logbuf::LogBuffer,
}

/// The settings in force in this process, as the configuration page shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningSettings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub nodes: Vec<String>,
    pub node_timeout: Duration,
    /// Key ids of the trusted vendor keys.
    pub vendor_key_ids: BTreeSet<String>,
    pub vendor_keys: Vec<String>,
    /// The lease and admin listeners speak HTTPS (their certificate's SHA-256).
    pub tls_fingerprint: Option<String>,
    /// How the nodes are reached.
    pub node_connection: crate::outbound::NodeConnection,
}

/// The dashboard's share of the admin listener's state.
#[derive(Debug)]
pub struct DashboardState {
    pub sessions: auth::Sessions,
    data_dir: PathBuf,
    config_path: Option<PathBuf>,
    running: Mutex<RunningSettings>,
    /// Settings saved to the file that only a restart applies.
    restart_needed: Mutex<BTreeSet<&'static str>>,
    pub logs: crate::logbuf::LogBuffer,
}

impl DashboardState {
    pub fn new(data_dir: &Path, settings: DashboardSettings, running: RunningSettings) -> Self {
        let running = RunningSettings {
            vendor_keys: settings.vendor_keys,
            ..running
        };
        Self {
            sessions: auth::Sessions::default(),
            data_dir: data_dir.to_path_buf(),
            config_path: settings.config_path,
            running: Mutex::new(running),
            restart_needed: Mutex::new(BTreeSet::new()),
            logs: settings.logs,
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The file the configuration page writes: `--config`, or the data directory's own file.
    pub fn config_target(&self) -> PathBuf {
        self.config_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join(DATA_DIR_CONFIG_FILE))
    }

    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }
}

/// How the listeners and the way to the nodes are secured, in words (the configuration page
/// and the support bundle).
impl RunningSettings {
    pub fn transport_words(&self) -> (String, String) {
        let listeners = match &self.tls_fingerprint {
            Some(fp) => format!("HTTPS (certificate SHA-256 {fp})"),
            None => "plain HTTP (no --tls-cert)".to_string(),
        };
        let c = &self.node_connection;
        let trust = match &c.ca_file {
            Some(f) => format!("node certificates must chain to {}", f.display()),
            None => "node certificates checked against the system's trusted roots".to_string(),
        };
        let proxy = match &c.proxy {
            Some(p) => format!(
                "through the proxy {}{}",
                crate::outbound::redact_proxy(p),
                if c.no_proxy.is_empty() {
                    String::new()
                } else {
                    format!(" (direct to {})", c.no_proxy.join(", "))
                }
            ),
            None => "direct (no proxy)".to_string(),
        };
        (listeners, format!("{proxy}; {trust}"))
    }
}

impl DashboardState {
    /// Cookies are marked `Secure` when the admin listener speaks HTTPS.
    pub fn secure_cookies(&self) -> bool {
        lock(&self.running).tls_fingerprint.is_some()
    }

    pub fn running(&self) -> RunningSettings {
        lock(&self.running).clone()
    }

    fn set_running_nodes(&self, nodes: Vec<String>) {
        lock(&self.running).nodes = nodes;
    }

    pub fn restart_needed(&self) -> Vec<&'static str> {
        lock(&self.restart_needed).iter().copied().collect()
    }

    fn set_restart_needed(&self, settings: BTreeSet<&'static str>) {
        *lock(&self.restart_needed) = settings;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every dashboard route. Only `/login` and `/static/*` answer without a session.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::root_get))
        .route("/login", get(pages::login_get).post(forms::login_post))
        .route("/logout", axum::routing::post(forms::logout_post))
        .route(
            "/static/dashboard.css",
            get(leasehold_web::browser::stylesheet),
        )
        .route("/licenses", get(pages::licenses_get))
        .route("/setup", get(pages::setup_get).post(forms::setup_post))
        .route(
            "/setup/client-key",
            axum::routing::post(forms::client_key_post),
        )
        .route("/sync", get(pages::sync_get).post(forms::sync_post))
        .route("/clients", get(pages::clients_get))
        .route("/clients/table", get(pages::clients_table_get))
        .route("/usage", get(pages::usage_get))
        .route("/usage/export.csv", get(pages::usage_csv_get))
        .route("/usage/export.json", get(pages::usage_json_get))
        .route("/config", get(pages::config_get).post(forms::config_post))
        .route("/diagnostics", get(pages::diagnostics_get))
        .route("/diagnostics/bundle", get(pages::support_bundle_get))
        .layer(axum::middleware::map_response(
            leasehold_web::browser::security_headers,
        ))
}
