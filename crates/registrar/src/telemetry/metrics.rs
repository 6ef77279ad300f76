//! Prometheus metrics: every metric name the service emits, with its description, and the
//! process-wide recorder that `GET /metrics/prometheus` renders. Emit with the `metrics`
//! crate's macros and these constants, so that names stay in one place.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// HTTP.

/// Counter of finished requests, labelled `method`, `route` (the matched route pattern, or
/// `unmatched`) and `status`.
pub const HTTP_REQUESTS_TOTAL: &str = "registrar_http_requests_total";
/// Histogram of request durations in seconds, labelled like [`HTTP_REQUESTS_TOTAL`].
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "registrar_http_request_duration_seconds";

// Jobs and the queue.

/// Gauge of jobs by `state` (`PENDING`, `STARTED`, …), read from the store at each scrape.
pub const JOBS: &str = "registrar_jobs";
/// Gauge of jobs waiting to run (`PENDING` or `RETRY`), read at each scrape.
pub const QUEUE_DEPTH: &str = "registrar_queue_depth";
/// Gauge of the oldest waiting job's age in seconds, 0 with no waiting job.
pub const QUEUE_OLDEST_JOB_AGE_SECONDS: &str = "registrar_queue_oldest_job_age_seconds";
/// Histogram of job attempt durations in seconds, labelled `kind` and `outcome` (`success`,
/// `retry`, `failure`, `timeout`).
pub const JOB_DURATION_SECONDS: &str = "registrar_job_duration_seconds";
/// Counter of retries scheduled after transient failures, labelled `kind`.
pub const JOB_RETRIES_TOTAL: &str = "registrar_job_retries_total";
/// Gauge of jobs this process's pool is running.
pub const WORKERS_ACTIVE_JOBS: &str = "registrar_workers_active_jobs";
/// Gauge that is 1 while this process's pool is paused by an operator.
pub const WORKERS_PAUSED: &str = "registrar_workers_paused";

// The audit trail, which counts enrollments and rejections.

/// Counter of audit events, labelled `event_type` and `error_code` (empty when none).
/// `INSCRIPTION_CREATED` and `INSCRIPTION_FAILED` give enrollments and rejections per minute.
pub const AUDIT_EVENTS_TOTAL: &str = "registrar_audit_events_total";

// The database.

/// Gauge of pooled database connections, labelled `state` (`in_use`, `idle`).
pub const DB_CONNECTIONS: &str = "registrar_db_connections";
/// Gauge of the pool's maximum size.
pub const DB_CONNECTIONS_MAX: &str = "registrar_db_connections_max";
/// Gauge that is 1 when the last scrape could read the store, 0 when it could not. The job
/// and queue gauges keep their previous values while it is 0.
pub const DB_UP: &str = "registrar_db_up";

// Resilience: emitted by the circuit breakers, sagas and the idempotency cache.

/// Gauge of a breaker's state, labelled `breaker`: 0 closed, 1 half-open, 2 open.
pub const CIRCUIT_BREAKER_STATE: &str = "registrar_circuit_breaker_state";
/// Counter of breaker state changes, labelled `breaker`, `from` and `to`.
pub const CIRCUIT_BREAKER_TRANSITIONS_TOTAL: &str = "registrar_circuit_breaker_transitions_total";
/// Counter of finished sagas, labelled `outcome` (`completed`, `compensated`, `failed`).
pub const SAGA_OUTCOMES_TOTAL: &str = "registrar_saga_outcomes_total";
/// Gauge of sagas started and not yet finished.
pub const SAGAS_IN_FLIGHT: &str = "registrar_sagas_in_flight";
/// Counter of requests replayed from a stored idempotency record.
pub const IDEMPOTENCY_HITS_TOTAL: &str = "registrar_idempotency_hits_total";
/// Counter of requests that found no idempotency record and ran.
pub const IDEMPOTENCY_MISSES_TOTAL: &str = "registrar_idempotency_misses_total";

/// Histogram bucket bounds in seconds, from 1 ms to 60 s.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the process-wide recorder on first use and returns its handle. Later calls, from
/// another server in the same process (as in tests), share it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder is installed; /metrics/prometheus stays empty"
            );
        }
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP requests served, by method, route and status"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "HTTP request duration, by method, route and status"
    );
    describe_gauge!(JOBS, "Jobs in the store, by state");
    describe_gauge!(QUEUE_DEPTH, "Jobs waiting to run (PENDING or RETRY)");
    describe_gauge!(
        QUEUE_OLDEST_JOB_AGE_SECONDS,
        Unit::Seconds,
        "Age of the oldest waiting job"
    );
    describe_histogram!(
        JOB_DURATION_SECONDS,
        Unit::Seconds,
        "Job attempt duration, by kind and outcome"
    );
    describe_counter!(
        JOB_RETRIES_TOTAL,
        "Job retries scheduled after transient failures"
    );
    describe_gauge!(
        WORKERS_ACTIVE_JOBS,
        "Jobs running in this process's worker pool"
    );
    describe_gauge!(
        WORKERS_PAUSED,
        "1 while this process's worker pool is paused"
    );
    describe_counter!(
        AUDIT_EVENTS_TOTAL,
        "Audit events, by event type and error code"
    );
    describe_gauge!(DB_CONNECTIONS, "Pooled database connections, by state");
    describe_gauge!(DB_CONNECTIONS_MAX, "Maximum size of the database pool");
    describe_gauge!(DB_UP, "1 when the last scrape could read the store");
    describe_gauge!(
        CIRCUIT_BREAKER_STATE,
        "Circuit breaker state: 0 closed, 1 half-open, 2 open"
    );
    describe_counter!(
        CIRCUIT_BREAKER_TRANSITIONS_TOTAL,
        "Circuit breaker state changes, by breaker, from and to"
    );
    describe_counter!(SAGA_OUTCOMES_TOTAL, "Finished sagas, by outcome");
    describe_gauge!(SAGAS_IN_FLIGHT, "Sagas started and not yet finished");
    describe_counter!(
        IDEMPOTENCY_HITS_TOTAL,
        "Requests answered from an idempotency record"
    );
    describe_counter!(
        IDEMPOTENCY_MISSES_TOTAL,
        "Requests that found no idempotency record"
    );
}
