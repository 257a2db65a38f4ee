//! `leasehold server ...`: run a license server (`run`) and administer a running one through
//! its admin API (`status`, `clients`, `usage`, `set-guid`, `sync-now`, `export-upload`,
//! `import-bundle`). Settings of `run` come from defaults, a TOML file, the environment and
//! flags, in that order; everything is checked before the server starts.

mod admin;
mod config;
mod render;
mod run;

pub use crate::http_util::Secret;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use leasehold_proto::api::server::ClientSort;
use leasehold_proto::ServerGuid;

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(subcommand)]
    command: ServerCommand,
}

#[derive(Debug, Subcommand)]
enum ServerCommand {
    /// Run the license server: lease licenses to clients, sync with the license nodes and
    /// serve the admin API. Prints one line with both addresses on stdout, logs to stderr,
    /// stops cleanly on Ctrl-C or SIGTERM.
    Run(Box<RunArgs>),
    /// Show the server's state, licenses, sync and nodes.
    Status(AdminArgs),
    /// List the clients holding leases: name, address, what each holds of its quota,
    /// product release, connected since, last seen.
    Clients {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only clients whose name, address, client id or a feature contains this text
        /// (case-insensitive).
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
        /// Order: name, address, in_use (most first), connected_since (longest first),
        /// last_seen (most recent first) or id.
        #[arg(long, default_value = "name", value_name = "ORDER", value_parser = parse_sort)]
        sort: ClientSort,
    },
    /// This server's own usage report: per feature and hour, peak in use, license-hours,
    /// grants, denials, denials while free and backup use (counts only). A table, or --csv
    /// or --json to take away.
    Usage {
        /// First day of the report (UTC, YYYY-MM-DD; default: 29 days before --to).
        #[arg(long, value_name = "DATE")]
        from: Option<chrono::NaiveDate>,
        /// Last day of the report (UTC, YYYY-MM-DD; default: today).
        #[arg(long, value_name = "DATE")]
        to: Option<chrono::NaiveDate>,
        /// Print CSV (a header row, then one line per feature and hour) instead of a table.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Set the server GUID the vendor assigned to this server. A different GUID drops the
    /// licenses of the old one.
    SetGuid {
        /// The GUID, e.g. {DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}.
        #[arg(value_name = "GUID")]
        guid: ServerGuid,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Sync with the license nodes now and wait for the outcome; fails when the sync fails.
    SyncNow(AdminArgs),
    /// Print the installation's client key: applications send it to be leased licenses
    /// (LEASEHOLD_CLIENT_KEY or LEASEHOLD_CLIENT_KEY_FILE). Give a backup server the
    /// primary's key with --set, so clients need one key for every server.
    ClientKey {
        /// Replace the key with a fresh one; the old one is accepted for the overlap
        /// (`run --client-key-overlap`, default 7 days).
        #[arg(long, conflicts_with = "set")]
        rotate: bool,
        /// Make this key (e.g. the primary's, printed by `client-key` there) the key; the
        /// old one is accepted for the overlap.
        #[arg(long, value_name = "KEY")]
        set: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Air-gapped sync, step 1: write the exact upload the next sync would send, for the
    /// vendor's `leasehold vendor sync-file`.
    ExportUpload {
        /// Where to write the upload (JSON).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Air-gapped sync, step 2: load the signed bundle `leasehold vendor sync-file` wrote.
    /// The same checks as an online sync apply; a refused bundle changes nothing.
    ImportBundle {
        /// The bundle file (JSON signed envelope).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Set the dashboard password: reads it from stdin (the first line) and stores its
    /// Argon2 hash in DATA_DIR/dashboard-password (mode 0600). Needs no running server; a
    /// running one uses the new password at the next sign-in.
    SetPassword {
        /// The server's data directory. [default: ./leasehold-server]
        #[arg(long, env = "LEASEHOLD_SERVER_DATA_DIR", value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// Settings of `leasehold server run`. Each flag may also come from its environment variable
/// and from the `--config` file; flags win over the environment, which wins over the file.
#[derive(Args)]
struct RunArgs {
    /// TOML file with any of the keys data_dir, listen, admin_listen, nodes, vendor_keys,
    /// guid, admin_token, node_timeout, tls_cert, tls_key, node_ca, proxy,
    /// client_key_overlap, max_clients, new_clients_per_minute. Relative paths in it are relative to the file. The
    /// dashboard's configuration page edits this file. Without it, DATA_DIR/leasehold-server.toml
    /// is read if it exists (the dashboard writes it when the server has no --config).
    #[arg(long, env = "LEASEHOLD_SERVER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Directory of the server's state (licenses, usage, identity); one process at a time.
    /// [default: ./leasehold-server]
    #[arg(long, env = "LEASEHOLD_SERVER_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Address of the client lease API; port 0 picks a free port (printed at start).
    /// [default: 0.0.0.0:7569]
    #[arg(long, env = "LEASEHOLD_SERVER_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Address of the admin API and /metrics; keep it local or firewalled.
    /// [default: 127.0.0.1:8080]
    #[arg(long, env = "LEASEHOLD_SERVER_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,

    /// Base URL of a license node; repeat for several (tried in random order). None at all
    /// means air-gapped: sync with export-upload and import-bundle. The environment variable
    /// takes a comma-separated list.
    #[arg(
        long = "node",
        env = "LEASEHOLD_SERVER_NODE",
        value_delimiter = ',',
        value_name = "URL"
    )]
    nodes: Vec<String>,

    /// A vendor public key bundles must be signed with (as `leasehold vendor keygen` prints
    /// it), or a file holding one. Repeat to trust several; at least one is required. The
    /// environment variable takes a comma-separated list.
    #[arg(
        long = "vendor-key",
        // A base64url key may start with `-`.
        allow_hyphen_values = true,
        env = "LEASEHOLD_SERVER_VENDOR_KEY",
        value_delimiter = ',',
        value_name = "KEY|FILE"
    )]
    vendor_keys: Vec<String>,

    /// The server GUID the vendor assigned; may also be set later with `set-guid`.
    #[arg(long, env = "LEASEHOLD_SERVER_GUID", value_name = "GUID")]
    guid: Option<ServerGuid>,

    /// Bearer token of the admin API. Without one, a random token is generated once and
    /// kept in DATA_DIR/admin-token (mode 0600).
    #[arg(
        long,
        env = "LEASEHOLD_SERVER_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true,
        value_name = "TOKEN"
    )]
    admin_token: Option<Secret>,

    /// Timeout of one sync request to one license node. [default: 30s]
    #[arg(long, env = "LEASEHOLD_SERVER_NODE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    node_timeout: Option<Duration>,

    /// How long a replaced client key (`leasehold server client-key --rotate`) is still
    /// accepted, so applications can move to the new one without a refused call.
    /// [default: 7d]
    #[arg(long, env = "LEASEHOLD_SERVER_CLIENT_KEY_OVERLAP", value_name = "DURATION", value_parser = parse_duration)]
    client_key_overlap: Option<Duration>,

    /// Serve the lease and admin listeners over HTTPS with this certificate chain (PEM, leaf
    /// first); needs --tls-key. Re-read when the files change (checked every 10 s, and at
    /// once on SIGHUP). The dashboard's cookies are then marked Secure.
    #[arg(long, env = "LEASEHOLD_SERVER_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "LEASEHOLD_SERVER_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// PEM file of the certificate authorities a license node's HTTPS certificate must chain
    /// to; only these are trusted then. Without it, the system's trusted roots.
    #[arg(long, env = "LEASEHOLD_SERVER_NODE_CA", value_name = "FILE")]
    node_ca: Option<PathBuf>,

    /// The HTTP(S) proxy the sync with the license nodes goes through
    /// (http://[USER:PASSWORD@]HOST:PORT). Without it, HTTPS_PROXY or ALL_PROXY if set
    /// (hosts in NO_PROXY are reached directly); `none` forces a direct connection.
    #[arg(
        long,
        env = "LEASEHOLD_SERVER_PROXY",
        hide_env_values = true,
        value_name = "URL"
    )]
    proxy: Option<String>,

    #[command(flatten)]
    limits: crate::limits::LimitArgs,

    /// Clients holding a lease at once; a new client beyond is refused (too_many_clients),
    /// clients already connected are served. [default: 50000]
    #[arg(long, env = "LEASEHOLD_SERVER_MAX_CLIENTS", value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_clients: Option<usize>,

    /// New client ids one source address may bring per minute; more are refused
    /// (rate_limited) until the minute has passed. [default: 600]
    #[arg(long, env = "LEASEHOLD_SERVER_NEW_CLIENTS_PER_MINUTE", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    new_clients_per_minute: Option<u32>,

    /// How often the sync agent looks at the clock and flushes usage (tests).
    #[arg(long, hide = true, default_value = "5s", value_parser = parse_duration)]
    agent_tick: Duration,
}

