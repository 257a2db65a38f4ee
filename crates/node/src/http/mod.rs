//! The node's HTTP surface: the sync route license servers use, the vendor admin API
//! (`/v1/admin/…`, a staff account's token; `vendor.rs` and `staff.rs`) and the vendor
//! console (`/console/…`, a signed-in session; [`crate::console`]). Every route is declared
//! in [`routes`] or the console's router; who may call it is an extractor (`auth.rs`).
//! Bodies are size-limited and malformed ones get a JSON `bad_request`.
//!
//! Each API route is declared once, as `.routes(routes!(handler))` on an `OpenApiRouter`,
//! and its handler carries `#[utoipa::path(...)]`: the router and the node's OpenAPI
//! description (`/openapi.json`, `docs/openapi/node.json`) come from that one declaration.
//! Each operation's security names the least role that may call it (`vendor_token` with
//! scope `support` or `admin`), which the role tests check against what the node does.
//! Admin paths are written relative to `/v1/admin` (they are nested there). A new route
//! follows its neighbours; then regenerate `docs/openapi/` (`leasehold openapi --out
//! docs/openapi`).

mod auth;
mod staff;
mod vendor;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::response::IntoResponse;
use axum::Router;
use leasehold_proto::MAX_SYNC_BODY_BYTES;
use leasehold_web::browser::LoginThrottle;
use leasehold_web::{AdminToken, ApiError, Service};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Reason, Staff, StaffOrBootstrap};
pub(crate) use staff::AuditParams;

use crate::service::Node;

const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

/// What every handler of the node's listener shares.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub node: Arc<Node>,
    /// The bootstrap token (`--admin-token`): it only creates the first admin account.
    bootstrap: Option<AdminToken>,
    /// Failed sign-ins per address (API and console).
    pub(crate) throttle: Arc<LoginThrottle>,
    /// Cookies are marked `Secure` (the listener speaks HTTPS).
    pub(crate) secure_cookies: bool,
}

impl NodeState {
    /// A node's state; `bootstrap_token` empty means there is none (accounts then come
    /// from `leasehold node create-admin` on the database).
    pub fn new(node: Arc<Node>, bootstrap_token: &str) -> Self {
        Self {
            node,
            bootstrap: (!bootstrap_token.is_empty())
                .then(|| AdminToken::new(bootstrap_token, Service::Node.name())),
            throttle: Arc::new(LoginThrottle::default()),
            secure_cookies: false,
        }
    }

    /// Marks the console's cookies `Secure` (set when the node serves HTTPS).
    pub fn with_secure_cookies(mut self, secure: bool) -> Self {
        self.secure_cookies = secure;
        self
    }

    fn is_bootstrap(&self, presented: &str) -> bool {
        self.bootstrap
            .as_ref()
            .is_some_and(|t| t.accepts(presented))
    }
}

impl FromRef<NodeState> for Service {
    fn from_ref(_: &NodeState) -> Self {
        Service::Node
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "Leasehold license node",
    description = "The license node's one listener (default `127.0.0.1:8470`): the vendor admin API (a vendor account's token; each operation's security scope names the least role that may call it, `support` or `admin`), the sync route license servers use, health and metrics. The vendor console is served under `/console` on the same listener. docs/protocol.md says what each field means."
))]
struct NodeApi;

/// Every API route of the node, described.
fn routes() -> OpenApiRouter<NodeState> {
    let admin = OpenApiRouter::new()
        .routes(routes!(
            vendor::create_installation,
            vendor::list_installations
        ))
        .routes(routes!(vendor::installation_usage))
        .routes(routes!(vendor::vendor_events))
        .routes(routes!(vendor::add_server))
        .routes(routes!(vendor::show_server, vendor::update_server))
        .routes(routes!(vendor::reassign_server))
        .routes(routes!(vendor::usage))
        .routes(routes!(vendor::grant_license))
        .routes(routes!(vendor::show_license))
        .routes(routes!(vendor::transfer_license))
        .routes(routes!(vendor::revoke_license))
        .routes(routes!(vendor::set_maintenance))
        .routes(routes!(staff::login))
        .routes(routes!(staff::whoami))
        .routes(routes!(staff::list_accounts, staff::create_account))
        .routes(routes!(staff::show_account, staff::update_account))
        .routes(routes!(staff::list_tokens, staff::create_token))
        .routes(routes!(staff::revoke_token))
        .routes(routes!(staff::audit))
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY_BYTES));
    let sync = OpenApiRouter::new()
        .routes(routes!(vendor::sync))
        .layer(DefaultBodyLimit::max(MAX_SYNC_BODY_BYTES));
    OpenApiRouter::with_openapi(NodeApi::openapi())
        .routes(routes!(leasehold_web::health))
        .merge(sync)
        .routes(routes!(metrics))
        .routes(routes!(leasehold_web::openapi::openapi_json))
        .nest("/v1/admin", admin)
}

/// The node's OpenAPI description (`docs/openapi/node.json`).
pub fn description() -> utoipa::openapi::OpenApi {
    leasehold_web::openapi::finish(routes().into_openapi())
}

pub fn router(state: NodeState) -> Router {
    let (router, api) = routes().split_for_parts();
    router
        .layer(leasehold_web::openapi::layer(
            &leasehold_web::openapi::finish(api),
        ))
        .merge(crate::console::router())
        .fallback(leasehold_web::not_found(Service::Node))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The node's metrics (docs/protocol.md lists them).
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<NodeState>) -> impl IntoResponse {
    state.node.update_gauges();
    leasehold_web::metrics_response()
}

/// Serves until `shutdown` completes, then finishes in-flight requests; `limits` bound the
/// connections (see [`leasehold_web::Limits`]); with `tls` the node speaks HTTPS only (and
/// the console's cookies are `Secure`).
pub async fn serve(
    state: NodeState,
    listener: TcpListener,
    limits: leasehold_web::Limits,
    tls: Option<leasehold_web::Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    leasehold_web::metrics::register(crate::metrics::METRICS);
    let state = state.with_secure_cookies(tls.is_some());
    leasehold_web::serve("node", listener, router(state), limits, tls, shutdown).await
}

fn parse_guid(text: &str) -> Result<leasehold_proto::ServerGuid, ApiError> {
    leasehold_proto::ServerGuid::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn parse_license_id(text: &str) -> Result<leasehold_proto::LicenseId, ApiError> {
    leasehold_proto::LicenseId::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))
}
