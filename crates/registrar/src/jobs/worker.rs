//! The worker pool: claims jobs with a lease, runs them, renews the leases while they run and
//! returns unfinished jobs to the queue on shutdown. `serve` runs one pool beside the API and
//! `registrar worker` runs one alone; any number of pools share one database.

mod batch;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, debug, error, info, info_span, warn};

use super::model::{Job, JobKind, JobState, JobUpdate};
use super::result::enrollment_result;
use crate::audit::{self, enrollment};
use crate::audit::{AuditEvent, AuditEventType};
use crate::clock;
use crate::domain::enrollment::{EnrollmentOutcome, EnrollmentRequest, EnrollmentRules};
use crate::domain::error::DomainError;
use crate::resilience::breaker::{Breaker, Breakers};
use crate::saga::model::{Saga, SagaStatus};
use crate::saga::runner::{JobLease, Progress, SagaIds, SagaRunner, job_result, saga_event};
use crate::store::{EnrollmentResult, StepWrite, Store, StoreError};
use crate::telemetry::context::{self, RequestIds};
use crate::telemetry::metrics as names;
use batch::split_claim;

/// Settings of one worker pool.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Worker tasks per pool; each runs one job or one batch of inscription jobs at a time.
    pub concurrency: usize,
    /// Inscription jobs a task runs in one database transaction.
    pub batch_size: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub soft_time_limit: Duration,
    pub time_limit: Duration,
    pub max_retries: u32,
    pub retry_delay: Duration,
    pub retry_backoff_max: Duration,
    pub shutdown_grace: Duration,
    pub rules: EnrollmentRules,
}

/// A running pool. Enqueuers in the same process call [`Workers::wake`], so idle workers
/// pick new jobs up at once. Jobs queued by other processes are found by the periodic poll.
pub struct Workers {
    pub owner: String,
    pub concurrency: usize,
    wake: Arc<Notify>,
    status: Arc<PoolStatus>,
}

/// Live counters of one pool, read by the health and monitoring endpoints.
#[derive(Default)]
struct PoolStatus {
    paused: AtomicBool,
    /// Taken by the claim loop around each pause check and claim.
    claim_gate: tokio::sync::Mutex<()>,
    stopped: AtomicBool,
    active: AtomicUsize,
    /// Job attempts this pool finished since start, including attempts that were retried.
    processed: AtomicU64,
}

/// A snapshot of a pool's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkersSnapshot {
    pub paused: bool,
    /// The pool's loop has ended: after shutdown, or if its task panicked.
    pub stopped: bool,
    pub active_jobs: usize,
    /// Job attempts finished since start, including attempts that were retried.
    pub processed_jobs: u64,
}

impl Workers {
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops claiming new jobs: once this returns, no further job is claimed until
    /// [`Workers::resume`]. Running jobs finish, and their leases keep being renewed.
    pub async fn pause(&self) {
        self.status.paused.store(true, Ordering::SeqCst);
        // Waits for a claim that started before the flag was set.
        drop(self.status.claim_gate.lock().await);
        info!(owner = %self.owner, "worker pool paused");
    }

    /// Claims jobs again after [`Workers::pause`].
    pub fn resume(&self) {
        self.status.paused.store(false, Ordering::SeqCst);
        self.wake.notify_one();
        info!(owner = %self.owner, "worker pool resumed");
    }

    pub fn snapshot(&self) -> WorkersSnapshot {
        WorkersSnapshot {
            paused: self.status.paused.load(Ordering::SeqCst),
            stopped: self.status.stopped.load(Ordering::SeqCst),
            active_jobs: self.status.active.load(Ordering::SeqCst),
            processed_jobs: self.status.processed.load(Ordering::SeqCst),
        }
    }
}

