//! Logging and signal handling shared by the long-running commands.

use tracing_subscriber::EnvFilter;

/// Structured logs to stderr; `RUST_LOG` overrides the default `info`.
pub fn init() {
    init_with(None);
}

/// Like [`init`], and also keeps the recent lines in `buffer` (the dashboard shows them and
/// puts them in the support bundle).
pub fn init_with(buffer: Option<&leasehold_server::logbuf::LogBuffer>) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(buffer.map(|b| b.layer()))
        .try_init();
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
