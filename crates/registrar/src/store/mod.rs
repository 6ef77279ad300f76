//! The system of record. One trait, [`Store`], with an embedded SQLite implementation and a
//! PostgreSQL one, chosen at start-up from the `DATABASE_URL` scheme.

pub(crate) mod audit;
pub mod combiner;
pub mod enqueue;
pub mod error;
pub mod postgres;
pub(crate) mod resilience;
pub(crate) mod snapshot;
pub(crate) mod sql;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use time::Date;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use combiner::EnqueueCombiner;
pub use enqueue::EnqueueRequest;
pub use error::StoreError;

use crate::audit::{AuditEvent, AuditFilter, AuditRecord};
use crate::domain::catalog::{Catalog, CatalogKeys, LoadReport, Prerrequisito};
use crate::domain::enrollment::{
    EnrollError, EnrollmentOutcome, EnrollmentRequest, EnrollmentRules,
};
use crate::domain::error::DomainError;
use crate::domain::historial::{
    HistorialCompleto, HistorialQuery, HistorialRecord, HistorialUpdate, NewHistorial,
};
use crate::domain::model::{Inscripcion, Periodo};
use crate::domain::views::{
    EnrollmentStatistics, InscripcionConGrupos, InscripcionFull, MateriaRef, PeriodoUpdate,
};
use crate::idempotency::{Claim, NewRecord};
use crate::jobs::model::{CancelOutcome, Job, JobCounts, JobKind, JobUpdate, NewJob, TaskRef};
use crate::saga::model::{Saga, SagaCounts, SagaQuery};

/// The database engine behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The jobs waiting to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub waiting: i64,
    /// Creation time of the oldest waiting job, epoch milliseconds.
    pub oldest_created_at_ms: Option<i64>,
}

/// Connections of a store's pools. SQLite counts its write and read pools together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// Decides what a job step writes once its enrollment attempt has run, given the attempt's
/// outcome. It runs inside the enrollment transaction, so the job row and the enrollment
/// commit together.
pub type StepFinish<'a> =
    &'a (dyn Fn(&Result<EnrollmentOutcome, DomainError>) -> StepWrite + Send + Sync);

/// What a job step writes with its enrollment: the job update, and the saga that logs the
/// request when there is one.
pub struct StepWrite {
    pub job: JobUpdate,
    pub saga: Option<Saga>,
}

/// A committed enrollment, or the business rule that rejected it.
pub type EnrollmentResult = Result<EnrollmentOutcome, DomainError>;

/// One leased inscription job of an enrollment batch.
pub struct BatchStep<'a> {
    pub task_id: &'a str,
    pub request: &'a EnrollmentRequest,
    pub finish: StepFinish<'a>,
}

/// What an enrollment batch did with one of its jobs.
#[derive(Debug)]
pub enum BatchOutcome {
    /// The enrollment or its rejection, the job update and the saga committed with the batch.
    Done(EnrollmentResult),
    /// The worker no longer holds the job's lease, so nothing was written for it.
    LeaseLost,
    /// A saga is already logged for the job: its enrollment committed in an earlier run.
    /// Nothing was written, and the job must resume its saga on its own.
    SagaLogged,
    /// A statement of the batch failed for a reason that a retry of the whole batch would
    /// not cure, so the batch was rolled back and the job must run on its own.
    Deferred,
    /// A non-transient store error; the job's writes were rolled back.
    Failed(StoreError),
}

/// Builds the saga of a synchronous enrollment that committed; it is written in the same
/// transaction.
pub type SagaFor<'a> = &'a (dyn Fn(&EnrollmentOutcome) -> Saga + Send + Sync);

/// A job update to write only while `owner` holds the job's lease.
pub struct JobWrite<'a> {
    pub task_id: &'a str,
    pub owner: &'a str,
    pub update: &'a JobUpdate,
    pub now_ms: i64,
}

/// Every read and write the service makes. Methods that change enrollment run as one
/// transaction each; a returned error means nothing was written.
#[async_trait]
pub trait Store: Send + Sync {
    fn backend(&self) -> Backend;

    /// Runs a trivial query, for health checks.
    async fn ping(&self) -> Result<(), StoreError>;