/// Starts a pool; it stops when `shutdown` is cancelled, after finishing or releasing its
/// jobs. Await the returned handle to wait for that.
pub fn start(
    store: Arc<dyn Store>,
    settings: WorkerSettings,
    saga: SagaRunner,
    breakers: Breakers,
    shutdown: CancellationToken,
) -> (Arc<Workers>, tokio::task::JoinHandle<()>) {
    crate::telemetry::metrics::handle();
    let owner = format!("{}-{}", hostname(), uuid::Uuid::now_v7().simple());
    let workers = Arc::new(Workers {
        owner: owner.clone(),
        concurrency: settings.concurrency,
        wake: Arc::new(Notify::new()),
        status: Arc::new(PoolStatus::default()),
    });
    let pool = Pool {
        store,
        settings: Arc::new(settings),
        owner,
        wake: workers.wake.clone(),
        running: Arc::new(Mutex::new(HashSet::new())),
        saga,
        database: breakers.get("database"),
        status: workers.status.clone(),
    };
    let handle = tokio::spawn(pool.run(shutdown));
    (workers, handle)
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid{}", std::process::id()))
}

#[derive(Clone)]
struct Pool {
    store: Arc<dyn Store>,
    settings: Arc<WorkerSettings>,
    owner: String,
    wake: Arc<Notify>,
    running: Arc<Mutex<HashSet<String>>>,
    saga: SagaRunner,
    /// Guards the claims: while the database is failing, the pool stops asking it.
    database: Option<Breaker>,
    status: Arc<PoolStatus>,
}

/// Marks the pool stopped when its loop ends, by return or by panic.
struct StoppedOnDrop(Arc<PoolStatus>);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::SeqCst);
    }
}

impl Pool {
    async fn run(self, shutdown: CancellationToken) {
        info!(owner = %self.owner, concurrency = self.settings.concurrency, "worker pool started");
        let _stopped = StoppedOnDrop(self.status.clone());
        // The renewer outlives the shutdown signal: jobs still draining keep their leases
        // until the pool has finished or released them.
        let renewer_stop = CancellationToken::new();
        let renewer = tokio::spawn(self.clone().renew_leases(renewer_stop.clone()));
        let listener = {
            let store = self.store.clone();
            let wake = self.wake.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { store.listen_for_jobs(wake, shutdown).await })
        };
        let mut tasks = JoinSet::new();

        while !shutdown.is_cancelled() {
            // Held from the pause check to the end of the claim, so that a pause waits for a
            // claim already under way.
            let gate = self.status.claim_gate.lock().await;
            let free = if self.status.paused.load(Ordering::SeqCst) {
                0
            } else {
                self.settings.concurrency.saturating_sub(tasks.len())
            };
            let limit = free * self.settings.batch_size.max(1);
            let claimed = if free > 0 {
                // A claim can wait many seconds for a locked database, so shutdown interrupts
                // it. Jobs that an interrupted claim still committed are leased to this owner,
                // and `release_jobs` below returns them to the queue.
                tokio::select! {
                    claimed = self.claim(limit) => claimed,
                    _ = shutdown.cancelled() => break,
                }
            } else {
                Vec::new()
            };
            drop(gate);
            let claimed_count = claimed.len();
            for chunk in split_claim(claimed, free) {
                tasks.spawn(self.clone().run_chunk(chunk));
            }
            if claimed_count == limit && free > 0 {
                // A full batch: there may be more work, so claim again without waiting.
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }

        info!(owner = %self.owner, running = tasks.len(), "worker pool stopping");
        let drained = tokio::time::timeout(self.settings.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        renewer_stop.cancel();
        let _ = renewer.await;
        listener.abort();
        match self.store.release_jobs(&self.owner).await {
            Ok(0) => {}
            Ok(n) => {
                info!(owner = %self.owner, released = n, "unfinished jobs returned to the queue")
            }
            Err(e) => {
                error!(owner = %self.owner, error = %e, "could not release jobs; their leases will expire")
            }
        }
        info!(owner = %self.owner, "worker pool stopped");
    }

    /// Claims up to `limit` jobs through the database breaker; a failed or rejected claim
    /// is logged and returns none.
    async fn claim(&self, limit: usize) -> Vec<Job> {
        let lease_ms = self.settings.lease.as_millis() as i64;
        let claim = self
            .store
            .claim_jobs(&self.owner, limit as i64, lease_ms, clock::now_ms());
        let claimed = match &self.database {
            Some(breaker) => breaker
                .call_classified(claim, StoreError::is_transient)
                .await
                .map_err(|e| e.to_string()),
            None => claim.await.map_err(|e| e.to_string()),
        };
        match claimed {
            Ok(jobs) => jobs,
            Err(e) => {
                warn!(owner = %self.owner, error = %e, "claiming jobs failed; will try again");
                Vec::new()
            }
        }
    }

    async fn renew_leases(self, stop: CancellationToken) {
        let every = self.settings.lease / 3;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let ids: Vec<String> = self.running.lock().expect("lock").iter().cloned().collect();
            if ids.is_empty() {
                continue;
            }
            let until = clock::now_ms() + self.settings.lease.as_millis() as i64;
            if let Err(e) = self.store.renew_leases(&ids, &self.owner, until).await {
                warn!(owner = %self.owner, error = %e, jobs = ids.len(), "lease renewal failed");
            }
        }
    }

