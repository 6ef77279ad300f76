//! `/api/v1/inscripciones`: create (queued or synchronous), read, update, delete, and add or
//! drop one group of an inscription.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use time::Date;

use super::error::ApiError;
use super::extract::JsonBody;
use super::queue::enqueue_inscription;
use super::schemas;
use super::{AppState, RequestContext};
use crate::audit::{self, AuditEvent, AuditEventType, enrollment};
use crate::clock;
use crate::domain::enrollment::EnrollError;
use crate::domain::error::{DomainError, FieldError};
use crate::domain::model::{Estudiante, Periodo};
use crate::domain::validation::{InscripcionCreate, validate_enrollment};
use crate::domain::views::{DetalleSimple, InscripcionFull};

pub fn estudiante_json(e: &Estudiante) -> Value {
    json!({
        "registro_academico": e.registro_academico,
        "codigo_carrera": e.codigo_carrera,
        "nombre": e.nombre,
        "apellido": e.apellido,
        "estado_academico": e.estado_academico,
        "ci": e.ci,
        "correo": e.correo,
        "telefono": e.telefono,
        "direccion": e.direccion,
    })
}

pub fn periodo_json(p: &Periodo) -> Value {
    json!({
        "codigo_periodo": p.codigo_periodo,
        "semestre": p.semestre,
        "fecha_inicio": p.fecha_inicio.map(|d| d.to_string()),
        "fecha_fin": p.fecha_fin.map(|d| d.to_string()),
        "estado": p.estado,
    })
}

fn inscripcion_json(full: &InscripcionFull) -> Value {
    let i = &full.inscripcion;
    json!({
        "codigo_inscripcion": i.codigo_inscripcion,
        "registro_academico": i.registro_academico,
        "codigo_periodo": i.codigo_periodo,
        "fecha_inscripcion": i.fecha_inscripcion.to_string(),
        "estudiante": full.estudiante.as_ref().map(estudiante_json),
        "periodo_academico": full.periodo.as_ref().map(periodo_json),
        "detalles": full.detalles,
    })
}

async fn load_full(state: &AppState, codigo: &str) -> Result<InscripcionFull, ApiError> {
    state
        .store
        .inscripcion(codigo)
        .await?
        .ok_or_else(|| DomainError::inscripcion_not_found(codigo).into())
}

