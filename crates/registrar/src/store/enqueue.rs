//! Idempotent enqueues, one at a time or many in one transaction (group commit). The
//! statements are written once, in a macro that each backend expands for its connection
//! type, as in [`super::resilience`].

use crate::audit::AuditEvent;
use crate::idempotency::NewRecord;
use crate::jobs::model::NewJob;

/// One enqueue request: a job and its idempotency record, written together unless a live
/// record owns the key.
#[derive(Debug, Clone)]
pub struct EnqueueRequest {
    pub job: NewJob,
    pub record: NewRecord,
    /// How long a synchronous request's pending record blocks the key; see
    /// [`crate::idempotency::decide`].
    pub pending_timeout_ms: i64,
    /// The event stored with the job when the claim is fresh. The caller has already filled
    /// in its ids, because the writing task runs outside the request's context.
    pub audit: Option<AuditEvent>,
}

/// The order in which a batch writes its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchPlan {
    /// Indexes of the first request of each key, sorted by key. PostgreSQL locks the keys in
    /// this order, so two batches that share keys wait for each other instead of
    /// deadlocking. A deadlock with another writer fails the batch, whose requests are then
    /// written one at a time.
    pub first_of_key: Vec<usize>,
    /// Indexes of requests whose key an earlier request of the batch has, in arrival order.
    /// They are claimed after the first request's record and job are written, so each gets
    /// the claim that a sequential request would get.
    pub repeated_key: Vec<usize>,
}

/// Splits `requests` into the first request of each key and the repeats.
pub(crate) fn plan_batch(requests: &[EnqueueRequest]) -> BatchPlan {
    let mut seen = std::collections::HashSet::with_capacity(requests.len());
    let mut first_of_key = Vec::with_capacity(requests.len());
    let mut repeated_key = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        if seen.insert(request.record.key.key.as_str()) {
            first_of_key.push(index);
        } else {
            repeated_key.push(index);
        }
    }
    first_of_key.sort_by(|&a, &b| requests[a].record.key.key.cmp(&requests[b].record.key.key));
    BatchPlan {
        first_of_key,
        repeated_key,
    }
}

/// The maximum bind parameters of one statement: SQLite's default limit since 3.32
/// (`SQLITE_MAX_VARIABLE_NUMBER`). PostgreSQL allows 65,535.
pub(crate) const MAX_BINDS: usize = 32_766;

