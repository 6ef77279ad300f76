//! The enrollment routine's reads and writes on PostgreSQL. Transactions run at READ
//! COMMITTED, so the serialisation that SQLite gets from its database-wide write lock comes
//! from explicit row locks, always taken in the same order: the inscription row first, then
//! the group rows sorted by `codigo_grupo`. Under READ COMMITTED a `FOR UPDATE` that waited
//! returns the row as the other transaction committed it, so counters read under the lock are
//! current.

use sqlx::{PgConnection, Row};
use time::Date;

use super::convert::{estudiante_from_row, inscripcion_from_row, periodo_from_row, slot_from_row};
use crate::domain::enrollment::EnrollmentTx;
use crate::domain::model::{Estudiante, GroupSlot, HeldGroup, Inscripcion, Periodo};
use crate::store::StoreError;
use crate::store::sql::{self, slot_columns};

pub struct PgTx<'c> {
    pub conn: &'c mut PgConnection,
}

const LOCK_INSCRIPCION: &str = concat!(sql::select_inscripcion!(), " FOR UPDATE");

const LOCK_INSCRIPCION_OF_STUDENT: &str =
    concat!(sql::select_inscripcion_of_student!(), " FOR UPDATE");

/// Inserts the inscription unless (student, period) already has one, in which case it
/// affects no row.
const INSERT_INSCRIPCION_IF_MISSING: &str = concat!(
    sql::insert_inscripcion!(),
    " ON CONFLICT (registro_academico, codigo_periodo) DO NOTHING"
);

/// Locks the named groups in `codigo_grupo` order: the rows are sorted before the lock is
/// taken, and only the `grupo` rows are locked, not their horario.
const LOCK_GROUPS: &str = concat!(
    "SELECT ",
    slot_columns!(),
    " FROM grupo g \
     LEFT JOIN horario h ON h.codigo_horario = g.codigo_horario \
     WHERE g.codigo_grupo = ANY($1) ORDER BY g.codigo_grupo FOR UPDATE OF g"
);

/// Locks the groups that inscription `$1` holds, in `codigo_grupo` order.
const LOCK_INSCRIPCION_GROUPS: &str = "SELECT codigo_grupo FROM grupo WHERE codigo_grupo IN \
     (SELECT codigo_grupo FROM detalle_inscripcion WHERE codigo_inscripcion = $1) \
     ORDER BY codigo_grupo FOR UPDATE";

const SELECT_PASSED_MATERIAS: &str = "SELECT DISTINCT sigla_materia FROM historial_academico \
     WHERE registro_academico = $1 AND estado = 'APROBADA' AND sigla_materia = ANY($2)";

const MISSING_PREREQUISITES: &str = sql::select_missing_prerequisites!("p.sigla_materia = ANY($2)");

/// Takes a shared lock on the student's APROBADA rows of materias that `$2` require, so that
/// a concurrent update or delete of such a row waits until the enrollment commits. An update
/// already in progress makes this wait, and the check that follows then reads its result.
const LOCK_PASSED_PREREQUISITES: &str = "SELECT h.id_historial FROM historial_academico h \
     JOIN prerrequisito p ON p.sigla_requerida = h.sigla_materia \
     WHERE h.registro_academico = $1 AND h.estado = 'APROBADA' AND p.sigla_materia = ANY($2) \
     ORDER BY h.id_historial FOR SHARE OF h";

/// Draws the next value of `sequence` and formats it as `prefix` + 9 digits, the format of
/// the SQLite store's codes.
pub async fn next_code(
    conn: &mut PgConnection,
    sequence: &str,
    prefix: char,
) -> Result<String, StoreError> {
    let value: i64 = sqlx::query_scalar("SELECT nextval($1::regclass)")
        .bind(sequence)
        .fetch_one(&mut *conn)
        .await?;
    Ok(format!("{prefix}{value:09}"))
}

/// Locks the inscription row. Returns `None` when it does not exist.
pub async fn lock_inscripcion_row(
    conn: &mut PgConnection,
    codigo_inscripcion: &str,
) -> Result<Option<Inscripcion>, StoreError> {
    let row = sqlx::query(LOCK_INSCRIPCION)
        .bind(codigo_inscripcion)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| inscripcion_from_row(&r)).transpose()
}

/// Locks every group row that the inscription holds, in `codigo_grupo` order. The caller
/// must hold the inscription's lock already.
pub async fn lock_inscripcion_groups(
    conn: &mut PgConnection,
    codigo_inscripcion: &str,
) -> Result<(), StoreError> {
    sqlx::query(LOCK_INSCRIPCION_GROUPS)
        .bind(codigo_inscripcion)
        .fetch_all(&mut *conn)
        .await?;
    Ok(())
}

/// Reads a period and holds a share lock on its row until commit, so that activating or
/// closing the period waits for enrollments in flight instead of letting them commit into a
/// period that is no longer active.
pub const SELECT_PERIODO_FOR_SHARE: &str = "SELECT codigo_periodo, semestre, fecha_inicio, \
     fecha_fin, estado FROM periodo_academico WHERE codigo_periodo = $1 FOR SHARE";

