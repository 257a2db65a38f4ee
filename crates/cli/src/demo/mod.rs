//! `leasehold demo`: a whole Leasehold system in one process, on embedded defaults: a
//! license node on SQLite with its own vendor key and its vendor console (an admin account
//! made for it), an installation with a production and a
//! backup license server (each with its GUID, licenses, data directory, admin token and
//! dashboard), and a few simulated application clients that take and give back licenses at
//! random. Keys typed on stdin stop and start the primary to show failover.
//!
//! In parts: [`provision`] (the directory), [`processes`] (node and servers), [`clients`]
//! (the simulated applications) and [`console`] (what is printed and typed).
//!
//! Everything lives in one directory (`./leasehold-demo` by default); a later start reuses
//! it, so the key, the GUIDs, the licenses and the dashboard passwords stay the same.

mod clients;
mod console;
mod processes;
mod provision;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use leasehold_proto::TrustedKeys;
use leasehold_server::logbuf::LogBuffer;

use clients::start_clients;
use processes::{wait_synced, Common, NodeProcess, ServerSpec, Servers};
use provision::{dashboard_passwords, provision, Provisioned};

/// The features the demo licenses and its clients use, with the production counts.
const FEATURES: [(&str, u32); 2] = [("asr.en-US", 20), ("tts", 10)];
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's files: vendor key, node database, both servers' data
    /// directories and the dashboard passwords. Created if missing; when it already holds a
    /// demo it is reused, so the key, GUIDs and licenses stay the same.
    #[arg(long, default_value = "./leasehold-demo", value_name = "DIR")]
    dir: PathBuf,

    /// First of five consecutive ports on 127.0.0.1: the node on PORT, the production
    /// server's lease API on PORT+1 and its admin API and dashboard on PORT+2, the backup
    /// server's on PORT+3 and PORT+4.
    #[arg(long, default_value_t = 7600, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..=65531))]
    listen_base: u16,

    /// How many simulated application clients to run.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=200))]
    clients: u32,

    /// Run without the backup server; the clients then list only the primary.
    #[arg(long)]
    no_backup: bool,

    /// Stop by itself after this long (e.g. `30s`, `10m`); without it the demo runs until
    /// q + Enter or Ctrl-C.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let logs = LogBuffer::default();
    init_logging(&logs);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let result = runtime.block_on(demo(args, logs));
    // Nothing may hold the exit up (the stdin reader is a plain thread, left blocked).
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

/// Warnings only on stderr (the printed lines stay readable) unless `RUST_LOG` is set; the
/// dashboard's log page keeps the info lines.
fn init_logging(logs: &LogBuffer) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};
    let filter = |default: &str| {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
    };
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter("warn")),
        )
        .with(logs.layer().with_filter(filter("info")))
        .try_init();
}

fn port(base: u16, offset: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, base + offset))
}

async fn demo(args: DemoArgs, logs: LogBuffer) -> anyhow::Result<()> {
    let dir = args.dir.clone();
    let base = args.listen_base;
    let with_backup = !args.no_backup;
    let today = chrono::Local::now().date_naive();

    let Provisioned {
        created,
        key,
        node,
        state,
        production_view,
        console_password,
    } = provision(&dir, with_backup, today).await?;
    let node = NodeProcess::start(node, port(base, 0)).await?;
    let common = Common {
        node_url: node.url.clone(),
        trusted: TrustedKeys::new().with(key.verifying_key()),
        public_key: key.public_key_string(),
        logs,
    };
    let production = ServerSpec::new(&dir, "production", state.production, base, 1)?;
    let backup = match (with_backup, state.backup) {
        (true, Some(guid)) => Some(ServerSpec::new(&dir, "backup", guid, base, 3)?),
        _ => None,
    };
    let client_key = processes::share_client_key(&production, backup.as_ref())?;
    let mut servers = match Servers::start(common, production, backup).await {
        Ok(s) => s,
        Err(e) => {
            node.stop().await;
            return Err(e);
        }
    };
    let passwords = dashboard_passwords(
        &dir,
        [
            (Some(&servers.production), servers.primary.as_ref()),
            (servers.backup.as_ref(), servers.standby.as_ref()),
        ],
    )
    .await?;
    let (p_sync, b_sync) = tokio::join!(
        wait_synced(servers.primary.as_ref()),
        wait_synced(servers.standby.as_ref())
    );
    let client_list = servers.client_list();
    let clients = start_clients(&client_list, &client_key, args.clients, today)?;
    console::print_intro(&console::Intro {
        dir: &dir,
        created,
        node_url: &node.url,
        key: &key,
        production_view: &production_view,
        production: &servers.production,
        backup: servers.backup.as_ref(),
        servers: &client_list,
        client_key: &client_key,
        clients: args.clients,
        today,
        synced: [&p_sync, &b_sync],
        passwords: &passwords,
        console_password: &console_password,
    })?;

    console::run(&mut servers, &clients.roles, args.duration).await;

    // Stop: clients first (they give their licenses back), then the servers, then the node.
    say("stopping the demo");
    clients.stop().await;
    servers.stop().await;
    node.stop().await;
    say("demo stopped");
    Ok(())
}

/// A line on stdout, with the time.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[{}] {text}", chrono::Local::now().format("%H:%M:%S"));
    let _ = out.flush();
}
