//! Enrollment batches on PostgreSQL: the steps of several leased inscription jobs in one
//! transaction, planned in memory (see `store::snapshot`), so that they share a dozen
//! statements and one commit.
//!
//! Lock order: the batch locks its job rows in `task_id` order and takes a share lock on the
//! periods. It then locks the existing inscriptions of its requests in `codigo_inscripcion`
//! order and inserts the missing ones, then locks all the groups its requests name in
//! `codigo_grupo` order. Last, it takes a share lock on the historial rows it reads. A single
//! request locks one inscription, then its groups in the same order.
//!
//! NOTE: one cycle remains possible between two batches. When another transaction commits an
//! inscription that a batch found missing, the batch locks that row after inserting its other
//! missing ones, and a second batch may hold that row and wait for one of those inserts.
//! PostgreSQL then aborts one batch with a deadlock error, which is transient, so its jobs are
//! retried. A statement that fails for a non-transient reason rolls the whole batch back and
//! defers each job to run on its own.

use std::collections::{HashMap, HashSet};

use sqlx::{PgConnection, Row};
use time::Date;

use super::PgStore;
use super::convert::{estudiante_from_row, inscripcion_from_row, periodo_from_row, slot_from_row};
use crate::domain::enrollment::{EnrollmentRequest, EnrollmentRules};
use crate::domain::model::{HeldGroup, Inscripcion};
use crate::jobs::model::JobUpdate;
use crate::store::snapshot::{self, Codes, Snapshot, Writes, unique};
use crate::store::sql::slot_columns;
use crate::store::{BatchOutcome, BatchStep, StoreError};

/// Locks the leased job rows among `$1` in `task_id` order and reports whether each one
/// already has a saga.
const LOCK_LEASED_JOBS: &str = "SELECT j.task_id, \
     EXISTS (SELECT 1 FROM saga s WHERE s.task_id = j.task_id) \
     FROM job j WHERE j.task_id = ANY($1) AND j.lease_owner = $2 \
     AND j.state IN ('STARTED', 'PROGRESS') ORDER BY j.task_id FOR UPDATE OF j";

const SHARE_PERIODOS: &str = "SELECT codigo_periodo, semestre, fecha_inicio, fecha_fin, estado \
     FROM periodo_academico WHERE codigo_periodo = ANY($1) ORDER BY codigo_periodo FOR SHARE";

const SELECT_ESTUDIANTES: &str = "SELECT registro_academico, codigo_carrera, nombre, apellido, \
     ci, correo, telefono, direccion, estado_academico FROM estudiante \
     WHERE registro_academico = ANY($1)";

const SELECT_BLOQUEOS: &str = "SELECT registro_academico, descripcion FROM bloqueo \
     WHERE registro_academico = ANY($1) ORDER BY registro_academico, codigo_bloqueo";

/// Locks the inscriptions of the (student, period) pairs `($1[i], $2[i])`.
const LOCK_INSCRIPCIONES: &str = "SELECT codigo_inscripcion, registro_academico, \
     codigo_periodo, fecha_inscripcion FROM inscripcion \
     WHERE (registro_academico, codigo_periodo) IN \
     (SELECT * FROM UNNEST($1::text[], $2::text[])) \
     ORDER BY codigo_inscripcion FOR UPDATE";

const SELECT_HELD: &str = concat!(
    "SELECT d.codigo_inscripcion, d.codigo_detalle, ",
    slot_columns!(),
    " FROM detalle_inscripcion d JOIN grupo g ON g.codigo_grupo = d.codigo_grupo \
     LEFT JOIN horario h ON h.codigo_horario = g.codigo_horario \
     WHERE d.codigo_inscripcion = ANY($1) ORDER BY d.codigo_inscripcion, g.codigo_grupo"
);

const LOCK_GROUPS: &str = concat!(
    "SELECT ",
    slot_columns!(),
    " FROM grupo g LEFT JOIN horario h ON h.codigo_horario = g.codigo_horario \
     WHERE g.codigo_grupo = ANY($1) ORDER BY g.codigo_grupo FOR UPDATE OF g"
);

const SELECT_PREREQUISITES: &str = "SELECT sigla_materia, sigla_requerida FROM prerrequisito \
     WHERE sigla_materia = ANY($1) ORDER BY sigla_materia, sigla_requerida";

