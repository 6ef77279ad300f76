//! Enrollment batches on SQLite: the steps of several leased inscription jobs in one write
//! transaction, planned in memory (see `store::snapshot`), so that they share one
//! `BEGIN IMMEDIATE`, a dozen statements and one commit. Lists travel as JSON arrays read
//! with `json_each`. SQLite has a single writer, so a batch never waits for a row lock. A
//! statement that fails for another reason than a busy database rolls the batch back and
//! defers each job to run on its own.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use sqlx::{Row, SqliteConnection};
use time::Date;

use super::SqliteStore;
use super::convert::{estudiante_from_row, inscripcion_from_row, periodo_from_row, slot_from_row};
use crate::domain::enrollment::{EnrollmentRequest, EnrollmentRules};
use crate::domain::model::HeldGroup;
use crate::jobs::model::JobUpdate;
use crate::store::snapshot::{self, Codes, Snapshot, Writes, unique};
use crate::store::{BatchOutcome, BatchStep, StoreError};

/// Lists the leased jobs among the JSON array `$1` and whether each one already has a saga.
const SELECT_LEASED_JOBS: &str = "SELECT j.task_id, \
     EXISTS (SELECT 1 FROM saga s WHERE s.task_id = j.task_id) \
     FROM job j WHERE j.task_id IN (SELECT value FROM json_each($1)) AND j.lease_owner = $2 \
     AND j.state IN ('STARTED', 'PROGRESS')";

const SELECT_PERIODOS: &str = "SELECT codigo_periodo, semestre, fecha_inicio, fecha_fin, estado \
     FROM periodo_academico WHERE codigo_periodo IN (SELECT value FROM json_each($1))";

const SELECT_ESTUDIANTES: &str = "SELECT registro_academico, codigo_carrera, nombre, apellido, \
     ci, correo, telefono, direccion, estado_academico FROM estudiante \
     WHERE registro_academico IN (SELECT value FROM json_each($1))";

const SELECT_BLOQUEOS: &str = "SELECT registro_academico, descripcion FROM bloqueo \
     WHERE registro_academico IN (SELECT value FROM json_each($1)) \
     ORDER BY registro_academico, codigo_bloqueo";

/// The inscriptions of the (student, period) pairs in the JSON array of pairs `$1`.
const SELECT_INSCRIPCIONES: &str = "SELECT codigo_inscripcion, registro_academico, \
     codigo_periodo, fecha_inscripcion FROM inscripcion \
     WHERE (registro_academico, codigo_periodo) IN \
     (SELECT value ->> 0, value ->> 1 FROM json_each($1))";

const SELECT_HELD: &str = "SELECT d.codigo_inscripcion, d.codigo_detalle, g.codigo_grupo, \
     g.sigla_materia, g.cupo, g.inscritos_actuales, h.dias_semana, h.hora_inicio, h.hora_fin \
     FROM detalle_inscripcion d JOIN grupo g ON g.codigo_grupo = d.codigo_grupo \
     LEFT JOIN horario h ON h.codigo_horario = g.codigo_horario \
     WHERE d.codigo_inscripcion IN (SELECT value FROM json_each($1)) \
     ORDER BY d.codigo_inscripcion, g.codigo_grupo";

const SELECT_GROUPS: &str = "SELECT g.codigo_grupo, g.sigla_materia, g.cupo, \
     g.inscritos_actuales, h.dias_semana, h.hora_inicio, h.hora_fin \
     FROM grupo g LEFT JOIN horario h ON h.codigo_horario = g.codigo_horario \
     WHERE g.codigo_grupo IN (SELECT value FROM json_each($1))";

const SELECT_PREREQUISITES: &str = "SELECT sigla_materia, sigla_requerida FROM prerrequisito \
     WHERE sigla_materia IN (SELECT value FROM json_each($1)) \
     ORDER BY sigla_materia, sigla_requerida";

const SELECT_PASSED: &str = "SELECT DISTINCT registro_academico, sigla_materia \
     FROM historial_academico WHERE estado = 'APROBADA' \
     AND registro_academico IN (SELECT value FROM json_each($1)) \
     AND sigla_materia IN (SELECT value FROM json_each($2))";

const SELECT_CODES: &str = "SELECT \
     (SELECT value FROM code_sequence WHERE name = 'inscripcion'), \
     (SELECT value FROM code_sequence WHERE name = 'detalle')";

const UPDATE_CODES: &str = "UPDATE code_sequence SET value = CASE name \
     WHEN 'inscripcion' THEN $1 WHEN 'detalle' THEN $2 ELSE value END \
     WHERE name IN ('inscripcion', 'detalle')";

/// `$1` is a JSON array of `[codigo, registro_academico, codigo_periodo, fecha]`.
const INSERT_INSCRIPCIONES: &str = "INSERT INTO inscripcion (codigo_inscripcion, \
     registro_academico, codigo_periodo, fecha_inscripcion) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each($1)";

