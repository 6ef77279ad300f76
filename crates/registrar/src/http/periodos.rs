//! `/api/v1/periodos`: create, list, read, update, activate and close academic periods.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Map, Value};

use super::AppState;
use super::admin::require_admin;
use super::error::ApiError;
use super::extract::JsonBody;
use super::inscripciones::{parse_date_field, periodo_json};
use super::schemas;
use crate::audit::{self, AuditEvent, AuditEventType};
use crate::domain::error::{DomainError, FieldError};
use crate::domain::model::Periodo;
use crate::domain::periodo::check_dates;
use crate::domain::validation::{MAX_CODIGO_PERIODO, MAX_ESTADO_PERIODO, MAX_SEMESTRE, check_id};
use crate::domain::views::PeriodoUpdate;

/// Reads an optional string field: absent gives `None`, `null` gives `Some(None)`.
pub(super) fn optional_text(
    body: &Map<String, Value>,
    name: &str,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<Option<String>> {
    let value = body.get(name)?;
    let field = format!("body -> {name}");
    match value {
        Value::Null => Some(None),
        // PostgreSQL cannot store NUL in text, so both stores reject it alike.
        Value::String(s) if s.contains('\0') => {
            errors.push(FieldError {
                field,
                message: "must not contain NUL characters".into(),
                kind: "value_error",
                input: Value::Null,
            });
            None
        }
        Value::String(s) if s.chars().count() <= max => Some(Some(s.trim().to_owned())),
        Value::String(_) => {
            errors.push(FieldError {
                field,
                message: format!("must be at most {max} characters long"),
                kind: "value_error",
                input: value.clone(),
            });
            None
        }
        _ => {
            errors.push(FieldError {
                field,
                message: "must be a string or null".into(),
                kind: "type_error",
                input: value.clone(),
            });
            None
        }
    }
}

fn optional_date(
    body: &Map<String, Value>,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Option<time::Date>> {
    let value = body.get(name)?;
    let field = format!("body -> {name}");
    match value {
        Value::Null => Some(None),
        Value::String(s) => match parse_date_field(&field, s) {
            Ok(d) => Some(Some(d)),
            Err(_) => {
                errors.push(FieldError {
                    field,
                    message: "must be a date in the form YYYY-MM-DD".into(),
                    kind: "date_parsing",
                    input: value.clone(),
                });
                None
            }
        },
        _ => {
            errors.push(FieldError {
                field,
                message: "must be a date string (YYYY-MM-DD) or null".into(),
                kind: "type_error",
                input: value.clone(),
            });
            None
        }
    }
}

fn read_fields(body: &Map<String, Value>, errors: &mut Vec<FieldError>) -> PeriodoUpdate {
    PeriodoUpdate {
        semestre: optional_text(body, "semestre", MAX_SEMESTRE, errors),
        fecha_inicio: optional_date(body, "fecha_inicio", errors),
        fecha_fin: optional_date(body, "fecha_fin", errors),
        estado: optional_text(body, "estado", MAX_ESTADO_PERIODO, errors),
    }
}

fn parse_update(body: &Map<String, Value>) -> Result<PeriodoUpdate, ApiError> {
    let mut errors = Vec::new();
    let update = read_fields(body, &mut errors);
    if errors.is_empty() {
        Ok(update)
    } else {
        Err(ApiError::validation(errors))
    }
}

/// Period writes are operator endpoints: one request can open or close enrollment for
/// everybody.
#[utoipa::path(
    post,
    path = "/api/v1/periodos",
    tag = "periodos",
    request_body = schemas::PeriodoBody,
    responses(
        (status = 201, description = "Created", body = schemas::Periodo),
        (status = 409, description = "Duplicate code, or a second ACTIVO period", body = schemas::ErrorEnvelope),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
        (status = 401, description = "Operator endpoint without the bearer token", body = schemas::ErrorEnvelope),
        (status = 403, description = "Wrong token, or a non-loopback client while ADMIN_TOKEN is unset", body = schemas::ErrorEnvelope),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &headers, peer.as_ref().map(|Extension(p)| p))?;
    let mut errors = Vec::new();
    let codigo = match body.get("codigo_periodo") {
        Some(Value::String(s)) => check_id(
            &mut errors,
            "body -> codigo_periodo".into(),
            s,
            MAX_CODIGO_PERIODO,
        ),
        other => {
            errors.push(FieldError {
                field: "body -> codigo_periodo".into(),
                message: "is required and must be a string".into(),
                kind: if other.is_none() {
                    "missing"
                } else {
                    "type_error"
                },
                input: other.cloned().unwrap_or(Value::Null),
            });
            None
        }
    };
    let update = read_fields(&body, &mut errors);
    let (Some(codigo), true) = (codigo, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let periodo = Periodo {
        codigo_periodo: codigo,
        semestre: update.semestre.clone().flatten(),
        fecha_inicio: update.fecha_inicio.flatten(),
        fecha_fin: update.fecha_fin.flatten(),
        estado: update.estado.clone().flatten(),
    };
    check_dates(&periodo)?;
    let created = state.store.create_periodo(&periodo).await?;
    admin_event(&state, "create_period", &created.codigo_periodo).await;
    Ok((StatusCode::CREATED, axum::Json(periodo_json(&created))))
}

#[utoipa::path(
    get,
    path = "/api/v1/periodos",
    tag = "periodos",
    responses(
        (status = 200, description = "Every period, by code", body = Vec<schemas::Periodo>),
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let periodos = state.store.list_periodos().await?;
    Ok(axum::Json(Value::Array(
        periodos.iter().map(periodo_json).collect(),
    )))
}

#[utoipa::path(
    get,
    path = "/api/v1/periodos/activo",
    tag = "periodos",
    responses(
        (status = 200, description = "The ACTIVO period", body = schemas::Periodo),
        (status = 404, description = "Active period not found", body = schemas::ErrorEnvelope),
    )
)]
pub async fn active(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let periodo = state
        .store
        .active_periodo()
        .await?
        .ok_or_else(|| ApiError::not_found("No academic period is ACTIVO"))?;
    Ok(axum::Json(periodo_json(&periodo)))
}

