//! The PostgreSQL store: one connection pool for reads and writes, any number of processes on
//! one database.
//!
//! Every write transaction runs at READ COMMITTED and takes row locks in one order: a job row,
//! then an inscription row, then group rows sorted by `codigo_grupo`. Period writes first lock
//! the `periodo_academico` table against other period writes. The SQLite store gets the same
//! serialisation from its database-wide write lock.

mod audit;
mod batch;
mod catalog;
mod convert;
mod enqueue;
mod historial;
mod jobs;
mod reads;
pub(crate) mod resilience;
mod tx;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use time::Date;

use self::tx::PgTx;
use super::sql;
use super::{
    Backend, BatchOutcome, BatchStep, EnqueueRequest, JobWrite, PoolStats, QueueDepth, SagaFor,
    StepFinish, Store, StoreError,
};
use crate::audit::{AuditEvent, AuditFilter, AuditRecord};
use crate::domain::catalog::{Catalog, CatalogKeys, LoadReport};
use crate::domain::enrollment::{
    EnrollError, EnrollMode, EnrollmentOutcome, EnrollmentRequest, EnrollmentRules, enroll,
};
use crate::domain::error::{DomainError, ErrorCode};
use crate::domain::historial::{
    HistorialCompleto, HistorialQuery, HistorialRecord, HistorialUpdate, NewHistorial,
};
use crate::domain::model::{Inscripcion, PERIODO_ACTIVO, Periodo};
use crate::domain::views::{
    EnrollmentStatistics, InscripcionConGrupos, InscripcionFull, MateriaRef, PeriodoUpdate,
};
use crate::idempotency::{Claim, NewRecord};
use crate::jobs::model::{CancelOutcome, Job, JobCounts, JobKind, JobUpdate, NewJob, TaskRef};
use crate::saga::model::{Saga, SagaCounts, SagaQuery};

/// Connection settings for the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub url: String,
    pub pool_max: u32,
    /// How long a caller waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// How long the server lets one statement run, lock waits included, before cancelling
    /// it. Zero disables the limit.
    pub statement_timeout: Duration,
}

/// Serialises transactions that write `periodo_academico`, so that the one-ACTIVO check and
/// read-modify-write updates see each other's results. The mode conflicts with itself and
/// with plain writes to the table. It does not conflict with the ROW SHARE lock that the
/// foreign-key check of an `inscripcion` insert takes, so enrollments do not wait for it
/// (checked on PostgreSQL 15).
const LOCK_PERIODOS: &str = "LOCK TABLE periodo_academico IN SHARE ROW EXCLUSIVE MODE";

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to an existing database and applies the migrations. Concurrent callers are
    /// safe: sqlx's migrator holds a PostgreSQL advisory lock while it migrates, so the others
    /// wait and then find the migrations applied.
    pub async fn connect(settings: &PgSettings) -> Result<Self, StoreError> {
        let statement_timeout_ms = settings.statement_timeout.as_millis();
        let options = PgConnectOptions::from_str(&settings.url)?
            .application_name("registrar")
            .options([("statement_timeout", statement_timeout_ms)]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.pool_max.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Opens a READ COMMITTED transaction, whatever the server's default isolation is: the
    /// locking above relies on each statement seeing rows that others committed before it.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await?)
    }

    async fn begin_period_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(LOCK_PERIODOS).execute(&mut *tx).await?;
        Ok(tx)
    }
}

