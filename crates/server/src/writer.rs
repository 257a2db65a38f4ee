//! The group-committing writer: one task that owns every write of lease state to the data
//! directory. Jobs are written in the order they were queued (the lease path queues under
//! the lease lock, so a bound raised after a snapshot is never overwritten by that
//! snapshot's lower value), and every job waiting when a transaction starts goes into it:
//! under load, many grants share one commit, as the node's syncs do.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use leasehold_proto::Clock;
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
    health: Arc<Mutex<Option<Failing>>>,
}

/// Writes to the data directory failing since `since` (a full disk, a read-only file
/// system): usage and grants are kept in memory and retried, but nothing new is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    pub since: DateTime<Utc>,
    /// The last failure's words.
    pub error: String,
    /// Failed commits in this spell.
    pub failures: u64,
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
    /// Starts the writer task on the current runtime; `clock` dates a failing spell.
    pub fn spawn(store: Arc<ServerStore>, clock: Arc<dyn Clock>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let health = Arc::new(Mutex::new(None));
        let noted = health.clone();
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
                    note(&noted, &result, clock.now());
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
        Self { tx, health }
    }

    /// Whether writes fail now, since when and why (`None`: the last commit succeeded).
    pub fn failing(&self) -> Option<Failing> {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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

/// Records a commit's outcome: a failure starts or extends a failing spell, a success ends it.
fn note(health: &Mutex<Option<Failing>>, result: &Result<(), String>, now: DateTime<Utc>) {
    let mut h = health.lock().unwrap_or_else(|e| e.into_inner());
    match (result, h.as_mut()) {
        (Ok(()), Some(f)) => {
            tracing::info!(failed_since = %f.since, failures = f.failures, "writing to the data directory works again");
            *h = None;
        }
        (Ok(()), None) => {}
        (Err(e), Some(f)) => {
            f.error.clone_from(e);
            f.failures += 1;
        }
        (Err(e), None) => {
            *h = Some(Failing {
                since: now,
                error: e.clone(),
                failures: 1,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_spell_starts_at_the_first_failure_and_ends_at_the_next_success() {
        let health = Mutex::new(None);
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let later = t0 + chrono::Duration::seconds(30);
        note(&health, &Ok(()), t0);
        assert_eq!(*health.lock().unwrap(), None);
        note(&health, &Err("database or disk is full".into()), t0);
        note(&health, &Err("disk I/O error".into()), later);
        let f = health.lock().unwrap().clone().unwrap();
        assert_eq!(
            (f.since, f.failures, f.error.as_str()),
            (t0, 2, "disk I/O error")
        );
        note(&health, &Ok(()), later);
        assert_eq!(*health.lock().unwrap(), None);
    }
}
