//! `leasehold server run`: checks every setting, starts the server, prints its addresses and
//! runs until Ctrl-C or SIGTERM.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use leasehold_proto::SystemClock;
use leasehold_server::config::DATA_DIR_CONFIG_FILE;
use leasehold_server::{DashboardSettings, Listeners, ServerOptions};

use super::config::{self, FileConfig, TokenOrigin};
use super::RunArgs;

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let logs = leasehold_server::logbuf::LogBuffer::default();
    crate::logging::init_with(Some(&logs));
    // Without --config, the file the dashboard writes into the data directory (if any).
    let config_path = args.config.clone().or_else(|| {
        let dir = args
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR));
        let path = dir.join(DATA_DIR_CONFIG_FILE);
        path.is_file().then_some(path)
    });
    if args.config.is_none() {
        if let Some(p) = &config_path {
            tracing::info!(path = %p.display(), "reading the config file the dashboard wrote into the data directory");
        }
    }
    let file = config_path
        .as_deref()
        .map(|p| FileConfig::load(p).map(|c| (p, c)))
        .transpose()?;
    let dashboard = DashboardSettings {
        logs,
        config_path: config_path.clone(),
        vendor_keys: if args.vendor_keys.is_empty() {
            file.as_ref()
                .and_then(|(_, c)| c.vendor_keys.clone())
                .unwrap_or_default()
        } else {
            args.vendor_keys.clone()
        },
    };
    let settings = config::resolve(&args, file.as_ref().map(|(p, c)| (*p, c)))?;
    let (token, origin) = config::admin_token(&settings.data_dir, settings.admin_token.as_ref())?;
    match &origin {
        TokenOrigin::Configured => {}
        TokenOrigin::Generated(path) => {
            tracing::info!(path = %path.display(), "generated an admin token; the admin commands take it with --token-file")
        }
        TokenOrigin::File(path) => {
            tracing::info!(path = %path.display(), "admin token read from file")
        }
    }
    tracing::info!(
        data_dir = %settings.data_dir.display(),
        nodes = ?settings.nodes,
        proxy = ?settings.node_connection.proxy.as_ref().map(leasehold_server::outbound::redact_proxy),
        node_ca = ?settings.node_connection.ca_file,
        vendor_keys = ?settings.trusted_keys.kids().map(|k| k.as_str()).collect::<Vec<_>>(),
        "starting the license server"
    );
    if settings.nodes.is_empty() {
        tracing::info!(
            "no license node configured: air-gapped, sync with export-upload and import-bundle"
        );
    }
    let args_overlap = chrono::Duration::from_std(settings.client_key_overlap)
        .context("--client-key-overlap is too long")?;
    let options = ServerOptions {
        data_dir: settings.data_dir.clone(),
        nodes: settings.nodes.clone(),
        trusted_keys: settings.trusted_keys.clone(),
        guid: settings.guid,
        node_timeout: settings.node_timeout,
        client_key_overlap: args_overlap,
        client_limits: settings.client_limits,
        node_connection: settings.node_connection.clone(),
    };
    let tls = crate::limits::load_tls(settings.tls.clone())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listeners = Listeners {
        lease: settings.listen,
        admin: settings.admin_listen,
        admin_token: token.as_str().to_owned(),
        agent_tick: args.agent_tick,
        limits: args.limits.limits(2)?,
        tls,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let running = leasehold_server::start_with_dashboard(
            options,
            listeners,
            dashboard,
            Arc::new(SystemClock),
        )
        .await
        .map_err(anyhow::Error::new)?;
        {
            let mut out = std::io::stdout().lock();
            // Printed once: only when the password was generated at this start.
            if let Some(password) = &running.dashboard_password {
                writeln!(
                    out,
                    "dashboard password: {password} (change it with leasehold server set-password)"
                )?;
            }
            writeln!(
                out,
                "leasehold server listening on {scheme}://{} (admin {scheme}://{})",
                running.lease_addr, running.admin_addr
            )?;
            out.flush()?;
        }
        crate::logging::shutdown_signal().await;
        tracing::info!("stopping the license server");
        running.stop().await;
        tracing::info!("license server stopped");
        Ok(())
    })
}

/// `leasehold server set-password`: reads the password from stdin and stores its hash.
pub fn set_password(data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR));
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("New dashboard password (shown as you type): ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        anyhow::bail!("no password on stdin: pipe it in, e.g. `echo 'new password' | leasehold server set-password --data-dir DIR`");
    }
    let path = leasehold_server::dashboard::set_password(&data_dir, password)
        .map_err(|e| anyhow::anyhow!(e))?;
    println!(
        "dashboard password set ({}); a running server uses it at the next sign-in",
        path.display()
    );
    Ok(())
}
