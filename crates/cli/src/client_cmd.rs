//! `leasehold client ...`: the client library driven from the command line, for operators
//! (is this machine licensed? which server does it use?) and for tests of whole
//! installations. `acquire` takes one license and exits; `watch` holds licenses and prints
//! the client's state every second until Ctrl-C or `--duration`.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use leasehold_client::{Client, Denied, FeatureStatus, LicenseGuard, ServerRole, Status};

use crate::http_util::{client_builder, flag_words};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// License servers, `;`-separated: the first is the primary, the rest are backups,
    /// e.g. `10.0.0.5;10.0.0.6:7569` (default port 7569).
    #[arg(long, global = true, env = leasehold_client::ENV_SERVERS, value_name = "LIST")]
    servers: Option<String>,

    /// More backup servers, `;`-separated, tried after those of --servers.
    #[arg(long, global = true, env = leasehold_client::ENV_BACKUP_SERVERS, value_name = "LIST")]
    backup_servers: Option<String>,

    /// File holding the installation's client key (its first line; `leasehold server
    /// client-key` prints the key). Without it, LEASEHOLD_CLIENT_KEY or the file
    /// LEASEHOLD_CLIENT_KEY_FILE names.
    #[arg(long, global = true, value_name = "FILE")]
    client_key_file: Option<std::path::PathBuf>,

    /// The name the license server shows its operator for this client (Clients page,
    /// `leasehold server clients`). [default: hostname/leasehold[pid]]
    #[arg(long, global = true, env = leasehold_client::ENV_CLIENT_NAME, value_name = "NAME")]
    name: Option<String>,

    /// The product's release date, for the servers' maintenance check, YYYY-MM-DD.
    /// [default: today]
    #[arg(long, global = true, value_name = "DATE", value_parser = parse_date)]
    product_release: Option<NaiveDate>,

    /// How often the client refreshes its quota with the server. [default: 2s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    refresh: Option<Duration>,

    /// Time without an answer from the primary before using a backup. [default: 10s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    failover_after: Option<Duration>,

    /// Time without any server before the local cache is flushed. [default: 2m]
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    flush_after: Option<Duration>,

    /// With the local quota used up, ask the server and wait at most this long for a license
    /// before denying (e.g. 50ms). [default: 0, answer from the local cache only]
    #[arg(long, global = true, value_name = "DURATION", value_parser = humantime::parse_duration)]
    deny_wait: Option<Duration>,

    /// How long to wait for the first answer of a server before asking for licenses, so
    /// that a fresh process is not denied only because it has not connected yet.
    #[arg(long, global = true, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    wait: Duration,

    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Take one license of FEATURE, print the result and give it back. Exits non-zero when
    /// the license is denied.
    Acquire {
        /// The feature, e.g. `asr.en-US`.
        #[arg(value_name = "FEATURE")]
        feature: String,
        /// Print exactly one JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Hold up to N licenses of a feature and print the client's state once a second until
    /// Ctrl-C (or --duration). Denied requests are retried every second and counted.
    Watch {
        /// The feature, e.g. `asr.en-US`.
        #[arg(long, value_name = "FEATURE")]
        feature: String,
        /// How many licenses to hold.
        #[arg(long, value_name = "N", default_value_t = 1)]
        hold: u32,
        /// Stop after this long instead of at Ctrl-C.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Print one JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 2s or 500ms: {e}"))?;
    if d.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    Ok(d)
}

fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a date as YYYY-MM-DD, e.g. 2026-10-01"))
}

pub fn run(args: ClientArgs) -> anyhow::Result<()> {
    crate::logging::init();
    match &args.command {
        ClientCommand::Acquire { feature, json } => acquire(&args, feature, *json),
        ClientCommand::Watch {
            feature,
            hold,
            duration,
            json,
        } => watch(&args, feature, *hold, *duration, *json),
    }
}

/// Builds the client for one feature from the flags (and their environment variables).
fn build(args: &ClientArgs, feature: &str) -> anyhow::Result<Client> {
    let servers = args
        .servers
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .with_context(|| {
            format!(
                "no license server: give --servers or set {}",
                leasehold_client::ENV_SERVERS
            )
        })?;
    let mut builder = client_builder(args.client_key_file.as_deref())
        .servers(servers)
        .product_release(
            args.product_release
                .unwrap_or_else(|| chrono::Local::now().date_naive()),
        )
        .feature(feature);
    if let Some(b) = args
        .backup_servers
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        builder = builder.backup_servers(b);
    }
    if let Some(name) = args.name.as_deref().filter(|n| !n.trim().is_empty()) {
        builder = builder.name(name);
    }
    if let Some(d) = args.refresh {
        builder = builder.refresh(d);
    }
    if let Some(d) = args.failover_after {
        builder = builder.failover_after(d);
    }
    if let Some(d) = args.flush_after {
        builder = builder.flush_after(d);
    }
    if let Some(d) = args.deny_wait {
        builder = builder.deny_wait(d);
    }
    builder
        .build()
        .map_err(|e| anyhow::anyhow!(flag_words(&e.to_string())))
}