/// `$1` is a JSON array of `[codigo_detalle, codigo_inscripcion, codigo_grupo]`.
const INSERT_DETALLES: &str = "INSERT INTO detalle_inscripcion (codigo_detalle, \
     codigo_inscripcion, codigo_grupo) \
     SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each($1)";

/// `$1` is a JSON array of `[codigo_grupo, seats]`. A group never goes past its `cupo`.
const TAKE_SEATS: &str = "UPDATE grupo SET inscritos_actuales = inscritos_actuales + v.n \
     FROM (SELECT value ->> 0 AS codigo_grupo, value ->> 1 AS n FROM json_each($1)) AS v \
     WHERE grupo.codigo_grupo = v.codigo_grupo AND grupo.inscritos_actuales + v.n <= grupo.cupo";

/// `$1` is a JSON array of objects with `task_id`, `state`, `meta`, `result`, `terminal`.
const UPDATE_JOBS: &str = "UPDATE job SET state = v.state, meta = COALESCE(v.meta, job.meta), \
     result = COALESCE(v.result, job.result), \
     completed_at = CASE WHEN v.terminal THEN $2 ELSE job.completed_at END, \
     lease_owner = CASE WHEN v.terminal THEN NULL ELSE job.lease_owner END, \
     lease_expires_at = CASE WHEN v.terminal THEN NULL ELSE job.lease_expires_at END \
     FROM (SELECT value ->> 'task_id' AS task_id, value ->> 'state' AS state, \
     value ->> 'meta' AS meta, value ->> 'result' AS result, value ->> 'terminal' AS terminal \
     FROM json_each($1)) AS v \
     WHERE job.task_id = v.task_id AND job.lease_owner = $3 \
     AND job.state IN ('STARTED', 'PROGRESS')";

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
        let leased: HashMap<String, bool> = sqlx::query_as(SELECT_LEASED_JOBS)
            .bind(json_list(&task_ids))
            .bind(owner)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        let live: Vec<&EnrollmentRequest> = steps
            .iter()
            .filter(|s| leased.get(s.task_id) == Some(&false))
            .map(|s| s.request)
            .collect();

        let written = async {
            let (mut snapshot, bases) = read_snapshot(&mut tx, &live).await?;
            let drawn = (
                snapshot.inscripcion_codes.left(),
                snapshot.detalle_codes.left(),
            );
            let plan = snapshot::plan_batch(&mut snapshot, steps, &leased, rules, today).await?;
            let writes = &plan.writes;
            if !writes.is_empty() {
                // Codes a rejected request gave back are not used, so no gap is left.
                let used = (
                    drawn.0 - snapshot.inscripcion_codes.left(),
                    drawn.1 - snapshot.detalle_codes.left(),
                );
                sqlx::query(UPDATE_CODES)
                    .bind(bases.0 + used.0 as i64)
                    .bind(bases.1 + used.1 as i64)
                    .execute(&mut *tx)
                    .await?;
                write_enrollments(&mut tx, writes).await?;
            }
            write_jobs(&mut tx, owner, &plan.job_updates, now_ms).await?;
            super::resilience::insert_sagas(&mut tx, &plan.sagas).await?;
            Ok::<_, StoreError>(plan.outcomes)
        }
        .await;

        match written {
            Ok(outcomes) => {
                tx.commit().await?;
                Ok(outcomes)
            }
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, jobs = steps.len(), "enrollment batch rolled back; its jobs run on their own");
                tx.rollback().await?;
                Ok(snapshot::deferred(steps, &leased))
            }
        }
    }
}

