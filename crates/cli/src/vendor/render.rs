//! The human (non-`--json`) form of every answer `leasehold vendor` prints.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use leasehold_node::api::{
    InstallationList, InstallationUsage, InstallationView, LicenseView, ServerView, UsageReport,
    VendorEvents,
};
use leasehold_proto::{Context, License, ServerGuid};
use serde::Serialize;

use super::output::{key_values, or_dash, Human, Table};

/// What `keygen` prints; the private key itself only goes to the file.
#[derive(Debug, Serialize)]
pub struct KeygenOutput {
    pub kid: String,
    pub public_key: String,
    #[serde(skip)]
    pub out: String,
}

/// What `sync-file` prints about the bundle it wrote.
#[derive(Debug, Serialize)]
pub struct SyncFileOutput {
    pub out: String,
    pub kid: String,
    pub server_guid: ServerGuid,
    pub context: Context,
    pub serial: u64,
    pub not_after: DateTime<Utc>,
    pub licenses: usize,
    pub acked_usage_seq: u64,
}

pub(super) fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Human for KeygenOutput {
    fn human(&self) -> String {
        key_values(&[
            ("private key written to", self.out.clone()),
            ("kid", self.kid.clone()),
            ("public key", self.public_key.clone()),
        ])
    }
}

impl Human for SyncFileOutput {
    fn human(&self) -> String {
        key_values(&[
            ("bundle written to", self.out.clone()),
            ("server", self.server_guid.to_string()),
            ("context", self.context.to_string()),
            ("serial", self.serial.to_string()),
            ("licenses", self.licenses.to_string()),
            ("valid until", time(&self.not_after)),
            ("usage acknowledged", self.acked_usage_seq.to_string()),
            ("signed by key", self.kid.clone()),
        ])
    }
}

