//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go through a pool of one connection, so writers in this process queue in the pool
//! (first come, first served) instead of spinning on SQLite's busy handler; reads use a
//! separate pool and never wait for writers. Other processes on the same file (a separate
//! `registrar worker`) wait on the busy timeout.

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
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use time::Date;
use tokio::sync::Semaphore;

use self::tx::SqliteTx;
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

/// Connection settings for the SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteSettings {
    pub url: String,
    pub read_pool_size: u32,
    pub busy_timeout: Duration,
}

#[derive(Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    /// Lets one other writer at a time wait for the write connection, so that an enqueue
    /// waits for at most the transaction running and one other (see [`Self::begin_write`]).
    queue_turn: Arc<Semaphore>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and applies the migrations.
    pub async fn connect(settings: &SqliteSettings) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(&settings.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(settings.busy_timeout);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(settings.read_pool_size.max(1))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            write,
            read,
            queue_turn: Arc::new(Semaphore::new(1)),
        })
    }

    /// Opens a write transaction. The pool's single connection goes to its waiters in turn,
    /// so an enqueue that queued behind every worker's batch would wait for all of them.
    /// Writers other than enqueues therefore queue for the connection one at a time.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        let _turn = self
            .queue_turn
            .acquire()
            .await
            .expect("the semaphore is never closed");
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Takes the write connection outside a transaction, in turn as [`Self::begin_write`] does.
    async fn write_connection(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
        let _turn = self
            .queue_turn
            .acquire()
            .await
            .expect("the semaphore is never closed");
        Ok(self.write.acquire().await?)
    }

    /// Opens a write transaction for enqueues, which skip the turn of [`Self::begin_write`]
    /// because a client waits for each of them.
    async fn begin_enqueue(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Commits on success; on failure the dropped transaction rolls back.
async fn finish<T>(
    tx: Transaction<'static, Sqlite>,
    result: Result<T, EnrollError>,
) -> Result<T, EnrollError> {
    let value = result?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(value)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn enroll_sync(
        &self,
        request: &EnrollmentRequest,
        rules: &EnrollmentRules,
        today: Date,
        saga: Option<SagaFor<'_>>,
    ) -> Result<EnrollmentOutcome, EnrollError> {
        let mut tx = self.begin_write().await?;
        let mut etx = SqliteTx { conn: &mut tx };
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
        let mut tx = self.begin_write().await?;
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
        let mut etx = SqliteTx { conn: &mut tx };
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
        let mut tx = self.begin_write().await?;
        let result = async {
            let inscripcion = self::reads::inscripcion_row(&mut tx, codigo_inscripcion)
                .await?
                .ok_or_else(|| DomainError::detalle_not_found(codigo_inscripcion, codigo_grupo))?;
            let periodo = self::reads::periodo_row(&mut tx, &inscripcion.codigo_periodo).await?;
            if let Some(periodo) = periodo.filter(|p| !p.is_active()) {
                return Err(DomainError::periodo_inactivo(
                    &periodo.codigo_periodo,
                    periodo.estado.as_deref(),
                )
                .into());
            }
            let deleted = sqlx::query(
                "DELETE FROM detalle_inscripcion WHERE codigo_inscripcion = $1 AND codigo_grupo = $2",
            )
            .bind(codigo_inscripcion)
            .bind(codigo_grupo)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            if deleted.rows_affected() == 0 {
                return Err(DomainError::detalle_not_found(codigo_inscripcion, codigo_grupo).into());
            }
            sqlx::query(
                "UPDATE grupo SET inscritos_actuales = inscritos_actuales - 1 WHERE codigo_grupo = $1",
            )
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
        let mut tx = self.begin_write().await?;
        let result = async {
            let inscripcion = self::reads::inscripcion_row(&mut tx, codigo_inscripcion)
                .await?
                .ok_or_else(|| DomainError::inscripcion_not_found(codigo_inscripcion))?;
            sqlx::query(
                "UPDATE grupo SET inscritos_actuales = inscritos_actuales - 1 WHERE codigo_grupo IN \
                 (SELECT codigo_grupo FROM detalle_inscripcion WHERE codigo_inscripcion = $1)",
            )
            .bind(codigo_inscripcion)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            sqlx::query("DELETE FROM detalle_inscripcion WHERE codigo_inscripcion = $1")
                .bind(codigo_inscripcion)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            sqlx::query("DELETE FROM inscripcion WHERE codigo_inscripcion = $1")
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
        let mut tx = self.begin_write().await?;
        let result = async {
            let inscripcion = self::reads::inscripcion_row(&mut tx, codigo_inscripcion)
                .await?
                .ok_or_else(|| DomainError::inscripcion_not_found(codigo_inscripcion))?;
            if let Some(periodo) =
                self::reads::periodo_row(&mut tx, &inscripcion.codigo_periodo).await?
            {
                crate::domain::periodo::check_fecha_in_periodo(&periodo, fecha_inscripcion)?;
            }
            sqlx::query(
                "UPDATE inscripcion SET fecha_inscripcion = $1 WHERE codigo_inscripcion = $2",
            )
            .bind(fecha_inscripcion.to_string())
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
        let mut tx = self.begin_write().await?;
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
            sqlx::query(
                "INSERT INTO periodo_academico (codigo_periodo, semestre, fecha_inicio, fecha_fin, \
                 estado) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&periodo.codigo_periodo)
            .bind(&periodo.semestre)
            .bind(periodo.fecha_inicio.map(|d| d.to_string()))
            .bind(periodo.fecha_fin.map(|d| d.to_string()))
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
        let mut conn = self.read.acquire().await?;
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
        let mut tx = self.begin_write().await?;
        let result = async {
            let current = self::reads::periodo_row(&mut tx, codigo_periodo)
                .await?
                .ok_or_else(|| DomainError::periodo_not_found(codigo_periodo))?;
            let updated = crate::domain::periodo::apply_update(current, update)?;
            if updated.is_active() {
                reject_second_active(&mut tx, codigo_periodo).await?;
            }
            sqlx::query(
                "UPDATE periodo_academico SET semestre = $1, fecha_inicio = $2, fecha_fin = $3, \
                 estado = $4 WHERE codigo_periodo = $5",
            )
            .bind(&updated.semestre)
            .bind(updated.fecha_inicio.map(|d| d.to_string()))
            .bind(updated.fecha_fin.map(|d| d.to_string()))
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
        let mut tx = self.begin_write().await?;
        let result = async {
            let mut periodo = self::reads::periodo_row(&mut tx, codigo_periodo)
                .await?
                .ok_or_else(|| DomainError::periodo_not_found(codigo_periodo))?;
            sqlx::query(
                "UPDATE periodo_academico SET estado = 'CERRADO' \
                 WHERE estado = 'ACTIVO' AND codigo_periodo <> $1",
            )
            .bind(codigo_periodo)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            sqlx::query("UPDATE periodo_academico SET estado = 'ACTIVO' WHERE codigo_periodo = $1")
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
        let mut tx = self.begin_write().await?;
        let report = self::catalog::load(&mut tx, catalog, &sql::KEEP_EXISTING).await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn upsert_catalog(&self, catalog: &Catalog) -> Result<LoadReport, StoreError> {
        let mut tx = self.begin_write().await?;
        let report = self::catalog::load(&mut tx, catalog, &sql::UPSERT).await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn catalog_keys(&self) -> Result<CatalogKeys, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(sql::SELECT_CATALOG_KEYS)
            .fetch_all(&self.read)
            .await?;
        let pairs: Vec<(String, String)> = sqlx::query_as(sql::SELECT_PRERREQUISITOS)
            .fetch_all(&self.read)
            .await?;
        let mut keys = super::catalog_keys_from_rows(rows);
        keys.prerrequisitos = super::prerrequisitos_from_rows(pairs);
        let held = sqlx::query_as(sql::SELECT_HELD_GRUPOS)
            .fetch_all(&self.read)
            .await?;
        keys.held_grupos = super::held_grupos_from_rows(held);
        let horarios: Vec<(String, String, String, String)> =
            sqlx::query_as(sql::SELECT_HELD_HORARIOS)
                .fetch_all(&self.read)
                .await?;
        for (codigo, dias, inicio, fin) in horarios {
            let row = crate::domain::catalog::HorarioRow {
                codigo_horario: codigo.clone(),
                dias_semana: self::convert::parse_days("horario", &dias)?,
                hora_inicio: self::convert::parse_time("horario", &inicio)?,
                hora_fin: self::convert::parse_time("horario", &fin)?,
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
        let mut tx = self.begin_write().await?;
        let written = self::jobs::write_update(&mut tx, task_id, owner, update, now_ms).await?;
        tx.commit().await?;
        Ok(written)
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

    /// SQLite has no notifications between processes: enqueuers in this process wake the
    /// pool directly, and jobs from other processes are found by the poll.
    async fn listen_for_jobs(
        &self,
        _wake: std::sync::Arc<tokio::sync::Notify>,
        _shutdown: tokio_util::sync::CancellationToken,
    ) {
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
        let list = serde_json::to_string(ids).expect("strings serialise");
        let jobs = sqlx::query(sql::SELECT_JOBS_IN_JSON)
            .bind(&list)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(self::convert::job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut views = Vec::new();
        for row in sqlx::query(sql::SELECT_VIEW_JOBS_IN_JSON)
            .bind(&list)
            .fetch_all(&self.read)
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
        let mut tx = self.begin_enqueue().await?;
        let claim = self::enqueue::write_one(&mut tx, request).await?;
        tx.commit().await?;
        Ok(claim)
    }

    async fn enqueue_idempotent_batch(
        &self,
        requests: &[EnqueueRequest],
    ) -> Result<Vec<Claim>, StoreError> {
        let mut tx = self.begin_enqueue().await?;
        let claims = self::enqueue::write_batch(&mut tx, requests).await?;
        tx.commit().await?;
        Ok(claims)
    }

    async fn claim_idempotency(
        &self,
        record: &NewRecord,
        pending_timeout_ms: i64,
    ) -> Result<Claim, StoreError> {
        let mut tx = self.begin_write().await?;
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
        let mut tx = self.begin_write().await?;
        self::resilience::complete_key(&mut tx, key, status, body).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release_idempotency(&self, key: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        self::resilience::release_key(&mut tx, key).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn invalidate_idempotency(
        &self,
        registro_academico: &str,
        codigo_periodo: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin_write().await?;
        let keys =
            self::resilience::invalidate_keys(&mut tx, registro_academico, codigo_periodo).await?;
        tx.commit().await?;
        Ok(keys)
    }

    async fn delete_idempotency(&self, key: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = self::resilience::delete_key(&mut tx, key).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn idempotency_count(&self, now_ms: i64) -> Result<i64, StoreError> {
        let mut conn = self.read.acquire().await?;
        self::resilience::count_keys(&mut conn, now_ms).await
    }

    async fn purge_idempotency(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let purged = self::resilience::purge_keys(&mut tx, now_ms).await?;
        tx.commit().await?;
        Ok(purged)
    }

    async fn saga_for_task(&self, task_id: &str) -> Result<Option<Saga>, StoreError> {
        let mut conn = self.read.acquire().await?;
        self::resilience::saga_of_task_unlocked(&mut conn, task_id).await
    }

    async fn save_saga(&self, saga: &Saga) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
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
        let mut tx = self.begin_write().await?;
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
        let mut conn = self.read.acquire().await?;
        self::resilience::list_sagas(&mut conn, query).await
    }

    async fn stalled_sagas(&self, before_ms: i64, limit: i64) -> Result<Vec<Saga>, StoreError> {
        let mut conn = self.read.acquire().await?;
        self::resilience::stalled_sagas(&mut conn, before_ms, limit).await
    }

    async fn cleanup_sagas(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = self::resilience::cleanup_sagas(&mut tx, before_ms).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn saga_counts(&self) -> Result<SagaCounts, StoreError> {
        let mut conn = self.read.acquire().await?;
        self::resilience::saga_counts(&mut conn).await
    }

    async fn queue_depth_by_kind(&self) -> Result<Vec<(JobKind, QueueDepth)>, StoreError> {
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(sql::SELECT_QUEUE_DEPTH)
            .fetch_all(&self.read)
            .await?;
        super::queue_depths_from_rows(rows)
    }

    fn pool_stats(&self) -> PoolStats {
        let size = self.write.size() + self.read.size();
        let idle = self.write.num_idle() as u32 + self.read.num_idle() as u32;
        PoolStats {
            in_use: size.saturating_sub(idle),
            idle,
            max: self.write.options().get_max_connections()
                + self.read.options().get_max_connections(),
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
    tx: &mut Transaction<'static, Sqlite>,
    codigo_periodo: &str,
) -> Result<(), EnrollError> {
    let other: Option<String> = sqlx::query_scalar(
        "SELECT codigo_periodo FROM periodo_academico WHERE estado = 'ACTIVO' AND codigo_periodo <> $1",
    )
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
