//! Enrollment batches on PostgreSQL: the steps of several leased inscription jobs in one
//! transaction, so that they share one commit and its WAL flush.
//!
//! Lock order: the batch first locks all its job rows in `task_id` order, in one statement,
//! and lease renewal and release lock job rows in the same order. Each request then locks
//! its inscription and its groups (sorted) as a single request does. A request's locks stay
//! held until the batch commits, so a later request of the batch that waited for a lock could
//! close a cycle with a transaction that took the same rows in the per-request order. Later
//! requests therefore run under a short `lock_timeout`: one that meets a busy lock rolls back
//! to its savepoint, which releases the locks it took, and is deferred to run on its own.

use std::collections::HashMap;

use sqlx::PgConnection;
use time::Date;

use super::PgStore;
use super::jobs::write_update;
use super::tx::PgTx;
use crate::domain::enrollment::{EnrollError, EnrollMode, EnrollmentRules, enroll};
use crate::store::{BatchOutcome, BatchStep, EnrollmentResult, StoreError};

/// Locks the leased job rows among `$1` in `task_id` order and reports whether each one
/// already has a saga.
const LOCK_LEASED_JOBS: &str = "SELECT j.task_id, \
     EXISTS (SELECT 1 FROM saga s WHERE s.task_id = j.task_id) \
     FROM job j WHERE j.task_id = ANY($1) AND j.lease_owner = $2 \
     AND j.state IN ('STARTED', 'PROGRESS') ORDER BY j.task_id FOR UPDATE OF j";

/// Set after the first request of a batch. A batch usually commits within tens of
/// milliseconds, so a wait longer than this is more likely a cycle or a long transaction.
/// NOTE: 50 ms is an estimate, not a measured optimum.
const LATER_REQUESTS_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '50ms'";

/// SQLSTATE `lock_not_available`, raised when `lock_timeout` expires.
const LOCK_NOT_AVAILABLE: &str = "55P03";

impl PgStore {
    pub(super) async fn enrollment_batch(
        &self,
        owner: &str,
        steps: &[BatchStep<'_>],
        rules: &EnrollmentRules,
        today: Date,
        now_ms: i64,
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        let mut tx = self.begin().await?;
        let task_ids: Vec<&str> = steps.iter().map(|s| s.task_id).collect();
        let leased: HashMap<String, bool> = sqlx::query_as(LOCK_LEASED_JOBS)
            .bind(&task_ids)
            .bind(owner)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();

        let mut outcomes = Vec::with_capacity(steps.len());
        let mut first = true;
        for step in steps {
            let outcome = match leased.get(step.task_id) {
                None => BatchOutcome::LeaseLost,
                Some(true) => BatchOutcome::SagaLogged,
                Some(false) => {
                    let outcome = run_step(&mut tx, owner, step, rules, today, now_ms).await?;
                    if first {
                        sqlx::query(LATER_REQUESTS_LOCK_TIMEOUT)
                            .execute(&mut *tx)
                            .await?;
                        first = false;
                    }
                    outcome
                }
            };
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// Runs one job's step inside the savepoint `job`. Rejections, lost leases, busy locks and
/// non-transient errors roll back to the savepoint; transient errors abort the batch.
async fn run_step(
    conn: &mut PgConnection,
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
        Err(e) if is_lock_timeout(&e) => BatchOutcome::Deferred,
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
    conn: &mut PgConnection,
    owner: &str,
    step: &BatchStep<'_>,
    rules: &EnrollmentRules,
    today: Date,
    now_ms: i64,
) -> Result<Option<EnrollmentResult>, StoreError> {
    let mut etx = PgTx { conn: &mut *conn };
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

fn is_lock_timeout(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(db)) => {
            db.code().as_deref() == Some(LOCK_NOT_AVAILABLE)
        }
        _ => false,
    }
}
