//! `leasehold node serve`: runs a license node on a database URL with a vendor signing key;
//! `leasehold node migrate`: brings a node database's schema up to date and exits;
//! `leasehold node maintain`: one pass of usage roll-up and retention;
//! `leasehold node create-admin`: an admin account made on the database itself (the first
//! one without a bootstrap token, or a way back in when every admin password is lost).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use leasehold_node::domain::retention::UsagePolicy;
use leasehold_node::{Actor, Change, Node, NodeState};
use leasehold_proto::api::staff::{check_password, check_reason, AccountName, CreateAccount, Role};
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
    /// Create an admin account directly on the node database, then exit: the first admin
    /// of a new node (instead of the bootstrap token), or a way back in when every admin
    /// password is lost. No node or token is needed, only the database; the audit log
    /// records it as done by "node database". Without --password-stdin a strong password
    /// is generated and printed once.
    CreateAdmin(CreateAdminArgs),
}

#[derive(Args)]
struct CreateAdminArgs {
    /// Database URL, as for `serve`.
    #[arg(
        long,
        env = "LEASEHOLD_NODE_DB",
        hide_env_values = true,
        default_value = "sqlite://leasehold-node.db"
    )]
    db: String,
    /// The new account's name (an existing name is refused: choose another, sign in with it
    /// and set the old account's password with `leasehold vendor account set-password`).
    #[arg(long, value_name = "NAME")]
    name: AccountName,
    /// Read the password (at least 12 characters) from the first line of stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Why, for the audit log.
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "leasehold node create-admin"
    )]
    reason: String,
}

impl std::fmt::Debug for CreateAdminArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateAdminArgs")
            .field("db", &leasehold_node::store::redact_url(&self.db))
            .field("name", &self.name)
            .field("password_stdin", &self.password_stdin)
            .field("reason", &self.reason)
            .finish()
    }
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
        hide_env_values = true,
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
        hide_env_values = true,
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
        hide_env_values = true,
        default_value = "sqlite://leasehold-node.db"
    )]
    db: String,
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, env = "LEASEHOLD_NODE_LISTEN", default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// Serve the vendor admin API (`/v1/admin`) and the console (`/console`) on this
    /// address instead, e.g. an internal network's, so that --listen (which license servers
    /// reach) serves only sync, health, metrics and the description. Without it --listen
    /// serves everything.
    #[arg(long, env = "LEASEHOLD_NODE_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// PKCS#8 PEM file with the vendor signing key (`leasehold vendor keygen` writes one).
    #[arg(long, env = "LEASEHOLD_SIGNING_KEY")]
    signing_key: PathBuf,
    /// Bootstrap token: it creates the first admin account (`LEASEHOLD_VENDOR_TOKEN=TOKEN
    /// leasehold vendor account add --name NAME --role admin`) while the node has no enabled
    /// admin, and does nothing else; staff then sign in with their own accounts (`leasehold
    /// vendor login`). Optional: `leasehold node create-admin` makes the first admin on the
    /// database instead.
    #[arg(
        long,
        env = "LEASEHOLD_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true,
        value_name = "TOKEN"
    )]
    admin_token: Option<String>,
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
            .field("admin_listen", &self.admin_listen)
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
        NodeCommand::CreateAdmin(a) => tokio::runtime::Runtime::new()?.block_on(create_admin(a)),
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