/// Reads, and keeps from changing until commit, the students' APROBADA rows of the materias
/// in `$2`.
const SHARE_PASSED: &str = "SELECT registro_academico, sigla_materia FROM historial_academico \
     WHERE registro_academico = ANY($1) AND estado = 'APROBADA' AND sigla_materia = ANY($2) \
     ORDER BY id_historial FOR SHARE";

const DRAW_CODES: &str = "SELECT \
     ARRAY(SELECT nextval('inscripcion_codigo_seq') FROM generate_series(1, $1)), \
     ARRAY(SELECT nextval('detalle_codigo_seq') FROM generate_series(1, $2))";

const DRAW_INSCRIPCION_CODES: &str =
    "SELECT ARRAY(SELECT nextval('inscripcion_codigo_seq') FROM generate_series(1, $1))";

/// Inserts the inscriptions that do not exist yet and returns the (student, period) pairs it
/// inserted. A pair that another transaction is inserting waits for it, then is skipped if
/// that transaction committed.
const RESERVE_INSCRIPCIONES: &str = "INSERT INTO inscripcion (codigo_inscripcion, \
     registro_academico, codigo_periodo, fecha_inscripcion) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::date[]) \
     ON CONFLICT (registro_academico, codigo_periodo) DO NOTHING \
     RETURNING registro_academico, codigo_periodo";

const DELETE_INSCRIPCIONES: &str = "DELETE FROM inscripcion WHERE codigo_inscripcion = ANY($1)";

const INSERT_DETALLES: &str = "INSERT INTO detalle_inscripcion (codigo_detalle, \
     codigo_inscripcion, codigo_grupo) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])";

/// Adds `$2[i]` seats to group `$1[i]`, never past its `cupo`.
const TAKE_SEATS: &str = "UPDATE grupo g SET inscritos_actuales = g.inscritos_actuales + v.n \
     FROM UNNEST($1::text[], $2::int[]) AS v(codigo_grupo, n) \
     WHERE g.codigo_grupo = v.codigo_grupo AND g.inscritos_actuales + v.n <= g.cupo";

