//! Group commit for enqueue requests. One task owns the enqueue write path: callers send
//! their request over a bounded channel, and the task writes every request waiting at that
//! moment in one transaction, so concurrent enqueues share its statements and its commit.
//! The task has no timer and never waits for more requests, so a lone request is written at
//! once.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::{EnqueueRequest, Store, StoreError};
use crate::idempotency::Claim;

/// The maximum requests in one transaction. It bounds how long a batch holds SQLite's write
/// lock and how many rows one statement inserts.
pub const MAX_BATCH: usize = 64;

/// Requests that may wait for the task before senders wait too.
const CHANNEL_CAPACITY: usize = 4 * MAX_BATCH;

/// A request in the channel, with the channel on which its claim goes back.
struct Pending {
    request: EnqueueRequest,
    reply: oneshot::Sender<Result<Claim, StoreError>>,
}

/// The handle of the task that writes enqueue requests. Clones share the task. The task
/// stops after [`EnqueueCombiner::stop`], or when every clone has been dropped, and in both
/// cases it first writes the requests already sent.
#[derive(Clone)]
pub struct EnqueueCombiner {
    sender: mpsc::Sender<Pending>,
    stop: CancellationToken,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl EnqueueCombiner {
    /// Spawns the writing task on the current Tokio runtime.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(store, receiver, stop.clone()));
        Self {
            sender,
            stop,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Writes `request` together with the requests of other callers, and returns its claim.
    /// The error is the one this request met: the batch's error when it was alone, or its own
    /// error when it was written again on its own after the batch failed.
    pub async fn enqueue(&self, request: EnqueueRequest) -> Result<Claim, StoreError> {
        let (reply, claim) = oneshot::channel();
        self.sender
            .send(Pending { request, reply })
            .await
            .map_err(|_| StoreError::EnqueueWriterStopped)?;
        claim.await.map_err(|_| StoreError::EnqueueWriterStopped)?
    }

    /// Stops accepting requests, writes the ones already sent and waits for the task to end.
    /// Later calls to [`EnqueueCombiner::enqueue`] return [`StoreError::EnqueueWriterStopped`].
    pub async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().expect("enqueue task lock").take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the enqueue writer task failed");
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut receiver: mpsc::Receiver<Pending>,
    stop: CancellationToken,
) {
    tracing::info!(max_batch = MAX_BATCH, "enqueue writer started");
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closing = false;
    loop {
        // `recv_many` waits for the first request, then takes every request already in the
        // channel, up to the limit. After `close`, it drains the channel and returns 0.
        let received = tokio::select! {
            received = receiver.recv_many(&mut batch, MAX_BATCH) => received,
            () = stop.cancelled(), if !closing => {
                receiver.close();
                closing = true;
                continue;
            }
        };
        if received == 0 {
            break;
        }
        write(&store, std::mem::take(&mut batch)).await;
    }
    tracing::info!("enqueue writer stopped");
}

/// Writes one batch and replies to each caller.
async fn write(store: &Arc<dyn Store>, mut batch: Vec<Pending>) {
    // A caller that is gone (its request timed out) gets nothing written, as when a
    // request's own transaction was dropped before its commit.
    batch.retain(|pending| !pending.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    let (requests, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.request, pending.reply))
        .unzip();
    let started = std::time::Instant::now();
    match store.enqueue_idempotent_batch(&requests).await {
        Ok(claims) => {
            tracing::debug!(
                requests = requests.len(),
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "enqueue batch committed"
            );
            for (reply, claim) in replies.into_iter().zip(claims) {
                // The caller may have gone since; its job stays queued, as it would after
                // a commit that raced the caller's timeout.
                let _ = reply.send(Ok(claim));
            }
        }
        Err(e) if requests.len() == 1 => {
            let _ = replies.into_iter().next().expect("one reply").send(Err(e));
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                requests = requests.len(),
                "enqueue batch failed; writing each request on its own"
            );
            write_each(store, requests, replies).await;
        }
    }
}

/// Writes each request in a transaction of its own, so that a request that breaks the batch
/// fails alone. The writes run concurrently, so on PostgreSQL an outage costs about one wait
/// rather than one per request. On SQLite they queue for the single write connection. Each
/// caller gets its own result and logs its own error.
async fn write_each(
    store: &Arc<dyn Store>,
    requests: Vec<EnqueueRequest>,
    replies: Vec<oneshot::Sender<Result<Claim, StoreError>>>,
) {
    let mut writes = JoinSet::new();
    for (request, reply) in requests.into_iter().zip(replies) {
        let store = store.clone();
        writes.spawn(async move {
            let _ = reply.send(store.enqueue_idempotent(&request).await);
        });
    }
    while let Some(joined) = writes.join_next().await {
        if let Err(e) = joined {
            tracing::error!(error = %e, "an enqueue retry task failed");
        }
    }
}
