//! The server's two HTTP surfaces. The client listener serves only the lease API; the admin
//! listener serves the admin API (bearer token), `/metrics` and the dashboard (session
//! login; its routes are listed in `dashboard::router`). Every other route is declared here.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use leasehold_proto::{
    ClientId, ErrorCode, LeaseRequest, LeaseResponse, ServerGuid, SignedEnvelope, SyncUpload,
};
use leasehold_telemetry::PrometheusHandle;
use serde::de::DeserializeOwned;
use tower_http::trace::TraceLayer;

use crate::agent::AgentHandle;
use crate::api::{ClientStatus, SetGuid, Status, SyncOutcome};
use crate::dashboard::DashboardState;
use crate::error::ServerError;
use crate::service::LicenseServer;

const MAX_LEASE_BODY: usize = 256 * 1024;
const MAX_ADMIN_BODY: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub server: Arc<LicenseServer>,
    pub agent: AgentHandle,
    pub dashboard: Arc<DashboardState>,
    admin_token: Arc<str>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("admin_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(
        server: Arc<LicenseServer>,
        agent: AgentHandle,
        admin_token: &str,
        dashboard: Arc<DashboardState>,
    ) -> Self {
        Self {
            server,
            agent,
            dashboard,
            admin_token: admin_token.into(),
        }
    }
}

/// The process-wide Prometheus recorder (shared with every other service in the process).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    leasehold_telemetry::prometheus()
}

/// The client-facing lease API.
pub fn lease_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/lease", post(lease))
        .route("/v1/lease/{client_id}", delete(release))
        .route("/v1/health", get(health))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_LEASE_BODY))
        .with_state(state)
}

/// The admin API, metrics and the dashboard.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .merge(crate::dashboard::router())
        .route("/v1/admin/status", get(status))
        .route("/v1/admin/clients", get(clients))
        .route("/v1/admin/guid", put(set_guid))
        .route("/v1/admin/sync", post(sync_now))
        .route("/v1/admin/upload", get(upload))
        .route("/v1/admin/bundle", post(import_bundle))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

struct ApiJson<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ServerError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ServerError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ServerError::new(ErrorCode::PayloadTooLarge, "request body is too large")
    } else {
        ServerError::bad_request(format!("request body: {}", r.body_text()))
    }
}

struct AdminAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ServerError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let expected = state.admin_token.as_bytes();
        let ok = !expected.is_empty()
            && presented.len() == expected.len()
            && presented
                .bytes()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if ok {
            Ok(AdminAuth)
        } else {
            Err(ServerError::new(
                ErrorCode::Unauthorized,
                "admin API needs 'Authorization: Bearer <token>' with this server's admin token",
            ))
        }
    }
}

async fn not_found() -> ServerError {
    ServerError::new(ErrorCode::NotFound, "no such route on this license server")
}

async fn health() -> &'static str {
    "ok"
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.server.update_gauges();
    let body = metrics_handle().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

async fn lease(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LeaseRequest>,
) -> Result<Json<LeaseResponse>, ServerError> {
    state.server.lease(&req).await.map(Json)
}

#[derive(Debug, serde::Deserialize)]
struct ReleaseQuery {
    /// The client's last request sequence number this release covers.
    seq: u64,
    /// The epoch of this server's last answer to the client.
    epoch: u64,
}

async fn release(
    State(state): State<AppState>,
    Path(client): Path<String>,
    query: Result<axum::extract::Query<ReleaseQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ServerError> {
    let client = ClientId::parse(&client).map_err(|e| ServerError::bad_request(e.to_string()))?;
    let axum::extract::Query(query) =
        query.map_err(|e| ServerError::bad_request(format!("query: {}", e.body_text())))?;
    if state.server.release(&client, query.seq, query.epoch) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ServerError::new(
            ErrorCode::NotFound,
            format!("client {client} holds no lease here, a later request of it arrived, or the epoch is not this server process's"),
        ))
    }
}

async fn status(_: AdminAuth, State(state): State<AppState>) -> Result<Json<Status>, ServerError> {
    state.server.status().await.map(Json)
}

async fn clients(_: AdminAuth, State(state): State<AppState>) -> Json<Vec<ClientStatus>> {
    Json(state.server.clients())
}

async fn set_guid(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetGuid>,
) -> Result<Json<Status>, ServerError> {
    let guid = ServerGuid::parse(&req.guid).map_err(|e| ServerError::bad_request(e.to_string()))?;
    state.server.set_guid(guid).await?;
    state.server.status().await.map(Json)
}

async fn sync_now(
    _: AdminAuth,
    State(state): State<AppState>,
) -> Result<Json<SyncOutcome>, ServerError> {
    let outcome =
        state.agent.sync_now().await.ok_or_else(|| {
            ServerError::new(ErrorCode::NotReady, "the sync agent is not running")
        })?;
    Ok(Json(outcome))
}

async fn upload(
    _: AdminAuth,
    State(state): State<AppState>,
) -> Result<Json<SyncUpload>, ServerError> {
    state.server.upload().await.map(Json)
}

async fn import_bundle(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiJson(envelope): ApiJson<SignedEnvelope>,
) -> Result<Json<SyncOutcome>, ServerError> {
    state
        .server
        .apply_envelope(envelope, "file")
        .await
        .map(Json)
}
