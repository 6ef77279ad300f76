//! `/api/v1/queue` monitoring and operator endpoints of the resilience features: the
//! idempotency records and their cache, and the saga logs.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::Extension;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::admin::require_admin;
use super::error::ApiError;
use crate::audit::{self, AuditEvent, AuditEventType};
use crate::clock;
use crate::domain::error::{ErrorCode, FieldError};
use crate::idempotency;
use crate::resilience::breaker::{BreakerState, Rejected};
use crate::saga::model::{SagaQuery, SagaStatus};

/// Builds the idempotency section of the monitoring endpoints: records in the database, and
/// this process's replay hits and misses.
pub async fn idempotency_stats(state: &AppState) -> Value {
    let total = state.store.idempotency_count(clock::now_ms()).await;
    let redis_connected = match &state.redis {
        Some(redis) => redis.ping().await.is_ok(),
        None => false,
    };
    let hits = state.idempotency.hits.load(Ordering::Relaxed);
    let misses = state.idempotency.misses.load(Ordering::Relaxed);
    let lookups = hits + misses;
    let backend = if state.redis.is_some() {
        "redis"
    } else {
        state.store.backend().as_str()
    };
    json!({
        "backend": backend,
        "store": state.store.backend().as_str(),
        "memory_cache_size": 0,
        "redis_connected": redis_connected,
        "total_cached_operations": total.as_ref().ok(),
        "hits": hits,
        "misses": misses,
        "cache_hits": state.idempotency.cache_hits.load(Ordering::Relaxed),
        "hit_rate": (lookups > 0).then(|| hits as f64 / lookups as f64),
        "default_ttl": state.config.idempotency_ttl_seconds,
        "degraded": total.is_err() || (state.redis.is_some() && !redis_connected),
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/queue/idempotency/cache",
    tag = "queue",
    responses((status = 200, description = "Live idempotency records and this process's replay hits and misses"))
)]
/// `GET /api/v1/queue/idempotency/cache`.
pub async fn idempotency_cache(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(idempotency_stats(&state).await)
}

#[utoipa::path(
    delete,
    path = "/api/v1/queue/idempotency/cache/{key}",
    tag = "queue",
    params(("key" = String, Path, description = "Idempotency key, with or without the idempotency: prefix")),
    responses((status = 200, description = "Whether the key existed; it no longer replays"), (status = 401, description = "Missing bearer token"), (status = 403, description = "Wrong token or non-loopback client"))
)]
/// `DELETE /api/v1/queue/idempotency/cache/{key}`: drops one key, with or without the
/// storage prefix, from the database and the Redis cache.
pub async fn invalidate_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(key): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    require_admin(&state, &headers, peer.as_ref().map(|Extension(p)| p))?;

    let key = idempotency::strip_prefix(&key).to_owned();
    // Keys are `inscription:` plus at most 255 characters of a client's key.
    if key.is_empty() || key.len() > 300 {
        return Err(ApiError::validation(vec![FieldError {
            field: "path -> key".into(),
            message: "must be an idempotency key of 1 to 300 characters".into(),
            kind: "value_error",
            input: json!(key.chars().take(50).collect::<String>()),
        }]));
    }

    let deleted = state.store.delete_idempotency(&key).await?;
    if let Some(redis) = &state.redis
        && let Err(e) = idempotency::cache_delete(redis, std::slice::from_ref(&key)).await
    {
        tracing::warn!(error = %e, idempotency_key = %key, "dropping the cached replay failed; it expires with its TTL");
    }

    let event = AuditEvent::new(
        AuditEventType::IdempotencyInvalidated,
        "idempotency_key",
        "invalidate",
    )
    .entity_id(&key)
    .data(json!({ "deleted": deleted, "by": "operator" }));
    audit::record(state.store.as_ref(), event).await;
    Ok(axum::Json(json!({
        "message": if deleted { "Clave de idempotencia invalidada" } else { "La clave no existía" },
        "key": key,
        "invalidated": deleted,
    })))
}

#[derive(Debug, Deserialize)]
pub struct SagaListQuery {
    status: Option<String>,
    limit: Option<String>,
}