    async fn run_job(self, job: Job) {
        self.running
            .lock()
            .expect("lock")
            .insert(job.task_id.clone());
        self.status.active.fetch_add(1, Ordering::SeqCst);
        context::scope(
            job_ids(&job),
            self.run_job_inner(&job).instrument(job_span(&job)),
        )
        .await;
        self.job_done(&job);
    }

    /// Updates the pool's counters and stops renewing the lease of a job that ran.
    fn job_done(&self, job: &Job) {
        self.status.active.fetch_sub(1, Ordering::SeqCst);
        self.status.processed.fetch_add(1, Ordering::SeqCst);
        self.running.lock().expect("lock").remove(&job.task_id);
    }

    async fn run_job_inner(&self, job: &Job) {
        if job.attempts > i64::from(self.settings.max_retries) + 1
            && !self.saga_bounds_retries(job).await
        {
            let meta = json!({
                "error_type": "MaxRetriesExceeded",
                "error_message": format!("gave up after {} attempts", job.attempts - 1),
                "retry_count": job.attempts - 1,
            });
            self.fail(job, meta).await;
            return;
        }
        debug!("job started");
        let started = std::time::Instant::now();
        let outcome = self.with_time_limits(self.execute(job)).await;
        self.report(job, &outcome, started).await;
    }

    /// Runs `run`, warning once past the soft time limit and dropping it, which rolls back
    /// its open transaction, past the hard one.
    async fn with_time_limits<T>(
        &self,
        run: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<Result<T, StoreError>, tokio::time::error::Elapsed> {
        let soft = self.settings.soft_time_limit;
        let watched = async {
            tokio::pin!(run);
            tokio::select! {
                out = &mut run => out,
                _ = tokio::time::sleep(soft) => {
                    warn!(soft_limit_s = soft.as_secs(), "job passed its soft time limit");
                    run.await
                }
            }
        };
        tokio::time::timeout(self.settings.time_limit, watched).await
    }

    /// Records a job run's duration and logs its end, or schedules its retry or marks it
    /// `FAILURE`.
    async fn report(
        &self,
        job: &Job,
        outcome: &Result<Result<(), StoreError>, tokio::time::error::Elapsed>,
        started: std::time::Instant,
    ) {
        let outcome_label = match outcome {
            Ok(Ok(())) => "success",
            Ok(Err(e)) if e.is_transient() => "retry",
            Ok(Err(_)) => "failure",
            Err(_) => "timeout",
        };
        let labels = [("kind", job.kind.as_str()), ("outcome", outcome_label)];
        metrics::histogram!(names::JOB_DURATION_SECONDS, &labels)
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(Ok(())) => {
                info!(
                    duration_ms = started.elapsed().as_millis() as u64,
                    "job finished"
                );
            }
            Ok(Err(e)) if e.is_transient() => self.retry(job, e).await,
            Ok(Err(e)) => {
                error!(error = %e, "job failed with a non-transient store error");
                let meta = json!({
                    "error_type": "StoreError",
                    "error_message": "the database rejected the job's statements; see the service log for this task_id",
                });
                self.fail(job, meta).await;
            }
            Err(_) => {
                error!(
                    limit_s = self.settings.time_limit.as_secs(),
                    "job timed out and was rolled back"
                );
                let meta = json!({
                    "error_type": "TASK_TIMEOUT",
                    "error_message": format!("exceeded the time limit of {} s", self.settings.time_limit.as_secs()),
                });
                self.fail(job, meta).await;
            }
        }
    }

