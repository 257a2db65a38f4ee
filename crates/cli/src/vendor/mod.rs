//! `leasehold vendor ...`: the vendor's administration of a license node over its HTTP API
//! (installations, servers, licenses, usage), the air-gapped sync path and signing-key
//! generation. Arguments are checked here before any request; the node has the last word.

mod commands;
pub(crate) mod output;
mod render;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use leasehold_proto::{Context, Feature, InstallationId, LicenseId, ServerGuid};

use crate::http_util::Secret;

#[derive(Debug, Args)]
pub struct VendorArgs {
    /// Base URL of the license node to administer.
    #[arg(
        long,
        global = true,
        env = "LEASEHOLD_NODE",
        default_value = "http://127.0.0.1:8470",
        value_name = "URL"
    )]
    node: String,

    /// The node's admin token, sent as `Authorization: Bearer TOKEN`. Needed by every
    /// command that talks to the node's admin API.
    #[arg(
        long,
        global = true,
        env = "LEASEHOLD_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true,
        value_name = "TOKEN"
    )]
    token: Option<Secret>,

    /// Print exactly one JSON object on stdout instead of tables.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: VendorCommand,
}

#[derive(Debug, Subcommand)]
enum VendorCommand {
    /// Generate a new vendor signing key (PKCS#8 PEM, file mode 0600) and print its public
    /// key, which license servers trust with `--vendor-key`. Talks to no node.
    Keygen(KeygenArgs),
    /// Customer installations: one production or development server plus backups.
    #[command(subcommand)]
    Installation(InstallationCommand),
    /// License servers, identified by their GUID.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Licenses: grant, transfer, revoke, extend maintenance.
    #[command(subcommand)]
    License(LicenseCommand),
    /// Usage: of one server per feature per hour (`--server`), or the report of an
    /// installation per day, feature and context with the hours its backup licenses were
    /// used beside the production ones (`--installation`).
    Usage(UsageArgs),
    /// What to look at: GUID conflicts (forks), context rejections, servers whose grace
    /// period ended or ends within 14 days, servers silent for more than N days.
    Events(EventsArgs),
    /// Air-gapped sync: send an upload file a customer exported with `leasehold server
    /// export-upload` and write the signed bundle for `leasehold server import-bundle`.
    SyncFile(SyncFileArgs),
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Where to write the private key; an existing file is never overwritten.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
enum InstallationCommand {
    /// Create an installation and print its id.
    Create {
        /// A name for people, e.g. the customer and site.
        #[arg(long)]
        name: String,
    },
    /// List all installations with their servers.
    List,
}

#[derive(Debug, Subcommand)]
enum ServerCommand {
    /// Register a new license server in an installation; the node picks its GUID.
    Add {
        /// The installation id (`inst_...`).
        #[arg(long, value_name = "ID")]
        installation: InstallationId,
        /// production, backup or development.
        #[arg(long)]
        context: Context,
    },
    /// Show a server: context, licenses, last sync, bound instance.
    Show {
        #[arg(value_name = "GUID")]
        guid: ServerGuid,
    },
    /// Change a server's grace period or sync interval (sent with its next bundle).
    Set(ServerSetArgs),
    /// Release the GUID from the instance it is bound to, so a replacement (or the one
    /// legitimate copy after a clone) can sync again.
    Reassign {
        #[arg(value_name = "GUID")]
        guid: ServerGuid,
    },
}

#[derive(Debug, Args)]
struct ServerSetArgs {
    #[arg(value_name = "GUID")]
    guid: ServerGuid,
    /// Days the server keeps serving without contact (at least 60).
    #[arg(long, value_name = "N")]
    grace_days: Option<u32>,
    /// How often the server syncs, e.g. `24h`, `6h 30m`, `1day`.
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    sync_interval: Option<Duration>,
}

#[derive(Debug, Subcommand)]
enum LicenseCommand {
    /// Grant a license to a server; its context is the server's context.
    Grant(GrantArgs),
    /// Show one license and the server it is assigned to.
    Show {
        #[arg(value_name = "LICENSE_ID")]
        id: LicenseId,
    },
    /// Move a license to another server of the same context.
    Transfer {
        #[arg(value_name = "LICENSE_ID")]
        id: LicenseId,
        /// GUID of the receiving server.
        #[arg(long, value_name = "GUID")]
        to: ServerGuid,
        /// Only if the license is on this server now: when it has moved since, nothing
        /// changes and the command fails (`stale_request`).
        #[arg(long, value_name = "GUID")]
        from: Option<ServerGuid>,
    },
    /// Revoke a license; the server drops it at its next sync.
    Revoke {
        #[arg(value_name = "LICENSE_ID")]
        id: LicenseId,
    },
    /// Set the last release date a license's maintenance covers.
    SetMaintenance {
        #[arg(value_name = "LICENSE_ID")]
        id: LicenseId,
        /// YYYY-MM-DD.
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        until: NaiveDate,
    },
}

#[derive(Debug, Args)]
struct GrantArgs {
    /// GUID of the server that receives the license.
    #[arg(long, value_name = "GUID")]
    server: ServerGuid,
    /// Feature name, e.g. `asr.en-US` or `tts`.
    #[arg(long)]
    feature: Feature,
    /// Concurrent uses allowed (at least 1).
    #[arg(long, value_name = "N", value_parser = parse_count)]
    count: u32,
    /// The license's context; defaults to the server's, and the node refuses any other.
    #[arg(long)]
    context: Option<Context>,
    /// Last release date covered by maintenance, YYYY-MM-DD.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    maintenance: NaiveDate,
    /// Last day the license may be used, YYYY-MM-DD; perpetual when absent.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    expires: Option<NaiveDate>,
    /// For a license on a backup server: the production license it parallels.
    #[arg(long, value_name = "LICENSE_ID")]
    backs_up: Option<LicenseId>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("of").required(true).args(["server", "installation"])))]