#[utoipa::path(
    get,
    path = "/api/v1/periodos/{codigo_periodo}",
    tag = "periodos",
    params(("codigo_periodo" = String, Path, description = "Period code")),
    responses(
        (status = 200, description = "The period", body = schemas::Periodo),
        (status = 404, description = "Period not found", body = schemas::ErrorEnvelope),
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    Path(codigo): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let periodo = state
        .store
        .periodo(&codigo)
        .await?
        .ok_or_else(|| DomainError::periodo_not_found(&codigo))?;
    Ok(axum::Json(periodo_json(&periodo)))
}

#[utoipa::path(
    put,
    path = "/api/v1/periodos/{codigo_periodo}",
    tag = "periodos",
    request_body = schemas::PeriodoBody,
    params(("codigo_periodo" = String, Path, description = "Period code")),
    responses(
        (status = 200, description = "The updated period", body = schemas::Periodo),
        (status = 404, description = "Period not found", body = schemas::ErrorEnvelope),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
        (status = 401, description = "Operator endpoint without the bearer token", body = schemas::ErrorEnvelope),
        (status = 403, description = "Wrong token, or a non-loopback client while ADMIN_TOKEN is unset", body = schemas::ErrorEnvelope),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(codigo): Path<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<axum::Json<Value>, ApiError> {
    require_admin(&state, &headers, peer.as_ref().map(|Extension(p)| p))?;
    let update = parse_update(&body)?;
    let periodo = state.store.update_periodo(&codigo, &update).await?;
    admin_event(&state, "update_period", &codigo).await;
    Ok(axum::Json(periodo_json(&periodo)))
}

#[utoipa::path(
    post,
    path = "/api/v1/periodos/{codigo_periodo}/activar",
    tag = "periodos",
    params(("codigo_periodo" = String, Path, description = "Period code")),
    responses(
        (status = 200, description = "Now ACTIVO; the previous active period is CERRADO", body = schemas::Periodo),
        (status = 404, description = "Period not found", body = schemas::ErrorEnvelope),
        (status = 401, description = "Operator endpoint without the bearer token", body = schemas::ErrorEnvelope),
        (status = 403, description = "Wrong token, or a non-loopback client while ADMIN_TOKEN is unset", body = schemas::ErrorEnvelope),
    )
)]
pub async fn activate(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(codigo): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    require_admin(&state, &headers, peer.as_ref().map(|Extension(p)| p))?;
    let periodo = state.store.activate_periodo(&codigo).await?;
    tracing::info!(codigo_periodo = %codigo, "period activated");
    admin_event(&state, "activate_period", &codigo).await;
    Ok(axum::Json(periodo_json(&periodo)))
}

/// `POST /api/v1/periodos/{codigo}/cerrar`, an operator endpoint: sets the period `CERRADO`,
/// which stops enrollment and drops in it. It derives no grades from the enrollment, because
/// grades arrive through historial creates or a `historial.csv` import.
#[utoipa::path(
    post,
    path = "/api/v1/periodos/{codigo_periodo}/cerrar",
    tag = "periodos",
    params(("codigo_periodo" = String, Path, description = "Period code")),
    responses(
        (status = 200, description = "Now CERRADO", body = schemas::Periodo),
        (status = 404, description = "Period not found", body = schemas::ErrorEnvelope),
        (status = 401, description = "Operator endpoint without the bearer token", body = schemas::ErrorEnvelope),
        (status = 403, description = "Wrong token, or a non-loopback client while ADMIN_TOKEN is unset", body = schemas::ErrorEnvelope),
    )
)]
pub async fn close(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(codigo): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    require_admin(&state, &headers, peer.as_ref().map(|Extension(p)| p))?;
    let periodo = state.store.close_periodo(&codigo).await?;
    tracing::info!(codigo_periodo = %codigo, "period closed");
    admin_event(&state, "close_period", &codigo).await;
    Ok(axum::Json(periodo_json(&periodo)))
}

/// Records an operator's change to a period in the audit trail.
async fn admin_event(state: &AppState, action: &str, codigo_periodo: &str) {
    let event = AuditEvent::new(AuditEventType::AdminAction, "periodo", action)
        .entity_id(codigo_periodo)
        .periodo(codigo_periodo);
    audit::record(state.store.as_ref(), event).await;
}