async fn create_admin(a: CreateAdminArgs) -> anyhow::Result<()> {
    let reason = check_reason(&a.reason).map_err(|e| anyhow::anyhow!("--reason: {e}"))?;
    let (password, generated) = if a.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        (line.trim_end_matches(['\n', '\r']).to_owned(), false)
    } else {
        (leasehold_web::browser::generated_password(), true)
    };
    check_password(&password).map_err(|e| anyhow::anyhow!(e))?;
    let db = leasehold_node::store::redact_url(&a.db);
    let store = leasehold_node::store::open(&a.db)
        .await
        .with_context(|| format!("--db {db}"))?;
    // Creating an account signs nothing: a throwaway key stands in for the vendor's, which
    // this command need not be given.
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let key = VendorSigningKey::from_secret_bytes(secret);
    let node = Node::new(store, key, Arc::new(SystemClock));
    let account = node
        .create_account(
            Change::new(&Actor::database(), &reason),
            &CreateAccount {
                name: a.name.clone(),
                role: Role::Admin,
                password: password.clone(),
            },
        )
        .await
        .map_err(|e| {
            if e.code == leasehold_proto::ErrorCode::AlreadyExists {
                anyhow::anyhow!(
                    "{}: {}; choose another name, sign in with it and set {}'s password with `leasehold vendor account set-password {}`",
                    e.code, e.message, a.name, a.name
                )
            } else {
                anyhow::anyhow!("{}: {}", e.code, e.message)
            }
        })?;
    println!("admin account {} created in {db}", account.name);
    if generated {
        println!("password: {password}");
        println!("(generated and shown this once; change it with `leasehold vendor account set-password` once signed in)");
    }
    println!(
        "sign in with: leasehold vendor --node URL login --name {}",
        account.name
    );
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let bootstrap = args.admin_token.as_deref().map(str::trim).unwrap_or("");
    if args.admin_token.is_some() && bootstrap.is_empty() {
        anyhow::bail!("--admin-token (or LEASEHOLD_ADMIN_TOKEN) is empty: give a token, or leave it out (`leasehold node create-admin` makes the first admin instead)");
    }
    let key = load_signing_key(&args.signing_key)?;
    let store = leasehold_node::store::open(&args.db)
        .await
        .with_context(|| format!("--db {}", leasehold_node::store::redact_url(&args.db)))?;
    let policy = args.usage.policy()?;
    let limits = args
        .limits
        .limits(if args.admin_listen.is_some() { 2 } else { 1 })?;
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
    let admin_listener = match args.admin_listen {
        None => None,
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} (--admin-listen)"))?,
        ),
    };
    let admin_addr = admin_listener
        .as_ref()
        .map(tokio::net::TcpListener::local_addr)
        .transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Where the admin API and the console are: their own listener, or the one.
    let admin_url = format!("{scheme}://{}", admin_addr.unwrap_or(addr));
    let _reloader = tls
        .as_ref()
        .map(|t| t.spawn_reloader("node", leasehold_web::tls::RELOAD_CHECK_EVERY));
    tracing::info!(%addr, admin = ?admin_addr, db = %leasehold_node::store::redact_url(&args.db), kid = %node.signing_key().kid(), tls = ?tls.as_ref().map(|t| t.fingerprint()), "license node started");
    match node.has_admin().await {
        Ok(true) => {}
        Ok(false) if bootstrap.is_empty() => tracing::warn!(
            "no admin account yet, and no bootstrap token (--admin-token): create the first admin on the database with `leasehold node create-admin --db URL --name NAME`, or restart with --admin-token TOKEN and run `LEASEHOLD_VENDOR_TOKEN=TOKEN leasehold vendor --node {admin_url} account add --name NAME --role admin`"
        ),
        Ok(false) => tracing::warn!(
            "no admin account yet: create the first one with the bootstrap token: `LEASEHOLD_VENDOR_TOKEN=<--admin-token> leasehold vendor --node {admin_url} account add --name NAME --role admin`, then sign in with `leasehold vendor login --name NAME`"
        ),
        Err(e) => tracing::warn!(error = %e.message, "cannot tell whether an admin account exists"),
    }
    match admin_addr {
        None => println!("leasehold node listening on {scheme}://{addr}"),
        Some(_) => println!("leasehold node listening on {scheme}://{addr} (admin {admin_url})"),
    }
    println!("vendor console: {admin_url}/console");
    leasehold_node::serve(
        NodeState::new(node, bootstrap),
        listener,
        admin_listener,
        limits,
        tls,
        crate::logging::shutdown_signal(),
    )
    .await
    .context("serving")?;
    tracing::info!("license node stopped");
    Ok(())
}
