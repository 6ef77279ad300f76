//! `GET /api/v1/audit`: the stored audit trail, filtered and paginated.

use std::collections::HashMap;

use axum::extract::{Query, State};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::AppState;
use super::error::ApiError;
use super::schemas;
use crate::audit::{AuditEventType, AuditFilter, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::domain::error::FieldError;

/// The query parameters the endpoint accepts; any other is rejected, so that a misspelt
/// filter cannot silently widen the result.
const PARAMETERS: &[&str] = &[
    "from",
    "to",
    "registro_academico",
    "event_type",
    "correlation_id",
    "codigo_grupo",
    "error_code",
    "limit",
    "cursor",
];

/// Maximum length of a text filter's value, in bytes.
const MAX_TEXT_FILTER: usize = 128;

fn invalid(name: &str, message: impl Into<String>, input: &str) -> FieldError {
    FieldError {
        field: format!("query -> {name}"),
        message: message.into(),
        kind: "value_error",
        input: json!(input.chars().take(MAX_TEXT_FILTER).collect::<String>()),
    }
}

fn parse_time(name: &str, text: &str, errors: &mut Vec<FieldError>) -> Option<i64> {
    match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(t) => Some((t.unix_timestamp_nanos() / 1_000_000) as i64),
        Err(_) => {
            errors.push(invalid(
                name,
                "must be an RFC 3339 date-time with an offset, such as 2024-08-01T08:00:00Z",
                text,
            ));
            None
        }
    }
}

/// Turns the query parameters into a filter, collecting every invalid one.
pub fn parse_filter(params: &HashMap<String, String>) -> Result<AuditFilter, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut filter = AuditFilter {
        limit: DEFAULT_PAGE_SIZE,
        ..AuditFilter::default()
    };
    let mut names: Vec<&String> = params.keys().collect();
    names.sort();

    for name in names {
        let value = params[name].as_str();
        match name.as_str() {
            "from" => filter.from_ms = parse_time(name, value, &mut errors),
            "to" => filter.to_ms = parse_time(name, value, &mut errors),
            "event_type" => match AuditEventType::parse(value) {
                Some(t) => filter.event_type = Some(t),
                None => {
                    let known: Vec<&str> = AuditEventType::ALL.iter().map(|t| t.as_str()).collect();
                    errors.push(invalid(
                        name,
                        format!("must be one of {}", known.join(", ")),
                        value,
                    ));
                }
            },
            "limit" => match value.parse::<i64>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => filter.limit = n,
                _ => errors.push(invalid(
                    name,
                    format!("must be an integer from 1 to {MAX_PAGE_SIZE}"),
                    value,
                )),
            },
            "cursor" => match value.parse::<i64>() {
                Ok(n) if n > 0 => filter.before_id = Some(n),
                _ => errors.push(invalid(
                    name,
                    "must be the next_cursor value of a previous page",
                    value,
                )),
            },
            text if PARAMETERS.contains(&text) => {
                if value.is_empty() || value.len() > MAX_TEXT_FILTER {
                    errors.push(invalid(
                        name,
                        format!("must be 1 to {MAX_TEXT_FILTER} characters"),
                        value,
                    ));
                    continue;
                }
                let slot = match text {
                    "registro_academico" => &mut filter.registro_academico,
                    "correlation_id" => &mut filter.correlation_id,
                    "codigo_grupo" => &mut filter.codigo_grupo,
                    _ => &mut filter.error_code,
                };
                *slot = Some(value.to_owned());
            }
            _ => errors.push(invalid(
                name,
                format!("is not a known filter; use {}", PARAMETERS.join(", ")),
                value,
            )),
        }
    }
    if let (Some(from), Some(to)) = (filter.from_ms, filter.to_ms)
        && from >= to
    {
        errors.push(invalid("to", "must be later than from", &params["to"]));
    }

    if errors.is_empty() {
        Ok(filter)
    } else {
        Err(errors)
    }
}

/// Lists audit events newest first. `next_cursor` is set when more may follow: pass it as
/// `cursor` to read the next page.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(
        ("from" = Option<String>, Query, description = "Events at or after this RFC 3339 time"),
        ("to" = Option<String>, Query, description = "Events before this RFC 3339 time"),
        ("registro_academico" = Option<String>, Query, description = "Student id"),
        ("event_type" = Option<String>, Query, description = "INSCRIPTION_FAILED, ADMIN_ACTION, …"),
        ("correlation_id" = Option<String>, Query, description = "Correlation id"),
        ("codigo_grupo" = Option<String>, Query, description = "Group code"),
        ("error_code" = Option<String>, Query, description = "Error code, such as GRUPO_SIN_CUPO"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000; default 100"),
        ("cursor" = Option<String>, Query, description = "The next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "Matching events, newest first", body = schemas::AuditPage),
        (status = 422, description = "Invalid request: VALIDATION_ERROR naming the field", body = schemas::ErrorEnvelope),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<axum::Json<Value>, ApiError> {
    let filter = parse_filter(&params).map_err(ApiError::validation)?;
    let events = state.store.audit_events(&filter).await?;
    let next_cursor = if events.len() as i64 == filter.limit {
        events.last().map(|e| e.id.to_string())
    } else {
        None
    };
    Ok(axum::Json(json!({
        "events": events,
        "count": events.len(),
        "limit": filter.limit,
        "next_cursor": next_cursor,
    })))
}