impl fmt::Debug for RunArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunArgs")
            .field("config", &self.config)
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("nodes", &self.nodes)
            .field("vendor_keys", &self.vendor_keys)
            .field("guid", &self.guid)
            .field("admin_token", &self.admin_token)
            .field("node_timeout", &self.node_timeout)
            .field("client_key_overlap", &self.client_key_overlap)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("node_ca", &self.node_ca)
            .field("proxy", &self.proxy.as_ref().map(|_| "<set>"))
            .field("limits", &self.limits)
            .field("max_clients", &self.max_clients)
            .field("new_clients_per_minute", &self.new_clients_per_minute)
            .field("agent_tick", &self.agent_tick)
            .finish()
    }
}

/// How the admin commands reach a running server.
#[derive(Debug, Args)]
struct AdminArgs {
    /// Base URL of the server's admin listener (its --admin-listen).
    #[arg(
        long,
        env = "LEASEHOLD_SERVER_ADMIN",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    admin: String,

    /// The server's admin token, sent as `Authorization: Bearer TOKEN`.
    #[arg(
        long,
        env = "LEASEHOLD_SERVER_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true,
        value_name = "TOKEN"
    )]
    token: Option<Secret>,

    /// A file holding the admin token, e.g. the DATA_DIR/admin-token a server generated;
    /// used when no --token is given.
    #[arg(long, env = "LEASEHOLD_SERVER_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// Print exactly one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_sort(text: &str) -> Result<ClientSort, String> {
    ClientSort::parse(text.trim())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    leasehold_server::config::parse_duration(text)
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    match args.command {
        ServerCommand::Run(a) => run::run(*a),
        ServerCommand::Status(a) => admin::block_on(admin::status(&a)),
        ServerCommand::Clients {
            admin: a,
            search,
            sort,
        } => admin::block_on(admin::clients(&a, search.as_deref(), sort)),
        ServerCommand::Usage {
            from,
            to,
            csv,
            admin: a,
        } => admin::block_on(admin::usage(&a, from, to, csv)),
        ServerCommand::SetGuid { guid, admin: a } => admin::block_on(admin::set_guid(&a, guid)),
        ServerCommand::SyncNow(a) => admin::block_on(admin::sync_now(&a)),
        ServerCommand::ClientKey {
            rotate,
            set,
            admin: a,
        } => admin::block_on(admin::client_key(&a, rotate, set)),
        ServerCommand::ExportUpload { out, admin: a } => {
            admin::block_on(admin::export_upload(&a, &out))
        }
        ServerCommand::ImportBundle { file, admin: a } => {
            admin::block_on(admin::import_bundle(&a, &file))
        }
        ServerCommand::SetPassword { data_dir } => run::set_password(data_dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    fn parse(args: &[&str]) -> Result<ServerArgs, clap::Error> {
        let mut all = vec!["server"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.server)
    }

    #[test]
    fn keys_and_tokens_may_start_with_a_hyphen() {
        // base64url keys and tokens start with `-` about one time in 32.
        let a = parse(&["run", "--vendor-key", "-jAbc", "--admin-token", "-tok"]).unwrap();
        let ServerCommand::Run(r) = a.command else {
            panic!("not run")
        };
        assert_eq!(r.vendor_keys, ["-jAbc"]);
        assert!(parse(&["status", "--token", "-tok"]).is_ok());
    }

    #[test]
    fn run_flags_parse_and_repeat() {
        let a = parse(&[
            "run",
            "--node",
            "http://a:1",
            "--node",
            "http://b:2,http://c:3",
            "--vendor-key",
            "k1",
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            "t",
            "--agent-tick",
            "100ms",
        ])
        .unwrap();
        let ServerCommand::Run(r) = a.command else {
            panic!("not run")
        };
        assert_eq!(r.nodes, ["http://a:1", "http://b:2", "http://c:3"]);
        assert_eq!(r.vendor_keys, ["k1"]);
        assert_eq!(r.agent_tick, Duration::from_millis(100));
        assert!(!format!("{r:?}").contains("\"t\""));
    }

    #[test]
    fn set_password_takes_a_data_dir() {
        let a = parse(&["set-password", "--data-dir", "/srv/lh"]).unwrap();
        let ServerCommand::SetPassword { data_dir } = a.command else {
            panic!("not set-password")
        };
        assert_eq!(data_dir, Some(PathBuf::from("/srv/lh")));
    }

    #[test]
    fn bad_flags_are_refused_naming_them() {
        let e = parse(&["run", "--guid", "nope"]).unwrap_err().to_string();
        assert!(e.contains("--guid"), "{e}");
        let e = parse(&["run", "--listen", "localhost"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--listen"), "{e}");
        let e = parse(&["set-guid", "nope"]).unwrap_err().to_string();
        assert!(e.contains("server GUID"), "{e}");
        let e = parse(&["status", "--token", " "]).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }
}
