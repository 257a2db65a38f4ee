//! The connection bounds of `node serve` and `server run` (see `leasehold_web::Limits`), and
//! their HTTPS certificate (see `leasehold_web::Tls`).

use std::time::Duration;

use clap::Args;
use leasehold_web::serve::raise_open_files_limit;
use leasehold_web::Limits;

#[derive(Debug, Clone, Copy, Args)]
pub struct LimitArgs {
    /// Connections each listener keeps open at once; one more is closed at accept. Every
    /// application process keeps one open to its server. [default: 4096, or fewer to fit
    /// the process's open-files limit, which is raised to its hard limit at start]
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Time a client has to send a request's headers before its connection is closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    header_read_timeout: Duration,
    /// A connection with no traffic for this long is closed (clients refresh every 2 s).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
}

impl Default for LimitArgs {
    fn default() -> Self {
        let d = Limits::default();
        Self {
            max_connections: None,
            header_read_timeout: d.header_read_timeout,
            idle_timeout: d.idle_timeout,
        }
    }
}

impl LimitArgs {
    /// The bounds for a process with `listeners` listeners, checked.
    pub fn limits(&self, listeners: u64) -> anyhow::Result<Limits> {
        let open_files = raise_open_files_limit();
        // What the rest of the process needs: database and log files, outbound connections.
        const RESERVE: u64 = 128;
        let per_listener = open_files.saturating_sub(RESERVE) / listeners.max(1);
        let max = match self.max_connections {
            Some(0) => anyhow::bail!("--max-connections must be at least 1"),
            Some(n) if n as u64 > per_listener => anyhow::bail!(
                "--max-connections {n} does not fit this process's open-files limit ({open_files}, {listeners} listener(s)); at most {per_listener}, or raise the limit (ulimit -n, LimitNOFILE=)"
            ),
            Some(n) => n,
            None => Limits::default()
                .max_connections
                .min(usize::try_from(per_listener.max(16)).unwrap_or(usize::MAX)),
        };
        for (flag, d) in [
            ("--header-read-timeout", self.header_read_timeout),
            ("--idle-timeout", self.idle_timeout),
        ] {
            if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
                anyhow::bail!("{flag} must be between 100ms and 1h, got {d:?}");
            }
        }
        Ok(Limits {
            max_connections: max,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            ..Limits::default()
        })
    }
}

/// The listeners' certificate, loaded and checked before anything starts.
pub fn load_tls(
    files: Option<leasehold_web::TlsFiles>,
) -> anyhow::Result<Option<leasehold_web::Tls>> {
    files
        .map(|f| {
            leasehold_web::Tls::load(f).map_err(|e| anyhow::anyhow!("--tls-cert/--tls-key: {e}"))
        })
        .transpose()
}
