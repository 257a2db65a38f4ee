//! The dashboard's pages (GET). Each reads the server's state through the same calls the
//! admin API makes and renders one template.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::{self, Session, LOGIN_COOKIE, SESSION_COOKIE};
use super::views::*;
use crate::api::{ClientSort, ServerState, Status};
use crate::http::AppState;
use crate::service::ClientQuery;

/// The server status every page shows in its header; a failure becomes an error page.
pub(super) async fn status_or_page(
    state: &AppState,
    session: &Session,
    title: &str,
) -> Result<Status, Response> {
    state.server.status().await.map_err(|e| {
        message_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(session),
            title,
            &format!("The license server could not read its state: {}", e.message),
            "/licenses",
        )
    })
}

pub(super) fn message_page(
    code: StatusCode,
    session: Option<&Session>,
    heading: &str,
    message: &str,
    back: &str,
) -> Response {
    render(
        code,
        &MessagePage {
            layout: Layout::new(heading, "", session, None, None),
            heading: heading.into(),
            message: message.into(),
            back: back.into(),
        },
    )
}

pub(super) fn layout(
    state: &AppState,
    session: &Session,
    title: &str,
    current: &str,
    status: &Status,
) -> Layout {
    let flash = state.dashboard.sessions.take_flash(&session.token);
    Layout::new(title, current, Some(session), Some(status), flash)
}

pub async fn root_get(_: Session) -> Redirect {
    Redirect::to("/licenses")
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    signed_out: Option<String>,
}

pub async fn login_get(
    State(state): State<AppState>,
    Query(q): Query<LoginQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let next = auth::safe_next(q.next.as_deref());
    // Already signed in: straight on.
    if auth::cookie(&headers, SESSION_COOKIE).is_some_and(|t| state.dashboard.sessions.is_live(t)) {
        return Redirect::to(&next).into_response();
    }
    login_page(
        state.dashboard.secure_cookies(),
        StatusCode::OK,
        &next,
        None,
        q.signed_out.map(|_| "You are signed out.".to_string()),
    )
}

/// The sign-in form with a fresh CSRF token, set in a cookie it must match.
pub(super) fn login_page(
    secure: bool,
    code: StatusCode,
    next: &str,
    error: Option<String>,
    notice: Option<String>,
) -> Response {
    let token = auth::random_token();
    let page = LoginPage {
        layout: Layout::new("Sign in", "", None, None, None),
        next: next.into(),
        login_csrf: token.clone(),
        error,
        notice,
    };
    let mut response = render(code, &page);
    if let Ok(v) = auth::set_cookie(LOGIN_COOKIE, &token, secure).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

pub async fn licenses_get(session: Session, State(state): State<AppState>) -> Response {
    let status = match status_or_page(&state, &session, "Licenses").await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let today = state.server.clock().now().date_naive();
    let rows: Vec<LicenseRow> = status
        .licenses
        .iter()
        .map(|l| {
            let mut marks = Vec::new();
            if let Some(expires) = l.expires {
                marks.extend(date_mark(expires, today, "license"));
            }
            marks.extend(date_mark(l.maintenance_until, today, "maintenance"));
            LicenseRow {
                id: l.id.clone(),
                feature: l.feature.to_string(),
                context: l.context.to_string(),
                count: l.count,
                in_use: l.in_use,
                reserved: l.reserved,
                maintenance_until: l.maintenance_until.format("%Y-%m-%d").to_string(),
                expires: l
                    .expires
                    .map_or_else(|| "never".into(), |d| d.format("%Y-%m-%d").to_string()),
                backs_up: l.backs_up.clone().unwrap_or_else(|| "—".into()),
                flagged: !marks.is_empty(),
                marks,
            }
        })
        .collect();
    let now = state.server.clock().now();
    let page = LicensesPage {
        layout: layout(&state, &session, "Licenses", "/licenses", &status),
        flagged: rows.iter().filter(|r| r.flagged).count(),
        rows,
        context: status
            .context
            .map_or_else(|| "unknown until the first sync".into(), |c| c.to_string()),
        reason: status.reason.clone(),
        unconfigured: status.state == ServerState::Unconfigured,
        learning_until: status
            .learning_until
            .map(|t| format!("{} ({})", time(Some(t), ""), relative(t, now))),
    };
    render(StatusCode::OK, &page)
}

pub async fn setup_get(session: Session, State(state): State<AppState>) -> Response {
    setup_page(&state, &session, StatusCode::OK, String::new(), None).await
}

pub(super) async fn setup_page(
    state: &AppState,
    session: &Session,
    code: StatusCode,
    value: String,
    error: Option<String>,
) -> Response {
    let status = match status_or_page(state, session, "Setup").await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let keys = state.server.client_key();
    let page = SetupPage {
        layout: layout(state, session, "Setup", "/setup", &status),
        guid: status.guid.map(|g| g.to_string()),
        context: status.context.map_or_else(
            || "not known until the first sync".into(),
            |c| c.to_string(),
        ),
        installation: status.installation.as_ref().map_or_else(
            || "not known until the first sync".into(),
            ToString::to_string,
        ),
        state: StateView::of(status.state),
        reason: status.reason.clone(),
        value,
        error,
        client_key: keys.key,
        previous_keys_until: keys
            .previous_valid_until
            .iter()
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .collect(),
        key_overlap: overlap_words(state.server.client_key_overlap()),
    };
    render(code, &page)
}

/// "7 days", "36 hours", "90 minutes": how long a replaced client key stays valid.
fn overlap_words(d: chrono::Duration) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if d.num_days() > 0 && d == chrono::Duration::days(d.num_days()) {
        plural(d.num_days(), "day")
    } else if d.num_hours() > 0 && d == chrono::Duration::hours(d.num_hours()) {
        plural(d.num_hours(), "hour")
    } else {
        plural(d.num_minutes(), "minute")
    }
}

