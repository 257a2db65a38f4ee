//! The vendor admin API over the staff themselves: sign-in (a personal token for a name and
//! password), accounts, tokens and the audit log.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::NaiveDate;
use leasehold_proto::api::staff::{
    AccountList, AccountName, AccountView, AuditPage, CreateAccount, CreateToken, Login, NewToken,
    TokenList, TokenView, UpdateAccount, Whoami,
};
use leasehold_proto::{ApiTokenId, ErrorBody, ErrorCode, InstallationId, ServerGuid};
use leasehold_web::{ApiError, ApiJson};

use super::{NodeState, Reason, Staff, StaffOrBootstrap};
use crate::domain::audit::Change;
use crate::service::TokensOf;
use crate::store::AuditQuery;

/// The reason of a change, recorded in the audit log.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Read by the `Reason` extractor; this type only describes the header.
pub(super) struct ChangeReason {
    /// Why the change is made (a ticket number, the customer's request), percent-encoded
    /// UTF-8, at most 1,000 characters; recorded in the audit log. The CLI's `--reason`.
    #[param(rename = "leasehold-reason")]
    leasehold_reason: Option<String>,
}

fn parse_name(text: &str) -> Result<AccountName, ApiError> {
    AccountName::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Signs in with an account's name and password and returns a new personal API token
/// (shown this once). Five wrong passwords from one address within five minutes lock that
/// address out for the rest of them.
#[utoipa::path(post, path = "/login", tag = "staff",
    request_body = Login,
    responses(
        (status = 201, description = "A new token for the account", body = NewToken),
        (status = 400, description = "`bad_request`: a malformed name or label", body = ErrorBody),
        (status = 401, description = "`unauthorized`: wrong name or password, or the account is disabled", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many failed sign-ins from this address", body = ErrorBody),
    ))]
pub(super) async fn login(
    State(state): State<NodeState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    ApiJson(req): ApiJson<Login>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    let ip = peer.ip();
    if let Some(wait) = state.throttle.locked_out(ip) {
        tracing::warn!(%ip, "vendor sign-in refused: too many failures");
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many failed sign-ins from your address; try again in {}",
                leasehold_web::browser::wait_words(wait)
            ),
        ));
    }
    match state
        .node
        .login(&req.name, &req.password, req.label.as_deref())
        .await
    {
        Ok(token) => {
            state.throttle.clear(ip);
            Ok((StatusCode::CREATED, Json(token)))
        }
        Err(e) => {
            if e.code == ErrorCode::Unauthorized {
                state.throttle.record_failure(ip);
                tracing::warn!(%ip, account = %req.name, "vendor sign-in failed");
            }
            Err(e)
        }
    }
}

/// The account the token belongs to.
#[utoipa::path(get, path = "/whoami", tag = "staff", security(("vendor_token" = ["support"])),
    responses((status = 200, description = "The caller's account", body = Whoami)))]
pub(super) async fn whoami(
    Staff(actor): Staff,
    State(state): State<NodeState>,
) -> Result<Json<Whoami>, ApiError> {
    let account = state.node.account(&parse_name(&actor.name)?).await?;
    Ok(Json(Whoami {
        account,
        token: actor.token,
    }))
}

/// Every staff account.
#[utoipa::path(get, path = "/accounts", tag = "staff", security(("vendor_token" = ["support"])),
    responses((status = 200, description = "The accounts, by name", body = AccountList)))]
pub(super) async fn list_accounts(
    _: Staff,
    State(state): State<NodeState>,
) -> Result<Json<AccountList>, ApiError> {
    Ok(Json(AccountList {
        accounts: state.node.accounts().await?,
    }))
}

/// Creates a staff account. An admin may create any; the node's bootstrap token may
/// create only the first admin, while no enabled admin account exists.
#[utoipa::path(post, path = "/accounts", tag = "staff",
    params(ChangeReason),
    security(("vendor_token" = ["admin"]), ("admin_token" = [])),
    request_body = CreateAccount,
    responses(
        (status = 201, description = "The account", body = AccountView),
        (status = 400, description = "`bad_request`: a malformed name, or a password under 12 characters", body = ErrorBody),
        (status = 409, description = "`already_exists`: the name is taken", body = ErrorBody),
    ))]
pub(super) async fn create_account(
    StaffOrBootstrap(actor): StaffOrBootstrap,
    Reason(reason): Reason,
    State(state): State<NodeState>,
    ApiJson(req): ApiJson<CreateAccount>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    let view = state
        .node
        .create_account(Change::new(&actor, &reason), &req)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One account.
#[utoipa::path(get, path = "/accounts/{name}", tag = "staff", security(("vendor_token" = ["support"])),
    params(("name" = AccountName, Path, description = "The account's name")),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 404, description = "`not_found`: no such account", body = ErrorBody),
    ))]
pub(super) async fn show_account(
    _: Staff,
    State(state): State<NodeState>,
    Path(name): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    Ok(Json(state.node.account(&parse_name(&name)?).await?))
}

/// Changes an account's role, disables or enables it, or sets its password. An admin may
/// change any account (never disabling itself or the last enabled admin); any account may
/// set its own password, giving the present one. Disabling ends the account's tokens and
/// console sessions at once.
#[utoipa::path(patch, path = "/accounts/{name}", tag = "staff", security(("vendor_token" = ["admin"])),
    params(ChangeReason, ("name" = AccountName, Path, description = "The account's name")),
    request_body = UpdateAccount,
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 400, description = "`bad_request`: nothing to change, a short password, a wrong present password, or the last admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no such account", body = ErrorBody),
    ))]
