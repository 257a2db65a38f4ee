//! What the templates show: one struct per template (askama checks them at compile time) and
//! the words, marks and times the pages share. Values are formatted here so the templates
//! stay plain.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::auth::{Flash, Session};
use crate::api::{ServerState, Status};

/// Renders a template into a page with `status`.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    leasehold_web::browser::html_page(status, template.render(), "dashboard")
}

pub use leasehold_web::browser::{FlashView, NavItem};

const NAV: [(&str, &str); 7] = [
    ("/licenses", "Licenses"),
    ("/sync", "Sync"),
    ("/clients", "Clients"),
    ("/usage", "Usage"),
    ("/config", "Configuration"),
    ("/diagnostics", "Diagnostics"),
    ("/setup", "Setup"),
];

/// The frame of every page: navigation, the server's GUID and state, the flash message.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    pub signed_in: bool,
    pub csrf: String,
    pub nav: Vec<NavItem>,
    pub guid: String,
    pub state: StateView,
    pub flash: Option<FlashView>,
    /// A problem every page shows until it is gone (usage that cannot be saved).
    pub banner: Option<String>,
}

impl Layout {
    pub fn new(
        title: &str,
        current: &str,
        session: Option<&Session>,
        status: Option<&Status>,
        flash: Option<Flash>,
    ) -> Self {
        Self {
            title: title.into(),
            signed_in: session.is_some(),
            csrf: session.map(|s| s.csrf.clone()).unwrap_or_default(),
            nav: leasehold_web::browser::nav(&NAV, current),
            guid: status
                .and_then(|s| s.guid)
                .map_or_else(|| "no GUID set".into(), |g| g.to_string()),
            state: status.map_or_else(StateView::unknown, |s| StateView::of(s.state)),
            flash: flash.map(FlashView::from),
            banner: status.and_then(|s| {
                s.storage_failing_since.map(|since| {
                    format!(
                        "Usage and lease state cannot be saved: writing to the data directory fails since {} ({}). Licenses are still served; free space or fix the file system. See Diagnostics.",
                        since.format("%Y-%m-%d %H:%M UTC"),
                        s.storage_error.as_deref().unwrap_or("unknown error")
                    )
                })
            }),
        }
    }
}

/// A server state in words with an icon, never in colour alone.
#[derive(Debug, Clone)]
pub struct StateView {
    pub icon: &'static str,
    pub words: &'static str,
    pub class: &'static str,
}

impl StateView {
    pub fn of(state: ServerState) -> Self {
        let (icon, words, class) = match state {
            ServerState::Ok => ("✔", "Serving licenses", "good"),
            ServerState::Unconfigured => ("○", "Not set up: no server GUID", "warn"),
            ServerState::NotSynced => ("…", "Not synced yet: no licenses", "warn"),
            ServerState::Expired => ("✖", "Suspended: no sync for too long", "bad"),
            ServerState::ClockTampered => ("✖", "Suspended: the clock was set back", "bad"),
        };
        Self { icon, words, class }
    }

    fn unknown() -> Self {
        Self {
            icon: "?",
            words: "State unknown",
            class: "warn",
        }
    }
}

