//! The job queue on SQLite: jobs are rows, claimed with one `UPDATE … RETURNING` that sets a
//! lease. A job whose lease expired is claimable again, so a dead worker's job runs again.

use sqlx::{Row, Sqlite, SqliteConnection, Transaction};
use time::Date;

use super::SqliteStore;
use super::convert::{JOB_COLUMNS, job_from_row};
use super::tx::SqliteTx;
use crate::domain::enrollment::{
    EnrollError, EnrollMode, EnrollmentOutcome, EnrollmentRequest, EnrollmentRules, enroll,
};
use crate::domain::error::DomainError;
use crate::jobs::model::{CancelOutcome, Job, JobCounts, JobState, JobUpdate, NewJob, TaskRef};
use crate::store::{StepFinish, StoreError};

/// Writes `update` if `owner` holds the job's lease. Terminal states clear the lease and set
/// `completed_at`.
pub async fn write_update(
    conn: &mut SqliteConnection,
    task_id: &str,
    owner: &str,
    update: &JobUpdate,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let terminal = update.state.is_terminal();
    let done = sqlx::query(
        "UPDATE job SET state = $1, meta = COALESCE($2, meta), result = COALESCE($3, result), \
         completed_at = CASE WHEN $4 THEN $5 ELSE completed_at END, \
         lease_owner = CASE WHEN $4 THEN NULL ELSE lease_owner END, \
         lease_expires_at = CASE WHEN $4 THEN NULL ELSE lease_expires_at END \
         WHERE task_id = $6 AND lease_owner = $7 AND state IN ('STARTED', 'PROGRESS')",
    )
    .bind(update.state.as_str())
    .bind(update.meta.as_ref().map(|m| m.to_string()))
    .bind(update.result.as_ref().map(|r| r.to_string()))
    .bind(terminal)
    .bind(now_ms)
    .bind(task_id)
    .bind(owner)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn holds_lease(
    conn: &mut SqliteConnection,
    task_id: &str,
    owner: &str,
) -> Result<bool, StoreError> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM job WHERE task_id = $1 AND lease_owner = $2 \
         AND state IN ('STARTED', 'PROGRESS')",
    )
    .bind(task_id)
    .bind(owner)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(held.is_some())
}

