//! The vendor admin API over installations, servers, licenses and usage, and the sync route
//! license servers call. Every change names its actor and reason ([`Change`]); the service
//! checks the role and writes the audit entry.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use leasehold_proto::{ErrorBody, LicenseId, ServerGuid, SignedEnvelope, SyncUpload};
use leasehold_web::{ApiError, ApiJson};

use super::{parse_guid, parse_license_id, NodeState, Reason, Staff};
use crate::api::{
    AddServer, CreateInstallation, GrantLicense, InstallationList, InstallationView, LicenseView,
    ServerView, SetMaintenance, TransferLicense, UpdateServer, UsageReport,
};
use crate::domain::audit::Change;

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
pub(super) async fn sync(
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
#[utoipa::path(post, path = "/installations", tag = "vendor", params(super::staff::ChangeReason),
    security(("vendor_token" = ["admin"])),
    request_body = CreateInstallation,
    responses((status = 201, description = "The installation", body = InstallationView)))]
pub(super) async fn create_installation(
    Staff(actor): Staff,
    Reason(reason): Reason,
    State(state): State<NodeState>,
    ApiJson(req): ApiJson<CreateInstallation>,
) -> Result<(StatusCode, Json<InstallationView>), ApiError> {
    let view = state
        .node
        .create_installation(Change::new(&actor, &reason), &req.name)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Every installation.
#[utoipa::path(get, path = "/installations", tag = "vendor", security(("vendor_token" = ["support"])),
    responses((status = 200, description = "Every installation with its servers", body = InstallationList)))]
pub(super) async fn list_installations(
    _: Staff,
    State(state): State<NodeState>,
) -> Result<Json<InstallationList>, ApiError> {
    let installations = state.node.list_installations().await?;
    Ok(Json(InstallationList { installations }))
}

/// Registers a server (a new GUID) in an installation.
#[utoipa::path(post, path = "/servers", tag = "vendor", params(super::staff::ChangeReason),
    security(("vendor_token" = ["support"])),
    request_body = AddServer,
    responses(
        (status = 201, description = "The server", body = ServerView),
        (status = 404, description = "`not_found`: no such installation", body = ErrorBody),
        (status = 422, description = "`installation_shape`: a second production or development server in the installation", body = ErrorBody),
    ))]
pub(super) async fn add_server(
    Staff(actor): Staff,
    Reason(reason): Reason,
    State(state): State<NodeState>,
    ApiJson(req): ApiJson<AddServer>,
) -> Result<(StatusCode, Json<ServerView>), ApiError> {
    let view = state
        .node
        .add_server(Change::new(&actor, &reason), &req.installation, req.context)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One server: its licenses and sync state.
#[utoipa::path(get, path = "/servers/{guid}", tag = "vendor", security(("vendor_token" = ["support"])),
    params(("guid" = ServerGuid, Path, description = "The server's GUID, with or without braces")),
    responses(
        (status = 200, description = "The server", body = ServerView),
        (status = 404, description = "`unknown_server`: no such server", body = ErrorBody),
    ))]
pub(super) async fn show_server(
    _: Staff,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Result<Json<ServerView>, ApiError> {
    Ok(Json(state.node.server(parse_guid(&guid)?).await?))
}

/// Changes a server's grace period or sync interval.
#[utoipa::path(patch, path = "/servers/{guid}", tag = "vendor", security(("vendor_token" = ["admin"])),
    params(super::staff::ChangeReason, ("guid" = ServerGuid, Path, description = "The server's GUID, with or without braces")),
    request_body = UpdateServer,
    responses(
        (status = 200, description = "The server", body = ServerView),
        (status = 400, description = "`bad_request`: grace below 60 days, or an interval below 60 s or above half the grace", body = ErrorBody),
        (status = 404, description = "`unknown_server`: no such server", body = ErrorBody),
    ))]
