//! What the console's templates show: one struct per template (askama checks them at
//! compile time), the frame every page shares, and the words, marks and times the pages
//! share. Values are formatted here so the templates stay plain.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use leasehold_proto::api::staff::{AuditEntry, Role};
use leasehold_proto::ServerGuid;
use leasehold_web::browser::Flash;

use crate::api::{EventKind, LicenseView, ServerView, VendorEvent};
use crate::service::ConsoleSession;

/// Renders a template into a page with `status`.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    leasehold_web::browser::html_page(status, template.render(), "console")
}

pub use leasehold_web::browser::{FlashView, NavItem};

const NAV: [(&str, &str); 7] = [
    ("/console", "Search"),
    ("/console/installations", "Installations"),
    ("/console/events", "Events"),
    ("/console/reports/usage", "Usage report"),
    ("/console/audit", "Audit log"),
    ("/console/accounts", "Accounts"),
    ("/console/account", "My account"),
];

/// The frame of every page: navigation, who is signed in, the flash message.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    pub signed_in: bool,
    pub account: String,
    pub role: String,
    pub is_admin: bool,
    pub csrf: String,
    pub nav: Vec<NavItem>,
    pub flash: Option<FlashView>,
}

impl Layout {
    pub fn new(title: &str, current: &str, session: &ConsoleSession) -> Self {
        Self {
            title: title.into(),
            signed_in: true,
            account: session.account.name.to_string(),
            role: session.account.role.to_string(),
            is_admin: session.account.role == Role::Admin,
            csrf: session.csrf.clone(),
            nav: leasehold_web::browser::nav(&NAV, current),
            flash: session.flash.as_deref().map(|f| Flash::decode(f).into()),
        }
    }

    pub fn signed_out(title: &str) -> Self {
        Self {
            title: title.into(),
            signed_in: false,
            account: String::new(),
            role: String::new(),
            is_admin: false,
            csrf: String::new(),
            nav: Vec::new(),
            flash: None,
        }
    }
}

#[derive(Template)]
#[template(path = "console/message.html")]
pub struct MessagePage {
    pub layout: Layout,
    pub heading: String,
    pub message: String,
    pub back: String,
}

pub fn message_page(
    code: StatusCode,
    session: Option<&ConsoleSession>,
    heading: &str,
    message: &str,
    back: &str,
) -> Response {
    let mut layout = match session {
        Some(s) => Layout::new(heading, "", s),
        None => Layout::signed_out(heading),
    };
    // A message page shows its own words, not a flash meant for the next page.
    layout.flash = None;
    render(
        code,
        &MessagePage {
            layout,
            heading: heading.into(),
            message: message.into(),
            back: back.into(),
        },
    )
}

/// The page of a failed read or change: the service's words, with the status they carry.
pub fn error_page(session: &ConsoleSession, e: &leasehold_web::ApiError, back: &str) -> Response {
    let heading = match e.status() {
        StatusCode::NOT_FOUND => "Not found (404)",
        StatusCode::FORBIDDEN => "Not allowed (403)",
        StatusCode::BAD_REQUEST => "Not understood (400)",
        s if s.is_server_error() => "Something went wrong",
        _ => "Refused",
    };
    message_page(e.status(), Some(session), heading, &e.message, back)
}

#[derive(Template)]
#[template(path = "console/login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub next: String,
    pub name: String,
    pub login_csrf: String,
    pub error: Option<String>,
    pub notice: Option<String>,
}

