//! The node's HTTP surface. Every route is declared in `router`; admin routes take the
//! `AdminAuth` extractor. Bodies are size-limited and malformed ones get a JSON `bad_request`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use leasehold_proto::{LicenseId, ServerGuid, SignedEnvelope, SyncUpload, MAX_SYNC_BODY_BYTES};
use leasehold_web::{AdminAuth, AdminToken, ApiError, ApiJson, Service};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

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

pub fn router(state: NodeState) -> Router {
    let admin = Router::new()
        .route(
            "/installations",
            post(create_installation).get(list_installations),
        )
        .route("/installations/{id}/usage", get(installation_usage))
        .route("/events", get(vendor_events))
        .route("/servers", post(add_server))
        .route("/servers/{guid}", get(show_server).patch(update_server))
        .route("/servers/{guid}/reassign", post(reassign_server))
        .route("/servers/{guid}/usage", get(usage))
        .route("/licenses", post(grant_license))
        .route("/licenses/{id}", get(show_license))
        .route("/licenses/{id}/transfer", post(transfer_license))
        .route("/licenses/{id}/revoke", post(revoke_license))
        .route("/licenses/{id}/maintenance", post(set_maintenance))
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY_BYTES));
    Router::new()
        .route("/v1/health", leasehold_web::health(Service::Node))
        .route(
            "/v1/sync",
            post(sync).layer(DefaultBodyLimit::max(MAX_SYNC_BODY_BYTES)),
        )
        .route(
            "/metrics",
            get(|State(state): State<NodeState>| async move {
                state.node.update_gauges();
                leasehold_web::metrics_response()
            }),
        )
        .nest("/v1/admin", admin)
        .fallback(leasehold_web::not_found(Service::Node))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
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

async fn create_installation(
    _: AdminAuth,
    State(state): State<NodeState>,
    ApiJson(req): ApiJson<CreateInstallation>,
) -> Result<(StatusCode, Json<InstallationView>), ApiError> {
    let view = state.node.create_installation(&req.name).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list_installations(
    _: AdminAuth,
    State(state): State<NodeState>,
) -> Result<Json<InstallationList>, ApiError> {
    let installations = state.node.list_installations().await?;
    Ok(Json(InstallationList { installations }))
}

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

async fn show_server(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Result<Json<ServerView>, ApiError> {
    Ok(Json(state.node.server(parse_guid(&guid)?).await?))
}

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

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Period {
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    silent_days: Option<u32>,
}

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

async fn usage(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Result<Json<UsageReport>, ApiError> {
    let guid = parse_guid(&guid)?;
    let rows = state.node.usage(guid).await?;
    Ok(Json(UsageReport { server: guid, rows }))
}

async fn grant_license(
    _: AdminAuth,
    State(state): State<NodeState>,
    ApiJson(req): ApiJson<GrantLicense>,
) -> Result<(StatusCode, Json<LicenseView>), ApiError> {
    let view = state.node.grant_license(&req).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn show_license(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(id): Path<String>,
) -> Result<Json<LicenseView>, ApiError> {
    let id = parse_license_id(&id)?;
    Ok(Json(state.node.license(&id).await?))
}

async fn transfer_license(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TransferLicense>,
) -> Result<Json<LicenseView>, ApiError> {
    let id = parse_license_id(&id)?;
    Ok(Json(state.node.transfer_license(&id, &req).await?))
}

async fn revoke_license(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(id): Path<String>,
) -> Result<Json<LicenseView>, ApiError> {
    let id = parse_license_id(&id)?;
    Ok(Json(state.node.revoke_license(&id).await?))
}

async fn set_maintenance(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetMaintenance>,
) -> Result<Json<LicenseView>, ApiError> {
    let id = parse_license_id(&id)?;
    Ok(Json(state.node.set_maintenance(&id, req.until).await?))
}