/// Resolves a group view id to its job's task id, or returns the id unchanged.
async fn resolve_task_id(conn: &mut SqliteConnection, id: &str) -> Result<String, StoreError> {
    let task_id: Option<String> =
        sqlx::query_scalar("SELECT task_id FROM job_group_view WHERE view_id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(task_id.unwrap_or_else(|| id.to_owned()))
}

impl SqliteStore {
    pub(super) async fn insert_jobs(&self, jobs: &[NewJob]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_jobs_in(&mut tx, jobs).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Reads expired leases and due jobs each in the order of its partial index, stopping
    /// at the limit, so a claim does not sort every waiting job.
    pub(super) async fn claim(
        &self,
        owner: &str,
        limit: i64,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Job>, StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "UPDATE job SET state = 'STARTED', lease_owner = $1, lease_expires_at = $2, \
             attempts = attempts + 1, started_at = COALESCE(started_at, $3) \
             WHERE task_id IN ( \
                SELECT task_id FROM ( \
                    SELECT task_id FROM job \
                    WHERE state IN ('STARTED', 'PROGRESS') AND lease_expires_at < $3 \
                    ORDER BY lease_expires_at LIMIT $4) \
                UNION ALL \
                SELECT task_id FROM ( \
                    SELECT task_id FROM job \
                    WHERE state IN ('PENDING', 'RETRY') AND run_at <= $3 \
                    ORDER BY run_at LIMIT $4) \
                LIMIT $4) \
             RETURNING {JOB_COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(job_from_row).collect()
    }

    pub(super) async fn renew(
        &self,
        task_ids: &[String],
        owner: &str,
        until_ms: i64,
    ) -> Result<u64, StoreError> {
        let ids = serde_json::to_string(task_ids).expect("strings serialise");
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE job SET lease_expires_at = $1 WHERE lease_owner = $2 \
             AND state IN ('STARTED', 'PROGRESS') AND task_id IN (SELECT value FROM json_each($3))",
        )
        .bind(until_ms)
        .bind(owner)
        .bind(ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
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
        let mut tx = self.begin_write().await?;
        if !holds_lease(&mut tx, task_id, owner).await? {
            return Ok(None);
        }

        sqlx::query("SAVEPOINT enrollment")
            .execute(&mut *tx)
            .await?;
        let mut etx = SqliteTx { conn: &mut tx };
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
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE job SET state = 'RETRY', run_at = $1, meta = $2, lease_owner = NULL, \
             lease_expires_at = NULL WHERE task_id = $3 AND lease_owner = $4 \
             AND state IN ('STARTED', 'PROGRESS')",
        )
        .bind(run_at_ms)
        .bind(meta.to_string())
        .bind(task_id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn release(&self, owner: &str) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        // The attempt did not run to an outcome, so it is not counted.
        let done = sqlx::query(
            "UPDATE job SET state = 'PENDING', lease_owner = NULL, lease_expires_at = NULL, \
             attempts = MAX(attempts - 1, 0) \
             WHERE lease_owner = $1 AND state IN ('STARTED', 'PROGRESS')",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    pub(super) async fn cancel(&self, id: &str, now_ms: i64) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let task_id = resolve_task_id(&mut tx, id).await?;
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM job WHERE task_id = $1")
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
        sqlx::query(
            "UPDATE job SET state = 'REVOKED', completed_at = $1, lease_owner = NULL, \
             lease_expires_at = NULL WHERE task_id = $2",
        )
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
        let mut conn = self.read.acquire().await?;
        let sql = format!("SELECT {JOB_COLUMNS} FROM job WHERE task_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        let found = match row {
            Some(row) => Some(TaskRef::Job(job_from_row(&row)?)),
            None => {
                let row = sqlx::query(
                    "SELECT v.codigo_grupo AS view_grupo, j.* FROM job_group_view v \
                     JOIN job j ON j.task_id = v.task_id WHERE v.view_id = $1",
                )
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
        let rows = sqlx::query("SELECT state, COUNT(*) FROM job GROUP BY state")
            .fetch_all(&self.read)
            .await?;
        let mut counts = JobCounts::default();
        for row in rows {
            let state: String = row.get(0);
            let n: i64 = row.get(1);
            if let Some(state) = JobState::parse(&state) {
                counts.add(state, n);
            }
        }
        Ok(counts)
    }

    pub(super) async fn purge(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "DELETE FROM job_group_view WHERE task_id IN \
             (SELECT task_id FROM job WHERE completed_at < $1)",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM job WHERE completed_at < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

pub async fn insert_jobs_in(
    tx: &mut Transaction<'static, Sqlite>,
    jobs: &[NewJob],
) -> Result<(), StoreError> {
    let now_ms = crate::clock::now_ms();
    for job in jobs {
        sqlx::query(
            "INSERT INTO job (task_id, kind, state, payload, correlation_id, request_id, \
             idempotency_key, run_at, created_at) VALUES ($1, $2, 'PENDING', $3, $4, $5, $6, $7, $7)",
        )
        .bind(&job.task_id)
        .bind(job.kind.as_str())
        .bind(job.payload.to_string())
        .bind(&job.correlation_id)
        .bind(&job.request_id)
        .bind(&job.idempotency_key)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
        for (position, (view_id, grupo)) in job.group_views.iter().enumerate() {
            sqlx::query(
                "INSERT INTO job_group_view (view_id, task_id, codigo_grupo, position) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(view_id)
            .bind(&job.task_id)
            .bind(grupo)
            .bind(position as i64)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}