fn servers_cell(view: &InstallationView) -> String {
    if view.servers.is_empty() {
        return "-".into();
    }
    view.servers
        .iter()
        .map(|s| format!("{} ({})", s.guid, s.context))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Human for InstallationView {
    fn human(&self) -> String {
        key_values(&[
            ("id", self.id.to_string()),
            ("name", self.name.clone()),
            ("created", time(&self.created_at)),
            ("servers", servers_cell(self)),
        ])
    }
}

impl Human for InstallationList {
    fn human(&self) -> String {
        let mut table = Table::new(&["ID", "NAME", "CREATED", "SERVERS"]);
        for i in &self.installations {
            table.row(vec![
                i.id.to_string(),
                i.name.clone(),
                time(&i.created_at),
                servers_cell(i),
            ]);
        }
        if table.is_empty() {
            return "no installations\n".into();
        }
        table.render()
    }
}

fn license_table(licenses: &[License]) -> Table {
    let mut table = Table::new(&[
        "ID",
        "FEATURE",
        "COUNT",
        "CONTEXT",
        "MAINTENANCE",
        "EXPIRES",
        "BACKS UP",
    ]);
    for l in licenses {
        table.row(vec![
            l.id.to_string(),
            l.feature.to_string(),
            l.count.to_string(),
            l.context.to_string(),
            l.maintenance_until.to_string(),
            or_dash(l.expires),
            or_dash(l.backs_up.as_ref()),
        ]);
    }
    table
}

impl Human for ServerView {
    fn human(&self) -> String {
        let mut text = key_values(&[
            ("guid", self.guid.to_string()),
            ("context", self.context.to_string()),
            ("installation", self.installation.to_string()),
            ("grace days", self.grace_days.to_string()),
            (
                "sync interval",
                humantime::format_duration(Duration::from_secs(self.sync_interval_secs))
                    .to_string(),
            ),
            (
                "last sync",
                self.last_sync.as_ref().map_or_else(|| "never".into(), time),
            ),
            ("instance", or_dash(self.instance_id.as_ref())),
            ("software version", or_dash(self.software_version.as_ref())),
            ("bundle serial", self.bundle_serial.to_string()),
            ("usage acknowledged", self.acked_usage_seq.to_string()),
            ("forks detected", self.forks_detected.to_string()),
        ]);
        text.push('\n');
        if self.licenses.is_empty() {
            text.push_str("licenses: none\n");
        } else {
            text.push_str("licenses:\n");
            text.push_str(&license_table(&self.licenses).render());
        }
        text
    }
}

impl Human for LicenseView {
    fn human(&self) -> String {
        let l = &self.license;
        key_values(&[
            ("id", l.id.to_string()),
            ("server", self.server.to_string()),
            ("feature", l.feature.to_string()),
            ("count", l.count.to_string()),
            ("context", l.context.to_string()),
            ("maintenance until", l.maintenance_until.to_string()),
            (
                "expires",
                l.expires.map_or_else(|| "never".into(), |d| d.to_string()),
            ),
            ("backs up", or_dash(l.backs_up.as_ref())),
            (
                "revoked",
                self.revoked_at.as_ref().map_or_else(|| "no".into(), time),
            ),
        ])
    }
}

impl Human for UsageReport {
    fn human(&self) -> String {
        if self.rows.is_empty() {
            return format!("no usage reported by {}\n", self.server);
        }
        let mut table = Table::new(&[
            "HOUR",
            "FEATURE",
            "PEAK",
            "LICENSE-HOURS",
            "GRANTS",
            "DENIALS",
            "WHILE FREE",
            "BACKUP SECS",
        ]);
        for r in &self.rows {
            table.row(vec![
                time(&r.hour),
                r.feature.to_string(),
                r.peak_in_use.to_string(),
                license_hours(r.license_secs),
                r.grants.to_string(),
                r.denials.to_string(),
                r.denials_while_free.to_string(),
                r.backup_use_secs.to_string(),
            ]);
        }
        format!("usage reported by {}\n{}", self.server, table.render())
    }
}

impl Human for InstallationUsage {
    fn human(&self) -> String {
        let mut out = format!(
            "usage of installation {} from {} to {} (UTC days)\n",
            self.installation, self.from, self.to
        );
        if self.days.is_empty() {
            out.push_str("no usage reported in this period\n");
        } else {
            let mut table = Table::new(&[
                "DAY",
                "FEATURE",
                "CONTEXT",
                "PEAK",
                "PEAK-HOURS",
                "LICENSE-HOURS",
                "GRANTS",
                "DENIALS",
                "WHILE FREE",
            ]);
            for d in &self.days {
                table.row(vec![
                    d.day.to_string(),
                    d.feature.to_string(),
                    d.context.to_string(),
                    d.peak_in_use.to_string(),
                    d.peak_hours.to_string(),
                    license_hours(d.license_secs),
                    d.grants.to_string(),
                    d.denials.to_string(),
                    d.denials_while_free.to_string(),
                ]);
            }
            out.push_str(&table.render());
        }
        if self.simultaneous.is_empty() {
            out.push_str("backup licenses were never used beside the production ones\n");
        } else {
            out.push_str(&format!(
                "FLAGGED: {} hour(s) in which a backup server served clients while the production server also reported use:\n",
                self.simultaneous.len()
            ));
            let mut table = Table::new(&[
                "HOUR",
                "FEATURE",
                "BACKUP SERVER",
                "BACKUP SECS",
                "PRODUCTION PEAK",
            ]);
            for s in &self.simultaneous {
                table.row(vec![
                    s.hour.format("%Y-%m-%d %H:00").to_string(),
                    s.feature.to_string(),
                    s.backup_server.to_string(),
                    s.backup_use_secs.to_string(),
                    s.production_peak.to_string(),
                ]);
            }
            out.push_str(&table.render());
        }
        out
    }
}

/// License-seconds as license-hours, two decimals.
fn license_hours(secs: u64) -> String {
    format!("{:.2}", secs as f64 / 3600.0)
}

impl Human for VendorEvents {
    fn human(&self) -> String {
        if self.events.is_empty() {
            return format!(
                "nothing to look at: no forks, no context rejections, no grace ending, no server silent for more than {} days\n",
                self.silent_days
            );
        }
        let mut table = Table::new(&["EVENT", "SERVER", "CONTEXT", "INSTALLATION", "AT", "DETAIL"]);
        for e in &self.events {
            table.row(vec![
                e.kind.as_str().to_owned(),
                e.server.to_string(),
                e.context.to_string(),
                e.installation.to_string(),
                e.at.map_or_else(
                    || "-".to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M").to_string(),
                ),
                e.detail.clone(),
            ]);
        }
        table.render()
    }
}
