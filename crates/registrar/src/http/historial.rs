//! `/api/v1/historial`: create, read, update and delete academic-record rows, a student's
//! record by period and in summary, and the reports by materia and by period.
//!
//! Checks run in this order: the body's shape (422 `VALIDATION_ERROR`), then `estado` (422
//! `ESTADO_MATERIA_INVALIDO`), then `nota_final` (422 `NOTA_INVALIDA`), then the rows the
//! request names (404), then uniqueness (409 `HISTORIAL_DUPLICADO`). An update looks its row
//! up (404 `HISTORIAL_NOT_FOUND`) before checking `estado` and `nota_final`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use super::inscripciones::{estudiante_json, periodo_json};
use super::periodos::optional_text;
use super::schemas;
use crate::clock;
use crate::domain::error::{DomainError, FieldError};
use crate::domain::historial::{
    HistorialCompleto, HistorialQuery, HistorialRecord, HistorialUpdate, MAX_OBSERVACION,
    NewHistorial, Tally, check_estado, check_new, group_by_periodo, historial_not_found,
    materia_not_found, resumen, round2, tally, tally_by_materia,
};
use crate::domain::validation::{
    MAX_CODIGO_PERIODO, MAX_REGISTRO_ACADEMICO, MAX_SIGLA_MATERIA, check_id,
};

fn record_json(r: &HistorialRecord) -> Value {
    json!({
        "id_historial": r.id_historial,
        "registro_academico": r.registro_academico,
        "sigla_materia": r.sigla_materia,
        "codigo_periodo": r.codigo_periodo,
        "nota_final": r.nota_final.map(round2),
        "estado": r.estado,
        "observacion": r.observacion,
        "fecha_registro": r.fecha_registro.map(|d| d.to_string()),
        "estudiante_nombre": format!("{} {}", r.estudiante_nombre, r.estudiante_apellido),
        "materia_nombre": r.materia_nombre,
        "periodo_nombre": r.periodo_nombre(),
    })
}

fn completo_json(c: &HistorialCompleto) -> Value {
    let mut value = record_json(&c.record);
    value["estudiante"] = estudiante_json(&c.estudiante);
    value["materia"] = json!(c.materia);
    value["periodo"] = periodo_json(&c.periodo);
    value
}

/// Builds a report's counts and averages as fields to merge into its object.
fn tally_fields(t: &Tally) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("total_registros".into(), json!(t.total_registros));
    fields.insert("total_estudiantes".into(), json!(t.total_estudiantes));
    fields.insert("aprobadas".into(), json!(t.aprobadas));
    fields.insert("reprobadas".into(), json!(t.reprobadas));
    fields.insert("retiradas".into(), json!(t.retiradas));
    fields.insert("tasa_aprobacion".into(), json!(t.tasa_aprobacion));
    fields.insert("promedio_nota".into(), json!(t.promedio_nota));
    fields
}

/// Parses the `id_historial` path segment.
fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().map_err(|_| {
        ApiError::validation(vec![FieldError {
            field: "path -> id_historial".to_owned(),
            message: "must be a whole number".to_owned(),
            kind: "int_parsing",
            input: json!(text),
        }])
    })
}

/// Reads a required id: a non-blank string of at most `max` characters, trimmed.
fn required_id(
    body: &Map<String, Value>,
    name: &str,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let field = format!("body -> {name}");
    match body.get(name) {
        Some(Value::String(s)) => check_id(errors, field, s, max),
        other => {
            errors.push(missing_or_wrong_type(field, other, "a string"));
            None
        }
    }
}

fn missing_or_wrong_type(field: String, value: Option<&Value>, expected: &str) -> FieldError {
    match value {
        None => FieldError {
            field,
            message: format!("is required and must be {expected}"),
            kind: "missing",
            input: Value::Null,
        },
        Some(v) => FieldError {
            field,
            message: format!("must be {expected}"),
            kind: "type_error",
            input: v.clone(),
        },
    }
}

/// Reads `estado` as sent, untrimmed. Whether its value is allowed is checked later, as
/// `ESTADO_MATERIA_INVALIDO`.
fn estado_field(
    body: &Map<String, Value>,
    required: bool,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let value = body.get("estado");
    match value {
        Some(Value::String(s)) => Some(s.clone()),
        None if !required => None,
        other => {
            errors.push(missing_or_wrong_type(
                "body -> estado".to_owned(),
                other,
                "one of the strings APROBADA, REPROBADA or RETIRADA",
            ));
            None
        }
    }
}

