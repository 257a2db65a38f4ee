//! `leasehold demo`: a whole Leasehold system in one process, on embedded defaults: a
//! license node on SQLite with its own vendor key, an installation with a production and a
//! backup license server (each with its GUID, licenses, data directory, admin token and
//! dashboard), and a few simulated application clients that take and give back licenses at
//! random. Keys typed on stdin stop and start the primary to show failover.
//!
//! Everything lives in one directory (`./leasehold-demo` by default); a later start reuses
//! it, so the key, the GUIDs, the licenses and the dashboard passwords stay the same.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufRead, ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::NaiveDate;
use clap::Args;
use leasehold_client::{Client, LicenseGuard, ServerRole};
use leasehold_node::api::GrantLicense;
use leasehold_node::{Node, NodeState};
use leasehold_proto::{
    Context, Feature, InstallationId, ServerGuid, SystemClock, TrustedKeys, VendorSigningKey,
};
use leasehold_server::logbuf::LogBuffer;
use leasehold_server::{DashboardSettings, Listeners, RunningServer, ServerOptions};
use rand::{Rng as _, RngCore as _};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The features the demo licenses and its clients use, with the production counts.
const FEATURES: [(&str, u32); 2] = [("asr.en-US", 20), ("tts", 10)];
/// Most licenses one simulated client holds at once.
const MAX_HELD_PER_CLIENT: usize = 4;
/// How long to wait for each server's first sync before going on without it.
const SYNC_WAIT: Duration = Duration::from_secs(20);
const STATUS_EVERY: Duration = Duration::from_secs(10);

const STATE_FILE: &str = "demo.json";
const KEY_FILE: &str = "vendor-key.pem";
const NODE_DB: &str = "node.db";
const PASSWORDS_FILE: &str = "demo-passwords.txt";
/// The same file `leasehold server run` reads its generated token from.
const SERVER_TOKEN_FILE: &str = "admin-token";

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

/// What `DIR/demo.json` keeps between starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DemoState {
    installation: InstallationId,
    node_admin_token: String,
    production: ServerGuid,
    #[serde(default)]
    backup: Option<ServerGuid>,
}

/// One license server of the demo and how to start it.
#[derive(Debug)]
struct ServerSpec {
    name: &'static str,
    data_dir: PathBuf,
    guid: ServerGuid,
    lease: SocketAddr,
    admin: SocketAddr,
    token: String,
}

