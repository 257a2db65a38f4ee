//! The node's HTTP surface. Every route is declared in `router`; admin routes take the
//! `AdminAuth` extractor. Bodies are size-limited and malformed ones get a JSON `bad_request`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use leasehold_proto::{
    ErrorCode, LicenseId, ServerGuid, SignedEnvelope, SyncUpload, MAX_SYNC_BODY_BYTES,
};
use leasehold_telemetry::PrometheusHandle;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::api::{
    AddServer, CreateInstallation, GrantLicense, Health, InstallationList, InstallationView,
    LicenseView, ServerView, SetMaintenance, TransferLicense, UpdateServer, UsageReport,
};
use crate::error::NodeError;
use crate::service::Node;

const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct NodeState {
    pub node: Arc<Node>,
    admin_token: Arc<str>,
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeState")
            .field("node", &self.node)
            .field("admin_token", &"<redacted>")
            .finish()
    }
}

impl NodeState {
    pub fn new(node: Arc<Node>, admin_token: &str) -> Self {
        Self {
            node,
            admin_token: admin_token.into(),
        }
    }
}

/// The process-wide Prometheus recorder (shared with every other service in the process).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    leasehold_telemetry::prometheus()
}

pub fn router(state: NodeState) -> Router {
    let admin = Router::new()
        .route(
            "/installations",
            post(create_installation).get(list_installations),
        )
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
        .route("/v1/health", get(health))
        .route(
            "/v1/sync",
            post(sync).layer(DefaultBodyLimit::max(MAX_SYNC_BODY_BYTES)),
        )
        .route("/metrics", get(metrics))
        .nest("/v1/admin", admin)
        .fallback(not_found)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    state: NodeState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = metrics_handle();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// JSON body extractor whose rejections are `NodeError`s (clear message, stable code).
struct ApiJson<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = NodeError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> NodeError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        NodeError::new(ErrorCode::PayloadTooLarge, "request body is too large")
    } else {
        NodeError::bad_request(format!("request body: {}", r.body_text()))
    }
}

/// Requires `Authorization: Bearer <admin token>`.
struct AdminAuth;

impl FromRequestParts<NodeState> for AdminAuth {
    type Rejection = NodeError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &NodeState,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !state.admin_token.is_empty()
            && constant_time_eq(presented.as_bytes(), state.admin_token.as_bytes())
        {
            Ok(AdminAuth)
        } else {
            Err(NodeError::new(
                ErrorCode::Unauthorized,
                "admin API needs 'Authorization: Bearer <admin token>' with the node's admin token",
            ))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_guid(text: &str) -> Result<ServerGuid, NodeError> {
    ServerGuid::parse(text).map_err(|e| NodeError::bad_request(e.to_string()))
}

fn parse_license_id(text: &str) -> Result<LicenseId, NodeError> {
    LicenseId::parse(text).map_err(|e| NodeError::bad_request(e.to_string()))
}

async fn not_found() -> NodeError {
    NodeError::new(ErrorCode::NotFound, "no such route on this license node")
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

async fn metrics() -> impl IntoResponse {
    let body = metrics_handle().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

#[tracing::instrument(skip_all, fields(guid = %upload.server_guid))]
async fn sync(
    State(state): State<NodeState>,
    ApiJson(upload): ApiJson<SyncUpload>,
) -> Result<Json<SignedEnvelope>, NodeError> {
    let started = Instant::now();
    let buckets = upload.usage.len();
    let result = state.node.sync(upload).await;
    let code = match &result {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    };
    metrics::counter!("leasehold_node_syncs_total", "result" => code).increment(1);
    metrics::histogram!("leasehold_node_sync_seconds").record(started.elapsed().as_secs_f64());
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
) -> Result<(StatusCode, Json<InstallationView>), NodeError> {
    let view = state.node.create_installation(&req.name).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list_installations(
    _: AdminAuth,
    State(state): State<NodeState>,
) -> Result<Json<InstallationList>, NodeError> {
    let installations = state.node.list_installations().await?;
    Ok(Json(InstallationList { installations }))
}

async fn add_server(
    _: AdminAuth,
    State(state): State<NodeState>,
    ApiJson(req): ApiJson<AddServer>,
) -> Result<(StatusCode, Json<ServerView>), NodeError> {
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
) -> Result<Json<ServerView>, NodeError> {
    Ok(Json(state.node.server(parse_guid(&guid)?).await?))
}

async fn update_server(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
    ApiJson(req): ApiJson<UpdateServer>,
) -> Result<Json<ServerView>, NodeError> {
    Ok(Json(
        state.node.update_server(parse_guid(&guid)?, &req).await?,
    ))
}

async fn reassign_server(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Result<Json<ServerView>, NodeError> {
    let guid = parse_guid(&guid)?;
    let view = state.node.reassign_server(guid).await?;
    tracing::info!(%guid, "server GUID reassigned");
    Ok(Json(view))
}

async fn usage(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Result<Json<UsageReport>, NodeError> {
    let guid = parse_guid(&guid)?;
    let rows = state.node.usage(guid).await?;
    Ok(Json(UsageReport { server: guid, rows }))
}

async fn grant_license(
    _: AdminAuth,
    State(state): State<NodeState>,
    ApiJson(req): ApiJson<GrantLicense>,
) -> Result<(StatusCode, Json<LicenseView>), NodeError> {
    let view = state.node.grant_license(&req).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn show_license(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(id): Path<String>,
) -> Result<Json<LicenseView>, NodeError> {
    let id = parse_license_id(&id)?;
    Ok(Json(state.node.license(&id).await?))
}

async fn transfer_license(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TransferLicense>,
) -> Result<Json<LicenseView>, NodeError> {
    let id = parse_license_id(&id)?;
    Ok(Json(state.node.transfer_license(&id, req.to).await?))
}

async fn revoke_license(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(id): Path<String>,
) -> Result<Json<LicenseView>, NodeError> {
    let id = parse_license_id(&id)?;
    Ok(Json(state.node.revoke_license(&id).await?))
}

async fn set_maintenance(
    _: AdminAuth,
    State(state): State<NodeState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetMaintenance>,
) -> Result<Json<LicenseView>, NodeError> {
    let id = parse_license_id(&id)?;
    Ok(Json(state.node.set_maintenance(&id, req.until).await?))
}