    async fn execute(&self, job: &Job) -> Result<(), StoreError> {
        match job.kind {
            JobKind::Inscription => self.run_inscription(job).await,
            JobKind::Bulk => self.run_bulk(job).await,
            JobKind::HealthCheck => {
                let update = JobUpdate {
                    state: JobState::Success,
                    meta: None,
                    result: Some(json!({
                        "status": "healthy",
                        "timestamp": clock::now_rfc3339(),
                        "worker_id": self.owner,
                    })),
                };
                self.store
                    .update_job(&job.task_id, &self.owner, &update, clock::now_ms())
                    .await?;
                Ok(())
            }
        }
    }

    /// Returns whether the job's retries are counted by its saga, which compensates when they run
    /// out, rather than by the job.
    async fn saga_bounds_retries(&self, job: &Job) -> bool {
        job.kind == JobKind::Inscription
            && matches!(self.store.saga_for_task(&job.task_id).await, Ok(Some(_)))
    }

    async fn run_inscription(&self, job: &Job) -> Result<(), StoreError> {
        // A saga already logged for this job means its enrollment committed in an earlier
        // run: resume the saga instead of enrolling again.
        if let Some(saga) = self.store.saga_for_task(&job.task_id).await? {
            return self.drive_saga(job, saga).await;
        }
        let request: EnrollmentRequest = match serde_json::from_value(job.payload.clone()) {
            Ok(r) => r,
            Err(e) => {
                let meta =
                    json!({ "error_type": "InvalidPayload", "error_message": e.to_string() });
                self.fail(job, meta).await;
                return Ok(());
            }
        };
        let ids = saga_ids(job);
        let finish = |outcome: &EnrollmentResult| self.step_write(&ids, &request, outcome);
        let done = self
            .store
            .run_enrollment_step(
                &job.task_id,
                &self.owner,
                &request,
                &self.settings.rules,
                clock::today(),
                clock::now_ms(),
                &finish,
            )
            .await?;
        if let Some(event) = log_step(&request, &done) {
            audit::store_events(self.store.as_ref(), &[event]).await;
        }
        self.continue_saga(job, &done).await
    }

    /// Builds what an inscription job's step writes with its enrollment: the saga that logs
    /// the request, and the job's result, or its progress while the saga has steps left.
    fn step_write(
        &self,
        ids: &SagaIds<'_>,
        request: &EnrollmentRequest,
        outcome: &EnrollmentResult,
    ) -> StepWrite {
        let saga = match outcome {
            Ok(outcome) => self.saga.saga_for_enrollment(ids, request, outcome),
            Err(rejection) => self.saga.saga_for_rejection(ids, request, rejection),
        };
        let job = if saga.status.is_finished() {
            JobUpdate {
                state: JobState::Success,
                meta: None,
                result: Some(enrollment_result(outcome)),
            }
        } else {
            JobUpdate {
                state: JobState::Progress,
                meta: Some(json!({
                    "message": "Inscripción registrada; completando el cobro y la notificación",
                    "saga_id": saga.saga_id,
                })),
                result: None,
            }
        };
        StepWrite {
            job,
            saga: Some(saga),
        }
    }

