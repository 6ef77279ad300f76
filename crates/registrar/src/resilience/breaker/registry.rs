//! The set of named breakers a process uses, and what they share: the backend, the clock,
//! the instance id and the transition hook.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::call::Breaker;
use super::config::{BreakerConfig, DEFAULT_BREAKERS};
use super::machine::{BreakerState, Change, Transition};
use super::redis_store::RedisStore;
use super::{Backend, BreakerStats};
use crate::shared_state::RedisHandle;

/// How long a closed breaker with no recent failure admits calls from its local copy of the
/// shared state before asking Redis again.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(1);

/// Prefix of the Redis hash that stores a breaker's state; the breaker's name follows it.
pub const DEFAULT_KEY_PREFIX: &str = "circuit_breaker:";

/// After a failed Redis call, breakers use their in-process state for this long before
/// trying Redis again, so an outage does not add a Redis timeout to every call.
pub const REDIS_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Called with every transition made by this process, after the state changed. It runs on
/// the calling task, inside the breaker's lock for in-process transitions, so it must return
/// quickly: hand audit events to a channel or a spawned task rather than writing them here.
pub type TransitionHook = Arc<dyn Fn(&Transition) + Send + Sync>;

/// Wall clock of the in-process backend, in epoch milliseconds. Tests inject their own to
/// move past a recovery timeout without waiting. The Redis backend uses Redis TIME instead.
pub trait BreakerClock: Send + Sync {
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl BreakerClock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::clock::now_ms()
    }
}

/// Registry-wide state that every breaker holds a reference to.
pub(crate) struct Shared {
    pub instance_id: String,
    pub hook: Option<TransitionHook>,
    pub clock: Arc<dyn BreakerClock>,
    pub redis: Option<RedisStore>,
    pub cache_ttl: Duration,
    redis_down_until: Mutex<Option<Instant>>,
    /// Set by a failed Redis call and cleared by the next successful one, to log recovery.
    redis_failed: AtomicBool,
    next_token: AtomicU64,
}

impl Shared {
    /// Names a new probe slot uniquely across every instance that shares the Redis.
    pub fn probe_token(&self) -> String {
        let n = self.next_token.fetch_add(1, Ordering::Relaxed);
        format!("{}/{n}", self.instance_id)
    }

    /// Returns the Redis store unless a recent Redis call failed.
    pub fn usable_redis(&self) -> Option<&RedisStore> {
        let store = self.redis.as_ref()?;
        let down_until = *self.redis_down_until.lock().expect("redis_down_until lock");
        match down_until {
            Some(until) if Instant::now() < until => None,
            _ => Some(store),
        }
    }

    /// Switches every breaker to in-process state for `REDIS_RETRY_INTERVAL`.
    pub fn mark_redis_down(&self, breaker: &str, error: &redis::RedisError) {
        self.redis_failed.store(true, Ordering::Relaxed);
        let mut down_until = self.redis_down_until.lock().expect("redis_down_until lock");
        let already_down = down_until.is_some_and(|until| Instant::now() < until);
        *down_until = Some(Instant::now() + REDIS_RETRY_INTERVAL);
        if !already_down {
            tracing::warn!(
                breaker,
                instance_id = %self.instance_id,
                error = %error,
                retry_in_ms = REDIS_RETRY_INTERVAL.as_millis() as u64,
                "circuit breaker state unavailable in Redis; using in-process state"
            );
        }
    }

    /// Logs the first successful Redis call after a failed one.
    pub fn mark_redis_up(&self, breaker: &str) {
        if self.redis_failed.swap(false, Ordering::Relaxed) {
            tracing::info!(
                breaker,
                instance_id = %self.instance_id,
                "circuit breaker state reachable in Redis again; using shared state"
            );
        }
    }

    pub fn backend(&self) -> Backend {
        if self.redis.is_some() {
            Backend::Redis
        } else {
            Backend::Memory
        }
    }

    /// Logs a transition and passes it to the hook.
    pub fn report(&self, breaker: &str, change: Change, at_ms: i64) {
        let (from, to, reason) = change;
        let transition = Transition {
            breaker: breaker.to_owned(),
            from,
            to,
            at: at_ms,
            reason,
        };
        if to == BreakerState::Open {
            tracing::warn!(
                breaker, %from, %to, %reason, instance_id = %self.instance_id,
                "circuit breaker opened; calls fail fast until the recovery timeout"
            );
        } else {
            tracing::info!(
                breaker, %from, %to, %reason, instance_id = %self.instance_id,
                "circuit breaker changed state"
            );
        }
        if let Some(hook) = &self.hook {
            hook(&transition);
        }
    }
}