/// `POST /api/v1/inscripciones/`: queues the enrollment and responds 202 at once.
#[utoipa::path(
    post,
    path = "/api/v1/inscripciones",
    tag = "inscripciones",
    request_body = crate::domain::validation::InscripcionCreate,
    responses(
        (status = 202, description = "Queued", body = schemas::AsyncCreated),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn create_async(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(body): JsonBody<InscripcionCreate>,
) -> Result<impl IntoResponse, ApiError> {
    let request = validate_enrollment(&body, state.config.max_grupos_por_solicitud, "body")
        .map_err(ApiError::validation)?;
    let task_id = enqueue_inscription(&state, &ctx, &request, Vec::new()).await?;
    let response = json!({
        "message": "Inscripción encolada para procesamiento",
        "task_id": task_id,
        "status": "PENDING",
        "registro_academico": request.registro_academico,
        "monitor_url": format!("/api/v1/queue/tasks/{task_id}/status"),
        "correlation_id": ctx.correlation_id,
    });
    Ok((StatusCode::ACCEPTED, axum::Json(response)))
}

/// `POST /api/v1/inscripciones/sync`: enrolls within the request; an existing inscription
/// for the period is `INSCRIPCION_DUPLICADA`.
#[utoipa::path(
    post,
    path = "/api/v1/inscripciones/sync",
    tag = "inscripciones",
    request_body = crate::domain::validation::InscripcionCreate,
    responses(
        (status = 201, description = "Enrolled in every group", body = schemas::Inscripcion),
        (status = 403, description = "Student blocked, inactive or suspended", body = schemas::ErrorEnvelope),
        (status = 404, description = "Student, period or group not found", body = schemas::ErrorEnvelope),
        (status = 409, description = "Rejected by an enrollment rule: GRUPO_SIN_CUPO, CONFLICTO_HORARIO, INSCRIPCION_DUPLICADA, …", body = schemas::ErrorEnvelope),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn create_sync(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<InscripcionCreate>,
) -> Result<impl IntoResponse, ApiError> {
    let request = validate_enrollment(&body, state.config.max_grupos_por_solicitud, "body")
        .map_err(ApiError::validation)?;
    let rules = state.config.enrollment_rules();
    let store = state.store.as_ref();
    audit::record(store, enrollment::requested("create_sync", &request, None)).await;
    let outcome = match store.enroll_sync(&request, &rules, clock::today()).await {
        Ok(outcome) => outcome,
        Err(EnrollError::Rejected(rejection)) => {
            let event = enrollment::rejected("create_sync", &request, &rejection);
            audit::record(store, event).await;
            return Err(rejection.into());
        }
        Err(e) => return Err(e.into()),
    };
    audit::record(
        store,
        enrollment::created("create_sync", &request, &outcome),
    )
    .await;
    let codigo = &outcome.inscripcion.codigo_inscripcion;
    let reread = state.store.inscripcion(codigo).await;
    if let Err(e) = &reread {
        tracing::warn!(error = %e, codigo_inscripcion = %codigo, "reading the new inscription failed after commit; responding with what the enrollment wrote");
    }
    let full = match reread.ok().flatten() {
        Some(full) => full,
        // The enrollment committed, but the read failed or a delete removed the row since,
        // so the response carries what the enrollment wrote.
        None => InscripcionFull {
            inscripcion: outcome.inscripcion.clone(),
            estudiante: None,
            periodo: None,
            detalles: outcome
                .new_details
                .iter()
                .map(|d| DetalleSimple {
                    codigo_detalle: d.codigo_detalle.clone(),
                    codigo_inscripcion: codigo.clone(),
                    codigo_grupo: d.codigo_grupo.clone(),
                })
                .collect(),
        },
    };
    Ok((StatusCode::CREATED, axum::Json(inscripcion_json(&full))))
}

#[utoipa::path(
    get,
    path = "/api/v1/inscripciones/{codigo_inscripcion}",
    tag = "inscripciones",
    params(("codigo_inscripcion" = String, Path, description = "Inscription code")),
    responses(
        (status = 200, description = "The inscription", body = schemas::Inscripcion),
        (status = 404, description = "Inscription not found", body = schemas::ErrorEnvelope),
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    Path(codigo): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let full = load_full(&state, &codigo).await?;
    Ok(axum::Json(inscripcion_json(&full)))
}

#[utoipa::path(
    get,
    path = "/api/v1/inscripciones/estudiante/{registro_academico}",
    tag = "inscripciones",
    params(("registro_academico" = String, Path, description = "Student id")),
    responses(
        (status = 200, description = "The student's inscriptions, newest first", body = schemas::InscripcionList),
    )
)]
pub async fn by_student(
    State(state): State<AppState>,
    Path(registro_academico): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let list = state
        .store
        .inscripciones_by_student(&registro_academico)
        .await?;
    let items: Vec<Value> = list
        .iter()
        .map(|item| {
            let i = &item.inscripcion;
            json!({
                "codigo_inscripcion": i.codigo_inscripcion,
                "registro_academico": i.registro_academico,
                "codigo_periodo": i.codigo_periodo,
                "fecha_inscripcion": i.fecha_inscripcion.to_string(),
                "detalles": item.detalles,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "inscripciones": items })))
}