pub async fn sync_get(session: Session, State(state): State<AppState>) -> Response {
    let status = match status_or_page(&state, &session, "Sync").await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let now = state.server.clock().now();
    let (upload_json, upload_error) = match state.server.upload().await {
        Ok(u) => (
            Some(serde_json::to_string_pretty(&u).unwrap_or_default()),
            None,
        ),
        Err(e) => (None, Some(e.message)),
    };
    let air_gapped = state.dashboard.running().nodes.is_empty();
    let page = SyncPage {
        layout: layout(&state, &session, "Sync", "/sync", &status),
        state: StateView::of(status.state),
        reason: status.reason.clone(),
        last_sync: status.last_sync.map_or_else(
            || "never".into(),
            |t| format!("{} ({})", time(Some(t), ""), relative(t, now)),
        ),
        last_node: status.last_sync_node.clone().unwrap_or_else(|| "—".into()),
        last_error: status.last_sync_error.clone(),
        next_sync: match status.next_sync {
            Some(t) if t <= now => "due now".into(),
            Some(t) => format!("{} ({})", time(Some(t), ""), relative(t, now)),
            None if air_gapped => {
                "none scheduled: no license node is configured (air-gapped)".into()
            }
            None => "none scheduled: set the server GUID first".into(),
        },
        grace: status.grace_days_left.map_or_else(
            || "— (no bundle yet)".into(),
            |d| format!("{d} day{}", if d == 1 { "" } else { "s" }),
        ),
        not_after: time(status.not_after, "—"),
        serial: status.bundle_serial,
        pending: status.pending_usage_buckets,
        air_gapped,
        nodes: status
            .nodes
            .iter()
            .map(|n| NodeRow {
                url: n.url.clone(),
                last_ok: n.last_ok.map_or_else(
                    || "never".into(),
                    |t| format!("{} ({})", time(Some(t), ""), relative(t, now)),
                ),
                last_error: n.last_error.clone().unwrap_or_else(|| "none".into()),
            })
            .collect(),
        upload_json,
        upload_error,
    };
    render(StatusCode::OK, &page)
}

/// Clients shown on one page of the Clients page.
pub(super) const CLIENTS_PER_PAGE: usize = 100;

/// `?page=N&q=TEXT&sort=ORDER` of the Clients page (pages are 1-based; an unreadable page is
/// page 1, an unknown order the default, a search longer than the limit is cut).
#[derive(Debug, Default, serde::Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    sort: Option<String>,
}

impl PageQuery {
    fn page(&self) -> usize {
        self.page
            .as_deref()
            .and_then(|p| p.trim().parse::<usize>().ok())
            .filter(|p| *p >= 1)
            .unwrap_or(1)
    }

    fn search(&self) -> Option<String> {
        self.q
            .as_deref()
            .map(|q| {
                q.trim()
                    .chars()
                    .take(ClientQuery::MAX_SEARCH)
                    .collect::<String>()
            })
            .filter(|q| !q.is_empty())
    }

    fn sort(&self) -> ClientSort {
        self.sort
            .as_deref()
            .and_then(|s| ClientSort::parse(s).ok())
            .unwrap_or_default()
    }

