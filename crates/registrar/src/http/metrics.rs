//! `GET /metrics` (the contract's JSON keys with live values) and `GET /metrics/prometheus`
//! (Prometheus text exposition, rendered from the process's recorder).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::AppState;
use super::health::oldest_age_seconds;
use super::schemas;
use crate::jobs::model::JobState;
use crate::resilience::breaker::BreakerState;
use crate::saga::model::SagaStatus;
use crate::telemetry::metrics as names;

/// Reports uptime, requests by status, jobs by state, the queue and the database pool. A store
/// that cannot be read gives `null` job figures and `degraded: true`, never zeros.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses(
        (status = 200, description = "Live figures; null with degraded: true when the store cannot be read", body = schemas::MetricsJson),
    )
)]
pub async fn metrics_json(State(state): State<AppState>) -> axum::Json<Value> {
    let uptime = state.started_at.elapsed().as_secs_f64();
    let (counts, depth) = tokio::join!(state.store.job_counts(), state.store.queue_depth());
    let mut degraded = false;
    let jobs_by_state = match counts {
        Ok(counts) => json!(counts),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: reading job counts failed");
            degraded = true;
            Value::Null
        }
    };
    let queue = match depth {
        Ok(depth) => json!({
            "depth": depth.waiting,
            "oldest_job_age_seconds": oldest_age_seconds(&depth),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: reading the queue depth failed");
            degraded = true;
            Value::Null
        }
    };
    let by_status: serde_json::Map<String, Value> = state
        .counters
        .by_status
        .lock()
        .expect("status counters lock")
        .iter()
        .map(|(status, n)| (status.to_string(), json!(n)))
        .collect();
    let pool = state.store.pool_stats();

    axum::Json(json!({
        "uptime": uptime,
        "uptime_seconds": uptime,
        "requests_total": state.counters.requests_total.load(Ordering::Relaxed),
        "errors_total": state.counters.errors_total.load(Ordering::Relaxed),
        "requests_by_status": by_status,
        "jobs_by_state": jobs_by_state,
        "queue": queue,
        "database_connections": { "in_use": pool.in_use, "idle": pool.idle, "max": pool.max },
        "mode": "asynchronous",
        "degraded": degraded,
    }))
}

/// Renders every metric in Prometheus text format, after refreshing the gauges that are read
/// from the store and the pool.
#[utoipa::path(
    get,
    path = "/metrics/prometheus",
    tag = "system",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String),
    )
)]
pub async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    let (counts, depth) = tokio::join!(state.store.job_counts(), state.store.queue_depth());
    let store_up = match (counts, depth) {
        (Ok(counts), Ok(depth)) => {
            for job_state in JobState::ALL {
                metrics::gauge!(names::JOBS, "state" => job_state.as_str())
                    .set(counts.get(job_state) as f64);
            }
            metrics::gauge!(names::QUEUE_DEPTH).set(depth.waiting as f64);
            metrics::gauge!(names::QUEUE_OLDEST_JOB_AGE_SECONDS).set(oldest_age_seconds(&depth));
            1.0
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "metrics: reading the store failed; job gauges keep their last values");
            0.0
        }
    };
    metrics::gauge!(names::DB_UP).set(store_up);

    let pool = state.store.pool_stats();
    metrics::gauge!(names::DB_CONNECTIONS, "state" => "in_use").set(f64::from(pool.in_use));
    metrics::gauge!(names::DB_CONNECTIONS, "state" => "idle").set(f64::from(pool.idle));
    metrics::gauge!(names::DB_CONNECTIONS_MAX).set(f64::from(pool.max));
    if let Some(workers) = &state.workers {
        let snapshot = workers.snapshot();
        metrics::gauge!(names::WORKERS_ACTIVE_JOBS).set(snapshot.active_jobs as f64);
        metrics::gauge!(names::WORKERS_PAUSED).set(if snapshot.paused { 1.0 } else { 0.0 });
    }

    // Sagas in flight and every breaker's state, read at scrape time so that processes
    // sharing Redis all report the shared state.
    if let Ok(counts) = state.store.saga_counts().await {
        let in_flight: i64 = counts
            .by_status
            .iter()
            .filter(|(s, _)| SagaStatus::parse(s).is_some_and(|s| !s.is_finished()))
            .map(|(_, n)| n)
            .sum();
        metrics::gauge!(names::SAGAS_IN_FLIGHT).set(in_flight as f64);
    }
    for stats in state.saga.breakers().stats_all().await {
        let level = match stats.state {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        };
        metrics::gauge!(names::CIRCUIT_BREAKER_STATE, "breaker" => stats.name).set(level);
    }

    let handle = names::handle();
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}
