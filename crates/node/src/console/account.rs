//! The staff's own pages: every account (an admin changes them through `actions.rs`), and
//! one's own account: its password and personal API tokens (for `leasehold vendor`).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use leasehold_proto::api::staff::{check_token_label, AccountName, UpdateAccount};
use leasehold_proto::ApiTokenId;
use leasehold_web::browser::Flash;
use leasehold_web::ApiError;

use super::auth::{Posted, Signed};
use super::views::*;
use crate::domain::audit::Change;
use crate::http::NodeState;
use crate::service::{ConsoleSession, TokensOf};

/// One account in the list.
#[derive(Debug, Clone)]
pub struct AccountRow {
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub created: String,
    pub last_sign_in: String,
    pub edit: String,
    pub audit: String,
    pub me: bool,
}

#[derive(Template)]
#[template(path = "console/accounts.html")]
pub struct AccountsPage {
    pub layout: Layout,
    pub rows: Vec<AccountRow>,
}

pub async fn accounts_get(Signed(session): Signed, State(state): State<NodeState>) -> Response {
    let accounts = match state.node.accounts().await {
        Ok(a) => a,
        Err(e) => return error_page(&session, &e, "/console"),
    };
    let rows = accounts
        .iter()
        .map(|a| AccountRow {
            name: a.name.to_string(),
            role: a.role.to_string(),
            disabled: a.disabled,
            created: format!("{} by {}", time(Some(a.created_at), ""), a.created_by),
            last_sign_in: time(a.last_sign_in, "never"),
            edit: format!("/console/accounts/{}/edit", a.name),
            audit: format!("/console/audit?actor={}", a.name),
            me: a.name == session.account.name,
        })
        .collect();
    render(
        StatusCode::OK,
        &AccountsPage {
            layout: Layout::new("Accounts", "/console/accounts", &session),
            rows,
        },
    )
}

/// One token in the list.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: String,
    pub label: String,
    pub created: String,
    pub last_used: String,
    pub revoked: Option<String>,
    pub revoke: String,
}

#[derive(Template)]
#[template(path = "console/account.html")]
pub struct AccountPage {
    pub layout: Layout,
    pub name: String,
    pub role: String,
    pub created: String,
    pub last_sign_in: String,
    pub tokens: Vec<TokenRow>,
    pub password_error: Option<String>,
    pub label_error: Option<String>,
}

async fn account_page(
    state: &NodeState,
    session: &ConsoleSession,
    status: StatusCode,
    password_error: Option<String>,
    label_error: Option<String>,
) -> Response {
    let tokens = match state.node.tokens(&session.actor, &TokensOf::Own).await {
        Ok(t) => t,
        Err(e) => return error_page(session, &e, "/console"),
    };
    let a = &session.account;
    render(
        status,
        &AccountPage {
            layout: Layout::new("My account", "/console/account", session),
            name: a.name.to_string(),
            role: a.role.to_string(),
            created: format!("{} by {}", time(Some(a.created_at), ""), a.created_by),
            last_sign_in: time(a.last_sign_in, "never"),
            tokens: tokens
                .iter()
                .map(|t| TokenRow {
                    id: t.id.to_string(),
                    label: t.label.clone(),
                    created: time(Some(t.created_at), ""),
                    last_used: time(t.last_used_at, "never"),
                    revoked: t.revoked_at.map(|r| time(Some(r), "")),
                    revoke: format!("/console/account/tokens/{}/revoke", t.id),
                })
                .collect(),
            password_error,
            label_error,
        },
    )
}

pub async fn account_get(Signed(session): Signed, State(state): State<NodeState>) -> Response {
    account_page(&state, &session, StatusCode::OK, None, None).await
}

async fn flash_to_account(state: &NodeState, session: &ConsoleSession, flash: Flash) -> Response {
    if let Err(e) = state.node.set_flash(session, &flash.encode()).await {
        tracing::warn!(error = %e.message, "could not leave a flash message");
    }
    axum::response::IntoResponse::into_response(axum::response::Redirect::to("/console/account"))
}

/// One's own password: the present one, and the new one twice.
pub async fn password_post(State(state): State<NodeState>, posted: Posted) -> Response {
    let s = &posted.session;
    let (current, new, again) = (
        posted.form.get("current").cloned().unwrap_or_default(),
        posted.form.get("new").cloned().unwrap_or_default(),
        posted.form.get("again").cloned().unwrap_or_default(),
    );
    if new != again {
        return account_page(
            &state,
            s,
            StatusCode::BAD_REQUEST,
            Some("The new password and its repetition differ; nothing was changed.".into()),
            None,
        )
        .await;
    }
    let update = UpdateAccount {
        password: Some(new),
        current_password: Some(current),
        ..Default::default()
    };
    let name: &AccountName = &s.account.name;
    match state
        .node
        .update_account(Change::new(&s.actor, "own password"), name, &update)
        .await
    {
        Ok(_) => flash_to_account(&state, s, Flash::success("Your password is changed.")).await,
        Err(e) => {
            account_page(
                &state,
                s,
                StatusCode::BAD_REQUEST,
                Some(format!("{} Nothing was changed.", e.message)),
                None,
            )
            .await
        }
    }
}

/// A new personal API token, shown once.
pub async fn token_create_post(State(state): State<NodeState>, posted: Posted) -> Response {
    let s = &posted.session;
    let label = match check_token_label(posted.field("label")) {
        Ok(l) => l,
        Err(e) => {
            return account_page(
                &state,
                s,
                StatusCode::BAD_REQUEST,
                None,
                Some(format!("{e}.")),
            )
            .await
        }
    };
    match state
        .node
        .create_token(Change::new(&s.actor, "token made in the console"), &label)
        .await
    {
        Ok(t) => {
            let mut layout = Layout::new("New API token", "/console/account", s);
            layout.flash = None;
            render(
                StatusCode::OK,
                &DonePage {
                    layout,
                    heading: "New API token".into(),
                    message: format!(
                        "Token {} (“{}”) for {}. Use it with the CLI: `export LEASEHOLD_VENDOR_TOKEN=…` or `leasehold vendor --token …`.",
                        t.info.id, t.info.label, t.account.name
                    ),
                    secret_label: "Token".into(),
                    secret: t.token,
                    note: "The node keeps only its SHA-256: copy it now. Revoke it on My account when it is no longer needed.".into(),
                    back: "/console/account".into(),
                    back_label: "Back to my account".into(),
                },
            )
        }
        Err(e) => account_page(&state, s, e.status(), None, Some(e.message)).await,
    }
}

pub async fn token_revoke_post(
    State(state): State<NodeState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let s = &posted.session;
    let result = async {
        let id = ApiTokenId::parse(&id).map_err(|e| ApiError::bad_request(e.to_string()))?;
        state
            .node
            .revoke_token(Change::new(&s.actor, "revoked in the console"), &id)
            .await
    }
    .await;
    match result {
        Ok(t) => {
            flash_to_account(
                &state,
                s,
                Flash::success(format!("Token {} (“{}”) revoked.", t.id, t.label)),
            )
            .await
        }
        Err(e) => error_page(s, &e, "/console/account"),
    }
}
