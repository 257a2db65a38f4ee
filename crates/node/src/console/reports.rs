//! The console's CSV downloads: the usage report of an installation, the events and the
//! audit log (with the filters of the page they are linked from), in the same format as
//! `leasehold vendor … --csv` ([`crate::export`]).

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth::Signed;
use super::pages::{silent_days, usage_report, EventsQuery, UsageQuery};
use super::views::{error_page, message_page};
use crate::http::{AuditParams, NodeState};
use crate::service::MAX_AUDIT_PAGE;

/// Most audit entries one CSV download holds (the newest, with the page's filters).
const MAX_AUDIT_CSV: usize = 50_000;

fn csv_download(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
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

pub async fn usage_csv_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Query(q): Query<UsageQuery>,
) -> Response {
    match usage_report(&state, &q).await {
        Ok(Some((_, report))) => csv_download(
            &format!(
                "leasehold-usage-{}-{}-{}.csv",
                report.installation, report.from, report.to
            ),
            crate::export::usage_csv(&report),
        ),
        Ok(None) => message_page(
            StatusCode::BAD_REQUEST,
            Some(&session),
            "Which installation? (400)",
            "The usage report needs an installation id (installation=inst_…).",
            "/console/reports/usage",
        ),
        Err(e) => error_page(&session, &e, "/console/reports/usage"),
    }
}

pub async fn events_csv_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    Query(q): Query<EventsQuery>,
) -> Response {
    let days = match silent_days(&q) {
        Ok(d) => d,
        Err(e) => {
            return error_page(
                &session,
                &leasehold_web::ApiError::bad_request(e),
                "/console/events",
            )
        }
    };
    match state.node.events(days).await {
        Ok(events) => csv_download(
            &format!("leasehold-events-{}.csv", events.at.format("%Y-%m-%d")),
            crate::export::events_csv(&events),
        ),
        Err(e) => error_page(&session, &e, "/console/events"),
    }
}

/// Every entry the filters match, newest first, read a page at a time.
pub async fn audit_csv_get(
    Signed(session): Signed,
    State(state): State<NodeState>,
    query: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(p)) = query else {
        return error_page(
            &session,
            &leasehold_web::ApiError::bad_request("the audit filters are not understood"),
            "/console/audit",
        );
    };
    let mut entries = Vec::new();
    let mut before = p.before;
    loop {
        let page = async {
            let mut q = p.query()?;
            q.before_id = before;
            q.limit = MAX_AUDIT_PAGE;
            state.node.audit(q).await
        }
        .await;
        match page {
            Ok(page) => {
                entries.extend(page.entries);
                match page.next_before {
                    Some(b) if entries.len() < MAX_AUDIT_CSV => before = Some(b),
                    _ => break,
                }
            }
            Err(e) => return error_page(&session, &e, "/console/audit"),
        }
    }
    csv_download(
        &format!(
            "leasehold-audit-{}.csv",
            state.node.now().format("%Y-%m-%d")
        ),
        crate::export::audit_csv(&entries),
    )
}