pub fn time(t: Option<DateTime<Utc>>, none: &str) -> String {
    t.map_or_else(
        || none.into(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

pub use leasehold_web::browser::{date_mark, relative, span};

pub fn server_link(guid: ServerGuid) -> String {
    format!("/console/servers/{}", guid.bare())
}

/// One server in a table.
#[derive(Debug, Clone)]
pub struct ServerRow {
    pub guid: String,
    pub link: String,
    pub context: String,
    pub last_sync: String,
    /// Days of grace left, or why none.
    pub grace: String,
    /// `good`, `warn` or `bad`.
    pub grace_class: &'static str,
    /// A copy of the server was refused since the GUID was last reassigned.
    pub fork_alert: Option<String>,
    pub instance: String,
    pub software_version: String,
    pub interval: String,
    pub licenses: usize,
}

impl ServerRow {
    pub fn of(s: &ServerView, now: DateTime<Utc>) -> Self {
        let (grace, grace_class) = match s.last_sync {
            None => ("never synced: no licenses served yet".to_string(), "warn"),
            Some(last) => {
                let end = last + chrono::Duration::days(i64::from(s.grace_days));
                let left = end - now;
                if left <= chrono::Duration::zero() {
                    (
                        format!("✖ ended {} (licenses suspended)", end.format("%Y-%m-%d")),
                        "bad",
                    )
                } else {
                    let days = left.num_days();
                    (
                        format!(
                            "{}{days} day{} (until {})",
                            if days <= 14 { "⚠ " } else { "" },
                            if days == 1 { "" } else { "s" },
                            end.format("%Y-%m-%d")
                        ),
                        if days <= 14 { "warn" } else { "good" },
                    )
                }
            }
        };
        Self {
            guid: s.guid.to_string(),
            link: server_link(s.guid),
            context: s.context.to_string(),
            last_sync: s
                .last_sync
                .map_or_else(|| "never".into(), |t| format!("{} ({})", time(Some(t), ""), relative(t, now))),
            grace,
            grace_class,
            fork_alert: s.fork_open().then(|| {
                format!(
                    "⚠ GUID conflict: {} sync{} of a second copy refused, the last {}. Reassign the GUID to let the right copy sync.",
                    s.forks_detected,
                    if s.forks_detected == 1 { "" } else { "s" },
                    time(s.last_fork, "at an unknown time")
                )
            }),
            instance: s
                .instance_id
                .as_ref()
                .map_or_else(|| "none bound (free for the next server that syncs)".into(), |i| i.to_string()),
            software_version: s.software_version.clone().unwrap_or_else(|| "—".into()),
            interval: span(s.sync_interval_secs),
            licenses: s.licenses.len(),
        }
    }
}

/// One license in a table.
#[derive(Debug, Clone)]
pub struct LicenseRow {
    pub id: String,
    pub link: String,
    pub feature: String,
    pub count: u32,
    pub context: String,
    pub server: String,
    pub server_link: String,
    pub maintenance: String,
    pub expires: String,
    pub backs_up: String,
    pub backs_up_link: String,
    pub marks: Vec<String>,
    pub revoked: Option<String>,
}

impl LicenseRow {
    pub fn of(l: &LicenseView, today: NaiveDate) -> Self {
        let lic = &l.license;
        let mut marks = Vec::new();
        if let Some(m) = date_mark(lic.maintenance_until, today, "maintenance") {
            marks.push(m);
        }
        if let Some(m) = lic.expires.and_then(|e| date_mark(e, today, "license")) {
            marks.push(m);
        }
        Self {
            id: lic.id.to_string(),
            link: format!("/console/licenses/{}", lic.id),
            feature: lic.feature.to_string(),
            count: lic.count,
            context: lic.context.to_string(),
            server: l.server.to_string(),
            server_link: server_link(l.server),
            maintenance: lic.maintenance_until.to_string(),
            expires: lic
                .expires
                .map_or_else(|| "never (perpetual)".into(), |d| d.to_string()),
            backs_up: lic
                .backs_up
                .as_ref()
                .map_or_else(String::new, |b| b.to_string()),
            backs_up_link: lic
                .backs_up
                .as_ref()
                .map_or_else(String::new, |b| format!("/console/licenses/{b}")),
            marks,
            revoked: l.revoked_at.map(|t| time(Some(t), "")),
        }
    }
}

/// One vendor event in a table.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub icon: &'static str,
    pub kind: &'static str,
    pub server: String,
    pub server_link: String,
    pub installation: String,
    pub installation_link: String,
    pub context: String,
    pub at: String,
    pub detail: String,
}

impl EventRow {
    pub fn of(e: &VendorEvent) -> Self {
        let (icon, kind) = match e.kind {
            EventKind::Fork => ("⚠", "GUID conflict (fork)"),
            EventKind::ContextRejection => ("⚠", "Context rejected"),
            EventKind::GraceEnded => ("✖", "Grace ended"),
            EventKind::GraceEnding => ("⚠", "Grace ending"),
            EventKind::Silent => ("…", "Silent"),
        };
        Self {
            icon,
            kind,
            server: e.server.to_string(),
            server_link: server_link(e.server),
            installation: e.installation.to_string(),
            installation_link: format!("/console/installations/{}", e.installation),
            context: e.context.to_string(),
            at: time(e.at, "—"),
            detail: e.detail.clone(),
        }
    }
}

/// One changed field of an audit entry.
#[derive(Debug, Clone)]
pub struct ChangeLine {
    pub field: String,
    pub before: String,
    pub after: String,
}

/// One audit entry in a table.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: u64,
    pub at: String,
    pub actor: String,
    pub role: String,
    pub via: &'static str,
    pub action: &'static str,
    pub words: &'static str,
    pub target: String,
    pub target_link: Option<String>,
    pub reason: String,
    pub installations: Vec<(String, String)>,
    /// The servers it touched beside its target (a license's, both of a transfer).
    pub servers: Vec<(String, String)>,
    /// The top-level fields that differ between before and after.
    pub changes: Vec<ChangeLine>,
    pub before: String,
    pub after: String,
}

fn short_json(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "—".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => {
            let text = other.to_string();
            if text.chars().count() > 120 {
                format!("{}…", text.chars().take(120).collect::<String>())
            } else {
                text
            }
        }
    }
}

