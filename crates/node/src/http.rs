//! The node's HTTP surface. Every route is declared in `routes`; admin routes take the
//! `AdminAuth` extractor. Bodies are size-limited and malformed ones get a JSON `bad_request`.
//!
//! Each route is declared once, as `.routes(routes!(handler))` on an `OpenApiRouter`, and its
//! handler carries `#[utoipa::path(...)]`: the router and the node's OpenAPI description
//! (`/openapi.json`, `docs/openapi/node.json`) come from that one declaration. Admin paths
//! are written relative to `/v1/admin` (they are nested there). A new route follows its
//! neighbours; then regenerate `docs/openapi/` (`leasehold openapi --out docs/openapi`).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Json, Router};
use leasehold_proto::{
    ErrorBody, LicenseId, ServerGuid, SignedEnvelope, SyncUpload, MAX_SYNC_BODY_BYTES,
};
use leasehold_web::{AdminAuth, AdminToken, ApiError, ApiJson, Service};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{
    AddServer, CreateInstallation, GrantLicense, InstallationList, InstallationView, LicenseView,
    ServerView, SetMaintenance, TransferLicense, UpdateServer, UsageReport,
};
use crate::service::Node;

const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct NodeState {
    pub node: Arc<Node>,
    admin_token: AdminToken,
}

impl NodeState {
    pub fn new(node: Arc<Node>, admin_token: &str) -> Self {
        Self {
            node,
            admin_token: AdminToken::new(admin_token, Service::Node.name()),
        }
    }
}

impl FromRef<NodeState> for AdminToken {
    fn from_ref(state: &NodeState) -> Self {
        state.admin_token.clone()
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
    description = "The license node's one listener (default `127.0.0.1:8470`): the vendor admin API (admin token), the sync route license servers use, health and metrics. docs/protocol.md says what each field means."
))]
struct NodeApi;

/// Every route of the node, described.
fn routes() -> OpenApiRouter<NodeState> {
    let admin = OpenApiRouter::new()
        .routes(routes!(create_installation, list_installations))
        .routes(routes!(installation_usage))
        .routes(routes!(vendor_events))
        .routes(routes!(add_server))
        .routes(routes!(show_server, update_server))
        .routes(routes!(reassign_server))
        .routes(routes!(usage))
        .routes(routes!(grant_license))
        .routes(routes!(show_license))
        .routes(routes!(transfer_license))
        .routes(routes!(revoke_license))
        .routes(routes!(set_maintenance))
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY_BYTES));
    let sync = OpenApiRouter::new()
        .routes(routes!(sync))
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
/// connections (see [`leasehold_web::Limits`]); with `tls` the node speaks HTTPS only.
pub async fn serve(
    state: NodeState,
    listener: TcpListener,
    limits: leasehold_web::Limits,
    tls: Option<leasehold_web::Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    leasehold_web::metrics::register(crate::metrics::METRICS);
    leasehold_web::serve("node", listener, router(state), limits, tls, shutdown).await
}

fn parse_guid(text: &str) -> Result<ServerGuid, ApiError> {
    ServerGuid::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn parse_license_id(text: &str) -> Result<LicenseId, ApiError> {
    LicenseId::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A license server's sync: its usage summaries in, a signed bundle out (docs/protocol.md,
/// "Node ↔ server").
#[utoipa::path(post, path = "/v1/sync", tag = "sync",
    request_body = SyncUpload,
    responses(
        (status = 200, description = "The signed bundle the server stores verbatim", body = SignedEnvelope),
        (status = 400, description = "`bad_request`: a malformed upload", body = ErrorBody),
        (status = 404, description = "`unknown_server`: the GUID is not registered at the vendor", body = ErrorBody),
        (status = 409, description = "`guid_in_use`: another instance holds the GUID, or a copy of this server synced since (a detected fork is counted)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the upload is over 4 MiB", body = ErrorBody),
        (status = 422, description = "`context_mismatch`: the server claims another context than the vendor registered", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(guid = %upload.server_guid))]
async fn sync(
    State(state): State<NodeState>,
    ApiJson(upload): ApiJson<SyncUpload>,
) -> Result<Json<SignedEnvelope>, ApiError> {
    let started = Instant::now();
    let buckets = upload.usage.len();
    let result = state.node.sync(upload).await;
    let code = match &result {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    };
    metrics::counter!("leasehold_node_syncs_total", "result" => code).increment(1);
    metrics::histogram!("leasehold_node_sync_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => tracing::debug!(buckets, "sync answered"),
        Err(e) => tracing::info!(code = %e.code, message = %e.message, "sync refused"),
    }
    result.map(Json)
}

/// Creates an installation: a customer site's production or development server and backups.
#[utoipa::path(post, path = "/installations", tag = "vendor", security(("admin_token" = [])),
    request_body = CreateInstallation,
    responses((status = 201, description = "The installation", body = InstallationView)))]