    /// Runs the remaining steps of the saga of an inscription job whose enrollment committed.
    /// `done` is `None` when the lease was lost and nothing committed.
    async fn continue_saga(
        &self,
        job: &Job,
        done: &Option<EnrollmentResult>,
    ) -> Result<(), StoreError> {
        // Without participants every saga is written finished, so there is nothing to read.
        if matches!(done, Some(Ok(_)))
            && self.saga.has_participants()
            && let Some(saga) = self.store.saga_for_task(&job.task_id).await?
            && !saga.status.is_finished()
        {
            let event = saga_event(&saga, AuditEventType::SagaStarted, "start");
            crate::audit::record(self.store.as_ref(), event).await;
            return self.drive_saga(job, saga).await;
        }
        Ok(())
    }

    /// Runs the saga's remaining steps. A participant that failed for now puts the job back
    /// in the queue, so the saga resumes from its log later.
    async fn drive_saga(&self, job: &Job, mut saga: Saga) -> Result<(), StoreError> {
        let lease = JobLease {
            task_id: &job.task_id,
            owner: &self.owner,
        };
        match self.saga.advance(&mut saga, Some(lease)).await? {
            Progress::Finished(status) => {
                info!(saga_id = %saga.saga_id, status = status.as_str(), "saga ended");
            }
            Progress::RetryLater(delay) => {
                let meta = json!({
                    "message": "Un participante de la saga no respondió; se reintentará",
                    "saga_id": saga.saga_id,
                    "next_retry_in_ms": delay.as_millis() as u64,
                });
                let run_at = clock::now_ms() + delay.as_millis() as i64;
                if !self
                    .store
                    .schedule_retry(&job.task_id, &self.owner, run_at, &meta)
                    .await?
                {
                    warn!("lease lost before the saga's retry was scheduled");
                }
            }
            Progress::LeaseLost => warn!("lease lost while the saga ran; its new owner resumes it"),
        }
        Ok(())
    }

    async fn run_bulk(&self, job: &Job) -> Result<(), StoreError> {
        let items: Vec<EnrollmentRequest> =
            match serde_json::from_value(job.payload["items"].clone()) {
                Ok(items) => items,
                Err(e) => {
                    let meta =
                        json!({ "error_type": "InvalidPayload", "error_message": e.to_string() });
                    self.fail(job, meta).await;
                    return Ok(());
                }
            };
        let total = items.len();
        let mut results = Vec::with_capacity(total);
        let (mut successful, mut failed) = (0usize, 0usize);

        // Each item's saga runs in this job after the item commits. It is not tied to the
        // job, so the recovery loop resumes it if this worker dies.
        let ids = SagaIds {
            task_id: None,
            correlation_id: &job.correlation_id,
            request_id: job.request_id.as_deref(),
        };
        for (i, item) in items.iter().enumerate() {
            let processed = i + 1;
            let report_progress = processed % 5 == 0 || processed == total;
            let written = Mutex::new(None);
            let finish = |outcome: &Result<_, _>| {
                let (ok, ko) = match outcome {
                    Ok(_) => (successful + 1, failed),
                    Err(_) => (successful, failed + 1),
                };
                let job = JobUpdate {
                    state: if report_progress {
                        JobState::Progress
                    } else {
                        JobState::Started
                    },
                    meta: report_progress.then(|| progress_meta(total, processed, ok, ko)),
                    result: None,
                };
                let saga = match outcome {
                    Ok(outcome) => self.saga.saga_for_enrollment(&ids, item, outcome),
                    Err(rejection) => self.saga.saga_for_rejection(&ids, item, rejection),
                };
                *written.lock().expect("lock") = Some(saga.clone());
                StepWrite {
                    job,
                    saga: Some(saga),
                }
            };
            let done = self
                .store
                .run_enrollment_step(
                    &job.task_id,
                    &self.owner,
                    item,
                    &self.settings.rules,
                    clock::today(),
                    clock::now_ms(),
                    &finish,
                )
                .await?;
            let Some(outcome) = done else {
                warn!(processed = i, "lease lost during a bulk job; stopping");
                return Ok(());
            };
            self.audit_outcome("run_bulk_item", item, &outcome).await;
            let saga = written.lock().expect("lock").take();
            if let Some(mut saga) = saga.filter(|s| !s.status.is_finished()) {
                let event = saga_event(&saga, AuditEventType::SagaStarted, "start");
                crate::audit::record(self.store.as_ref(), event).await;
                let status = self
                    .saga
                    .run_to_end(&mut saga, Duration::from_secs(5))
                    .await?;
                if status != SagaStatus::Completed {
                    let result = job_result(&saga);
                    failed += 1;
                    results.push(json!({
                        "status": "error",
                        "error": result["error"],
                        "error_code": result["error_code"],
                        "details": result["details"],
                        "registro_academico": item.registro_academico,
                    }));
                    continue;
                }
            }
            let item_result = enrollment_result(&outcome);
            let entry = match outcome {
                Ok(_) => {
                    successful += 1;
                    json!({ "status": "success", "data": item_result["data"], "registro_academico": item.registro_academico })
                }
                Err(rejection) => {
                    failed += 1;
                    json!({
                        "status": "error",
                        "error": rejection.message,
                        "error_code": rejection.code.as_str(),
                        "details": rejection.details,
                        "registro_academico": item.registro_academico,
                    })
                }
            };
            results.push(entry);
        }

        let update = JobUpdate {
            state: JobState::Success,
            meta: Some(progress_meta(total, total, successful, failed)),
            result: Some(json!({
                "status": "SUCCESS",
                "message": format!("Procesadas {total} inscripciones: {successful} exitosas, {failed} fallidas"),
                "total": total,
                "successful": successful,
                "failed": failed,
                "results": results,
            })),
        };
        self.store
            .update_job(&job.task_id, &self.owner, &update, clock::now_ms())
            .await?;
        info!(total, successful, failed, "bulk job finished");
        Ok(())
    }

