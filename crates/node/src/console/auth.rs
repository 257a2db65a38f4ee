//! Signing in to the console and the session every page needs: a random cookie whose
//! SHA-256 names the session in the node's database (idle 12 h, at most 7 days), a CSRF
//! token per session that every form carries, the sign-in form's own CSRF cookie, and the
//! limit on failed sign-ins per address.

use std::collections::HashMap;

use axum::extract::{Form, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use leasehold_proto::api::staff::AccountName;
use leasehold_proto::ErrorCode;
use leasehold_web::browser::{
    self, client_ip, cookie, expired_cookie, random_token, safe_next, set_cookie, url_encode,
};
use leasehold_web::same_secret;
use serde::Deserialize;

use super::views::{message_page, render, Layout, LoginPage};
use crate::http::NodeState;
use crate::service::ConsoleSession;

pub const SESSION_COOKIE: &str = "leasehold_console";
/// The cookie of the sign-in form's CSRF token (there is no session yet to hold it).
pub const LOGIN_COOKIE: &str = "leasehold_console_login";
/// Where a sign-in goes without a `next`.
pub const HOME: &str = "/console";

/// A signed-in staff member. Pages without one redirect to the sign-in.
#[derive(Debug, Clone)]
pub struct Signed(pub ConsoleSession);

impl FromRequestParts<NodeState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &NodeState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(c) = cookie(&parts.headers, SESSION_COOKIE) {
            match state.node.console_session(c).await {
                Ok(Some(s)) => return Ok(Signed(s)),
                Ok(None) => {}
                Err(e) => {
                    return Err(message_page(
                        e.status(),
                        None,
                        "The console cannot read its sessions",
                        &e.message,
                        HOME,
                    ))
                }
            }
        }
        // A form posted after the session ended goes back to the page it came from.
        let target = if parts.method == Method::GET {
            parts.uri.path_and_query().map_or(HOME, |p| p.as_str())
        } else {
            parts.uri.path()
        };
        Err(Redirect::to(&format!("/console/login?next={}", url_encode(target))).into_response())
    }
}

/// A posted form of a signed-in staff member whose CSRF token matched: its fields by name.
pub struct Posted {
    pub session: ConsoleSession,
    pub form: HashMap<String, String>,
}

impl Posted {
    /// A field, trimmed; empty when absent.
    pub fn field(&self, name: &str) -> &str {
        self.form.get(name).map_or("", |v| v.trim())
    }
}

impl FromRequest<NodeState> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &NodeState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Signed(session) = Signed::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let Form(form) = Form::<HashMap<String, String>>::from_request(req, state)
            .await
            .map_err(|e| {
                message_page(
                    StatusCode::BAD_REQUEST,
                    Some(&session),
                    "Form not understood",
                    &format!(
                        "The form could not be read ({}). Nothing was changed.",
                        e.body_text()
                    ),
                    HOME,
                )
            })?;
        check_csrf(&session, form.get("csrf").map(String::as_str))?;
        Ok(Self { session, form })
    }
}

/// Refuses (403, nothing changed) a form without this session's CSRF token.
// The error is the page to answer with; handlers return it at once.
#[allow(clippy::result_large_err)]
pub fn check_csrf(session: &ConsoleSession, presented: Option<&str>) -> Result<(), Response> {
    if same_secret(presented.unwrap_or(""), &session.csrf) {
        return Ok(());
    }
    tracing::warn!(account = %session.account.name, "console form refused: missing or wrong CSRF token");
    Err(message_page(
        StatusCode::FORBIDDEN,
        Some(session),
        "Form refused (403)",
        "The form did not carry this session's security token (CSRF token), so it may not have come from this console. Nothing was changed. Reload the page and try again.",
        HOME,
    ))
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    signed_out: Option<String>,
}