async fn create_installation(
    _: AdminAuth,
    State(state): State<NodeState>,
    ApiJson(req): ApiJson<CreateInstallation>,
) -> Result<(StatusCode, Json<InstallationView>), ApiError> {
    let view = state.node.create_installation(&req.name).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Every installation.
#[utoipa::path(get, path = "/installations", tag = "vendor", security(("admin_token" = [])),
    responses((status = 200, description = "Every installation with its servers", body = InstallationList)))]
async fn list_installations(
    _: AdminAuth,
    State(state): State<NodeState>,
) -> Result<Json<InstallationList>, ApiError> {
    let installations = state.node.list_installations().await?;
    Ok(Json(InstallationList { installations }))
}

/// Registers a server (a new GUID) in an installation.
#[utoipa::path(post, path = "/servers", tag = "vendor", security(("admin_token" = [])),
    request_body = AddServer,
    responses(
        (status = 201, description = "The server", body = ServerView),
        (status = 404, description = "`not_found`: no such installation", body = ErrorBody),
        (status = 422, description = "`installation_shape`: a second production or development server in the installation", body = ErrorBody),
    ))]
async fn add_server(
    _: AdminAuth,
    State(state): State<NodeState>,
    ApiJson(req): ApiJson<AddServer>,
) -> Result<(StatusCode, Json<ServerView>), ApiError> {
    let view = state
        .node
        .add_server(&req.installation, req.context)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One server: its licenses and sync state.
#[utoipa::path(get, path = "/servers/{guid}", tag = "vendor", security(("admin_token" = [])),
    params(("guid" = ServerGuid, Path, description = "The server's GUID, with or without braces")),
    responses(
        (status = 200, description = "The server", body = ServerView),
        (status = 404, description = "`unknown_server`: no such server", body = ErrorBody),
    ))]
async fn show_server(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Result<Json<ServerView>, ApiError> {
    Ok(Json(state.node.server(parse_guid(&guid)?).await?))
}

/// Changes a server's grace period or sync interval.
#[utoipa::path(patch, path = "/servers/{guid}", tag = "vendor", security(("admin_token" = [])),
    params(("guid" = ServerGuid, Path, description = "The server's GUID, with or without braces")),
    request_body = UpdateServer,
    responses(
        (status = 200, description = "The server", body = ServerView),
        (status = 400, description = "`bad_request`: grace below 60 days, or an interval below 60 s or above half the grace", body = ErrorBody),
        (status = 404, description = "`unknown_server`: no such server", body = ErrorBody),
    ))]
async fn update_server(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
    ApiJson(req): ApiJson<UpdateServer>,
) -> Result<Json<ServerView>, ApiError> {
    Ok(Json(
        state.node.update_server(parse_guid(&guid)?, &req).await?,
    ))
}

/// Unbinds a server's GUID from its instance and revokes its sync-token chain, so a new
/// instance (a rebuilt machine) can take the GUID.
#[utoipa::path(post, path = "/servers/{guid}/reassign", tag = "vendor", security(("admin_token" = [])),
    params(("guid" = ServerGuid, Path, description = "The server's GUID, with or without braces")),
    responses(
        (status = 200, description = "The server, instance unbound", body = ServerView),
        (status = 404, description = "`unknown_server`: no such server", body = ErrorBody),
    ))]
async fn reassign_server(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Result<Json<ServerView>, ApiError> {
    let guid = parse_guid(&guid)?;
    let view = state.node.reassign_server(guid).await?;
    tracing::info!(%guid, "server GUID reassigned");
    Ok(Json(view))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Period {
    /// First day (UTC, inclusive); default 29 days before `to` (30 days in all).
    from: Option<chrono::NaiveDate>,
    /// Last day (UTC, inclusive); default today. At most 1,098 days in all.
    to: Option<chrono::NaiveDate>,
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// A server without a sync for more than this many days is `silent`; default 7.
    silent_days: Option<u32>,
}

/// What a vendor should look at, per server, most urgent kind first.
#[utoipa::path(get, path = "/events", tag = "vendor", security(("admin_token" = [])),
    params(EventsQuery),
    responses(
        (status = 200, description = "The events", body = crate::api::VendorEvents),
        (status = 400, description = "`bad_request`: `silent_days` is not a whole number of days", body = ErrorBody),
    ))]
async fn vendor_events(
    _: AdminAuth,
    State(state): State<NodeState>,
    query: Result<axum::extract::Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<crate::api::VendorEvents>, ApiError> {
    let axum::extract::Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "silent_days must be a whole number of days: {}",
            e.body_text()
        ))
    })?;
    Ok(Json(state.node.events(q.silent_days.unwrap_or(7)).await?))
}

/// The vendor's usage report of one installation, per day (UTC), feature and context.
#[utoipa::path(get, path = "/installations/{id}/usage", tag = "vendor", security(("admin_token" = [])),
    params(("id" = leasehold_proto::InstallationId, Path, description = "The installation"), Period),
    responses(
        (status = 200, description = "The report", body = crate::api::InstallationUsage),
        (status = 400, description = "`bad_request`: a malformed id or date, or a period that is reversed or too long", body = ErrorBody),
        (status = 404, description = "`not_found`: no such installation", body = ErrorBody),
    ))]