/// Expands the enqueue statements for one backend. `claim_key` is the backend's
/// [`super::resilience`] function, `json` turns a `&serde_json::Value` into the value its
/// JSON columns take, and `position` is the integer type of `job_group_view.position`.
macro_rules! enqueue_queries {
    (
        conn = $conn:ty,
        database = $database:ty,
        claim_key = $claim_key:path,
        json = $json:path,
        position = $position:ty
    ) => {
        use sqlx::Row as _;

        use $crate::idempotency::{Claim, NewRecord};
        use $crate::store::StoreError;
        use $crate::store::enqueue::{EnqueueRequest, MAX_BINDS, plan_batch};

        const RECORD_COLUMNS: usize = 11;
        const JOB_COLUMNS: usize = 7;
        const VIEW_COLUMNS: usize = 4;

        /// Writes one request: its record unless a live record owns the key, and then its
        /// job, group views and audit event.
        pub async fn write_one(
            conn: &mut $conn,
            request: &EnqueueRequest,
        ) -> Result<Claim, StoreError> {
            let claim = $claim_key(conn, &request.record, request.pending_timeout_ms).await?;
            if claim == Claim::Fresh {
                write_fresh(conn, &[request]).await?;
            }
            Ok(claim)
        }

        /// Writes a batch of requests and returns one claim per request, in request order.
        /// The records of the first request of each key go in one multi-row insert. A key
        /// that already has a record, and a key repeated within the batch, go through
        /// `claim_key` one request at a time. The jobs, group views and audit events of
        /// the fresh requests then take one insert each.
        pub async fn write_batch(
            conn: &mut $conn,
            requests: &[EnqueueRequest],
        ) -> Result<Vec<Claim>, StoreError> {
            let plan = plan_batch(requests);
            let mut claims: Vec<Option<Claim>> = vec![None; requests.len()];
            let firsts: Vec<&NewRecord> = plan
                .first_of_key
                .iter()
                .map(|&i| &requests[i].record)
                .collect();
            let inserted = insert_records(conn, &firsts).await?;
            for &index in &plan.first_of_key {
                let request = &requests[index];
                let claim = if inserted.contains(request.record.key.key.as_str()) {
                    Claim::Fresh
                } else {
                    $claim_key(conn, &request.record, request.pending_timeout_ms).await?
                };
                claims[index] = Some(claim);
            }
            let fresh: Vec<&EnqueueRequest> = requests
                .iter()
                .zip(&claims)
                .filter(|(_, claim)| **claim == Some(Claim::Fresh))
                .map(|(request, _)| request)
                .collect();
            write_fresh(conn, &fresh).await?;
            for &index in &plan.repeated_key {
                claims[index] = Some(write_one(conn, &requests[index]).await?);
            }
            Ok(claims
                .into_iter()
                .map(|claim| claim.expect("the plan covers every request"))
                .collect())
        }

        /// Inserts the records whose key has none yet, in the order given, and returns the
        /// keys it inserted.
        async fn insert_records(
            conn: &mut $conn,
            records: &[&NewRecord],
        ) -> Result<std::collections::HashSet<String>, StoreError> {
            let mut inserted = std::collections::HashSet::with_capacity(records.len());
            for chunk in records.chunks(MAX_BINDS / RECORD_COLUMNS) {
                let mut builder = sqlx::QueryBuilder::<$database>::new(
                    "INSERT INTO idempotency_record (idempotency_key, fingerprint, endpoint, \
                     task_id, state, registro_academico, codigo_periodo, correlation_id, \
                     response_status, response_body, created_at, expires_at) ",
                );
                builder.push_values(chunk, |mut row, record| {
                    row.push_bind(record.key.key.as_str())
                        .push_bind(record.key.fingerprint.as_str())
                        .push_bind(record.endpoint.as_str())
                        .push_bind(record.task_id.as_deref())
                        .push("'pending'")
                        .push_bind(record.registro_academico.as_deref())
                        .push_bind(record.codigo_periodo.as_deref())
                        .push_bind(record.correlation_id.as_str())
                        .push_bind(i64::from(record.response_status))
                        .push_bind(record.response_body.as_str())
                        .push_bind(record.now_ms)
                        .push_bind(record.expires_at_ms);
                });
                builder.push(
                    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
                );
                // The text changes with the row count, so it is not cached as a prepared
                // statement, where it would push out the statements that repeat.
                let rows = builder
                    .build()
                    .persistent(false)
                    .fetch_all(&mut *conn)
                    .await?;
                for row in rows {
                    inserted.insert(row.try_get::<String, _>(0)?);
                }
            }
            Ok(inserted)
        }

        /// Inserts the jobs, group views and audit events of requests whose claim is fresh.
        async fn write_fresh(
            conn: &mut $conn,
            requests: &[&EnqueueRequest],
        ) -> Result<(), StoreError> {
            if requests.is_empty() {
                return Ok(());
            }
            let now_ms = $crate::clock::now_ms();
            for chunk in requests.chunks(MAX_BINDS / JOB_COLUMNS) {
                let mut builder = sqlx::QueryBuilder::<$database>::new(
                    "INSERT INTO job (task_id, kind, state, payload, correlation_id, \
                     request_id, idempotency_key, run_at, created_at) ",
                );
                builder.push_values(chunk, |mut row, request| {
                    let job = &request.job;
                    row.push_bind(job.task_id.as_str())
                        .push_bind(job.kind.as_str())
                        .push("'PENDING'")
                        .push_bind($json(&job.payload))
                        .push_bind(job.correlation_id.as_str())
                        .push_bind(job.request_id.as_deref())
                        .push_bind(job.idempotency_key.as_deref())
                        .push_bind(now_ms)
                        .push_bind(now_ms);
                });
                builder.build().persistent(false).execute(&mut *conn).await?;
            }

            let views: Vec<(&str, &str, &str, $position)> = requests
                .iter()
                .flat_map(|request| {
                    let task_id = request.job.task_id.as_str();
                    request.job.group_views.iter().enumerate().map(
                        move |(position, (view_id, grupo))| {
                            let position = <$position>::try_from(position)
                                .expect("a group's position fits job_group_view.position");
                            (view_id.as_str(), task_id, grupo.as_str(), position)
                        },
                    )
                })
                .collect();
            for chunk in views.chunks(MAX_BINDS / VIEW_COLUMNS) {
                let mut builder = sqlx::QueryBuilder::<$database>::new(
                    "INSERT INTO job_group_view (view_id, task_id, codigo_grupo, position) ",
                );
                builder.push_values(chunk, |mut row, (view_id, task_id, grupo, position)| {
                    row.push_bind(*view_id)
                        .push_bind(*task_id)
                        .push_bind(*grupo)
                        .push_bind(*position);
                });
                builder.build().persistent(false).execute(&mut *conn).await?;
            }

            let events: Vec<&$crate::audit::AuditEvent> =
                requests.iter().filter_map(|r| r.audit.as_ref()).collect();
            insert_events(conn, &events).await
        }

        /// Inserts audit events with one statement per chunk that fits the bind limit.
        pub async fn insert_events(
            conn: &mut $conn,
            events: &[&$crate::audit::AuditEvent],
        ) -> Result<(), StoreError> {
            for chunk in events.chunks($crate::store::audit::EVENTS_PER_STATEMENT) {
                let mut builder = sqlx::QueryBuilder::<$database>::new(
                    "INSERT INTO audit_event (occurred_at, event_type, entity_type, entity_id, \
                     action, correlation_id, request_id, registro_academico, codigo_periodo, \
                     codigo_grupo, error_code, data) ",
                );
                builder.push_values(chunk, |mut row, event| {
                    row.push_bind(event.occurred_at_ms)
                        .push_bind(event.event_type.as_str())
                        .push_bind(event.entity_type.as_str())
                        .push_bind(event.entity_id.as_deref())
                        .push_bind(event.action.as_str())
                        .push_bind(event.correlation_id.as_deref())
                        .push_bind(event.request_id.as_deref())
                        .push_bind(event.registro_academico.as_deref())
                        .push_bind(event.codigo_periodo.as_deref())
                        .push_bind(event.codigo_grupo.as_deref())
                        .push_bind(event.error_code.as_deref())
                        .push_bind($json(&event.data));
                });
                builder.build().persistent(false).execute(&mut *conn).await?;
            }
            Ok(())
        }
    };
}
pub(crate) use enqueue_queries;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::{Endpoint, KeySource, RequestKey};
    use crate::jobs::model::JobKind;

    fn request(key: &str) -> EnqueueRequest {
        EnqueueRequest {
            job: NewJob {
                task_id: format!("task-{key}"),
                kind: JobKind::Inscription,
                payload: serde_json::json!({}),
                correlation_id: "corr".into(),
                request_id: None,
                idempotency_key: Some(key.into()),
                group_views: Vec::new(),
            },
            record: NewRecord {
                key: RequestKey {
                    key: key.into(),
                    source: KeySource::Header,
                    fingerprint: "f".into(),
                },
                endpoint: Endpoint::Async,
                task_id: None,
                registro_academico: None,
                codigo_periodo: None,
                correlation_id: "corr".into(),
                response_status: 202,
                response_body: "{}".into(),
                now_ms: 0,
                expires_at_ms: 1,
            },
            pending_timeout_ms: 0,
            audit: None,
        }
    }

    #[test]
    fn plan_sorts_firsts_and_keeps_repeats_in_order() {
        let requests: Vec<EnqueueRequest> = ["c", "a", "c", "b", "a", "c"].map(request).into();
        let plan = plan_batch(&requests);
        assert_eq!(plan.first_of_key, vec![1, 3, 0]);
        assert_eq!(plan.repeated_key, vec![2, 4, 5]);
    }

    #[test]
    fn plan_of_distinct_keys_has_no_repeats() {
        let requests: Vec<EnqueueRequest> = ["b", "a"].map(request).into();
        let plan = plan_batch(&requests);
        assert_eq!(plan.first_of_key, vec![1, 0]);
        assert!(plan.repeated_key.is_empty());
    }
}
