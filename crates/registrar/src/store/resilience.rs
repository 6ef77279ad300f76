//! Idempotency records and saga logs, with the same statements on both backends. The
//! functions are written once, in a macro that each backend expands for its connection type
//! with its own row-locking clause: sqlx has no connection type common to both, and its
//! `Any` driver is avoided on purpose.

/// The columns of `saga` that `saga_from_row` decodes, in order.
macro_rules! saga_columns {
    () => {
        "saga_id, task_id, correlation_id, request_id, registro_academico, codigo_periodo, \
         grupos, codigo_inscripcion, created_inscripcion, added_grupos, status, steps, result, \
         error, error_code, created_at, updated_at, completed_at"
    };
}
pub(crate) use saga_columns;

/// Expands the functions for one backend. `$lock` ends a `SELECT` that must lock the rows it
/// reads (`FOR UPDATE` on PostgreSQL, nothing on SQLite, whose write transactions are
/// serial), `$lock_record` the same for the idempotency record joined with its job, and
/// `$result_text` reads `job.result` as text.
macro_rules! resilience_queries {
    (
        conn = $conn:ty,
        database = $database:ty,
        row = $row:ty,
        lock = $lock:literal,
        lock_record = $lock_record:literal,
        result_text = $result_text:literal
    ) => {
        use sqlx::Row as _;

        use $crate::idempotency::{Claim, Decision, Existing, NewRecord, decide};
        use $crate::saga::model::{Saga, SagaCounts, SagaQuery, SagaStatus};
        use $crate::store::StoreError;
        use $crate::store::resilience::saga_columns;

        /// Writes `record` unless a live record holds its key; returns `Claim::Fresh` when it
        /// wrote it (the caller then writes the job in the same transaction).
        pub async fn claim_key(
            conn: &mut $conn,
            record: &NewRecord,
            pending_timeout_ms: i64,
        ) -> Result<Claim, StoreError> {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_record (idempotency_key, fingerprint, endpoint, task_id, \
                 state, registro_academico, codigo_periodo, correlation_id, response_status, \
                 response_body, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(&record.key.key)
            .bind(&record.key.fingerprint)
            .bind(record.endpoint.as_str())
            .bind(&record.task_id)
            .bind(&record.registro_academico)
            .bind(&record.codigo_periodo)
            .bind(&record.correlation_id)
            .bind(i64::from(record.response_status))
            .bind(&record.response_body)
            .bind(record.now_ms)
            .bind(record.expires_at_ms)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(Claim::Fresh);
            }
            let row = sqlx::query(concat!(
                "SELECT r.fingerprint, r.task_id, r.state, CAST(r.response_status AS BIGINT), r.response_body, \
                 r.created_at, r.expires_at, j.state, ",
                $result_text,
                " FROM idempotency_record r LEFT JOIN job j ON j.task_id = r.task_id \
                 WHERE r.idempotency_key = $1 ",
                $lock_record
            ))
            .bind(&record.key.key)
            .fetch_optional(&mut *conn)
            .await?;
            // The holder was deleted between the two statements: nothing blocks the key.
            let Some(row) = row else {
                return Box::pin(claim_key(conn, record, pending_timeout_ms)).await;
            };
            let existing = Existing {
                fingerprint: row.try_get(0)?,
                task_id: row.try_get(1)?,
                state: row.try_get(2)?,
                response_status: u16::try_from(row.try_get::<i64, _>(3)?).unwrap_or(500),
                response_body: row.try_get(4)?,
                created_at: row.try_get(5)?,
                expires_at: row.try_get(6)?,
                job_state: row.try_get(7)?,
                job_result: row.try_get(8)?,
            };
            match decide(&existing, record, pending_timeout_ms) {
                Decision::Answer(claim) => Ok(claim),
                Decision::Replace => {
                    sqlx::query(
                        "UPDATE idempotency_record SET fingerprint = $2, endpoint = $3, \
                         task_id = $4, state = 'pending', registro_academico = $5, \
                         codigo_periodo = $6, correlation_id = $7, response_status = $8, \
                         response_body = $9, created_at = $10, expires_at = $11 \
                         WHERE idempotency_key = $1",
                    )
                    .bind(&record.key.key)
                    .bind(&record.key.fingerprint)
                    .bind(record.endpoint.as_str())
                    .bind(&record.task_id)
                    .bind(&record.registro_academico)
                    .bind(&record.codigo_periodo)
                    .bind(&record.correlation_id)
                    .bind(i64::from(record.response_status))
                    .bind(&record.response_body)
                    .bind(record.now_ms)
                    .bind(record.expires_at_ms)
                    .execute(&mut *conn)
                    .await?;
                    Ok(Claim::Fresh)
                }
            }
        }

        /// Marks a synchronous request's record finished, so it replays.
        pub async fn complete_key(
            conn: &mut $conn,
            key: &str,
            status: u16,
            body: &str,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE idempotency_record SET state = 'completed', response_status = $2, \
                 response_body = $3 WHERE idempotency_key = $1",
            )
            .bind(key)
            .bind(i64::from(status))
            .bind(body)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Drops a synchronous request's pending record after a business error, so the
        /// next request with its key runs afresh.
        pub async fn release_key(conn: &mut $conn, key: &str) -> Result<(), StoreError> {
            sqlx::query(
                "DELETE FROM idempotency_record WHERE idempotency_key = $1 AND state = 'pending'",
            )
            .bind(key)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Deletes every key of a (student, period); returns them.
        pub async fn invalidate_keys(
            conn: &mut $conn,
            registro_academico: &str,
            codigo_periodo: &str,
        ) -> Result<Vec<String>, StoreError> {
            let keys: Vec<String> = sqlx::query_scalar(
                "DELETE FROM idempotency_record WHERE registro_academico = $1 \
                 AND codigo_periodo = $2 RETURNING idempotency_key",
            )
            .bind(registro_academico)
            .bind(codigo_periodo)
            .fetch_all(&mut *conn)
            .await?;
            Ok(keys)
        }

        pub async fn delete_key(conn: &mut $conn, key: &str) -> Result<bool, StoreError> {
            let done = sqlx::query("DELETE FROM idempotency_record WHERE idempotency_key = $1")
                .bind(key)
                .execute(&mut *conn)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        pub async fn count_keys(conn: &mut $conn, now_ms: i64) -> Result<i64, StoreError> {
            Ok(
                sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_record WHERE expires_at > $1")
                    .bind(now_ms)
                    .fetch_one(&mut *conn)
                    .await?,
            )
        }

        pub async fn purge_keys(conn: &mut $conn, now_ms: i64) -> Result<u64, StoreError> {
            let done = sqlx::query("DELETE FROM idempotency_record WHERE expires_at <= $1")
                .bind(now_ms)
                .execute(&mut *conn)
                .await?;
            Ok(done.rows_affected())
        }

        fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
            serde_json::to_string(value).map_err(|e| StoreError::corrupt("saga", e))
        }

        fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
            serde_json::from_str(text).map_err(|e| StoreError::corrupt("saga", e))
        }

        pub async fn insert_saga(conn: &mut $conn, saga: &Saga) -> Result<(), StoreError> {
            sqlx::query(concat!(
                "INSERT INTO saga (",
                saga_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17, $18)"
            ))
            .bind(&saga.saga_id)
            .bind(&saga.task_id)
            .bind(&saga.correlation_id)
            .bind(&saga.request_id)
            .bind(&saga.registro_academico)
            .bind(&saga.codigo_periodo)
            .bind(to_json(&saga.grupos)?)
            .bind(&saga.codigo_inscripcion)
            .bind(saga.created_inscripcion)
            .bind(to_json(&saga.added_grupos)?)
            .bind(saga.status.as_str())
            .bind(to_json(&saga.steps)?)
            .bind(saga.result.as_ref().map(to_json).transpose()?)
            .bind(&saga.error)
            .bind(&saga.error_code)
            .bind(saga.created_at)
            .bind(saga.updated_at)
            .bind(saga.completed_at)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Inserts sagas with one statement per chunk that fits the bind limit.
        pub async fn insert_sagas(conn: &mut $conn, sagas: &[$crate::saga::model::Saga]) -> Result<(), StoreError> {
            const SAGA_COLUMNS: usize = 18;
            for chunk in sagas.chunks($crate::store::enqueue::MAX_BINDS / SAGA_COLUMNS) {
                let mut builder = sqlx::QueryBuilder::<$database>::new(concat!(
                    "INSERT INTO saga (",
                    saga_columns!(),
                    ") "
                ));
                let mut failed = None;
                builder.push_values(chunk, |mut row, saga| {
                    let mut json = |value: Result<String, StoreError>| {
                        value.unwrap_or_else(|e| {
                            failed.get_or_insert(e);
                            String::new()
                        })
                    };
                    let grupos = json(to_json(&saga.grupos));
                    let added = json(to_json(&saga.added_grupos));
                    let steps = json(to_json(&saga.steps));
                    let result = saga.result.as_ref().map(|r| json(to_json(r)));
                    row.push_bind(saga.saga_id.clone())
                        .push_bind(saga.task_id.clone())
                        .push_bind(saga.correlation_id.clone())
                        .push_bind(saga.request_id.clone())
                        .push_bind(saga.registro_academico.clone())
                        .push_bind(saga.codigo_periodo.clone())
                        .push_bind(grupos)
                        .push_bind(saga.codigo_inscripcion.clone())
                        .push_bind(saga.created_inscripcion)
                        .push_bind(added)
                        .push_bind(saga.status.as_str())
                        .push_bind(steps)
                        .push_bind(result)
                        .push_bind(saga.error.clone())
                        .push_bind(saga.error_code.clone())
                        .push_bind(saga.created_at)
                        .push_bind(saga.updated_at)
                        .push_bind(saga.completed_at);
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                builder.build().persistent(false).execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// Writes a saga's status, steps and error.
        pub async fn update_saga(conn: &mut $conn, saga: &Saga) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE saga SET status = $2, steps = $3, error = $4, error_code = $5, \
                 updated_at = $6, completed_at = $7 WHERE saga_id = $1",
            )
            .bind(&saga.saga_id)
            .bind(saga.status.as_str())
            .bind(to_json(&saga.steps)?)
            .bind(&saga.error)
            .bind(&saga.error_code)
            .bind(saga.updated_at)
            .bind(saga.completed_at)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        fn saga_from_row(row: &$row) -> Result<Saga, StoreError> {
            let status: String = row.try_get(10)?;
            Ok(Saga {
                saga_id: row.try_get(0)?,
                task_id: row.try_get(1)?,
                correlation_id: row.try_get(2)?,
                request_id: row.try_get(3)?,
                registro_academico: row.try_get(4)?,
                codigo_periodo: row.try_get(5)?,
                grupos: from_json(&row.try_get::<String, _>(6)?)?,
                codigo_inscripcion: row.try_get(7)?,
                created_inscripcion: row.try_get(8)?,
                added_grupos: from_json(&row.try_get::<String, _>(9)?)?,
                status: SagaStatus::parse(&status)
                    .ok_or_else(|| StoreError::corrupt("saga", format!("unknown status {status}")))?,
                steps: from_json(&row.try_get::<String, _>(11)?)?,
                result: row
                    .try_get::<Option<String>, _>(12)?
                    .map(|r| from_json(&r))
                    .transpose()?,
                error: row.try_get(13)?,
                error_code: row.try_get(14)?,
                created_at: row.try_get(15)?,
                updated_at: row.try_get(16)?,
                completed_at: row.try_get(17)?,
            })
        }

        /// Reads at most one saga with `sql`, whose only parameter is `key`.
        async fn fetch_saga(
            conn: &mut $conn,
            sql: &'static str,
            key: &str,
        ) -> Result<Option<Saga>, StoreError> {
            let row = sqlx::query(sql).bind(key).fetch_optional(&mut *conn).await?;
            row.as_ref().map(saga_from_row).transpose()
        }

        /// Reads one saga, locking it.
        pub async fn saga_by_id(
            conn: &mut $conn,
            saga_id: &str,
        ) -> Result<Option<Saga>, StoreError> {
            let sql = concat!("SELECT ", saga_columns!(), " FROM saga WHERE saga_id = $1 ", $lock);
            fetch_saga(conn, sql, saga_id).await
        }

        /// Reads the saga of a job without locking it.
        pub async fn saga_of_task_unlocked(
            conn: &mut $conn,
            task_id: &str,
        ) -> Result<Option<Saga>, StoreError> {
            let sql = concat!("SELECT ", saga_columns!(), " FROM saga WHERE task_id = $1");
            fetch_saga(conn, sql, task_id).await
        }

        pub async fn list_sagas(
            conn: &mut $conn,
            query: &SagaQuery,
        ) -> Result<Vec<Saga>, StoreError> {
            let rows = sqlx::query(concat!(
                "SELECT ",
                saga_columns!(),
                " FROM saga WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) \
                 ORDER BY created_at DESC, saga_id DESC LIMIT $2"
            ))
            .bind(query.status.map(|s| s.as_str()))
            .bind(query.limit)
            .fetch_all(&mut *conn)
            .await?;
            rows.iter().map(saga_from_row).collect()
        }

        /// Unfinished sagas of synchronous requests not touched since `before_ms`: their
        /// process died before finishing them.
        pub async fn stalled_sagas(
            conn: &mut $conn,
            before_ms: i64,
            limit: i64,
        ) -> Result<Vec<Saga>, StoreError> {
            let rows = sqlx::query(concat!(
                "SELECT ",
                saga_columns!(),
                " FROM saga WHERE status IN ('pending', 'executing', 'compensating') \
                 AND task_id IS NULL AND updated_at < $1 ORDER BY updated_at LIMIT $2"
            ))
            .bind(before_ms)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
            rows.iter().map(saga_from_row).collect()
        }

        pub async fn cleanup_sagas(conn: &mut $conn, before_ms: i64) -> Result<u64, StoreError> {
            let done = sqlx::query(
                "DELETE FROM saga WHERE status IN ('completed', 'compensated', 'failed') \
                 AND created_at < $1",
            )
            .bind(before_ms)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected())
        }

        pub async fn saga_counts(conn: &mut $conn) -> Result<SagaCounts, StoreError> {
            let by_status: Vec<(String, i64)> =
                sqlx::query_as("SELECT status, COUNT(*) FROM saga GROUP BY status ORDER BY status")
                    .fetch_all(&mut *conn)
                    .await?;
            let oldest_created_at: Option<i64> = sqlx::query_scalar("SELECT MIN(created_at) FROM saga")
                .fetch_one(&mut *conn)
                .await?;
            Ok(SagaCounts {
                by_status,
                oldest_created_at,
            })
        }

        /// Withdraws what the saga's enrollment added: its detail rows, their seats and the
        /// inscription when the saga created it and nothing else remains in it. Locks the
        /// inscription, then the groups in sorted order, as enrollments do.
        pub async fn withdraw(conn: &mut $conn, saga: &Saga) -> Result<(), StoreError> {
            let Some(codigo_inscripcion) = &saga.codigo_inscripcion else {
                return Ok(());
            };
            sqlx::query(concat!(
                "SELECT codigo_inscripcion FROM inscripcion WHERE codigo_inscripcion = $1 ",
                $lock
            ))
            .bind(codigo_inscripcion)
            .fetch_optional(&mut *conn)
            .await?;
            let mut grupos = saga.added_grupos.clone();
            grupos.sort();
            for grupo in &grupos {
                let deleted = sqlx::query(
                    "DELETE FROM detalle_inscripcion WHERE codigo_inscripcion = $1 \
                     AND codigo_grupo = $2",
                )
                .bind(codigo_inscripcion)
                .bind(grupo)
                .execute(&mut *conn)
                .await?;
                if deleted.rows_affected() > 0 {
                    sqlx::query(
                        "UPDATE grupo SET inscritos_actuales = inscritos_actuales - 1 \
                         WHERE codigo_grupo = $1",
                    )
                    .bind(grupo)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            if saga.created_inscripcion {
                sqlx::query(
                    "DELETE FROM inscripcion WHERE codigo_inscripcion = $1 AND NOT EXISTS \
                     (SELECT 1 FROM detalle_inscripcion WHERE codigo_inscripcion = $1)",
                )
                .bind(codigo_inscripcion)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }
    };
}
pub(crate) use resilience_queries;
