//! The job queue on PostgreSQL: jobs are rows, claimed with one `UPDATE` whose subquery locks
//! runnable rows with `FOR UPDATE SKIP LOCKED`. A claim skips rows that another claim or a
//! running step has locked instead of waiting for them, and two claims never take the same
//! row. A job whose lease expired is claimable again, so a dead worker's job runs again.
//!
//! An enrollment step locks its job row for its whole transaction. The claim skips a locked
//! row and a cancel waits for it, so neither can change a job while its step is running.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgConnection, Postgres, Row, Transaction};
use time::Date;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::PgStore;
use super::convert::job_from_row;
use super::tx::PgTx;
use crate::domain::enrollment::{
    EnrollError, EnrollMode, EnrollmentOutcome, EnrollmentRequest, EnrollmentRules, enroll,
};
use crate::domain::error::DomainError;
use crate::jobs::model::{CancelOutcome, Job, JobCounts, JobState, JobUpdate, NewJob, TaskRef};
use crate::store::sql::{self, job_columns};
use crate::store::{StepFinish, StoreError};

/// Claims queued jobs whose `run_at` (`$3`) has come and started jobs whose lease expired,
/// oldest due time first, at most `$4`. The subquery's `FOR UPDATE` re-checks its `WHERE`
/// on the current row version, so a job claimed by a worker that committed meanwhile drops
/// out.
/// Each source of runnable jobs is read in the order of its own partial index, stopping at
/// the limit, so a claim costs the same with two or two thousand jobs waiting. Sorting both
/// sources together would read every waiting job on each claim.
const CLAIM_JOBS: &str = concat!(
    "WITH due AS ( \
        SELECT task_id FROM job WHERE state IN ('PENDING', 'RETRY') AND run_at <= $3 \
        ORDER BY run_at LIMIT $4 FOR UPDATE SKIP LOCKED), \
     expired AS ( \
        SELECT task_id FROM job WHERE state IN ('STARTED', 'PROGRESS') AND lease_expires_at < $3 \
        ORDER BY lease_expires_at LIMIT $4 FOR UPDATE SKIP LOCKED), \
     picked AS ( \
        SELECT task_id FROM expired UNION ALL SELECT task_id FROM due LIMIT $4) \
     UPDATE job SET state = 'STARTED', lease_owner = $1, lease_expires_at = $2, \
     attempts = attempts + 1, started_at = COALESCE(started_at, $3) \
     WHERE task_id IN (SELECT task_id FROM picked) \
     RETURNING ",
    job_columns!()
);

/// Locks the rows in `task_id` order before updating them, the order in which an enrollment
/// batch locks its jobs, so that renewing the leases of a running batch cannot deadlock
/// with it.
const RENEW_LEASES: &str = "UPDATE job SET lease_expires_at = $1 WHERE task_id IN ( \
        SELECT task_id FROM job WHERE lease_owner = $2 \
        AND state IN ('STARTED', 'PROGRESS') AND task_id = ANY($3) \
        ORDER BY task_id FOR UPDATE)";

/// Returns the owner's unfinished jobs to the queue. The attempt did not run to an outcome,
/// so it is not counted. Rows are locked in `task_id` order, as in `RENEW_LEASES`.
const RELEASE_JOBS: &str = "UPDATE job SET state = 'PENDING', lease_owner = NULL, lease_expires_at = NULL, \
     attempts = GREATEST(attempts - 1, 0) \
     WHERE task_id IN ( \
        SELECT task_id FROM job WHERE lease_owner = $1 AND state IN ('STARTED', 'PROGRESS') \
        ORDER BY task_id FOR UPDATE)";

/// Locks the job row when the worker holds its lease.
const LOCK_LEASED_JOB: &str = concat!(sql::select_lease!(), " FOR UPDATE");

const LOCK_JOB_STATE: &str = concat!(sql::select_job_state!(), " FOR UPDATE");