    async fn retry(&self, job: &Job, error: &StoreError) {
        let attempt = job.attempts.max(1) as usize;
        if attempt > self.settings.max_retries as usize {
            let meta = json!({
                "error_type": "MaxRetriesExceeded",
                "error_message": public_reason(error),
                "retry_count": attempt - 1,
            });
            error!(error = %error, attempts = attempt, "job failed after its last retry");
            self.fail(job, meta).await;
            return;
        }
        let delay = retry_delay(&self.settings, attempt);
        let meta = json!({
            "error_type": "TransientError",
            "error_message": public_reason(error),
            "retry_count": attempt,
            "next_retry_in_ms": delay.as_millis() as u64,
        });
        let run_at = clock::now_ms() + delay.as_millis() as i64;
        metrics::counter!(names::JOB_RETRIES_TOTAL, "kind" => job.kind.as_str()).increment(1);
        warn!(error = %error, attempt, delay_ms = delay.as_millis() as u64, "job retry scheduled");
        if let Err(e) = self
            .store
            .schedule_retry(&job.task_id, &self.owner, run_at, &meta)
            .await
        {
            error!(error = %e, "could not schedule the retry; the lease will expire and the job run again");
        }
    }

    /// Records the committed or rejected enrollment of one request in the audit trail.
    async fn audit_outcome(
        &self,
        action: &str,
        request: &EnrollmentRequest,
        outcome: &Result<EnrollmentOutcome, DomainError>,
    ) {
        let event = outcome_event(action, request, outcome);
        audit::record(self.store.as_ref(), event).await;
    }

    async fn fail(&self, job: &Job, meta: Value) {
        let update = JobUpdate {
            state: JobState::Failure,
            meta: Some(meta.clone()),
            result: None,
        };
        match self
            .store
            .update_job(&job.task_id, &self.owner, &update, clock::now_ms())
            .await
        {
            Ok(true) => {
                error!(task_id = %job.task_id, "job marked FAILURE");
                let request = serde_json::from_value::<EnrollmentRequest>(job.payload.clone());
                if let (JobKind::Inscription, Ok(request)) = (job.kind, request) {
                    let code = meta["error_type"].as_str().unwrap_or("JOB_FAILED");
                    let event = enrollment::job_failed(&request, &job.task_id, code);
                    audit::record(self.store.as_ref(), event).await;
                }
            }
            Ok(false) => {
                warn!(task_id = %job.task_id, "lease lost before the failure was recorded")
            }
            Err(e) => {
                error!(task_id = %job.task_id, error = %e, "could not record the job failure")
            }
        }
    }
}

