//! Row decoding for PostgreSQL, where dates, times, day lists and job documents have native
//! types. Counts such as `cupo` and `attempts` are `integer` columns (4 bytes) and widen to
//! the model's `i64`. Job timestamps are `bigint` and decode as `i64` directly.

use sqlx::Row;
use sqlx::postgres::PgRow;
use time::{Date, Time};

use crate::domain::historial::HistorialRecord;
use crate::domain::model::{Estudiante, GroupSlot, Horario, Inscripcion, Periodo};
use crate::domain::views::MateriaRef;
use crate::jobs::model::{Job, JobKind, JobState};
use crate::store::StoreError;

/// Reads an `integer` column as `i64`.
pub fn get_i64(row: &PgRow, column: &str) -> Result<i64, StoreError> {
    Ok(i64::from(row.try_get::<i32, _>(column)?))
}

pub fn estudiante_from_row(row: &PgRow) -> Result<Estudiante, StoreError> {
    Ok(Estudiante {
        registro_academico: row.try_get("registro_academico")?,
        codigo_carrera: row.try_get("codigo_carrera")?,
        nombre: row.try_get("nombre")?,
        apellido: row.try_get("apellido")?,
        ci: row.try_get("ci")?,
        correo: row.try_get("correo")?,
        telefono: row.try_get("telefono")?,
        direccion: row.try_get("direccion")?,
        estado_academico: row.try_get("estado_academico")?,
    })
}

pub fn periodo_from_row(row: &PgRow) -> Result<Periodo, StoreError> {
    Ok(Periodo {
        codigo_periodo: row.try_get("codigo_periodo")?,
        semestre: row.try_get("semestre")?,
        fecha_inicio: row.try_get("fecha_inicio")?,
        fecha_fin: row.try_get("fecha_fin")?,
        estado: row.try_get("estado")?,
    })
}

pub fn inscripcion_from_row(row: &PgRow) -> Result<Inscripcion, StoreError> {
    Ok(Inscripcion {
        codigo_inscripcion: row.try_get("codigo_inscripcion")?,
        registro_academico: row.try_get("registro_academico")?,
        codigo_periodo: row.try_get("codigo_periodo")?,
        fecha_inscripcion: row.try_get::<Date, _>("fecha_inscripcion")?,
    })
}

/// Decodes a group with its horario columns (`dias_semana`, `hora_inicio`, `hora_fin`, all
/// null when the group has no horario).
pub fn slot_from_row(row: &PgRow) -> Result<GroupSlot, StoreError> {
    let dias: Option<Vec<String>> = row.try_get("dias_semana")?;
    let horario = match dias {
        Some(dias_semana) => Some(Horario {
            dias_semana,
            hora_inicio: row.try_get::<Time, _>("hora_inicio")?,
            hora_fin: row.try_get::<Time, _>("hora_fin")?,
        }),
        None => None,
    };
    Ok(GroupSlot {
        codigo_grupo: row.try_get("codigo_grupo")?,
        sigla_materia: row.try_get("sigla_materia")?,
        cupo: get_i64(row, "cupo")?,
        inscritos_actuales: get_i64(row, "inscritos_actuales")?,
        horario,
    })
}

/// Decodes the columns of `select_historial_record!`.
pub fn historial_from_row(row: &PgRow) -> Result<HistorialRecord, StoreError> {
    Ok(HistorialRecord {
        id_historial: row.try_get("id_historial")?,
        registro_academico: row.try_get("registro_academico")?,
        sigla_materia: row.try_get("sigla_materia")?,
        codigo_periodo: row.try_get("codigo_periodo")?,
        nota_final: row.try_get("nota_final")?,
        estado: row.try_get("estado")?,
        observacion: row.try_get("observacion")?,
        fecha_registro: row.try_get("fecha_registro")?,
        estudiante_nombre: row.try_get("estudiante_nombre")?,
        estudiante_apellido: row.try_get("estudiante_apellido")?,
        materia_nombre: row.try_get("materia_nombre")?,
        creditos: get_i64(row, "creditos")?,
        periodo_semestre: row.try_get("periodo_semestre")?,
    })
}

pub fn materia_from_row(row: &PgRow) -> Result<MateriaRef, StoreError> {
    Ok(MateriaRef {
        sigla: row.try_get("sigla")?,
        nombre: row.try_get("nombre")?,
        creditos: get_i64(row, "creditos")?,
        es_electiva: row.try_get("es_electiva")?,
    })
}

pub fn job_from_row(row: &PgRow) -> Result<Job, StoreError> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    Ok(Job {
        task_id: row.try_get("task_id")?,
        kind: JobKind::parse(&kind).ok_or_else(|| StoreError::corrupt("job", kind.clone()))?,
        state: JobState::parse(&state).ok_or_else(|| StoreError::corrupt("job", state.clone()))?,
        payload: row.try_get("payload")?,
        meta: row.try_get("meta")?,
        result: row.try_get("result")?,
        correlation_id: row.try_get("correlation_id")?,
        request_id: row.try_get("request_id")?,
        attempts: get_i64(row, "attempts")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
    })
}