pub(super) async fn update_server(
    Staff(actor): Staff,
    Reason(reason): Reason,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
    ApiJson(req): ApiJson<UpdateServer>,
) -> Result<Json<ServerView>, ApiError> {
    Ok(Json(
        state
            .node
            .update_server(Change::new(&actor, &reason), parse_guid(&guid)?, &req)
            .await?,
    ))
}

/// Unbinds a server's GUID from its instance and revokes its sync-token chain, so a new
/// instance (a rebuilt machine) can take the GUID.
#[utoipa::path(post, path = "/servers/{guid}/reassign", tag = "vendor", security(("vendor_token" = ["support"])),
    params(super::staff::ChangeReason, ("guid" = ServerGuid, Path, description = "The server's GUID, with or without braces")),
    responses(
        (status = 200, description = "The server, instance unbound", body = ServerView),
        (status = 404, description = "`unknown_server`: no such server", body = ErrorBody),
    ))]
pub(super) async fn reassign_server(
    Staff(actor): Staff,
    Reason(reason): Reason,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Result<Json<ServerView>, ApiError> {
    let guid = parse_guid(&guid)?;
    let view = state
        .node
        .reassign_server(Change::new(&actor, &reason), guid)
        .await?;
    tracing::info!(%guid, by = %actor.name, "server GUID reassigned");
    Ok(Json(view))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct Period {
    /// First day (UTC, inclusive); default 29 days before `to` (30 days in all).
    from: Option<chrono::NaiveDate>,
    /// Last day (UTC, inclusive); default today. At most 1,098 days in all.
    to: Option<chrono::NaiveDate>,
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    /// A server without a sync for more than this many days is `silent`; default 7.
    silent_days: Option<u32>,
}

/// What a vendor should look at, per server, most urgent kind first.
#[utoipa::path(get, path = "/events", tag = "vendor", security(("vendor_token" = ["support"])),
    params(EventsQuery),
    responses(
        (status = 200, description = "The events", body = crate::api::VendorEvents),
        (status = 400, description = "`bad_request`: `silent_days` is not a whole number of days", body = ErrorBody),
    ))]
pub(super) async fn vendor_events(
    _: Staff,
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
#[utoipa::path(get, path = "/installations/{id}/usage", tag = "vendor", security(("vendor_token" = ["support"])),
    params(("id" = leasehold_proto::InstallationId, Path, description = "The installation"), Period),
    responses(
        (status = 200, description = "The report", body = crate::api::InstallationUsage),
        (status = 400, description = "`bad_request`: a malformed id or date, or a period that is reversed or too long", body = ErrorBody),
        (status = 404, description = "`not_found`: no such installation", body = ErrorBody),
    ))]
pub(super) async fn installation_usage(
    _: Staff,
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
#[utoipa::path(get, path = "/servers/{guid}/usage", tag = "vendor", security(("vendor_token" = ["support"])),
    params(("guid" = ServerGuid, Path, description = "The server's GUID, with or without braces")),
    responses(
        (status = 200, description = "The rows", body = UsageReport),
        (status = 404, description = "`unknown_server`: no such server", body = ErrorBody),
    ))]
pub(super) async fn usage(
    _: Staff,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Result<Json<UsageReport>, ApiError> {
    let guid = parse_guid(&guid)?;
    let rows = state.node.usage(guid).await?;
    Ok(Json(UsageReport { server: guid, rows }))
}

/// Grants a license to a server.
#[utoipa::path(post, path = "/licenses", tag = "vendor", params(super::staff::ChangeReason),
    security(("vendor_token" = ["admin"])),
    request_body = GrantLicense,
    responses(
        (status = 201, description = "The license", body = LicenseView),
        (status = 400, description = "`bad_request`: the license is not valid (a count of 0, a backup license without `backs_up`, ...)", body = ErrorBody),
        (status = 404, description = "`unknown_server`: no such server", body = ErrorBody),
        (status = 422, description = "`context_mismatch` (the license's context is not the server's) or `installation_shape` (a backup license that does not parallel a production license of the installation)", body = ErrorBody),
    ))]