/// Logs an inscription job's committed or rejected enrollment, or its lost lease, and
/// returns the enrollment's audit event, logged and ready to store. `done` is `None` when the
/// lease was lost and nothing committed.
fn log_step(request: &EnrollmentRequest, done: &Option<EnrollmentResult>) -> Option<AuditEvent> {
    match done {
        Some(Ok(outcome)) => info!(
            registro_academico = %request.registro_academico,
            codigo_periodo = %request.codigo_periodo,
            codigo_inscripcion = %outcome.inscripcion.codigo_inscripcion,
            new_groups = outcome.new_details.len(),
            "enrollment committed"
        ),
        Some(Err(rejection)) => info!(
            registro_academico = %request.registro_academico,
            codigo_periodo = %request.codigo_periodo,
            error_code = rejection.code.as_str(),
            grupo = rejection.grupo.as_deref().unwrap_or(""),
            "enrollment rejected"
        ),
        None => warn!("lease lost before commit; the enrollment was rolled back"),
    }
    let outcome = done.as_ref()?;
    Some(audit::log(outcome_event("run_job", request, outcome)))
}

/// Builds the audit event of a committed or rejected enrollment.
fn outcome_event(
    action: &str,
    request: &EnrollmentRequest,
    outcome: &Result<EnrollmentOutcome, DomainError>,
) -> AuditEvent {
    match outcome {
        Ok(outcome) => enrollment::created(action, request, outcome),
        Err(rejection) => enrollment::rejected(action, request, rejection),
    }
}

/// The saga ids of an inscription job.
fn saga_ids(job: &Job) -> SagaIds<'_> {
    SagaIds {
        task_id: Some(&job.task_id),
        correlation_id: &job.correlation_id,
        request_id: job.request_id.as_deref(),
    }
}

/// The ids that a job's logs, audit events and outbound calls carry.
fn job_ids(job: &Job) -> RequestIds {
    RequestIds {
        correlation_id: job.correlation_id.clone(),
        request_id: job.request_id.clone(),
    }
}

fn job_span(job: &Job) -> Span {
    info_span!(
        "job",
        task_id = %job.task_id,
        kind = job.kind.as_str(),
        correlation_id = %job.correlation_id,
        request_id = job.request_id.as_deref().unwrap_or(""),
        attempt = job.attempts,
    )
}

fn progress_meta(total: usize, processed: usize, successful: usize, failed: usize) -> Value {
    let progress = (processed * 100).checked_div(total).unwrap_or(100);
    json!({
        "message": format!("Procesando {processed} de {total}"),
        "total": total,
        "processed": processed,
        "successful": successful,
        "failed": failed,
        "progress": progress,
    })
}

/// Describes a transient failure for clients without the driver's text, which stays in the
/// log.
fn public_reason(error: &StoreError) -> &'static str {
    match error {
        StoreError::Database(sqlx::Error::PoolTimedOut) => {
            "no database connection was free in time"
        }
        StoreError::Database(sqlx::Error::Database(_)) => {
            "the database was busy, locked or timed out; the job is retried with a delay"
        }
        _ => "the database connection failed; the job is retried with a delay",
    }
}

/// Computes the delay before retry number `attempt` (1-based) with backon: the base delay
/// doubled per attempt, with jitter, and never above the configured maximum.
pub fn retry_delay(settings: &WorkerSettings, attempt: usize) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(settings.retry_delay)
        .with_max_delay(settings.retry_backoff_max)
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(attempt)
        .build()
        .nth(attempt - 1)
        .unwrap_or(settings.retry_backoff_max)
        .min(settings.retry_backoff_max)
}
