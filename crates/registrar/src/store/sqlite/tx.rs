//! The enrollment routine's reads and writes on SQLite. Every write transaction starts with
//! `BEGIN IMMEDIATE`, which takes the database's write lock up front, so the row locks that
//! PostgreSQL needs are implicit here: no other writer runs until this one commits.

use sqlx::{Row, SqliteConnection};
use time::Date;

use super::convert::{estudiante_from_row, inscripcion_from_row, periodo_from_row, slot_from_row};
use crate::domain::enrollment::EnrollmentTx;
use crate::domain::model::{Estudiante, GroupSlot, HeldGroup, Inscripcion, Periodo};
use crate::store::StoreError;

pub struct SqliteTx<'c> {
    pub conn: &'c mut SqliteConnection,
}

pub const SELECT_ESTUDIANTE: &str = "SELECT registro_academico, codigo_carrera, nombre, apellido, ci, correo, telefono, \
     direccion, estado_academico FROM estudiante WHERE registro_academico = $1";
pub const SELECT_PERIODO: &str = "SELECT codigo_periodo, semestre, fecha_inicio, fecha_fin, estado \
     FROM periodo_academico WHERE codigo_periodo = $1";
pub const SELECT_INSCRIPCION: &str = "SELECT codigo_inscripcion, registro_academico, codigo_periodo, fecha_inscripcion \
     FROM inscripcion WHERE codigo_inscripcion = $1";
const SLOT_COLUMNS: &str = "g.codigo_grupo, g.sigla_materia, g.cupo, g.inscritos_actuales, \
     h.dias_semana, h.hora_inicio, h.hora_fin";

/// `$2` is a JSON array of siglas.
const MISSING_PREREQUISITES: &str = crate::store::sql::select_missing_prerequisites!(
    "p.sigla_materia IN (SELECT value FROM json_each($2))"
);

/// Draws the next value of a named counter and formats it as `prefix` + 9 digits.
pub async fn next_code(
    conn: &mut SqliteConnection,
    name: &str,
    prefix: char,
) -> Result<String, StoreError> {
    let value: i64 = sqlx::query_scalar(
        "UPDATE code_sequence SET value = value + 1 WHERE name = $1 RETURNING value",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
    Ok(format!("{prefix}{value:09}"))
}

impl EnrollmentTx for SqliteTx<'_> {
    async fn find_estudiante(
        &mut self,
        registro_academico: &str,
    ) -> Result<Option<Estudiante>, StoreError> {
        let row = sqlx::query(SELECT_ESTUDIANTE)
            .bind(registro_academico)
            .fetch_optional(&mut *self.conn)
            .await?;
        row.map(|r| estudiante_from_row(&r)).transpose()
    }

    async fn find_bloqueo(
        &mut self,
        registro_academico: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        let row = sqlx::query(
            "SELECT descripcion FROM bloqueo WHERE registro_academico = $1 \
             ORDER BY codigo_bloqueo LIMIT 1",
        )
        .bind(registro_academico)
        .fetch_optional(&mut *self.conn)
        .await?;
        Ok(row.map(|r| r.get::<Option<String>, _>(0)))
    }

    async fn find_periodo(&mut self, codigo_periodo: &str) -> Result<Option<Periodo>, StoreError> {
        let row = sqlx::query(SELECT_PERIODO)
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
        let existing = sqlx::query(
            "SELECT codigo_inscripcion, registro_academico, codigo_periodo, fecha_inscripcion \
             FROM inscripcion WHERE registro_academico = $1 AND codigo_periodo = $2",
        )
        .bind(registro_academico)
        .bind(codigo_periodo)
        .fetch_optional(&mut *self.conn)
        .await?;
        if let Some(row) = existing {
            return Ok((inscripcion_from_row(&row)?, false));
        }

        let codigo = next_code(self.conn, "inscripcion", 'I').await?;
        sqlx::query(
            "INSERT INTO inscripcion (codigo_inscripcion, registro_academico, codigo_periodo, \
             fecha_inscripcion) VALUES ($1, $2, $3, $4)",
        )
        .bind(&codigo)
        .bind(registro_academico)
        .bind(codigo_periodo)
        .bind(today.to_string())
        .execute(&mut *self.conn)
        .await?;
        let inscripcion = Inscripcion {
            codigo_inscripcion: codigo,
            registro_academico: registro_academico.to_owned(),
            codigo_periodo: codigo_periodo.to_owned(),
            fecha_inscripcion: today,
        };
        Ok((inscripcion, true))
    }

    async fn lock_inscripcion(
        &mut self,
        codigo_inscripcion: &str,
    ) -> Result<Option<Inscripcion>, StoreError> {
        let row = sqlx::query(SELECT_INSCRIPCION)
            .bind(codigo_inscripcion)
            .fetch_optional(&mut *self.conn)
            .await?;
        row.map(|r| inscripcion_from_row(&r)).transpose()
    }

    async fn held_groups(
        &mut self,
        codigo_inscripcion: &str,
    ) -> Result<Vec<HeldGroup>, StoreError> {
        let sql = format!(
            "SELECT d.codigo_detalle, {SLOT_COLUMNS} FROM detalle_inscripcion d \
             JOIN grupo g ON g.codigo_grupo = d.codigo_grupo \
             LEFT JOIN horario h ON h.codigo_horario = g.codigo_horario \
             WHERE d.codigo_inscripcion = $1 ORDER BY g.codigo_grupo"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(codigo_inscripcion)
            .fetch_all(&mut *self.conn)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(HeldGroup {
                    codigo_detalle: r.get("codigo_detalle"),
                    slot: slot_from_row(r)?,
                })
            })
            .collect()
    }

    async fn lock_groups(&mut self, sorted_codes: &[String]) -> Result<Vec<GroupSlot>, StoreError> {
        let codes = serde_json::to_string(sorted_codes).expect("strings serialise");
        let sql = format!(
            "SELECT {SLOT_COLUMNS} FROM grupo g \
             LEFT JOIN horario h ON h.codigo_horario = g.codigo_horario \
             WHERE g.codigo_grupo IN (SELECT value FROM json_each($1)) ORDER BY g.codigo_grupo"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(codes)
            .fetch_all(&mut *self.conn)
            .await?;
        rows.iter().map(slot_from_row).collect()
    }

    async fn passed_materias(
        &mut self,
        registro_academico: &str,
        siglas: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let siglas = serde_json::to_string(siglas).expect("strings serialise");
        let passed = sqlx::query_scalar(
            "SELECT DISTINCT sigla_materia FROM historial_academico \
             WHERE registro_academico = $1 AND estado = 'APROBADA' \
             AND sigla_materia IN (SELECT value FROM json_each($2))",
        )
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
        let siglas = serde_json::to_string(siglas).expect("strings serialise");
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
        let codigo = next_code(self.conn, "detalle", 'D').await?;
        sqlx::query(
            "INSERT INTO detalle_inscripcion (codigo_detalle, codigo_inscripcion, codigo_grupo) \
             VALUES ($1, $2, $3)",
        )
        .bind(&codigo)
        .bind(codigo_inscripcion)
        .bind(codigo_grupo)
        .execute(&mut *self.conn)
        .await?;
        Ok(codigo)
    }

    async fn take_seat(&mut self, codigo_grupo: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE grupo SET inscritos_actuales = inscritos_actuales + 1 \
             WHERE codigo_grupo = $1 AND inscritos_actuales < cupo",
        )
        .bind(codigo_grupo)
        .execute(&mut *self.conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