fn bad_query(field: &str, message: &str, input: &str) -> ApiError {
    ApiError::validation(vec![FieldError {
        field: format!("query -> {field}"),
        message: message.to_owned(),
        kind: "value_error",
        input: json!(input),
    }])
}

#[utoipa::path(
    get,
    path = "/api/v1/queue/sagas",
    tag = "queue",
    params(("status" = Option<String>, Query, description = "pending, executing, completed, compensating, compensated or failed"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, description = "Sagas keyed by saga id, newest first"), (status = 422, description = "Invalid filter"))
)]
/// `GET /api/v1/queue/sagas?status=&limit=`: an object keyed by saga id, newest first.
pub async fn sagas(
    State(state): State<AppState>,
    Query(query): Query<SagaListQuery>,
) -> Result<Response, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(SagaStatus::parse(text).ok_or_else(|| {
            bad_query(
                "status",
                "must be one of pending, executing, completed, compensating, compensated, failed",
                text,
            )
        })?),
    };
    let limit = match query.limit.as_deref() {
        None | Some("") => 100,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad_query("limit", "must be an integer from 1 to 1000", text))?,
    };
    let list = state.store.list_sagas(&SagaQuery { status, limit }).await?;
    // serde_json's map sorts its keys, which would put the oldest saga first; the object is
    // written by hand to keep the store's newest-first order.
    let mut text = String::from("{");
    for (i, saga) in list.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&Value::String(saga.saga_id.clone()).to_string());
        text.push(':');
        text.push_str(&saga.to_json().to_string());
    }
    text.push('}');
    Ok(super::idempotent::raw_json(
        axum::http::StatusCode::OK,
        text,
    ))
}