async fn installation_usage(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(id): Path<String>,
    query: Result<axum::extract::Query<Period>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<crate::api::InstallationUsage>, ApiError> {
    let id = leasehold_proto::InstallationId::parse(&id)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let axum::extract::Query(p) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "from and to must be dates (YYYY-MM-DD): {}",
            e.body_text()
        ))
    })?;
    Ok(Json(
        state.node.installation_usage(&id, p.from, p.to).await?,
    ))
}

/// Every usage row a server uploaded.
#[utoipa::path(get, path = "/servers/{guid}/usage", tag = "vendor", security(("admin_token" = [])),
    params(("guid" = ServerGuid, Path, description = "The server's GUID, with or without braces")),
    responses(
        (status = 200, description = "The rows", body = UsageReport),
        (status = 404, description = "`unknown_server`: no such server", body = ErrorBody),
    ))]
async fn usage(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Result<Json<UsageReport>, ApiError> {
    let guid = parse_guid(&guid)?;
    let rows = state.node.usage(guid).await?;
    Ok(Json(UsageReport { server: guid, rows }))
}

/// Grants a license to a server.
#[utoipa::path(post, path = "/licenses", tag = "vendor", security(("admin_token" = [])),
    request_body = GrantLicense,
    responses(
        (status = 201, description = "The license", body = LicenseView),
        (status = 400, description = "`bad_request`: the license is not valid (a count of 0, a backup license without `backs_up`, ...)", body = ErrorBody),
        (status = 404, description = "`unknown_server`: no such server", body = ErrorBody),
        (status = 422, description = "`context_mismatch` (the license's context is not the server's) or `installation_shape` (a backup license that does not parallel a production license of the installation)", body = ErrorBody),
    ))]
async fn grant_license(
    _: AdminAuth,
    State(state): State<NodeState>,
    ApiJson(req): ApiJson<GrantLicense>,
) -> Result<(StatusCode, Json<LicenseView>), ApiError> {
    let view = state.node.grant_license(&req).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One license and the server it is assigned to.
#[utoipa::path(get, path = "/licenses/{id}", tag = "vendor", security(("admin_token" = [])),
    params(("id" = LicenseId, Path, description = "The license")),
    responses(
        (status = 200, description = "The license", body = LicenseView),
        (status = 404, description = "`not_found`: no such license", body = ErrorBody),
    ))]
async fn show_license(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(id): Path<String>,
) -> Result<Json<LicenseView>, ApiError> {
    let id = parse_license_id(&id)?;
    Ok(Json(state.node.license(&id).await?))
}

/// Moves a license to another server of the same context.
#[utoipa::path(post, path = "/licenses/{id}/transfer", tag = "vendor", security(("admin_token" = [])),
    params(("id" = LicenseId, Path, description = "The license")),
    request_body = TransferLicense,
    responses(
        (status = 200, description = "The license on its new server", body = LicenseView),
        (status = 404, description = "`not_found` or `unknown_server`", body = ErrorBody),
        (status = 409, description = "`stale_request`: `from` names a server the license is no longer on; nothing changed", body = ErrorBody),
        (status = 422, description = "`context_mismatch` (the target server has another context) or `installation_shape` (backup licenses rest on this one)", body = ErrorBody),
    ))]
async fn transfer_license(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TransferLicense>,
) -> Result<Json<LicenseView>, ApiError> {
    let id = parse_license_id(&id)?;
    Ok(Json(state.node.transfer_license(&id, &req).await?))
}

/// Revokes a license: the next bundle of its server no longer lists it.
#[utoipa::path(post, path = "/licenses/{id}/revoke", tag = "vendor", security(("admin_token" = [])),
    params(("id" = LicenseId, Path, description = "The license")),
    responses(
        (status = 200, description = "The license with `revoked_at`", body = LicenseView),
        (status = 404, description = "`not_found`: no such license", body = ErrorBody),
        (status = 422, description = "`installation_shape`: backup licenses rest on this one; revoke those first", body = ErrorBody),
    ))]
async fn revoke_license(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(id): Path<String>,
) -> Result<Json<LicenseView>, ApiError> {
    let id = parse_license_id(&id)?;
    Ok(Json(state.node.revoke_license(&id).await?))
}

/// Changes the date of the last release a license covers.
#[utoipa::path(post, path = "/licenses/{id}/maintenance", tag = "vendor", security(("admin_token" = [])),
    params(("id" = LicenseId, Path, description = "The license")),
    request_body = SetMaintenance,
    responses(
        (status = 200, description = "The license", body = LicenseView),
        (status = 404, description = "`not_found`: no such license", body = ErrorBody),
    ))]
async fn set_maintenance(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetMaintenance>,
) -> Result<Json<LicenseView>, ApiError> {
    let id = parse_license_id(&id)?;
    Ok(Json(state.node.set_maintenance(&id, req.until).await?))
}
