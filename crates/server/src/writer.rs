//! The group-committing writer: one task that owns every write of lease state to the data
//! directory. Jobs are written in the order they were queued (the lease path queues under
//! the lease lock, so a bound raised after a snapshot is never overwritten by that
//! snapshot's lower value), and every job waiting when a transaction starts goes into it:
//! under load, many grants share one commit, as the node's syncs do.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{ServerStore, StoreError, Write};

/// Most jobs in one transaction.
const MAX_BATCH: usize = 512;

enum Job {
    Write(Write, oneshot::Sender<Result<(), String>>),
    /// Finish what is queued before, then let go of the store (and its directory lock).
    Stop(oneshot::Sender<()>),
}

#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Job>,
}

/// Waits for one queued job to be committed.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<(), String>>);

impl Pending {
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Db(e)),
            Err(_) => Err(StoreError::Db("the state writer stopped".into())),
        }
    }
}

impl Writer {
    /// Starts the writer task on the current runtime.
    pub fn spawn(store: Arc<ServerStore>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            let mut stopped = None;
            while let Some(first) = rx.recv().await {
                let mut batch = Vec::new();
                let mut next = Some(first);
                while let Some(job) = next.take() {
                    match job {
                        Job::Write(w, done) => batch.push((w, done)),
                        Job::Stop(done) => {
                            stopped = Some(done);
                            break;
                        }
                    }
                    if batch.len() < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    let jobs: Vec<&Write> = batch.iter().map(|j| &j.0).collect();
                    let result = store.write(&jobs).await.map_err(|e| e.to_string());
                    if let Err(e) = &result {
                        tracing::error!(error = %e, jobs = batch.len(), "writing lease state failed");
                    }
                    metrics::counter!("leasehold_server_state_commits_total").increment(1);
                    for (_, done) in batch {
                        let _ = done.send(result.clone());
                    }
                }
                if stopped.is_some() {
                    break;
                }
            }
            drop(store);
            if let Some(done) = stopped {
                let _ = done.send(());
            }
        });
        Self { tx }
    }

    /// Queues a job; never blocks (safe under a lock). Wait on the result for durability.
    pub fn queue(&self, job: Write) -> Pending {
        let (done, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(Job::Write(_, done))) =
            self.tx.send(Job::Write(job, done))
        {
            let _ = done.send(Err("the state writer stopped".into()));
        }
        Pending(rx)
    }

    /// Writes everything queued so far, then stops and lets go of the store.
    pub async fn stop(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Job::Stop(done)).is_ok() {
            let _ = rx.await;
        }
    }
}