/// The process's breakers by name. Cloning is cheap and clones share the breakers.
#[derive(Clone)]
pub struct Breakers {
    shared: Arc<Shared>,
    /// In the order they were added.
    breakers: Arc<Vec<Breaker>>,
}

impl Breakers {
    pub fn builder(instance_id: impl Into<String>) -> BreakersBuilder {
        BreakersBuilder {
            instance_id: instance_id.into(),
            configs: Vec::new(),
            redis: None,
            hook: None,
            clock: Arc::new(SystemClock),
            cache_ttl: DEFAULT_CACHE_TTL,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
        }
    }

    pub fn get(&self, name: &str) -> Option<Breaker> {
        self.breakers.iter().find(|b| b.name() == name).cloned()
    }

    pub fn names(&self) -> Vec<&str> {
        self.breakers.iter().map(Breaker::name).collect()
    }

    pub fn instance_id(&self) -> &str {
        &self.shared.instance_id
    }

    pub fn backend(&self) -> Backend {
        self.shared.backend()
    }

    pub async fn stats_all(&self) -> Vec<BreakerStats> {
        let mut all = Vec::with_capacity(self.breakers.len());
        for breaker in self.breakers.iter() {
            all.push(breaker.stats().await);
        }
        all
    }

    /// Returns `None` for an unknown name.
    pub async fn stats(&self, name: &str) -> Option<BreakerStats> {
        Some(self.get(name)?.stats().await)
    }

    /// Closes the breaker and clears its counters, for every instance when the state is in
    /// Redis. Returns the stats after the reset, or `None` for an unknown name.
    pub async fn reset(&self, name: &str) -> Option<BreakerStats> {
        Some(self.get(name)?.reset().await)
    }
}

/// The registry's configuration error, naming the breaker at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid circuit breaker configuration for {breaker}: {reason}")]
pub struct InvalidBreakers {
    pub breaker: String,
    pub reason: String,
}

pub struct BreakersBuilder {
    instance_id: String,
    configs: Vec<(String, BreakerConfig)>,
    redis: Option<RedisHandle>,
    hook: Option<TransitionHook>,
    clock: Arc<dyn BreakerClock>,
    cache_ttl: Duration,
    key_prefix: String,
}

impl BreakersBuilder {
    /// Adds a breaker, or replaces the settings of one added before under the same name.
    pub fn breaker(mut self, name: impl Into<String>, config: BreakerConfig) -> Self {
        let name = name.into();
        match self.configs.iter_mut().find(|(known, _)| *known == name) {
            Some(entry) => entry.1 = config,
            None => self.configs.push((name, config)),
        }
        self
    }

    pub fn breakers(mut self, configs: impl IntoIterator<Item = (String, BreakerConfig)>) -> Self {
        for (name, config) in configs {
            self = self.breaker(name, config);
        }
        self
    }

    /// Adds the breakers that exist from startup with their default settings. Breakers
    /// added later under the same names replace them.
    pub fn with_defaults(self) -> Self {
        self.breakers(
            DEFAULT_BREAKERS
                .iter()
                .map(|(name, config)| ((*name).to_owned(), *config)),
        )
    }

    /// Keeps the state in Redis, shared with every instance that uses the same Redis. `None`
    /// keeps it in the process.
    pub fn redis(mut self, handle: impl Into<Option<RedisHandle>>) -> Self {
        self.redis = handle.into();
        self
    }

    pub fn on_transition(mut self, hook: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    pub fn clock(mut self, clock: Arc<dyn BreakerClock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets how long a closed breaker trusts its local copy of the Redis state. Zero makes
    /// every call go to Redis.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Sets the prefix of the Redis keys, for example to keep tests that share a Redis
    /// apart.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    pub fn build(self) -> Result<Breakers, InvalidBreakers> {
        for (name, config) in &self.configs {
            if name.is_empty() {
                return Err(InvalidBreakers {
                    breaker: "\"\"".to_owned(),
                    reason: "the name must not be empty".to_owned(),
                });
            }
            config.validate().map_err(|reason| InvalidBreakers {
                breaker: name.clone(),
                reason,
            })?;
        }

        let shared = Arc::new(Shared {
            instance_id: self.instance_id,
            hook: self.hook,
            clock: self.clock,
            redis: self
                .redis
                .map(|handle| RedisStore::new(handle, self.key_prefix)),
            cache_ttl: self.cache_ttl,
            redis_down_until: Mutex::new(None),
            redis_failed: AtomicBool::new(false),
            next_token: AtomicU64::new(0),
        });
        let breakers = self
            .configs
            .into_iter()
            .map(|(name, config)| Breaker::new(name, config, Arc::clone(&shared)))
            .collect();
        Ok(Breakers {
            shared,
            breakers: Arc::new(breakers),
        })
    }
}
