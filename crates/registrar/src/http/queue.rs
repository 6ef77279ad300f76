//! `/api/v1/queue`: enqueue enrollments (one request, per-group views, bulk), and read and
//! cancel tasks. The monitoring endpoints under the same prefix are in `monitoring`.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::admin::require_admin;
use super::error::ApiError;
use super::extract::JsonBody;
use super::idempotent::{enqueue_once, header_key};
use super::schemas;
use super::{AppState, RequestContext};
use crate::audit::{self, AuditEvent, AuditEventType};
use crate::clock;
use crate::domain::enrollment::EnrollmentRequest;
use crate::domain::error::{ErrorCode, FieldError};
use crate::domain::validation::{InscripcionCreate, validate_enrollment};
use crate::idempotency::{self, Endpoint};
use crate::jobs::model::{CancelOutcome, Job, JobKind, JobState, NewJob, TaskRef};
use crate::jobs::result::group_view_result;

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Queues one enrollment job, with per-group view ids when `views` is non-empty, once per
/// idempotency key, and responds with `respond(task_id)` (or the stored response of
/// an earlier request with the same key).
pub async fn enqueue_inscription(
    state: &AppState,
    ctx: &RequestContext,
    headers: &HeaderMap,
    endpoint: Endpoint,
    request: &EnrollmentRequest,
    views: Vec<(String, String)>,
    respond: impl FnOnce(&str) -> Value,
) -> Result<Response, ApiError> {
    let key = idempotency::request_key(endpoint, header_key(headers)?.as_deref(), request);
    let task_id = new_id();
    let job = NewJob {
        task_id: task_id.clone(),
        kind: JobKind::Inscription,
        payload: serde_json::to_value(request).map_err(|_| ApiError::internal())?,
        correlation_id: ctx.correlation_id.clone(),
        request_id: Some(ctx.request_id.clone()),
        idempotency_key: Some(key.key.clone()),
        group_views: views,
    };
    let body = respond(&task_id);
    let owner = (
        request.registro_academico.as_str(),
        request.codigo_periodo.as_str(),
    );
    let event = audit::enrollment::requested("enqueue", request, Some(&task_id));
    let response = enqueue_once(
        state,
        ctx,
        key,
        endpoint,
        job,
        Some(owner),
        &body,
        Some(event),
    )
    .await?;
    tracing::info!(
        task_id = %task_id,
        registro_academico = %request.registro_academico,
        codigo_periodo = %request.codigo_periodo,
        grupos = request.grupos.len(),
        status = response.status().as_u16(),
        "enrollment request answered"
    );
    Ok(response)
}

fn task_response(task_id: &str, message: String, ctx: &RequestContext) -> Value {
    json!({
        "task_id": task_id,
        "status": "QUEUED",
        "message": message,
        "progress": null,
        "data": null,
        "correlation_id": ctx.correlation_id,
    })
}