    /// This query's link for `page` and `sort`, keeping the search.
    fn link(&self, page: usize, sort: ClientSort) -> String {
        let mut link = format!("/clients?sort={}", sort.as_str());
        if let Some(q) = self.search() {
            link.push_str("&q=");
            link.push_str(&urlencoding(&q));
        }
        if page > 1 {
            link.push_str(&format!("&page={page}"));
        }
        link
    }
}

/// `s` percent-encoded for a query string.
fn urlencoding(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The Clients table's sortable columns: heading, order.
const CLIENT_COLUMNS: [(&str, ClientSort); 5] = [
    ("Client", ClientSort::Name),
    ("Address", ClientSort::Address),
    ("Holds", ClientSort::InUse),
    ("Connected since", ClientSort::ConnectedSince),
    ("Last seen", ClientSort::LastSeen),
];

fn clients_table(state: &AppState, q: &PageQuery) -> ClientsTable {
    let page = q.page();
    let sort = q.sort();
    let search = q.search();
    let (clients, total) = state.server.clients_query(&ClientQuery {
        search: search.clone(),
        sort,
        offset: (page - 1).saturating_mul(CLIENTS_PER_PAGE),
        limit: CLIENTS_PER_PAGE,
    });
    let first = (page - 1) * CLIENTS_PER_PAGE + 1;
    let last = first + clients.len().saturating_sub(1);
    let now = state.server.clock().now();
    let rows = clients
        .iter()
        .map(|c| ClientRow {
            name: c.name.clone().unwrap_or_else(|| "(no name sent)".into()),
            client: c.client.to_string(),
            address: c.address.clone().unwrap_or_else(|| "—".into()),
            product_release: c
                .product_release
                .map_or_else(|| "—".into(), |d| d.to_string()),
            holds: if c.features.is_empty() {
                vec!["nothing".into()]
            } else {
                c.features
                    .iter()
                    .map(|f| format!("{} {} in use of {}", f.feature, f.in_use, f.quota))
                    .collect()
            },
            failover: c.failover,
            connected_since: c.connected_since.map_or_else(
                || "—".into(),
                |t| {
                    let ago = (now - t).num_seconds().max(0).unsigned_abs();
                    format!("{} ({} ago)", t.format("%Y-%m-%d %H:%M UTC"), span(ago))
                },
            ),
            last_seen: format!("{} ago", span(c.last_seen_secs_ago)),
        })
        .collect();
    ClientsTable {
        rows,
        clients: total,
        first,
        last,
        search: search.unwrap_or_default(),
        columns: CLIENT_COLUMNS
            .iter()
            .map(|(heading, order)| SortColumn {
                heading,
                value: order.as_str(),
                link: q.link(1, *order),
                current: *order == sort,
                aria_sort: (*order == sort).then_some(match order {
                    ClientSort::InUse | ClientSort::LastSeen => "descending",
                    _ => "ascending",
                }),
            })
            .collect(),
        sort: sort.as_str(),
        prev: (page > 1).then(|| q.link(page - 1, sort)),
        next: (last < total).then(|| q.link(page + 1, sort)),
        as_of: now.format("%H:%M:%S UTC").to_string(),
    }
}

pub async fn clients_get(
    session: Session,
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<PageQuery>,
) -> Response {
    let status = match status_or_page(&state, &session, "Clients").await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let page = ClientsPage {
        layout: layout(&state, &session, "Clients", "/clients", &status),
        table_html: match clients_table(&state, &q).render() {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(error = %e, "rendering the clients table failed");
                String::from("<p>The clients table could not be rendered; see the server log.</p>")
            }
        },
    };
    render(StatusCode::OK, &page)
}

