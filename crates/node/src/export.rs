//! The vendor's reports as CSV, one format for the console's downloads and the
//! `leasehold vendor` CLI: an installation's usage report, the events, and the audit log.
//! Written with the `csv` crate, so a name or a reason with commas, quotes or line breaks
//! stays in its cell.

use leasehold_proto::api::staff::AuditEntry;

use crate::api::{InstallationUsage, VendorEvents};

fn finish(w: csv::Writer<Vec<u8>>) -> String {
    w.into_inner()
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

/// One line per day, feature and context, then one per hour in which backup licenses were
/// used beside production ones.
pub fn usage_csv(r: &InstallationUsage) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "kind",
        "day_or_hour",
        "feature",
        "context_or_backup_server",
        "peak_in_use",
        "peak_hours",
        "license_secs",
        "grants",
        "denials",
        "denials_while_free",
        "backup_use_secs",
    ]);
    for d in &r.days {
        let _ = w.write_record([
            "day".to_string(),
            d.day.to_string(),
            d.feature.to_string(),
            d.context.to_string(),
            d.peak_in_use.to_string(),
            d.peak_hours.to_string(),
            d.license_secs.to_string(),
            d.grants.to_string(),
            d.denials.to_string(),
            d.denials_while_free.to_string(),
            String::new(),
        ]);
    }
    for s in &r.simultaneous {
        let _ = w.write_record([
            "simultaneous".to_string(),
            s.hour.to_rfc3339(),
            s.feature.to_string(),
            s.backup_server.to_string(),
            s.production_peak.to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            s.backup_use_secs.to_string(),
        ]);
    }
    finish(w)
}

/// One line per event.
pub fn events_csv(e: &VendorEvents) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(["kind", "server", "context", "installation", "at", "detail"]);
    for ev in &e.events {
        let _ = w.write_record([
            ev.kind.as_str().to_string(),
            ev.server.to_string(),
            ev.context.to_string(),
            ev.installation.to_string(),
            ev.at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            ev.detail.clone(),
        ]);
    }
    finish(w)
}

/// One line per audit entry; before and after as JSON.
pub fn audit_csv(entries: &[AuditEntry]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "id",
        "at",
        "actor",
        "role",
        "via",
        "action",
        "target",
        "installations",
        "servers",
        "reason",
        "before",
        "after",
    ]);
    let json =
        |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_default();
    for e in entries {
        let _ = w.write_record([
            e.id.to_string(),
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            e.actor.clone(),
            e.role.map(|r| r.to_string()).unwrap_or_default(),
            e.via.as_str().to_string(),
            e.action.as_str().to_string(),
            e.target.clone(),
            e.installations
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            e.servers
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            e.reason.clone(),
            json(&e.before),
            json(&e.after),
        ]);
    }
    finish(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use leasehold_proto::api::staff::{AuditAction, Role, Via};

    #[test]
    fn a_reason_with_commas_quotes_and_lines_stays_in_its_cell() {
        let e = AuditEntry {
            id: 3,
            at: chrono::Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap(),
            actor: "sam".into(),
            role: Some(Role::Support),
            via: Via::Console,
            action: AuditAction::ServerReassign,
            installations: vec![leasehold_proto::InstallationId::from_random([1; 8])],
            servers: vec![],
            target: "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}".into(),
            reason: "ticket 7, \"restored\"\nfrom backup".into(),
            before: Some(serde_json::json!({"a": 1})),
            after: None,
        };
        let text = audit_csv(&[e]);
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][9], "ticket 7, \"restored\"\nfrom backup");
        assert_eq!(&rows[0][10], "{\"a\":1}");
        assert_eq!(&rows[0][5], "server.reassign");
    }
}
