//! `leasehold server run`: checks every setting, starts the server, prints its addresses and
//! runs until Ctrl-C or SIGTERM.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context as _;
use leasehold_proto::SystemClock;
use leasehold_server::{Listeners, ServerOptions};

use super::config::{self, FileConfig, TokenOrigin};
use super::RunArgs;

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    crate::logging::init();
    let file = args
        .config
        .as_deref()
        .map(|p| FileConfig::load(p).map(|c| (p, c)))
        .transpose()?;
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
        vendor_keys = ?settings.trusted_keys.kids().map(|k| k.as_str()).collect::<Vec<_>>(),
        "starting the license server"
    );
    if settings.nodes.is_empty() {
        tracing::info!(
            "no license node configured: air-gapped, sync with export-upload and import-bundle"
        );
    }
    let options = ServerOptions {
        data_dir: settings.data_dir.clone(),
        nodes: settings.nodes.clone(),
        trusted_keys: settings.trusted_keys.clone(),
        guid: settings.guid,
        node_timeout: settings.node_timeout,
    };
    let listeners = Listeners {
        lease: settings.listen,
        admin: settings.admin_listen,
        admin_token: token.as_str().to_owned(),
        agent_tick: args.agent_tick,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let running = leasehold_server::start(options, listeners, Arc::new(SystemClock))
            .await
            .map_err(anyhow::Error::new)?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "leasehold server listening on http://{} (admin http://{})",
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