fn connected(client: &Client) -> bool {
    client.wait_connected(Duration::ZERO)
}

fn feature_status(status: &Status) -> Option<&FeatureStatus> {
    // The client is built with exactly one feature.
    status.features.first()
}

fn role(role: ServerRole) -> &'static str {
    match role {
        ServerRole::Primary => "primary",
        ServerRole::Backup => "backup",
        ServerRole::None => "none",
    }
}

#[derive(Debug, Serialize)]
struct AcquireOutput<'a> {
    feature: &'a str,
    granted: bool,
    /// The denial's code (`not_licensed`, `quota_exhausted`, ...), `null` when granted.
    denial: Option<&'static str>,
    server: &'static str,
    server_addr: Option<String>,
    /// The server's words when it gave less than asked.
    reason: Option<String>,
    client_id: String,
}

fn acquire(args: &ClientArgs, feature: &str, json: bool) -> anyhow::Result<()> {
    let client = build(args, feature)?;
    client.wait_connected(args.wait);
    let result = client.acquire(feature);
    let status = client.status();
    let fs = feature_status(&status);
    let out = AcquireOutput {
        feature,
        granted: result.is_ok(),
        denial: result.as_ref().err().map(|d| d.as_str()),
        server: role(status.server),
        server_addr: status.server_addr.clone(),
        reason: fs.and_then(|f| f.reason.clone()),
        client_id: status.client_id.clone(),
    };
    {
        let mut stdout = std::io::stdout().lock();
        if json {
            serde_json::to_writer(&mut stdout, &out)?;
            writeln!(stdout)?;
        } else {
            let at = out.server_addr.as_deref().unwrap_or("no server");
            match &result {
                Ok(_) => writeln!(stdout, "granted: {feature} (server {} {at})", out.server)?,
                Err(d) => writeln!(
                    stdout,
                    "denied: {feature}: {} (server {} {at})",
                    d.as_str(),
                    out.server
                )?,
            }
        }
        stdout.flush()?;
    }
    match result {
        // Given back when dropped here, and the client gives its quota back when dropped.
        Ok(_guard) => Ok(()),
        Err(denied) => Err(denial_error(denied, &out, &status)),
    }
}

fn denial_error(denied: Denied, out: &AcquireOutput<'_>, status: &Status) -> anyhow::Error {
    let mut text = format!("{}: {denied}", out.feature);
    if let Some(reason) = &out.reason {
        text.push_str(&format!(" (server: {reason})"));
    } else if let (Denied::NotConnected, Some(e)) = (denied, &status.last_error) {
        text.push_str(&format!(" (last error: {e})"));
    }
    anyhow::anyhow!(text)
}

/// One line of `watch --json`.
#[derive(Debug, Serialize)]
struct WatchLine<'a> {
    server: &'static str,
    server_addr: Option<&'a str>,
    feature: &'a str,
    quota: u32,
    held: u32,
    denied: u64,
    /// Time since the request of the last good answer was sent; `null` before the first.
    since_last_ok_ms: Option<u64>,
    /// The code of the last denial seen, `null` if none yet.
    last_denial: Option<&'static str>,
    /// The server's words when it gave less than asked.
    reason: Option<&'a str>,
    /// The last failed request (why the primary is not used while on a backup).
    last_error: Option<&'a str>,
}

struct Watch<'c> {
    client: &'c Client,
    feature: &'c str,
    hold: u32,
    held: Vec<LicenseGuard<'c>>,
    denied: u64,
    last_denial: Option<Denied>,
    started: Instant,
    wait: Duration,
}

impl<'c> Watch<'c> {
    /// Takes licenses up to the target; stops at the first denial (retried next second).
    /// Asks nothing while waiting for the first answer, up to `--wait`.
    fn top_up(&mut self) {
        if !connected(self.client) && self.started.elapsed() < self.wait {
            return;
        }
        while self.held.len() < self.hold as usize {
            match self.client.acquire(self.feature) {
                Ok(g) => self.held.push(g),
                Err(d) => {
                    self.denied += 1;
                    self.last_denial = Some(d);
                    break;
                }
            }
        }
    }

