//! The dashboard's forms (POST). Every one carries the session's CSRF token in a hidden
//! field and is refused with 403, changing nothing, without it. Each answers with a redirect
//! and a flash message, or the page again with the problem next to the field.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use axum::extract::{Form, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use leasehold_proto::{ServerGuid, TrustedKeys};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::auth::{self, Flash, Session, LOGIN_COOKIE, MAX_FAILURES, SESSION_COOKIE};
use super::pages::{login_page, message_page, setup_page, status_or_page};
use super::views::{render, ConfigErrors, ConfigForm, ConfigPage, Layout};
use crate::config::{self, FileConfig, DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN};
use crate::http::AppState;

/// A form with its CSRF token.
pub trait CsrfForm: DeserializeOwned + Send {
    fn csrf(&self) -> &str;
}

/// A posted form from a signed-in operator whose CSRF token matched.
pub struct Posted<T> {
    pub session: Session,
    pub form: T,
}

impl<T: CsrfForm> FromRequest<AppState> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let Form(form) = Form::<T>::from_request(req, state).await.map_err(|e| {
            message_page(
                StatusCode::BAD_REQUEST,
                Some(&session),
                "Form not understood",
                &format!(
                    "The form could not be read ({}). Nothing was changed.",
                    e.body_text()
                ),
                "/licenses",
            )
        })?;
        if !auth::same_secret(form.csrf(), &session.csrf) {
            tracing::warn!("dashboard form refused: missing or wrong CSRF token");
            return Err(csrf_refused(Some(&session)));
        }
        Ok(Self { session, form })
    }
}

fn csrf_refused(session: Option<&Session>) -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        session,
        "Form refused (403)",
        "The form did not carry this session's security token (CSRF token), so it may not \
         have come from this dashboard. Nothing was changed. Reload the page and try again.",
        "/licenses",
    )
}

/// The client's address and the sign-in form's cookie.
pub struct ClientInfo {
    ip: IpAddr,
    login_cookie: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            ip: auth::client_ip(parts),
            login_cookie: auth::cookie(&parts.headers, LOGIN_COOKIE).map(str::to_owned),
        })
    }
}

/// The sign-in form; `next` is where to go after it (see [`auth::safe_next`]).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    pub password: String,
    pub csrf: String,
    pub next: String,
}

