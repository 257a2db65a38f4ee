//! The console: the introduction, the status line every few seconds and the keys that
//! stop and start the primary.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use chrono::NaiveDate;
use leasehold_proto::VendorSigningKey;
use leasehold_server::RunningServer;
use tokio::sync::mpsc;

use super::clients::{ROLE_BACKUP, ROLE_NONE, ROLE_PRIMARY};
use super::processes::{state_name, ServerSpec, Servers};
use super::say;

pub(super) const STATUS_EVERY: Duration = Duration::from_secs(10);

/// What the console shows at the start: where everything is, the dashboards and passwords,
/// what to try.
pub(super) struct Intro<'a> {
    pub(super) dir: &'a Path,
    pub(super) created: bool,
    pub(super) node_url: &'a str,
    pub(super) key: &'a VendorSigningKey,
    pub(super) production_view: &'a leasehold_proto::api::node::ServerView,
    pub(super) production: &'a ServerSpec,
    pub(super) backup: Option<&'a ServerSpec>,
    pub(super) servers: &'a str,
    pub(super) client_key: &'a str,
    pub(super) clients: u32,
    pub(super) today: NaiveDate,
    pub(super) synced: [&'a Result<(), String>; 2],
    pub(super) passwords: &'a BTreeMap<String, String>,
    pub(super) console_password: &'a str,
}

