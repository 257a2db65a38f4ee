//! The server's two HTTP surfaces. The client listener serves only the lease API; the admin
//! listener serves the admin API (bearer token), `/metrics` and the dashboard (session
//! login; its routes are listed in `dashboard::router`). Every other route is declared here.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use leasehold_proto::{
    ClientId, ErrorCode, LeaseRequest, LeaseResponse, ServerGuid, SignedEnvelope, SyncUpload,
};
use leasehold_web::{AdminAuth, AdminToken, ApiError, ApiJson, Service};
use tower_http::trace::TraceLayer;

use crate::agent::AgentHandle;
use crate::api::{ClientKeyView, ClientStatus, SetClientKey, SetGuid, Status, SyncOutcome};
use crate::dashboard::DashboardState;
use crate::service::{ClientQuery, LicenseServer};

const MAX_LEASE_BODY: usize = 256 * 1024;
const MAX_ADMIN_BODY: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct AppState {
    pub server: Arc<LicenseServer>,
    pub agent: AgentHandle,
    pub dashboard: Arc<DashboardState>,
    admin_token: AdminToken,
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
            admin_token: AdminToken::new(admin_token, Service::Server.name()),
        }
    }
}

impl FromRef<AppState> for AdminToken {
    fn from_ref(state: &AppState) -> Self {
        state.admin_token.clone()
    }
}

/// The client-facing lease API. Leases and releases need the installation's client key
/// (`Authorization: Bearer KEY`); health does not.
pub fn lease_router(state: AppState) -> Router {
    let leases = Router::new()
        .route("/v1/lease", post(lease))
        .route("/v1/lease/{client_id}", delete(release))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_client_key,
        ));
    Router::new()
        .merge(leases)
        .route("/v1/health", leasehold_web::health(Service::Server))
        .fallback(leasehold_web::not_found(Service::Server))
        .layer(DefaultBodyLimit::max(MAX_LEASE_BODY))
        .with_state(state)
}

/// The admin API, metrics and the dashboard.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .merge(crate::dashboard::router())
        .route("/v1/admin/status", get(status))
        .route("/v1/admin/clients", get(clients))
        .route(
            "/v1/admin/client-key",
            get(client_key).post(replace_client_key),
        )
        .route("/v1/admin/guid", put(set_guid))
        .route("/v1/admin/sync", post(sync_now))
        .route("/v1/admin/upload", get(upload))
        .route("/v1/admin/usage", get(usage))
        .route("/v1/admin/bundle", post(import_bundle))
        .route("/v1/health", leasehold_web::health(Service::Server))
        .route("/metrics", get(metrics))
        .fallback(leasehold_web::not_found(Service::Server))
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Refuses (401, nothing changes) a lease request without an accepted client key.
async fn require_client_key(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match state.server.check_client_key(presented) {
        Ok(_) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

async fn client_key(_: AdminAuth, State(state): State<AppState>) -> Json<ClientKeyView> {
    Json(state.server.client_key())
}

async fn replace_client_key(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetClientKey>,
) -> Result<Json<ClientKeyView>, ApiError> {
    state.server.replace_client_key(req.key).map(Json)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.server.update_gauges();
    leasehold_web::metrics_response()
}

async fn lease(
    State(state): State<AppState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<LeaseRequest>,
) -> Result<Json<LeaseResponse>, ApiError> {
    let peer = peer.map(|axum::Extension(axum::extract::ConnectInfo(a))| a.ip());
    let secret = client_secret(&headers)?;
    let name = client_name(&headers)?;
    let caller = crate::service::Caller {
        peer,
        secret,
        name: name.as_deref(),
    };
    state.server.lease_from(&req, caller).await.map(Json)
}

/// The `leasehold-client-secret` header, if sent; one that is not text is refused.
fn client_secret(headers: &axum::http::HeaderMap) -> Result<Option<&str>, ApiError> {
    headers
        .get(leasehold_proto::CLIENT_SECRET_HEADER)
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::bad_request(format!(
                    "the {} header must be visible ASCII",
                    leasehold_proto::CLIENT_SECRET_HEADER
                ))
            })
        })
        .transpose()
}