    // Enrollment.

    /// Enrolls through the synchronous endpoint: an existing inscription is rejected. When
    /// `saga` is given, the saga it builds from the outcome is written in the same
    /// transaction.
    async fn enroll_sync(
        &self,
        request: &EnrollmentRequest,
        rules: &EnrollmentRules,
        today: Date,
        saga: Option<SagaFor<'_>>,
    ) -> Result<EnrollmentOutcome, EnrollError>;

    /// Adds one group to an inscription. When `saga` is given, the saga it builds from the
    /// outcome is written in the same transaction.
    async fn add_group(
        &self,
        codigo_inscripcion: &str,
        codigo_grupo: &str,
        rules: &EnrollmentRules,
        today: Date,
        saga: Option<SagaFor<'_>>,
    ) -> Result<EnrollmentOutcome, EnrollError>;

    /// Removes one group from an inscription and frees its seat. The period must be active.
    async fn drop_group(
        &self,
        codigo_inscripcion: &str,
        codigo_grupo: &str,
    ) -> Result<Inscripcion, EnrollError>;

    /// Deletes an inscription with its details and frees every seat it held.
    async fn delete_inscripcion(
        &self,
        codigo_inscripcion: &str,
    ) -> Result<Inscripcion, EnrollError>;

    /// Changes `fecha_inscripcion`, which must lie within the period's dates.
    async fn update_inscripcion(
        &self,
        codigo_inscripcion: &str,
        fecha_inscripcion: Date,
    ) -> Result<(), EnrollError>;

    async fn inscripcion(
        &self,
        codigo_inscripcion: &str,
    ) -> Result<Option<InscripcionFull>, StoreError>;

    /// Returns the student's inscriptions, newest first, with each group expanded.
    async fn inscripciones_by_student(
        &self,
        registro_academico: &str,
    ) -> Result<Vec<InscripcionConGrupos>, StoreError>;

    async fn inscripciones_by_period(
        &self,
        codigo_periodo: &str,
    ) -> Result<Vec<Inscripcion>, StoreError>;

    async fn enrollment_statistics(&self) -> Result<EnrollmentStatistics, StoreError>;

    // Periods.

    /// Creates a period; an existing code is `DUPLICATE_RECORD`, and a second `ACTIVO`
    /// period is rejected.
    async fn create_periodo(&self, periodo: &Periodo) -> Result<Periodo, EnrollError>;
    async fn list_periodos(&self) -> Result<Vec<Periodo>, StoreError>;
    async fn periodo(&self, codigo_periodo: &str) -> Result<Option<Periodo>, StoreError>;
    async fn active_periodo(&self) -> Result<Option<Periodo>, StoreError>;
    async fn update_periodo(
        &self,
        codigo_periodo: &str,
        update: &PeriodoUpdate,
    ) -> Result<Periodo, EnrollError>;
    /// Makes the period `ACTIVO` and closes the previously active one, in one transaction.
    async fn activate_periodo(&self, codigo_periodo: &str) -> Result<Periodo, EnrollError>;
    /// Sets the period's estado to `CERRADO`. It writes no historial rows.
    async fn close_periodo(&self, codigo_periodo: &str) -> Result<Periodo, EnrollError>;

    // Academic record.

    /// Inserts a checked row dated `today`. The student, materia and period must exist, in
    /// that order, and (student, materia, period) must have no row yet
    /// (`HISTORIAL_DUPLICADO`, also when a concurrent create wins).
    async fn create_historial(
        &self,
        new: &NewHistorial,
        today: Date,
    ) -> Result<HistorialRecord, EnrollError>;

    async fn historial(&self, id_historial: i64) -> Result<Option<HistorialCompleto>, StoreError>;

    async fn historial_records(
        &self,
        query: HistorialQuery<'_>,
    ) -> Result<Vec<HistorialRecord>, StoreError>;

    /// Sets the present fields of a row: `HISTORIAL_NOT_FOUND` first, then the checks of
    /// `estado` and `nota_final`.
    async fn update_historial(
        &self,
        id_historial: i64,
        update: &HistorialUpdate,
    ) -> Result<HistorialRecord, EnrollError>;