pub async fn login_get(
    State(state): State<NodeState>,
    Query(q): Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    let next = safe_next(q.next.as_deref(), HOME);
    if let Some(c) = cookie(&headers, SESSION_COOKIE) {
        if let Ok(Some(_)) = state.node.console_session(c).await {
            return Redirect::to(&next).into_response();
        }
    }
    login_page(
        state.secure_cookies,
        StatusCode::OK,
        &next,
        "",
        None,
        q.signed_out.map(|_| "You are signed out.".to_string()),
    )
}

/// The sign-in form with a fresh CSRF token, set in a cookie it must match.
fn login_page(
    secure: bool,
    code: StatusCode,
    next: &str,
    name: &str,
    error: Option<String>,
    notice: Option<String>,
) -> Response {
    let token = random_token();
    let page = LoginPage {
        layout: Layout::signed_out("Sign in"),
        next: next.into(),
        name: name.into(),
        login_csrf: token.clone(),
        error,
        notice,
    };
    let mut response = render(code, &page);
    if let Ok(v) = set_cookie(LOGIN_COOKIE, &token, secure).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    name: String,
    password: String,
    csrf: String,
    next: String,
}

pub async fn login_post(
    State(state): State<NodeState>,
    parts: axum::http::request::Parts,
    Form(form): Form<LoginForm>,
) -> Response {
    let ip = client_ip(&parts);
    let next = safe_next(Some(&form.next), HOME);
    let login_cookie = cookie(&parts.headers, LOGIN_COOKIE).unwrap_or("");
    if !same_secret(login_cookie, &form.csrf) {
        return message_page(
            StatusCode::FORBIDDEN,
            None,
            "Form refused (403)",
            "The sign-in form did not carry its security token (cookies must be on for this console). Reload the sign-in page and try again.",
            "/console/login",
        );
    }
    let secure = state.secure_cookies;
    if let Some(wait) = state.throttle.locked_out(ip) {
        tracing::warn!(%ip, "console sign-in refused: too many failures");
        return login_page(
            secure,
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            &form.name,
            Some(format!(
                "{} wrong passwords came from your address within 5 minutes, so sign-in is refused for now. Try again in {}. An admin can set a new password for you.",
                browser::MAX_FAILURES,
                browser::wait_words(wait)
            )),
            None,
        );
    }
    let Ok(name) = AccountName::parse(&form.name) else {
        state.throttle.record_failure(ip);
        return login_page(
            secure,
            StatusCode::UNAUTHORIZED,
            &next,
            &form.name,
            Some("Wrong account name or password. Sign-in failed.".into()),
            None,
        );
    };
    match state.node.start_session(&name, &form.password).await {
        Ok(new) => {
            state.throttle.clear(ip);
            let mut response = Redirect::to(&next).into_response();
            for c in [
                set_cookie(SESSION_COOKIE, &new.cookie, secure),
                expired_cookie(LOGIN_COOKIE, secure),
            ] {
                if let Ok(v) = c.parse() {
                    response.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            response
        }
        Err(e) if e.code == ErrorCode::Unauthorized => {
            state.throttle.record_failure(ip);
            tracing::warn!(%ip, account = %name, "console sign-in failed");
            let message = if e.message.contains("disabled") {
                e.message
            } else {
                "Wrong account name or password. Sign-in failed.".into()
            };
            login_page(
                secure,
                StatusCode::UNAUTHORIZED,
                &next,
                &form.name,
                Some(message),
                None,
            )
        }
        Err(e) => login_page(secure, e.status(), &next, &form.name, Some(e.message), None),
    }
}

pub async fn logout_post(State(state): State<NodeState>, posted: Posted) -> Response {
    if let Err(e) = state.node.end_session(&posted.session).await {
        tracing::warn!(error = %e.message, "ending a console session failed");
    }
    let mut response = Redirect::to("/console/login?signed_out=1").into_response();
    if let Ok(v) = expired_cookie(SESSION_COOKIE, state.secure_cookies).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}
