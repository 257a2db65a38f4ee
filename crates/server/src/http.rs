//! The server's two HTTP surfaces. The client listener serves only the lease API; the admin
//! listener serves the admin API (bearer token), `/metrics` and the dashboard (session
//! login; its routes are listed in `dashboard::router`). Every other route is declared here.
//!
//! Each API route is declared once, as `.routes(routes!(handler))` on an `OpenApiRouter`,
//! and its handler carries `#[utoipa::path(...)]` (method, path, tag, security, parameters,
//! bodies, answers): the router and the listener's OpenAPI description (`/openapi.json`,
//! `docs/openapi/`) come from that one declaration. A new route: write the handler with its
//! `#[utoipa::path]` (copy a neighbour's), add `.routes(routes!(handler))` (handlers of one
//! path in one `routes!`), derive `utoipa::ToSchema` on new body types in `leasehold-proto`
//! (under `cfg_attr(feature = "openapi", ...)`), then regenerate `docs/openapi/`
//! (`leasehold openapi --out docs/openapi`, docs/testing.md).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Json, Router};
use leasehold_proto::{
    ClientId, ErrorBody, ErrorCode, LeaseRequest, LeaseResponse, ServerGuid, SignedEnvelope,
    SyncUpload,
};
use leasehold_web::{AdminAuth, AdminToken, ApiError, ApiJson, Service};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

impl FromRef<AppState> for Service {
    fn from_ref(_: &AppState) -> Self {
        Service::Server
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "Leasehold license server: lease API",
    description = "The license server's client listener (default `0.0.0.0:7569`): applications lease licenses here. docs/protocol.md says what each field means and how the allocation works."
))]
struct LeaseApi;

#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "Leasehold license server: admin API",
    description = "The license server's admin listener (default `127.0.0.1:8080`): status, clients, GUID, sync and bundles for the operator (admin token), health and metrics. The dashboard's HTML pages on the same listener are not described here."
))]
struct AdminApi;

/// The lease API's routes: those that need the client key, those that do not, and their
/// description.
fn lease_routes() -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    let (leases, mut api) = OpenApiRouter::with_openapi(LeaseApi::openapi())
        .routes(routes!(lease))
        .routes(routes!(release))
        .split_for_parts();
    let (open, open_api) = OpenApiRouter::new()
        .routes(routes!(leasehold_web::health))
        .routes(routes!(leasehold_web::openapi::openapi_json))
        .split_for_parts();
    api.merge(open_api);
    (leases, open, leasehold_web::openapi::finish(api))
}

/// The admin API's routes (without the dashboard's pages) and their description.
fn admin_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, api) = OpenApiRouter::with_openapi(AdminApi::openapi())
        .routes(routes!(status))
        .routes(routes!(clients))
        .routes(routes!(client_key, replace_client_key))
        .routes(routes!(set_guid))
        .routes(routes!(sync_now))
        .routes(routes!(upload))
        .routes(routes!(usage))
        .routes(routes!(import_bundle))
        .routes(routes!(leasehold_web::health))
        .routes(routes!(metrics))
        .routes(routes!(leasehold_web::openapi::openapi_json))
        .split_for_parts();
    (routes, leasehold_web::openapi::finish(api))
}

/// The client listener's OpenAPI description (`docs/openapi/server-lease.json`).
pub fn lease_description() -> utoipa::openapi::OpenApi {
    lease_routes().2
}

/// The admin listener's OpenAPI description (`docs/openapi/server-admin.json`).
pub fn admin_description() -> utoipa::openapi::OpenApi {
    admin_routes().1
}

/// The client-facing lease API. Leases and releases need the installation's client key
/// (`Authorization: Bearer KEY`); health and the description do not.
pub fn lease_router(state: AppState) -> Router {
    let (leases, open, api) = lease_routes();
    let leases = leases.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        require_client_key,
    ));
    Router::new()
        .merge(leases)
        .merge(open)
        .layer(leasehold_web::openapi::layer(&api))
        .fallback(leasehold_web::not_found(Service::Server))
        .layer(DefaultBodyLimit::max(MAX_LEASE_BODY))
        .with_state(state)
}