pub async fn login_post(
    State(state): State<AppState>,
    client: ClientInfo,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = auth::safe_next(Some(&form.next));
    if !client
        .login_cookie
        .as_deref()
        .is_some_and(|c| auth::same_secret(c, &form.csrf))
    {
        return csrf_refused(None);
    }
    let sessions = &state.dashboard.sessions;
    if let Some(wait) = sessions.locked_out(client.ip) {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        tracing::warn!(ip = %client.ip, "dashboard sign-in refused: too many failures");
        return message_page(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            "Too many failed sign-ins (429)",
            &format!(
                "{MAX_FAILURES} wrong passwords came from your address within 5 minutes, so \
                 sign-in is refused for now. Try again in {minutes} minute{}. If you forgot the \
                 password, set a new one on the server with `leasehold server set-password`.",
                if minutes == 1 { "" } else { "s" }
            ),
            "/login",
        );
    }
    let data_dir = state.dashboard.data_dir().to_path_buf();
    let password = form.password;
    let verified =
        tokio::task::spawn_blocking(move || auth::verify_password(&data_dir, &password)).await;
    match verified {
        Ok(Ok(true)) => {
            sessions.clear_failures(client.ip);
            let token = sessions.create();
            tracing::info!(ip = %client.ip, "dashboard sign-in");
            let mut response = Redirect::to(&next).into_response();
            for cookie in [
                auth::session_cookie(&token, state.dashboard.secure_cookies()),
                auth::expired_cookie(LOGIN_COOKIE, state.dashboard.secure_cookies()),
            ] {
                if let Ok(v) = cookie.parse() {
                    response.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            response
        }
        Ok(Ok(false)) => {
            sessions.record_failure(client.ip);
            tracing::warn!(ip = %client.ip, "dashboard sign-in failed: wrong password");
            login_page(
                state.dashboard.secure_cookies(),
                StatusCode::UNAUTHORIZED,
                &next,
                Some("Wrong password. Sign-in failed.".into()),
                None,
            )
        }
        Ok(Err(e)) => login_page(
            state.dashboard.secure_cookies(),
            StatusCode::INTERNAL_SERVER_ERROR,
            &next,
            Some(e),
            None,
        ),
        Err(e) => login_page(
            state.dashboard.secure_cookies(),
            StatusCode::INTERNAL_SERVER_ERROR,
            &next,
            Some(format!("checking the password failed: {e}")),
            None,
        ),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CsrfOnly {
    csrf: String,
}

impl CsrfForm for CsrfOnly {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn logout_post(State(state): State<AppState>, posted: Posted<CsrfOnly>) -> Response {
    state.dashboard.sessions.end(&posted.session.token);
    let mut response = Redirect::to("/login?signed_out=1").into_response();
    if let Ok(v) = auth::expired_cookie(SESSION_COOKIE, state.dashboard.secure_cookies()).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// Setup's "Set the GUID" form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SetupForm {
    pub csrf: String,
    pub guid: String,
}

impl CsrfForm for SetupForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn setup_post(State(state): State<AppState>, posted: Posted<SetupForm>) -> Response {
    let Posted { session, form } = posted;
    let guid = match ServerGuid::parse(form.guid.trim()) {
        Ok(g) => g,
        Err(e) => {
            return setup_page(
                &state,
                &session,
                StatusCode::BAD_REQUEST,
                form.guid,
                Some(format!(
                    "{e}. A server GUID looks like {{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}}."
                )),
            )
            .await
        }
    };
    let had = state.server.guid();
    let flash = match state.server.set_guid(guid).await {
        Ok(()) if had == Some(guid) => Flash::info(format!("The server GUID already is {guid}.")),
        Ok(()) => Flash::success(format!(
            "Server GUID set to {guid}. The server syncs with the license nodes now; the Sync \
             page shows the outcome."
        )),
        Err(e) => Flash::error(format!("Setting the GUID failed: {}", e.message)),
    };
    state.dashboard.sessions.set_flash(&session.token, flash);
    Redirect::to("/setup").into_response()
}

/// Setup's "Rotate the client key": a fresh key; the old one is accepted for the overlap.
pub async fn client_key_post(State(state): State<AppState>, posted: Posted<CsrfOnly>) -> Response {
    let flash = match state.server.replace_client_key(None) {
        Ok(v) => Flash::success(format!(
            "New client key made. Give it to every application{}; the old key is accepted until {}.",
            " and every backup server (leasehold server client-key --set KEY)",
            v.previous_valid_until
                .last()
                .map_or_else(|| "now only".into(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        )),
        Err(e) => Flash::error(format!("Rotating the client key failed: {}", e.message)),
    };
    state
        .dashboard
        .sessions
        .set_flash(&posted.session.token, flash);
    Redirect::to("/setup").into_response()
}

pub async fn sync_post(State(state): State<AppState>, posted: Posted<CsrfOnly>) -> Response {
    let flash = match state.agent.sync_now().await {
        Some(o) if o.ok => Flash::success(format!(
            "Synced with {}: bundle serial {}, {} license{}.",
            o.node.as_deref().unwrap_or("a license node"),
            o.serial.unwrap_or_default(),
            o.licenses,
            if o.licenses == 1 { "" } else { "s" }
        )),
        Some(o) => Flash::error(format!(
            "Sync did not succeed: {}. The server keeps its current licenses and retries by \
             itself.",
            o.error.as_deref().unwrap_or("unknown error")
        )),
        None => Flash::error("The sync agent is not running; restart the server."),
    };
    state
        .dashboard
        .sessions
        .set_flash(&posted.session.token, flash);
    Redirect::to("/sync").into_response()
}

/// The configuration form as posted: text areas hold one node URL or vendor key a line.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConfigPost {
    pub csrf: String,
    pub nodes: String,
    pub listen: String,
    pub admin_listen: String,
    pub node_timeout: String,
    pub vendor_keys: String,
}

impl CsrfForm for ConfigPost {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The non-empty lines of a text area, trimmed: one node URL or vendor key each.
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The configuration form, every field checked: what [`config_post`] writes to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedConfig {
    pub nodes: Vec<String>,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub node_timeout: Duration,
    /// The vendor keys as typed (public keys or key file names), one a line.
    pub vendor_keys: Vec<String>,
    /// Key ids of those keys.
    pub key_ids: BTreeSet<String>,
}

impl CheckedConfig {
    /// Sets the form's settings in `file`, leaving its other settings as they are.
    pub fn write_into(&self, file: &mut FileConfig) {
        file.nodes = Some(self.nodes.clone());
        file.listen = Some(self.listen.to_string());
        file.admin_listen = Some(self.admin_listen.to_string());
        file.node_timeout = Some(humantime::format_duration(self.node_timeout).to_string());
        file.vendor_keys = Some(self.vendor_keys.clone());
    }
}

/// Checks every field of a posted configuration form; key file names are relative to
/// `base_dir` (the config file's directory). On a problem, each field's problem.
pub fn check_config_form(
    form: &ConfigPost,
    base_dir: Option<&Path>,
) -> Result<CheckedConfig, Box<ConfigErrors>> {
    let mut errors = ConfigErrors::default();
    let node_texts = lines(&form.nodes);
    let nodes = config::check_node_urls(node_texts.iter().map(String::as_str))
        .map_err(|e| errors.nodes = Some(e))
        .ok();
    let listen = config::parse_address(&form.listen, DEFAULT_LISTEN)
        .map_err(|e| errors.listen = Some(e))
        .ok();
    let admin_listen = config::parse_address(&form.admin_listen, DEFAULT_ADMIN_LISTEN)
        .map_err(|e| errors.admin_listen = Some(e))
        .ok();
    let node_timeout = config::parse_duration(&form.node_timeout)
        .map_err(|e| errors.node_timeout = Some(e))
        .ok();
    let key_texts = lines(&form.vendor_keys);
    let mut keys = TrustedKeys::new();
    let mut key_ids = BTreeSet::new();
    for text in &key_texts {
        match config::load_vendor_key(&mut keys, text, base_dir) {
            Ok(kid) => {
                key_ids.insert(kid.as_str().to_owned());
            }
            Err(e) => {
                errors.vendor_keys = Some(e);
                break;
            }
        }
    }
    if errors.vendor_keys.is_none() {
        if let Err(e) = config::trust_with_builtin(keys, &config::builtin_vendor_keys()) {
            errors.vendor_keys = Some(e);
        }
    }
    if key_texts.is_empty() {
        errors.vendor_keys = Some(
            "at least one vendor key is required: the server loads only bundles signed by a \
             trusted key"
                .into(),
        );
    }
    match (nodes, listen, admin_listen, node_timeout, errors.any()) {
        (Some(nodes), Some(listen), Some(admin_listen), Some(node_timeout), false) => {
            Ok(CheckedConfig {
                nodes,
                listen,
                admin_listen,
                node_timeout,
                vendor_keys: key_texts,
                key_ids,
            })
        }
        _ => Err(Box::new(errors)),
    }
}

/// The configuration page, with the form as posted (after an error) or as in force.
pub(super) async fn config_page(
    state: &AppState,
    session: &Session,
    code: StatusCode,
    form: Option<ConfigForm>,
    errors: ConfigErrors,
) -> Response {
    let status = match status_or_page(state, session, "Configuration").await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let dash = &state.dashboard;
    let running = dash.running();
    let target = dash.config_target();
    let file = if target.exists() {
        FileConfig::load(&target).ok()
    } else {
        None
    };
    let form = form.unwrap_or_else(|| {
        let f = file.clone().unwrap_or_default();
        ConfigForm {
            nodes: f.nodes.unwrap_or_else(|| running.nodes.clone()).join("\n"),
            listen: f.listen.unwrap_or_else(|| running.listen.to_string()),
            admin_listen: f
                .admin_listen
                .unwrap_or_else(|| running.admin_listen.to_string()),
            node_timeout: f
                .node_timeout
                .unwrap_or_else(|| humantime::format_duration(running.node_timeout).to_string()),
            vendor_keys: f
                .vendor_keys
                .unwrap_or_else(|| running.vendor_keys.clone())
                .join("\n"),
        }
    });
    let flash = dash.sessions.take_flash(&session.token);
    let (running_transport, running_node_path) = running.transport_words();
    let page = ConfigPage {
        layout: Layout::new(
            "Configuration",
            "/config",
            Some(session),
            Some(&status),
            flash,
        ),
        config_file: dash.config_path().map(|p| p.display().to_string()),
        target: target.display().to_string(),
        target_exists: target.exists(),
        data_dir: dash.data_dir().display().to_string(),
        form,
        errors,
        restart_needed: dash.restart_needed(),
        running_listen: running.listen.to_string(),
        running_admin_listen: running.admin_listen.to_string(),
        running_nodes: if running.nodes.is_empty() {
            "none (air-gapped)".into()
        } else {
            running.nodes.join(", ")
        },
        running_node_timeout: humantime::format_duration(running.node_timeout).to_string(),
        running_transport,
        running_node_path,
        vendor_key_ids: running.vendor_key_ids.iter().cloned().collect(),
    };
    render(code, &page)
}

pub async fn config_post(State(state): State<AppState>, posted: Posted<ConfigPost>) -> Response {
    let Posted { session, form } = posted;
    let dash = &state.dashboard;
    let target = dash.config_target();
    let (checked, mut errors) = match check_config_form(&form, target.parent()) {
        Ok(c) => (Some(c), ConfigErrors::default()),
        Err(e) => (None, *e),
    };
    let mut file = if target.exists() {
        match FileConfig::load(&target) {
            Ok(f) => f,
            Err(e) => {
                errors.file = Some(format!(
                    "{e}. Fix or remove the file by hand; the dashboard does not overwrite a file it cannot read."
                ));
                FileConfig::default()
            }
        }
    } else {
        FileConfig::default()
    };
    let (Some(checked), false) = (checked, errors.any()) else {
        let form = ConfigForm {
            nodes: form.nodes,
            listen: form.listen,
            admin_listen: form.admin_listen,
            node_timeout: form.node_timeout,
            vendor_keys: form.vendor_keys,
        };
        return config_page(
            &state,
            &session,
            StatusCode::BAD_REQUEST,
            Some(form),
            errors,
        )
        .await;
    };
    checked.write_into(&mut file);
    let CheckedConfig {
        nodes,
        listen,
        admin_listen,
        node_timeout,
        key_ids,
        ..
    } = checked;
    if let Err(e) = file.write_atomically(&target) {
        dash.sessions.set_flash(
            &session.token,
            Flash::error(format!("{e}. Nothing was changed.")),
        );
        return Redirect::to("/config").into_response();
    }
    let running = dash.running();
    let nodes_changed = running.nodes != nodes;
    // The node list applies at once; the listeners, the timeout and the trusted keys are
    // fixed for the life of the process.
    state.server.set_nodes(nodes.clone());
    dash.set_running_nodes(nodes);
    let mut restart = BTreeSet::new();
    if running.listen != listen {
        restart.insert("listen (client lease API address)");
    }
    if running.admin_listen != admin_listen {
        restart.insert("admin_listen (admin API and dashboard address)");
    }
    if running.node_timeout != node_timeout {
        restart.insert("node_timeout");
    }
    if running.vendor_key_ids != key_ids {
        restart.insert("vendor_keys");
    }
    let restart_text = if restart.is_empty() {
        String::new()
    } else {
        format!(
            " Restart needed: {} take{} effect when the server starts again.",
            restart.iter().copied().collect::<Vec<_>>().join(", "),
            if restart.len() == 1 { "s" } else { "" }
        )
    };
    dash.set_restart_needed(restart);
    let nodes_text = if nodes_changed {
        " The node list is in force now."
    } else {
        ""
    };
    let where_text = if dash.config_path().is_some() {
        format!("Saved to {}.", target.display())
    } else {
        format!(
            "Saved to {}; `leasehold server run` reads it at its next start when given no \
             --config (flags and environment variables still win over it).",
            target.display()
        )
    };
    tracing::info!(path = %target.display(), "configuration saved from the dashboard");
    dash.sessions.set_flash(
        &session.token,
        Flash::success(format!("{where_text}{nodes_text}{restart_text}")),
    );
    Redirect::to("/config").into_response()
}