const UPDATE_JOBS: &str = "UPDATE job j SET state = v.state, meta = COALESCE(v.meta, j.meta), \
     result = COALESCE(v.result, j.result), \
     completed_at = CASE WHEN v.terminal THEN $6 ELSE j.completed_at END, \
     lease_owner = CASE WHEN v.terminal THEN NULL ELSE j.lease_owner END, \
     lease_expires_at = CASE WHEN v.terminal THEN NULL ELSE j.lease_expires_at END \
     FROM UNNEST($1::text[], $2::text[], $3::jsonb[], $4::jsonb[], $5::bool[]) \
     AS v(task_id, state, meta, result, terminal) \
     WHERE j.task_id = v.task_id AND j.lease_owner = $7 AND j.state IN ('STARTED', 'PROGRESS')";

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
        // Planned on every call: the job table grows fast during a rush (see `find_tasks`).
        let leased: HashMap<String, bool> = sqlx::query_as(LOCK_LEASED_JOBS)
            .persistent(false)
            .bind(&task_ids)
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
            let mut snapshot = read_snapshot(&mut tx, &live, today).await?;
            let plan = snapshot::plan_batch(&mut snapshot, steps, &leased, rules, today).await?;
            let writes = &plan.writes;
            write_enrollments(&mut tx, writes).await?;
            let unclaimed: Vec<&String> = snapshot
                .reserved
                .values()
                .map(|i| &i.codigo_inscripcion)
                .collect();
            if !unclaimed.is_empty() {
                sqlx::query(DELETE_INSCRIPCIONES)
                    .bind(&unclaimed)
                    .execute(&mut *tx)
                    .await?;
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

/// Reads and locks what the requests can look at.
async fn read_snapshot(
    conn: &mut PgConnection,
    requests: &[&EnrollmentRequest],
    today: Date,
) -> Result<Snapshot, StoreError> {
    let mut snapshot = Snapshot::default();
    if requests.is_empty() {
        return Ok(snapshot);
    }
    let students: Vec<&str> = unique(requests.iter().map(|r| r.registro_academico.as_str()));
    let periods: Vec<&str> = unique(requests.iter().map(|r| r.codigo_periodo.as_str()));

    for row in sqlx::query(SHARE_PERIODOS)
        .bind(&periods)
        .fetch_all(&mut *conn)
        .await?
    {
        let periodo = periodo_from_row(&row)?;
        snapshot
            .periodos
            .insert(periodo.codigo_periodo.clone(), periodo);
    }
    for row in sqlx::query(SELECT_ESTUDIANTES)
        .bind(&students)
        .fetch_all(&mut *conn)
        .await?
    {
        let estudiante = estudiante_from_row(&row)?;
        snapshot
            .estudiantes
            .insert(estudiante.registro_academico.clone(), estudiante);
    }
    for row in sqlx::query(SELECT_BLOQUEOS)
        .bind(&students)
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
    lock_inscripciones(conn, &mut snapshot, &pairs).await?;
    let new_detalles: usize = requests.iter().map(|r| r.grupos.len()).sum();
    let mut missing = missing_pairs(&snapshot, &pairs);
    let (inscripcion_codes, detalle_codes): (Vec<i64>, Vec<i64>) = sqlx::query_as(DRAW_CODES)
        .bind(missing.len() as i64)
        .bind(new_detalles as i64)
        .fetch_one(&mut *conn)
        .await?;
    snapshot.detalle_codes = Codes::new('D', detalle_codes);
    let mut codes = Codes::new('I', inscripcion_codes);
    // A pass repeats only for pairs that another transaction inserted and committed
    // meanwhile, which the next lock finds, unless that row was deleted again since.
    while !missing.is_empty() {
        reserve_inscripciones(conn, &mut snapshot, &missing, &mut codes, today).await?;
        missing = missing_pairs(&snapshot, &missing);
        if missing.is_empty() {
            break;
        }
        lock_inscripciones(conn, &mut snapshot, &missing).await?;
        missing = missing_pairs(&snapshot, &missing);
    }
    if !snapshot.inscripciones.is_empty() {
        let codes: Vec<&str> = snapshot
            .inscripciones
            .values()
            .map(|i| i.codigo_inscripcion.as_str())
            .collect();
        let rows = sqlx::query(SELECT_HELD)
            .persistent(false)
            .bind(&codes)
            .fetch_all(&mut *conn)
            .await?;
        for row in rows {
            let held = HeldGroup {
                codigo_detalle: row.try_get("codigo_detalle")?,
                slot: slot_from_row(&row)?,
            };
            let codigo: String = row.try_get("codigo_inscripcion")?;
            snapshot.held.entry(codigo).or_default().push(held);
        }
    }

    let groups = Snapshot::requested_groups(requests.iter().copied());
    for row in sqlx::query(LOCK_GROUPS)
        .bind(&groups)
        .fetch_all(&mut *conn)
        .await?
    {
        let slot = slot_from_row(&row)?;
        snapshot.groups.insert(slot.codigo_grupo.clone(), slot);
    }
    let siglas: Vec<&str> = unique(snapshot.groups.values().map(|s| s.sigla_materia.as_str()));
    snapshot.prerequisites = sqlx::query_as(SELECT_PREREQUISITES)
        .bind(&siglas)
        .fetch_all(&mut *conn)
        .await?;
    let mut read: HashSet<&str> = siglas.iter().copied().collect();
    read.extend(snapshot.prerequisites.iter().map(|(_, r)| r.as_str()));
    let read: Vec<&str> = read.into_iter().collect();
    let passed: Vec<(String, String)> = sqlx::query_as(SHARE_PASSED)
        .bind(&students)
        .bind(&read)
        .fetch_all(&mut *conn)
        .await?;
    snapshot.passed = passed.into_iter().collect();

    Ok(snapshot)
}

/// Locks the existing inscriptions of `pairs`, in `codigo_inscripcion` order, and adds them
/// to the snapshot.
async fn lock_inscripciones(
    conn: &mut PgConnection,
    snapshot: &mut Snapshot,
    pairs: &[(&str, &str)],
) -> Result<(), StoreError> {
    let (students, periods): (Vec<&str>, Vec<&str>) = pairs.iter().copied().unzip();
    for row in sqlx::query(LOCK_INSCRIPCIONES)
        .bind(&students)
        .bind(&periods)
        .fetch_all(&mut *conn)
        .await?
    {
        snapshot.add_inscripcion(inscripcion_from_row(&row)?);
    }
    Ok(())
}

/// Returns the pairs with neither an inscription nor a reserved one, sorted, so that two
/// batches insert common pairs in the same order.
fn missing_pairs<'a>(snapshot: &Snapshot, pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut missing: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(ra, cp)| {
            let key = ((*ra).to_owned(), (*cp).to_owned());
            !snapshot.inscripciones.contains_key(&key) && !snapshot.reserved.contains_key(&key)
        })
        .collect();
    missing.sort_unstable();
    missing
}