/// The admin API, metrics and the dashboard.
pub fn admin_router(state: AppState) -> Router {
    let (routes, api) = admin_routes();
    Router::new()
        .merge(crate::dashboard::router())
        .merge(routes)
        .layer(leasehold_web::openapi::layer(&api))
        .fallback(leasehold_web::not_found(Service::Server))
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The `leasehold-client-secret` header of the lease routes.
const CLIENT_SECRET_DOC: &str = "The secret the client made at start (16 to 128 visible ASCII characters). The server binds a client id to the first secret it sees for it and refuses the id under any other (409 `client_id_in_use`); requests without it are served for ids that were never bound.";

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

/// The client key applications send to be leased licenses.
#[utoipa::path(get, path = "/v1/admin/client-key", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, description = "The key, and until when each replaced key is still accepted", body = ClientKeyView)))]
async fn client_key(_: AdminAuth, State(state): State<AppState>) -> Json<ClientKeyView> {
    Json(state.server.client_key())
}

/// Rotates the client key (`{}`) or sets it (`{"key": "lhck_…"}`, from another server of the
/// installation, say); the replaced key stays valid for the server's overlap.
#[utoipa::path(post, path = "/v1/admin/client-key", tag = "admin", security(("admin_token" = [])),
    request_body = SetClientKey,
    responses(
        (status = 200, description = "The new key", body = ClientKeyView),
        (status = 400, description = "`bad_request`: the key is not `lhck_` and 64 hex digits", body = ErrorBody),
    ))]
async fn replace_client_key(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetClientKey>,
) -> Result<Json<ClientKeyView>, ApiError> {
    state.server.replace_client_key(req.key).map(Json)
}

/// The server's metrics (docs/protocol.md lists them).
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.server.update_gauges();
    leasehold_web::metrics_response()
}

/// A client's refresh: what it holds, wants and gives back; the answer is its quotas.
#[utoipa::path(post, path = "/v1/lease", tag = "lease", security(("client_key" = [])),
    params(("leasehold-client-secret" = Option<String>, Header, description = CLIENT_SECRET_DOC)),
    request_body = LeaseRequest,
    responses(
        (status = 200, description = "The quotas granted, per feature", body = LeaseResponse),
        (status = 400, description = "`bad_request`: a malformed body or client secret", body = ErrorBody),
        (status = 409, description = "`stale_request` (older than a request already answered for the client) or `client_id_in_use` (the id is bound to another client secret); nothing changed", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over 256 KiB", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many new client ids from one address; try again shortly", body = ErrorBody),
        (status = 503, description = "`not_ready` (no GUID or no bundle yet) or `too_many_clients` (a new client id while the server holds `--max-clients`)", body = ErrorBody),
    ))]
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

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ReleaseQuery {
    /// The client's last request sequence number this release covers.
    seq: u64,
    /// The epoch of this server's last answer to the client.
    epoch: u64,
}

/// Gives a client's quota back.
#[utoipa::path(delete, path = "/v1/lease/{client_id}", tag = "lease", security(("client_key" = [])),
    params(
        ("client_id" = ClientId, Path, description = "The client giving its quota back"),
        ReleaseQuery,
        ("leasehold-client-secret" = Option<String>, Header, description = CLIENT_SECRET_DOC),
    ),
    responses(
        (status = 204, description = "The quota is free"),
        (status = 400, description = "`bad_request`: a malformed client id, query or client secret", body = ErrorBody),
        (status = 404, description = "`not_found`: the client holds no lease here, a later request of it arrived, or the epoch is not this server process's", body = ErrorBody),
        (status = 409, description = "`client_id_in_use`: the id is bound to another client secret; nothing changed", body = ErrorBody),
    ))]
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

/// Why the server serves licenses or not, its licenses, sync and nodes.
#[utoipa::path(get, path = "/v1/admin/status", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, description = "The server's status", body = Status)))]
async fn status(_: AdminAuth, State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    state.server.status().await.map(Json)
}

