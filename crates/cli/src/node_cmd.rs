//! `leasehold node serve`: runs a license node on a database URL with a vendor signing key;
//! `leasehold node migrate`: brings a node database's schema up to date and exits;
//! `leasehold node maintain`: one pass of usage roll-up and retention.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use leasehold_node::domain::retention::UsagePolicy;
use leasehold_node::{Node, NodeState};
use leasehold_proto::{SystemClock, VendorSigningKey};

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Serve the sync API (`POST /v1/sync`) and the vendor admin API.
    Serve(ServeArgs),
    /// Create or bring the node database's schema up to date, then exit (`serve` does this
    /// too at start; run it alone before starting several nodes of a new version).
    Migrate(MigrateArgs),
    /// Run one pass of usage maintenance and exit: partitions for the coming days
    /// (PostgreSQL), hourly rows older than the hourly window rolled up into days, days older
    /// than the retention deleted. `serve` runs the same pass at start and every hour.
    Maintain(MaintainArgs),
}

/// How long usage is kept, and in what detail.
#[derive(Debug, Clone, Copy, Args)]
struct UsageArgs {
    /// Days of hourly usage rows kept; older hours are rolled up into one row per server,
    /// feature and day.
    #[arg(long, env = "LEASEHOLD_NODE_USAGE_HOURLY_DAYS", default_value_t = 90)]
    usage_hourly_days: u32,
    /// Days of usage kept at all; older days are deleted. Must be longer than
    /// --usage-hourly-days.
    #[arg(
        long,
        env = "LEASEHOLD_NODE_USAGE_RETENTION_DAYS",
        default_value_t = 730
    )]
    usage_retention_days: u32,
}

impl UsageArgs {
    fn policy(&self) -> anyhow::Result<UsagePolicy> {
        let p = UsagePolicy {
            hourly_days: self.usage_hourly_days,
            retention_days: self.usage_retention_days,
        };
        p.validate()
            .map_err(|e| anyhow::anyhow!("--usage-hourly-days / --usage-retention-days: {e}"))?;
        Ok(p)
    }
}

#[derive(Args)]
struct MaintainArgs {
    /// Database URL, as for `serve`.
    #[arg(
        long,
        env = "LEASEHOLD_NODE_DB",
        default_value = "sqlite://leasehold-node.db"
    )]
    db: String,
    #[command(flatten)]
    usage: UsageArgs,
}

impl std::fmt::Debug for MaintainArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaintainArgs")
            .field("db", &leasehold_node::store::redact_url(&self.db))
            .field("usage", &self.usage)
            .finish()
    }
}

#[derive(Args)]
struct MigrateArgs {
    /// Database URL, as for `serve`.
    #[arg(
        long,
        env = "LEASEHOLD_NODE_DB",
        default_value = "sqlite://leasehold-node.db"
    )]
    db: String,
    /// The database was just restored from a backup: let every server that synced after
    /// the backup sync once with the token it holds (which the restored database never
    /// issued) instead of being refused until reassigned. Run it once, right after the
    /// restore, before starting the nodes.
    #[arg(long)]
    restored: bool,
}

impl std::fmt::Debug for MigrateArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateArgs")
            .field("db", &leasehold_node::store::redact_url(&self.db))
            .field("restored", &self.restored)
            .finish()
    }
}

#[derive(Args)]
struct ServeArgs {
    /// Database URL: sqlite://PATH (one node; created if missing) or
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?max_connections=N] (many nodes on one
    /// database; migrated at start).
    #[arg(
        long,
        env = "LEASEHOLD_NODE_DB",
        default_value = "sqlite://leasehold-node.db"
    )]
    db: String,
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, env = "LEASEHOLD_NODE_LISTEN", default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// PKCS#8 PEM file with the vendor signing key (`leasehold vendor keygen` writes one).
    #[arg(long, env = "LEASEHOLD_SIGNING_KEY")]
    signing_key: PathBuf,
    /// Bearer token the vendor admin API requires.
    #[arg(
        long,
        env = "LEASEHOLD_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    admin_token: String,
    #[command(flatten)]
    usage: UsageArgs,
    #[command(flatten)]
    limits: crate::limits::LimitArgs,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key. The
    /// files are re-read when they change (checked every 10 s, and at once on SIGHUP), so a
    /// renewed certificate needs no restart.
    #[arg(long, env = "LEASEHOLD_NODE_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "LEASEHOLD_NODE_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
}

impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("db", &leasehold_node::store::redact_url(&self.db))
            .field("listen", &self.listen)
            .field("signing_key", &self.signing_key)
            .field("admin_token", &"<redacted>")
            .field("usage", &self.usage)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    crate::logging::init();
    match args.command {
        NodeCommand::Serve(a) => tokio::runtime::Runtime::new()?.block_on(serve(a)),
        NodeCommand::Migrate(a) => tokio::runtime::Runtime::new()?.block_on(async {
            let db = leasehold_node::store::redact_url(&a.db);
            let store = leasehold_node::store::open(&a.db)
                .await
                .with_context(|| format!("--db {db}"))?;
            println!("node database {db} is up to date");
            if a.restored {
                let mut tx = store.begin().await.with_context(|| format!("--db {db}"))?;
                leasehold_node::domain::record_restore(&mut *tx, chrono::Utc::now())
                    .await
                    .context("recording the restore")?;
                tx.commit().await.context("recording the restore")?;
                println!("restore recorded: servers that synced after the backup sync once with the token they hold");
            }
            Ok(())
        }),
        NodeCommand::Maintain(a) => tokio::runtime::Runtime::new()?.block_on(async {
            let policy = a.usage.policy()?;
            let db = leasehold_node::store::redact_url(&a.db);
            let store = leasehold_node::store::open(&a.db)
                .await
                .with_context(|| format!("--db {db}"))?;
            let started = std::time::Instant::now();
            let r = leasehold_node::domain::retention::maintain(&store, chrono::Utc::now(), policy)
                .await
                .context("usage maintenance")?;
            println!(
                "usage maintenance of {db} done in {:.1} s: {} partitions created, {} days rolled up ({} hourly rows), {} daily rows past retention deleted",
                started.elapsed().as_secs_f64(),
                r.partitions_created,
                r.days_rolled_up,
                r.hourly_rows_rolled_up,
                r.daily_rows_deleted
            );
            Ok(())
        }),
    }
}

/// How often a serving node runs usage maintenance (also once at start).
const USAGE_MAINTENANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

pub fn load_signing_key(path: &std::path::Path) -> anyhow::Result<VendorSigningKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read signing key file {}", path.display()))?;
    VendorSigningKey::from_pkcs8_pem(&pem)
        .with_context(|| format!("signing key file {}", path.display()))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.admin_token.trim().is_empty() {
        anyhow::bail!("--admin-token (or LEASEHOLD_ADMIN_TOKEN) must not be empty");
    }
    let key = load_signing_key(&args.signing_key)?;
    let store = leasehold_node::store::open(&args.db)
        .await
        .with_context(|| format!("--db {}", leasehold_node::store::redact_url(&args.db)))?;
    let policy = args.usage.policy()?;
    let limits = args.limits.limits(1)?;
    let tls = crate::limits::load_tls(leasehold_web::TlsFiles::from_flags(
        args.tls_cert.clone(),
        args.tls_key.clone(),
        "--tls-cert",
        "--tls-key",
    )?)?;
    let node = Arc::new(Node::new(store, key, Arc::new(SystemClock)));
    let _maintenance = node.spawn_usage_maintenance(policy, USAGE_MAINTENANCE_EVERY);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let _reloader = tls
        .as_ref()
        .map(|t| t.spawn_reloader("node", leasehold_web::tls::RELOAD_CHECK_EVERY));
    tracing::info!(%addr, db = %leasehold_node::store::redact_url(&args.db), kid = %node.signing_key().kid(), tls = ?tls.as_ref().map(|t| t.fingerprint()), "license node started");
    println!("leasehold node listening on {scheme}://{addr}");
    leasehold_node::serve(
        NodeState::new(node, &args.admin_token),
        listener,
        limits,
        tls,
        crate::logging::shutdown_signal(),
    )
    .await
    .context("serving")?;
    tracing::info!("license node stopped");
    Ok(())
}