#[utoipa::path(
    get,
    path = "/api/v1/inscripciones/periodo/{codigo_periodo}",
    tag = "inscripciones",
    params(("codigo_periodo" = String, Path, description = "Period code")),
    responses(
        (status = 200, description = "The period's inscriptions", body = schemas::InscripcionList),
    )
)]
pub async fn by_period(
    State(state): State<AppState>,
    Path(codigo_periodo): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let list = state.store.inscripciones_by_period(&codigo_periodo).await?;
    let items: Vec<Value> = list
        .iter()
        .map(|i| {
            json!({
                "codigo_inscripcion": i.codigo_inscripcion,
                "registro_academico": i.registro_academico,
                "codigo_periodo": i.codigo_periodo,
                "fecha_inscripcion": i.fecha_inscripcion.to_string(),
            })
        })
        .collect();
    Ok(axum::Json(json!({ "inscripciones": items })))
}

#[derive(Debug, Deserialize)]
pub struct InscripcionUpdate {
    #[serde(default)]
    fecha_inscripcion: Option<String>,
}

#[utoipa::path(
    put,
    path = "/api/v1/inscripciones/{codigo_inscripcion}",
    tag = "inscripciones",
    request_body = schemas::InscripcionUpdateBody,
    params(("codigo_inscripcion" = String, Path, description = "Inscription code")),
    responses(
        (status = 200, description = "The updated inscription", body = schemas::Inscripcion),
        (status = 404, description = "Inscription not found", body = schemas::ErrorEnvelope),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Path(codigo): Path<String>,
    JsonBody(body): JsonBody<InscripcionUpdate>,
) -> Result<axum::Json<Value>, ApiError> {
    if let Some(text) = &body.fecha_inscripcion {
        let fecha = parse_date_field("body -> fecha_inscripcion", text)?;
        state.store.update_inscripcion(&codigo, fecha).await?;
    }
    let full = load_full(&state, &codigo).await?;
    Ok(axum::Json(inscripcion_json(&full)))
}

/// Parses a `YYYY-MM-DD` date, naming `field` when it is not one.
pub fn parse_date_field(field: &str, text: &str) -> Result<Date, ApiError> {
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| {
        ApiError::validation(vec![FieldError {
            field: field.to_owned(),
            message: "must be a date in the form YYYY-MM-DD".to_owned(),
            kind: "date_parsing",
            input: json!(text),
        }])
    })
}