pub(super) async fn update_account(
    Staff(actor): Staff,
    Reason(reason): Reason,
    State(state): State<NodeState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UpdateAccount>,
) -> Result<Json<AccountView>, ApiError> {
    let name = parse_name(&name)?;
    Ok(Json(
        state
            .node
            .update_account(Change::new(&actor, &reason), &name, &req)
            .await?,
    ))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct TokensQuery {
    /// Another account's tokens (an admin only).
    account: Option<String>,
    /// `true`: every account's tokens (an admin only).
    all: Option<bool>,
}

/// API tokens (never the tokens themselves): one's own; an admin's of any account.
#[utoipa::path(get, path = "/tokens", tag = "staff", security(("vendor_token" = ["support"])),
    params(TokensQuery),
    responses((status = 200, description = "The tokens, newest first", body = TokenList)))]
pub(super) async fn list_tokens(
    Staff(actor): Staff,
    State(state): State<NodeState>,
    query: Result<Query<TokensQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TokenList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let of = match (q.all.unwrap_or(false), q.account) {
        (true, _) => TokensOf::All,
        (false, Some(name)) => TokensOf::Account(parse_name(&name)?),
        (false, None) => TokensOf::Own,
    };
    Ok(Json(TokenList {
        tokens: state.node.tokens(&actor, &of).await?,
    }))
}

/// A new personal API token for the caller's own account (shown this once).
#[utoipa::path(post, path = "/tokens", tag = "staff", security(("vendor_token" = ["support"])),
    params(ChangeReason),
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token", body = NewToken),
        (status = 400, description = "`bad_request`: a label that is empty or over 100 characters", body = ErrorBody),
    ))]
pub(super) async fn create_token(
    Staff(actor): Staff,
    Reason(reason): Reason,
    State(state): State<NodeState>,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    let token = state
        .node
        .create_token(Change::new(&actor, &reason), &req.label)
        .await?;
    Ok((StatusCode::CREATED, Json(token)))
}

/// Revokes a token: one's own (any role), or any account's (an admin).
#[utoipa::path(delete, path = "/tokens/{id}", tag = "staff", security(("vendor_token" = ["support"])),
    params(ChangeReason, ("id" = ApiTokenId, Path, description = "The token's id")),
    responses(
        (status = 200, description = "The token, revoked", body = TokenView),
        (status = 403, description = "`forbidden`: another account's token, and the caller is not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no such token", body = ErrorBody),
    ))]
pub(super) async fn revoke_token(
    Staff(actor): Staff,
    Reason(reason): Reason,
    State(state): State<NodeState>,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let id = ApiTokenId::parse(&id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(
        state
            .node
            .revoke_token(Change::new(&actor, &reason), &id)
            .await?,
    ))
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    /// Only entries that touched this installation.
    pub installation: Option<String>,
    /// Only entries about this server (GUID, any accepted form): the server itself and the
    /// licenses granted to it, revoked on it, or moved from or to it.
    pub server: Option<String>,
    /// Only entries about this target: a license id, an account name, a token id.
    pub target: Option<String>,
    /// Only entries by this account.
    pub actor: Option<String>,
    /// Only entries from this day on (UTC, YYYY-MM-DD; empty for no limit).
    pub since: Option<String>,
    /// Only entries older than this id (the `next_before` of the page before).
    pub before: Option<u64>,
    /// At most this many (1 to 500, default 100).
    pub limit: Option<u32>,
}

impl AuditParams {
    /// `since` as a day; empty (as a form sends it) means no limit.
    pub(crate) fn since_day(&self) -> Result<Option<NaiveDate>, ApiError> {
        match self
            .since
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => Ok(None),
            Some(t) => NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| {
                    ApiError::bad_request(format!("since {t:?} is not a date as YYYY-MM-DD"))
                }),
        }
    }

    /// The store's query; a malformed installation id or GUID is refused by name.
    pub(crate) fn query(&self) -> Result<AuditQuery, ApiError> {
        let installation = self
            .installation
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| InstallationId::parse(s.trim()))
            .transpose()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let server = self
            .server
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(ServerGuid::parse)
            .transpose()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let target = self
            .target
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let actor = self
            .actor
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                // An account name is kept in lower case; other actors by their words.
                AccountName::parse(a).map_or_else(|_| a.to_owned(), |n| n.to_string())
            });
        Ok(AuditQuery {
            installation,
            server,
            actor,
            target,
            since: self.since_day()?.map(|d| crate::store::day_bounds(d).0),
            before_id: self.before,
            limit: self.limit.unwrap_or(100),
        })
    }
}

/// The audit log, newest first: who changed what, when, why, and the thing before and
/// after. Entries are never changed or deleted, through this or any interface.
#[utoipa::path(get, path = "/audit", tag = "staff", security(("vendor_token" = ["support"])),
    params(AuditParams),
    responses(
        (status = 200, description = "A page of entries", body = AuditPage),
        (status = 400, description = "`bad_request`: a malformed filter", body = ErrorBody),
    ))]
pub(super) async fn audit(
    _: Staff,
    State(state): State<NodeState>,
    query: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(p) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if p.limit
        .is_some_and(|l| l == 0 || l > crate::service::MAX_AUDIT_PAGE)
    {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {}",
            crate::service::MAX_AUDIT_PAGE
        )));
    }
    Ok(Json(state.node.audit(p.query()?).await?))
}
