//! `leasehold vendor ...`: the vendor's administration of a license node over its HTTP API
//! (installations, servers, licenses, usage), its staff (sign-in, accounts, tokens, the audit
//! log), the air-gapped sync path and signing-key generation. Every call carries a vendor
//! account's personal token: `--token` / `LEASEHOLD_VENDOR_TOKEN`, else the one `vendor
//! login` saved for the node. Arguments are checked here before any request; the node has
//! the last word.

mod commands;
mod credentials;
pub(crate) mod output;
mod render;
mod render_staff;
mod staff;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use leasehold_proto::api::staff::{AccountName, Role};
use leasehold_proto::{ApiTokenId, Context, Feature, InstallationId, LicenseId, ServerGuid};

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

    /// A vendor account's personal API token (`lhv_…`), sent as `Authorization: Bearer
    /// TOKEN`. Without it, the token `vendor login` saved for this node is used. To create
    /// the first admin account, give the node's bootstrap token here (`--admin-token` of
    /// `node serve`); it works for nothing else.
    #[arg(
        long,
        global = true,
        env = "LEASEHOLD_VENDOR_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true,
        value_name = "TOKEN"
    )]
    token: Option<Secret>,

    /// Why this change is made (a ticket number, the customer's request), recorded with the
    /// change in the node's audit log (`vendor audit`). Sent with every command; commands
    /// that change nothing record nothing. At most 1,000 characters.
    #[arg(long, global = true, value_name = "TEXT")]
    reason: Option<String>,

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
    /// Sign in with an account's name and password: the node issues a personal API token,
    /// saved for this node in ~/.config/leasehold/vendor-credentials.json (mode 0600;
    /// `$XDG_CONFIG_HOME` moves it), which later commands use without --token.
    Login(LoginArgs),
    /// Revoke the token in use at the node and forget it here (signing out).
    Logout,
    /// Show the account (and role) the token in use belongs to.
    Whoami,
    /// Staff accounts: support (reads everything, adds servers, reassigns GUIDs) and admin
    /// (also grants, transfers, revokes, sets grace and sync intervals, manages accounts).
    #[command(subcommand)]
    Account(AccountCommand),
    /// Personal API tokens: list, create (for scripts and CI), revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit log, newest first: who changed what, when, through which way, why, and the
    /// thing before and after.
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
struct LoginArgs {
    /// The account's name; asked for on the terminal when not given.
    #[arg(long, value_name = "NAME")]
    name: Option<AccountName>,
    /// Read the password from the first line of stdin instead of asking on the terminal.
    #[arg(long, requires = "name")]
    password_stdin: bool,
    /// What the token is for, shown in `vendor token list` (default: leasehold vendor login).
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
    /// Print only the new token on stdout instead of saving it (for scripts and CI, e.g.
    /// `export LEASEHOLD_VENDOR_TOKEN=$(leasehold vendor login --print-token ...)`).
    #[arg(long, conflicts_with = "json")]
    print_token: bool,
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Create an account (an admin; or, for the first admin only, the node's bootstrap
    /// token). Without --password-stdin a strong password is generated and printed once.
    Add {
        #[arg(long, value_name = "NAME")]
        name: AccountName,
        /// support or admin.
        #[arg(long)]
        role: Role,
        /// Read the password (at least 12 characters) from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Every account with its role and whether it is disabled.
    List,
    /// One account.
    Show {
        #[arg(value_name = "NAME")]
        name: AccountName,
    },
    /// Disable an account: it can no longer sign in, and its tokens and console sessions
    /// stop working at once.
    Disable {
        #[arg(value_name = "NAME")]
        name: AccountName,
    },
    /// Enable a disabled account again (its old tokens stay revoked; it signs in anew).
    Enable {
        #[arg(value_name = "NAME")]
        name: AccountName,
    },
    /// Change an account's role.
    SetRole {
        #[arg(value_name = "NAME")]
        name: AccountName,
        /// support or admin.
        #[arg(long)]
        role: Role,
    },
    /// Set a password: your own (default; asks for the present one too), or, as an admin,
    /// another account's (a strong one is generated and printed once unless
    /// --password-stdin).
    SetPassword {
        /// The account; default your own.
        #[arg(value_name = "NAME")]
        name: Option<AccountName>,
        /// Read from stdin instead of the terminal: for your own account the present password
        /// on the first line and the new one on the second; for another account the new one.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Your tokens (never the tokens themselves), newest first; an admin may list another
    /// account's or everyone's.
    List {
        /// This account's tokens (an admin, or the account itself).
        #[arg(long, value_name = "NAME", conflicts_with = "all")]
        account: Option<AccountName>,
        /// Every account's tokens (an admin).
        #[arg(long)]
        all: bool,
    },
    /// A new token for your own account, printed once (for a script or CI; it is not saved).
    Create {
        /// What the token is for, e.g. `ci deploy`.
        #[arg(long, value_name = "TEXT")]
        label: String,
    },
    /// Revoke a token: your own, or (an admin) anyone's. It stops working at once.
    Revoke {
        #[arg(value_name = "TOKEN_ID")]
        id: ApiTokenId,
    },
}

#[derive(Debug, Args)]
struct AuditArgs {
    /// Only changes that touched this installation.
    #[arg(long, value_name = "ID")]
    installation: Option<InstallationId>,
    /// Only changes to this server (GUID).
    #[arg(long, value_name = "GUID", conflicts_with = "target")]
    server: Option<ServerGuid>,
    /// Only changes to this target: a license id, an account name, a token id.
    #[arg(long, value_name = "TARGET")]
    target: Option<String>,
    /// Only changes by this account (or `bootstrap token`, `node database`).
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
    /// Only changes from this day on (UTC, YYYY-MM-DD).
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    since: Option<NaiveDate>,
    /// Show at most this many entries, newest first (fetched in pages of up to 500).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = parse_limit)]
    limit: u32,
    /// Show every matching entry, however many (pages through the whole log).
    #[arg(long, conflicts_with = "limit")]
    all: bool,
    /// Show each entry in full: its reason and the thing before and after the change.
    #[arg(long, conflicts_with_all = ["csv", "json"])]
    detail: bool,
    /// Print CSV (one line per entry, before and after as JSON) instead of a table.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
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

fn parse_limit(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) | Err(_) => Err(format!(
            "{text:?} is not a whole number of entries, at least 1"
        )),
        Ok(n) => Ok(n),
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
    let token = staff::token_in_use(&base, args.token, &args.command)?;
    let mut client =
        leasehold_api_client::NodeClient::new(base, token.secret().map(str::to_owned))?;
    if let Some(reason) = &args.reason {
        client = client.with_reason(reason)?;
    }
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
            VendorCommand::Login(a) => staff::login(&client, json, a).await,
            VendorCommand::Logout => staff::logout(&client, json, &token).await,
            VendorCommand::Whoami => staff::whoami(&client, json, &token).await,
            VendorCommand::Account(cmd) => staff::account(&client, json, cmd).await,
            VendorCommand::Token(cmd) => staff::token(&client, json, cmd).await,
            VendorCommand::Audit(a) => staff::audit(&client, json, a).await,
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
    fn staff_commands_check_their_flags() {
        let guid = "DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E";
        assert!(parse(&[
            "login",
            "--name",
            "alice",
            "--password-stdin",
            "--print-token"
        ])
        .is_ok());
        let e = parse(&["login", "--password-stdin"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--name"), "{e}");
        assert!(parse(&["login", "--name", "a", "--print-token", "--json"]).is_err());
        let e = parse(&["login", "--name", "Not Valid"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("account name"), "{e}");
        let e = parse(&["account", "add", "--name", "bob", "--role", "root"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("support, admin"), "{e}");
        assert!(parse(&["account", "set-password"]).is_ok());
        assert!(parse(&["token", "list", "--all", "--account", "bob"]).is_err());
        let e = parse(&["token", "revoke", "tok-1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("token id"), "{e}");
        assert!(parse(&["audit", "--server", guid, "--target", "lic_x"]).is_err());
        assert!(parse(&["audit", "--all", "--limit", "5"]).is_err());
        assert!(parse(&["audit", "--csv", "--json"]).is_err());
        assert!(parse(&["audit", "--detail", "--csv"]).is_err());
        let e = parse(&["audit", "--limit", "0"]).unwrap_err().to_string();
        assert!(e.contains("at least 1"), "{e}");
        let e = parse(&["audit", "--since", "yesterday"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("YYYY-MM-DD"), "{e}");
        let a = parse(&["audit", "--all", "--reason", "why"]).unwrap();
        assert_eq!(a.reason.as_deref(), Some("why"));
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