#[utoipa::path(
    delete,
    path = "/api/v1/inscripciones/{codigo_inscripcion}",
    tag = "inscripciones",
    params(("codigo_inscripcion" = String, Path, description = "Inscription code")),
    responses(
        (status = 204, description = "Deleted; its seats are free"),
        (status = 404, description = "Inscription not found", body = schemas::ErrorEnvelope),
    )
)]
pub async fn delete_one(
    State(state): State<AppState>,
    Path(codigo): Path<String>,
) -> Result<StatusCode, ApiError> {
    let inscripcion = state.store.delete_inscripcion(&codigo).await?;
    tracing::info!(
        codigo_inscripcion = %codigo,
        registro_academico = %inscripcion.registro_academico,
        codigo_periodo = %inscripcion.codigo_periodo,
        "inscription deleted"
    );
    let event = AuditEvent::new(AuditEventType::InscriptionDeleted, "inscripcion", "delete")
        .entity_id(&codigo)
        .student(&inscripcion.registro_academico)
        .periodo(&inscripcion.codigo_periodo);
    audit::record(state.store.as_ref(), event).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/v1/inscripciones/{codigo_inscripcion}/grupos/{codigo_grupo}",
    tag = "inscripciones",
    params(
        ("codigo_inscripcion" = String, Path, description = "Inscription code"),
        ("codigo_grupo" = String, Path, description = "Group code"),
    ),
    responses(
        (status = 200, description = "Group added", body = schemas::GroupAdded),
        (status = 404, description = "Inscription or group not found", body = schemas::ErrorEnvelope),
        (status = 409, description = "Rejected by an enrollment rule: GRUPO_SIN_CUPO, CONFLICTO_HORARIO, INSCRIPCION_DUPLICADA, …", body = schemas::ErrorEnvelope),
    )
)]
pub async fn add_group(
    State(state): State<AppState>,
    Path((codigo, grupo)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    let rules = state.config.enrollment_rules();
    let store = state.store.as_ref();
    let outcome = match store
        .add_group(&codigo, &grupo, &rules, clock::today())
        .await
    {
        Ok(outcome) => outcome,
        Err(EnrollError::Rejected(rejection)) => {
            let mut event = AuditEvent::new(
                AuditEventType::InscriptionFailed,
                "inscripcion",
                "add_group",
            )
            .entity_id(&codigo)
            .grupo(&grupo)
            .error_code(rejection.code.as_str())
            .data(json!({ "grupos": [&grupo], "message": rejection.message }));
            if let Some(periodo) = rejection
                .details
                .get("codigo_periodo")
                .and_then(Value::as_str)
            {
                event = event.periodo(periodo);
            }
            audit::record(store, event).await;
            return Err(rejection.into());
        }
        Err(e) => return Err(e.into()),
    };
    let event = AuditEvent::new(AuditEventType::GroupAdded, "inscripcion", "add_group")
        .entity_id(&codigo)
        .student(&outcome.inscripcion.registro_academico)
        .periodo(&outcome.inscripcion.codigo_periodo)
        .grupo(&grupo);
    audit::record(store, event).await;
    let detalle = outcome
        .new_details
        .first()
        .map(|d| d.codigo_detalle.clone())
        .ok_or_else(ApiError::internal)?;
    Ok(axum::Json(json!({
        "message": format!("Grupo {grupo} agregado a la inscripción {codigo}"),
        "detalle": detalle,
    })))
}

#[utoipa::path(
    delete,
    path = "/api/v1/inscripciones/{codigo_inscripcion}/grupos/{codigo_grupo}",
    tag = "inscripciones",
    params(
        ("codigo_inscripcion" = String, Path, description = "Inscription code"),
        ("codigo_grupo" = String, Path, description = "Group code"),
    ),
    responses(
        (status = 200, description = "Group dropped; its seat is free", body = schemas::GroupDropped),
        (status = 404, description = "Inscription detail not found", body = schemas::ErrorEnvelope),
        (status = 409, description = "The period is not ACTIVO", body = schemas::ErrorEnvelope),
    )
)]
pub async fn drop_group(
    State(state): State<AppState>,
    Path((codigo, grupo)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    let inscripcion = state.store.drop_group(&codigo, &grupo).await?;
    tracing::info!(codigo_inscripcion = %codigo, codigo_grupo = %grupo, "group dropped");
    let event = AuditEvent::new(AuditEventType::GroupRemoved, "inscripcion", "drop_group")
        .entity_id(&codigo)
        .student(&inscripcion.registro_academico)
        .periodo(&inscripcion.codigo_periodo)
        .grupo(&grupo);
    audit::record(state.store.as_ref(), event).await;
    Ok(axum::Json(json!({
        "status": "SUCCESS",
        "message": format!("Grupo {grupo} retirado de la inscripción {codigo}"),
        "codigo_inscripcion": codigo,
        "codigo_grupo": grupo,
    })))
}

#[utoipa::path(
    get,
    path = "/api/v1/inscripciones/estadisticas/general",
    tag = "inscripciones",
    responses(
        (status = 200, description = "Enrollment statistics", body = schemas::EnrollmentStatistics),
    )
)]
pub async fn statistics(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let stats = state.store.enrollment_statistics().await?;
    let per_period: serde_json::Map<String, Value> = stats
        .inscripciones_por_periodo
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    Ok(axum::Json(json!({
        "total_inscripciones": stats.total_inscripciones,
        "inscripciones_por_periodo": per_period,
        "estudiantes_activos": stats.estudiantes_activos,
        "grupos_disponibles": stats.grupos_disponibles,
    })))
}
