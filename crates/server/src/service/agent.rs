//! The sync agent: a background task that syncs at the bundle's interval (first at start),
//! retries failures with backoff, and takes commands (`SyncNow`, `Stop`). It also flushes
//! the usage ledger every second.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::api::SyncOutcome;
use crate::service::LicenseServer;

#[derive(Debug)]
pub enum AgentCommand {
    SyncNow(oneshot::Sender<SyncOutcome>),
    Stop,
}

#[derive(Debug, Clone)]
pub struct AgentHandle {
    tx: mpsc::Sender<AgentCommand>,
}

impl AgentHandle {
    /// Runs a sync at once and waits for its outcome.
    pub async fn sync_now(&self) -> Option<SyncOutcome> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(AgentCommand::SyncNow(tx)).await.ok()?;
        rx.await.ok()
    }

    pub async fn stop(&self) {
        let _ = self.tx.send(AgentCommand::Stop).await;
    }
}

/// Starts the agent. `tick` is how often it looks at the (injected) clock: the schedule is
/// in wall-clock time so tests can move it by days.
pub fn spawn(server: Arc<LicenseServer>, tick: Duration) -> (AgentHandle, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_flush = tokio::time::Instant::now();
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(AgentCommand::SyncNow(reply)) => {
                        let outcome = server.sync_now().await;
                        let _ = reply.send(outcome);
                    }
                    Some(AgentCommand::Stop) | None => break,
                },
                _ = interval.tick() => {
                    if last_flush.elapsed() >= Duration::from_secs(1) || tick >= Duration::from_secs(1) {
                        last_flush = tokio::time::Instant::now();
                        if let Err(e) = server.flush().await {
                            tracing::error!(error = %e, "flushing usage failed; will retry");
                        }
                        server.update_gauges();
                    }
                    if let Some(due) = server.next_sync_due() {
                        if server.clock().now() >= due {
                            server.sync_now().await;
                        }
                    }
                }
            }
        }
        if let Err(e) = server.flush().await {
            tracing::error!(error = %e, "final usage flush failed");
        }
    });
    (AgentHandle { tx }, task)
}
