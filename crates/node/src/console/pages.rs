//! The console's pages (GET): search, installations, one installation, one server, one
//! license, events, the usage report and the audit log. Each reads through the same service
//! calls as the admin API and renders one template; a failed read is an error page with the
//! service's words.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use leasehold_proto::{Context, InstallationId, LicenseId, ServerGuid};
use serde::Deserialize;

use super::auth::Signed;
use super::charts::{feature_chart_svg, FeatureUsage};
use super::views::*;
use crate::api::{InstallationUsage, InstallationView, LicenseView, ServerView};
use crate::http::NodeState;
use crate::service::INSTALLATIONS_PER_PAGE;

/// Entries of the audit log one page shows.
const AUDIT_PER_PAGE: u32 = 50;
/// Recent entries an installation, server or license page shows.
const RECENT: u32 = 15;

pub async fn root_get() -> Redirect {
    Redirect::to("/console")
}

fn parse_guid(text: &str) -> Result<ServerGuid, leasehold_web::ApiError> {
    ServerGuid::parse(text).map_err(|e| leasehold_web::ApiError::bad_request(e.to_string()))
}

#[derive(Template)]
#[template(path = "console/home.html")]
pub struct HomePage {
    pub layout: Layout,
    pub query: String,
    pub events: Vec<EventRow>,
    pub more_events: usize,
    pub audit: Vec<AuditRow>,
}