    async fn delete_historial(&self, id_historial: i64) -> Result<(), EnrollError>;

    async fn materia(&self, sigla: &str) -> Result<Option<MateriaRef>, StoreError>;

    // Catalog.

    /// Inserts every row of the catalog that does not exist yet, leaving existing rows and
    /// seat counters untouched, in one transaction.
    async fn insert_missing(&self, catalog: &Catalog) -> Result<LoadReport, StoreError>;

    /// Inserts new rows and updates rows whose values differ, in one transaction. Seat
    /// counters and passwords are never changed.
    async fn upsert_catalog(&self, catalog: &Catalog) -> Result<LoadReport, StoreError>;

    /// Returns the keys an import may refer to, and the active period.
    async fn catalog_keys(&self) -> Result<CatalogKeys, StoreError>;

    // Jobs.

    /// Inserts jobs and their group views in one transaction.
    async fn enqueue(&self, jobs: &[NewJob]) -> Result<(), StoreError>;

    /// Claims up to `limit` runnable jobs for `owner`: queued jobs whose `run_at` has come,
    /// and started jobs whose lease expired because their worker died. Sets them `STARTED`,
    /// counts the attempt and leases them until `now_ms + lease_ms`.
    async fn claim_jobs(
        &self,
        owner: &str,
        limit: i64,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Job>, StoreError>;

    /// Extends the lease of the owner's running jobs; returns how many it still holds.
    async fn renew_leases(
        &self,
        task_ids: &[String],
        owner: &str,
        until_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Runs one enrollment for a leased job and writes `finish(outcome)` to the job in the
    /// same transaction. A rejected enrollment rolls back to a savepoint first. Returns
    /// `Ok(None)` when the lease was lost (the job was cancelled or taken over), in which
    /// case the enrollment is rolled back too.
    #[expect(
        clippy::too_many_arguments,
        reason = "each argument is a distinct input of one transaction"
    )]
    async fn run_enrollment_step(
        &self,
        task_id: &str,
        owner: &str,
        request: &EnrollmentRequest,
        rules: &EnrollmentRules,
        today: Date,
        now_ms: i64,
        finish: StepFinish<'_>,
    ) -> Result<Option<Result<EnrollmentOutcome, DomainError>>, StoreError>;