/// What the node and the servers share.
#[derive(Debug, Clone)]
struct Common {
    node_url: String,
    trusted: TrustedKeys,
    public_key: String,
    logs: LogBuffer,
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
    } = provision(&dir, with_backup, today).await?;

    let node_listener = tokio::net::TcpListener::bind(port(base, 0))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the node (choose other ports with --listen-base)",
                port(base, 0)
            )
        })?;
    let node_url = format!("http://{}", port(base, 0));
    let (node_stop, node_stopped) = tokio::sync::oneshot::channel::<()>();
    let node_task = tokio::spawn(leasehold_node::serve(
        NodeState::new(node.clone(), &state.node_admin_token),
        node_listener,
        async move {
            let _ = node_stopped.await;
        },
    ));

    let common = Common {
        node_url: node_url.clone(),
        trusted: TrustedKeys::new().with(key.verifying_key()),
        public_key: key.public_key_string(),
        logs,
    };
    let production = ServerSpec::new(&dir, "production", state.production, base, 1)?;
    let backup = match (with_backup, state.backup) {
        (true, Some(guid)) => Some(ServerSpec::new(&dir, "backup", guid, base, 3)?),
        _ => None,
    };

    // Both servers: started and synced together.
    let (primary, standby) = tokio::join!(start_server(&production, &common), async {
        match &backup {
            Some(spec) => start_server(spec, &common).await.map(Some),
            None => Ok(None),
        }
    });
    let (mut primary, standby) = match (primary, standby) {
        (Ok(p), Ok(s)) => (Some(p), s),
        (p, s) => {
            let mut error = None;
            for r in [p.map(Some), s] {
                match r {
                    Ok(Some(server)) => server.stop().await,
                    Ok(None) => {}
                    Err(e) => error = error.or(Some(e)),
                }
            }
            let _ = node_stop.send(());
            let _ = node_task.await;
            return Err(error.unwrap_or_else(|| anyhow::anyhow!("a server did not start")));
        }
    };
    let passwords = dashboard_passwords(
        &dir,
        [
            (Some(&production), primary.as_ref()),
            (backup.as_ref(), standby.as_ref()),
        ],
    )
    .await?;
    let (p_sync, b_sync) =
        tokio::join!(wait_synced(primary.as_ref()), wait_synced(standby.as_ref()));

    // The simulated clients.
    let servers = match &backup {
        Some(b) => format!("{};{}", production.lease, b.lease),
        None => production.lease.to_string(),
    };
    let SimulatedClients {
        stop: stop_clients,
        roles,
        threads: client_threads,
    } = start_clients(&servers, args.clients, today)?;

    // What to look at.
    print_intro(&Intro {
        dir: &dir,
        created,
        node_url: &node_url,
        state: &state,
        key: &key,
        production_view: &production_view,
        production: &production,
        backup: backup.as_ref(),
        servers: &servers,
        clients: args.clients,
        today,
        synced: [&p_sync, &b_sync],
        passwords: &passwords,
    })?;

    // Run until Ctrl-C, q or the duration.
    let mut keys = stdin_lines();
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
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
                    "p" => match primary.take() {
                        Some(server) => {
                            server.stop().await;
                            if backup.is_some() {
                                say("production server stopped: the clients move to the backup within ~12 s (s + Enter starts it again)");
                            } else {
                                say("production server stopped (s + Enter starts it again)");
                            }
                        }
                        None => say("the production server is already stopped (s + Enter starts it)"),
                    },
                    "s" => {
                        if primary.is_some() {
                            say("the production server is already running");
                        } else {
                            match start_server(&production, &common).await {
                                Ok(server) => {
                                    primary = Some(server);
                                    say("production server started again on its data directory: it restores its leases and grants at once (after more than ~2 minutes away it relearns them first); the clients return to it within a few seconds");
                                }
                                Err(e) => say(&format!("cannot start the production server again: {e:#}")),
                            }
                        }
                    }
                    "" => {}
                    other => say(&format!("unknown key {other:?}: p stops the primary, s starts it, q quits")),
                }
            }
            _ = ticker.tick() => {
                let line = status_line(primary.as_ref(), standby.as_ref(), backup.is_some(), &roles).await;
                say(&line);
            }
        }
    }

    // Stop: clients first (they give their licenses back), then the servers, then the node.
    say("stopping the demo");
    stop_clients.store(true, Ordering::Release);
    let _ = tokio::task::spawn_blocking(move || {
        for t in client_threads {
            let _ = t.join();
        }
    })
    .await;
    if let Some(server) = primary.take() {
        server.stop().await;
    }
    if let Some(server) = standby {
        server.stop().await;
    }
    let _ = node_stop.send(());
    match node_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "the node stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "the node task failed"),
    }
    say("demo stopped");
    Ok(())
}

/// What the demo runs on: its directory's vendor key, node database, installation and GUIDs,
/// created on the first start and reused after.
struct Provisioned {
    created: bool,
    key: VendorSigningKey,
    node: Arc<Node>,
    state: DemoState,
    production_view: leasehold_proto::api::node::ServerView,
}

/// Reuses the demo in `dir` or creates one: the vendor key, the node's database with one
/// installation, a production server with licenses and (unless `with_backup` is off) a
/// backup server with licenses backing them up.
async fn provision(dir: &Path, with_backup: bool, today: NaiveDate) -> anyhow::Result<Provisioned> {
    // The directory: reuse a demo, or create one.
    let existing = read_state(dir)?;
    let created = existing.is_none();
    if created {
        refuse_partial_demo(dir)?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the demo directory {}", dir.display()))?;
    }
    let key = if created {
        create_key(&dir.join(KEY_FILE))?
    } else {
        crate::node_cmd::load_signing_key(&dir.join(KEY_FILE))?
    };

    // The license node, in this process.
    let db = format!("sqlite://{}", dir.join(NODE_DB).display());
    let store = leasehold_node::store::open(&db)
        .await
        .with_context(|| format!("cannot open the node database {db}"))?;
    let node = Arc::new(Node::new(store, key.clone(), Arc::new(SystemClock)));
    let mut state = match existing {
        Some(s) => s,
        None => {
            let installation = node
                .create_installation("Leasehold demo")
                .await
                .map_err(|e| anyhow::anyhow!("creating the installation: {e}"))?;
            let production = node
                .add_server(&installation.id, Context::Production)
                .await
                .map_err(|e| anyhow::anyhow!("adding the production server: {e}"))?;
            grant(&node, production.guid, today).await?;
            DemoState {
                installation: installation.id,
                node_admin_token: random_token(),
                production: production.guid,
                backup: None,
            }
        }
    };
    let production_view = node.server(state.production).await.map_err(|e| {
        anyhow::anyhow!(
            "the node database in {} does not know the production server {} ({e}); remove the directory to start a new demo",
            dir.display(),
            state.production
        )
    })?;
    if with_backup && state.backup.is_none() {
        let backup = node
            .add_server(&state.installation, Context::Backup)
            .await
            .map_err(|e| anyhow::anyhow!("adding the backup server: {e}"))?;
        // Backup licenses parallel the production ones: same feature and count.
        for l in &production_view.licenses {
            node.grant_license(&GrantLicense {
                server: backup.guid,
                feature: l.feature.clone(),
                count: l.count,
                context: None,
                maintenance_until: maintenance(today),
                expires: None,
                backs_up: Some(l.id.clone()),
            })
            .await
            .map_err(|e| anyhow::anyhow!("granting a backup license: {e}"))?;
        }
        state.backup = Some(backup.guid);
    }
    write_state(dir, &state)?;

    Ok(Provisioned {
        created,
        key,
        node,
        state,
        production_view,
    })
}

