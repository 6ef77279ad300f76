//! Start-up: open the store, load the demo catalog, start workers and the HTTP server.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::audit::{self, AuditEvent, AuditEventType};
use crate::config::{Config, parse_breaker_overrides, redact_url};
use crate::jobs::worker::{self, WorkerSettings, Workers};
use crate::resilience::breaker::{
    BreakerConfig, BreakerState, Breakers, DEFAULT_BREAKERS, InvalidBreakers,
};
use crate::saga::participants::Participants;
use crate::saga::runner::SagaRunner;
use crate::seed::demo_catalog;
use crate::shared_state::RedisHandle;
use crate::store::postgres::{PgSettings, PgStore};
use crate::store::sqlite::{SqliteSettings, SqliteStore};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics as names;

/// Opens the store that `DATABASE_URL` names and applies its migrations.
pub async fn connect_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    info!(database_url = %redact_url(&config.database_url), "opening the store");
    if config.is_postgres() {
        let settings = PgSettings {
            url: config.database_url.clone(),
            pool_max: config.database_pool_max,
            acquire_timeout: Duration::from_secs(config.database_acquire_timeout),
            statement_timeout: Duration::from_millis(config.database_statement_timeout_ms),
        };
        return Ok(Arc::new(PgStore::connect(&settings).await?));
    }
    let settings = SqliteSettings {
        url: config.database_url.clone(),
        read_pool_size: config.database_pool_max,
        busy_timeout: Duration::from_secs(config.database_acquire_timeout),
    };
    Ok(Arc::new(SqliteStore::connect(&settings).await?))
}

/// Creates the Redis handle when `REDIS_URL` is set.
pub fn connect_redis(config: &Config) -> Result<Option<RedisHandle>, redis::RedisError> {
    let Some(url) = &config.redis_url else {
        return Ok(None);
    };
    let handle = RedisHandle::connect(
        url,
        Duration::from_millis(config.redis_connect_timeout_ms),
        Duration::from_millis(config.redis_response_timeout_ms),
    )?;
    info!(redis_url = %handle.display_url(), "Redis configured");
    Ok(Some(handle.with_prefix(&config.redis_key_prefix)))
}

/// Loads the demo catalog, keeping rows that exist; returns how many rows it added.
pub async fn seed_demo(store: &dyn Store) -> Result<u64, StoreError> {
    let report = store.insert_missing(&demo_catalog()).await?;
    info!(rows_added = report.total(), "demo catalog loaded");
    Ok(report.total())
}

pub fn worker_settings(config: &Config) -> WorkerSettings {
    WorkerSettings {
        concurrency: config.worker_concurrency,
        batch_size: config.worker_batch_size,
        lease: config.lease(),
        poll_interval: Duration::from_millis(config.worker_poll_interval_ms),
        soft_time_limit: Duration::from_secs(config.task_soft_time_limit),
        time_limit: Duration::from_secs(config.task_time_limit),
        max_retries: config.task_max_retries,
        retry_delay: Duration::from_secs_f64(config.task_retry_delay),
        retry_backoff_max: Duration::from_secs_f64(config.task_retry_backoff_max),
        shutdown_grace: Duration::from_secs(config.shutdown_grace_seconds),
        rules: config.enrollment_rules(),
    }
}

