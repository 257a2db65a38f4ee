//! The vendor console: the support desk's web interface on the node's listener, under
//! `/console`. Server-rendered pages (askama templates in `templates/console/`), no
//! scripts needed; a session per sign-in kept in the node's database (so any node behind a
//! load balancer serves it), a CSRF token on every form. Reads go through the same service
//! calls as the admin API; every change has a confirmation step and a reason, and goes
//! through the service, which checks the role and writes the audit entry.
//!
//! `pages.rs` renders the pages (GET), `actions.rs` the changes (a form, a confirmation,
//! the change), `auth.rs` the sign-in and the session, `views.rs` what templates show,
//! `charts.rs` the usage charts, `reports.rs` the CSV downloads.

mod account;
mod actions;
mod auth;
mod charts;
mod pages;
mod reports;
mod views;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::http::NodeState;

/// The air-gapped upload file a person hands the console, and its confirmation form (the
/// file travels there again, base64 in the form): a sync upload's limit and a third more.
const MAX_OFFLINE_FORM_BYTES: usize = leasehold_proto::MAX_SYNC_BODY_BYTES / 3 * 4 + 64 * 1024;
/// Every other form.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Every console route. Only the sign-in page and the stylesheet answer without a session.
pub fn router() -> Router<NodeState> {
    let offline = Router::new()
        .route(
            "/console/servers/{guid}/offline-sync",
            get(actions::offline_sync_get).post(actions::offline_sync_post),
        )
        .route(
            "/console/servers/{guid}/offline-sync/confirm",
            post(actions::offline_sync_confirm),
        )
        .layer(DefaultBodyLimit::max(MAX_OFFLINE_FORM_BYTES));
    Router::new()
        .route("/", get(pages::root_get))
        .route("/console", get(pages::home_get))
        .route("/console/", get(pages::root_get))
        .route(
            "/console/login",
            get(auth::login_get).post(auth::login_post),
        )
        .route("/console/logout", post(auth::logout_post))
        .route(
            "/console/static/console.css",
            get(leasehold_web::browser::stylesheet),
        )
        .route("/console/search", get(pages::search_get))
        .route("/console/installations", get(pages::installations_get))
        .route(
            "/console/installations/new",
            get(actions::create_installation_get).post(actions::create_installation_post),
        )
        .route("/console/installations/{id}", get(pages::installation_get))
        .route(
            "/console/installations/{id}/servers/new",
            get(actions::add_server_get).post(actions::add_server_post),
        )
        .route("/console/servers/{guid}", get(pages::server_get))
        .route(
            "/console/servers/{guid}/reassign",
            get(actions::reassign_get).post(actions::reassign_post),
        )
        .route(
            "/console/servers/{guid}/settings",
            get(actions::settings_get).post(actions::settings_post),
        )
        .route(
            "/console/servers/{guid}/grant",
            get(actions::grant_get).post(actions::grant_post),
        )
        .route("/console/licenses/{id}", get(pages::license_get))
        .route(
            "/console/licenses/{id}/transfer",
            get(actions::transfer_get).post(actions::transfer_post),
        )
        .route(
            "/console/licenses/{id}/revoke",
            get(actions::revoke_get).post(actions::revoke_post),
        )
        .route(
            "/console/licenses/{id}/maintenance",
            get(actions::maintenance_get).post(actions::maintenance_post),
        )
        .route("/console/audit", get(pages::audit_get))
        .route("/console/audit.csv", get(reports::audit_csv_get))
        .route("/console/events", get(pages::events_get))
        .route("/console/events.csv", get(reports::events_csv_get))
        .route("/console/reports/usage", get(pages::usage_report_get))
        .route("/console/reports/usage.csv", get(reports::usage_csv_get))
        .route("/console/accounts", get(account::accounts_get))
        .route(
            "/console/accounts/new",
            get(actions::create_account_get).post(actions::create_account_post),
        )
        .route(
            "/console/accounts/{name}/edit",
            get(actions::edit_account_get).post(actions::edit_account_post),
        )
        .route("/console/account", get(account::account_get))
        .route("/console/account/password", post(account::password_post))
        .route("/console/account/tokens", post(account::token_create_post))
        .route(
            "/console/account/tokens/{id}/revoke",
            post(account::token_revoke_post),
        )
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .merge(offline)
        .layer(axum::middleware::map_response(
            leasehold_web::browser::security_headers,
        ))
}
