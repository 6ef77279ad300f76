//! `/`: the service's name, version and features.

use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::schemas;

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[utoipa::path(
    get,
    path = "/",
    tag = "system",
    responses(
        (status = 200, description = "Service name, version and features", body = schemas::RootInfo),
    )
)]
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