/// The clients table alone, for the page's live refresh.
pub async fn clients_table_get(
    _: Session,
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<PageQuery>,
) -> Response {
    let mut response = render(StatusCode::OK, &clients_table(&state, &q));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

pub async fn usage_get(session: Session, State(state): State<AppState>) -> Response {
    let status = match status_or_page(&state, &session, "Usage").await {
        Ok(s) => s,
        Err(page) => return page,
    };
    // Licenses of one feature add up (several grants of `tts` make one pool).
    let mut features: BTreeMap<String, FeatureUsageRow> = BTreeMap::new();
    for l in &status.licenses {
        let row = features
            .entry(l.feature.to_string())
            .or_insert_with(|| FeatureUsageRow {
                feature: l.feature.to_string(),
                count: 0,
                in_use: l.in_use,
                reserved: l.reserved,
                free: 0,
            });
        row.count = row.count.saturating_add(l.count);
    }
    for row in features.values_mut() {
        row.free = row.count.saturating_sub(row.reserved.max(row.in_use));
    }
    let (hours, hours_note) = match state.server.upload().await {
        Ok(u) => {
            let rows: Vec<HourRow> = u
                .usage
                .iter()
                .rev()
                .map(|b| HourRow {
                    feature: b.feature.to_string(),
                    hour: b.hour.format("%Y-%m-%d %H:00 UTC").to_string(),
                    peak: b.peak_in_use,
                    license_hours: format!("{:.2}", b.license_secs as f64 / 3600.0),
                    grants: b.grants,
                    denials: b.denials,
                    denials_while_free: b.denials_while_free,
                })
                .collect();
            let note = rows.is_empty().then(|| {
                "No finished hours are waiting: the last sync delivered all of them.".to_string()
            });
            (rows, note)
        }
        Err(e) => (Vec::new(), Some(e.message)),
    };
    let charts = usage_charts(&state).await;
    // The downloads cover the days the 30-day charts show.
    let (export_from, export_to) = crate::export::PeriodQuery::default()
        .period(state.server.clock().now().date_naive())
        .map(|(from, to)| (from.to_string(), to.to_string()))
        .unwrap_or_default();
    let page = UsagePage {
        layout: layout(&state, &session, "Usage", "/usage", &status),
        features: features.into_values().collect(),
        hours,
        hours_note,
        charts,
        export_from,
        export_to,
    };
    render(StatusCode::OK, &page)
}

/// `GET /usage/export.csv?from=DATE&to=DATE`: the usage report as a CSV download.
pub async fn usage_csv_get(
    session: Session,
    State(state): State<AppState>,
    query: Result<Query<crate::export::PeriodQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    usage_download(&state, &session, query, "csv").await
}

/// `GET /usage/export.json?from=DATE&to=DATE`: the usage report as a JSON download (the
/// admin API's `GET /v1/admin/usage` body).
pub async fn usage_json_get(
    session: Session,
    State(state): State<AppState>,
    query: Result<Query<crate::export::PeriodQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    usage_download(&state, &session, query, "json").await
}

async fn usage_download(
    state: &AppState,
    session: &Session,
    query: Result<Query<crate::export::PeriodQuery>, axum::extract::rejection::QueryRejection>,
    ext: &str,
) -> Response {
    let refused = |code: StatusCode, message: &str| {
        message_page(code, Some(session), "Usage report", message, "/usage")
    };
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return refused(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let report = match state.server.usage_export(&q).await {
        Ok(r) => r,
        Err(e) => return refused(e.status(), &e.message),
    };
    let body = if ext == "csv" {
        crate::export::csv(&report.rows)
    } else {
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return refused(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    let content_type = if ext == "csv" {
        "text/csv; charset=utf-8"
    } else {
        "application/json"
    };
    let name = crate::export::file_name(report.from, report.to, ext);
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response()
}

pub async fn config_get(session: Session, State(state): State<AppState>) -> Response {
    super::forms::config_page(
        &state,
        &session,
        StatusCode::OK,
        None,
        ConfigErrors::default(),
    )
    .await
}

/// Two charts per feature: the last 24 hours in 5-minute steps (hours before this process
/// started), and the last 30 days by hour.
async fn usage_charts(state: &AppState) -> Vec<ChartView> {
    let now = state.server.clock().now();
    let features = state.server.history_features().await.unwrap_or_default();
    let mut charts = Vec::new();
    for feature in &features {
        for (label, since, recent) in [
            ("last 24 hours", now - chrono::Duration::hours(24), true),
            ("last 30 days", now - chrono::Duration::days(30), false),
        ] {
            let points = if recent {
                state.server.usage_recent(Some(feature), since).await
            } else {
                state.server.usage_history(Some(feature), since).await
            };
            let points = match points {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e.message, "usage history unavailable");
                    continue;
                }
            };
            let title = format!("{feature}: concurrent use, {label}");
            let peak = points.iter().map(|p| p.peak_in_use).max().unwrap_or(0);
            let licensed = points.iter().map(|p| p.licensed).max().unwrap_or(0);
            let denials: u64 = points.iter().map(|p| p.denials).sum();
            let while_free: u64 = points.iter().map(|p| p.denials_while_free).sum();
            let summary = if points.is_empty() {
                format!("No {feature} usage recorded in the {label}.")
            } else {
                format!(
                    "Highest use {peak} of {licensed} licensed; {denials} request{} denied, {while_free} of them while a license was free.",
                    if denials == 1 { "" } else { "s" }
                )
            };
            charts.push(ChartView {
                svg: crate::charts::usage_chart_svg(&title, &points, since, now),
                title,
                summary,
            });
        }
    }
    charts
}

#[derive(Debug, Deserialize)]
pub struct DiagnosticsQuery {
    /// `nodes` runs the network checks against every configured node now.
    #[serde(default)]
    check: Option<String>,
}

/// Recent log lines as the page shows them: `time LEVEL rest`.
fn log_views(lines: Vec<String>) -> Vec<LogLineView> {
    lines
        .into_iter()
        .rev()
        .take(200)
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            LogLineView {
                time: parts.next().unwrap_or_default().to_string(),
                level: parts.next().unwrap_or_default().to_string(),
                text: parts.next().unwrap_or_default().to_string(),
            }
        })
        .collect()
}

