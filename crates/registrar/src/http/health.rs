//! `/health`, `/health/live` and `/health/ready`: the state of each component this process
//! depends on. The database is required, and so are the in-process workers when this process
//! runs them; Redis and the queue backlog only make the service `degraded`.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::schemas;
use crate::clock;
use crate::domain::error::ErrorCode;
use crate::resilience::breaker::BreakerState;
use crate::store::QueueDepth;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One component's check: a status word for `components`, whether the service is down
/// without it, and its details for `checks`.
struct Check {
    status: &'static str,
    /// The component is down, as opposed to healthy or degraded.
    down: bool,
    degraded: bool,
    required: bool,
    details: Value,
}

fn elapsed_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// Reports the circuit breakers: degraded while any is open or half-open, because the calls
/// it guards are being rejected (an open `database` breaker turns `/api/v1` requests away
/// even after the database itself answers again).
async fn check_breakers(state: &AppState) -> Check {
    let stats = state.saga.breakers().stats_all().await;
    let not_closed: Vec<String> = stats
        .iter()
        .filter(|s| s.state != BreakerState::Closed)
        .map(|s| format!("{}: {}", s.name, s.state.as_str()))
        .collect();
    let degraded = !not_closed.is_empty();
    Check {
        status: if degraded { "degraded" } else { "healthy" },
        down: false,
        degraded,
        required: false,
        details: json!({ "not_closed": not_closed }),
    }
}

async fn check_database(state: &AppState) -> Check {
    let started = Instant::now();
    let result = state.store.ping().await;
    let pool = state.store.pool_stats();
    let mut details = json!({
        "backend": state.store.backend().as_str(),
        "latency_ms": elapsed_ms(started),
        "connections": { "in_use": pool.in_use, "idle": pool.idle, "max": pool.max },
    });
    let down = match result {
        Ok(()) => false,
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            details["error"] = json!("the database did not answer SELECT 1; see the service log");
            true
        }
    };
    Check {
        status: if down { "error" } else { "healthy" },
        down,
        degraded: false,
        required: true,
        details,
    }
}

/// Pings Redis when it is configured. Redis keeps caches and shared counters, so without it
/// the service still enrolls correctly: it reports itself degraded, not down.
async fn check_redis(state: &AppState) -> Check {
    let Some(redis) = &state.redis else {
        return Check {
            status: "not_configured",
            down: false,
            degraded: false,
            required: false,
            details: json!({}),
        };
    };
    let started = Instant::now();
    let result = redis.ping().await;
    let latency_ms = elapsed_ms(started);
    match result {
        Ok(()) => Check {
            status: "healthy",
            down: false,
            degraded: false,
            required: false,
            details: json!({ "latency_ms": latency_ms }),
        },
        Err(e) => {
            tracing::warn!(error = %e, redis_url = redis.display_url(), "health check: Redis unreachable");
            Check {
                status: "unreachable",
                down: false,
                degraded: true,
                required: false,
                details: json!({ "latency_ms": latency_ms }),
            }
        }
    }
}

/// Reports this process's worker pool. A pool whose loop ended while the server runs cannot
/// process jobs, so it makes the service unhealthy; a paused pool makes it degraded.
fn check_workers(state: &AppState) -> Check {
    let Some(workers) = &state.workers else {
        return Check {
            status: "none_in_process",
            down: false,
            degraded: false,
            required: false,
            details: json!({}),
        };
    };
    let snapshot = workers.snapshot();
    let status = if snapshot.stopped {
        "stopped"
    } else if snapshot.paused {
        "paused"
    } else {
        "running"
    };
    Check {
        status,
        down: snapshot.stopped,
        degraded: snapshot.paused,
        required: true,
        details: json!({
            "owner": workers.owner,
            "concurrency": workers.concurrency,
            "active_jobs": snapshot.active_jobs,
            "processed_jobs": snapshot.processed_jobs,
        }),
    }
}

