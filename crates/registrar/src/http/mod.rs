//! The HTTP API: routes, shared state and the middleware that gives every response its
//! request and correlation ids and every error the contract's envelope.

mod admin;
mod audit;
mod dashboard;
pub mod docs;
pub mod error;
pub mod extract;
mod health;
mod historial;
pub mod idempotent;
mod inscripciones;
mod metrics;
mod middleware;
mod monitoring;
mod periodos;
mod queue;
mod resilience;
pub mod routes;
pub mod schemas;
mod system;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use tower::Layer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};
use tower_http::timeout::TimeoutLayer;

use crate::config::Config;
use crate::jobs::worker::Workers;
use crate::shared_state::RedisHandle;
use crate::store::Store;

pub use middleware::RequestContext;

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    /// The in-process worker pool, woken when this process enqueues a job.
    pub workers: Option<Arc<Workers>>,
    pub started_at: Instant,
    pub counters: Arc<Counters>,
    pub redis: Option<RedisHandle>,
    /// Hits and misses of idempotent replays in this process.
    pub idempotency: Arc<crate::idempotency::Counters>,
    pub saga: crate::saga::runner::SagaRunner,
    /// The task that writes concurrent enqueue requests in shared transactions.
    pub enqueue_combiner: crate::store::EnqueueCombiner,
}

/// Request counters behind the JSON `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub requests_total: AtomicU64,
    /// Responses with a 5xx status.
    pub errors_total: AtomicU64,
    pub by_status: Mutex<BTreeMap<u16, u64>>,
}

impl Counters {
    /// Counts one finished request with its status.
    pub fn record(&self, status: u16) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors_total.fetch_add(1, Ordering::Relaxed);
        }
        let mut by_status = self.by_status.lock().expect("status counters lock");
        *by_status.entry(status).or_default() += 1;
    }
}

impl AppState {
    /// `breakers` are the process's circuit breakers, shared with its workers. Starts the
    /// enqueue writer task, so it must run inside a Tokio runtime.
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        workers: Option<Arc<Workers>>,
        breakers: crate::resilience::breaker::Breakers,
    ) -> Self {
        crate::telemetry::metrics::handle();
        Self {
            saga: crate::app::saga_runner(store.clone(), &config, breakers),
            idempotency: Arc::new(crate::idempotency::Counters::default()),
            enqueue_combiner: crate::store::EnqueueCombiner::start(store.clone()),
            store,
            config,
            workers,
            started_at: Instant::now(),
            counters: Arc::new(Counters::default()),
            redis: None,
        }
    }

    pub fn with_redis(mut self, redis: Option<RedisHandle>) -> Self {
        self.redis = redis;
        self
    }

    /// Wakes this process's workers after an enqueue.
    pub fn wake_workers(&self) {
        if let Some(workers) = &self.workers {
            workers.wake();
        }
    }
}

/// Builds the router. Paths with a trailing slash are served as the same route.
pub fn app(state: AppState) -> NormalizePath<Router> {
    let body_limit = state.config.max_body_bytes;
    // Every route under /api/v1 that reads or writes the database passes the `database`
    // breaker; the breaker routes do not, so an operator can always see and reset it.
    let mut router = Router::new();
    for route in routes::table() {
        let guarded = route.path.starts_with("/api/v1/")
            && !route.path.starts_with("/api/v1/queue/circuit-breakers");
        let handler = if guarded {
            route.handler.layer(axum::middleware::from_fn_with_state(
                state.clone(),
                resilience::database_guard,
            ))
        } else {
            route.handler
        };
        router = router.route(route.path, handler);
    }
    let router = router
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(state.config.request_timeout_seconds),
        ))
        .layer(cors_layer(&state.config.allowed_origins))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::envelope_and_ids,
        ))
        .with_state(state);
    NormalizePathLayer::trim_trailing_slash().layer(router)
}

/// CORS from `ALLOWED_ORIGINS`: `*` allows any origin and never sends credentials; a list
/// allows those origins only.
fn cors_layer(allowed: &str) -> CorsLayer {
    let layer = CorsLayer::new().allow_methods(Any).allow_headers(Any);
    if allowed.trim() == "*" {
        return layer.allow_origin(Any);
    }
    let origins: Vec<HeaderValue> = allowed
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    layer.allow_origin(AllowOrigin::list(origins))
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish for
/// at most `grace` before returning, so that a stalled client cannot hold the process.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: NormalizePath<Router>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    use axum::ServiceExt;
    use axum::extract::Request;
    use std::future::IntoFuture;

    let stopping = std::sync::Arc::new(tokio::sync::Notify::new());
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            stopping.notify_one();
        }
    };
    let service = ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app);
    let server = axum::serve(listener, service)
        .with_graceful_shutdown(signal)
        .into_future();
    tokio::select! {
        result = server => result,
        _ = async {
            stopping.notified().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_s = grace.as_secs(), "connections still open after the grace period; closing them");
            Ok(())
        }
    }
}