pub fn time(t: Option<DateTime<Utc>>, none: &str) -> String {
    t.map_or_else(
        || none.into(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

pub use leasehold_web::browser::{date_mark, relative, span};

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub next: String,
    pub login_csrf: String,
    pub error: Option<String>,
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub layout: Layout,
    pub heading: String,
    pub message: String,
    pub back: String,
}

#[derive(Debug, Clone)]
pub struct LicenseRow {
    pub id: String,
    pub feature: String,
    pub context: String,
    pub count: u32,
    pub in_use: u32,
    pub reserved: u32,
    pub maintenance_until: String,
    pub expires: String,
    pub backs_up: String,
    pub marks: Vec<String>,
    pub flagged: bool,
}

#[derive(Template)]
#[template(path = "licenses.html")]
pub struct LicensesPage {
    pub layout: Layout,
    pub rows: Vec<LicenseRow>,
    pub context: String,
    pub reason: Option<String>,
    pub unconfigured: bool,
    pub learning_until: Option<String>,
    pub flagged: usize,
}

#[derive(Template)]
#[template(path = "setup.html")]
pub struct SetupPage {
    pub layout: Layout,
    pub guid: Option<String>,
    pub context: String,
    pub installation: String,
    pub state: StateView,
    pub reason: Option<String>,
    pub value: String,
    pub error: Option<String>,
    /// The installation's client key, and until when replaced keys are accepted.
    pub client_key: String,
    pub previous_keys_until: Vec<String>,
    pub key_overlap: String,
}

#[derive(Debug, Clone)]
pub struct NodeRow {
    pub url: String,
    pub last_ok: String,
    pub last_error: String,
}

#[derive(Template)]
#[template(path = "sync.html")]
pub struct SyncPage {
    pub layout: Layout,
    pub state: StateView,
    pub reason: Option<String>,
    pub last_sync: String,
    pub last_node: String,
    pub last_error: Option<String>,
    pub next_sync: String,
    pub grace: String,
    pub not_after: String,
    pub serial: u64,
    pub pending: usize,
    pub air_gapped: bool,
    pub nodes: Vec<NodeRow>,
    pub upload_json: Option<String>,
    pub upload_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ClientRow {
    pub name: String,
    pub client: String,
    pub address: String,
    pub product_release: String,
    /// One line per feature: what it holds of its quota.
    pub holds: Vec<String>,
    pub failover: bool,
    pub connected_since: String,
    pub last_seen: String,
}

/// A sortable column heading of the Clients table.
#[derive(Debug, Clone)]
pub struct SortColumn {
    pub heading: &'static str,
    /// Its `sort=` value.
    pub value: &'static str,
    pub link: String,
    pub current: bool,
    /// `aria-sort` of the column the table is sorted by (`None` for the others).
    pub aria_sort: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "clients.html")]
pub struct ClientsPage {
    pub layout: Layout,
    /// The rendered `clients_table.html` (escaped there), shared with the live refresh.
    pub table_html: String,
}

#[derive(Template)]
#[template(path = "clients_table.html")]
pub struct ClientsTable {
    pub rows: Vec<ClientRow>,
    /// Every client the search matches (this page shows `first` to `last` of them).
    pub clients: usize,
    pub first: usize,
    pub last: usize,
    /// The search text, empty for none.
    pub search: String,
    pub columns: Vec<SortColumn>,
    /// The order shown (`ClientSort::as_str`).
    pub sort: &'static str,
    /// Links to the neighbouring pages, when there are any.
    pub prev: Option<String>,
    pub next: Option<String>,
    pub as_of: String,
}

#[derive(Debug, Clone)]
pub struct FeatureUsageRow {
    pub feature: String,
    pub count: u32,
    pub in_use: u32,
    pub reserved: u32,
    pub free: u32,
}

#[derive(Debug, Clone)]
pub struct HourRow {
    pub feature: String,
    pub hour: String,
    pub peak: u32,
    /// License-hours, two decimals.
    pub license_hours: String,
    pub grants: u64,
    pub denials: u64,
    pub denials_while_free: u64,
}

/// One chart on the usage page: an inline SVG made by the server.
#[derive(Debug, Clone)]
pub struct ChartView {
    pub title: String,
    /// Trusted markup rendered as is (made by `crate::charts`, never from user input).
    pub svg: String,
    /// The same data in words, for readers who cannot see the chart.
    pub summary: String,
}

#[derive(Template)]
#[template(path = "usage.html")]
pub struct UsagePage {
    pub layout: Layout,
    pub features: Vec<FeatureUsageRow>,
    pub hours: Vec<HourRow>,
    pub hours_note: Option<String>,
    pub charts: Vec<ChartView>,
    /// The period of the report downloads (YYYY-MM-DD, UTC days).
    pub export_from: String,
    pub export_to: String,
}

#[derive(Debug, Clone)]
pub struct CheckView {
    pub name: String,
    pub result: &'static str,
    pub class: &'static str,
    pub detail: String,
}

impl CheckView {
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::with("✔ OK", "good", name, detail)
    }

    pub fn warning(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::with("⚠ Warning", "warn", name, detail)
    }

    pub fn problem(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::with("✖ Problem", "bad", name, detail)
    }

    fn with(
        result: &'static str,
        class: &'static str,
        name: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            result,
            class,
            detail: detail.into(),
        }
    }
}

/// One recent log line on the diagnostics page.
#[derive(Debug, Clone)]
pub struct LogLineView {
    pub time: String,
    pub level: String,
    pub text: String,
}

#[derive(Template)]
#[template(path = "diagnostics.html")]
pub struct DiagnosticsPage {
    pub layout: Layout,
    pub checks: Vec<CheckView>,
    pub log_lines: Vec<LogLineView>,
    /// Where the support bundle is downloaded, once the server offers one.
    pub support_bundle_url: Option<String>,
    /// Whether the node network checks ran for this page.
    pub ran_node_checks: bool,
    pub instance: String,
    pub version: &'static str,
    pub data_dir: String,
}

#[derive(Debug, Clone, Default)]
pub struct ConfigForm {
    pub nodes: String,
    pub listen: String,
    pub admin_listen: String,
    pub node_timeout: String,
    pub vendor_keys: String,
}

#[derive(Debug, Clone, Default)]
pub struct ConfigErrors {
    pub nodes: Option<String>,
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub node_timeout: Option<String>,
    pub vendor_keys: Option<String>,
    pub file: Option<String>,
}

impl ConfigErrors {
    pub fn any(&self) -> bool {
        self.nodes.is_some()
            || self.listen.is_some()
            || self.admin_listen.is_some()
            || self.node_timeout.is_some()
            || self.vendor_keys.is_some()
            || self.file.is_some()
    }
}

#[derive(Template)]
#[template(path = "config.html")]
pub struct ConfigPage {
    pub layout: Layout,
    pub config_file: Option<String>,
    pub target: String,
    pub target_exists: bool,
    pub data_dir: String,
    pub form: ConfigForm,
    pub errors: ConfigErrors,
    pub restart_needed: Vec<&'static str>,
    pub running_listen: String,
    pub running_admin_listen: String,
    pub running_nodes: String,
    pub running_node_timeout: String,
    /// HTTPS or plain HTTP on the listeners.
    pub running_transport: String,
    /// Proxy and trusted authorities on the way to the nodes.
    pub running_node_path: String,
    pub vendor_key_ids: Vec<String>,
}
