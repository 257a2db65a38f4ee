//! The human (non-`--json`) form of what the `leasehold server` admin commands print.

use chrono::{DateTime, SecondsFormat, Utc};
use leasehold_proto::ServerGuid;
use leasehold_server::api::{
    ClientKeyView, ClientStatus, ServerState, Status, SyncOutcome, UsageExport,
};
use serde::Serialize;

use crate::vendor::output::{key_values, or_dash, Human, Table};

/// What `clients` prints: one object, so `--json` stays one JSON object.
#[derive(Debug, Serialize)]
pub struct ClientList {
    pub clients: Vec<ClientStatus>,
}

/// What `export-upload` prints about the file it wrote.
#[derive(Debug, Serialize)]
pub struct ExportOutput {
    pub out: String,
    pub server_guid: ServerGuid,
    pub last_bundle_serial: u64,
    pub usage_buckets: usize,
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn state_word(s: ServerState) -> &'static str {
    match s {
        ServerState::Unconfigured => "unconfigured",
        ServerState::NotSynced => "not synced",
        ServerState::Ok => "ok",
        ServerState::Expired => "expired",
        ServerState::ClockTampered => "clock tampered",
    }
}

impl Human for Status {
    fn human(&self) -> String {
        let mut pairs = vec![
            ("server GUID", or_dash(self.guid)),
            ("context", or_dash(self.context)),
            ("installation", or_dash(self.installation.as_ref())),
            ("state", state_word(self.state).to_owned()),
        ];
        if let Some(reason) = &self.reason {
            pairs.push(("reason", reason.clone()));
        }
        pairs.push((
            "data directory",
            match &self.storage_failing_since {
                Some(since) => format!(
                    "CANNOT BE WRITTEN since {}: {} (licenses are still served; usage is kept in memory and retried)",
                    time(since),
                    self.storage_error.as_deref().unwrap_or("unknown error")
                ),
                None => "ok (usage and lease state are being saved)".to_owned(),
            },
        ));
        if let Some(until) = &self.learning_until {
            pairs.push((
                "learning until",
                format!("{} (confirming leases held before a restart)", time(until)),
            ));
        }
        pairs.push(("clients", self.clients.to_string()));
        let last_sync = match (&self.last_sync, &self.last_sync_node) {
            (Some(t), Some(node)) => format!("{} via {node}", time(t)),
            (Some(t), None) => time(t),
            _ => "never".to_owned(),
        };
        pairs.push(("last sync", last_sync));
        if let Some(e) = &self.last_sync_error {
            pairs.push(("last sync error", e.clone()));
        }
        pairs.push(("next sync", or_dash(self.next_sync.as_ref().map(time))));
        let valid = match (&self.not_after, self.grace_days_left) {
            (Some(t), Some(days)) => format!("{} ({days} days of grace left)", time(t)),
            (Some(t), None) => time(t),
            _ => "-".to_owned(),
        };
        pairs.push(("licenses valid until", valid));
        pairs.push(("bundle serial", self.bundle_serial.to_string()));
        if let Some(kid) = &self.bundle_key_id {
            pairs.push(("signed by key", kid.clone()));
        }
        pairs.push((
            "usage not yet uploaded",
            format!("{} hour buckets", self.pending_usage_buckets),
        ));
        let mut text = key_values(&pairs);

        text.push('\n');
        if self.licenses.is_empty() {
            text.push_str("no licenses\n");
        } else {
            let mut t = Table::new(&[
                "FEATURE",
                "COUNT",
                "IN USE",
                "RESERVED",
                "CONTEXT",
                "MAINTENANCE UNTIL",
                "EXPIRES",
                "LICENSE",
                "BACKS UP",
            ]);
            for l in &self.licenses {
                t.row(vec![
                    l.feature.to_string(),
                    l.count.to_string(),
                    l.in_use.to_string(),
                    l.reserved.to_string(),
                    l.context.to_string(),
                    l.maintenance_until.to_string(),
                    l.expires
                        .map_or_else(|| "never".to_owned(), |d| d.to_string()),
                    l.id.clone(),
                    or_dash(l.backs_up.as_ref()),
                ]);
            }
            text.push_str(&t.render());
        }

        text.push('\n');
        if self.nodes.is_empty() {
            text.push_str("no license nodes (air-gapped: export-upload and import-bundle)\n");
        } else {
            let mut t = Table::new(&["NODE", "LAST OK", "LAST ERROR"]);
            for n in &self.nodes {
                t.row(vec![
                    n.url.clone(),
                    or_dash(n.last_ok.as_ref().map(time)),
                    or_dash(n.last_error.as_ref()),
                ]);
            }
            text.push_str(&t.render());
        }
        text
    }
}