impl AuditRow {
    pub fn of(e: &AuditEntry) -> Self {
        let target_link = if let Ok(g) = ServerGuid::parse(&e.target) {
            Some(server_link(g))
        } else if leasehold_proto::LicenseId::parse(&e.target).is_ok() {
            Some(format!("/console/licenses/{}", e.target))
        } else if leasehold_proto::InstallationId::parse(&e.target).is_ok() {
            Some(format!("/console/installations/{}", e.target))
        } else {
            None
        };
        let mut changes = Vec::new();
        let before = e.before.as_ref().and_then(|v| v.as_object());
        let after = e.after.as_ref().and_then(|v| v.as_object());
        if let (Some(b), Some(a)) = (before, after) {
            for (k, av) in a {
                let bv = b.get(k);
                if bv != Some(av) {
                    changes.push(ChangeLine {
                        field: k.clone(),
                        before: short_json(bv),
                        after: short_json(Some(av)),
                    });
                }
            }
        } else if let Some(a) = after.or(before) {
            // A creation (or a removal): its fields that have a value.
            for (k, v) in a.iter().filter(|(_, v)| !v.is_null()).take(8) {
                changes.push(ChangeLine {
                    field: k.clone(),
                    before: if after.is_some() {
                        "—".into()
                    } else {
                        short_json(Some(v))
                    },
                    after: if after.is_some() {
                        short_json(Some(v))
                    } else {
                        "—".into()
                    },
                });
            }
        }
        let pretty = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .and_then(|v| serde_json::to_string_pretty(v).ok())
                .unwrap_or_else(|| "—".into())
        };
        Self {
            id: e.id,
            at: e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            actor: e.actor.clone(),
            role: e.role.map_or_else(|| "—".into(), |r| r.to_string()),
            via: e.via.as_str(),
            action: e.action.as_str(),
            words: e.action.words(),
            target: e.target.clone(),
            target_link,
            reason: e.reason.clone(),
            installations: e
                .installations
                .iter()
                .map(|i| (i.to_string(), format!("/console/installations/{i}")))
                .collect(),
            servers: e
                .servers
                .iter()
                .filter(|g| g.to_string() != e.target)
                .map(|g| (g.to_string(), server_link(*g)))
                .collect(),
            changes,
            before: pretty(&e.before),
            after: pretty(&e.after),
        }
    }
}

