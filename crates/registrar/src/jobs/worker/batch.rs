//! Batches of inscription jobs: a worker task runs the enrollment steps of the inscription
//! jobs of its share of a claim in one database transaction (see `store::snapshot`), so that
//! they share its statements and its commit. Everything after the commit (logs, audit events, saga
//! participants, retries and failures) happens per job, as for a job run on its own.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{Instrument, info, warn};

use super::{Pool, job_ids, job_span, log_step, saga_ids};
use crate::audit;
use crate::clock;
use crate::domain::enrollment::EnrollmentRequest;
use crate::jobs::model::{Job, JobKind};
use crate::store::{BatchOutcome, BatchStep, EnrollmentResult, StoreError};
use crate::telemetry::context;

/// Splits the jobs of one claim into at most `tasks` shares of about equal size, keeping
/// the claim's order of creation inside each share.
pub(super) fn split_claim(mut jobs: Vec<Job>, tasks: usize) -> Vec<Vec<Job>> {
    if jobs.is_empty() || tasks == 0 {
        return Vec::new();
    }
    jobs.sort_by(|a, b| (a.created_at, &a.task_id).cmp(&(b.created_at, &b.task_id)));
    let share = jobs.len().div_ceil(tasks);
    let mut shares = Vec::with_capacity(tasks);
    while !jobs.is_empty() {
        let rest = jobs.split_off(share.min(jobs.len()));
        shares.push(std::mem::replace(&mut jobs, rest));
    }
    shares
}

impl Pool {
    /// Runs one share of a claim: its inscription jobs as one batch, then every other job,
    /// and each job the batch deferred, on its own and in turn.
    pub(super) async fn run_chunk(self, jobs: Vec<Job>) {
        // Jobs waiting for their turn keep their leases too.
        self.running
            .lock()
            .expect("lock")
            .extend(jobs.iter().map(|job| job.task_id.clone()));
        let retry_limit = i64::from(self.settings.max_retries) + 1;
        let (batched, mut single): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|job| job.kind == JobKind::Inscription && job.attempts <= retry_limit);
        if !batched.is_empty() {
            single.extend(self.run_batch(batched).await);
        }
        for job in single {
            self.clone().run_job(job).await;
        }
    }

    /// Runs the enrollment steps of inscription jobs in one transaction and reports each
    /// job's outcome. Returns the jobs that must run on their own: jobs the store deferred,
    /// jobs whose saga an earlier run logged, and jobs whose payload does not parse.
    async fn run_batch(&self, jobs: Vec<Job>) -> Vec<Job> {
        let mut single = Vec::new();
        let mut parsed = Vec::with_capacity(jobs.len());
        for job in jobs {
            match serde_json::from_value::<EnrollmentRequest>(job.payload.clone()) {
                Ok(request) => parsed.push((job, request)),
                Err(_) => single.push(job),
            }
        }
        if parsed.is_empty() {
            return single;
        }

        self.status.active.fetch_add(parsed.len(), Ordering::SeqCst);
        let started = Instant::now();
        let ids: Vec<_> = parsed.iter().map(|(job, _)| saga_ids(job)).collect();
        let finishers: Vec<_> = parsed
            .iter()
            .zip(&ids)
            .map(|((_, request), ids)| {
                move |outcome: &EnrollmentResult| self.step_write(ids, request, outcome)
            })
            .collect();
        let steps: Vec<BatchStep<'_>> = parsed
            .iter()
            .zip(&finishers)
            .map(|((job, request), finish)| BatchStep {
                task_id: &job.task_id,
                request,
                finish,
            })
            .collect();
        let run = self.store.run_enrollment_batch(
            &self.owner,
            &steps,
            &self.settings.rules,
            clock::today(),
            clock::now_ms(),
        );
        let outcome = self.with_time_limits(run).await;

        match outcome {
            Ok(Ok(outcomes)) => {
                // The audit events of the whole batch are stored in one transaction, before
                // any job's saga continues, so each job's enrollment event precedes its saga's.
                let mut committed = Vec::with_capacity(parsed.len());
                let mut events = Vec::with_capacity(parsed.len());
                for ((job, request), outcome) in parsed.iter().zip(outcomes) {
                    let done = match outcome {
                        BatchOutcome::Done(done) => Ok(Some(done)),
                        BatchOutcome::LeaseLost => Ok(None),
                        BatchOutcome::Failed(e) => Err(e),
                        BatchOutcome::Deferred | BatchOutcome::SagaLogged => {
                            info!(
                                task_id = %job.task_id,
                                "job left out of its batch; it runs on its own next"
                            );
                            // The job runs again on its own, which counts it as active then.
                            self.status.active.fetch_sub(1, Ordering::SeqCst);
                            single.push(job.clone());
                            continue;
                        }
                    };
                    if let Ok(done) = &done {
                        let log = async { log_step(request, done) };
                        let event = context::scope(job_ids(job), log.instrument(job_span(job)));
                        events.extend(event.await);
                    }
                    committed.push((job, done));
                }
                audit::store_events(self.store.as_ref(), &events).await;

                for (job, done) in committed {
                    let finish = self.finish_batched(job, done, started);
                    context::scope(job_ids(job), finish.instrument(job_span(job))).await;
                    self.job_done(job);
                }
            }
            failed => {
                let failed = failed.map(|result| result.map(|_| ()));
                if let Ok(Err(e)) = &failed {
                    warn!(
                        jobs = parsed.len(),
                        error = %e,
                        "enrollment batch rolled back; each job is retried or marked FAILURE"
                    );
                }
                for (job, _) in &parsed {
                    let report = self.report(job, &failed, started);
                    context::scope(job_ids(job), report.instrument(job_span(job))).await;
                    self.job_done(job);
                }
            }
        }
        single
    }

    /// Runs the saga's remaining steps of one job of a committed batch and reports the job.
    /// `done` is `Ok(None)` when the job's lease was lost.
    async fn finish_batched(
        &self,
        job: &Job,
        done: Result<Option<EnrollmentResult>, StoreError>,
        started: Instant,
    ) {
        let result = match done {
            Ok(done) => self.continue_saga(job, &done).await,
            Err(e) => Err(e),
        };
        self.report(job, &Ok(result), started).await;
    }
}