    fn print(&self, json: bool) -> anyhow::Result<()> {
        let status = self.client.status();
        let fs = feature_status(&status);
        let line = WatchLine {
            server: role(status.server),
            server_addr: status.server_addr.as_deref(),
            feature: self.feature,
            quota: fs.map_or(0, |f| f.quota),
            held: u32::try_from(self.held.len()).unwrap_or(u32::MAX),
            denied: self.denied,
            since_last_ok_ms: status.last_good_refresh_ms_ago,
            last_denial: self.last_denial.map(Denied::as_str),
            reason: fs.and_then(|f| f.reason.as_deref()),
            last_error: status.last_error.as_deref(),
        };
        let mut stdout = std::io::stdout().lock();
        if json {
            serde_json::to_writer(&mut stdout, &line)?;
            writeln!(stdout)?;
        } else {
            let now = chrono::Utc::now().format("%H:%M:%S");
            let server = match line.server_addr {
                Some(addr) => format!("{} {addr}", line.server),
                None => line.server.to_owned(),
            };
            let last_ok = line
                .since_last_ok_ms
                .map_or_else(|| "never".to_owned(), |ms| format!("{ms} ms ago"));
            write!(
                stdout,
                "{now} {} held {}/{} quota {} denied {} server {server} last ok {last_ok}",
                line.feature, line.held, self.hold, line.quota, line.denied
            )?;
            if let Some(d) = line.last_denial {
                write!(stdout, " last denial {d}")?;
            }
            if let Some(r) = line.reason {
                write!(stdout, " ({r})")?;
            }
            if status.server != ServerRole::Primary {
                if let Some(e) = line.last_error {
                    write!(stdout, " [last error: {e}]")?;
                }
            }
            writeln!(stdout)?;
        }
        stdout.flush()?;
        Ok(())
    }
}

fn watch(
    args: &ClientArgs,
    feature: &str,
    hold: u32,
    duration: Option<Duration>,
    json: bool,
) -> anyhow::Result<()> {
    let client = build(args, feature)?;
    let mut w = Watch {
        client: &client,
        feature,
        hold,
        held: Vec::with_capacity(hold.min(1 << 16) as usize),
        denied: 0,
        last_denial: None,
        started: Instant::now(),
        wait: args.wait,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result: anyhow::Result<()> = runtime.block_on(async {
        let end = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let stop = async {
            tokio::select! {
                () = crate::logging::shutdown_signal() => {},
                () = end => {},
            }
        };
        tokio::pin!(stop);
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Lets the first answer arrive before the first line when the server is quick.
        tokio::select! {
            () = async {
                while !connected(&client) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            } => {},
            () = tokio::time::sleep(Duration::from_millis(500).min(args.wait)) => {},
        }
        loop {
            tokio::select! {
                _ = every.tick() => {
                    w.top_up();
                    w.print(json)?;
                }
                () = &mut stop => {
                    // A last line with the state at the end.
                    w.top_up();
                    w.print(json)?;
                    return Ok(());
                }
            }
        }
    });
    let held = w.held.len();
    drop(w);
    tracing::debug!(held, "licenses given back");
    drop(client);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        client: ClientArgs,
    }

    fn parse(args: &[&str]) -> Result<ClientArgs, clap::Error> {
        let mut all = vec!["client"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.client)
    }

    #[test]
    fn common_flags_go_before_or_after_the_subcommand() {
        let a = parse(&[
            "--servers",
            "a;b",
            "watch",
            "--feature",
            "tts",
            "--hold",
            "3",
            "--refresh",
            "200ms",
            "--failover-after",
            "1s",
            "--product-release",
            "2026-10-01",
        ])
        .unwrap();
        assert_eq!(a.servers.as_deref(), Some("a;b"));
        assert_eq!(a.refresh, Some(Duration::from_millis(200)));
        assert_eq!(a.failover_after, Some(Duration::from_secs(1)));
        assert_eq!(a.product_release, NaiveDate::from_ymd_opt(2026, 10, 1));
        assert_eq!(a.wait, Duration::from_secs(10));
        let ClientCommand::Watch { hold, json, .. } = a.command else {
            panic!("not watch")
        };
        assert_eq!((hold, json), (3, false));

        let a = parse(&["acquire", "tts", "--servers", "x", "--json"]).unwrap();
        assert_eq!(a.servers.as_deref(), Some("x"));
        assert!(matches!(
            a.command,
            ClientCommand::Acquire { json: true, .. }
        ));
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        let e = parse(&["acquire", "tts", "--refresh", "soon"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--refresh"), "{e}");
        let e = parse(&["acquire", "tts", "--flush-after", "0s"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than zero"), "{e}");
        let e = parse(&["acquire", "tts", "--product-release", "10/01/2026"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--product-release"), "{e}");
    }

    #[test]
    fn library_errors_speak_of_flags() {
        assert_eq!(
            flag_words("\"bad host\": not a host (in backup_servers)"),
            "\"bad host\": not a host (in --backup-servers)"
        );
        assert_eq!(
            flag_words("flush_after (1s) must be longer than refresh (2s)"),
            "--flush-after (1s) must be longer than --refresh (2s)"
        );
    }
}