/// Inserts an inscription for each pair in `missing` that no other transaction inserted,
/// and records the inserted ones as reserved.
async fn reserve_inscripciones(
    conn: &mut PgConnection,
    snapshot: &mut Snapshot,
    missing: &[(&str, &str)],
    codes: &mut Codes,
    today: Date,
) -> Result<(), StoreError> {
    if codes.left() < missing.len() {
        let more: Vec<i64> = sqlx::query_scalar(DRAW_INSCRIPCION_CODES)
            .bind((missing.len() - codes.left()) as i64)
            .fetch_one(&mut *conn)
            .await?;
        codes.extend(more);
    }
    let mut rows = Vec::with_capacity(missing.len());
    for (ra, cp) in missing {
        rows.push(Inscripcion {
            codigo_inscripcion: codes.next_code()?,
            registro_academico: (*ra).to_owned(),
            codigo_periodo: (*cp).to_owned(),
            fecha_inscripcion: today,
        });
    }
    let inserted: HashSet<(String, String)> = sqlx::query_as(RESERVE_INSCRIPCIONES)
        .bind(
            rows.iter()
                .map(|i| &i.codigo_inscripcion)
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|i| &i.registro_academico)
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|i| &i.codigo_periodo).collect::<Vec<_>>())
        .bind(rows.iter().map(|i| i.fecha_inscripcion).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    for row in rows {
        let key = (row.registro_academico.clone(), row.codigo_periodo.clone());
        if inserted.contains(&key) {
            snapshot.reserved.insert(key, row);
        }
    }
    Ok(())
}

/// Writes the inscriptions, details and seat counters of the accepted requests.
async fn write_enrollments(conn: &mut PgConnection, writes: &Writes) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Ok(());
    }
    // Every inscription was inserted before the groups were locked, so `writes` has none.
    if !writes.detalles.is_empty() {
        let d = &writes.detalles;
        sqlx::query(INSERT_DETALLES)
            .bind(d.iter().map(|d| &d.0).collect::<Vec<_>>())
            .bind(d.iter().map(|d| &d.1).collect::<Vec<_>>())
            .bind(d.iter().map(|d| &d.2).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
    }
    if !writes.seats.is_empty() {
        let groups: Vec<&String> = writes.seats.keys().collect();
        let taken: Vec<i32> = writes
            .seats
            .values()
            .map(|n| i32::try_from(*n).unwrap_or(i32::MAX))
            .collect();
        let done = sqlx::query(TAKE_SEATS)
            .bind(&groups)
            .bind(&taken)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() != groups.len() as u64 {
            return Err(StoreError::corrupt(
                "grupo",
                "a locked group had fewer free seats than the batch counted",
            ));
        }
    }
    Ok(())
}

/// Writes each job's update. Every job still holds its lease, because the batch locked its row.
async fn write_jobs(
    conn: &mut PgConnection,
    owner: &str,
    updates: &[(&str, JobUpdate)],
    now_ms: i64,
) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
    let done = sqlx::query(UPDATE_JOBS)
        .bind(updates.iter().map(|(t, _)| *t).collect::<Vec<_>>())
        .bind(
            updates
                .iter()
                .map(|(_, u)| u.state.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            updates
                .iter()
                .map(|(_, u)| u.meta.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            updates
                .iter()
                .map(|(_, u)| u.result.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            updates
                .iter()
                .map(|(_, u)| u.state.is_terminal())
                .collect::<Vec<_>>(),
        )
        .bind(now_ms)
        .bind(owner)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() != updates.len() as u64 {
        return Err(StoreError::corrupt(
            "job",
            "a job locked by its batch lost its lease before the batch wrote it",
        ));
    }
    Ok(())
}