impl Human for SyncOutcome {
    fn human(&self) -> String {
        if !self.ok {
            return key_values(&[
                ("result", "failed".to_owned()),
                ("error", or_dash(self.error.as_ref())),
            ]);
        }
        key_values(&[
            ("result", "ok".to_owned()),
            ("from", or_dash(self.node.as_ref())),
            ("bundle serial", or_dash(self.serial)),
            ("licenses", self.licenses.to_string()),
            ("usage acknowledged up to", or_dash(self.acked_usage_seq)),
        ])
    }
}

impl Human for ClientKeyView {
    /// The key alone on the first line, so `leasehold server client-key | head -1` is the key.
    fn human(&self) -> String {
        let mut out = format!("{}\n", self.key);
        for until in &self.previous_valid_until {
            out.push_str(&format!(
                "(the replaced key is accepted until {})\n",
                until.to_rfc3339_opts(SecondsFormat::Secs, true)
            ));
        }
        out
    }
}

impl Human for ClientList {
    fn human(&self) -> String {
        if self.clients.is_empty() {
            return "no clients hold a lease\n".to_owned();
        }
        let mut t = Table::new(&[
            "NAME",
            "ADDRESS",
            "HOLDS",
            "RELEASE",
            "CONNECTED",
            "SEEN",
            "FAILOVER",
            "CLIENT",
        ]);
        for c in &self.clients {
            let holds = c
                .features
                .iter()
                .map(|f| format!("{} {}/{}", f.feature, f.in_use, f.quota))
                .collect::<Vec<_>>()
                .join(", ");
            t.row(vec![
                or_dash(c.name.as_ref()),
                or_dash(c.address.as_ref()),
                if holds.is_empty() { "-".into() } else { holds },
                or_dash(c.product_release),
                c.connected_since.as_ref().map_or_else(|| "-".into(), time),
                format!("{}s ago", c.last_seen_secs_ago),
                if c.failover { "yes" } else { "no" }.to_owned(),
                c.client.to_string(),
            ]);
        }
        t.render()
    }
}

impl Human for ExportOutput {
    fn human(&self) -> String {
        key_values(&[
            ("upload written to", self.out.clone()),
            ("server", self.server_guid.to_string()),
            ("last bundle serial", self.last_bundle_serial.to_string()),
            ("usage buckets", self.usage_buckets.to_string()),
            (
                "next",
                "send it to the vendor for `leasehold vendor sync-file`, then import the bundle \
                 with `leasehold server import-bundle`"
                    .to_owned(),
            ),
        ])
    }
}

impl Human for UsageExport {
    fn human(&self) -> String {
        let mut out = format!(
            "usage of this server from {} to {} (UTC days)\n",
            self.from, self.to
        );
        if self.rows.is_empty() {
            out.push_str("no usage recorded in this period\n");
            return out;
        }
        let mut table = Table::new(&[
            "HOUR",
            "FEATURE",
            "PEAK",
            "LICENSE-HOURS",
            "GRANTS",
            "DENIALS",
            "WHILE FREE",
            "BACKUP HOURS",
        ]);
        for r in &self.rows {
            let hour = r.hour.format("%Y-%m-%d %H:00").to_string();
            table.row(vec![
                if r.open {
                    format!("{hour} (open)")
                } else {
                    hour
                },
                r.feature.to_string(),
                r.peak_in_use.to_string(),
                format!("{:.2}", r.license_hours),
                r.grants.to_string(),
                r.denials.to_string(),
                r.denials_while_free.to_string(),
                format!("{:.2}", r.backup_use_hours),
            ]);
        }
        out.push_str(&table.render());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unconfigured_status_reads_well() {
        let s = Status {
            guid: None,
            context: None,
            installation: None,
            state: ServerState::Unconfigured,
            reason: Some("no server GUID is set".into()),
            licenses: Vec::new(),
            clients: 0,
            learning_until: None,
            last_sync: None,
            last_sync_node: None,
            last_sync_error: None,
            next_sync: None,
            not_after: None,
            grace_days_left: None,
            bundle_serial: 0,
            bundle_key_id: None,
            pending_usage_buckets: 0,
            storage_failing_since: None,
            storage_error: None,
            nodes: Vec::new(),
        };
        let text = s.human();
        assert!(text.contains("unconfigured"), "{text}");
        assert!(text.contains("no server GUID is set"), "{text}");
        assert!(
            text.contains("last sync:") && text.contains("never"),
            "{text}"
        );
        assert!(text.contains("no licenses"), "{text}");
    }
}