impl EnrollmentTx for PgTx<'_> {
    async fn find_estudiante(
        &mut self,
        registro_academico: &str,
    ) -> Result<Option<Estudiante>, StoreError> {
        let row = sqlx::query(sql::SELECT_ESTUDIANTE)
            .bind(registro_academico)
            .fetch_optional(&mut *self.conn)
            .await?;
        row.map(|r| estudiante_from_row(&r)).transpose()
    }

    async fn find_bloqueo(
        &mut self,
        registro_academico: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        let row = sqlx::query(sql::SELECT_BLOQUEO)
            .bind(registro_academico)
            .fetch_optional(&mut *self.conn)
            .await?;
        Ok(row.map(|r| r.get::<Option<String>, _>(0)))
    }

    async fn find_periodo(&mut self, codigo_periodo: &str) -> Result<Option<Periodo>, StoreError> {
        let row = sqlx::query(SELECT_PERIODO_FOR_SHARE)
            .bind(codigo_periodo)
            .fetch_optional(&mut *self.conn)
            .await?;
        row.map(|r| periodo_from_row(&r)).transpose()
    }

    async fn lock_or_create_inscripcion(
        &mut self,
        registro_academico: &str,
        codigo_periodo: &str,
        today: Date,
    ) -> Result<(Inscripcion, bool), StoreError> {
        // A pass repeats only when another transaction committed this (student, period) row
        // between its SELECT and its INSERT. The next pass locks that row, so one more repeat
        // needs that row deleted and yet another one inserted in the meantime.
        loop {
            // Locking an existing row first leaves the sequence alone for repeat requests.
            let existing = sqlx::query(LOCK_INSCRIPCION_OF_STUDENT)
                .bind(registro_academico)
                .bind(codigo_periodo)
                .fetch_optional(&mut *self.conn)
                .await?;
            if let Some(row) = existing {
                return Ok((inscripcion_from_row(&row)?, false));
            }

            // A concurrent insert of the same (student, period) makes this statement wait for
            // that transaction. If that transaction commits, this insert skips the row, and
            // the next pass locks the committed row.
            let codigo = next_code(self.conn, "inscripcion_codigo_seq", 'I').await?;
            let inserted = sqlx::query(INSERT_INSCRIPCION_IF_MISSING)
                .bind(&codigo)
                .bind(registro_academico)
                .bind(codigo_periodo)
                .bind(today)
                .execute(&mut *self.conn)
                .await?;
            if inserted.rows_affected() == 1 {
                let inscripcion = Inscripcion {
                    codigo_inscripcion: codigo,
                    registro_academico: registro_academico.to_owned(),
                    codigo_periodo: codigo_periodo.to_owned(),
                    fecha_inscripcion: today,
                };
                return Ok((inscripcion, true));
            }
        }
    }

    async fn lock_inscripcion(
        &mut self,
        codigo_inscripcion: &str,
    ) -> Result<Option<Inscripcion>, StoreError> {
        lock_inscripcion_row(self.conn, codigo_inscripcion).await
    }

    async fn held_groups(
        &mut self,
        codigo_inscripcion: &str,
    ) -> Result<Vec<HeldGroup>, StoreError> {
        let rows = sqlx::query(sql::SELECT_HELD_GROUPS)
            .bind(codigo_inscripcion)
            .fetch_all(&mut *self.conn)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(HeldGroup {
                    codigo_detalle: r.try_get("codigo_detalle")?,
                    slot: slot_from_row(r)?,
                })
            })
            .collect()
    }

    async fn lock_groups(&mut self, sorted_codes: &[String]) -> Result<Vec<GroupSlot>, StoreError> {
        let rows = sqlx::query(LOCK_GROUPS)
            .bind(sorted_codes)
            .fetch_all(&mut *self.conn)
            .await?;
        rows.iter().map(slot_from_row).collect()
    }

    async fn passed_materias(
        &mut self,
        registro_academico: &str,
        siglas: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let passed = sqlx::query_scalar(SELECT_PASSED_MATERIAS)
            .bind(registro_academico)
            .bind(siglas)
            .fetch_all(&mut *self.conn)
            .await?;
        Ok(passed)
    }

    async fn missing_prerequisites(
        &mut self,
        registro_academico: &str,
        siglas: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query(LOCK_PASSED_PREREQUISITES)
            .bind(registro_academico)
            .bind(siglas)
            .fetch_all(&mut *self.conn)
            .await?;
        let missing = sqlx::query_as(MISSING_PREREQUISITES)
            .bind(registro_academico)
            .bind(siglas)
            .fetch_all(&mut *self.conn)
            .await?;
        Ok(missing)
    }

    async fn insert_detalle(
        &mut self,
        codigo_inscripcion: &str,
        codigo_grupo: &str,
    ) -> Result<String, StoreError> {
        let codigo = next_code(self.conn, "detalle_codigo_seq", 'D').await?;
        sqlx::query(sql::INSERT_DETALLE)
            .bind(&codigo)
            .bind(codigo_inscripcion)
            .bind(codigo_grupo)
            .execute(&mut *self.conn)
            .await?;
        Ok(codigo)
    }

    async fn take_seat(&mut self, codigo_grupo: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::TAKE_SEAT)
            .bind(codigo_grupo)
            .execute(&mut *self.conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