#[utoipa::path(
    post,
    path = "/api/v1/queue/inscripciones/async",
    tag = "queue",
    request_body = crate::domain::validation::InscripcionCreate,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters; a repeat of the request replays its response (see docs/resilience.md)")),
    responses(
        (status = 202, description = "Queued", body = schemas::TaskResponse),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn enqueue_async(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<InscripcionCreate>,
) -> Result<Response, ApiError> {
    let request = validate_enrollment(&body, state.config.max_grupos_por_solicitud, "body")
        .map_err(ApiError::validation)?;
    let message = format!(
        "Inscripción de {} en {} grupo(s) encolada",
        request.registro_academico,
        request.grupos.len()
    );
    enqueue_inscription(
        &state,
        &ctx,
        &headers,
        Endpoint::Async,
        &request,
        Vec::new(),
        |task_id| task_response(task_id, message, &ctx),
    )
    .await
}

/// Queues one atomic job for the whole request. Each group gets a view id that reports the
/// same outcome from that group's side.
#[utoipa::path(
    post,
    path = "/api/v1/queue/inscripciones/async-by-groups",
    tag = "queue",
    request_body = crate::domain::validation::InscripcionCreate,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters; a repeat of the request replays its response (see docs/resilience.md)")),
    responses(
        (status = 202, description = "Queued as one atomic job with a view id per group", body = schemas::MultipleTasksResponse),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn enqueue_by_groups(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<InscripcionCreate>,
) -> Result<Response, ApiError> {
    let request = validate_enrollment(&body, state.config.max_grupos_por_solicitud, "body")
        .map_err(ApiError::validation)?;
    let views: Vec<(String, String)> = request
        .grupos
        .iter()
        .map(|g| (new_id(), g.clone()))
        .collect();
    let group_tasks: Vec<Value> = views
        .iter()
        .map(|(view_id, grupo)| json!({ "grupo": grupo, "task_id": view_id }))
        .collect();
    let total_groups = views.len();
    let idempotency_key = idempotency::request_key(
        Endpoint::ByGroups,
        header_key(&headers)?.as_deref(),
        &request,
    )
    .key;
    enqueue_inscription(
        &state,
        &ctx,
        &headers,
        Endpoint::ByGroups,
        &request,
        views,
        |main_task_id| {
            json!({
                "main_task_id": main_task_id,
                "group_tasks": group_tasks,
                "status": "QUEUED",
                "message": format!("Inscripción encolada como una tarea atómica para {total_groups} grupo(s)"),
                "correlation_id": ctx.correlation_id,
                "total_groups": total_groups,
                "idempotency_key": idempotency_key,
                "idempotent_replay": false,
            })
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/api/v1/queue/inscripciones/bulk-async",
    tag = "queue",
    request_body = Vec<crate::domain::validation::InscripcionCreate>,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters; a repeat of the request replays its response (see docs/resilience.md)")),
    responses(
        (status = 202, description = "Queued; items run in order, each atomic", body = schemas::TaskResponse),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn enqueue_bulk(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Vec<InscripcionCreate>>,
) -> Result<Response, ApiError> {
    if body.is_empty() {
        return Err(ApiError::validation(vec![FieldError {
            field: "body".into(),
            message: "must contain at least one inscription".into(),
            kind: "value_error",
            input: json!([]),
        }]));
    }
    let mut items = Vec::with_capacity(body.len());
    let mut errors = Vec::new();
    for (i, raw) in body.iter().enumerate() {
        match validate_enrollment(
            raw,
            state.config.max_grupos_por_solicitud,
            &format!("body -> {i}"),
        ) {
            Ok(item) => items.push(item),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }

    let key = idempotency::bulk_key(header_key(&headers)?.as_deref(), &items);
    let task_id = new_id();
    let job = NewJob {
        task_id: task_id.clone(),
        kind: JobKind::Bulk,
        payload: json!({ "items": items }),
        correlation_id: ctx.correlation_id.clone(),
        request_id: Some(ctx.request_id.clone()),
        idempotency_key: Some(key.key.clone()),
        group_views: Vec::new(),
    };
    let message = format!("Procesamiento de {} inscripciones encolado", items.len());
    let body = task_response(&task_id, message, &ctx);
    tracing::info!(task_id = %task_id, items = items.len(), "bulk enrollment requested");
    let event = audit::enrollment::bulk_requested(&task_id, items.len());
    enqueue_once(
        &state,
        &ctx,
        key,
        Endpoint::Bulk,
        job,
        None,
        &body,
        Some(event),
    )
    .await
}

#[utoipa::path(
    post,
    path = "/api/v1/queue/health-check",
    tag = "queue",
    responses(
        (status = 202, description = "A no-op job queued for a worker", body = schemas::TaskResponse),
    )
)]
pub async fn health_check(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<impl IntoResponse, ApiError> {
    let task_id = new_id();
    let job = NewJob {
        task_id: task_id.clone(),
        kind: JobKind::HealthCheck,
        payload: json!({}),
        correlation_id: ctx.correlation_id.clone(),
        request_id: Some(ctx.request_id.clone()),
        idempotency_key: None,
        group_views: Vec::new(),
    };
    state.store.enqueue(std::slice::from_ref(&job)).await?;
    state.wake_workers();
    let message = "Verificación de salud encolada".to_owned();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(task_response(&task_id, message, &ctx)),
    ))
}

fn expiry_cutoff(state: &AppState) -> i64 {
    clock::now_ms() - (state.config.result_ttl_seconds as i64) * 1000
}

/// Builds the meta a task reports in its current state, as Celery clients read it.
fn status_meta(job: &Job) -> Value {
    match (job.state, &job.meta) {
        (JobState::Success, _) => Value::Null,
        (_, Some(meta)) if meta.is_object() => meta.clone(),
        (JobState::Started, _) if job.kind == JobKind::Inscription => json!({
            "message": format!("Iniciando inscripción para {} grupo(s)", job.payload["grupos"].as_array().map_or(0, Vec::len)),
            "registro_academico": job.payload["registro_academico"],
            "codigo_periodo": job.payload["codigo_periodo"],
            "total_grupos": job.payload["grupos"].as_array().map_or(0, Vec::len),
            "procesados": 0,
        }),
        (state, _) => json!({ "message": format!("Task is in {} state", state.as_str()) }),
    }
}

/// Builds the status object of one task id. `multiple` selects the batch endpoint's
/// conventions.
fn status_json(id: &str, task: &TaskRef, multiple: bool) -> Value {
    let (job, grupo) = match task {
        TaskRef::Job(job) => (job, None),
        TaskRef::GroupView { job, codigo_grupo } => (job, Some(codigo_grupo.as_str())),
    };
    let result = match (&job.result, grupo) {
        (Some(result), Some(g)) => Some(group_view_result(result, g)),
        (result, _) => result.clone(),
    };
    let meta = if multiple && job.state == JobState::Success {
        result.clone().unwrap_or(Value::Null)
    } else {
        status_meta(job)
    };
    let (current, total) = match &job.meta {
        Some(m) if job.kind == JobKind::Bulk => (m["processed"].clone(), m["total"].clone()),
        _ => (Value::Null, Value::Null),
    };
    json!({
        "task_id": id,
        "status": job.state.as_str(),
        "current": current,
        "total": total,
        "meta": meta,
        "result": result,
        "correlation_id": job.correlation_id,
        "main_task_id": job.task_id,
        "grupo": grupo,
        "attempts": job.attempts,
        "created_at": clock::rfc3339_from_ms(job.created_at),
        "started_at": job.started_at.map(clock::rfc3339_from_ms),
        "completed_at": job.completed_at.map(clock::rfc3339_from_ms),
    })
}

fn task_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::TaskNotFound,
        format!("Task {id} is unknown or its result has expired"),
        json!({ "task_id": id }),
    )
}

#[utoipa::path(
    get,
    path = "/api/v1/queue/tasks/{task_id}/status",
    tag = "queue",
    params(("task_id" = String, Path, description = "Task id or group view id")),
    responses(
        (status = 200, description = "The task's state", body = schemas::TaskStatus),
        (status = 404, description = "TASK_NOT_FOUND: unknown or expired", body = schemas::ErrorEnvelope),
    )
)]
pub async fn status(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let task = state
        .store
        .find_task(&task_id, expiry_cutoff(&state))
        .await?
        .ok_or_else(|| task_not_found(&task_id))?;
    Ok(axum::Json(status_json(&task_id, &task, false)))
}

