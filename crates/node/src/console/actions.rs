//! The console's changes. Each is a form (GET), then a confirmation page that says what will
//! change and asks for a reason (the first POST, which changes nothing), then the change
//! itself (the POST with `stage=confirm` and a reason), made through the same service call
//! as the admin API: the role is checked there too, and the audit entry written with the
//! change. A role that may not make a change is refused at every step with a 403 page.
//! Every form carries the session's CSRF token ([`Posted`]).

use std::collections::HashMap;

use axum::extract::{Multipart, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::NaiveDate;
use leasehold_proto::api::staff::{
    check_reason, AccountName, AccountView, AuditAction, CreateAccount, Role, UpdateAccount,
};
use leasehold_proto::{
    Context, Feature, InstallationId, LicenseId, ServerGuid, SyncUpload, MAX_SYNC_BODY_BYTES,
    MIN_GRACE_DAYS,
};
use leasehold_web::browser::Flash;
use leasehold_web::ApiError;

use super::auth::{check_csrf, Posted, Signed};
use super::views::*;
use crate::api::{
    GrantLicense, InstallationView, LicenseView, ServerView, TransferLicense, UpdateServer,
};
use crate::domain::audit::Change;
use crate::http::NodeState;
use crate::service::{ConsoleSession, MIN_SYNC_INTERVAL_SECS};

/// A form's field errors, by field name.
type Errors = Vec<(&'static str, String)>;

/// What an action's form shows.
struct Spec {
    heading: String,
    intro: String,
    facts: Vec<Fact>,
    fields: Vec<Field>,
    action: String,
    cancel: String,
    submit: &'static str,
    multipart: bool,
}

impl Spec {
    fn new(heading: impl Into<String>, action: String, cancel: String) -> Self {
        Self {
            heading: heading.into(),
            intro: String::new(),
            facts: Vec::new(),
            fields: Vec::new(),
            action,
            cancel,
            submit: "Review",
            multipart: false,
        }
    }

    fn intro(mut self, text: impl Into<String>) -> Self {
        self.intro = text.into();
        self
    }

    fn facts(mut self, facts: Vec<Fact>) -> Self {
        self.facts = facts;
        self
    }

    fn fields(mut self, fields: Vec<Field>) -> Self {
        self.fields = fields;
        self
    }

    /// The form, with `errors` next to their fields and `error` above them.
    fn page(
        mut self,
        session: &ConsoleSession,
        status: StatusCode,
        errors: &Errors,
        error: Option<String>,
    ) -> Response {
        for f in &mut self.fields {
            f.error = errors
                .iter()
                .find(|(name, _)| *name == f.name)
                .map(|(_, e)| e.clone());
        }
        render(
            status,
            &ActionPage {
                layout: Layout::new(&self.heading, "", session),
                heading: self.heading,
                intro: self.intro,
                facts: self.facts,
                fields: self.fields,
                action: self.action,
                submit: self.submit.into(),
                cancel: self.cancel,
                multipart: self.multipart,
                error,
            },
        )
    }
}

/// What the confirmation page says will change.
struct Plan {
    lines: Vec<Fact>,
    warning: Option<String>,
    danger: bool,
    confirm: String,
}

impl Plan {
    fn new(confirm: impl Into<String>, lines: Vec<Fact>) -> Self {
        Self {
            lines,
            warning: None,
            danger: false,
            confirm: confirm.into(),
        }
    }

    fn warning(mut self, text: impl Into<String>) -> Self {
        self.warning = Some(text.into());
        self
    }

    fn danger(mut self) -> Self {
        self.danger = true;
        self
    }
}

/// The reason of a confirmed change, or the confirmation page (first time round, or when
/// the reason is missing or malformed).
// The error is the page to answer with; handlers return it at once.
#[allow(clippy::result_large_err)]
fn confirmed(posted: &Posted, spec: &Spec, plan: Plan) -> Result<String, Response> {
    let stage_confirm = posted.field("stage") == "confirm";
    let reason_text = posted.form.get("reason").cloned().unwrap_or_default();
    let reason_error = if !stage_confirm {
        None
    } else {
        match check_reason(&reason_text) {
            Ok(r) if r.is_empty() => Some(
                "Give a reason: it goes into the audit log with the change (a ticket number, what the customer asked for).".to_string(),
            ),
            Ok(r) => return Ok(r),
            Err(e) => Some(format!("{e}.")),
        }
    };
    let hidden = spec
        .fields
        .iter()
        .filter(|f| f.kind != "file")
        .map(|f| Fact::new(f.name, posted.field(f.name)))
        .collect();
    let status = if reason_error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Err(render(
        status,
        &ConfirmPage {
            layout: Layout::new(&spec.heading, "", &posted.session),
            heading: spec.heading.clone(),
            lines: plan.lines,
            warning: plan.warning,
            hidden,
            action: spec.action.clone(),
            confirm: plan.confirm,
            cancel: spec.cancel.clone(),
            reason: reason_text,
            reason_error,
            danger: plan.danger,
        },
    ))
}

/// A 403 page when the session's role may not make `action`; nothing changed.
// The error is the page to answer with; handlers return it at once.
#[allow(clippy::result_large_err)]
fn allowed(session: &ConsoleSession, action: AuditAction, back: &str) -> Result<(), Response> {
    session.actor.require(action).map_err(|e| {
        let e = ApiError::from(e);
        message_page(
            StatusCode::FORBIDDEN,
            Some(session),
            "Not allowed (403)",
            &e.message,
            back,
        )
    })
}

/// After a change: a flash message for the next page, and there.
async fn done(state: &NodeState, session: &ConsoleSession, flash: Flash, to: &str) -> Response {
    if let Err(e) = state.node.set_flash(session, &flash.encode()).await {
        tracing::warn!(error = %e.message, "could not leave a flash message");
    }
    Redirect::to(to).into_response()
}

/// A failed change: the form again with the service's words; nothing changed.
fn refused(spec: Spec, session: &ConsoleSession, e: &ApiError) -> Response {
    let status = if e.status().is_server_error() {
        e.status()
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    spec.page(session, status, &Vec::new(), Some(e.message.clone()))
}

fn parse_guid(text: &str) -> Result<ServerGuid, ApiError> {
    ServerGuid::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The server of the path, if the session's role may make `action` on it (else the page
/// saying why not).
async fn load_server(
    state: &NodeState,
    session: &ConsoleSession,
    guid: &str,
    action: AuditAction,
) -> Result<ServerView, Response> {
    let r = async { state.node.server(parse_guid(guid)?).await }.await;
    let v = r.map_err(|e| error_page(session, &e, "/console"))?;
    allowed(session, action, &server_link(v.guid))?;
    Ok(v)
}

/// The license of the path and its server, if it is not revoked and the session's role may
/// make `action` on it.
async fn load_license(
    state: &NodeState,
    session: &ConsoleSession,
    id: &str,
    action: AuditAction,
) -> Result<(LicenseView, ServerView), Response> {
    let r = async {
        let id = LicenseId::parse(id).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let license = state.node.license(&id).await?;
        if license.revoked_at.is_some() {
            return Err(ApiError::bad_request(format!(
                "license {id} is revoked; nothing can be changed on it"
            )));
        }
        let server = state.node.server(license.server).await?;
        Ok((license, server))
    }
    .await;
    let (license, server) = r.map_err(|e| error_page(session, &e, "/console"))?;
    allowed(
        session,
        action,
        &format!("/console/licenses/{}", license.license.id),
    )?;
    Ok((license, server))
}

/// The installation of the path, if the session's role may make `action` on it.
async fn load_installation(
    state: &NodeState,
    session: &ConsoleSession,
    id: &str,
    action: AuditAction,
) -> Result<InstallationView, Response> {
    let r = async {
        let id = InstallationId::parse(id).map_err(|e| ApiError::bad_request(e.to_string()))?;
        state.node.installation(&id).await
    }
    .await;
    let i = r.map_err(|e| error_page(session, &e, "/console/installations"))?;
    allowed(session, action, &format!("/console/installations/{}", i.id))?;
    Ok(i)
}

fn empty() -> HashMap<String, String> {
    HashMap::new()
}

fn value<'a>(values: &'a HashMap<String, String>, name: &str, default: &'a str) -> &'a str {
    values.get(name).map_or(default, |v| v.trim())
}

// --- New installation (admin) ---

fn create_installation_spec(values: &HashMap<String, String>) -> Spec {
    Spec::new(
        "New installation",
        "/console/installations/new".into(),
        "/console/installations".into(),
    )
    .intro("An installation is one customer site: one production or development server and any number of backups. Add its servers next.")
    .fields(vec![Field::new("name", "Customer and site", "text", value(values, "name", ""))
        .help("A name people search for, e.g. “Acme call centre, Berlin”.")])
}

pub async fn create_installation_get(Signed(session): Signed) -> Response {
    if let Err(r) = allowed(
        &session,
        AuditAction::InstallationCreate,
        "/console/installations",
    ) {
        return r;
    }
    create_installation_spec(&empty()).page(&session, StatusCode::OK, &Vec::new(), None)
}

pub async fn create_installation_post(State(state): State<NodeState>, posted: Posted) -> Response {
    let s = &posted.session;
    if let Err(r) = allowed(s, AuditAction::InstallationCreate, "/console/installations") {
        return r;
    }
    let spec = create_installation_spec(&posted.form);
    let name = posted.field("name");
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        let errors = vec![(
            "name",
            "Give a name of 1 to 200 printable characters.".into(),
        )];
        return spec.page(s, StatusCode::BAD_REQUEST, &errors, None);
    }
    let plan = Plan::new("Create installation", vec![Fact::new("Name", name)]);
    let reason = match confirmed(&posted, &spec, plan) {
        Ok(r) => r,
        Err(page) => return page,
    };
    match state
        .node
        .create_installation(Change::new(&s.actor, &reason), name)
        .await
    {
        Ok(i) => {
            let to = format!("/console/installations/{}", i.id);
            done(
                &state,
                s,
                Flash::success(format!(
                    "Installation “{}” created ({}). Add its servers next.",
                    i.name, i.id
                )),
                &to,
            )
            .await
        }
        Err(e) => refused(spec, s, &e),
    }
}

// --- Add a server (support) ---

fn add_server_spec(i: &InstallationView, values: &HashMap<String, String>) -> Spec {
    let has_primary = i.servers.iter().any(|s| s.context.is_primary());
    let default = if has_primary { "backup" } else { "production" };
    let current = value(values, "context", default);
    let choices = Context::ALL
        .iter()
        .map(|c| Choice::new(c.as_str(), c.as_str(), current))
        .collect();
    Spec::new(
        format!("Add a server to {}", i.name),
        format!("/console/installations/{}/servers/new", i.id),
        format!("/console/installations/{}", i.id),
    )
    .intro("The node picks the new server's GUID; give it to the customer, who sets it on the server (its dashboard's Setup page, or `leasehold server set-guid`).")
    .facts(vec![
        Fact::new("Installation", format!("{} ({})", i.name, i.id)),
        Fact::new(
            "Servers now",
            if i.servers.is_empty() {
                "none".to_string()
            } else {
                i.servers
                    .iter()
                    .map(|s| format!("{} {}", s.context, s.guid))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
    ])
    .fields(vec![Field::new("context", "Context", "select", current)
        .choices(choices)
        .help("An installation has one production or one development server, and any number of backups.")])
}

pub async fn add_server_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Path(id): Path<String>,
) -> Response {
    let i = match load_installation(&state, &session, &id, AuditAction::ServerAdd).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    add_server_spec(&i, &empty()).page(&session, StatusCode::OK, &Vec::new(), None)
}

pub async fn add_server_post(
    State(state): State<NodeState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let s = &posted.session;
    let i = match load_installation(&state, s, &id, AuditAction::ServerAdd).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let spec = add_server_spec(&i, &posted.form);
    let context: Context = match posted.field("context").parse() {
        Ok(c) => c,
        Err(e) => {
            return spec.page(
                s,
                StatusCode::BAD_REQUEST,
                &vec![("context", e.to_string())],
                None,
            )
        }
    };
    let plan = Plan::new(
        "Add server",
        vec![
            Fact::new("Installation", format!("{} ({})", i.name, i.id)),
            Fact::new("New server's context", context.as_str()),
        ],
    );
    let reason = match confirmed(&posted, &spec, plan) {
        Ok(r) => r,
        Err(page) => return page,
    };
    match state
        .node
        .add_server(Change::new(&s.actor, &reason), &i.id, context)
        .await
    {
        Ok(v) => {
            let flash = Flash::success(format!(
                "{} server {} added to {}: give this GUID to the customer.",
                v.context, v.guid, i.name
            ));
            done(&state, s, flash, &server_link(v.guid)).await
        }
        Err(e) => refused(spec, s, &e),
    }
}

// --- Reassign a GUID (support) ---

fn reassign_spec(v: &ServerView, row: &ServerRow) -> Spec {
    let seg = v.guid.bare();
    let mut spec = Spec::new(
        format!("Reassign GUID {}", v.guid),
        format!("/console/servers/{seg}/reassign"),
        server_link(v.guid),
    )
    .intro("Frees the GUID from the instance it is bound to: the next license server that syncs with it takes it (a rebuilt machine, a restored backup, or the one copy the customer keeps after a clone). The other copies are refused from then on.")
    .facts(vec![
        Fact::new("Context", v.context.as_str()),
        Fact::new("Bound instance", row.instance.clone()),
        Fact::new("Last sync", row.last_sync.clone()),
    ]);
    if let Some(f) = &row.fork_alert {
        spec.facts.push(Fact::new("Alert", f.clone()));
    }
    spec
}

pub async fn reassign_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Response {
    let v = match load_server(&state, &session, &guid, AuditAction::ServerReassign).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let row = ServerRow::of(&v, state.node.now());
    reassign_spec(&v, &row).page(&session, StatusCode::OK, &Vec::new(), None)
}

pub async fn reassign_post(
    State(state): State<NodeState>,
    Path(guid): Path<String>,
    posted: Posted,
) -> Response {
    let s = &posted.session;
    let v = match load_server(&state, s, &guid, AuditAction::ServerReassign).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let row = ServerRow::of(&v, state.node.now());
    let spec = reassign_spec(&v, &row);
    let plan = Plan::new(
        "Reassign GUID",
        vec![
            Fact::new("Server", v.guid.to_string()),
            Fact::new("Unbind instance", row.instance.clone()),
            Fact::new("Then", "the next server that syncs with this GUID takes it"),
        ],
    )
    .warning("Whichever copy of the server syncs first takes the GUID; every other copy is refused from then on. The customer's server keeps serving its licenses meanwhile (its grace period runs).")
    .danger();
    let reason = match confirmed(&posted, &spec, plan) {
        Ok(r) => r,
        Err(page) => return page,
    };
    match state
        .node
        .reassign_server(Change::new(&s.actor, &reason), v.guid)
        .await
    {
        Ok(_) => {
            tracing::info!(guid = %v.guid, by = %s.actor.name, "server GUID reassigned in the console");
            let flash = Flash::success(format!(
                "GUID {} reassigned: the next server that syncs with it takes it.",
                v.guid
            ));
            done(&state, s, flash, &server_link(v.guid)).await
        }
        Err(e) => refused(spec, s, &e),
    }
}

// --- Grace and sync interval (admin) ---

fn settings_spec(v: &ServerView, values: &HashMap<String, String>) -> Spec {
    let seg = v.guid.bare();
    let grace = v.grace_days.to_string();
    let interval = humantime::format_duration(std::time::Duration::from_secs(v.sync_interval_secs))
        .to_string();
    Spec::new(
        format!("Grace and sync interval of {}", v.guid),
        format!("/console/servers/{seg}/settings"),
        server_link(v.guid),
    )
    .intro("Sent to the server with its next bundle. The interval must stay at most half the grace period, so a missed sync can be retried before licenses lapse.")
    .fields(vec![
        Field::new("grace_days", "Grace period (days without contact)", "number", value(values, "grace_days", &grace))
            .help(format!("At least {MIN_GRACE_DAYS}, at most 3650.")),
        Field::new("sync_interval", "Sync interval", "text", value(values, "sync_interval", &interval))
            .help("How often the server syncs, e.g. 24h, 6h 30m, 1day; at least one minute."),
    ])
}

fn check_settings(values: &Posted) -> Result<UpdateServer, Errors> {
    let mut errors = Vec::new();
    let grace = match values.field("grace_days").parse::<u32>() {
        Ok(d) if (MIN_GRACE_DAYS..=3650).contains(&d) => Some(d),
        _ => {
            errors.push((
                "grace_days",
                format!("Give a whole number of days from {MIN_GRACE_DAYS} to 3650."),
            ));
            None
        }
    };
    let interval = match humantime::parse_duration(values.field("sync_interval")) {
        Ok(d) if d.as_secs() >= MIN_SYNC_INTERVAL_SECS => Some(d.as_secs()),
        Ok(_) => {
            errors.push((
                "sync_interval",
                "The interval must be at least one minute.".into(),
            ));
            None
        }
        Err(e) => {
            errors.push((
                "sync_interval",
                format!("Not a duration like 24h or 6h 30m: {e}."),
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(UpdateServer {
        grace_days: grace,
        sync_interval_secs: interval,
    })
}

pub async fn settings_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Response {
    let v = match load_server(&state, &session, &guid, AuditAction::ServerUpdate).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    settings_spec(&v, &empty()).page(&session, StatusCode::OK, &Vec::new(), None)
}

pub async fn settings_post(
    State(state): State<NodeState>,
    Path(guid): Path<String>,
    posted: Posted,
) -> Response {
    let s = &posted.session;
    let v = match load_server(&state, s, &guid, AuditAction::ServerUpdate).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let spec = settings_spec(&v, &posted.form);
    let update = match check_settings(&posted) {
        Ok(u) => u,
        Err(errors) => return spec.page(s, StatusCode::BAD_REQUEST, &errors, None),
    };
    let secs = |s: u64| humantime::format_duration(std::time::Duration::from_secs(s)).to_string();
    let plan = Plan::new(
        "Change settings",
        vec![
            Fact::new("Server", v.guid.to_string()),
            Fact::new(
                "Grace period",
                format!(
                    "{} → {} days",
                    v.grace_days,
                    update.grace_days.unwrap_or(v.grace_days)
                ),
            ),
            Fact::new(
                "Sync interval",
                format!(
                    "{} → {}",
                    secs(v.sync_interval_secs),
                    secs(update.sync_interval_secs.unwrap_or(v.sync_interval_secs))
                ),
            ),
        ],
    );
    let reason = match confirmed(&posted, &spec, plan) {
        Ok(r) => r,
        Err(page) => return page,
    };
    match state
        .node
        .update_server(Change::new(&s.actor, &reason), v.guid, &update)
        .await
    {
        Ok(_) => {
            let flash = Flash::success(format!(
                "Grace and sync interval of {} changed; the server learns them at its next sync.",
                v.guid
            ));
            done(&state, s, flash, &server_link(v.guid)).await
        }
        Err(e) => refused(spec, s, &e),
    }
}

// --- Grant a license (admin) ---

struct GrantTarget {
    server: ServerView,
    /// The installation's primary licenses a backup license may parallel.
    primaries: Vec<(LicenseView, String)>,
    /// Features the installation holds already.
    features: Vec<String>,
}

async fn load_grant_target(
    state: &NodeState,
    session: &ConsoleSession,
    guid: &str,
) -> Result<GrantTarget, Response> {
    let server = load_server(state, session, guid, AuditAction::LicenseGrant).await?;
    let r = async {
        let installation = state.node.installation(&server.installation).await?;
        let mut primaries = Vec::new();
        let mut features = Vec::new();
        for s in &installation.servers {
            let v = state.node.server(s.guid).await?;
            for l in &v.licenses {
                features.push(l.feature.to_string());
                if v.context.is_primary() {
                    let label = format!("{} × {} on {} ({})", l.feature, l.count, v.guid, l.id);
                    primaries.push((
                        LicenseView {
                            license: l.clone(),
                            server: v.guid,
                            revoked_at: None,
                        },
                        label,
                    ));
                }
            }
        }
        features.sort();
        features.dedup();
        Ok::<_, ApiError>((primaries, features))
    }
    .await;
    let (primaries, features) =
        r.map_err(|e| error_page(session, &e, &server_link(server.guid)))?;
    Ok(GrantTarget {
        server,
        primaries,
        features,
    })
}

fn grant_spec(t: &GrantTarget, values: &HashMap<String, String>, today: NaiveDate) -> Spec {
    let v = &t.server;
    let seg = v.guid.bare();
    let default_maintenance = (today + chrono::Duration::days(365)).to_string();
    let mut fields = vec![
        Field::new("feature", "Feature", "text", value(values, "feature", ""))
            .help("e.g. asr.en-US or tts: letters, digits, '.', '-' and '_'.")
            .suggestions(
                t.features
                    .iter()
                    .map(|f| Choice::new(f.clone(), f.clone(), ""))
                    .collect(),
            ),
        Field::new(
            "count",
            "Concurrent uses",
            "number",
            value(values, "count", ""),
        ),
        Field::new(
            "maintenance_until",
            "Maintenance until",
            "date",
            value(values, "maintenance_until", &default_maintenance),
        )
        .help("The last release date the license covers."),
        Field::new("expires", "Expires", "date", value(values, "expires", ""))
            .optional()
            .help("The last day the license may be used; empty for a perpetual license."),
    ];
    if v.context == Context::Backup {
        let current = value(values, "backs_up", "");
        let mut choices = vec![Choice::new(
            "",
            "— choose the production license —",
            current,
        )];
        choices.extend(
            t.primaries
                .iter()
                .map(|(l, label)| Choice::new(l.license.id.to_string(), label.clone(), current)),
        );
        fields.push(
            Field::new("backs_up", "Backs up", "select", current)
                .choices(choices)
                .help("A backup license parallels a production license of the installation and is served only to clients in failover."),
        );
    }
    Spec::new(
        format!("Grant a license to {}", v.guid),
        format!("/console/servers/{seg}/grant"),
        server_link(v.guid),
    )
    .intro(format!(
        "The license's context is the server's ({}); the server receives it at its next sync.",
        v.context
    ))
    .fields(fields)
}

fn check_grant(t: &GrantTarget, p: &Posted) -> Result<GrantLicense, Errors> {
    let mut errors = Vec::new();
    let feature = Feature::parse(p.field("feature"))
        .map_err(|e| errors.push(("feature", format!("{e}."))))
        .ok();
    let count = match p.field("count").parse::<u32>() {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            errors.push(("count", "Give a whole number, at least 1.".into()));
            None
        }
    };
    let date = |name: &'static str, errors: &mut Errors| -> Option<Option<NaiveDate>> {
        let t = p.field(name);
        if t.is_empty() {
            return Some(None);
        }
        match NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            Ok(d) => Some(Some(d)),
            Err(_) => {
                errors.push((name, format!("{t:?} is not a date as YYYY-MM-DD.")));
                None
            }
        }
    };
    let maintenance = match date("maintenance_until", &mut errors) {
        Some(Some(d)) => Some(d),
        Some(None) => {
            errors.push(("maintenance_until", "Give the maintenance date.".into()));
            None
        }
        None => None,
    };
    let expires = date("expires", &mut errors).flatten();
    let backs_up = if t.server.context == Context::Backup {
        match LicenseId::parse(p.field("backs_up")) {
            Ok(id) => Some(id),
            Err(_) => {
                errors.push((
                    "backs_up",
                    "Choose the production license this backup license parallels.".into(),
                ));
                None
            }
        }
    } else {
        None
    };
    match (feature, count, maintenance) {
        (Some(feature), Some(count), Some(maintenance_until)) if errors.is_empty() => {
            Ok(GrantLicense {
                server: t.server.guid,
                feature,
                count,
                context: None,
                maintenance_until,
                expires,
                backs_up,
            })
        }
        _ => Err(errors),
    }
}

pub async fn grant_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Response {
    let t = match load_grant_target(&state, &session, &guid).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let today = state.node.now().date_naive();
    grant_spec(&t, &empty(), today).page(&session, StatusCode::OK, &Vec::new(), None)
}

pub async fn grant_post(
    State(state): State<NodeState>,
    Path(guid): Path<String>,
    posted: Posted,
) -> Response {
    let s = &posted.session;
    let t = match load_grant_target(&state, s, &guid).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let today = state.node.now().date_naive();
    let spec = grant_spec(&t, &posted.form, today);
    let grant = match check_grant(&t, &posted) {
        Ok(g) => g,
        Err(errors) => return spec.page(s, StatusCode::BAD_REQUEST, &errors, None),
    };
    let mut lines = vec![
        Fact::new(
            "Server",
            format!("{} ({})", t.server.guid, t.server.context),
        ),
        Fact::new("Feature", grant.feature.to_string()),
        Fact::new("Concurrent uses", grant.count.to_string()),
        Fact::new("Maintenance until", grant.maintenance_until.to_string()),
        Fact::new(
            "Expires",
            grant
                .expires
                .map_or_else(|| "never (perpetual)".into(), |d| d.to_string()),
        ),
    ];
    if let Some(b) = &grant.backs_up {
        lines.push(Fact::new("Backs up", b.to_string()));
    }
    let plan = Plan::new("Grant license", lines);
    let reason = match confirmed(&posted, &spec, plan) {
        Ok(r) => r,
        Err(page) => return page,
    };
    match state
        .node
        .grant_license(Change::new(&s.actor, &reason), &grant)
        .await
    {
        Ok(l) => {
            let flash = Flash::success(format!(
                "License {} granted: {} × {} on {}.",
                l.license.id, l.license.feature, l.license.count, l.server
            ));
            done(&state, s, flash, &server_link(l.server)).await
        }
        Err(e) => refused(spec, s, &e),
    }
}

// --- Transfer a license (admin) ---

async fn transfer_spec(
    state: &NodeState,
    license: &LicenseView,
    server: &ServerView,
    values: &HashMap<String, String>,
) -> Spec {
    let mut suggestions = Vec::new();
    if let Ok(i) = state.node.installation(&server.installation).await {
        suggestions = i
            .servers
            .iter()
            .filter(|s| s.context == license.license.context && s.guid != server.guid)
            .map(|s| {
                Choice::new(
                    s.guid.to_string(),
                    format!("{} of this installation", s.context),
                    "",
                )
            })
            .collect();
    }
    let l = &license.license;
    Spec::new(
        format!("Transfer license {}", l.id),
        format!("/console/licenses/{}/transfer", l.id),
        format!("/console/licenses/{}", l.id),
    )
    .intro(format!(
        "Moves the license to another {} server: the server it is on drops it at its next sync, the other receives it at its own.",
        l.context
    ))
    .facts(vec![
        Fact::new("License", format!("{} × {}", l.feature, l.count)),
        Fact::new("Now on", format!("{} ({})", license.server, server.context)),
    ])
    .fields(vec![Field::new("to", "To server (GUID)", "text", value(values, "to", ""))
        .suggestions(suggestions)
        .help("Any server of the same context, of this installation or another.")])
}

pub async fn transfer_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Path(id): Path<String>,
) -> Response {
    let (license, server) =
        match load_license(&state, &session, &id, AuditAction::LicenseTransfer).await {
            Ok(v) => v,
            Err(r) => return r,
        };
    transfer_spec(&state, &license, &server, &empty())
        .await
        .page(&session, StatusCode::OK, &Vec::new(), None)
}

pub async fn transfer_post(
    State(state): State<NodeState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let s = &posted.session;
    let (license, server) = match load_license(&state, s, &id, AuditAction::LicenseTransfer).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let spec = transfer_spec(&state, &license, &server, &posted.form).await;
    let to = match ServerGuid::parse(posted.field("to")) {
        Ok(g) if g == license.server => {
            let errors = vec![("to", "The license is on this server already.".into())];
            return spec.page(s, StatusCode::BAD_REQUEST, &errors, None);
        }
        Ok(g) => g,
        Err(e) => {
            return spec.page(
                s,
                StatusCode::BAD_REQUEST,
                &vec![("to", format!("{e}."))],
                None,
            )
        }
    };
    let target = match state.node.server(to).await {
        Ok(t) => t,
        Err(e) => return spec.page(s, StatusCode::BAD_REQUEST, &vec![("to", e.message)], None),
    };
    let target_installation = state
        .node
        .installation(&target.installation)
        .await
        .map(|i| format!("{} ({})", i.name, i.id))
        .unwrap_or_else(|_| target.installation.to_string());
    let l = &license.license;
    let mut plan = Plan::new(
        "Transfer license",
        vec![
            Fact::new("License", format!("{} ({} × {})", l.id, l.feature, l.count)),
            Fact::new("From", format!("{} ({})", license.server, server.context)),
            Fact::new(
                "To",
                format!(
                    "{} ({}, {})",
                    target.guid, target.context, target_installation
                ),
            ),
        ],
    );
    if target.installation != server.installation {
        plan = plan.warning(
            "The target server is in another installation: the license leaves this customer site.",
        );
    }
    let reason = match confirmed(&posted, &spec, plan) {
        Ok(r) => r,
        Err(page) => return page,
    };
    let req = TransferLicense {
        to,
        from: Some(license.server),
    };
    match state
        .node
        .transfer_license(Change::new(&s.actor, &reason), &l.id, &req)
        .await
    {
        Ok(moved) => {
            let flash = Flash::success(format!(
                "License {} ({} × {}) transferred from {} to {}.",
                l.id, l.feature, l.count, license.server, moved.server
            ));
            done(&state, s, flash, &format!("/console/licenses/{}", l.id)).await
        }
        Err(e) => refused(spec, s, &e),
    }
}

// --- Revoke a license (admin) ---

fn revoke_spec(license: &LicenseView, server: &ServerView) -> Spec {
    let l = &license.license;
    Spec::new(
        format!("Revoke license {}", l.id),
        format!("/console/licenses/{}/revoke", l.id),
        format!("/console/licenses/{}", l.id),
    )
    .intro("The server drops the license at its next sync. A revoked license is not restored: grant a new one instead.")
    .facts(vec![
        Fact::new("License", format!("{} × {}", l.feature, l.count)),
        Fact::new("On", format!("{} ({})", license.server, server.context)),
    ])
}

pub async fn revoke_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Path(id): Path<String>,
) -> Response {
    let (license, server) =
        match load_license(&state, &session, &id, AuditAction::LicenseRevoke).await {
            Ok(v) => v,
            Err(r) => return r,
        };
    revoke_spec(&license, &server).page(&session, StatusCode::OK, &Vec::new(), None)
}

pub async fn revoke_post(
    State(state): State<NodeState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let s = &posted.session;
    let (license, server) = match load_license(&state, s, &id, AuditAction::LicenseRevoke).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let l = &license.license;
    let back = format!("/console/licenses/{}", l.id);
    let spec = revoke_spec(&license, &server);
    let plan = Plan::new(
        "Revoke license",
        vec![
            Fact::new("License", format!("{} ({} × {})", l.id, l.feature, l.count)),
            Fact::new("On", license.server.to_string()),
        ],
    )
    .warning("Clients of the server lose these licenses at its next sync.")
    .danger();
    let reason = match confirmed(&posted, &spec, plan) {
        Ok(r) => r,
        Err(page) => return page,
    };
    match state
        .node
        .revoke_license(Change::new(&s.actor, &reason), &l.id)
        .await
    {
        Ok(_) => {
            let flash = Flash::success(format!("License {} revoked.", l.id));
            done(&state, s, flash, &back).await
        }
        Err(e) => refused(spec, s, &e),
    }
}

// --- Maintenance (admin) ---

fn maintenance_spec(license: &LicenseView, values: &HashMap<String, String>) -> Spec {
    let l = &license.license;
    Spec::new(
        format!("Maintenance of license {}", l.id),
        format!("/console/licenses/{}/maintenance", l.id),
        format!("/console/licenses/{}", l.id),
    )
    .intro("The last release date the license covers: a client of a newer release is refused this license.")
    .facts(vec![
        Fact::new("License", format!("{} × {}", l.feature, l.count)),
        Fact::new("Maintenance until now", l.maintenance_until.to_string()),
    ])
    .fields(vec![Field::new(
        "until",
        "Maintenance until",
        "date",
        value(values, "until", &l.maintenance_until.to_string()),
    )])
}

pub async fn maintenance_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Path(id): Path<String>,
) -> Response {
    let (license, _) =
        match load_license(&state, &session, &id, AuditAction::LicenseSetMaintenance).await {
            Ok(v) => v,
            Err(r) => return r,
        };
    maintenance_spec(&license, &empty()).page(&session, StatusCode::OK, &Vec::new(), None)
}

pub async fn maintenance_post(
    State(state): State<NodeState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let s = &posted.session;
    let (license, _) = match load_license(&state, s, &id, AuditAction::LicenseSetMaintenance).await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let l = &license.license;
    let back = format!("/console/licenses/{}", l.id);
    let spec = maintenance_spec(&license, &posted.form);
    let until = match NaiveDate::parse_from_str(posted.field("until"), "%Y-%m-%d") {
        Ok(d) => d,
        Err(_) => {
            let errors = vec![("until", "Give a date as YYYY-MM-DD.".into())];
            return spec.page(s, StatusCode::BAD_REQUEST, &errors, None);
        }
    };
    let plan = Plan::new(
        "Change maintenance",
        vec![
            Fact::new("License", format!("{} ({} × {})", l.id, l.feature, l.count)),
            Fact::new(
                "Maintenance until",
                format!("{} → {until}", l.maintenance_until),
            ),
        ],
    );
    let reason = match confirmed(&posted, &spec, plan) {
        Ok(r) => r,
        Err(page) => return page,
    };
    match state
        .node
        .set_maintenance(Change::new(&s.actor, &reason), &l.id, until)
        .await
    {
        Ok(_) => {
            let flash = Flash::success(format!("Maintenance of {} now runs until {until}.", l.id));
            done(&state, s, flash, &back).await
        }
        Err(e) => refused(spec, s, &e),
    }
}

// --- Accounts (admin) ---

// A strong password for a new account or a reset, shown once.
use leasehold_web::browser::generated_password;

fn role_choices(current: &str) -> Vec<Choice> {
    vec![
        Choice::new(
            "support",
            "support: reads everything, adds servers, reassigns GUIDs",
            current,
        ),
        Choice::new(
            "admin",
            "admin: also licenses, settings and accounts",
            current,
        ),
    ]
}

fn create_account_spec(values: &HashMap<String, String>) -> Spec {
    Spec::new(
        "New account",
        "/console/accounts/new".into(),
        "/console/accounts".into(),
    )
    .intro("A named account for one person. The console makes its first password and shows it once; give it to the person, who changes it under My account.")
    .fields(vec![
        Field::new("name", "Account name", "text", value(values, "name", ""))
            .help("1 to 64 of a-z, 0-9, '.', '-', '_' and '@', e.g. their e-mail address."),
        Field::new("role", "Role", "select", value(values, "role", "support"))
            .choices(role_choices(value(values, "role", "support"))),
    ])
}

fn secret_page(
    session: &ConsoleSession,
    heading: &str,
    message: String,
    secret: String,
    back: &str,
) -> Response {
    let mut layout = Layout::new(heading, "/console/accounts", session);
    layout.flash = None;
    render(
        StatusCode::OK,
        &DonePage {
            layout,
            heading: heading.into(),
            message,
            secret_label: "Password".into(),
            secret,
            note: "The console does not keep it: copy it now and give it to the person in a safe way. They change it under My account.".into(),
            back: back.into(),
            back_label: "Back to accounts".into(),
        },
    )
}

pub async fn create_account_get(Signed(session): Signed) -> Response {
    if let Err(r) = allowed(&session, AuditAction::AccountCreate, "/console/accounts") {
        return r;
    }
    create_account_spec(&empty()).page(&session, StatusCode::OK, &Vec::new(), None)
}

pub async fn create_account_post(State(state): State<NodeState>, posted: Posted) -> Response {
    let s = &posted.session;
    if let Err(r) = allowed(s, AuditAction::AccountCreate, "/console/accounts") {
        return r;
    }
    let spec = create_account_spec(&posted.form);
    let mut errors = Vec::new();
    let name = AccountName::parse(posted.field("name"))
        .map_err(|e| errors.push(("name", format!("{e}."))))
        .ok();
    let role = posted
        .field("role")
        .parse::<Role>()
        .map_err(|e| errors.push(("role", format!("{e}."))))
        .ok();
    let (Some(name), Some(role)) = (name, role) else {
        return spec.page(s, StatusCode::BAD_REQUEST, &errors, None);
    };
    let plan = Plan::new(
        "Create account",
        vec![
            Fact::new("Name", name.as_str()),
            Fact::new("Role", role.as_str()),
            Fact::new("Password", "made now and shown once"),
        ],
    );
    let reason = match confirmed(&posted, &spec, plan) {
        Ok(r) => r,
        Err(page) => return page,
    };
    let password = generated_password();
    let req = CreateAccount {
        name: name.clone(),
        role,
        password: password.clone(),
    };
    match state
        .node
        .create_account(Change::new(&s.actor, &reason), &req)
        .await
    {
        Ok(a) => secret_page(
            s,
            "Account created",
            format!(
                "{} ({}) can sign in now with this password.",
                a.name, a.role
            ),
            password,
            "/console/accounts",
        ),
        Err(e) => refused(spec, s, &e),
    }
}

async fn load_account(
    state: &NodeState,
    session: &ConsoleSession,
    name: &str,
) -> Result<AccountView, Response> {
    let r = async {
        let name = AccountName::parse(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
        state.node.account(&name).await
    }
    .await;
    r.map_err(|e| error_page(session, &e, "/console/accounts"))
}

fn edit_account_spec(a: &AccountView, values: &HashMap<String, String>) -> Spec {
    let role = value(values, "role", a.role.as_str());
    let status_now = if a.disabled { "disabled" } else { "enabled" };
    let status = value(values, "status", status_now);
    let reset = value(values, "reset_password", "no");
    Spec::new(
        format!("Account {}", a.name),
        format!("/console/accounts/{}/edit", a.name),
        "/console/accounts".into(),
    )
    .intro("Disabling an account ends its sessions and revokes its API tokens at once. An admin cannot disable itself, and the node always keeps one enabled admin.")
    .facts(vec![
        Fact::new("Created", format!("{} by {}", time(Some(a.created_at), ""), a.created_by)),
        Fact::new("Last sign-in", time(a.last_sign_in, "never")),
    ])
    .fields(vec![
        Field::new("role", "Role", "select", role).choices(role_choices(role)),
        Field::new("status", "Status", "select", status).choices(vec![
            Choice::new("enabled", "enabled: may sign in", status),
            Choice::new("disabled", "disabled: may not sign in, tokens revoked", status),
        ]),
        Field::new("reset_password", "Password", "select", reset).choices(vec![
            Choice::new("no", "keep it", reset),
            Choice::new("yes", "make a new one (shown once; their sessions end)", reset),
        ]),
    ])
}

pub async fn edit_account_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = allowed(&session, AuditAction::AccountUpdate, "/console/accounts") {
        return r;
    }
    let a = match load_account(&state, &session, &name).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    edit_account_spec(&a, &empty()).page(&session, StatusCode::OK, &Vec::new(), None)
}

pub async fn edit_account_post(
    State(state): State<NodeState>,
    Path(name): Path<String>,
    posted: Posted,
) -> Response {
    let s = &posted.session;
    if let Err(r) = allowed(s, AuditAction::AccountUpdate, "/console/accounts") {
        return r;
    }
    let a = match load_account(&state, s, &name).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let spec = edit_account_spec(&a, &posted.form);
    let mut errors = Vec::new();
    let role = posted
        .field("role")
        .parse::<Role>()
        .map_err(|e| errors.push(("role", format!("{e}."))))
        .ok();
    let disabled = match posted.field("status") {
        "enabled" => Some(false),
        "disabled" => Some(true),
        _ => {
            errors.push(("status", "Choose enabled or disabled.".into()));
            None
        }
    };
    let reset = posted.field("reset_password") == "yes";
    let (Some(role), Some(disabled)) = (role, disabled) else {
        return spec.page(s, StatusCode::BAD_REQUEST, &errors, None);
    };
    let mut update = UpdateAccount::default();
    let mut lines = vec![Fact::new("Account", a.name.as_str())];
    if role != a.role {
        update.role = Some(role);
        lines.push(Fact::new("Role", format!("{} → {role}", a.role)));
    }
    if disabled != a.disabled {
        update.disabled = Some(disabled);
        lines.push(Fact::new(
            "Status",
            if disabled {
                "enabled → disabled (sessions end, tokens revoked)"
            } else {
                "disabled → enabled"
            },
        ));
    }
    let password = reset.then(generated_password);
    if password.is_some() {
        lines.push(Fact::new("Password", "a new one, shown once"));
    }
    update.password = password.clone();
    if lines.len() == 1 {
        return spec.page(
            s,
            StatusCode::BAD_REQUEST,
            &Vec::new(),
            Some("Nothing to change: choose another role, status or a new password.".into()),
        );
    }
    let plan = Plan::new("Change account", lines);
    let reason = match confirmed(&posted, &spec, plan) {
        Ok(r) => r,
        Err(page) => return page,
    };
    match state
        .node
        .update_account(Change::new(&s.actor, &reason), &a.name, &update)
        .await
    {
        Ok(after) => match password {
            Some(p) => secret_page(
                s,
                "New password",
                format!("{} signs in with this password from now on.", after.name),
                p,
                "/console/accounts",
            ),
            None => {
                let flash = Flash::success(format!(
                    "Account {} is now {}, {}.",
                    after.name,
                    after.role,
                    if after.disabled {
                        "disabled"
                    } else {
                        "enabled"
                    }
                ));
                done(&state, s, flash, "/console/accounts").await
            }
        },
        Err(e) => refused(spec, s, &e),
    }
}

// --- Air-gapped sync (support) ---

fn offline_spec(v: &ServerView) -> Spec {
    let seg = v.guid.bare();
    let mut spec = Spec::new(
        format!("Air-gapped sync of {}", v.guid),
        format!("/console/servers/{seg}/offline-sync"),
        server_link(v.guid),
    )
    .intro("For a site without a connection to the license nodes: the customer exports an upload file on the server (`leasehold server export-upload`, or its dashboard's Sync page) and sends it; this answers it as an online sync would and gives you the signed bundle file to send back (`leasehold server import-bundle`).")
    .facts(vec![
        Fact::new("Context", v.context.as_str()),
        Fact::new("Last sync", time(v.last_sync, "never")),
    ])
    .fields(vec![Field::new("upload", "Upload file", "file", "")
        .help("The JSON file the server exported (at most 4 MiB).")]);
    spec.multipart = true;
    spec
}

pub async fn offline_sync_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Response {
    let v = match load_server(&state, &session, &guid, AuditAction::ServerOfflineSync).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    offline_spec(&v).page(&session, StatusCode::OK, &Vec::new(), None)
}

/// An upload file, checked as the node checks a sync, for server `guid`.
fn read_upload(bytes: &[u8], guid: ServerGuid) -> Result<SyncUpload, String> {
    if bytes.is_empty() {
        return Err("Choose the upload file.".into());
    }
    if bytes.len() > MAX_SYNC_BODY_BYTES {
        return Err(format!(
            "The file has {} bytes; an upload is at most {MAX_SYNC_BODY_BYTES}.",
            bytes.len()
        ));
    }
    let upload: SyncUpload = serde_json::from_slice(bytes).map_err(|e| {
        format!("This is not an upload file written by `leasehold server export-upload` ({e}).")
    })?;
    upload
        .validate()
        .map_err(|e| format!("The upload file is not valid: {e}."))?;
    if upload.server_guid != guid {
        return Err(format!(
            "The file is the upload of server {}, not of {guid}: open that server's page.",
            upload.server_guid
        ));
    }
    Ok(upload)
}

/// The form's file, CSRF token checked; the form page again on anything wrong.
pub async fn offline_sync_post(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let v = match load_server(&state, &session, &guid, AuditAction::ServerOfflineSync).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let spec = offline_spec(&v);
    let mut csrf = None;
    let mut bytes = Vec::new();
    let mut read_error = None;
    match multipart {
        Err(e) => read_error = Some(e.body_text()),
        Ok(mut m) => loop {
            match m.next_field().await {
                Ok(Some(field)) => match field.name() {
                    Some("csrf") => csrf = field.text().await.ok(),
                    Some("upload") => match field.bytes().await {
                        Ok(b) => bytes = b.to_vec(),
                        Err(e) => {
                            read_error = Some(e.body_text());
                            break;
                        }
                    },
                    _ => {}
                },
                Ok(None) => break,
                Err(e) => {
                    read_error = Some(e.body_text());
                    break;
                }
            }
        },
    }
    if let Err(r) = check_csrf(&session, csrf.as_deref()) {
        return r;
    }
    if let Some(e) = read_error {
        return spec.page(
            &session,
            StatusCode::BAD_REQUEST,
            &vec![("upload", format!("The form could not be read: {e}."))],
            None,
        );
    }
    let upload = match read_upload(&bytes, v.guid) {
        Ok(u) => u,
        Err(e) => {
            return spec.page(
                &session,
                StatusCode::BAD_REQUEST,
                &vec![("upload", e)],
                None,
            )
        }
    };
    let encoded = URL_SAFE_NO_PAD.encode(&bytes);
    let seg = v.guid.bare();
    render(
        StatusCode::OK,
        &ConfirmPage {
            layout: Layout::new(&spec.heading, "", &session),
            heading: spec.heading.clone(),
            lines: vec![
                Fact::new("Server", v.guid.to_string()),
                Fact::new("Instance", upload.instance_id.to_string()),
                Fact::new(
                    "Last bundle it holds",
                    format!("serial {}", upload.last_bundle_serial),
                ),
                Fact::new("Usage hours it reports", upload.usage.len().to_string()),
                Fact::new("Software", upload.software_version.clone()),
            ],
            warning: Some("Answering binds the GUID to this instance if it is free, exactly as an online sync would; a copy of another instance is refused.".into()),
            hidden: vec![Fact::new("upload", encoded)],
            action: format!("/console/servers/{seg}/offline-sync/confirm"),
            confirm: "Answer and download the bundle".into(),
            cancel: server_link(v.guid),
            reason: String::new(),
            reason_error: None,
            danger: false,
        },
    )
}

/// The confirmed sync: the signed bundle as a file, exactly as the node signed it.
pub async fn offline_sync_confirm(
    State(state): State<NodeState>,
    Path(guid): Path<String>,
    posted: Posted,
) -> Response {
    let s = &posted.session;
    let v = match load_server(&state, s, &guid, AuditAction::ServerOfflineSync).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let spec = offline_spec(&v);
    let bytes = match URL_SAFE_NO_PAD.decode(posted.field("upload")) {
        Ok(b) => b,
        Err(_) => {
            return spec.page(
                s,
                StatusCode::BAD_REQUEST,
                &vec![(
                    "upload",
                    "The upload did not come back intact; choose the file again.".into(),
                )],
                None,
            )
        }
    };
    let upload = match read_upload(&bytes, v.guid) {
        Ok(u) => u,
        Err(e) => return spec.page(s, StatusCode::BAD_REQUEST, &vec![("upload", e)], None),
    };
    let reason = match check_reason(posted.field("reason")) {
        Ok(r) if !r.is_empty() => r,
        other => {
            let message = match other {
                Err(e) => format!("{e}."),
                Ok(_) => "Give a reason: it goes into the audit log with the sync.".into(),
            };
            return spec.page(
                s,
                StatusCode::BAD_REQUEST,
                &Vec::new(),
                Some(format!("{message} Choose the file again.")),
            );
        }
    };
    match state
        .node
        .offline_sync(Change::new(&s.actor, &reason), upload)
        .await
    {
        Ok(envelope) => {
            let body = match serde_json::to_vec(&envelope) {
                Ok(b) => b,
                Err(e) => {
                    return error_page(
                        s,
                        &ApiError::internal("license node", e),
                        &server_link(v.guid),
                    )
                }
            };
            tracing::info!(guid = %v.guid, by = %s.actor.name, "air-gapped bundle handed out in the console");
            (
                [
                    (header::CONTENT_TYPE, "application/json".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!(
                            "attachment; filename=\"leasehold-bundle-{}.json\"",
                            v.guid.bare()
                        ),
                    ),
                    (header::CACHE_CONTROL, "no-store".to_string()),
                ],
                body,
            )
                .into_response()
        }
        Err(e) => refused(spec, s, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_for_another_server_or_of_garbage_is_refused_by_name() {
        let guid = ServerGuid::from_bytes([1; 16]);
        assert!(read_upload(b"", guid).unwrap_err().contains("Choose"));
        assert!(read_upload(b"{", guid)
            .unwrap_err()
            .contains("export-upload"));
    }
}