/// Builds the process's circuit breakers: the defaults, with `CIRCUIT_BREAKERS` overrides,
/// in Redis when it is configured. Every transition is logged as an audit event.
pub fn build_breakers(
    config: &Config,
    redis: Option<RedisHandle>,
    store: Option<Arc<dyn Store>>,
) -> Result<Breakers, InvalidBreakers> {
    let mut configs: Vec<(String, BreakerConfig)> = DEFAULT_BREAKERS
        .iter()
        .map(|(name, c)| ((*name).to_owned(), *c))
        .collect();
    for (name, pairs) in parse_breaker_overrides(&config.circuit_breakers).unwrap_or_default() {
        let Some(entry) = configs.iter_mut().find(|(n, _)| *n == name) else {
            return Err(InvalidBreakers {
                breaker: name,
                reason: format!(
                    "no such breaker; CIRCUIT_BREAKERS may name {}",
                    DEFAULT_BREAKERS.map(|(n, _)| n).join(", ")
                ),
            });
        };
        for (key, value) in pairs {
            let c = &mut entry.1;
            match key.as_str() {
                "failure_threshold" => c.failure_threshold = value as u32,
                "success_threshold" => c.success_threshold = value as u32,
                "half_open_permits" => c.half_open_permits = value as u32,
                "recovery_timeout" => c.recovery_timeout = Duration::from_secs_f64(value),
                _ => c.call_timeout = Duration::from_secs_f64(value),
            }
        }
    }
    let instance_id = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| format!("pid{}", std::process::id())),
        uuid::Uuid::now_v7().simple()
    );
    Breakers::builder(instance_id)
        .breakers(configs)
        .redis(redis)
        .key_prefix(format!("{}circuit_breaker:", config.redis_key_prefix))
        .on_transition(move |t| {
            let labels = [
                ("breaker", t.breaker.clone()),
                ("from", t.from.as_str().to_owned()),
                ("to", t.to.as_str().to_owned()),
            ];
            metrics::counter!(names::CIRCUIT_BREAKER_TRANSITIONS_TOTAL, &labels).increment(1);
            let level = match t.to {
                BreakerState::Closed => 0.0,
                BreakerState::HalfOpen => 1.0,
                BreakerState::Open => 2.0,
            };
            metrics::gauge!(names::CIRCUIT_BREAKER_STATE, "breaker" => t.breaker.clone())
                .set(level);
            // The hook runs on the caller's task, inside the breaker's lock: the audit
            // write goes to its own task.
            if let (Some(store), Ok(runtime)) =
                (store.clone(), tokio::runtime::Handle::try_current())
            {
                let mut event = AuditEvent::new(
                    AuditEventType::CircuitBreakerStateChanged,
                    "circuit_breaker",
                    "transition",
                )
                .entity_id(&t.breaker);
                // The spawned task has no request context, so the ids travel with the event.
                if let Some(ids) = crate::telemetry::context::current() {
                    event = event.ids(ids.correlation_id, ids.request_id);
                }
                let event = event.data(serde_json::json!({
                    "from": t.from.as_str(),
                    "to": t.to.as_str(),
                    "reason": t.reason.as_str(),
                }));
                runtime.spawn(async move { audit::record(store.as_ref(), event).await });
            }
        })
        .build()
}

/// Builds the saga runner with the participants that the configuration names.
pub fn saga_runner(store: Arc<dyn Store>, config: &Config, breakers: Breakers) -> SagaRunner {
    let participants = Participants::new(
        config.billing_url.clone(),
        config.notification_url.clone(),
        Duration::from_secs(30),
    );
    SagaRunner::new(
        store,
        participants,
        breakers,
        config.saga_step_attempts,
        Duration::from_secs_f64(config.task_retry_delay.min(1.0)),
        Duration::from_secs_f64(config.task_retry_backoff_max.min(30.0)),
    )
}

/// Starts a worker pool and a task that purges expired job results, idempotency records and
/// old sagas every minute, and resumes sagas whose process died.
pub fn start_workers(
    store: Arc<dyn Store>,
    config: &Config,
    breakers: Breakers,
    shutdown: CancellationToken,
) -> (Arc<Workers>, tokio::task::JoinHandle<()>) {
    let ttl_ms = config.result_ttl_seconds as i64 * 1000;
    let saga_ttl_ms = config.saga_ttl_hours as i64 * 3_600_000;
    // A synchronous request's saga untouched for this long lost its process.
    let stalled_after = Duration::from_secs(config.request_timeout_seconds * 2);
    let runner = saga_runner(store.clone(), config, breakers.clone());
    let purge_store = store.clone();
    let purge_shutdown = shutdown.clone();
    let purge_runner = runner.clone();
    tokio::spawn(async move {
        loop {
            let now = crate::clock::now_ms();
            match purge_store.purge_finished_jobs(now - ttl_ms).await {
                Ok(0) => {}
                Ok(n) => info!(purged = n, "expired job results deleted"),
                Err(e) => tracing::warn!(error = %e, "purging expired jobs failed"),
            }
            if let Err(e) = purge_store.purge_idempotency(now).await {
                tracing::warn!(error = %e, "purging expired idempotency records failed");
            }
            if let Err(e) = purge_store.cleanup_sagas(now - saga_ttl_ms).await {
                tracing::warn!(error = %e, "deleting old sagas failed");
            }
            if let Err(e) = purge_runner.recover_stalled(stalled_after).await {
                tracing::warn!(error = %e, "resuming unfinished sagas failed");
            }
            tokio::select! {
                _ = purge_shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
        }
    });
    worker::start(store, worker_settings(config), runner, breakers, shutdown)
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    info!("shutdown signal received");
}