/// Maximum ids per batch status request.
const MAX_STATUS_IDS: usize = 500;

/// Accepts a JSON array of ids, or a single string (PowerShell sends one-element arrays so).
#[utoipa::path(
    post,
    path = "/api/v1/queue/tasks/status/multiple",
    tag = "queue",
    request_body = Vec<String>,
    responses(
        (status = 200, description = "One status per id, in request order", body = Vec<schemas::TaskStatus>),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn status_multiple(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Value>,
) -> Result<axum::Json<Value>, ApiError> {
    let ids: Vec<String> = match &body {
        Value::String(id) => vec![id.clone()],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::validation(vec![FieldError {
                        field: format!("body -> {i}"),
                        message: "must be a task id string".into(),
                        kind: "type_error",
                        input: v.clone(),
                    }])
                })
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(ApiError::validation(vec![FieldError {
                field: "body".into(),
                message: "must be a JSON array of task id strings".into(),
                kind: "type_error",
                input: other.clone(),
            }]));
        }
    };
    if ids.len() > MAX_STATUS_IDS {
        return Err(ApiError::validation(vec![FieldError {
            field: "body".into(),
            message: format!("must contain at most {MAX_STATUS_IDS} ids; split the request"),
            kind: "value_error",
            input: json!(ids.len()),
        }]));
    }

    let cutoff = expiry_cutoff(&state);
    let found = match state.store.find_tasks(&ids, cutoff).await {
        Ok(found) => found.into_iter().map(Ok).collect::<Vec<_>>(),
        Err(e) => {
            tracing::warn!(error = %e, ids = ids.len(), "batch task lookup failed");
            ids.iter().map(|_| Err(())).collect()
        }
    };
    let mut out = Vec::with_capacity(ids.len());
    for (id, lookup) in ids.iter().zip(found) {
        let item = match lookup {
            Ok(Some(task)) => status_json(id, &task, true),
            Ok(None) => json!({
                "task_id": id,
                "status": "NOT_FOUND",
                "current": null,
                "total": null,
                "meta": { "message": "Task is unknown or its result has expired" },
                "result": null,
            }),
            Err(()) => {
                json!({
                    "task_id": id,
                    "status": "ERROR",
                    "meta": { "error_type": "StoreError", "error_message": "the task store could not be read" },
                })
            }
        };
        out.push(item);
    }
    Ok(axum::Json(Value::Array(out)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/queue/tasks/{task_id}",
    tag = "queue",
    params(("task_id" = String, Path, description = "Task id")),
    responses(
        (status = 204, description = "Revoked before it finished"),
        (status = 404, description = "TASK_NOT_FOUND", body = schemas::ErrorEnvelope),
        (status = 409, description = "TASK_ALREADY_FINISHED", body = schemas::ErrorEnvelope),
        (status = 401, description = "Operator endpoint without the bearer token", body = schemas::ErrorEnvelope),
        (status = 403, description = "Wrong token, or a non-loopback client while ADMIN_TOKEN is unset", body = schemas::ErrorEnvelope),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(task_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&state, &headers, peer.as_ref().map(|Extension(p)| p))?;
    match state.store.cancel_job(&task_id, clock::now_ms()).await? {
        CancelOutcome::Revoked => {
            tracing::info!(task_id = %task_id, "task revoked");
            let event = AuditEvent::new(AuditEventType::AdminAction, "job", "cancel_task")
                .entity_id(&task_id);
            audit::record(state.store.as_ref(), event).await;
            Ok(StatusCode::NO_CONTENT)
        }
        CancelOutcome::AlreadyFinished(job_state) => Err(ApiError::new(
            ErrorCode::TaskAlreadyFinished,
            format!(
                "Task {task_id} already finished in state {}",
                job_state.as_str()
            ),
            json!({ "task_id": task_id, "status": job_state.as_str() }),
        )),
        CancelOutcome::NotFound => Err(task_not_found(&task_id)),
    }
}