/// Reports the waiting jobs. The queue is `backlogged` when its oldest waiting job is older
/// than `QUEUE_BACKLOG_ALERT_SECONDS`.
async fn check_queue(state: &AppState) -> Check {
    match state.store.queue_depth().await {
        Ok(depth) => {
            let age = oldest_age_seconds(&depth);
            let backlogged = age > state.config.queue_backlog_alert_seconds as f64;
            Check {
                status: if backlogged { "backlogged" } else { "healthy" },
                down: false,
                degraded: backlogged,
                required: false,
                details: json!({
                    "waiting": depth.waiting,
                    "oldest_job_age_seconds": age,
                    "alert_after_seconds": state.config.queue_backlog_alert_seconds,
                }),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "health check: reading the queue depth failed");
            Check {
                status: "unknown",
                down: false,
                degraded: true,
                required: false,
                details: json!({}),
            }
        }
    }
}

/// Returns how long the oldest waiting job has waited, in seconds, or 0 with no waiting job.
pub fn oldest_age_seconds(depth: &QueueDepth) -> f64 {
    depth.oldest_created_at_ms.map_or(0.0, |created| {
        (clock::now_ms() - created).max(0) as f64 / 1000.0
    })
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "system",
    responses(
        (status = 200, description = "Healthy or degraded, with each component", body = schemas::Health),
        (status = 503, description = "A required component is down; details has components and checks", body = schemas::ErrorEnvelope),
    )
)]
pub async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let (database, redis, queue) = tokio::join!(
        check_database(&state),
        check_redis(&state),
        check_queue(&state)
    );
    let workers = check_workers(&state);
    let breakers = check_breakers(&state).await;
    let checks = [
        ("database", &database),
        ("redis", &redis),
        ("workers", &workers),
        ("queue", &queue),
        ("circuit_breakers", &breakers),
    ];

    let down: Vec<&str> = checks
        .iter()
        .filter(|(_, c)| c.down && c.required)
        .map(|(name, _)| *name)
        .collect();
    let degraded = checks.iter().any(|(_, c)| c.degraded);
    let status = match (down.is_empty(), degraded) {
        (false, _) => "unhealthy",
        (true, true) => "degraded",
        (true, false) => "healthy",
    };
    let mut components = serde_json::Map::new();
    let mut details = serde_json::Map::new();
    for (name, check) in checks {
        components.insert(name.into(), json!(check.status));
        let mut detail = check.details.clone();
        detail["status"] = json!(check.status);
        detail["required"] = json!(check.required);
        details.insert(name.into(), detail);
    }
    components.insert("backend".into(), json!(state.store.backend().as_str()));
    components.insert("logging".into(), json!("operational"));
    components.insert("middlewares".into(), json!("operational"));

    if !down.is_empty() {
        return Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!("Required components are down: {}", down.join(", ")),
            json!({ "status": status, "components": components, "checks": details }),
        ));
    }
    Ok((
        StatusCode::OK,
        axum::Json(json!({
            "status": status,
            "database": "connected",
            "version": VERSION,
            "mode": "asynchronous",
            "timestamp": clock::now_rfc3339(),
            "components": components,
            "checks": details,
        })),
    ))
}

/// Liveness: the process serves HTTP. It checks nothing else, so an orchestrator restarts
/// the process only when it hangs.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "system",
    responses(
        (status = 200, description = "The process serves HTTP", body = schemas::Probe),
    )
)]
pub async fn live() -> axum::Json<Value> {
    axum::Json(json!({ "status": "alive", "timestamp": clock::now_rfc3339() }))
}

/// Readiness: the required components are up, so this process can take traffic.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "system",
    responses(
        (status = 200, description = "Ready for traffic", body = schemas::Probe),
        (status = 503, description = "The database or this process's worker pool is down", body = schemas::ErrorEnvelope),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let database = check_database(&state).await;
    let workers = check_workers(&state);
    let mut down = Vec::new();
    if database.down {
        down.push("database");
    }
    if workers.down {
        down.push("workers");
    }
    if !down.is_empty() {
        return Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!("Not ready: {} down", down.join(", ")),
            json!({ "status": "not_ready", "down": down }),
        ));
    }
    Ok(axum::Json(json!({
        "status": "ready",
        "timestamp": clock::now_rfc3339(),
    })))
}