/// Builds the saga section of the statistics endpoints.
pub async fn saga_stats(state: &AppState) -> Value {
    match state.store.saga_counts().await {
        Ok(counts) => {
            let total: i64 = counts.by_status.iter().map(|(_, n)| n).sum();
            let in_flight: i64 = counts
                .by_status
                .iter()
                .filter(|(s, _)| SagaStatus::parse(s).is_some_and(|s| !s.is_finished()))
                .map(|(_, n)| n)
                .sum();
            let distribution: Map<String, Value> = counts
                .by_status
                .iter()
                .map(|(s, n)| (s.clone(), json!(n)))
                .collect();
            let oldest_hours = counts
                .oldest_created_at
                .map(|at| (clock::now_ms() - at).max(0) as f64 / 3_600_000.0)
                .unwrap_or(0.0);
            json!({
                "total_active_sagas": total,
                "status_distribution": distribution,
                "oldest_saga_age_hours": oldest_hours,
                "in_flight": in_flight,
                "degraded": false,
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading saga statistics failed");
            json!({
                "total_active_sagas": null,
                "status_distribution": {},
                "oldest_saga_age_hours": null,
                "in_flight": null,
                "degraded": true,
            })
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CleanupQuery {
    max_age_hours: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/queue/sagas/cleanup",
    tag = "queue",
    params(("max_age_hours" = Option<f64>, Query, description = "Age in hours, default 24")),
    responses((status = 200, description = "Number of finished sagas deleted"), (status = 422, description = "Invalid max_age_hours"))
)]
/// `POST /api/v1/queue/sagas/cleanup?max_age_hours=24`: deletes finished sagas older than
/// the age given.
pub async fn cleanup_sagas(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Query(query): Query<CleanupQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    require_admin(&state, &headers, peer.as_ref().map(|Extension(p)| p))?;
    let hours = match query.max_age_hours.as_deref() {
        None | Some("") => 24.0,
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|h| h.is_finite() && *h >= 0.0 && *h <= 24.0 * 3650.0)
            .ok_or_else(|| {
                bad_query(
                    "max_age_hours",
                    "must be a number of hours from 0 to 87600",
                    text,
                )
            })?,
    };
    let before = clock::now_ms() - (hours * 3_600_000.0) as i64;
    let deleted = state.store.cleanup_sagas(before).await?;
    tracing::info!(
        audit = true,
        event_type = "SAGAS_CLEANED_UP",
        deleted,
        max_age_hours = hours,
        "finished sagas deleted by an operator"
    );
    Ok(axum::Json(json!({
        "message": format!("{deleted} saga(s) eliminada(s)"),
        "cleaned_sagas": deleted,
        "max_age_hours": hours,
    })))
}

/// Builds the `503 CIRCUIT_BREAKER_OPEN` of a call that a breaker rejected on a request path.
pub fn breaker_open(rejected: &Rejected) -> ApiError {
    let seconds = rejected.retry_after_seconds().max(1);
    let mut error = ApiError::new(
        ErrorCode::CircuitBreakerOpen,
        format!(
            "The {} dependency is failing and its circuit breaker is open; retry in {seconds} s",
            rejected.breaker
        ),
        json!({ "circuit_breaker": rejected.breaker, "retry_after_seconds": seconds }),
    );
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        error.headers.push((header::RETRY_AFTER, value));
    }
    error
}

/// Runs every API request through the `database` breaker: while it is open, requests fail
/// fast with `503 CIRCUIT_BREAKER_OPEN` instead of each waiting for the pool timeout. A
/// request that ends in `503 SERVICE_UNAVAILABLE` (the store could not be reached) counts
/// as a failure; any other response shows the database works.
pub async fn database_guard(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(breaker) = state.saga.breakers().get("database") else {
        return next.run(request).await;
    };
    let permit = match breaker.try_acquire().await {
        Ok(permit) => permit,
        Err(rejected) => return breaker_open(&rejected).into_response(),
    };
    let response = next.run(request).await;
    let store_failed = response
        .extensions()
        .get::<ApiError>()
        .is_some_and(|e| e.code == ErrorCode::ServiceUnavailable);
    if store_failed {
        permit.failure().await;
    } else {
        permit.success().await;
    }
    response
}

/// Builds the breakers section of the monitoring endpoints, in the predecessor's shape.
pub async fn breakers_json(state: &AppState) -> Value {
    let breakers = state.saga.breakers();
    let all = breakers.stats_all().await;
    let degraded: Vec<&str> = all
        .iter()
        .filter(|s| s.state == BreakerState::Open)
        .map(|s| s.name.as_str())
        .collect();
    let recovering = all.iter().any(|s| s.state == BreakerState::HalfOpen);
    let overall = if !degraded.is_empty() {
        "degraded"
    } else if recovering {
        "recovering"
    } else {
        "healthy"
    };
    let map: Map<String, Value> = all
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                serde_json::to_value(s).unwrap_or(Value::Null),
            )
        })
        .collect();
    json!({
        "circuit_breakers": map,
        "overall_health": overall,
        "degraded_services": degraded,
        "backend": breakers.backend(),
        "instance_id": breakers.instance_id(),
        "degraded": all.iter().any(|s| s.degraded),
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/queue/circuit-breakers",
    tag = "queue",
    responses((status = 200, description = "Every breaker's state, counters and settings"))
)]
/// `GET /api/v1/queue/circuit-breakers`.
pub async fn circuit_breakers(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(breakers_json(&state).await)
}

#[utoipa::path(
    post,
    path = "/api/v1/queue/circuit-breakers/{name}/reset",
    tag = "queue",
    params(("name" = String, Path, description = "Breaker name")),
    responses((status = 200, description = "The breaker's stats after the reset"), (status = 404, description = "No breaker has this name"))
)]
/// `POST /api/v1/queue/circuit-breakers/{name}/reset`: closes the breaker and clears its
/// counters, for every instance when the state is in Redis.
pub async fn reset_breaker(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    require_admin(&state, &headers, peer.as_ref().map(|Extension(p)| p))?;
    let Some(stats) = state.saga.breakers().reset(&name).await else {
        let names = state.saga.breakers().names().join(", ");
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("No circuit breaker is named {name}; the breakers are {names}"),
            json!({ "circuit_breaker": name, "known": state.saga.breakers().names() }),
        ));
    };
    let event = AuditEvent::new(
        AuditEventType::CircuitBreakerReset,
        "circuit_breaker",
        "reset",
    )
    .entity_id(&name);
    audit::record(state.store.as_ref(), event).await;
    Ok(axum::Json(json!({
        "message": format!("Circuit breaker {name} reset"),
        "circuit_breaker": stats,
    })))
}