async fn node_checks(state: &AppState) -> Vec<crate::diagnostics::NodeDiagnostics> {
    let nodes = state.dashboard.running().nodes;
    let clock = state.server.clock().clone();
    let conn = state.server.node_connection().clone();
    let checks = nodes.iter().map(|url| {
        let clock = clock.clone();
        let conn = conn.clone();
        async move {
            crate::diagnostics::check_node_with(
                url,
                std::time::Duration::from_secs(5),
                clock.as_ref(),
                &conn,
            )
            .await
        }
    });
    futures_join_all(checks).await
}

/// Runs the checks one after the other (a handful of nodes; each is bounded by its timeout).
async fn futures_join_all<F: std::future::Future<Output = T>, T>(
    futs: impl Iterator<Item = F>,
) -> Vec<T> {
    let mut out = Vec::new();
    for f in futs {
        out.push(f.await);
    }
    out
}

fn config_for_bundle(state: &AppState) -> String {
    let target = state.dashboard.config_target();
    let r = state.dashboard.running();
    let (listeners, node_path) = r.transport_words();
    // What is in force, whatever the file says (flags and the environment win over it).
    let in_force =
        format!("\n[in_force]\nlisteners = {listeners:?}\nway_to_nodes = {node_path:?}\n");
    match std::fs::read_to_string(&target) {
        Ok(text) => crate::diagnostics::redact_config(&format!("{text}{in_force}")),
        Err(_) => format!(
            "# settings from flags and environment (no config file)\nlisten = \"{}\"\nadmin_listen = \"{}\"\nnodes = {:?}\nnode_timeout = \"{}\"\n{in_force}",
            r.listen,
            r.admin_listen,
            r.nodes,
            humantime::format_duration(r.node_timeout)
        ),
    }
}

