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
    description = "The license node (default `127.0.0.1:8470`): the sync route license servers use, the vendor admin API (a vendor account's token; each operation's security scope names the least role that may call it, `support` or `admin`), health and metrics. The vendor console is served under `/console`. With `--admin-listen` the admin API and the console are served only on a listener of their own (which serves everything), and the public one keeps sync, health, metrics and this description. docs/protocol.md says what each field means."
))]
struct NodeApi;

/// The vendor admin API, nested under `/v1/admin`.
fn admin_routes() -> OpenApiRouter<NodeState> {
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
    OpenApiRouter::new().nest("/v1/admin", admin)
}

/// What every listener of the node answers: health, metrics and the description.
fn common_routes() -> OpenApiRouter<NodeState> {
    OpenApiRouter::with_openapi(NodeApi::openapi())
        .routes(routes!(leasehold_web::health))
        .routes(routes!(metrics))
        .routes(routes!(leasehold_web::openapi::openapi_json))
}

/// The sync route license servers call.
fn sync_routes() -> OpenApiRouter<NodeState> {
    OpenApiRouter::new()
        .routes(routes!(vendor::sync))
        .layer(DefaultBodyLimit::max(MAX_SYNC_BODY_BYTES))
}

/// Every API route of the node, described.
fn routes() -> OpenApiRouter<NodeState> {
    common_routes().merge(sync_routes()).merge(admin_routes())
}

/// The node's OpenAPI description (`docs/openapi/node.json`).
pub fn description() -> utoipa::openapi::OpenApi {
    leasehold_web::openapi::finish(routes().into_openapi())
}

/// Serves `routes` (and the console where `console`) with the whole description at
/// `/openapi.json`; anything else is a JSON `not_found` saying `elsewhere` where relevant.
fn listener_router(
    state: NodeState,
    routes: OpenApiRouter<NodeState>,
    console: bool,
    elsewhere: Option<&'static str>,
) -> Router {
    let (router, _) = routes.split_for_parts();
    let mut router = router.layer(leasehold_web::openapi::layer(&description()));
    if console {
        router = router.merge(crate::console::router());
    }
    let fallback: Router<NodeState> = match elsewhere {
        None => router.fallback(leasehold_web::not_found(Service::Node)),
        Some(message) => router.fallback(move || std::future::ready(ApiError::not_found(message))),
    };
    fallback.layer(TraceLayer::new_for_http()).with_state(state)
}

/// Everything on one listener: sync, the admin API and the console.
pub fn router(state: NodeState) -> Router {
    listener_router(state, routes(), true, None)
}

/// The public listener when the admin API and the console have a listener of their own:
/// sync, health, metrics and the description.
pub fn public_router(state: NodeState) -> Router {
    listener_router(
        state,
        common_routes().merge(sync_routes()),
        false,
        Some("no such route on this license node's public listener; the vendor admin API and the console are served on its admin listener (--admin-listen)"),
    )
}

/// The admin listener: everything, as one listener serves it (sync too, so that `leasehold
/// vendor sync-file` works with the one `--node` address staff use).
pub fn admin_router(state: NodeState) -> Router {
    router(state)
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
/// the console's cookies are `Secure`). With `admin` the vendor admin API and the console
/// are served only there (with everything else), and `listener` keeps sync, health,
/// metrics and the description.
pub async fn serve(
    state: NodeState,
    listener: TcpListener,
    admin: Option<TcpListener>,
    limits: leasehold_web::Limits,
    tls: Option<leasehold_web::Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    leasehold_web::metrics::register(crate::metrics::METRICS);
    let state = state.with_secure_cookies(tls.is_some());
    let Some(admin) = admin else {
        return leasehold_web::serve("node", listener, router(state), limits, tls, shutdown).await;
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let public = leasehold_web::serve(
        "node",
        listener,
        public_router(state.clone()),
        limits,
        tls.clone(),
        wait(stopped.clone()),
    );
    let admin = leasehold_web::serve(
        "node admin",
        admin,
        admin_router(state),
        limits,
        tls,
        wait(stopped),
    );
    let (public, admin) = tokio::join!(public, admin);
    public.and(admin)
}

fn parse_guid(text: &str) -> Result<leasehold_proto::ServerGuid, ApiError> {
    leasehold_proto::ServerGuid::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn parse_license_id(text: &str) -> Result<leasehold_proto::LicenseId, ApiError> {
    leasehold_proto::LicenseId::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))
}
