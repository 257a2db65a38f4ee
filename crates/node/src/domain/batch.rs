//! Group commit of syncs, for every backend: one transaction (one fsync on SQLite, one WAL
//! flush on PostgreSQL) makes a whole batch durable, and no answer, which acknowledges
//! usage, leaves before its batch is committed.

use leasehold_proto::BundlePayload;
use tokio::sync::{mpsc, oneshot};

use super::{sync, SyncFailure, SyncInput};
use crate::store::{DynStore, StoreError, StoreResult};

const MAX_SYNC_BATCH: usize = 128;

#[derive(Debug)]
struct SyncJob {
    input: SyncInput,
    reply: oneshot::Sender<StoreResult<BundlePayload>>,
}

/// Hands syncs to the writer task.
#[derive(Debug, Clone)]
pub struct SyncWriter(mpsc::Sender<SyncJob>);

impl SyncWriter {
    /// Starts the writer task (inside a Tokio runtime).
    pub fn spawn(store: DynStore) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_SYNC_BATCH);
        tokio::spawn(run(store, rx));
        Self(tx)
    }

    /// Runs one sync in the next batch and waits until the batch is committed.
    pub async fn sync(&self, input: SyncInput) -> StoreResult<BundlePayload> {
        let stopped = || StoreError::Other("sync writer stopped".into());
        let (reply, answer) = oneshot::channel();
        self.0
            .send(SyncJob { input, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// How often a batch that collided with another node's transaction is run again.
const CONFLICT_RETRIES: usize = 3;

async fn run(store: DynStore, mut jobs: mpsc::Receiver<SyncJob>) {
    let mut batch = Vec::with_capacity(MAX_SYNC_BATCH);
    while jobs.recv_many(&mut batch, MAX_SYNC_BATCH).await > 0 {
        // Server rows are locked in GUID order, so two nodes' batches never wait on each
        // other in a circle (stable: two syncs of one GUID keep their order).
        batch.sort_by_key(|j| j.input.upload.server_guid);
        let mut result = run_batch(&store, &batch).await;
        for _ in 0..CONFLICT_RETRIES {
            match &result {
                Err(StoreError::Conflict(e)) => {
                    tracing::warn!(error = %e, "sync batch collided with another node; running it again");
                    result = run_batch(&store, &batch).await;
                }
                _ => break,
            }
        }
        match result {
            Ok(results) => {
                for (job, result) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "sync batch failed; nothing of it was stored");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(StoreError::Other(e.to_string())));
                }
            }
        }
    }
}

/// Runs a batch in one transaction. A refused sync writes nothing (every refusal is decided
/// before its first write), so refusals need no savepoint; any database error fails the
/// whole batch, which then acknowledges nothing.
async fn run_batch(
    store: &DynStore,
    batch: &[SyncJob],
) -> StoreResult<Vec<StoreResult<BundlePayload>>> {
    metrics::histogram!("leasehold_node_sync_batch_size").record(batch.len() as f64);
    let mut tx = store.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        match sync(&mut *tx, &job.input).await {
            Ok(bundle) => results.push(Ok(bundle)),
            Err(SyncFailure {
                record,
                error: StoreError::Refused(code, message),
            }) => {
                if let Some(kind) = record {
                    tx.record_refusal(job.input.upload.server_guid, kind, job.input.now)
                        .await?;
                }
                results.push(Err(StoreError::Refused(code, message)));
            }
            Err(SyncFailure {
                error: e @ (StoreError::Rule(_) | StoreError::NotFound(_)),
                ..
            }) => results.push(Err(e)),
            Err(SyncFailure { error, .. }) => return Err(error),
        }
    }
    tx.commit().await?;
    Ok(results)
}