/// Writes `update` if `owner` holds the job's lease. Terminal states clear the lease and set
/// `completed_at`.
pub async fn write_update(
    conn: &mut PgConnection,
    task_id: &str,
    owner: &str,
    update: &JobUpdate,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let terminal = update.state.is_terminal();
    let done = sqlx::query(sql::UPDATE_LEASED_JOB)
        .bind(update.state.as_str())
        .bind(&update.meta)
        .bind(&update.result)
        .bind(terminal)
        .bind(now_ms)
        .bind(task_id)
        .bind(owner)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Locks the job row and returns whether `owner` still holds its lease.
async fn lock_if_leased(
    conn: &mut PgConnection,
    task_id: &str,
    owner: &str,
) -> Result<bool, StoreError> {
    let leased: Option<i32> = sqlx::query_scalar(LOCK_LEASED_JOB)
        .bind(task_id)
        .bind(owner)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(leased.is_some())
}

/// Resolves a group view id to its job's task id, or returns the id unchanged.
async fn resolve_task_id(conn: &mut PgConnection, id: &str) -> Result<String, StoreError> {
    let task_id: Option<String> = sqlx::query_scalar(sql::SELECT_VIEW_TASK_ID)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(task_id.unwrap_or_else(|| id.to_owned()))
}

/// The channel on which enqueuers announce new jobs to idle workers.
const JOBS_CHANNEL: &str = "registrar_jobs";

impl PgStore {
    pub(super) async fn insert_jobs(&self, jobs: &[NewJob]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        insert_jobs_in(&mut tx, jobs).await?;
        // Delivered when the transaction commits, so a woken worker finds the rows.
        notify_jobs(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Wakes `wake` on every job notification until `shutdown`. A lost listener connection
    /// is logged and opened again after a second; the pool's fallback poll covers the gap.
    pub(super) async fn listen(&self, wake: Arc<Notify>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(l) => l,
                Err(e) => {
                    warn!(error = %e, "job listener could not connect; retrying in 1 s");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            if let Err(e) = listener.listen(JOBS_CHANNEL).await {
                warn!(error = %e, "LISTEN failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            debug!(channel = JOBS_CHANNEL, "job listener connected");
            // A wake-up covers jobs queued while the listener was away.
            wake.notify_one();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    received = listener.recv() => match received {
                        Ok(_) => wake.notify_one(),
                        Err(e) => {
                            warn!(error = %e, "job listener lost its connection; reconnecting");
                            break;
                        }
                    },
                }
            }
        }
    }

    pub(super) async fn claim(
        &self,
        owner: &str,
        limit: i64,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(CLAIM_JOBS)
            .bind(owner)
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    pub(super) async fn renew(
        &self,
        task_ids: &[String],
        owner: &str,
        until_ms: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(RENEW_LEASES)
            .bind(until_ms)
            .bind(owner)
            .bind(task_ids)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn enrollment_step(
        &self,
        task_id: &str,
        owner: &str,
        request: &EnrollmentRequest,
        rules: &EnrollmentRules,
        today: Date,
        now_ms: i64,
        finish: StepFinish<'_>,
    ) -> Result<Option<Result<EnrollmentOutcome, DomainError>>, StoreError> {
        let mut tx = self.begin().await?;
        // The job row is locked before the inscription and the groups, and no path locks it
        // after them, so this lock keeps the enrollment lock order free of cycles.
        if !lock_if_leased(&mut tx, task_id, owner).await? {
            return Ok(None);
        }

        sqlx::query("SAVEPOINT enrollment")
            .execute(&mut *tx)
            .await?;
        let mut etx = PgTx { conn: &mut tx };
        let outcome = match enroll(&mut etx, request, &EnrollMode::Merge, rules, today).await {
            Ok(outcome) => Ok(outcome),
            Err(EnrollError::Rejected(rejection)) => {
                sqlx::query("ROLLBACK TO SAVEPOINT enrollment")
                    .execute(&mut *tx)
                    .await?;
                Err(rejection)
            }
            Err(EnrollError::Store(e)) => return Err(e),
        };
        sqlx::query("RELEASE SAVEPOINT enrollment")
            .execute(&mut *tx)
            .await?;

        let write = finish(&outcome);
        if !write_update(&mut tx, task_id, owner, &write.job, now_ms).await? {
            return Ok(None);
        }
        if let Some(saga) = &write.saga {
            super::resilience::insert_saga(&mut tx, saga).await?;
        }
        tx.commit().await?;
        Ok(Some(outcome))
    }

    pub(super) async fn retry_later(
        &self,
        task_id: &str,
        owner: &str,
        run_at_ms: i64,
        meta: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::SCHEDULE_RETRY)
            .bind(run_at_ms)
            .bind(meta)
            .bind(task_id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn release(&self, owner: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(RELEASE_JOBS)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub(super) async fn cancel(&self, id: &str, now_ms: i64) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let task_id = resolve_task_id(&mut tx, id).await?;
        // Waits for a running enrollment step to commit, then reads the state it wrote.
        let state: Option<String> = sqlx::query_scalar(LOCK_JOB_STATE)
            .bind(&task_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(state) = state else {
            return Ok(CancelOutcome::NotFound);
        };
        let state = JobState::parse(&state).ok_or_else(|| StoreError::corrupt("job", &state))?;
        if state.is_terminal() {
            return Ok(CancelOutcome::AlreadyFinished(state));
        }
        sqlx::query(sql::REVOKE_JOB)
            .bind(now_ms)
            .bind(&task_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(CancelOutcome::Revoked)
    }

    pub(super) async fn lookup_task(
        &self,
        id: &str,
        expired_before_ms: i64,
    ) -> Result<Option<TaskRef>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(sql::SELECT_JOB)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        let found = match row {
            Some(row) => Some(TaskRef::Job(job_from_row(&row)?)),
            None => {
                let row = sqlx::query(sql::SELECT_VIEW_JOB)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                match row {
                    Some(row) => Some(TaskRef::GroupView {
                        codigo_grupo: row.try_get("view_grupo")?,
                        job: job_from_row(&row)?,
                    }),
                    None => None,
                }
            }
        };
        Ok(found.filter(|task| {
            let job = match task {
                TaskRef::Job(job) | TaskRef::GroupView { job, .. } => job,
            };
            job.completed_at.is_none_or(|at| at >= expired_before_ms)
        }))
    }

    pub(super) async fn count_jobs(&self) -> Result<JobCounts, StoreError> {
        let rows = sqlx::query(sql::COUNT_JOBS_BY_STATE)
            .fetch_all(&self.pool)
            .await?;
        let mut counts = JobCounts::default();
        for row in rows {
            let state: String = row.try_get(0)?;
            let n: i64 = row.try_get(1)?;
            if let Some(state) = JobState::parse(&state) {
                counts.add(state, n);
            }
        }
        Ok(counts)
    }

    pub(super) async fn purge(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(sql::PURGE_GROUP_VIEWS)
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(sql::PURGE_JOBS)
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

/// Tells listening workers that jobs were queued; delivered when the transaction commits.
pub async fn notify_jobs(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(JOBS_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn insert_jobs_in(
    tx: &mut Transaction<'static, Postgres>,
    jobs: &[NewJob],
) -> Result<(), StoreError> {
    let now_ms = crate::clock::now_ms();
    for job in jobs {
        sqlx::query(sql::INSERT_JOB)
            .bind(&job.task_id)
            .bind(job.kind.as_str())
            .bind(&job.payload)
            .bind(&job.correlation_id)
            .bind(&job.request_id)
            .bind(&job.idempotency_key)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
        for (position, (view_id, grupo)) in job.group_views.iter().enumerate() {
            let position = i32::try_from(position).expect("a job has fewer than 2^31 groups");
            sqlx::query(sql::INSERT_GROUP_VIEW)
                .bind(view_id)
                .bind(&job.task_id)
                .bind(grupo)
                .bind(position)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}