/// Reads `nota_final`: absent gives `None`, `null` gives `Some(None)`. A JSON number or a
/// numeric string is accepted, because the predecessor returned grades as strings such as
/// `"85.50"` and its clients may send them back that way. The range is checked later, as
/// `NOTA_INVALIDA`.
fn nota_field(body: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<Option<f64>> {
    let value = body.get("nota_final")?;
    let parsed = match value {
        Value::Null => return Some(None),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    };
    if parsed.is_none() {
        errors.push(FieldError {
            field: "body -> nota_final".to_owned(),
            message: "must be a number from 0 to 100, or null".to_owned(),
            kind: "decimal_parsing",
            input: value.clone(),
        });
    }
    parsed.map(Some)
}

fn parse_new(body: &Map<String, Value>) -> Result<NewHistorial, ApiError> {
    let mut errors = Vec::new();
    let registro_academico = required_id(
        body,
        "registro_academico",
        MAX_REGISTRO_ACADEMICO,
        &mut errors,
    );
    let sigla_materia = required_id(body, "sigla_materia", MAX_SIGLA_MATERIA, &mut errors);
    let codigo_periodo = required_id(body, "codigo_periodo", MAX_CODIGO_PERIODO, &mut errors);
    let estado = estado_field(body, true, &mut errors);
    let nota_final = nota_field(body, &mut errors).flatten();
    let observacion = optional_text(body, "observacion", MAX_OBSERVACION, &mut errors).flatten();
    match (registro_academico, sigla_materia, codigo_periodo, estado) {
        (Some(registro_academico), Some(sigla_materia), Some(codigo_periodo), Some(estado))
            if errors.is_empty() =>
        {
            Ok(NewHistorial {
                registro_academico,
                sigla_materia,
                codigo_periodo,
                nota_final,
                estado,
                observacion,
            })
        }
        _ => Err(ApiError::validation(errors)),
    }
}

fn parse_update(body: &Map<String, Value>) -> Result<HistorialUpdate, ApiError> {
    let mut errors = Vec::new();
    let update = HistorialUpdate {
        nota_final: nota_field(body, &mut errors),
        estado: estado_field(body, false, &mut errors),
        observacion: optional_text(body, "observacion", MAX_OBSERVACION, &mut errors),
    };
    if errors.is_empty() {
        Ok(update)
    } else {
        Err(ApiError::validation(errors))
    }
}

/// `POST /api/v1/historial/`: records a grade, dated today (UTC).
#[utoipa::path(
    post,
    path = "/api/v1/historial",
    tag = "historial",
    request_body = schemas::HistorialBody,
    responses(
        (status = 201, description = "Created, dated today (UTC)", body = schemas::HistorialRecord),
        (status = 404, description = "Student, materia or period not found", body = schemas::ErrorEnvelope),
        (status = 409, description = "HISTORIAL_DUPLICADO", body = schemas::ErrorEnvelope),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<impl IntoResponse, ApiError> {
    let new = check_new(&parse_new(&body)?)?;
    let record = state.store.create_historial(&new, clock::today()).await?;
    tracing::info!(
        id_historial = record.id_historial,
        registro_academico = %record.registro_academico,
        sigla_materia = %record.sigla_materia,
        codigo_periodo = %record.codigo_periodo,
        estado = %record.estado,
        "historial row created"
    );
    Ok((StatusCode::CREATED, axum::Json(record_json(&record))))
}

#[utoipa::path(
    get,
    path = "/api/v1/historial/{id_historial}",
    tag = "historial",
    params(("id_historial" = String, Path, description = "Academic record row id (an integer)")),
    responses(
        (status = 200, description = "The row, expanded", body = schemas::HistorialDetail),
        (status = 404, description = "Row not found", body = schemas::ErrorEnvelope),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let completo = state
        .store
        .historial(id)
        .await?
        .ok_or_else(|| historial_not_found(id))?;
    Ok(axum::Json(completo_json(&completo)))
}

async fn student_records(
    state: &AppState,
    registro_academico: &str,
    codigo_periodo: Option<&str>,
    estado: Option<&str>,
) -> Result<Vec<HistorialRecord>, ApiError> {
    if let Some(estado) = estado {
        check_estado(estado)?;
    }
    let query = HistorialQuery::Student {
        registro_academico,
        codigo_periodo,
        estado,
    };
    Ok(state.store.historial_records(query).await?)
}

fn list_json(records: &[HistorialRecord]) -> axum::Json<Value> {
    axum::Json(Value::Array(records.iter().map(record_json).collect()))
}

/// Returns a query parameter, taking an empty value as absent.
fn query_param<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// `GET …/estudiante/{registro_academico}?codigo_periodo=&estado=`: newest first. An unknown
/// student has an empty record.
#[utoipa::path(
    get,
    path = "/api/v1/historial/estudiante/{registro_academico}",
    tag = "historial",
    params(
        ("registro_academico" = String, Path, description = "Student id"),
        ("codigo_periodo" = Option<String>, Query, description = "Only this period"),
        ("estado" = Option<String>, Query, description = "Only APROBADA, REPROBADA or RETIRADA"),
    ),
    responses(
        (status = 200, description = "The student's rows, newest first", body = Vec<schemas::HistorialRecord>),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn by_student(
    State(state): State<AppState>,
    Path(registro_academico): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<axum::Json<Value>, ApiError> {
    let codigo_periodo = query_param(&params, "codigo_periodo");
    // An empty estado is validated as sent, so it is rejected like any other invalid value.
    let estado = params.get("estado").map(String::as_str);
    let records = student_records(&state, &registro_academico, codigo_periodo, estado).await?;
    Ok(list_json(&records))
}

#[utoipa::path(
    get,
    path = "/api/v1/historial/estudiante/{registro_academico}/estado/{estado}",
    tag = "historial",
    params(
        ("registro_academico" = String, Path, description = "Student id"),
        ("estado" = String, Path, description = "APROBADA, REPROBADA or RETIRADA"),
    ),
    responses(
        (status = 200, description = "The student's rows in that state", body = Vec<schemas::HistorialRecord>),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn by_estado(
    State(state): State<AppState>,
    Path((registro_academico, estado)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    let records = student_records(&state, &registro_academico, None, Some(&estado)).await?;
    Ok(list_json(&records))
}

#[utoipa::path(
    get,
    path = "/api/v1/historial/estudiante/{registro_academico}/por-periodo",
    tag = "historial",
    params(("registro_academico" = String, Path, description = "Student id")),
    responses(
        (status = 200, description = "The student's rows grouped by period", body = Vec<schemas::HistorialPorPeriodo>),
    )
)]
pub async fn por_periodo(
    State(state): State<AppState>,
    Path(registro_academico): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let records = student_records(&state, &registro_academico, None, None).await?;
    let periods: Vec<Value> = group_by_periodo(&records)
        .iter()
        .map(|p| {
            json!({
                "codigo_periodo": p.codigo_periodo,
                "periodo_nombre": p.periodo_nombre,
                "materias": p.materias.iter().map(record_json).collect::<Vec<_>>(),
                "promedio_periodo": p.promedio_periodo,
            })
        })
        .collect();
    Ok(axum::Json(Value::Array(periods)))
}

#[utoipa::path(
    get,
    path = "/api/v1/historial/estudiante/{registro_academico}/resumen",
    tag = "historial",
    params(("registro_academico" = String, Path, description = "Student id")),
    responses(
        (status = 200, description = "The student's totals and average", body = schemas::HistorialResumen),
    )
)]
pub async fn resumen_estudiante(
    State(state): State<AppState>,
    Path(registro_academico): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let records = student_records(&state, &registro_academico, None, None).await?;
    let r = resumen(&records);
    Ok(axum::Json(json!({
        "registro_academico": registro_academico,
        "total_materias": r.total_materias,
        "materias_aprobadas": r.materias_aprobadas,
        "materias_reprobadas": r.materias_reprobadas,
        "materias_retiradas": r.materias_retiradas,
        "promedio_general": r.promedio_general,
        "creditos_aprobados": r.creditos_aprobados,
    })))
}

/// `PUT /api/v1/historial/{id_historial}`: sets the fields present in the body.
#[utoipa::path(
    put,
    path = "/api/v1/historial/{id_historial}",
    tag = "historial",
    request_body = schemas::HistorialBody,
    params(("id_historial" = String, Path, description = "Academic record row id (an integer)")),
    responses(
        (status = 200, description = "The updated row", body = schemas::HistorialRecord),
        (status = 404, description = "Row not found", body = schemas::ErrorEnvelope),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<axum::Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let update = parse_update(&body)?;
    let record = state.store.update_historial(id, &update).await?;
    tracing::info!(id_historial = id, estado = %record.estado, "historial row updated");
    Ok(axum::Json(record_json(&record)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/historial/{id_historial}",
    tag = "historial",
    params(("id_historial" = String, Path, description = "Academic record row id (an integer)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Row not found", body = schemas::ErrorEnvelope),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn delete_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    state.store.delete_historial(id).await?;
    tracing::info!(id_historial = id, "historial row deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET …/reportes/estudiantes-por-materia/{sigla}?codigo_periodo=`: the materia's students
/// with their states and grades, by period and student, and the totals over them.
#[utoipa::path(
    get,
    path = "/api/v1/historial/reportes/estudiantes-por-materia/{sigla_materia}",
    tag = "historial",
    params(
        ("sigla_materia" = String, Path, description = "Materia code"),
        ("codigo_periodo" = Option<String>, Query, description = "Only this period"),
    ),
    responses(
        (status = 200, description = "The materia's students and totals", body = schemas::ReporteMateria),
        (status = 404, description = "Materia or period not found", body = schemas::ErrorEnvelope),
    )
)]
pub async fn report_materia(
    State(state): State<AppState>,
    Path(sigla): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<axum::Json<Value>, ApiError> {
    let materia = state
        .store
        .materia(&sigla)
        .await?
        .ok_or_else(|| materia_not_found(&sigla))?;
    let codigo_periodo = query_param(&params, "codigo_periodo");
    if let Some(codigo) = codigo_periodo
        && state.store.periodo(codigo).await?.is_none()
    {
        return Err(DomainError::periodo_not_found(codigo).into());
    }
    let records = state
        .store
        .historial_records(HistorialQuery::Materia {
            sigla_materia: &materia.sigla,
            codigo_periodo,
        })
        .await?;

    let mut report = Map::new();
    report.insert("sigla_materia".into(), json!(materia.sigla));
    report.insert("materia_nombre".into(), json!(materia.nombre));
    report.insert("creditos".into(), json!(materia.creditos));
    report.insert("codigo_periodo".into(), json!(codigo_periodo));
    report.extend(tally_fields(&tally(records.iter())));
    let estudiantes: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "id_historial": r.id_historial,
                "registro_academico": r.registro_academico,
                "estudiante_nombre": format!("{} {}", r.estudiante_nombre, r.estudiante_apellido),
                "codigo_periodo": r.codigo_periodo,
                "periodo_nombre": r.periodo_nombre(),
                "estado": r.estado,
                "nota_final": r.nota_final.map(round2),
                "observacion": r.observacion,
                "fecha_registro": r.fecha_registro.map(|d| d.to_string()),
            })
        })
        .collect();
    report.insert("estudiantes".into(), Value::Array(estudiantes));
    Ok(axum::Json(Value::Object(report)))
}

/// `GET …/reportes/rendimiento-periodo/{codigo}`: pass rate, mean grade and counts for the
/// period, and the same per materia.
#[utoipa::path(
    get,
    path = "/api/v1/historial/reportes/rendimiento-periodo/{codigo_periodo}",
    tag = "historial",
    params(("codigo_periodo" = String, Path, description = "Period code")),
    responses(
        (status = 200, description = "The period's totals, overall and per materia", body = schemas::ReportePeriodo),
        (status = 404, description = "Period not found", body = schemas::ErrorEnvelope),
    )
)]
pub async fn report_periodo(
    State(state): State<AppState>,
    Path(codigo): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let periodo = state
        .store
        .periodo(&codigo)
        .await?
        .ok_or_else(|| DomainError::periodo_not_found(&codigo))?;
    let records = state
        .store
        .historial_records(HistorialQuery::Periodo {
            codigo_periodo: &periodo.codigo_periodo,
        })
        .await?;

    let mut report = Map::new();
    report.insert("codigo_periodo".into(), json!(periodo.codigo_periodo));
    let nombre = periodo
        .semestre
        .as_deref()
        .unwrap_or(&periodo.codigo_periodo);
    report.insert("periodo_nombre".into(), json!(nombre));
    report.insert("estado_periodo".into(), json!(periodo.estado));
    report.extend(tally_fields(&tally(records.iter())));
    let materias: Vec<Value> = tally_by_materia(&records)
        .iter()
        .map(|m| {
            let mut item = Map::new();
            item.insert("sigla_materia".into(), json!(m.sigla_materia));
            item.insert("materia_nombre".into(), json!(m.materia_nombre));
            item.extend(tally_fields(&m.tally));
            Value::Object(item)
        })
        .collect();
    report.insert("materias".into(), Value::Array(materias));
    Ok(axum::Json(Value::Object(report)))
}
