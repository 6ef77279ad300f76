//! `/`, `/health` and `/metrics`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::clock;
use crate::domain::error::ErrorCode;

const VERSION: &str = env!("CARGO_PKG_VERSION");

pub async fn root(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(json!({
        "message": format!("{} - servicio de inscripciones", state.config.app_name),
        "version": VERSION,
        "status": "running",
        "mode": "asynchronous",
        "features": [
            "Inscripción atómica de varios grupos",
            "Cola de trabajos en la base de datos",
            "Reintentos con espera exponencial",
            "Identificadores de correlación",
            "Control de cupos sin sobreventa",
            "Detección de conflictos de horario",
        ],
    }))
}

/// Reports Redis as `healthy`, `unreachable`, or `not_configured`.
async fn redis_component(state: &AppState) -> &'static str {
    match &state.redis {
        None => "not_configured",
        Some(redis) => match redis.ping().await {
            Ok(()) => "healthy",
            Err(e) => {
                tracing::warn!(error = %e, redis_url = redis.display_url(), "health check: Redis unreachable");
                "unreachable"
            }
        },
    }
}

pub async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let database = state.store.ping().await;
    let redis_state = redis_component(&state).await;
    let workers = if state.workers.is_some() {
        "running"
    } else {
        "none_in_process"
    };
    // Redis keeps caches and shared counters, so without it the service still enrolls
    // correctly: it reports itself degraded, not down.
    let status = if redis_state == "unreachable" {
        "degraded"
    } else {
        "healthy"
    };
    match database {
        Ok(()) => Ok((
            StatusCode::OK,
            axum::Json(json!({
                "status": status,
                "database": "connected",
                "version": VERSION,
                "mode": "asynchronous",
                "timestamp": clock::now_rfc3339(),
                "components": {
                    "database": "healthy",
                    "backend": state.store.backend().as_str(),
                    "redis": redis_state,
                    "workers": workers,
                    "logging": "operational",
                    "middlewares": "operational",
                },
            })),
        )),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The database is unreachable",
                json!({
                    "status": "unhealthy",
                    "components": {
                        "database": "error",
                        "redis": redis_state,
                        "workers": workers,
                        "logging": "operational",
                    },
                }),
            ))
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let uptime = state.started_at.elapsed().as_secs_f64();
    let counts = state.store.job_counts().await?;
    Ok(axum::Json(json!({
        "uptime": uptime,
        "uptime_seconds": uptime,
        "requests_total": state.counters.requests_total.load(Ordering::Relaxed),
        "errors_total": state.counters.errors_total.load(Ordering::Relaxed),
        "jobs_by_state": counts,
        "database_connections": null,
        "mode": "asynchronous",
    })))
}