/// One option of a `<select>` or a suggestion of a text field.
#[derive(Debug, Clone)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

impl Choice {
    pub fn new(value: impl Into<String>, label: impl Into<String>, current: &str) -> Self {
        let value = value.into();
        Self {
            selected: value == current,
            label: label.into(),
            value,
        }
    }
}

/// One input of an action's form.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    /// `text`, `number`, `date`, `select`, `file`.
    pub kind: &'static str,
    pub value: String,
    pub help: String,
    pub error: Option<String>,
    pub required: bool,
    pub choices: Vec<Choice>,
    /// Values offered for a text field (a `<datalist>`).
    pub suggestions: Vec<Choice>,
}

impl Field {
    pub fn new(name: &'static str, label: &'static str, kind: &'static str, value: &str) -> Self {
        Self {
            name,
            label,
            kind,
            value: value.to_owned(),
            help: String::new(),
            error: None,
            required: true,
            choices: Vec::new(),
            suggestions: Vec::new(),
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = help.into();
        self
    }

    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    pub fn choices(mut self, choices: Vec<Choice>) -> Self {
        self.choices = choices;
        self
    }

    pub fn suggestions(mut self, suggestions: Vec<Choice>) -> Self {
        self.suggestions = suggestions;
        self
    }
}

/// A label and a value.
#[derive(Debug, Clone)]
pub struct Fact {
    pub label: String,
    pub value: String,
}

impl Fact {
    pub fn new(label: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            value: value.into(),
        }
    }
}

/// The form of an action: what it acts on, its inputs, and "Review".
#[derive(Template)]
#[template(path = "console/action.html")]
pub struct ActionPage {
    pub layout: Layout,
    pub heading: String,
    pub intro: String,
    pub facts: Vec<Fact>,
    pub fields: Vec<Field>,
    pub action: String,
    pub submit: String,
    pub cancel: String,
    pub multipart: bool,
    pub error: Option<String>,
}

/// The confirmation of an action: what will change, a reason, "Confirm".
#[derive(Template)]
#[template(path = "console/confirm.html")]
pub struct ConfirmPage {
    pub layout: Layout,
    pub heading: String,
    pub lines: Vec<Fact>,
    pub warning: Option<String>,
    pub hidden: Vec<Fact>,
    pub action: String,
    pub confirm: String,
    pub cancel: String,
    pub reason: String,
    pub reason_error: Option<String>,
    /// The change cannot be undone by the same action (revoke, reassign).
    pub danger: bool,
}

/// A result shown once: a new password or token.
#[derive(Template)]
#[template(path = "console/done.html")]
pub struct DonePage {
    pub layout: Layout,
    pub heading: String,
    pub message: String,
    pub secret_label: String,
    pub secret: String,
    pub note: String,
    pub back: String,
    pub back_label: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn an_audit_row_lists_what_changed() {
        let e = AuditEntry {
            id: 7,
            at: Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap(),
            actor: "sam".into(),
            role: Some(Role::Support),
            via: leasehold_proto::api::staff::Via::Console,
            action: leasehold_proto::api::staff::AuditAction::ServerReassign,
            installations: vec![],
            servers: vec![],
            target: "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}".into(),
            reason: "ticket 42".into(),
            before: Some(serde_json::json!({"instance_id": "inst-1", "grace_days": 60})),
            after: Some(serde_json::json!({"instance_id": null, "grace_days": 60})),
        };
        let row = AuditRow::of(&e);
        assert_eq!(row.changes.len(), 1);
        assert_eq!(row.changes[0].field, "instance_id");
        assert_eq!(row.changes[0].before, "inst-1");
        assert_eq!(row.changes[0].after, "—");
        assert_eq!(
            row.target_link.as_deref(),
            Some("/console/servers/DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E")
        );
    }
}