pub(super) async fn grant_license(
    Staff(actor): Staff,
    Reason(reason): Reason,
    State(state): State<NodeState>,
    ApiJson(req): ApiJson<GrantLicense>,
) -> Result<(StatusCode, Json<LicenseView>), ApiError> {
    let view = state
        .node
        .grant_license(Change::new(&actor, &reason), &req)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One license and the server it is assigned to.
#[utoipa::path(get, path = "/licenses/{id}", tag = "vendor", security(("vendor_token" = ["support"])),
    params(("id" = LicenseId, Path, description = "The license")),
    responses(
        (status = 200, description = "The license", body = LicenseView),
        (status = 404, description = "`not_found`: no such license", body = ErrorBody),
    ))]
pub(super) async fn show_license(
    _: Staff,
    State(state): State<NodeState>,
    Path(id): Path<String>,
) -> Result<Json<LicenseView>, ApiError> {
    let id = parse_license_id(&id)?;
    Ok(Json(state.node.license(&id).await?))
}

/// Moves a license to another server of the same context.
#[utoipa::path(post, path = "/licenses/{id}/transfer", tag = "vendor", security(("vendor_token" = ["admin"])),
    params(super::staff::ChangeReason, ("id" = LicenseId, Path, description = "The license")),
    request_body = TransferLicense,
    responses(
        (status = 200, description = "The license on its new server", body = LicenseView),
        (status = 404, description = "`not_found` or `unknown_server`", body = ErrorBody),
        (status = 409, description = "`stale_request`: `from` names a server the license is no longer on; nothing changed", body = ErrorBody),
        (status = 422, description = "`context_mismatch` (the target server has another context) or `installation_shape` (backup licenses rest on this one)", body = ErrorBody),
    ))]
pub(super) async fn transfer_license(
    Staff(actor): Staff,
    Reason(reason): Reason,
    State(state): State<NodeState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TransferLicense>,
) -> Result<Json<LicenseView>, ApiError> {
    let id = parse_license_id(&id)?;
    Ok(Json(
        state
            .node
            .transfer_license(Change::new(&actor, &reason), &id, &req)
            .await?,
    ))
}

/// Revokes a license: the next bundle of its server no longer lists it.
#[utoipa::path(post, path = "/licenses/{id}/revoke", tag = "vendor", security(("vendor_token" = ["admin"])),
    params(super::staff::ChangeReason, ("id" = LicenseId, Path, description = "The license")),
    responses(
        (status = 200, description = "The license with `revoked_at`", body = LicenseView),
        (status = 404, description = "`not_found`: no such license", body = ErrorBody),
        (status = 422, description = "`installation_shape`: backup licenses rest on this one; revoke those first", body = ErrorBody),
    ))]
pub(super) async fn revoke_license(
    Staff(actor): Staff,
    Reason(reason): Reason,
    State(state): State<NodeState>,
    Path(id): Path<String>,
) -> Result<Json<LicenseView>, ApiError> {
    let id = parse_license_id(&id)?;
    Ok(Json(
        state
            .node
            .revoke_license(Change::new(&actor, &reason), &id)
            .await?,
    ))
}

/// Changes the date of the last release a license covers.
#[utoipa::path(post, path = "/licenses/{id}/maintenance", tag = "vendor", security(("vendor_token" = ["admin"])),
    params(super::staff::ChangeReason, ("id" = LicenseId, Path, description = "The license")),
    request_body = SetMaintenance,
    responses(
        (status = 200, description = "The license", body = LicenseView),
        (status = 404, description = "`not_found`: no such license", body = ErrorBody),
    ))]
pub(super) async fn set_maintenance(
    Staff(actor): Staff,
    Reason(reason): Reason,
    State(state): State<NodeState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetMaintenance>,
) -> Result<Json<LicenseView>, ApiError> {
    let id = parse_license_id(&id)?;
    Ok(Json(
        state
            .node
            .set_maintenance(Change::new(&actor, &reason), &id, req.until)
            .await?,
    ))
}
