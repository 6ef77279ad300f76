//! Row decoding for SQLite, where dates, times and day lists are stored as text.

use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use time::macros::format_description;
use time::{Date, Time};

use crate::domain::historial::HistorialRecord;
use crate::domain::model::{Estudiante, GroupSlot, Horario, Inscripcion, Periodo};
use crate::domain::views::MateriaRef;
use crate::jobs::model::{Job, JobKind, JobState};
use crate::store::StoreError;

pub fn parse_date(table: &'static str, text: &str) -> Result<Date, StoreError> {
    Date::parse(text, format_description!("[year]-[month]-[day]"))
        .map_err(|e| StoreError::corrupt(table, format!("date {text:?}: {e}")))
}

pub fn parse_optional_date(
    table: &'static str,
    text: Option<String>,
) -> Result<Option<Date>, StoreError> {
    text.map(|t| parse_date(table, &t)).transpose()
}

pub fn parse_time(table: &'static str, text: &str) -> Result<Time, StoreError> {
    Time::parse(text, format_description!("[hour]:[minute]:[second]"))
        .map_err(|e| StoreError::corrupt(table, format!("time {text:?}: {e}")))
}

pub fn parse_days(table: &'static str, text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(table, format!("dias_semana: {e}")))
}

fn parse_json(table: &'static str, text: Option<String>) -> Result<Option<Value>, StoreError> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::corrupt(table, e)))
        .transpose()
}

pub fn estudiante_from_row(row: &SqliteRow) -> Result<Estudiante, StoreError> {
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

pub fn periodo_from_row(row: &SqliteRow) -> Result<Periodo, StoreError> {
    Ok(Periodo {
        codigo_periodo: row.try_get("codigo_periodo")?,
        semestre: row.try_get("semestre")?,
        fecha_inicio: parse_optional_date("periodo_academico", row.try_get("fecha_inicio")?)?,
        fecha_fin: parse_optional_date("periodo_academico", row.try_get("fecha_fin")?)?,
        estado: row.try_get("estado")?,
    })
}

pub fn inscripcion_from_row(row: &SqliteRow) -> Result<Inscripcion, StoreError> {
    let fecha: String = row.try_get("fecha_inscripcion")?;
    Ok(Inscripcion {
        codigo_inscripcion: row.try_get("codigo_inscripcion")?,
        registro_academico: row.try_get("registro_academico")?,
        codigo_periodo: row.try_get("codigo_periodo")?,
        fecha_inscripcion: parse_date("inscripcion", &fecha)?,
    })
}

/// Decodes a group with its horario columns (`dias_semana`, `hora_inicio`, `hora_fin`, all
/// null when the group has no horario).
pub fn slot_from_row(row: &SqliteRow) -> Result<GroupSlot, StoreError> {
    let dias: Option<String> = row.try_get("dias_semana")?;
    let horario = match dias {
        Some(dias) => {
            let inicio: String = row.try_get("hora_inicio")?;
            let fin: String = row.try_get("hora_fin")?;
            Some(Horario {
                dias_semana: parse_days("horario", &dias)?,
                hora_inicio: parse_time("horario", &inicio)?,
                hora_fin: parse_time("horario", &fin)?,
            })
        }
        None => None,
    };
    Ok(GroupSlot {
        codigo_grupo: row.try_get("codigo_grupo")?,
        sigla_materia: row.try_get("sigla_materia")?,
        cupo: row.try_get("cupo")?,
        inscritos_actuales: row.try_get("inscritos_actuales")?,
        horario,
    })
}

/// Decodes the columns of `select_historial_record!`.
pub fn historial_from_row(row: &SqliteRow) -> Result<HistorialRecord, StoreError> {
    Ok(HistorialRecord {
        id_historial: row.try_get("id_historial")?,
        registro_academico: row.try_get("registro_academico")?,
        sigla_materia: row.try_get("sigla_materia")?,
        codigo_periodo: row.try_get("codigo_periodo")?,
        nota_final: row.try_get("nota_final")?,
        estado: row.try_get("estado")?,
        observacion: row.try_get("observacion")?,
        fecha_registro: parse_optional_date("historial_academico", row.try_get("fecha_registro")?)?,
        estudiante_nombre: row.try_get("estudiante_nombre")?,
        estudiante_apellido: row.try_get("estudiante_apellido")?,
        materia_nombre: row.try_get("materia_nombre")?,
        creditos: row.try_get("creditos")?,
        periodo_semestre: row.try_get("periodo_semestre")?,
    })
}

pub fn materia_from_row(row: &SqliteRow) -> Result<MateriaRef, StoreError> {
    Ok(MateriaRef {
        sigla: row.try_get("sigla")?,
        nombre: row.try_get("nombre")?,
        creditos: row.try_get("creditos")?,
        es_electiva: row.try_get("es_electiva")?,
    })
}

pub const JOB_COLUMNS: &str = "task_id, kind, state, payload, meta, result, correlation_id, \
     request_id, attempts, created_at, started_at, completed_at";

pub fn job_from_row(row: &SqliteRow) -> Result<Job, StoreError> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let payload: String = row.try_get("payload")?;
    Ok(Job {
        task_id: row.try_get("task_id")?,
        kind: JobKind::parse(&kind).ok_or_else(|| StoreError::corrupt("job", kind.clone()))?,
        state: JobState::parse(&state).ok_or_else(|| StoreError::corrupt("job", state.clone()))?,
        payload: serde_json::from_str(&payload).map_err(|e| StoreError::corrupt("job", e))?,
        meta: parse_json("job", row.try_get("meta")?)?,
        result: parse_json("job", row.try_get("result")?)?,
        correlation_id: row.try_get("correlation_id")?,
        request_id: row.try_get("request_id")?,
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
    })
}
