//! Enrollment batches on SQLite: the steps of several leased inscription jobs in one write
//! transaction, so that they share one `BEGIN IMMEDIATE`, one commit and one lease check.
//! SQLite has a single writer, so a batch never waits for a row lock and defers no job.

use std::collections::HashMap;

use sqlx::SqliteConnection;
use time::Date;

use super::SqliteStore;
use super::jobs::write_update;
use super::tx::SqliteTx;
use crate::domain::enrollment::{EnrollError, EnrollMode, EnrollmentRules, enroll};
use crate::store::{BatchOutcome, BatchStep, EnrollmentResult, StoreError};

/// Lists the leased jobs among the JSON array `$1` and whether each one already has a saga.
const SELECT_LEASED_JOBS: &str = "SELECT j.task_id, \
     EXISTS (SELECT 1 FROM saga s WHERE s.task_id = j.task_id) \
     FROM job j WHERE j.task_id IN (SELECT value FROM json_each($1)) AND j.lease_owner = $2 \
     AND j.state IN ('STARTED', 'PROGRESS')";

impl SqliteStore {
    pub(super) async fn enrollment_batch(
        &self,
        owner: &str,
        steps: &[BatchStep<'_>],
        rules: &EnrollmentRules,
        today: Date,
        now_ms: i64,
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        let mut tx = self.begin_write().await?;
        let task_ids: Vec<&str> = steps.iter().map(|s| s.task_id).collect();
        let task_ids = serde_json::to_string(&task_ids).expect("strings serialise");
        let leased: HashMap<String, bool> = sqlx::query_as(SELECT_LEASED_JOBS)
            .bind(task_ids)
            .bind(owner)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();

        let mut outcomes = Vec::with_capacity(steps.len());
        for step in steps {
            let outcome = match leased.get(step.task_id) {
                None => BatchOutcome::LeaseLost,
                Some(true) => BatchOutcome::SagaLogged,
                Some(false) => run_step(&mut tx, owner, step, rules, today, now_ms).await?,
            };
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// Runs one job's step inside the savepoint `job`. Rejections, lost leases and
/// non-transient errors roll back to the savepoint; transient errors abort the batch.
async fn run_step(
    conn: &mut SqliteConnection,
    owner: &str,
    step: &BatchStep<'_>,
    rules: &EnrollmentRules,
    today: Date,
    now_ms: i64,
) -> Result<BatchOutcome, StoreError> {
    sqlx::query("SAVEPOINT job").execute(&mut *conn).await?;
    let outcome = match write_step(conn, owner, step, rules, today, now_ms).await {
        Ok(Some(done)) => BatchOutcome::Done(done),
        Ok(None) => BatchOutcome::LeaseLost,
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => BatchOutcome::Failed(e),
    };
    if !matches!(outcome, BatchOutcome::Done(_)) {
        sqlx::query("ROLLBACK TO SAVEPOINT job")
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("RELEASE SAVEPOINT job")
        .execute(&mut *conn)
        .await?;
    Ok(outcome)
}

/// Enrolls, rolling a rejection back to the savepoint `job`, then writes the job update and
/// the saga. Returns `None` when the lease was lost.
async fn write_step(
    conn: &mut SqliteConnection,
    owner: &str,
    step: &BatchStep<'_>,
    rules: &EnrollmentRules,
    today: Date,
    now_ms: i64,
) -> Result<Option<EnrollmentResult>, StoreError> {
    let mut etx = SqliteTx { conn: &mut *conn };
    let outcome = match enroll(&mut etx, step.request, &EnrollMode::Merge, rules, today).await {
        Ok(outcome) => Ok(outcome),
        Err(EnrollError::Rejected(rejection)) => {
            sqlx::query("ROLLBACK TO SAVEPOINT job")
                .execute(&mut *conn)
                .await?;
            Err(rejection)
        }
        Err(EnrollError::Store(e)) => return Err(e),
    };

    let write = (step.finish)(&outcome);
    if !write_update(conn, step.task_id, owner, &write.job, now_ms).await? {
        return Ok(None);
    }
    if let Some(saga) = &write.saga {
        super::resilience::insert_saga(conn, saga).await?;
    }
    Ok(Some(outcome))
}