/// The dashboard password of each running server: the one it generated at its first start,
/// the one noted in the demo directory, or a new one set now. Noted in the directory.
async fn dashboard_passwords(
    dir: &Path,
    servers: [(Option<&ServerSpec>, Option<&RunningServer>); 2],
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut passwords = read_passwords(dir)?;
    for (spec, running) in servers {
        if let (Some(spec), Some(running)) = (spec, running) {
            let password = match (&running.dashboard_password, passwords.get(spec.name)) {
                (Some(generated), _) => generated.clone(),
                (None, Some(stored)) => stored.clone(),
                // Set before, but not noted here: set a new one the demo knows.
                (None, None) => {
                    let password = random_token()[..16].to_owned();
                    let (data_dir, p) = (spec.data_dir.clone(), password.clone());
                    tokio::task::spawn_blocking(move || {
                        leasehold_server::dashboard::set_password(&data_dir, &p)
                    })
                    .await?
                    .map_err(|e| anyhow::anyhow!(e))?;
                    password
                }
            };
            passwords.insert(spec.name.to_owned(), password);
        }
    }
    write_passwords(dir, &passwords)?;
    Ok(passwords)
}

/// The demo's application processes: one thread per simulated client, each a real library
/// client placing calls; `roles` tells the console which server each one uses.
struct SimulatedClients {
    stop: Arc<AtomicBool>,
    roles: Arc<Vec<AtomicU8>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn start_clients(servers: &str, count: u32, today: NaiveDate) -> anyhow::Result<SimulatedClients> {
    let stop_clients = Arc::new(AtomicBool::new(false));
    let roles: Arc<Vec<AtomicU8>> =
        Arc::new((0..count).map(|_| AtomicU8::new(ROLE_NONE)).collect());
    let mut client_threads = Vec::new();
    for i in 0..count {
        let (servers, stop, roles) = (servers.to_owned(), stop_clients.clone(), roles.clone());
        let thread = std::thread::Builder::new()
            .name(format!("demo-client-{i}"))
            .spawn(move || {
                simulated_client(&servers, today, &stop, &roles[i as usize]);
            })
            .context("cannot start a simulated client thread")?;
        client_threads.push(thread);
    }
    Ok(SimulatedClients {
        stop: stop_clients,
        roles,
        threads: client_threads,
    })
}

/// What the console shows at the start: where everything is, the dashboards and passwords,
/// what to try.
struct Intro<'a> {
    dir: &'a Path,
    created: bool,
    node_url: &'a str,
    state: &'a DemoState,
    key: &'a VendorSigningKey,
    production_view: &'a leasehold_proto::api::node::ServerView,
    production: &'a ServerSpec,
    backup: Option<&'a ServerSpec>,
    servers: &'a str,
    clients: u32,
    today: NaiveDate,
    synced: [&'a Result<(), String>; 2],
    passwords: &'a BTreeMap<String, String>,
}

fn print_intro(i: &Intro<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let dir_note = if i.created {
        "created; a later start reuses it with the same GUIDs"
    } else {
        "reused: same vendor key, GUIDs and licenses"
    };
    writeln!(out, "Leasehold demo in {} ({dir_note})", i.dir.display())?;
    writeln!(
        out,
        "  license node       {}  admin token: {}  vendor key: {}",
        i.node_url,
        i.state.node_admin_token,
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
    writeln!(out, "Try:")?;
    writeln!(
        out,
        "  leasehold server status --admin http://{} --token {}",
        i.production.admin, i.production.token
    )?;
    writeln!(
        out,
        "  leasehold vendor --node {} --token {} server show '{}'",
        i.node_url, i.state.node_admin_token, i.production.guid
    )?;
    if i.backup.is_some() {
        writeln!(out, "Press p + Enter to stop the primary (clients move to the backup within ~12 s), s + Enter to start it again, q + Enter or Ctrl-C to quit.")?;
    } else {
        writeln!(out, "Press p + Enter to stop the primary (no backup: clients keep what they hold), s + Enter to start it again, q + Enter or Ctrl-C to quit.")?;
    }
    out.flush()?;
    Ok(())
}

/// A line on stdout, with the time.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[{}] {text}", chrono::Local::now().format("%H:%M:%S"));
    let _ = out.flush();
}

impl ServerSpec {
    /// The server's data directory and admin token (made once, kept in the directory).
    fn new(
        dir: &Path,
        name: &'static str,
        guid: ServerGuid,
        base: u16,
        offset: u16,
    ) -> anyhow::Result<Self> {
        let data_dir = dir.join(name);
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let token_path = data_dir.join(SERVER_TOKEN_FILE);
        let token = match std::fs::read_to_string(&token_path) {
            Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
            Ok(_) => bail!(
                "the admin token file {} is empty; delete it to make a new one",
                token_path.display()
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let token = random_token();
                write_private(&token_path, &format!("{token}\n"), true)?;
                token
            }
            Err(e) => bail!("cannot read {}: {e}", token_path.display()),
        };
        Ok(Self {
            name,
            data_dir,
            guid,
            lease: port(base, offset),
            admin: port(base, offset + 1),
            token,
        })
    }
}

async fn start_server(spec: &ServerSpec, common: &Common) -> anyhow::Result<RunningServer> {
    let options = ServerOptions {
        data_dir: spec.data_dir.clone(),
        nodes: vec![common.node_url.clone()],
        trusted_keys: common.trusted.clone(),
        guid: Some(spec.guid),
        node_timeout: Duration::from_secs(10),
    };
    let listeners = Listeners {
        lease: spec.lease,
        admin: spec.admin,
        admin_token: spec.token.clone(),
        agent_tick: Duration::from_secs(1),
    };
    let dashboard = DashboardSettings {
        config_path: None,
        vendor_keys: vec![common.public_key.clone()],
        logs: common.logs.clone(),
    };
    leasehold_server::start_with_dashboard(options, listeners, dashboard, Arc::new(SystemClock))
        .await
        .map_err(anyhow::Error::new)
        .with_context(|| {
            format!(
                "starting the {} server (data {}; ports in use? choose others with --listen-base; another demo on this directory?)",
                spec.name,
                spec.data_dir.display()
            )
        })
}

/// Waits until the server's state is `ok` (it syncs at start), at most [`SYNC_WAIT`].
async fn wait_synced(server: Option<&RunningServer>) -> Result<(), String> {
    let Some(server) = server else { return Ok(()) };
    let deadline = Instant::now() + SYNC_WAIT;
    loop {
        let last = match server.server.status().await {
            Ok(s) if s.state == leasehold_server::api::ServerState::Ok => return Ok(()),
            Ok(s) => format!(
                "{}{}",
                state_name(s.state),
                s.reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state_name(state: leasehold_server::api::ServerState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{state:?}"))
}

const ROLE_NONE: u8 = 0;
const ROLE_PRIMARY: u8 = 1;
const ROLE_BACKUP: u8 = 2;

/// One application: takes a license of a random feature now and then, holds it 1 to 5 s,
/// pauses at random, until `stop`. Notes which server it uses in `role`.
fn simulated_client(servers: &str, release: NaiveDate, stop: &AtomicBool, role: &AtomicU8) {
    let client = match Client::builder()
        .servers(servers)
        .product_release(release)
        .features(FEATURES.iter().map(|(f, _)| *f))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a simulated client");
            return;
        }
    };
    let mut rng = rand::thread_rng();
    let mut held: Vec<(LicenseGuard<'_>, Instant)> = Vec::new();
    let mut paused_until = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        held.retain(|(_, until)| *until > now);
        if now >= paused_until && held.len() < MAX_HELD_PER_CLIENT && rng.gen_bool(0.3) {
            let feature = if rng.gen_bool(0.6) {
                FEATURES[0].0
            } else {
                FEATURES[1].0
            };
            if let Ok(license) = client.acquire(feature) {
                held.push((
                    license,
                    now + Duration::from_millis(rng.gen_range(1_000..=5_000)),
                ));
            }
            if rng.gen_bool(0.1) {
                paused_until = now + Duration::from_millis(rng.gen_range(1_000..=4_000));
            }
        }
        let r = match client.status().server {
            ServerRole::Primary => ROLE_PRIMARY,
            ServerRole::Backup => ROLE_BACKUP,
            ServerRole::None => ROLE_NONE,
        };
        role.store(r, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
    }
    // Licenses first, then the client (which gives its quota back to the server).
    drop(held);
    drop(client);
}

/// Reads stdin lines on a thread; the channel closes when stdin does (no terminal, closed
/// or unreadable stdin just means no keys).
fn stdin_lines() -> mpsc::Receiver<String> {
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
async fn status_line(
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

async fn server_summary(name: &str, server: Option<&RunningServer>) -> String {
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

fn describe_licenses(licenses: &[leasehold_proto::License]) -> String {
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

fn maintenance(today: NaiveDate) -> NaiveDate {
    today
        .checked_add_days(chrono::Days::new(365))
        .unwrap_or(today)
}

/// The production licenses.
async fn grant(node: &Node, server: ServerGuid, today: NaiveDate) -> anyhow::Result<()> {
    for (feature, count) in FEATURES {
        node.grant_license(&GrantLicense {
            server,
            feature: Feature::parse(feature)?,
            count,
            context: None,
            maintenance_until: maintenance(today),
            expires: None,
            backs_up: None,
        })
        .await
        .map_err(|e| anyhow::anyhow!("granting {feature}: {e}"))?;
    }
    Ok(())
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes a file only its owner can read; `new` refuses to replace one.
fn write_private(path: &Path, text: &str, new: bool) -> anyhow::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn create_key(path: &Path) -> anyhow::Result<VendorSigningKey> {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let key = VendorSigningKey::from_secret_bytes(secret);
    secret.fill(0);
    let pem = key
        .to_pkcs8_pem()
        .context("cannot encode the signing key")?;
    write_private(path, &pem, true)?;
    Ok(key)
}

fn read_state(dir: &Path) -> anyhow::Result<Option<DemoState>> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "{} is not a demo state file; remove the directory to start a new demo",
                path.display()
            )
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    }
}

fn write_state(dir: &Path, state: &DemoState) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    write_private(&tmp, &format!("{text}\n"), false)?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// A directory with demo files but no state file was left half made: do not guess.
fn refuse_partial_demo(dir: &Path) -> anyhow::Result<()> {
    for name in [KEY_FILE, NODE_DB, "production", "backup", PASSWORDS_FILE] {
        if dir.join(name).exists() {
            bail!(
                "{} holds {name} but no {STATE_FILE}: a demo that did not finish starting; remove the directory (or choose another --dir) to start a new demo",
                dir.display()
            );
        }
    }
    Ok(())
}

/// `DIR/demo-passwords.txt`: one `NAME PASSWORD` line per server.
fn read_passwords(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let path = dir.join(PASSWORDS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| l.trim().split_once(' '))
            .map(|(name, pw)| (name.to_owned(), pw.trim().to_owned()))
            .collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    }
}

fn write_passwords(dir: &Path, passwords: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let text: String = passwords
        .iter()
        .map(|(name, pw)| format!("{name} {pw}\n"))
        .collect();
    write_private(&dir.join(PASSWORDS_FILE), &text, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut pw = BTreeMap::new();
        pw.insert("production".to_owned(), "abc def".to_owned());
        pw.insert("backup".to_owned(), "xyz".to_owned());
        write_passwords(dir.path(), &pw).unwrap();
        assert_eq!(read_passwords(dir.path()).unwrap(), pw);
        let mode = std::fs::metadata(dir.path().join(PASSWORDS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_half_made_demo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        refuse_partial_demo(dir.path()).unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "x").unwrap();
        let e = refuse_partial_demo(dir.path()).unwrap_err().to_string();
        assert!(e.contains("demo.json"), "{e}");
    }
}
