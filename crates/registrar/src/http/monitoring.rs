//! The queue monitoring endpoints under `/api/v1/queue`: `stats`, `stats/enhanced`,
//! `workers`, `workers/control` and `queues`. Figures come from the job store and this
//! process's worker pool. A store that cannot be read gives `null` figures and
//! `degraded: true`, never zeros.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::admin::require_admin;
use super::error::ApiError;
use super::extract::JsonBody;
use super::health::oldest_age_seconds;
use super::schemas;
use crate::audit::{self, AuditEvent, AuditEventType};
use crate::domain::error::{ErrorCode, FieldError};
use crate::jobs::model::JobKind;
use crate::jobs::worker::Workers;

/// Returns 1 when this process runs a worker pool whose loop is alive, else 0. Pools in
/// other processes are not counted.
fn workers_online(state: &AppState) -> usize {
    state
        .workers
        .as_ref()
        .map_or(0, |w| usize::from(!w.snapshot().stopped))
}

/// Builds the `GET /stats` object: job counts by state and the workers online.
async fn queue_stats(state: &AppState) -> Map<String, Value> {
    let stats = match state.store.job_counts().await {
        Ok(counts) => json!({
            "active_tasks": counts.started + counts.progress,
            "pending_tasks": counts.pending + counts.retry,
            "completed_tasks": counts.success,
            "failed_tasks": counts.failure,
            "revoked_tasks": counts.revoked,
            "workers_online": workers_online(state),
            "degraded": false,
            "source": "database",
        }),
        Err(e) => {
            tracing::warn!(error = %e, "queue stats: reading job counts failed");
            json!({
                "active_tasks": null,
                "pending_tasks": null,
                "completed_tasks": null,
                "failed_tasks": null,
                "revoked_tasks": null,
                "workers_online": workers_online(state),
                "degraded": true,
                "source": "database",
                "error": "the job store could not be read; see the service log",
            })
        }
    };
    match stats {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/queue/stats",
    tag = "queue",
    responses(
        (status = 200, description = "Job counts by state and workers online", body = schemas::QueueStats),
    )
)]
pub async fn stats(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(Value::Object(queue_stats(&state).await))
}

/// Describes this process's pool as `GET /workers` lists it.
fn worker_json(workers: &Workers) -> Value {
    let snapshot = workers.snapshot();
    let status = if snapshot.stopped {
        "stopped"
    } else if snapshot.paused {
        "paused"
    } else {
        "online"
    };
    json!({
        "name": workers.owner,
        "status": status,
        "active_tasks": snapshot.active_jobs,
        "processed_tasks": snapshot.processed_jobs,
        // NOTE: the predecessor reported CPU time here; this process does not measure it.
        "load_avg": null,
        "pool": {
            "max_concurrency": workers.concurrency,
            "implementation": "tokio",
        },
    })
}

/// Builds the `GET /stats/enhanced` object: the `stats` figures plus the queue, workers,
/// database pool, circuit breakers, sagas and idempotency records.
pub async fn enhanced_stats(state: &AppState) -> Map<String, Value> {
    let mut stats = queue_stats(state).await;
    let queue = match state.store.queue_depth().await {
        Ok(depth) => json!({
            "depth": depth.waiting,
            "oldest_job_age_seconds": oldest_age_seconds(&depth),
            "degraded": false,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "enhanced stats: reading the queue depth failed");
            json!({ "depth": null, "oldest_job_age_seconds": null, "degraded": true })
        }
    };
    let pool = state.store.pool_stats();
    stats.insert("queue".into(), queue);
    stats.insert(
        "workers".into(),
        json!(
            state
                .workers
                .as_deref()
                .map(worker_json)
                .into_iter()
                .collect::<Vec<_>>()
        ),
    );
    stats.insert(
        "database".into(),
        json!({
            "backend": state.store.backend().as_str(),
            "connections": { "in_use": pool.in_use, "idle": pool.idle, "max": pool.max },
        }),
    );
    let breakers = super::resilience::breakers_json(state).await;
    stats.insert(
        "circuit_breakers".into(),
        breakers["circuit_breakers"].clone(),
    );
    stats.insert(
        "saga_transactions".into(),
        super::resilience::saga_stats(state).await,
    );
    stats.insert(
        "idempotency_cache".into(),
        super::resilience::idempotency_stats(state).await,
    );
    stats
}

#[utoipa::path(
    get,
    path = "/api/v1/queue/stats/enhanced",
    tag = "queue",
    responses(
        (status = 200, description = "The stats figures plus queue, workers and database pool", body = schemas::EnhancedStats),
    )
)]
pub async fn stats_enhanced(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(Value::Object(enhanced_stats(&state).await))
}

/// Lists this process's worker pool. Pools in other processes share the database but are not
/// listed, because they report nowhere but their own process.
#[utoipa::path(
    get,
    path = "/api/v1/queue/workers",
    tag = "queue",
    responses(
        (status = 200, description = "This process's worker pool", body = schemas::WorkersList),
    )
)]
pub async fn workers(State(state): State<AppState>) -> axum::Json<Value> {
    let workers: Vec<Value> = state
        .workers
        .as_deref()
        .map(worker_json)
        .into_iter()
        .collect();
    axum::Json(json!({ "workers": workers }))
}

