//! One breaker: admission, outcomes, stats and reset on either backend.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::config::BreakerConfig;
use super::machine::{Admission, BreakerState, Machine, Outcome, Snapshot, Ticket};
use super::permit::{Permit, Source};
use super::redis_store::{Decision, Op, PendingSuccesses, Reply};
use super::registry::Shared;
use super::{BreakerError, BreakerStats, Rejected};

/// A named breaker. Cloning is cheap and clones share the state.
#[derive(Clone)]
pub struct Breaker {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    config: BreakerConfig,
    shared: Arc<Shared>,
    /// The state with the memory backend, and the fallback state while Redis is
    /// unreachable. Transitions are reported while this lock is held, so the hook receives
    /// one breaker's in-process transitions in order. The `cache` lock is never taken inside it.
    machine: Mutex<Machine>,
    /// Redis backend only.
    cache: Mutex<LocalCache>,
}

#[derive(Default)]
struct LocalCache {
    /// The last state read from Redis, with the time the request that read it was sent.
    snapshot: Option<(Snapshot, Instant)>,
    pending: PendingSuccesses,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking transition hook must not disable the breaker for good.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Breaker {
    pub(crate) fn new(name: String, config: BreakerConfig, shared: Arc<Shared>) -> Self {
        Self {
            inner: Arc::new(Inner {
                name,
                config,
                shared,
                machine: Mutex::new(Machine::new()),
                cache: Mutex::new(LocalCache::default()),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.inner.config
    }

    /// Runs `call` if the breaker admits it, with the call timeout. Every `Err` counts as a
    /// failure. When rejected, `call` is dropped without being polled.
    pub async fn call<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, BreakerError<E>> {
        self.call_classified(call, |_| true).await
    }

    /// Runs `call` like [`Breaker::call`], but counts an `Err` as a failure only when
    /// `is_failure` returns true. Other errors show that the dependency responded, so they
    /// count as successes: a billing service that declines a charge is up.
    pub async fn call_classified<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
        is_failure: impl FnOnce(&E) -> bool,
    ) -> Result<T, BreakerError<E>> {
        let permit = self.try_acquire().await?;

        let after = self.inner.config.call_timeout;
        match tokio::time::timeout(after, call).await {
            Ok(Ok(value)) => {
                permit.success().await;
                Ok(value)
            }
            Ok(Err(error)) => {
                if is_failure(&error) {
                    permit.failure().await;
                } else {
                    permit.success().await;
                }
                Err(BreakerError::Inner(error))
            }
            Err(_) => {
                permit.failure().await;
                Err(BreakerError::Timeout {
                    breaker: self.inner.name.clone(),
                    after,
                })
            }
        }
    }

    /// Asks to make a call that the caller runs itself, applying `call_timeout` and
    /// reporting the outcome on the permit. A permit dropped without an outcome frees its
    /// probe slot and counts as neither success nor failure.
    pub async fn try_acquire(&self) -> Result<Permit, Rejected> {
        let Some(store) = self.inner.shared.usable_redis() else {
            return self.acquire_in_process();
        };
        if let Some(ticket) = self.cached_ticket() {
            return Ok(self.permit(ticket, Source::Cache));
        }

        let token = self.inner.shared.probe_token();
        let pending = self.take_pending();
        let sent_at = Instant::now();
        let op = Op::Acquire { token: &token };
        match store
            .run(&self.inner.name, &self.inner.config, op, pending)
            .await
        {
            Ok(reply) => {
                self.absorb(&reply, sent_at);
                match reply.decision {
                    Decision::Admitted {
                        probe_token: Some(token),
                    } => Ok(self.permit(Ticket::Probe { token }, Source::Redis)),
                    Decision::Admitted { probe_token: None } => {
                        let epoch = reply.snapshot.epoch;
                        Ok(self.permit(Ticket::Closed { epoch }, Source::Redis))
                    }
                    Decision::Rejected { retry_after_ms } => Err(self.rejected(retry_after_ms)),
                    Decision::None => unreachable!("the acquire op always decides"),
                }
            }
            Err(error) => {
                self.restore_pending(pending);
                self.inner.shared.mark_redis_down(&self.inner.name, &error);
                self.acquire_in_process()
            }
        }
    }

    /// Returns the current state and counters. With Redis unreachable, it returns this
    /// instance's fallback state marked `degraded`.
    pub async fn stats(&self) -> BreakerStats {
        if self.inner.shared.redis.is_none() {
            return self.build_stats(&lock(&self.inner.machine).snapshot().clone(), false);
        }

        if let Some(store) = self.inner.shared.usable_redis() {
            let pending = self.take_pending();
            let sent_at = Instant::now();
            match store
                .run(&self.inner.name, &self.inner.config, Op::Stats, pending)
                .await
            {
                Ok(reply) => {
                    self.absorb(&reply, sent_at);
                    return self.build_stats(&reply.snapshot, false);
                }
                Err(error) => {
                    self.restore_pending(pending);
                    self.inner.shared.mark_redis_down(&self.inner.name, &error);
                }
            }
        }
        self.build_stats(&lock(&self.inner.machine).snapshot().clone(), true)
    }

    /// Closes the breaker and clears its counters, for every instance when the state is in
    /// Redis. Tries Redis even shortly after a failed Redis call, because an operator asked.
    pub async fn reset(&self) -> BreakerStats {
        let Some(store) = &self.inner.shared.redis else {
            let now_ms = self.inner.shared.clock.now_ms();
            let mut machine = lock(&self.inner.machine);
            if let Some(change) = machine.reset() {
                self.inner.shared.report(&self.inner.name, change, now_ms);
            }
            return self.build_stats(machine.snapshot(), false);
        };

        // Successes admitted before the reset must not count after it.
        self.take_pending();
        let fallback_change = lock(&self.inner.machine).reset();
        let sent_at = Instant::now();
        let none = PendingSuccesses::default();
        match store
            .run(&self.inner.name, &self.inner.config, Op::Reset, none)
            .await
        {
            Ok(reply) => {
                self.absorb(&reply, sent_at);
                self.build_stats(&reply.snapshot, false)
            }
            Err(error) => {
                self.inner.shared.mark_redis_down(&self.inner.name, &error);
                if let Some(change) = fallback_change {
                    let now_ms = self.inner.shared.clock.now_ms();
                    self.inner.shared.report(&self.inner.name, change, now_ms);
                }
                self.build_stats(&lock(&self.inner.machine).snapshot().clone(), true)
            }
        }
    }

    fn acquire_in_process(&self) -> Result<Permit, Rejected> {
        let now_ms = self.inner.shared.clock.now_ms();
        let admission = {
            let mut machine = lock(&self.inner.machine);
            let (admission, change) = machine.acquire(&self.inner.config, now_ms);
            if let Some(change) = change {
                self.inner.shared.report(&self.inner.name, change, now_ms);
            }
            admission
        };
        match admission {
            Admission::Admitted(ticket) => Ok(self.permit(ticket, Source::Memory)),
            Admission::Rejected { retry_after_ms } => Err(self.rejected(retry_after_ms)),
        }
    }

    fn record_in_process(&self, ticket: &Ticket, outcome: Outcome) {
        let now_ms = self.inner.shared.clock.now_ms();
        let mut machine = lock(&self.inner.machine);
        if let Some(change) = machine.record(&self.inner.config, ticket, outcome, now_ms) {
            self.inner.shared.report(&self.inner.name, change, now_ms);
        }
    }

    pub(super) async fn finish(&self, ticket: Ticket, source: Source, outcome: Outcome) {
        if source == Source::Memory {
            self.record_in_process(&ticket, outcome);
            return;
        }
        if source == Source::Cache && outcome == Outcome::Success {
            let mut cache = lock(&self.inner.cache);
            cache.pending.count += 1;
            cache.pending.last_ms = self.inner.shared.clock.now_ms();
            return;
        }

        let Some(store) = &self.inner.shared.redis else {
            unreachable!("only the Redis backend issues cached or Redis tickets");
        };
        let pending = self.take_pending();
        let sent_at = Instant::now();
        let op = Op::Record {
            ticket: &ticket,
            outcome,
        };
        match store
            .run(&self.inner.name, &self.inner.config, op, pending)
            .await
        {
            Ok(reply) => self.absorb(&reply, sent_at),
            Err(error) => {
                self.restore_pending(pending);
                self.inner.shared.mark_redis_down(&self.inner.name, &error);
                // The fallback state learns the outcome, so an outage of the dependency
                // during a Redis outage still opens the breaker on this instance.
                let epoch = lock(&self.inner.machine).snapshot().epoch;
                self.record_in_process(&Ticket::Closed { epoch }, outcome);
            }
        }
    }

    /// Frees the probe slot of a permit dropped without an outcome. With Redis this runs in
    /// a spawned task; if it cannot run, the slot expires after the probe lease.
    pub(super) fn abandon(&self, ticket: Ticket, source: Source) {
        let Ticket::Probe { token } = ticket else {
            return;
        };
        if source == Source::Memory {
            lock(&self.inner.machine).release(&Ticket::Probe { token });
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let breaker = self.clone();
        runtime.spawn(async move {
            let Some(store) = &breaker.inner.shared.redis else {
                return;
            };
            let op = Op::Release { token: &token };
            let none = PendingSuccesses::default();
            if let Err(error) = store
                .run(&breaker.inner.name, &breaker.inner.config, op, none)
                .await
            {
                tracing::warn!(
                    breaker = %breaker.inner.name,
                    error = %error,
                    "releasing an abandoned probe slot failed; it expires after the probe lease"
                );
            }
        });
    }

    /// Returns a ticket from the local copy of the Redis state when that copy is fresh,
    /// closed and shows no failure since the last success.
    fn cached_ticket(&self) -> Option<Ticket> {
        let cache = lock(&self.inner.cache);
        let (snapshot, read_at) = cache.snapshot.as_ref()?;
        let fresh = read_at.elapsed() < self.inner.shared.cache_ttl;
        let healthy = snapshot.state == BreakerState::Closed && snapshot.consecutive_failures == 0;
        (fresh && healthy).then_some(Ticket::Closed {
            epoch: snapshot.epoch,
        })
    }

    /// Stores the state a Redis call returned and reports its transition. The copy is dated
    /// by when its request was sent, which is before Redis read the state, so the cache never
    /// trusts a state for longer than the interval. A reply to an earlier request does not
    /// replace a later one.
    fn absorb(&self, reply: &Reply, sent_at: Instant) {
        self.inner.shared.mark_redis_up(&self.inner.name);
        {
            let mut cache = lock(&self.inner.cache);
            let newer = cache
                .snapshot
                .as_ref()
                .is_none_or(|(_, read_at)| *read_at <= sent_at);
            if newer {
                cache.snapshot = Some((reply.snapshot.clone(), sent_at));
            }
        }
        if let Some(change) = reply.change {
            self.inner
                .shared
                .report(&self.inner.name, change, reply.now_ms);
        }
    }

    fn take_pending(&self) -> PendingSuccesses {
        std::mem::take(&mut lock(&self.inner.cache).pending)
    }

    fn restore_pending(&self, pending: PendingSuccesses) {
        let mut cache = lock(&self.inner.cache);
        cache.pending.count += pending.count;
        cache.pending.last_ms = cache.pending.last_ms.max(pending.last_ms);
    }

    fn permit(&self, ticket: Ticket, source: Source) -> Permit {
        Permit::new(self.clone(), ticket, source)
    }

    fn rejected(&self, retry_after_ms: i64) -> Rejected {
        let retry_after_ms = u64::try_from(retry_after_ms.max(1000)).unwrap_or(u64::MAX);
        Rejected {
            breaker: self.inner.name.clone(),
            retry_after: Duration::from_millis(retry_after_ms),
        }
    }

    fn build_stats(&self, snapshot: &Snapshot, degraded: bool) -> BreakerStats {
        let seconds = |ms: Option<i64>| ms.map(|ms| ms as f64 / 1000.0);
        BreakerStats {
            name: self.inner.name.clone(),
            state: snapshot.state,
            failure_count: snapshot.failure_count,
            success_count: snapshot.success_count,
            consecutive_failures: snapshot.consecutive_failures,
            consecutive_successes: snapshot.consecutive_successes,
            last_failure_time: seconds(snapshot.last_failure_ms),
            last_success_time: seconds(snapshot.last_success_ms),
            config: self.inner.config.report(),
            backend: self.inner.shared.backend(),
            instance_id: self.inner.shared.instance_id.clone(),
            degraded,
        }
    }
}
