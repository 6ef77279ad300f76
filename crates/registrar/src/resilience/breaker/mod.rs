//! Circuit breakers for calls to dependencies (database, Redis, billing, notification).
//!
//! A breaker counts consecutive failures. At `failure_threshold` it opens and rejects calls
//! at once. After `recovery_timeout` the next call moves it to `half_open`, where at most
//! `half_open_permits` probe calls run at a time. `success_threshold` consecutive probe
//! successes close it, and a failed probe opens it again. Every call gets `call_timeout`,
//! and a timeout counts as a failure.
//!
//! State lives in the process, or in Redis when the registry has a [`RedisHandle`], so every
//! instance agrees. With Redis, a closed breaker with no recent failure admits calls from a
//! local copy of its state for at most the cache interval, to save a round trip per call.
//! The Redis backend measures time with Redis TIME, so instances with skewed clocks agree on
//! when the recovery timeout has passed.
//!
//! ```no_run
//! # async fn example(redis: registrar::shared_state::RedisHandle) -> anyhow::Result<()> {
//! use registrar::resilience::breaker::{BreakerError, Breakers};
//!
//! let breakers = Breakers::builder("instance-1")
//!     .with_defaults()
//!     .redis(redis)
//!     .on_transition(|t| tracing::info!(breaker = %t.breaker, to = %t.to, "audit"))
//!     .build()?;
//! let billing = breakers.get("billing").expect("billing breaker");
//! let charged: Result<u32, BreakerError<std::io::Error>> = billing.call(async { Ok(1) }).await;
//! # Ok(()) }
//! ```
//!
//! [`RedisHandle`]: crate::shared_state::RedisHandle

mod call;
mod config;
mod machine;
mod permit;
mod redis_store;
mod registry;

use std::time::Duration;

use serde::Serialize;

pub use call::Breaker;
pub use config::{BreakerConfig, ConfigReport, DEFAULT_BREAKERS, PROBE_LEASE_MARGIN};
pub use machine::{BreakerState, Transition, TransitionReason};
pub use permit::Permit;
pub use registry::{
    BreakerClock, Breakers, BreakersBuilder, DEFAULT_CACHE_TTL, DEFAULT_KEY_PREFIX,
    InvalidBreakers, REDIS_RETRY_INTERVAL, SystemClock, TransitionHook,
};

/// A call rejected without running because the breaker is open or has no free probe slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker {breaker} is open; retry after {} s", retry_after.as_secs_f64())]
pub struct Rejected {
    pub breaker: String,
    /// Time left until the breaker admits a probe, at least 1 s.
    pub retry_after: Duration,
}

/// The error of a call made through a breaker.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E> {
    /// The breaker rejected the call, which did not run.
    #[error("circuit breaker {breaker} is open; retry after {} s", retry_after.as_secs_f64())]
    Open {
        breaker: String,
        retry_after: Duration,
    },
    /// The call ran longer than `call_timeout` and was cancelled. It counts as a failure.
    #[error("call through circuit breaker {breaker} timed out after {} s", after.as_secs_f64())]
    Timeout { breaker: String, after: Duration },
    /// The call's own error, passed through unchanged.
    #[error(transparent)]
    Inner(E),
}

impl Rejected {
    /// Returns `retry_after` in whole seconds, rounded up, for a `Retry-After` header.
    pub fn retry_after_seconds(&self) -> u64 {
        self.retry_after.as_millis().div_ceil(1000) as u64
    }
}

impl<E> From<Rejected> for BreakerError<E> {
    fn from(rejected: Rejected) -> Self {
        Self::Open {
            breaker: rejected.breaker,
            retry_after: rejected.retry_after,
        }
    }
}

/// The storage of breaker state: Redis, or the memory of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Memory,
    Redis,
}

/// One breaker's state and counters as reported by the monitoring endpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerStats {
    pub name: String,
    pub state: BreakerState,
    /// Failures since start or the last reset, across every instance when shared.
    pub failure_count: u64,
    pub success_count: u64,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// Epoch seconds, or `None` before the first failure.
    pub last_failure_time: Option<f64>,
    pub last_success_time: Option<f64>,
    pub config: ConfigReport,
    pub backend: Backend,
    /// The instance that produced these stats. With the memory backend they describe this
    /// instance only.
    pub instance_id: String,
    /// True when Redis is configured but unreachable, so the stats describe this instance's
    /// fallback state.
    pub degraded: bool,
}