pub async fn home_get(Signed(session): Signed, State(state): State<NodeState>) -> Response {
    let events = match state.node.events(7).await {
        Ok(e) => e.events,
        Err(e) => return error_page(&session, &e, "/console"),
    };
    // Silence alone is routine; the home page shows what needs a person.
    let urgent: Vec<EventRow> = events
        .iter()
        .filter(|e| e.kind != crate::api::EventKind::Silent)
        .map(EventRow::of)
        .collect();
    let audit = match state
        .node
        .audit(crate::store::AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
    {
        Ok(p) => p.entries.iter().map(AuditRow::of).collect(),
        Err(e) => return error_page(&session, &e, "/console"),
    };
    let shown = urgent.len().min(10);
    render(
        StatusCode::OK,
        &HomePage {
            layout: Layout::new("Search", "/console", &session),
            query: String::new(),
            more_events: urgent.len() - shown,
            events: urgent.into_iter().take(shown).collect(),
            audit,
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

#[derive(Template)]
#[template(path = "console/search.html")]
pub struct SearchPage {
    pub layout: Layout,
    pub query: String,
    pub installations: Vec<InstallationRow>,
    pub servers: Vec<(ServerRow, String)>,
    pub license: Option<LicenseRow>,
    pub nothing: bool,
}

/// One installation in a list.
#[derive(Debug, Clone)]
pub struct InstallationRow {
    pub id: String,
    pub link: String,
    pub name: String,
    pub created: String,
    pub servers: Vec<(String, String, String)>,
}

impl InstallationRow {
    fn of(i: &InstallationView) -> Self {
        Self {
            id: i.id.to_string(),
            link: format!("/console/installations/{}", i.id),
            name: i.name.clone(),
            created: time(Some(i.created_at), ""),
            servers: i
                .servers
                .iter()
                .map(|s| {
                    (
                        s.guid.to_string(),
                        server_link(s.guid),
                        s.context.to_string(),
                    )
                })
                .collect(),
        }
    }
}

/// Finds installations by customer name or id, servers by GUID (or its first digits) and
/// licenses by id; one exact match goes straight to its page.
pub async fn search_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Query(q): Query<SearchQuery>,
) -> Response {
    let query = q.q.trim().to_owned();
    if query.is_empty() {
        return Redirect::to("/console").into_response();
    }
    let found = match state.node.search(&query).await {
        Ok(f) => f,
        Err(e) => return error_page(&session, &e, "/console"),
    };
    let exact = ServerGuid::parse(&query).is_ok()
        || LicenseId::parse(&query).is_ok()
        || InstallationId::parse(&query).is_ok();
    if exact {
        if let [s] = found.servers.as_slice() {
            return Redirect::to(&server_link(s.guid)).into_response();
        }
        if let Some(l) = &found.license {
            return Redirect::to(&format!("/console/licenses/{}", l.license.id)).into_response();
        }
        if let [i] = found.installations.as_slice() {
            return Redirect::to(&format!("/console/installations/{}", i.id)).into_response();
        }
    }
    let now = state.node.now();
    let today = now.date_naive();
    render(
        StatusCode::OK,
        &SearchPage {
            layout: Layout::new("Search", "/console", &session),
            nothing: found.is_empty(),
            installations: found
                .installations
                .iter()
                .map(InstallationRow::of)
                .collect(),
            servers: found
                .servers
                .iter()
                .map(|s| {
                    (
                        ServerRow::of(s, now),
                        format!("/console/installations/{}", s.installation),
                    )
                })
                .collect(),
            license: found.license.as_ref().map(|l| LicenseRow::of(l, today)),
            query,
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    page: Option<u64>,
}

#[derive(Template)]
#[template(path = "console/installations.html")]
pub struct InstallationsPage {
    pub layout: Layout,
    pub rows: Vec<InstallationRow>,
    pub total: u64,
    pub first: u64,
    pub last: u64,
    pub prev: Option<String>,
    pub next: Option<String>,
}

pub async fn installations_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Query(q): Query<PageQuery>,
) -> Response {
    let page = q.page.unwrap_or(0);
    let (rows, total) = match state.node.installations_page(page).await {
        Ok(r) => r,
        Err(e) => return error_page(&session, &e, "/console"),
    };
    let per = u64::from(INSTALLATIONS_PER_PAGE);
    let first = page * per + 1;
    let last = page * per + rows.len() as u64;
    render(
        StatusCode::OK,
        &InstallationsPage {
            layout: Layout::new("Installations", "/console/installations", &session),
            rows: rows.iter().map(InstallationRow::of).collect(),
            total,
            first,
            last,
            prev: (page > 0).then(|| format!("/console/installations?page={}", page - 1)),
            next: (last < total).then(|| format!("/console/installations?page={}", page + 1)),
        },
    )
}

/// One feature's chart on the installation page.
#[derive(Debug, Clone)]
pub struct ChartView {
    pub feature: String,
    pub svg: String,
}

/// One hour with backup licenses used beside production ones.
#[derive(Debug, Clone)]
pub struct OverlapRow {
    pub hour: String,
    pub feature: String,
    pub backup_server: String,
    pub backup_link: String,
    pub minutes: u64,
    pub production_peak: u32,
}

#[derive(Template)]
#[template(path = "console/installation.html")]
pub struct InstallationPage {
    pub layout: Layout,
    pub id: String,
    pub name: String,
    pub created: String,
    pub servers: Vec<ServerRow>,
    pub licenses: Vec<LicenseRow>,
    pub from: String,
    pub to: String,
    pub charts: Vec<ChartView>,
    pub overlap: Vec<OverlapRow>,
    pub events: Vec<EventRow>,
    pub audit: Vec<AuditRow>,
    pub forks: usize,
}

#[derive(Debug, Default, Deserialize)]
pub struct PeriodQuery {
    from: Option<String>,
    to: Option<String>,
}

/// A period from the query: default the last 30 days up to today.
fn period(q: &PeriodQuery, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), String> {
    let date = |s: &Option<String>, name: &str| -> Result<Option<NaiveDate>, String> {
        match s.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(t) => NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| format!("{name} {t:?} is not a date as YYYY-MM-DD")),
        }
    };
    let to = date(&q.to, "to")?.unwrap_or(today);
    let from = date(&q.from, "from")?.unwrap_or(to - chrono::Duration::days(29));
    Ok((from, to))
}

/// A chart of every feature the installation is licensed for or reported.
fn charts(report: &InstallationUsage, servers: &[ServerView]) -> Vec<ChartView> {
    let mut licensed: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for s in servers {
        for l in &s.licenses {
            let e = licensed.entry(l.feature.to_string()).or_default();
            if s.context == Context::Backup {
                e.1 += l.count;
            } else {
                e.0 += l.count;
            }
        }
    }
    let mut features: Vec<&leasehold_proto::Feature> =
        report.days.iter().map(|d| &d.feature).collect();
    for s in servers {
        features.extend(s.licenses.iter().map(|l| &l.feature));
    }
    features.sort();
    features.dedup();
    features
        .into_iter()
        .map(|f| {
            let (licensed_primary, licensed_backup) =
                licensed.get(f.as_str()).copied().unwrap_or_default();
            let usage = FeatureUsage {
                feature: f,
                days: report.days.iter().filter(|d| &d.feature == f).collect(),
                overlap: report
                    .simultaneous
                    .iter()
                    .filter(|o| &o.feature == f)
                    .collect(),
                licensed_primary,
                licensed_backup,
            };
            ChartView {
                feature: f.to_string(),
                svg: feature_chart_svg(&usage, report.from, report.to),
            }
        })
        .collect()
}

/// The hours in which backup licenses were used beside production ones, as a table.
fn overlap_rows(report: &InstallationUsage) -> Vec<OverlapRow> {
    report
        .simultaneous
        .iter()
        .map(|o| OverlapRow {
            hour: o.hour.format("%Y-%m-%d %H:00 UTC").to_string(),
            feature: o.feature.to_string(),
            backup_server: o.backup_server.to_string(),
            backup_link: server_link(o.backup_server),
            minutes: o.backup_use_secs.div_ceil(60),
            production_peak: o.production_peak,
        })
        .collect()
}

async fn servers_of(
    state: &NodeState,
    installation: &InstallationView,
) -> Result<Vec<ServerView>, leasehold_web::ApiError> {
    let mut out = Vec::with_capacity(installation.servers.len());
    for s in &installation.servers {
        out.push(state.node.server(s.guid).await?);
    }
    Ok(out)
}

fn licenses_of(servers: &[ServerView], today: NaiveDate) -> Vec<LicenseRow> {
    servers
        .iter()
        .flat_map(|s| {
            s.licenses.iter().map(|l| {
                LicenseRow::of(
                    &LicenseView {
                        license: l.clone(),
                        server: s.guid,
                        revoked_at: None,
                    },
                    today,
                )
            })
        })
        .collect()
}

async fn recent_audit(
    state: &NodeState,
    query: crate::store::AuditQuery,
) -> Result<Vec<AuditRow>, leasehold_web::ApiError> {
    Ok(state
        .node
        .audit(crate::store::AuditQuery {
            limit: RECENT,
            ..query
        })
        .await?
        .entries
        .iter()
        .map(AuditRow::of)
        .collect())
}

pub async fn installation_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Path(id): Path<String>,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let back = "/console/installations";
    let id = match InstallationId::parse(&id) {
        Ok(id) => id,
        Err(e) => {
            return error_page(
                &session,
                &leasehold_web::ApiError::bad_request(e.to_string()),
                back,
            )
        }
    };
    let now = state.node.now();
    let today = now.date_naive();
    let (from, to) = match period(&q, today) {
        Ok(p) => p,
        Err(e) => return error_page(&session, &leasehold_web::ApiError::bad_request(e), back),
    };
    let page = async {
        let installation = state.node.installation(&id).await?;
        let servers = servers_of(&state, &installation).await?;
        let report = state
            .node
            .installation_usage(&id, Some(from), Some(to))
            .await?;
        let events = state.node.installation_events(&id, 7).await?;
        let audit = recent_audit(
            &state,
            crate::store::AuditQuery {
                installation: Some(id.clone()),
                ..Default::default()
            },
        )
        .await?;
        Ok::<_, leasehold_web::ApiError>((installation, servers, report, events, audit))
    }
    .await;
    let (installation, servers, report, events, audit) = match page {
        Ok(p) => p,
        Err(e) => return error_page(&session, &e, back),
    };
    let (charts, overlap) = (charts(&report, &servers), overlap_rows(&report));
    let rows: Vec<ServerRow> = servers.iter().map(|s| ServerRow::of(s, now)).collect();
    render(
        StatusCode::OK,
        &InstallationPage {
            layout: Layout::new(&installation.name, "/console/installations", &session),
            id: installation.id.to_string(),
            name: installation.name.clone(),
            created: time(Some(installation.created_at), ""),
            forks: rows.iter().filter(|r| r.fork_alert.is_some()).count(),
            servers: rows,
            licenses: licenses_of(&servers, today),
            from: from.to_string(),
            to: to.to_string(),
            charts,
            overlap,
            events: events.iter().map(EventRow::of).collect(),
            audit,
        },
    )
}

#[derive(Template)]
#[template(path = "console/server.html")]
pub struct ServerPage {
    pub layout: Layout,
    pub row: ServerRow,
    pub installation: String,
    pub installation_name: String,
    pub installation_link: String,
    pub facts: Vec<Fact>,
    pub licenses: Vec<LicenseRow>,
    pub events: Vec<EventRow>,
    pub audit: Vec<AuditRow>,
    pub segment: String,
}

pub async fn server_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Path(guid): Path<String>,
) -> Response {
    let back = "/console";
    let page = async {
        let guid = parse_guid(&guid)?;
        let server = state.node.server(guid).await?;
        let installation = state.node.installation(&server.installation).await?;
        let events = state
            .node
            .installation_events(&server.installation, 7)
            .await?;
        let audit = recent_audit(
            &state,
            crate::store::AuditQuery {
                server: Some(guid),
                ..Default::default()
            },
        )
        .await?;
        Ok::<_, leasehold_web::ApiError>((server, installation, events, audit))
    }
    .await;
    let (server, installation, events, audit) = match page {
        Ok(p) => p,
        Err(e) => return error_page(&session, &e, back),
    };
    let now = state.node.now();
    let row = ServerRow::of(&server, now);
    let facts = vec![
        Fact::new("Context", server.context.to_string()),
        Fact::new("Last sync", row.last_sync.clone()),
        Fact::new("Grace left", row.grace.clone()),
        Fact::new(
            "Grace period",
            format!("{} days without contact", server.grace_days),
        ),
        Fact::new("Sync interval", row.interval.clone()),
        Fact::new("Bound instance", row.instance.clone()),
        Fact::new("Bundle serial", server.bundle_serial.to_string()),
        Fact::new(
            "Usage acknowledged up to",
            format!("sequence {}", server.acked_usage_seq),
        ),
        Fact::new("Software version", row.software_version.clone()),
        Fact::new(
            "Copies refused (forks)",
            format!(
                "{}{}",
                server.forks_detected,
                server
                    .last_fork
                    .map_or_else(String::new, |t| format!(", the last {}", time(Some(t), "")))
            ),
        ),
        Fact::new("GUID last reassigned", time(server.reassigned_at, "never")),
    ];
    let today = now.date_naive();
    render(
        StatusCode::OK,
        &ServerPage {
            layout: Layout::new(&format!("Server {}", server.guid), "", &session),
            installation: installation.id.to_string(),
            installation_name: installation.name.clone(),
            installation_link: format!("/console/installations/{}", installation.id),
            facts,
            licenses: licenses_of(std::slice::from_ref(&server), today),
            events: events
                .iter()
                .filter(|e| e.server == server.guid)
                .map(EventRow::of)
                .collect(),
            audit,
            segment: server.guid.bare(),
            row,
        },
    )
}

