//! `/api/v1/inscripciones`: create (queued or synchronous), read, update, delete, and add or
//! drop one group of an inscription.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use time::Date;
use tracing::Instrument;

use super::error::ApiError;
use super::extract::JsonBody;
use super::idempotent::{
    answer, cached_replay, header_key, invalidate, new_record, pending_timeout_ms, raw_json,
    remember,
};
use super::queue::enqueue_inscription;
use super::resilience::breaker_open;
use super::schemas;
use super::{AppState, RequestContext};
use crate::audit::{self, AuditEvent, AuditEventType, enrollment};
use crate::clock;
use crate::domain::enrollment::{EnrollError, EnrollmentOutcome, EnrollmentRequest};
use crate::domain::error::{DomainError, ErrorCode, FieldError};
use crate::domain::model::{Estudiante, Periodo};
use crate::domain::validation::{InscripcionCreate, validate_enrollment};
use crate::domain::views::{DetalleSimple, InscripcionFull};
use crate::idempotency::{self, Claim, Endpoint};
use crate::saga::model::{Saga, SagaStatus};
use crate::saga::runner::{SagaIds, job_result, saga_event};

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
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters; a repeat of the request replays its response (see docs/resilience.md)")),
    responses(
        (status = 202, description = "Queued", body = schemas::AsyncCreated),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn create_async(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<InscripcionCreate>,
) -> Result<Response, ApiError> {
    let request = validate_enrollment(&body, state.config.max_grupos_por_solicitud, "body")
        .map_err(ApiError::validation)?;
    let registro_academico = request.registro_academico.clone();
    enqueue_inscription(
        &state,
        &ctx,
        &headers,
        Endpoint::Create,
        &request,
        Vec::new(),
        |task_id| {
            json!({
                "message": "Inscripción encolada para procesamiento",
                "task_id": task_id,
                "status": "PENDING",
                "registro_academico": registro_academico,
                "monitor_url": format!("/api/v1/queue/tasks/{task_id}/status"),
                "correlation_id": ctx.correlation_id,
            })
        },
    )
    .await
}

/// `POST /api/v1/inscripciones/sync`: enrolls within the request; an existing inscription
/// for the period is `INSCRIPCION_DUPLICADA`. The request's saga runs to its end before the
/// response: a declined fee withdraws the enrollment and returns the error.
#[utoipa::path(
    post,
    path = "/api/v1/inscripciones/sync",
    tag = "inscripciones",
    request_body = crate::domain::validation::InscripcionCreate,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters; a repeat of the request replays its response (see docs/resilience.md)")),
    responses(
        (status = 201, description = "Enrolled in every group", body = schemas::Inscripcion),
        (status = 402, description = "FEE_REJECTED: billing declined the fee and the enrollment was withdrawn", body = schemas::ErrorEnvelope),
        (status = 503, description = "CIRCUIT_BREAKER_OPEN, or FEE_ASSESSMENT_FAILED when billing could not be reached", body = schemas::ErrorEnvelope),
        (status = 403, description = "Student blocked, inactive or suspended", body = schemas::ErrorEnvelope),
        (status = 404, description = "Student, period or group not found", body = schemas::ErrorEnvelope),
        (status = 409, description = "Rejected by an enrollment rule: GRUPO_SIN_CUPO, CONFLICTO_HORARIO, INSCRIPCION_DUPLICADA, …", body = schemas::ErrorEnvelope),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn create_sync(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<InscripcionCreate>,
) -> Result<Response, ApiError> {
    let request = validate_enrollment(&body, state.config.max_grupos_por_solicitud, "body")
        .map_err(ApiError::validation)?;
    let key = idempotency::request_key(Endpoint::Sync, header_key(&headers)?.as_deref(), &request);
    if let Some(response) = cached_replay(&state, &key).await {
        return Ok(response);
    }
    // While billing's breaker is open, the fee cannot be assessed, so the request is
    // rejected before enrolling rather than enrolled and withdrawn.
    if state.saga.has_billing()
        && let Some(billing) = state.saga.breakers().get("billing")
        && let Err(rejected) = billing.try_acquire().await
    {
        let event = AuditEvent::new(
            AuditEventType::InscriptionFailed,
            "inscripcion",
            "create_sync",
        )
        .student(&request.registro_academico)
        .periodo(&request.codigo_periodo)
        .error_code(ErrorCode::CircuitBreakerOpen.as_str())
        .data(json!({ "grupos": request.grupos, "circuit_breaker": rejected.breaker }));
        audit::record(state.store.as_ref(), event).await;
        return Err(breaker_open(&rejected));
    }
    let owner = (
        request.registro_academico.as_str(),
        request.codigo_periodo.as_str(),
    );
    let record = new_record(
        &state,
        &ctx,
        key.clone(),
        Endpoint::Sync,
        None,
        Some(owner),
        (StatusCode::CREATED, String::new()),
    );
    let claim = state
        .store
        .claim_idempotency(&record, pending_timeout_ms(&state))
        .await?;
    if claim != Claim::Fresh {
        if matches!(claim, Claim::Replay(_)) {
            state.idempotency.hit();
            remember(&state, &key, &claim).await;
        }
        return Ok(answer(claim, &key));
    }
    state.idempotency.miss();
    // The enrollment and its saga run in their own task, so a client that disconnects, or
    // a request that hits its timeout, does not stop a saga half way. The task still records
    // the outcome for the key, so a retry gets the response.
    let ids = crate::telemetry::context::current();
    let work = async move {
        let outcome = enroll_with_saga(&state, &ctx, &request).await;
        match &outcome {
            Ok(body) => {
                let text = body.to_string();
                if let Err(e) = state
                    .store
                    .complete_idempotency(&key.key, StatusCode::CREATED.as_u16(), &text)
                    .await
                {
                    tracing::warn!(error = %e, "recording the response for replays failed; a repeat runs afresh after the pending timeout");
                }
            }
            Err(_) => {
                if let Err(e) = state.store.release_idempotency(&key.key).await {
                    tracing::warn!(error = %e, "releasing the idempotency key failed; it frees itself after the pending timeout");
                }
            }
        }
        outcome.map(|body| raw_json(StatusCode::CREATED, body.to_string()))
    }
    .instrument(tracing::Span::current());
    let task = match ids {
        Some(ids) => tokio::spawn(crate::telemetry::context::scope(ids, work)),
        None => tokio::spawn(work),
    };
    task.await.map_err(|e| {
        tracing::error!(error = %e, "the enrollment task panicked");
        ApiError::internal()
    })?
}

/// Builds the error a request returns when its saga did not complete.
fn saga_error(saga: &Saga) -> ApiError {
    if saga.status == SagaStatus::Compensating {
        // Billing cannot be reached to cancel the fee yet; the workers finish the
        // compensation, which withdraws the enrollment.
        return ApiError::new(
            ErrorCode::FeeAssessmentFailed,
            "El servicio de cobro no respondió; la inscripción será retirada en cuanto se anule el cobro",
            json!({ "saga_id": saga.saga_id, "saga_status": "compensating", "reason": saga.error }),
        );
    }
    let result = job_result(saga);
    let code = result["error_code"]
        .as_str()
        .and_then(ErrorCode::parse)
        .unwrap_or(ErrorCode::SagaCompensationFailed);
    ApiError::new(
        code,
        result["error"].as_str().unwrap_or_default(),
        result["details"].clone(),
    )
}

/// Runs the synchronous enrollment and its saga; returns the created inscription.
async fn enroll_with_saga(
    state: &AppState,
    ctx: &RequestContext,
    request: &EnrollmentRequest,
) -> Result<Value, ApiError> {
    let rules = state.config.enrollment_rules();
    let ids = SagaIds {
        task_id: None,
        correlation_id: &ctx.correlation_id,
        request_id: Some(&ctx.request_id),
    };
    // The store builds the saga inside its transaction; this keeps a copy to drive after
    // the commit.
    let written = std::sync::Mutex::new(None);
    let saga_for = |outcome: &EnrollmentOutcome| {
        let saga = state.saga.saga_for_enrollment(&ids, request, outcome);
        *written.lock().expect("lock") = Some(saga.clone());
        saga
    };
    let store = state.store.as_ref();
    audit::record(store, enrollment::requested("create_sync", request, None)).await;
    let enrolled = store
        .enroll_sync(request, &rules, clock::today(), Some(&saga_for))
        .await;
    let outcome = match enrolled {
        Ok(outcome) => outcome,
        Err(EnrollError::Rejected(rejection)) => {
            let event = enrollment::rejected("create_sync", request, &rejection);
            audit::record(store, event).await;
            return Err(rejection.into());
        }
        Err(e) => return Err(e.into()),
    };
    audit::record(store, enrollment::created("create_sync", request, &outcome)).await;
    let codigo = &outcome.inscripcion.codigo_inscripcion;
    let saga = written.lock().expect("lock").take();
    if let Some(mut saga) = saga
        && !saga.status.is_finished()
    {
        audit::record(
            store,
            saga_event(&saga, AuditEventType::SagaStarted, "start"),
        )
        .await;
        let status = state
            .saga
            .run_to_end(&mut saga, std::time::Duration::from_secs(5))
            .await?;
        if status != SagaStatus::Completed {
            return Err(saga_error(&saga));
        }
    }
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
    Ok(inscripcion_json(&full))
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
    invalidate(
        &state,
        &inscripcion.registro_academico,
        &inscripcion.codigo_periodo,
    )
    .await;
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
    Extension(ctx): Extension<RequestContext>,
    Path((codigo, grupo)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    let rules = state.config.enrollment_rules();
    let store = state.store.as_ref();
    // The added group is a request of its own: its saga assesses the fee for that group.
    let ids = SagaIds {
        task_id: None,
        correlation_id: &ctx.correlation_id,
        request_id: Some(&ctx.request_id),
    };
    let written = std::sync::Mutex::new(None);
    let saga_for = |outcome: &EnrollmentOutcome| {
        let request = EnrollmentRequest {
            registro_academico: outcome.inscripcion.registro_academico.clone(),
            codigo_periodo: outcome.inscripcion.codigo_periodo.clone(),
            grupos: vec![grupo.clone()],
        };
        let saga = state.saga.saga_for_enrollment(&ids, &request, outcome);
        *written.lock().expect("lock") = Some(saga.clone());
        saga
    };
    let outcome = match store
        .add_group(&codigo, &grupo, &rules, clock::today(), Some(&saga_for))
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
    let saga = written.lock().expect("lock").take();
    if let Some(mut saga) = saga.filter(|s| !s.status.is_finished()) {
        audit::record(
            store,
            saga_event(&saga, AuditEventType::SagaStarted, "start"),
        )
        .await;
        let status = state
            .saga
            .run_to_end(&mut saga, std::time::Duration::from_secs(5))
            .await?;
        if status != SagaStatus::Completed {
            return Err(saga_error(&saga));
        }
    }
    invalidate(
        &state,
        &outcome.inscripcion.registro_academico,
        &outcome.inscripcion.codigo_periodo,
    )
    .await;
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
    invalidate(
        &state,
        &inscripcion.registro_academico,
        &inscripcion.codigo_periodo,
    )
    .await;
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
