//! `/` and `/metrics`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

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