#[derive(Template)]
#[template(path = "console/license.html")]
pub struct LicensePage {
    pub layout: Layout,
    pub row: LicenseRow,
    pub installation: String,
    pub installation_link: String,
    pub server_context: String,
    pub audit: Vec<AuditRow>,
}

pub async fn license_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Path(id): Path<String>,
) -> Response {
    let back = "/console";
    let page = async {
        let id = LicenseId::parse(&id)
            .map_err(|e| leasehold_web::ApiError::bad_request(e.to_string()))?;
        let license = state.node.license(&id).await?;
        let server = state.node.server(license.server).await?;
        let audit = recent_audit(
            &state,
            crate::store::AuditQuery {
                target: Some(id.to_string()),
                ..Default::default()
            },
        )
        .await?;
        Ok::<_, leasehold_web::ApiError>((license, server, audit))
    }
    .await;
    let (license, server, audit) = match page {
        Ok(p) => p,
        Err(e) => return error_page(&session, &e, back),
    };
    let today = state.node.now().date_naive();
    render(
        StatusCode::OK,
        &LicensePage {
            layout: Layout::new(&format!("License {}", license.license.id), "", &session),
            row: LicenseRow::of(&license, today),
            installation: server.installation.to_string(),
            installation_link: format!("/console/installations/{}", server.installation),
            server_context: server.context.to_string(),
            audit,
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    silent_days: Option<String>,
}

/// `silent_days` from a query: whole days, default 7.
pub fn silent_days(q: &EventsQuery) -> Result<u32, String> {
    match q
        .silent_days
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => Ok(7),
        Some(t) => t.parse::<u32>().map_err(|_| {
            format!("“silent for more than” must be a whole number of days, not {t:?}")
        }),
    }
}

#[derive(Template)]
#[template(path = "console/events.html")]
pub struct EventsPage {
    pub layout: Layout,
    pub silent_days: String,
    pub rows: Vec<EventRow>,
    pub error: Option<String>,
    pub csv: String,
}

pub async fn events_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Query(q): Query<EventsQuery>,
) -> Response {
    let layout = Layout::new("Events", "/console/events", &session);
    let (days, error) = match silent_days(&q) {
        Ok(d) => (d, None),
        Err(e) => (7, Some(e)),
    };
    let events = match state.node.events(days).await {
        Ok(e) => e,
        Err(e) => return error_page(&session, &e, "/console"),
    };
    render(
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        &EventsPage {
            layout,
            silent_days: days.to_string(),
            rows: events.events.iter().map(EventRow::of).collect(),
            error,
            csv: format!("/console/events.csv?silent_days={days}"),
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct UsageQuery {
    installation: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// One row of the usage report.
#[derive(Debug, Clone)]
pub struct UsageRowView {
    pub day: String,
    pub feature: String,
    pub context: String,
    pub peak: u32,
    pub license_hours: String,
    pub grants: u64,
    pub denials: u64,
    pub denials_while_free: u64,
    pub flagged: bool,
}

#[derive(Template)]
#[template(path = "console/usage_report.html")]
pub struct UsageReportPage {
    pub layout: Layout,
    pub installation: String,
    pub installation_name: String,
    pub from: String,
    pub to: String,
    pub rows: Vec<UsageRowView>,
    pub overlap: Vec<OverlapRow>,
    pub shown: bool,
    pub error: Option<String>,
    pub csv: String,
}

/// The usage report of the query's installation and period, or why there is none.
pub async fn usage_report(
    state: &NodeState,
    q: &UsageQuery,
) -> Result<Option<(InstallationView, InstallationUsage)>, leasehold_web::ApiError> {
    let Some(text) = q
        .installation
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    let id = InstallationId::parse(text)
        .map_err(|e| leasehold_web::ApiError::bad_request(e.to_string()))?;
    let today = state.node.now().date_naive();
    let (from, to) = period(
        &PeriodQuery {
            from: q.from.clone(),
            to: q.to.clone(),
        },
        today,
    )
    .map_err(leasehold_web::ApiError::bad_request)?;
    let installation = state.node.installation(&id).await?;
    let report = state
        .node
        .installation_usage(&id, Some(from), Some(to))
        .await?;
    Ok(Some((installation, report)))
}

pub async fn usage_report_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Query(q): Query<UsageQuery>,
) -> Response {
    let layout = Layout::new("Usage report", "/console/reports/usage", &session);
    let mut page = UsageReportPage {
        layout,
        installation: q.installation.clone().unwrap_or_default(),
        installation_name: String::new(),
        from: q.from.clone().unwrap_or_default(),
        to: q.to.clone().unwrap_or_default(),
        rows: Vec::new(),
        overlap: Vec::new(),
        shown: false,
        error: None,
        csv: String::new(),
    };
    match usage_report(&state, &q).await {
        Ok(None) => render(StatusCode::OK, &page),
        Ok(Some((installation, report))) => {
            let overlap_days: std::collections::BTreeSet<(NaiveDate, String)> = report
                .simultaneous
                .iter()
                .map(|o| (o.hour.date_naive(), o.feature.to_string()))
                .collect();
            page.installation_name = installation.name;
            page.from = report.from.to_string();
            page.to = report.to.to_string();
            page.rows = report
                .days
                .iter()
                .map(|d| UsageRowView {
                    day: d.day.to_string(),
                    feature: d.feature.to_string(),
                    context: d.context.to_string(),
                    peak: d.peak_in_use,
                    license_hours: format!("{:.1}", d.license_secs as f64 / 3600.0),
                    grants: d.grants,
                    denials: d.denials,
                    denials_while_free: d.denials_while_free,
                    flagged: d.context == Context::Backup
                        && overlap_days.contains(&(d.day, d.feature.to_string())),
                })
                .collect();
            page.overlap = overlap_rows(&report);
            page.shown = true;
            page.csv = format!(
                "/console/reports/usage.csv?installation={}&from={}&to={}",
                report.installation, report.from, report.to
            );
            render(StatusCode::OK, &page)
        }
        Err(e) => {
            page.error = Some(e.message.clone());
            render(e.status(), &page)
        }
    }
}

#[derive(Template)]
#[template(path = "console/audit.html")]
pub struct AuditPageView {
    pub layout: Layout,
    pub installation: String,
    pub server: String,
    pub target: String,
    pub actor: String,
    pub since: String,
    pub rows: Vec<AuditRow>,
    pub next: Option<String>,
    pub newest: Option<String>,
    pub csv: String,
    pub error: Option<String>,
}

/// The audit filters of a query string, as the form and the links carry them.
pub fn audit_filters(p: &crate::http::AuditParams) -> String {
    let mut out = Vec::new();
    for (k, v) in [
        ("installation", &p.installation),
        ("server", &p.server),
        ("target", &p.target),
        ("actor", &p.actor),
    ] {
        if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            out.push(format!("{k}={}", leasehold_web::browser::url_encode(v)));
        }
    }
    if let Ok(Some(d)) = p.since_day() {
        out.push(format!("since={d}"));
    }
    out.join("&")
}

pub async fn audit_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    query: Result<Query<crate::http::AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let layout = Layout::new("Audit log", "/console/audit", &session);
    let p = match query {
        Ok(Query(p)) => p,
        Err(e) => {
            return message_page(
                StatusCode::BAD_REQUEST,
                Some(&session),
                "Filter not understood (400)",
                &format!("{} (dates are YYYY-MM-DD).", e.body_text()),
                "/console/audit",
            )
        }
    };
    let filters = audit_filters(&p);
    let mut page = AuditPageView {
        layout,
        installation: p.installation.clone().unwrap_or_default(),
        server: p.server.clone().unwrap_or_default(),
        target: p.target.clone().unwrap_or_default(),
        actor: p.actor.clone().unwrap_or_default(),
        since: p.since.clone().unwrap_or_default(),
        rows: Vec::new(),
        next: None,
        newest: p.before.map(|_| format!("/console/audit?{filters}")),
        csv: format!("/console/audit.csv?{filters}"),
        error: None,
    };
    let result = async {
        let mut query = p.query()?;
        query.limit = AUDIT_PER_PAGE;
        state.node.audit(query).await
    }
    .await;
    match result {
        Ok(audit) => {
            page.rows = audit.entries.iter().map(AuditRow::of).collect();
            page.next = audit.next_before.map(|b| {
                let sep = if filters.is_empty() { "" } else { "&" };
                format!("/console/audit?{filters}{sep}before={b}")
            });
            render(StatusCode::OK, &page)
        }
        Err(e) => {
            page.error = Some(e.message.clone());
            render(e.status(), &page)
        }
    }
}