/// Commits on success; on failure the dropped transaction rolls back.
async fn finish<T>(
    tx: Transaction<'static, Postgres>,
    result: Result<T, EnrollError>,
) -> Result<T, EnrollError> {
    let value = result?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(value)
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn enroll_sync(
        &self,
        request: &EnrollmentRequest,
        rules: &EnrollmentRules,
        today: Date,
        saga: Option<SagaFor<'_>>,
    ) -> Result<EnrollmentOutcome, EnrollError> {
        let mut tx = self.begin().await?;
        let mut etx = PgTx { conn: &mut tx };
        let result = enroll(&mut etx, request, &EnrollMode::RejectExisting, rules, today).await;
        if let (Ok(outcome), Some(saga_for)) = (&result, saga) {
            self::resilience::insert_saga(&mut tx, &saga_for(outcome)).await?;
        }
        finish(tx, result).await
    }

    async fn add_group(
        &self,
        codigo_inscripcion: &str,
        codigo_grupo: &str,
        rules: &EnrollmentRules,
        today: Date,
        saga: Option<SagaFor<'_>>,
    ) -> Result<EnrollmentOutcome, EnrollError> {
        let mut tx = self.begin().await?;
        // The enrollment routine locks the inscription; a delete committed before that lock
        // makes it report the inscription as not found.
        let inscripcion = self::reads::inscripcion_row(&mut tx, codigo_inscripcion)
            .await?
            .ok_or_else(|| DomainError::inscripcion_not_found(codigo_inscripcion))?;
        let request = EnrollmentRequest {
            registro_academico: inscripcion.registro_academico,
            codigo_periodo: inscripcion.codigo_periodo,
            grupos: vec![codigo_grupo.to_owned()],
        };
        let mode = EnrollMode::AddToInscripcion {
            codigo_inscripcion: codigo_inscripcion.to_owned(),
        };
        let mut etx = PgTx { conn: &mut tx };
        let result = enroll(&mut etx, &request, &mode, rules, today).await;
        if let (Ok(outcome), Some(saga_for)) = (&result, saga) {
            self::resilience::insert_saga(&mut tx, &saga_for(outcome)).await?;
        }
        finish(tx, result).await
    }

    async fn drop_group(
        &self,
        codigo_inscripcion: &str,
        codigo_grupo: &str,
    ) -> Result<Inscripcion, EnrollError> {
        let mut tx = self.begin().await?;
        let result = async {
            let inscripcion = self::tx::lock_inscripcion_row(&mut tx, codigo_inscripcion)
                .await?
                .ok_or_else(|| DomainError::detalle_not_found(codigo_inscripcion, codigo_grupo))?;
            let periodo = sqlx::query(self::tx::SELECT_PERIODO_FOR_SHARE)
                .bind(&inscripcion.codigo_periodo)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::from)?
                .map(|r| self::convert::periodo_from_row(&r))
                .transpose()?;
            if let Some(periodo) = periodo.filter(|p| !p.is_active()) {
                return Err(DomainError::periodo_inactivo(
                    &periodo.codigo_periodo,
                    periodo.estado.as_deref(),
                )
                .into());
            }
            let deleted = sqlx::query(sql::DELETE_DETALLE)
                .bind(codigo_inscripcion)
                .bind(codigo_grupo)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            if deleted.rows_affected() == 0 {
                return Err(
                    DomainError::detalle_not_found(codigo_inscripcion, codigo_grupo).into(),
                );
            }
            // The update locks the one group row, after the inscription row, which keeps the
            // lock order.
            sqlx::query(sql::RELEASE_SEAT)
                .bind(codigo_grupo)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            Ok(inscripcion)
        }
        .await;
        finish(tx, result).await
    }

    async fn delete_inscripcion(
        &self,
        codigo_inscripcion: &str,
    ) -> Result<Inscripcion, EnrollError> {
        let mut tx = self.begin().await?;
        let result = async {
            let inscripcion = self::tx::lock_inscripcion_row(&mut tx, codigo_inscripcion)
                .await?
                .ok_or_else(|| DomainError::inscripcion_not_found(codigo_inscripcion))?;
            // One UPDATE over several groups would lock them in plan order, which could
            // deadlock with an enrollment that locks them in sorted order.
            self::tx::lock_inscripcion_groups(&mut tx, codigo_inscripcion).await?;
            sqlx::query(sql::RELEASE_INSCRIPCION_SEATS)
                .bind(codigo_inscripcion)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            sqlx::query(sql::DELETE_INSCRIPCION_DETALLES)
                .bind(codigo_inscripcion)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            sqlx::query(sql::DELETE_INSCRIPCION)
                .bind(codigo_inscripcion)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            Ok(inscripcion)
        }
        .await;
        finish(tx, result).await
    }

    async fn update_inscripcion(
        &self,
        codigo_inscripcion: &str,
        fecha_inscripcion: Date,
    ) -> Result<(), EnrollError> {
        let mut tx = self.begin().await?;
        let result = async {
            let inscripcion = self::tx::lock_inscripcion_row(&mut tx, codigo_inscripcion)
                .await?
                .ok_or_else(|| DomainError::inscripcion_not_found(codigo_inscripcion))?;
            if let Some(periodo) =
                self::reads::periodo_row(&mut tx, &inscripcion.codigo_periodo).await?
            {
                crate::domain::periodo::check_fecha_in_periodo(&periodo, fecha_inscripcion)?;
            }
            sqlx::query(sql::UPDATE_FECHA_INSCRIPCION)
                .bind(fecha_inscripcion)
                .bind(codigo_inscripcion)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            Ok(())
        }
        .await;
        finish(tx, result).await
    }

    async fn inscripcion(
        &self,
        codigo_inscripcion: &str,
    ) -> Result<Option<InscripcionFull>, StoreError> {
        self.inscripcion_full(codigo_inscripcion).await
    }

    async fn inscripciones_by_student(
        &self,
        registro_academico: &str,
    ) -> Result<Vec<InscripcionConGrupos>, StoreError> {
        self.student_inscripciones(registro_academico).await
    }

    async fn inscripciones_by_period(
        &self,
        codigo_periodo: &str,
    ) -> Result<Vec<Inscripcion>, StoreError> {
        self.period_inscripciones(codigo_periodo).await
    }

    async fn enrollment_statistics(&self) -> Result<EnrollmentStatistics, StoreError> {
        self.statistics().await
    }

    async fn create_periodo(&self, periodo: &Periodo) -> Result<Periodo, EnrollError> {
        let mut tx = self.begin_period_write().await?;
        let result = async {
            if self::reads::periodo_row(&mut tx, &periodo.codigo_periodo)
                .await?
                .is_some()
            {
                return Err(duplicate_periodo(&periodo.codigo_periodo).into());
            }
            if periodo.is_active() {
                reject_second_active(&mut tx, &periodo.codigo_periodo).await?;
            }
            sqlx::query(sql::INSERT_PERIODO)
                .bind(&periodo.codigo_periodo)
                .bind(&periodo.semestre)
                .bind(periodo.fecha_inicio)
                .bind(periodo.fecha_fin)
                .bind(&periodo.estado)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            Ok(periodo.clone())
        }
        .await;
        finish(tx, result).await
    }

    async fn list_periodos(&self) -> Result<Vec<Periodo>, StoreError> {
        self.all_periodos().await
    }

    async fn periodo(&self, codigo_periodo: &str) -> Result<Option<Periodo>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self::reads::periodo_row(&mut conn, codigo_periodo).await
    }

    async fn active_periodo(&self) -> Result<Option<Periodo>, StoreError> {
        self.find_active_periodo().await
    }

    async fn update_periodo(
        &self,
        codigo_periodo: &str,
        update: &PeriodoUpdate,
    ) -> Result<Periodo, EnrollError> {
        let mut tx = self.begin_period_write().await?;
        let result = async {
            let current = self::reads::periodo_row(&mut tx, codigo_periodo)
                .await?
                .ok_or_else(|| DomainError::periodo_not_found(codigo_periodo))?;
            let updated = crate::domain::periodo::apply_update(current, update)?;
            if updated.is_active() {
                reject_second_active(&mut tx, codigo_periodo).await?;
            }
            sqlx::query(sql::UPDATE_PERIODO)
                .bind(&updated.semestre)
                .bind(updated.fecha_inicio)
                .bind(updated.fecha_fin)
                .bind(&updated.estado)
                .bind(codigo_periodo)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            Ok(updated)
        }
        .await;
        finish(tx, result).await
    }

    async fn activate_periodo(&self, codigo_periodo: &str) -> Result<Periodo, EnrollError> {
        let mut tx = self.begin_period_write().await?;
        let result = async {
            let mut periodo = self::reads::periodo_row(&mut tx, codigo_periodo)
                .await?
                .ok_or_else(|| DomainError::periodo_not_found(codigo_periodo))?;
            // The partial unique index allows one ACTIVO row at any moment, even inside a
            // transaction, so the other period is closed first.
            sqlx::query(sql::CLOSE_OTHER_ACTIVE_PERIODO)
                .bind(codigo_periodo)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            sqlx::query(sql::ACTIVATE_PERIODO)
                .bind(codigo_periodo)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            periodo.estado = Some(PERIODO_ACTIVO.to_owned());
            Ok(periodo)
        }
        .await;
        finish(tx, result).await
    }

    async fn close_periodo(&self, codigo_periodo: &str) -> Result<Periodo, EnrollError> {
        self.set_periodo_cerrado(codigo_periodo).await
    }

    async fn create_historial(
        &self,
        new: &NewHistorial,
        today: Date,
    ) -> Result<HistorialRecord, EnrollError> {
        self.insert_historial(new, today).await
    }

    async fn historial(&self, id_historial: i64) -> Result<Option<HistorialCompleto>, StoreError> {
        self.historial_completo(id_historial).await
    }

    async fn historial_records(
        &self,
        query: HistorialQuery<'_>,
    ) -> Result<Vec<HistorialRecord>, StoreError> {
        self.select_historial(query).await
    }

    async fn update_historial(
        &self,
        id_historial: i64,
        update: &HistorialUpdate,
    ) -> Result<HistorialRecord, EnrollError> {
        self.change_historial(id_historial, update).await
    }

    async fn delete_historial(&self, id_historial: i64) -> Result<(), EnrollError> {
        self.remove_historial(id_historial).await
    }

    async fn materia(&self, sigla: &str) -> Result<Option<MateriaRef>, StoreError> {
        self.find_materia(sigla).await
    }

    async fn insert_missing(&self, catalog: &Catalog) -> Result<LoadReport, StoreError> {
        let mut tx = self.begin().await?;
        let report = self::catalog::load(&mut tx, catalog, &sql::KEEP_EXISTING).await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn upsert_catalog(&self, catalog: &Catalog) -> Result<LoadReport, StoreError> {
        let mut tx = self.begin().await?;
        let report = self::catalog::load(&mut tx, catalog, &sql::UPSERT).await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn catalog_keys(&self) -> Result<CatalogKeys, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(sql::SELECT_CATALOG_KEYS)
            .fetch_all(&self.pool)
            .await?;
        let pairs: Vec<(String, String)> = sqlx::query_as(sql::SELECT_PRERREQUISITOS)
            .fetch_all(&self.pool)
            .await?;
        let mut keys = super::catalog_keys_from_rows(rows);
        keys.prerrequisitos = super::prerrequisitos_from_rows(pairs);
        let held = sqlx::query_as(sql::SELECT_HELD_GRUPOS)
            .fetch_all(&self.pool)
            .await?;
        keys.held_grupos = super::held_grupos_from_rows(held);
        let horarios: Vec<(String, Vec<String>, time::Time, time::Time)> =
            sqlx::query_as(sql::SELECT_HELD_HORARIOS)
                .fetch_all(&self.pool)
                .await?;
        for (codigo, dias_semana, hora_inicio, hora_fin) in horarios {
            let row = crate::domain::catalog::HorarioRow {
                codigo_horario: codigo.clone(),
                dias_semana,
                hora_inicio,
                hora_fin,
            };
            keys.held_horarios.insert(codigo, row);
        }
        Ok(keys)
    }

    async fn enqueue(&self, jobs: &[NewJob]) -> Result<(), StoreError> {
        self.insert_jobs(jobs).await
    }

    async fn claim_jobs(
        &self,
        owner: &str,
        limit: i64,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Job>, StoreError> {
        self.claim(owner, limit, lease_ms, now_ms).await
    }

    async fn renew_leases(
        &self,
        task_ids: &[String],
        owner: &str,
        until_ms: i64,
    ) -> Result<u64, StoreError> {
        self.renew(task_ids, owner, until_ms).await
    }

    async fn run_enrollment_batch(
        &self,
        owner: &str,
        steps: &[BatchStep<'_>],
        rules: &EnrollmentRules,
        today: Date,
        now_ms: i64,
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        self.enrollment_batch(owner, steps, rules, today, now_ms)
            .await
    }

    async fn run_enrollment_step(
        &self,
        task_id: &str,
        owner: &str,
        request: &EnrollmentRequest,
        rules: &EnrollmentRules,
        today: Date,
        now_ms: i64,
        finish: StepFinish<'_>,
    ) -> Result<Option<Result<EnrollmentOutcome, DomainError>>, StoreError> {
        self.enrollment_step(task_id, owner, request, rules, today, now_ms, finish)
            .await
    }

    async fn update_job(
        &self,
        task_id: &str,
        owner: &str,
        update: &JobUpdate,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self::jobs::write_update(&mut conn, task_id, owner, update, now_ms).await
    }

    async fn schedule_retry(
        &self,
        task_id: &str,
        owner: &str,
        run_at_ms: i64,
        meta: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        self.retry_later(task_id, owner, run_at_ms, meta).await
    }

    async fn listen_for_jobs(
        &self,
        wake: std::sync::Arc<tokio::sync::Notify>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        self.listen(wake, shutdown).await;
    }

    async fn release_jobs(&self, owner: &str) -> Result<u64, StoreError> {
        self.release(owner).await
    }

    async fn cancel_job(&self, task_id: &str, now_ms: i64) -> Result<CancelOutcome, StoreError> {
        self.cancel(task_id, now_ms).await
    }

    async fn find_task(
        &self,
        id: &str,
        expired_before_ms: i64,
    ) -> Result<Option<TaskRef>, StoreError> {
        self.lookup_task(id, expired_before_ms).await
    }

    async fn find_tasks(
        &self,
        ids: &[String],
        expired_before_ms: i64,
    ) -> Result<Vec<Option<TaskRef>>, StoreError> {
        // Planned on every call (`persistent(false)`): the job tables grow from empty during a
        // rush, and a cached generic plan made while they were small scans them whole on
        // every status poll until the next ANALYZE.
        let jobs = sqlx::query(sql::SELECT_JOBS_ANY)
            .persistent(false)
            .bind(ids)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(self::convert::job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut views = Vec::new();
        for row in sqlx::query(sql::SELECT_VIEW_JOBS_ANY)
            .persistent(false)
            .bind(ids)
            .fetch_all(&self.pool)
            .await?
        {
            use sqlx::Row;
            let job = self::convert::job_from_row(&row)?;
            views.push((row.try_get("view_id")?, row.try_get("view_grupo")?, job));
        }
        Ok(super::assemble_tasks(ids, jobs, views, expired_before_ms))
    }

    async fn job_counts(&self) -> Result<JobCounts, StoreError> {
        self.count_jobs().await
    }

    async fn purge_finished_jobs(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.purge(before_ms).await
    }
    async fn enqueue_idempotent(&self, request: &EnqueueRequest) -> Result<Claim, StoreError> {
        let mut tx = self.begin().await?;
        let claim = self::enqueue::write_one(&mut tx, request).await?;
        if claim == Claim::Fresh {
            self::jobs::notify_jobs(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(claim)
    }

    /// Sends one notification for the whole batch, delivered at commit.
    async fn enqueue_idempotent_batch(
        &self,
        requests: &[EnqueueRequest],
    ) -> Result<Vec<Claim>, StoreError> {
        let mut tx = self.begin().await?;
        let claims = self::enqueue::write_batch(&mut tx, requests).await?;
        if claims.contains(&Claim::Fresh) {
            self::jobs::notify_jobs(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(claims)
    }

    async fn claim_idempotency(
        &self,
        record: &NewRecord,
        pending_timeout_ms: i64,
    ) -> Result<Claim, StoreError> {
        let mut tx = self.begin().await?;
        let claim = self::resilience::claim_key(&mut tx, record, pending_timeout_ms).await?;
        tx.commit().await?;
        Ok(claim)
    }

    async fn complete_idempotency(
        &self,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        self::resilience::complete_key(&mut tx, key, status, body).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release_idempotency(&self, key: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        self::resilience::release_key(&mut tx, key).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn invalidate_idempotency(
        &self,
        registro_academico: &str,
        codigo_periodo: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin().await?;
        let keys =
            self::resilience::invalidate_keys(&mut tx, registro_academico, codigo_periodo).await?;
        tx.commit().await?;
        Ok(keys)
    }

    async fn delete_idempotency(&self, key: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let deleted = self::resilience::delete_key(&mut tx, key).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn idempotency_count(&self, now_ms: i64) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self::resilience::count_keys(&mut conn, now_ms).await
    }

    async fn purge_idempotency(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let purged = self::resilience::purge_keys(&mut tx, now_ms).await?;
        tx.commit().await?;
        Ok(purged)
    }

    async fn saga_for_task(&self, task_id: &str) -> Result<Option<Saga>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self::resilience::saga_of_task_unlocked(&mut conn, task_id).await
    }

    async fn save_saga(&self, saga: &Saga) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        self::resilience::update_saga(&mut tx, saga).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish_saga(
        &self,
        saga: &Saga,
        withdraw: bool,
        job: Option<JobWrite<'_>>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        if let Some(job) = &job
            && !self::jobs::write_update(&mut tx, job.task_id, job.owner, job.update, job.now_ms)
                .await?
        {
            return Ok(false);
        }
        let stored = self::resilience::saga_by_id(&mut tx, &saga.saga_id).await?;
        if stored.is_some_and(|s| !s.status.is_finished()) {
            if withdraw {
                self::resilience::withdraw(&mut tx, saga).await?;
            }
            self::resilience::update_saga(&mut tx, saga).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn list_sagas(&self, query: &SagaQuery) -> Result<Vec<Saga>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self::resilience::list_sagas(&mut conn, query).await
    }

    async fn stalled_sagas(&self, before_ms: i64, limit: i64) -> Result<Vec<Saga>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self::resilience::stalled_sagas(&mut conn, before_ms, limit).await
    }

    async fn cleanup_sagas(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let deleted = self::resilience::cleanup_sagas(&mut tx, before_ms).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn saga_counts(&self) -> Result<SagaCounts, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self::resilience::saga_counts(&mut conn).await
    }

    async fn queue_depth_by_kind(&self) -> Result<Vec<(JobKind, QueueDepth)>, StoreError> {
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(sql::SELECT_QUEUE_DEPTH)
            .fetch_all(&self.pool)
            .await?;
        super::queue_depths_from_rows(rows)
    }

    fn pool_stats(&self) -> PoolStats {
        let size = self.pool.size();
        let idle = self.pool.num_idle() as u32;
        PoolStats {
            in_use: size.saturating_sub(idle),
            idle,
            max: self.pool.options().get_max_connections(),
        }
    }

    async fn insert_audit_events(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.insert_audit(events).await
    }

    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        self.list_audit(filter).await
    }
}

fn duplicate_periodo(codigo_periodo: &str) -> DomainError {
    DomainError::new(
        ErrorCode::DuplicateRecord,
        format!("El periodo académico {codigo_periodo} ya existe"),
        json!({ "codigo_periodo": codigo_periodo }),
    )
}

/// Rejects making `codigo_periodo` ACTIVO while another period is: activation goes through
/// the `activar` endpoint, which closes the other period in the same transaction.
async fn reject_second_active(
    tx: &mut Transaction<'static, Postgres>,
    codigo_periodo: &str,
) -> Result<(), EnrollError> {
    let other: Option<String> = sqlx::query_scalar(sql::SELECT_OTHER_ACTIVE_PERIODO)
        .bind(codigo_periodo)
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::from)?;
    match other {
        Some(other) => Err(DomainError::new(
            ErrorCode::DuplicateRecord,
            format!(
                "El periodo {other} ya está ACTIVO; use POST /api/v1/periodos/{codigo_periodo}/activar \
                 para activar este y cerrar aquel"
            ),
            json!({ "codigo_periodo": codigo_periodo, "periodo_activo": other }),
        )
        .into()),
        None => Ok(()),
    }
}