/// `GET /diagnostics/bundle`: config without secrets, status, node checks, data directory
/// and recent logs, as one JSON file to send to support.
pub async fn support_bundle_get(_session: Session, State(state): State<AppState>) -> Response {
    let status = match state.server.status().await {
        Ok(s) => s,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.message).into_response(),
    };
    let nodes = node_checks(&state).await;
    let health = crate::diagnostics::data_dir_health(state.server.data_dir());
    let body = crate::diagnostics::support_bundle(
        &status,
        &config_for_bundle(&state),
        &state.dashboard.logs.lines(),
        &health,
        &nodes,
    );
    let name = format!(
        "leasehold-support-{}.json",
        state.server.clock().now().format("%Y%m%d-%H%M%S")
    );
    (
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

pub async fn diagnostics_get(
    session: Session,
    State(state): State<AppState>,
    Query(query): Query<DiagnosticsQuery>,
) -> Response {
    let status = match status_or_page(&state, &session, "Diagnostics").await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let now = state.server.clock().now();
    let mut checks = Vec::new();
    checks.push(match status.guid {
        Some(g) => CheckView::ok("Server GUID", format!("set: {g}")),
        None => CheckView::problem(
            "Server GUID",
            "not set: enter it on the Setup page; the server serves no licenses without it",
        ),
    });
    checks.push(match (&status.storage_failing_since, &status.storage_error) {
        (Some(since), error) => CheckView::problem(
            "Data directory",
            format!(
                "cannot be written since {} ({}): {}. Licenses are still served and usage is kept in memory and retried, but nothing new is durable: free space or fix the file system",
                time(Some(*since), ""),
                relative(*since, now),
                error.as_deref().unwrap_or("unknown error")
            ),
        ),
        (None, _) => CheckView::ok("Data directory", "usage and lease state are being saved"),
    });
    checks.push(match (&status.last_sync, &status.last_sync_error) {
        (_, Some(e)) => CheckView::problem(
            "Last sync",
            format!(
                "failed: {e} (last success: {})",
                time(status.last_sync, "never")
            ),
        ),
        (Some(t), None) => CheckView::ok(
            "Last sync",
            format!("succeeded {} ({})", time(Some(*t), ""), relative(*t, now)),
        ),
        (None, None) => CheckView::warning("Last sync", "this server has not synced yet"),
    });
    let nodes = state.dashboard.running().nodes;
    if nodes.is_empty() {
        checks.push(CheckView::warning(
            "License nodes",
            "none configured: air-gapped, sync by file with export-upload and import-bundle",
        ));
    }
    for n in status.nodes.iter().filter(|n| nodes.contains(&n.url)) {
        let name = format!("Node {}", n.url);
        checks.push(match (&n.last_ok, &n.last_error) {
            (_, Some(e)) => CheckView::problem(name, format!("last attempt failed: {e}")),
            (Some(t), None) => CheckView::ok(
                name,
                format!("answered at the last attempt, {}", relative(*t, now)),
            ),
            (None, None) => CheckView::warning(name, "not tried yet"),
        });
    }
    checks.push(match status.grace_days_left {
        None => CheckView::warning("Days of grace left", "no bundle yet"),
        Some(0) => CheckView::problem(
            "Days of grace left",
            "none: licenses are suspended until a sync succeeds",
        ),
        Some(d) if d < 14 => CheckView::warning(
            "Days of grace left",
            format!(
                "{d}: sync soon, or licenses are suspended at {}",
                time(status.not_after, "—")
            ),
        ),
        Some(d) => CheckView::ok(
            "Days of grace left",
            format!("{d} (until {})", time(status.not_after, "—")),
        ),
    });
    checks.push(if status.state == ServerState::ClockTampered {
        CheckView::problem(
            "System clock",
            status
                .reason
                .clone()
                .unwrap_or_else(|| "the clock was set back".into()),
        )
    } else {
        CheckView::ok(
            "System clock",
            format!(
                "{}: not behind the latest time this server has seen",
                time(Some(now), "")
            ),
        )
    });
    checks.push(if status.pending_usage_buckets == 0 {
        CheckView::ok("Usage waiting to upload", "none")
    } else {
        CheckView::ok(
            "Usage waiting to upload",
            format!(
                "{} feature-hours, sent with the next sync",
                status.pending_usage_buckets
            ),
        )
    });
    let health = crate::diagnostics::data_dir_health(state.server.data_dir());
    let space = health
        .available_bytes
        .map(|b| format!("{} MiB free", b / (1024 * 1024)))
        .unwrap_or_else(|| "free space unknown".into());
    let db = format!(
        "database {} KiB, write-ahead log {} KiB, {space}",
        health.db_bytes / 1024,
        health.wal_bytes / 1024
    );
    checks.push(if health.ok() {
        CheckView::ok("Data directory", format!("writable; {db}"))
    } else {
        CheckView::problem(
            "Data directory",
            format!("{}; {db}", health.problems.join("; ")),
        )
    });
    let ran_node_checks = query.check.as_deref() == Some("nodes");
    if ran_node_checks {
        for n in node_checks(&state).await {
            for step in &n.steps {
                let name = format!("{} — {}", n.url, step.name);
                let detail = format!("{} ({} ms)", step.detail, step.millis);
                checks.push(match step.level {
                    crate::diagnostics::StepLevel::Ok => CheckView::ok(name, detail),
                    crate::diagnostics::StepLevel::Warn
                    | crate::diagnostics::StepLevel::Skipped => CheckView::warning(name, detail),
                    crate::diagnostics::StepLevel::Failed => CheckView::problem(name, detail),
                });
            }
        }
    }
    let page = DiagnosticsPage {
        layout: layout(&state, &session, "Diagnostics", "/diagnostics", &status),
        checks,
        log_lines: log_views(state.dashboard.logs.lines()),
        support_bundle_url: Some("/diagnostics/bundle".into()),
        ran_node_checks,
        instance: state.server.instance_id().to_string(),
        version: env!("CARGO_PKG_VERSION"),
        data_dir: state.server.data_dir().display().to_string(),
    };
    render(StatusCode::OK, &page)
}