/// Reads what the requests can look at. Also returns the code counters' values, from which
/// the batch's codes are numbered.
async fn read_snapshot(
    conn: &mut SqliteConnection,
    requests: &[&EnrollmentRequest],
) -> Result<(Snapshot, (i64, i64)), StoreError> {
    let mut snapshot = Snapshot::default();
    if requests.is_empty() {
        return Ok((snapshot, (0, 0)));
    }
    let students: Vec<&str> = unique(requests.iter().map(|r| r.registro_academico.as_str()));
    let periods: Vec<&str> = unique(requests.iter().map(|r| r.codigo_periodo.as_str()));

    for row in sqlx::query(SELECT_PERIODOS)
        .bind(json_list(&periods))
        .fetch_all(&mut *conn)
        .await?
    {
        let periodo = periodo_from_row(&row)?;
        snapshot
            .periodos
            .insert(periodo.codigo_periodo.clone(), periodo);
    }
    for row in sqlx::query(SELECT_ESTUDIANTES)
        .bind(json_list(&students))
        .fetch_all(&mut *conn)
        .await?
    {
        let estudiante = estudiante_from_row(&row)?;
        snapshot
            .estudiantes
            .insert(estudiante.registro_academico.clone(), estudiante);
    }
    for row in sqlx::query(SELECT_BLOQUEOS)
        .bind(json_list(&students))
        .fetch_all(&mut *conn)
        .await?
    {
        snapshot.add_bloqueo(row.try_get(0)?, row.try_get(1)?);
    }

    let pairs: Vec<(&str, &str)> = unique(
        requests
            .iter()
            .map(|r| (r.registro_academico.as_str(), r.codigo_periodo.as_str())),
    );
    for row in sqlx::query(SELECT_INSCRIPCIONES)
        .bind(json!(pairs).to_string())
        .fetch_all(&mut *conn)
        .await?
    {
        snapshot.add_inscripcion(inscripcion_from_row(&row)?);
    }
    if !snapshot.inscripciones.is_empty() {
        let codes: Vec<&str> = snapshot
            .inscripciones
            .values()
            .map(|i| i.codigo_inscripcion.as_str())
            .collect();
        for row in sqlx::query(SELECT_HELD)
            .bind(json_list(&codes))
            .fetch_all(&mut *conn)
            .await?
        {
            let held = HeldGroup {
                codigo_detalle: row.try_get("codigo_detalle")?,
                slot: slot_from_row(&row)?,
            };
            let codigo: String = row.try_get("codigo_inscripcion")?;
            snapshot.held.entry(codigo).or_default().push(held);
        }
    }

    let groups = Snapshot::requested_groups(requests.iter().copied());
    for row in sqlx::query(SELECT_GROUPS)
        .bind(json!(groups).to_string())
        .fetch_all(&mut *conn)
        .await?
    {
        let slot = slot_from_row(&row)?;
        snapshot.groups.insert(slot.codigo_grupo.clone(), slot);
    }
    let siglas: Vec<&str> = unique(snapshot.groups.values().map(|s| s.sigla_materia.as_str()));
    snapshot.prerequisites = sqlx::query_as(SELECT_PREREQUISITES)
        .bind(json_list(&siglas))
        .fetch_all(&mut *conn)
        .await?;
    let mut read: HashSet<&str> = siglas.iter().copied().collect();
    read.extend(snapshot.prerequisites.iter().map(|(_, r)| r.as_str()));
    let read: Vec<&str> = read.into_iter().collect();
    let passed: Vec<(String, String)> = sqlx::query_as(SELECT_PASSED)
        .bind(json_list(&students))
        .bind(json_list(&read))
        .fetch_all(&mut *conn)
        .await?;
    snapshot.passed = passed.into_iter().collect();

    let (inscripcion_base, detalle_base): (i64, i64) =
        sqlx::query_as(SELECT_CODES).fetch_one(&mut *conn).await?;
    let new_inscripciones = pairs.len() as i64;
    let new_detalles: i64 = requests.iter().map(|r| r.grupos.len() as i64).sum();
    snapshot.inscripcion_codes = Codes::new(
        'I',
        inscripcion_base + 1..=inscripcion_base + new_inscripciones,
    );
    snapshot.detalle_codes = Codes::new('D', detalle_base + 1..=detalle_base + new_detalles);
    Ok((snapshot, (inscripcion_base, detalle_base)))
}

/// Writes the inscriptions, details and seat counters of the accepted requests.
async fn write_enrollments(conn: &mut SqliteConnection, writes: &Writes) -> Result<(), StoreError> {
    if !writes.inscripciones.is_empty() {
        let rows: Vec<Value> = writes
            .inscripciones
            .iter()
            .map(|i| {
                json!([
                    i.codigo_inscripcion,
                    i.registro_academico,
                    i.codigo_periodo,
                    i.fecha_inscripcion.to_string(),
                ])
            })
            .collect();
        sqlx::query(INSERT_INSCRIPCIONES)
            .bind(Value::Array(rows).to_string())
            .execute(&mut *conn)
            .await?;
    }
    if !writes.detalles.is_empty() {
        sqlx::query(INSERT_DETALLES)
            .bind(json!(writes.detalles).to_string())
            .execute(&mut *conn)
            .await?;
    }
    if !writes.seats.is_empty() {
        let seats: Vec<(&String, &i64)> = writes.seats.iter().collect();
        let done = sqlx::query(TAKE_SEATS)
            .bind(json!(seats).to_string())
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() != seats.len() as u64 {
            return Err(StoreError::corrupt(
                "grupo",
                "a group had fewer free seats than the batch counted",
            ));
        }
    }
    Ok(())
}

/// Writes each job's update. Every job still holds its lease, because the batch has held the
/// write lock since it checked them.
async fn write_jobs(
    conn: &mut SqliteConnection,
    owner: &str,
    updates: &[(&str, JobUpdate)],
    now_ms: i64,
) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = updates
        .iter()
        .map(|(task_id, u)| {
            json!({
                "task_id": task_id,
                "state": u.state.as_str(),
                "meta": u.meta,
                "result": u.result,
                "terminal": u.state.is_terminal(),
            })
        })
        .collect();
    let done = sqlx::query(UPDATE_JOBS)
        .bind(Value::Array(rows).to_string())
        .bind(now_ms)
        .bind(owner)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() != updates.len() as u64 {
        return Err(StoreError::corrupt(
            "job",
            "a job checked by its batch lost its lease before the batch wrote it",
        ));
    }
    Ok(())
}

fn json_list(items: &[&str]) -> String {
    serde_json::to_string(items).expect("strings serialise")
}