/// The `leasehold-client-name` header, decoded, if sent; a malformed one is refused.
fn client_name(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get(leasehold_proto::CLIENT_NAME_HEADER)
        .map(|v| leasehold_proto::decode_client_name(v.as_bytes()).map_err(ApiError::bad_request))
        .transpose()
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
    headers: axum::http::HeaderMap,
    query: Result<axum::extract::Query<ReleaseQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let client = ClientId::parse(&client).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let axum::extract::Query(query) =
        query.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let secret = client_secret(&headers)?;
    if state
        .server
        .release(&client, query.seq, query.epoch, secret)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            format!("client {client} holds no lease here, a later request of it arrived, or the epoch is not this server process's"),
        ))
    }
}

async fn status(_: AdminAuth, State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    state.server.status().await.map(Json)
}

/// Most clients one `GET /v1/admin/clients` answers, and the default page.
const MAX_CLIENTS_PAGE: usize = 10_000;
const DEFAULT_CLIENTS_PAGE: usize = 1_000;

#[derive(Debug, serde::Deserialize)]
struct ClientsQuery {
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
    /// Text to find in a client's name, address, id or features.
    search: Option<String>,
    /// `name` (default), `address`, `in_use`, `connected_since`, `last_seen` or `id`.
    sort: Option<String>,
}

/// `GET /v1/admin/clients?offset=N&limit=M&search=TEXT&sort=ORDER`: a page of the clients
/// matching `search` (all without it) in `sort` order (default by name; 1,000 a page by
/// default, at most 10,000); `X-Total-Count` says how many match.
async fn clients(
    _: AdminAuth,
    State(state): State<AppState>,
    query: Result<axum::extract::Query<ClientsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(DEFAULT_CLIENTS_PAGE);
    if limit == 0 || limit > MAX_CLIENTS_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_CLIENTS_PAGE}, got {limit}"
        )));
    }
    let sort = q
        .sort
        .as_deref()
        .map(crate::api::ClientSort::parse)
        .transpose()
        .map_err(ApiError::bad_request)?
        .unwrap_or_default();
    if q.search
        .as_ref()
        .is_some_and(|s| s.chars().count() > ClientQuery::MAX_SEARCH)
    {
        return Err(ApiError::bad_request(format!(
            "search may be at most {} characters",
            ClientQuery::MAX_SEARCH
        )));
    }
    let query = ClientQuery {
        search: q.search,
        sort,
        offset: q.offset,
        limit,
    };
    let (page, total): (Vec<ClientStatus>, usize) = state.server.clients_query(&query);
    Ok((
        [(
            axum::http::HeaderName::from_static("x-total-count"),
            total.to_string(),
        )],
        Json(page),
    ))
}

async fn set_guid(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetGuid>,
) -> Result<Json<Status>, ApiError> {
    let guid = ServerGuid::parse(&req.guid).map_err(|e| ApiError::bad_request(e.to_string()))?;
    state.server.set_guid(guid).await?;
    state.server.status().await.map(Json)
}

async fn sync_now(
    _: AdminAuth,
    State(state): State<AppState>,
) -> Result<Json<SyncOutcome>, ApiError> {
    let outcome = state
        .agent
        .sync_now()
        .await
        .ok_or_else(|| ApiError::new(ErrorCode::NotReady, "the sync agent is not running"))?;
    Ok(Json(outcome))
}

async fn upload(_: AdminAuth, State(state): State<AppState>) -> Result<Json<SyncUpload>, ApiError> {
    state.server.upload().await.map(Json)
}

/// `GET /v1/admin/usage?from=DATE&to=DATE`: the customer's own usage report, one row per
/// feature per hour of the UTC days asked for (the last 30 by default, at most 400).
async fn usage(
    _: AdminAuth,
    State(state): State<AppState>,
    query: Result<
        axum::extract::Query<crate::export::PeriodQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<crate::api::UsageExport>, ApiError> {
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    state.server.usage_export(&q).await.map(Json)
}

async fn import_bundle(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiJson(envelope): ApiJson<SignedEnvelope>,
) -> Result<Json<SyncOutcome>, ApiError> {
    state
        .server
        .apply_envelope(envelope, "file")
        .await
        .map(Json)
}