struct UsageArgs {
    /// GUID of the server whose hourly usage to show.
    #[arg(long, value_name = "GUID")]
    server: Option<ServerGuid>,
    /// Installation whose daily report to show.
    #[arg(long, value_name = "ID")]
    installation: Option<leasehold_proto::InstallationId>,
    /// First day of the report (UTC, YYYY-MM-DD; default: 29 days before --to).
    #[arg(long, value_name = "DATE", requires = "installation")]
    from: Option<chrono::NaiveDate>,
    /// Last day of the report (UTC, YYYY-MM-DD; default: today).
    #[arg(long, value_name = "DATE", requires = "installation")]
    to: Option<chrono::NaiveDate>,
    /// Print the report as CSV (one line per day, feature and context; then one per
    /// simultaneous-use hour) instead of tables.
    #[arg(long, requires = "installation", conflicts_with = "json")]
    csv: bool,
}

#[derive(Debug, Args)]
struct EventsArgs {
    /// Report servers without a sync for more than this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 7)]
    silent_days: u32,
}

#[derive(Debug, Args)]
struct SyncFileArgs {
    /// The upload file the customer's server exported (JSON).
    #[arg(long, value_name = "FILE")]
    upload: PathBuf,
    /// Where to write the signed bundle for the customer to import.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a date as YYYY-MM-DD, e.g. 2027-01-31"))
}

fn parse_count(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Err("the count must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "{text:?} is not a whole number from 1 to {}",
            u32::MAX
        )),
    }
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 24h or 6h 30m: {e}"))?;
    if interval.as_secs() == 0 {
        return Err("the sync interval must be at least one second".into());
    }
    Ok(interval)
}

pub fn run(args: VendorArgs) -> anyhow::Result<()> {
    if let VendorCommand::Keygen(keygen) = &args.command {
        return commands::keygen(args.json, &keygen.out);
    }
    let base = leasehold_api_client::parse_base_url("--node", &args.node)?;
    let client =
        leasehold_api_client::NodeClient::new(base, args.token.map(|t| t.as_str().to_owned()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let json = args.json;
    runtime.block_on(async move {
        match args.command {
            VendorCommand::Keygen(_) => bail!("keygen needs no node"),
            VendorCommand::Installation(cmd) => commands::installation(&client, json, cmd).await,
            VendorCommand::Server(cmd) => commands::server(&client, json, cmd).await,
            VendorCommand::License(cmd) => commands::license(&client, json, cmd).await,
            VendorCommand::Usage(a) => match (a.server, a.installation) {
                (Some(guid), _) => commands::usage(&client, json, guid).await,
                (None, Some(id)) => {
                    let format = if a.csv {
                        commands::ReportFormat::Csv
                    } else if json {
                        commands::ReportFormat::Json
                    } else {
                        commands::ReportFormat::Table
                    };
                    commands::installation_usage(&client, format, &id, a.from, a.to).await
                }
                (None, None) => bail!("give --server GUID or --installation ID"),
            },
            VendorCommand::Events(a) => {
                output::emit(json, &client.events(Some(a.silent_days)).await?)
            }
            VendorCommand::SyncFile(a) => {
                commands::sync_file(&client, json, &a.upload, &a.out).await
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        vendor: VendorArgs,
    }

    fn parse(args: &[&str]) -> Result<VendorArgs, clap::Error> {
        let mut all = vec!["vendor"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.vendor)
    }

    #[test]
    fn global_flags_go_anywhere() {
        let a = parse(&[
            "server",
            "show",
            "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}",
            "--json",
            "--node",
            "http://n:1",
            "--token",
            "t",
        ])
        .unwrap();
        assert!(a.json);
        assert_eq!(a.node, "http://n:1");
        assert!(a.token.is_some());
    }

    #[test]
    fn bad_local_input_is_refused_by_the_parser() {
        let guid = "DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E";
        let grant = |count: &str, date: &str| {
            parse(&[
                "license",
                "grant",
                "--server",
                guid,
                "--feature",
                "tts",
                "--count",
                count,
                "--maintenance",
                date,
            ])
        };
        assert!(grant("3", "2027-01-31").is_ok());
        let e = grant("0", "2027-01-31").unwrap_err().to_string();
        assert!(e.contains("at least 1"), "{e}");
        let e = grant("3", "31.01.2027").unwrap_err().to_string();
        assert!(e.contains("YYYY-MM-DD"), "{e}");
        let e = parse(&["server", "show", "nope"]).unwrap_err().to_string();
        assert!(e.contains("server GUID"), "{e}");
        let e = parse(&[
            "server",
            "add",
            "--installation",
            "x",
            "--context",
            "production",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("installation id"), "{e}");
        let e = parse(&["server", "set", guid, "--sync-interval", "soon"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("duration"), "{e}");
        let e = parse(&["license", "revoke", "lic_XYZ"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("license id"), "{e}");
    }

    #[test]
    fn intervals_and_dates_parse() {
        assert_eq!(
            parse_interval("6h 30m").unwrap(),
            Duration::from_secs(23_400)
        );
        assert!(parse_interval("0s").is_err());
        assert_eq!(
            parse_date("2027-01-31").unwrap(),
            NaiveDate::from_ymd_opt(2027, 1, 31).unwrap()
        );
        assert!(parse_date("2027-02-30").is_err());
    }
}