#[derive(Debug, Deserialize)]
pub struct WorkerControl {
    action: String,
    #[serde(default)]
    worker_name: Option<String>,
}

const CONTROL_ACTIONS: &[&str] = &["pause", "resume", "stop", "ping", "restart"];

/// Applies an operator's `POST /workers/control` to this process's pool. `pause` (and its
/// alias `stop`) stops claiming jobs while running ones finish, and `resume` undoes it.
/// `ping` reports the pool, and `restart` is left to the process supervisor.
#[utoipa::path(
    post,
    path = "/api/v1/queue/workers/control",
    tag = "queue",
    request_body = schemas::WorkerControlBody,
    responses(
        (status = 200, description = "Applied", body = schemas::WorkerControlResult),
        (status = 400, description = "Unknown action", body = schemas::ErrorEnvelope),
        (status = 404, description = "No such worker in this process", body = schemas::ErrorEnvelope),
        (status = 401, description = "Operator endpoint without the bearer token", body = schemas::ErrorEnvelope),
        (status = 403, description = "Wrong token, or a non-loopback client while ADMIN_TOKEN is unset", body = schemas::ErrorEnvelope),
    )
)]
pub async fn control(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    JsonBody(body): JsonBody<WorkerControl>,
) -> Result<axum::Json<Value>, ApiError> {
    require_admin(&state, &headers, peer.as_ref().map(|Extension(p)| p))?;
    let action = body.action.trim().to_lowercase();
    if !CONTROL_ACTIONS.contains(&action.as_str()) {
        let mut error = ApiError::validation(vec![FieldError {
            field: "body -> action".into(),
            message: format!("must be one of {}", CONTROL_ACTIONS.join(", ")),
            kind: "value_error",
            input: json!(body.action.chars().take(64).collect::<String>()),
        }]);
        error.status = StatusCode::BAD_REQUEST;
        return Err(error);
    }
    let Some(workers) = state.workers.as_deref() else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "This process runs no worker pool; send the request to a process started with workers",
            json!({ "action": action }),
        ));
    };
    if let Some(name) = &body.worker_name
        && name != &workers.owner
    {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("No worker named {name} in this process; GET /api/v1/queue/workers lists it"),
            json!({ "worker_name": name, "available": [&workers.owner] }),
        ));
    }

    let message = match action.as_str() {
        "pause" | "stop" => {
            workers.pause().await;
            "The worker pool stopped claiming jobs; running jobs finish. Resume with action resume."
        }
        "resume" => {
            workers.resume();
            "The worker pool claims jobs again."
        }
        "restart" => {
            "Restart the process with its supervisor; this endpoint can only pause and resume."
        }
        _ => "pong",
    };
    if matches!(action.as_str(), "pause" | "stop" | "resume") {
        let event = AuditEvent::new(
            AuditEventType::AdminAction,
            "workers",
            format!("{action}_workers"),
        )
        .entity_id(&workers.owner);
        audit::record(state.store.as_ref(), event).await;
    }
    Ok(axum::Json(json!({
        "action": action,
        "message": message,
        "workers": [worker_json(workers)],
    })))
}

/// Returns the queue name each job kind had in the predecessor's broker.
fn queue_name(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Inscription => "inscripciones",
        JobKind::Bulk => "inscripciones_bulk",
        JobKind::HealthCheck => "health_check",
    }
}

/// Lists one queue per job kind with its waiting jobs. All kinds share the job table and
/// every worker pool consumes all of them.
#[utoipa::path(
    get,
    path = "/api/v1/queue/queues",
    tag = "queue",
    responses(
        (status = 200, description = "One queue per job kind with its waiting jobs", body = schemas::QueuesList),
    )
)]
pub async fn queues(State(state): State<AppState>) -> axum::Json<Value> {
    let depths = match state.store.queue_depth_by_kind().await {
        Ok(depths) => Some(depths),
        Err(e) => {
            tracing::warn!(error = %e, "queues: reading the queue depth failed");
            None
        }
    };
    let worker_names: Vec<&str> = state.workers.iter().map(|w| w.owner.as_str()).collect();
    let kinds = [JobKind::Inscription, JobKind::Bulk, JobKind::HealthCheck];
    let queues: Vec<Value> = kinds
        .into_iter()
        .map(|kind| {
            let depth = depths.as_ref().map(|all| {
                all.iter()
                    .find(|(k, _)| *k == kind)
                    .map(|(_, d)| *d)
                    .unwrap_or_default()
            });
            json!({
                "name": queue_name(kind),
                "job_kind": kind.as_str(),
                "workers": worker_names,
                "routing_key": queue_name(kind),
                "exchange": queue_name(kind),
                "waiting": depth.map(|d| d.waiting),
                "oldest_job_age_seconds": depth.as_ref().map(oldest_age_seconds),
            })
        })
        .collect();
    axum::Json(json!({ "queues": queues, "degraded": depths.is_none() }))
}