/// Most clients one `GET /v1/admin/clients` answers, and the default page.
const MAX_CLIENTS_PAGE: usize = 10_000;
const DEFAULT_CLIENTS_PAGE: usize = 1_000;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ClientsQuery {
    /// Clients to skip, in the order asked for.
    #[serde(default)]
    offset: usize,
    /// Clients to answer: 1 to 10,000, default 1,000.
    limit: Option<usize>,
    /// Text to find in a client's name, address, id or features.
    search: Option<String>,
    /// `name` (default), `address`, `in_use`, `connected_since`, `last_seen` or `id`.
    sort: Option<String>,
}

/// `GET /v1/admin/clients?offset=N&limit=M&search=TEXT&sort=ORDER`: a page of the clients
/// matching `search` (all without it) in `sort` order (default by name; 1,000 a page by
/// default, at most 10,000); `X-Total-Count` says how many match.
#[utoipa::path(get, path = "/v1/admin/clients", tag = "admin", security(("admin_token" = [])),
    params(ClientsQuery),
    responses(
        (status = 200, description = "A page of the clients matching the search, in the order asked for", body = Vec<ClientStatus>,
            headers(("x-total-count" = usize, description = "How many clients match"))),
        (status = 400, description = "`bad_request`: a limit out of range, an unknown sort, a search over 200 characters or a malformed query", body = ErrorBody),
    ))]
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

/// Sets the server's GUID; a new GUID drops the bundle of the old one.
#[utoipa::path(put, path = "/v1/admin/guid", tag = "admin", security(("admin_token" = [])),
    request_body = SetGuid,
    responses(
        (status = 200, description = "The status under the new GUID", body = Status),
        (status = 400, description = "`bad_request`: not a server GUID", body = ErrorBody),
    ))]
async fn set_guid(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetGuid>,
) -> Result<Json<Status>, ApiError> {
    let guid = ServerGuid::parse(&req.guid).map_err(|e| ApiError::bad_request(e.to_string()))?;
    state.server.set_guid(guid).await?;
    state.server.status().await.map(Json)
}

/// Syncs with the license nodes now.
#[utoipa::path(post, path = "/v1/admin/sync", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "How the sync went (`ok` false with `error` when no node gave a bundle)", body = SyncOutcome),
        (status = 503, description = "`not_ready`: the sync agent is not running", body = ErrorBody),
    ))]
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

/// The exact upload the next sync sends (air-gapped export; "what we send").
#[utoipa::path(get, path = "/v1/admin/upload", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "The upload", body = SyncUpload),
        (status = 503, description = "`not_ready`: no server GUID is set", body = ErrorBody),
    ))]
async fn upload(_: AdminAuth, State(state): State<AppState>) -> Result<Json<SyncUpload>, ApiError> {
    state.server.upload().await.map(Json)
}

/// `GET /v1/admin/usage?from=DATE&to=DATE`: the customer's own usage report, one row per
/// feature per hour of the UTC days asked for (the last 30 by default, at most 400).
#[utoipa::path(get, path = "/v1/admin/usage", tag = "admin", security(("admin_token" = [])),
    params(crate::export::PeriodQuery),
    responses(
        (status = 200, description = "Per feature and hour: peak in use, license-seconds, grants, denials, denials while free, backup use (counts only)", body = crate::api::UsageExport),
        (status = 400, description = "`bad_request`: a date that is not YYYY-MM-DD, `from` after `to`, a period over 400 days or an unknown parameter", body = ErrorBody),
    ))]
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

/// Applies a bundle from a file (air-gapped import), with the checks of a network sync.
#[utoipa::path(post, path = "/v1/admin/bundle", tag = "admin", security(("admin_token" = [])),
    request_body = SignedEnvelope,
    responses(
        (status = 200, description = "The bundle is in force", body = SyncOutcome),
        (status = 400, description = "`bad_request`: signature, key, GUID or context does not check, or the serial is not newer; the previous bundle is kept", body = ErrorBody),
        (status = 503, description = "`not_ready`: no server GUID is set", body = ErrorBody),
    ))]
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