    /// Runs the enrollment steps of several leased inscription jobs in one transaction, in
    /// the order given, and returns one outcome per step. A rejected request writes nothing
    /// but its job update and saga, and a job whose lease was lost writes nothing. An `Err`
    /// means nothing was written for any job: a transient error aborts the whole batch.
    async fn run_enrollment_batch(
        &self,
        owner: &str,
        steps: &[BatchStep<'_>],
        rules: &EnrollmentRules,
        today: Date,
        now_ms: i64,
    ) -> Result<Vec<BatchOutcome>, StoreError>;

    /// Writes a job update if `owner` still holds the lease; returns whether it did.
    async fn update_job(
        &self,
        task_id: &str,
        owner: &str,
        update: &JobUpdate,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Puts a leased job back in the queue to run at `run_at_ms`, in state `RETRY`.
    async fn schedule_retry(
        &self,
        task_id: &str,
        owner: &str,
        run_at_ms: i64,
        meta: &serde_json::Value,
    ) -> Result<bool, StoreError>;

    /// Wakes `wake` whenever another process enqueues a job, until `shutdown`. Backends
    /// without cross-process notifications return at once and rely on the workers' poll.
    async fn listen_for_jobs(&self, wake: Arc<Notify>, shutdown: CancellationToken);

    /// Returns the owner's unfinished jobs to the queue, for a graceful shutdown.
    async fn release_jobs(&self, owner: &str) -> Result<u64, StoreError>;

    /// Revokes a job that has not finished. A running job's enrollment is then rolled back,
    /// because its worker loses the lease.
    async fn cancel_job(&self, task_id: &str, now_ms: i64) -> Result<CancelOutcome, StoreError>;

    /// Resolves a task id or a group view id. Jobs finished before `expired_before_ms` count
    /// as unknown.
    async fn find_task(
        &self,
        id: &str,
        expired_before_ms: i64,
    ) -> Result<Option<TaskRef>, StoreError>;

    /// Resolves many task or group view ids with one query per kind of id. The result
    /// follows the order of `ids`, with `None` for unknown or expired ids.
    async fn find_tasks(
        &self,
        ids: &[String],
        expired_before_ms: i64,
    ) -> Result<Vec<Option<TaskRef>>, StoreError>;

    async fn job_counts(&self) -> Result<JobCounts, StoreError>;

    /// Counts the jobs waiting to run (`PENDING` or `RETRY`) of each kind that has any, and
    /// finds the oldest one's creation time.
    async fn queue_depth_by_kind(&self) -> Result<Vec<(JobKind, QueueDepth)>, StoreError>;

    /// Counts every waiting job and finds the oldest one's creation time.
    async fn queue_depth(&self) -> Result<QueueDepth, StoreError> {
        let by_kind = self.queue_depth_by_kind().await?;
        let mut total = QueueDepth::default();
        for (_, depth) in by_kind {
            total.waiting += depth.waiting;
            total.oldest_created_at_ms =
                match (total.oldest_created_at_ms, depth.oldest_created_at_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
        }
        Ok(total)
    }

    /// Returns the connection pool's current use, without waiting.
    fn pool_stats(&self) -> PoolStats;

    /// Deletes jobs that finished before `before_ms`; returns how many.
    async fn purge_finished_jobs(&self, before_ms: i64) -> Result<u64, StoreError>;

    // Idempotency.

    /// Queues the request's job with its idempotency record and audit event in one
    /// transaction, unless a live record owns the key. Then nothing is written, and the claim
    /// selects the response.
    async fn enqueue_idempotent(&self, request: &EnqueueRequest) -> Result<Claim, StoreError>;

    /// Writes several enqueue requests in one transaction, as [`Store::enqueue_idempotent`]
    /// writes one, and returns one claim per request, in request order. Requests with the
    /// same key get the claims that sequential requests would get, in request order. An
    /// `Err` means nothing was written for any request.
    async fn enqueue_idempotent_batch(
        &self,
        requests: &[EnqueueRequest],
    ) -> Result<Vec<Claim>, StoreError>;

    /// Opens a `pending` record for a synchronous request, unless a live record holds the
    /// key.
    async fn claim_idempotency(
        &self,
        record: &NewRecord,
        pending_timeout_ms: i64,
    ) -> Result<Claim, StoreError>;

    /// Stores a synchronous request's response and marks its record finished.
    async fn complete_idempotency(
        &self,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError>;

    /// Drops a synchronous request's pending record, so its key runs afresh.
    async fn release_idempotency(&self, key: &str) -> Result<(), StoreError>;

    /// Deletes every record of a (student, period) and returns their keys.
    async fn invalidate_idempotency(
        &self,
        registro_academico: &str,
        codigo_periodo: &str,
    ) -> Result<Vec<String>, StoreError>;

    async fn delete_idempotency(&self, key: &str) -> Result<bool, StoreError>;

    /// Counts the records that have not expired at `now_ms`.
    async fn idempotency_count(&self, now_ms: i64) -> Result<i64, StoreError>;

    /// Deletes the records that expired at `now_ms`.
    async fn purge_idempotency(&self, now_ms: i64) -> Result<u64, StoreError>;

    // Sagas.

    async fn saga_for_task(&self, task_id: &str) -> Result<Option<Saga>, StoreError>;

    /// Writes a saga's status and steps.
    async fn save_saga(&self, saga: &Saga) -> Result<(), StoreError>;

    /// Ends a saga in one transaction: withdraws its enrollment when `withdraw` is set,
    /// writes the saga, and writes the job update when `job` is given. A saga that an
    /// earlier run already ended is left as it is. Returns false, writing nothing, when the
    /// job's lease was lost.
    async fn finish_saga(
        &self,
        saga: &Saga,
        withdraw: bool,
        job: Option<JobWrite<'_>>,
    ) -> Result<bool, StoreError>;

    async fn list_sagas(&self, query: &SagaQuery) -> Result<Vec<Saga>, StoreError>;

    /// Unfinished sagas of synchronous requests not written since `before_ms`.
    async fn stalled_sagas(&self, before_ms: i64, limit: i64) -> Result<Vec<Saga>, StoreError>;

    /// Deletes finished sagas created before `before_ms`; returns how many.
    async fn cleanup_sagas(&self, before_ms: i64) -> Result<u64, StoreError>;

    async fn saga_counts(&self) -> Result<SagaCounts, StoreError>;
    // Audit trail.

    /// Stores audit events in one transaction.
    async fn insert_audit_events(&self, events: &[AuditEvent]) -> Result<(), StoreError>;

    /// Lists the events that match `filter`, newest first, at most `filter.limit`.
    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
}

/// Sorts `(table, key)` rows from `SELECT_CATALOG_KEYS` into a [`CatalogKeys`].
pub(crate) fn catalog_keys_from_rows(rows: Vec<(String, String)>) -> CatalogKeys {
    let mut keys = CatalogKeys::default();
    for (table, key) in rows {
        let set = match table.as_str() {
            "carrera" => &mut keys.carreras,
            "materia" => &mut keys.materias,
            "docente" => &mut keys.docentes,
            "aula" => &mut keys.aulas,
            "horario" => &mut keys.horarios,
            "periodo" => &mut keys.periodos,
            "estudiante" => &mut keys.estudiantes,
            _ => {
                keys.active_periodo = Some(key);
                continue;
            }
        };
        set.insert(key);
    }
    keys
}

/// Turns `(sigla_materia, sigla_requerida)` rows into prerequisites.
pub(crate) fn prerrequisitos_from_rows(rows: Vec<(String, String)>) -> Vec<Prerrequisito> {
    rows.into_iter()
        .map(|(sigla_materia, sigla_requerida)| Prerrequisito {
            sigla_materia,
            sigla_requerida,
        })
        .collect()
}

/// Collects the rows of `SELECT_HELD_GRUPOS` by group code.
pub(crate) fn held_grupos_from_rows(
    rows: Vec<(String, String, Option<String>, i64)>,
) -> std::collections::HashMap<String, crate::domain::catalog::HeldGrupo> {
    rows.into_iter()
        .map(
            |(codigo, sigla_materia, codigo_horario, inscritos_actuales)| {
                let held = crate::domain::catalog::HeldGrupo {
                    sigla_materia,
                    codigo_horario,
                    inscritos_actuales,
                };
                (codigo, held)
            },
        )
        .collect()
}

/// Orders the jobs and group views found for `ids` by `ids`, dropping jobs that finished
/// before `expired_before_ms`.
pub(crate) fn assemble_tasks(
    ids: &[String],
    jobs: Vec<Job>,
    views: Vec<(String, String, Job)>,
    expired_before_ms: i64,
) -> Vec<Option<TaskRef>> {
    let mut found: std::collections::HashMap<String, TaskRef> = jobs
        .into_iter()
        .map(|job| (job.task_id.clone(), TaskRef::Job(job)))
        .collect();
    for (view_id, codigo_grupo, job) in views {
        found.insert(view_id, TaskRef::GroupView { job, codigo_grupo });
    }
    ids.iter()
        .map(|id| {
            found.get(id).cloned().filter(|task| {
                let job = match task {
                    TaskRef::Job(job) | TaskRef::GroupView { job, .. } => job,
                };
                job.completed_at.is_none_or(|at| at >= expired_before_ms)
            })
        })
        .collect()
}

/// Turns `(kind, waiting, oldest created_at)` rows from `SELECT_QUEUE_DEPTH` into depths.
pub(crate) fn queue_depths_from_rows(
    rows: Vec<(String, i64, Option<i64>)>,
) -> Result<Vec<(JobKind, QueueDepth)>, StoreError> {
    rows.into_iter()
        .map(|(kind, waiting, oldest_created_at_ms)| {
            let kind = JobKind::parse(&kind).ok_or_else(|| StoreError::corrupt("job", kind))?;
            let depth = QueueDepth {
                waiting,
                oldest_created_at_ms,
            };
            Ok((kind, depth))
        })
        .collect()
}