pub(super) fn print_intro(i: &Intro<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let dir_note = if i.created {
        "created; a later start reuses it with the same GUIDs"
    } else {
        "reused: same vendor key, GUIDs and licenses"
    };
    writeln!(out, "Leasehold demo in {} ({dir_note})", i.dir.display())?;
    writeln!(
        out,
        "  license node       {}  vendor key: {}",
        i.node_url,
        i.key.kid()
    )?;
    let licenses = describe_licenses(&i.production_view.licenses);
    for spec in std::iter::once(i.production).chain(i.backup) {
        writeln!(
            out,
            "  {:<18} {}  lease http://{}  admin token: {}",
            format!("{} server", spec.name),
            spec.guid,
            spec.lease,
            spec.token
        )?;
    }
    writeln!(
        out,
        "  licenses           {licenses}{}",
        if i.backup.is_some() {
            " (the backup holds the same, in parallel)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "  simulated clients  {} on \"{}\", features asr.en-US and tts, product release {}",
        i.clients, i.servers, i.today
    )?;
    writeln!(
        out,
        "  client key         {} (both servers; in {})",
        i.client_key,
        i.production.data_dir.join("client-key").display()
    )?;
    for (spec, synced) in [(Some(i.production), i.synced[0]), (i.backup, i.synced[1])] {
        if let (Some(spec), Err(why)) = (spec, synced) {
            writeln!(
                out,
                "  note: the {} server is not synced yet: {why}",
                spec.name
            )?;
        }
    }
    if !i.created {
        writeln!(
            out,
            "  note: the servers restart on their own data directories: they restore the leases they granted and grant at once (a data directory unused for more than ~2 minutes relearns them first)"
        )?;
    }
    for spec in std::iter::once(i.production).chain(i.backup) {
        writeln!(
            out,
            "{} dashboard: http://{}  password: {}",
            spec.name,
            spec.admin,
            i.passwords.get(spec.name).map_or("?", String::as_str)
        )?;
    }
    writeln!(
        out,
        "vendor console: {}/console  account: {}  password: {}",
        i.node_url,
        super::provision::CONSOLE_ADMIN,
        i.console_password
    )?;
    writeln!(out, "Try:")?;
    writeln!(
        out,
        "  leasehold server status --admin http://{} --token {}",
        i.production.admin, i.production.token
    )?;
    writeln!(
        out,
        "  leasehold vendor --node {} login --name {}    (the console password above)",
        i.node_url,
        super::provision::CONSOLE_ADMIN
    )?;
    writeln!(
        out,
        "  leasehold vendor --node {} server show '{}'",
        i.node_url, i.production.guid
    )?;
    writeln!(
        out,
        "  leasehold client --servers '{}' --client-key-file {} acquire tts",
        i.servers,
        i.production.data_dir.join("client-key").display()
    )?;
    if i.backup.is_some() {
        writeln!(out, "Press p + Enter to stop the primary (clients move to the backup within ~12 s), s + Enter to start it again, q + Enter or Ctrl-C to quit.")?;
    } else {
        writeln!(out, "Press p + Enter to stop the primary (no backup: clients keep what they hold), s + Enter to start it again, q + Enter or Ctrl-C to quit.")?;
    }
    out.flush()?;
    Ok(())
}

/// Reads stdin lines on a thread; the channel closes when stdin does (no terminal, closed
/// or unreadable stdin just means no keys).
pub(super) fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(8);
    let spawned = std::thread::Builder::new()
        .name("demo-stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut line = String::new();
            loop {
                line.clear();
                match stdin.lock().read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if tx.blocking_send(line.clone()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot read keys from stdin");
    }
    rx
}

/// The line printed every 10 s.
pub(super) async fn status_line(
    primary: Option<&RunningServer>,
    standby: Option<&RunningServer>,
    has_backup: bool,
    roles: &[AtomicU8],
) -> String {
    let mut parts = vec![server_summary("production", primary).await];
    if has_backup {
        parts.push(server_summary("backup", standby).await);
    }
    let mut counts = [0usize; 3];
    for r in roles {
        counts[usize::from(r.load(Ordering::Relaxed).min(2))] += 1;
    }
    parts.push(format!(
        "simulated clients: {} on primary, {} on backup, {} on none",
        counts[usize::from(ROLE_PRIMARY)],
        counts[usize::from(ROLE_BACKUP)],
        counts[usize::from(ROLE_NONE)]
    ));
    parts.join(" | ")
}

pub(super) async fn server_summary(name: &str, server: Option<&RunningServer>) -> String {
    let Some(server) = server else {
        return format!("{name}: stopped");
    };
    match server.server.status().await {
        Ok(s) => {
            // Counts add up per feature; in use is already per feature.
            let mut features: BTreeMap<String, (u32, u32)> = BTreeMap::new();
            for l in &s.licenses {
                let e = features.entry(l.feature.to_string()).or_insert((0, 0));
                e.0 = l.in_use;
                e.1 += l.count;
            }
            let in_use: u32 = features.values().map(|(u, _)| u).sum();
            let detail = features
                .iter()
                .map(|(f, (u, c))| format!("{f} {u}/{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "{name} {}: {in_use} in use ({detail}), {} client{}",
                state_name(s.state),
                s.clients,
                if s.clients == 1 { "" } else { "s" }
            )
        }
        Err(e) => format!("{name}: status unavailable ({e})"),
    }
}

pub(super) fn describe_licenses(licenses: &[leasehold_proto::License]) -> String {
    let mut text = licenses
        .iter()
        .map(|l| format!("{} ×{}", l.feature, l.count))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(until) = licenses.iter().map(|l| l.maintenance_until).min() {
        text.push_str(&format!(", maintenance until {until}"));
    }
    text
}

/// Runs the console until Ctrl-C, q + Enter or `duration`: p + Enter stops the primary,
/// s + Enter starts it again, and a status line comes every [`STATUS_EVERY`].
pub(super) async fn run(servers: &mut Servers, roles: &[AtomicU8], duration: Option<Duration>) {
    let mut keys = stdin_lines();
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let signal = crate::logging::shutdown_signal();
    tokio::pin!(signal);
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + STATUS_EVERY, STATUS_EVERY);
    let mut stdin_open = true;
    loop {
        tokio::select! {
            () = &mut signal => break,
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => break,
            line = keys.recv(), if stdin_open => {
                let Some(line) = line else {
                    stdin_open = false;
                    continue;
                };
                match line.trim() {
                    "q" | "quit" => break,
                    "p" => say(servers.stop_primary().await),
                    "s" => say(&servers.start_primary().await),
                    "" => {}
                    other => say(&format!("unknown key {other:?}: p stops the primary, s starts it, q quits")),
                }
            }
            _ = ticker.tick() => {
                let line = status_line(servers.primary.as_ref(), servers.standby.as_ref(), servers.backup.is_some(), roles).await;
                say(&line);
            }
        }
    }
}
