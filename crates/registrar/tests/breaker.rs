//! Circuit breakers: the state machine on the in-process backend with an injected clock, and
//! the Redis backend shared by two registries that stand for two processes.
//!
//! The Redis tests run when `TEST_REDIS_URL` is set and use a random key prefix each. The
//! fallback test starts a private `redis-server` on a free loopback port so it can kill it.

use std::io;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use registrar::resilience::breaker::{
    Backend, Breaker, BreakerClock, BreakerConfig, BreakerError, BreakerState, Breakers,
    Transition, TransitionReason,
};
use registrar::shared_state::RedisHandle;
use tokio::sync::Semaphore;

struct ManualClock(AtomicI64);

impl ManualClock {
    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl BreakerClock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

type Log = Arc<Mutex<Vec<Transition>>>;

fn config(failures: u32, recovery: Duration, successes: u32, permits: u32) -> BreakerConfig {
    BreakerConfig {
        failure_threshold: failures,
        recovery_timeout: recovery,
        success_threshold: successes,
        call_timeout: Duration::from_secs(5),
        half_open_permits: permits,
    }
}

/// Builds a registry with one breaker named `dep` on the in-process backend.
fn memory(config: BreakerConfig) -> (Breaker, Arc<ManualClock>, Log, Breakers) {
    let clock = Arc::new(ManualClock(AtomicI64::new(1_700_000_000_000)));
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let breakers = Breakers::builder("test-instance")
        .breaker("dep", config)
        .clock(clock.clone())
        .on_transition(move |t| sink.lock().unwrap().push(t.clone()))
        .build()
        .expect("valid breakers");
    (breakers.get("dep").expect("dep"), clock, log, breakers)
}

async fn fail(breaker: &Breaker) -> BreakerError<io::Error> {
    breaker
        .call(async { Err::<(), _>(io::Error::other("down")) })
        .await
        .expect_err("the call fails")
}

async fn succeed(breaker: &Breaker) -> Result<(), BreakerError<io::Error>> {
    breaker.call(async { Ok::<(), io::Error>(()) }).await
}

async fn open(breaker: &Breaker) {
    for _ in 0..breaker.config().failure_threshold {
        fail(breaker).await;
    }
    let stats = breaker.stats().await;
    assert_eq!(stats.state, BreakerState::Open, "{stats:?}");
}

fn steps(log: &Log) -> Vec<(BreakerState, BreakerState, TransitionReason)> {
    let log = log.lock().unwrap();
    log.iter().map(|t| (t.from, t.to, t.reason)).collect()
}

/// Starts `calls` concurrent calls spread over `breakers`. Admitted calls wait at a gate
/// until every call was either admitted or rejected, so admitted probes stay in flight.
/// Returns the number of calls admitted while all of them were in flight.
async fn race(breakers: &[Breaker], calls: usize) -> usize {
    let gate = Arc::new(Semaphore::new(0));
    let admitted = Arc::new(AtomicUsize::new(0));
    let rejected = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..calls {
        let breaker = breakers[i % breakers.len()].clone();
        let (gate, admitted, rejected) = (gate.clone(), admitted.clone(), rejected.clone());
        tasks.push(tokio::spawn(async move {
            let result = breaker
                .call(async {
                    admitted.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.acquire().await;
                    Ok::<(), io::Error>(())
                })
                .await;
            if let Err(BreakerError::Open { .. }) = result {
                rejected.fetch_add(1, Ordering::SeqCst);
            }
            result.is_ok()
        }));
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    while admitted.load(Ordering::SeqCst) + rejected.load(Ordering::SeqCst) < calls {
        assert!(Instant::now() < deadline, "calls did not all start in 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let in_flight = admitted.load(Ordering::SeqCst);

    gate.close();
    let mut succeeded = 0;
    for task in tasks {
        succeeded += usize::from(task.await.expect("call task"));
    }
    assert_eq!(succeeded, in_flight, "every admitted call succeeds");
    in_flight
}

#[tokio::test]
async fn memory_opens_at_threshold() {
    let (breaker, _clock, log, _) = memory(config(3, Duration::from_secs(30), 2, 1));

    fail(&breaker).await;
    fail(&breaker).await;
    assert_eq!(breaker.stats().await.state, BreakerState::Closed);
    fail(&breaker).await;

    let stats = breaker.stats().await;
    assert_eq!(stats.state, BreakerState::Open);
    assert_eq!(stats.failure_count, 3);
    assert_eq!(stats.consecutive_failures, 3);
    assert_eq!(stats.backend, Backend::Memory);
    assert_eq!(stats.instance_id, "test-instance");
    assert_eq!(
        steps(&log),
        [(
            BreakerState::Closed,
            BreakerState::Open,
            TransitionReason::FailureThresholdReached
        )]
    );
}

#[tokio::test]
async fn memory_success_resets_consecutive_failures() {
    let (breaker, _clock, _log, _) = memory(config(3, Duration::from_secs(30), 2, 1));

    for _ in 0..4 {
        fail(&breaker).await;
        fail(&breaker).await;
        succeed(&breaker).await.expect("closed breaker admits");
    }

    let stats = breaker.stats().await;
    assert_eq!(stats.state, BreakerState::Closed);
    assert_eq!(stats.failure_count, 8);
    assert_eq!(stats.success_count, 4);
    assert_eq!(stats.consecutive_failures, 0);
}

#[tokio::test]
async fn memory_open_fails_fast_without_calling() {
    let (breaker, _clock, _log, _) = memory(config(2, Duration::from_secs(30), 2, 1));
    open(&breaker).await;
    let calls = AtomicUsize::new(0);

    for _ in 0..10 {
        let result = breaker
            .call(async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<(), io::Error>(())
            })
            .await;
        let Err(BreakerError::Open {
            breaker: name,
            retry_after,
        }) = result
        else {
            panic!("expected Open, got {result:?}");
        };
        assert_eq!(name, "dep");
        assert_eq!(retry_after, Duration::from_secs(30));
    }
    let rejected = breaker.try_acquire().await.map(|_| ()).expect_err("open");
    assert_eq!(rejected.retry_after_seconds(), 30);

    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn memory_half_open_after_recovery_timeout() {
    let (breaker, clock, log, _) = memory(config(2, Duration::from_secs(30), 2, 1));
    open(&breaker).await;

    clock.advance(Duration::from_millis(29_999));
    let early = breaker
        .try_acquire()
        .await
        .map(|_| ())
        .expect_err("still open");
    assert_eq!(early.retry_after, Duration::from_secs(1), "at least 1 s");
    clock.advance(Duration::from_millis(1));
    let permit = breaker.try_acquire().await.expect("probe admitted");

    assert!(permit.is_probe());
    assert_eq!(breaker.stats().await.state, BreakerState::HalfOpen);
    assert_eq!(
        steps(&log).last(),
        Some(&(
            BreakerState::Open,
            BreakerState::HalfOpen,
            TransitionReason::RecoveryTimeoutElapsed
        ))
    );
}

async fn memory_half_open_admits(permits: u32) {
    let (breaker, clock, _log, _) = memory(config(2, Duration::from_secs(30), 10, permits));
    open(&breaker).await;
    clock.advance(Duration::from_secs(30));

    let admitted = race(std::slice::from_ref(&breaker), 50).await;

    assert_eq!(admitted, permits as usize);
    let stats = breaker.stats().await;
    assert_eq!(stats.state, BreakerState::HalfOpen);
    assert_eq!(stats.consecutive_successes, permits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_half_open_admits_one_of_fifty() {
    memory_half_open_admits(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_half_open_admits_three_of_fifty() {
    memory_half_open_admits(3).await;
}

#[tokio::test]
async fn memory_probes_close_after_success_threshold() {
    let (breaker, clock, log, _) = memory(config(2, Duration::from_secs(30), 2, 1));
    open(&breaker).await;
    clock.advance(Duration::from_secs(30));

    succeed(&breaker).await.expect("first probe");
    assert_eq!(breaker.stats().await.state, BreakerState::HalfOpen);
    succeed(&breaker).await.expect("second probe");

    let stats = breaker.stats().await;
    assert_eq!(stats.state, BreakerState::Closed);
    assert_eq!(stats.consecutive_failures, 0);
    assert_eq!(
        steps(&log).last(),
        Some(&(
            BreakerState::HalfOpen,
            BreakerState::Closed,
            TransitionReason::SuccessThresholdReached
        ))
    );
}

#[tokio::test]
async fn memory_hanging_probe_times_out_and_reopens() {
    let mut settings = config(2, Duration::from_secs(30), 2, 1);
    settings.call_timeout = Duration::from_millis(100);
    let (breaker, clock, log, _) = memory(settings);
    open(&breaker).await;
    clock.advance(Duration::from_secs(30));

    let started = Instant::now();
    let result = breaker
        .call(std::future::pending::<Result<(), io::Error>>())
        .await;

    let Err(BreakerError::Timeout { after, .. }) = result else {
        panic!("expected Timeout, got {result:?}");
    };
    assert_eq!(after, Duration::from_millis(100));
    assert!(started.elapsed() >= Duration::from_millis(100));
    let stats = breaker.stats().await;
    assert_eq!(stats.state, BreakerState::Open);
    assert_eq!(stats.failure_count, 3);
    assert_eq!(
        steps(&log).last(),
        Some(&(
            BreakerState::HalfOpen,
            BreakerState::Open,
            TransitionReason::ProbeFailed
        ))
    );
    let retry = breaker.try_acquire().await.map(|_| ()).expect_err("open");
    assert_eq!(retry.retry_after, Duration::from_secs(30), "fresh timer");
}

#[tokio::test]
async fn memory_lost_probe_slot_expires() {
    let (breaker, clock, _log, _) = memory(config(2, Duration::from_secs(30), 2, 1));
    open(&breaker).await;
    clock.advance(Duration::from_secs(30));
    // A probe whose task vanished without dropping its permit, like a killed process.
    std::mem::forget(breaker.try_acquire().await.expect("probe"));

    let lease = breaker.config().call_timeout + registrar::resilience::breaker::PROBE_LEASE_MARGIN;
    clock.advance(lease - Duration::from_millis(1));
    assert!(breaker.try_acquire().await.is_err(), "slot still held");
    clock.advance(Duration::from_millis(1));

    assert!(breaker.try_acquire().await.is_ok(), "slot released");
}

#[tokio::test]
async fn memory_dropped_probe_frees_slot() {
    let (breaker, clock, _log, _) = memory(config(2, Duration::from_secs(30), 2, 1));
    open(&breaker).await;
    clock.advance(Duration::from_secs(30));

    let probe = breaker.try_acquire().await.expect("probe");
    assert!(breaker.try_acquire().await.is_err(), "one slot");
    drop(probe);

    assert!(breaker.try_acquire().await.is_ok());
}

#[tokio::test]
async fn memory_classified_answer_is_not_failure() {
    let (breaker, _clock, _log, _) = memory(config(2, Duration::from_secs(30), 2, 1));

    for _ in 0..5 {
        let declined = breaker
            .call_classified(async { Err::<(), _>(402_u16) }, |status| *status >= 500)
            .await;
        assert!(matches!(declined, Err(BreakerError::Inner(402))));
    }

    let stats = breaker.stats().await;
    assert_eq!(stats.state, BreakerState::Closed);
    assert_eq!(stats.failure_count, 0);
    assert_eq!(stats.success_count, 5);
}

#[tokio::test]
async fn memory_reset_closes_and_clears() {
    let (breaker, _clock, log, breakers) = memory(config(2, Duration::from_secs(30), 2, 1));
    open(&breaker).await;

    let stats = breakers.reset("dep").await.expect("known breaker");

    assert_eq!(stats.state, BreakerState::Closed);
    assert_eq!(stats.failure_count, 0);
    assert_eq!(stats.consecutive_failures, 0);
    assert_eq!(stats.last_failure_time, None);
    assert!(succeed(&breaker).await.is_ok());
    assert_eq!(
        steps(&log).last(),
        Some(&(
            BreakerState::Open,
            BreakerState::Closed,
            TransitionReason::Reset
        ))
    );
    assert!(breakers.reset("unknown").await.is_none());
    assert!(breakers.stats("unknown").await.is_none());
}

#[tokio::test]
async fn memory_transitions_reported_in_order() {
    let (breaker, clock, log, _) = memory(config(2, Duration::from_secs(30), 1, 1));

    open(&breaker).await;
    clock.advance(Duration::from_secs(30));
    fail(&breaker).await;
    clock.advance(Duration::from_secs(30));
    succeed(&breaker).await.expect("probe");

    use BreakerState::{Closed, HalfOpen, Open};
    use TransitionReason::*;
    assert_eq!(
        steps(&log),
        [
            (Closed, Open, FailureThresholdReached),
            (Open, HalfOpen, RecoveryTimeoutElapsed),
            (HalfOpen, Open, ProbeFailed),
            (Open, HalfOpen, RecoveryTimeoutElapsed),
            (HalfOpen, Closed, SuccessThresholdReached),
        ]
    );
    let log = log.lock().unwrap();
    assert!(log.iter().all(|t| t.breaker == "dep"));
    assert!(log.windows(2).all(|pair| pair[0].at <= pair[1].at));
}

#[tokio::test]
async fn stats_serialize_contract_shape() {
    let (breaker, _clock, _log, breakers) = memory(config(2, Duration::from_millis(1500), 2, 1));
    fail(&breaker).await;

    let all = serde_json::to_value(breakers.stats_all().await).expect("json");

    let stats = &all[0];
    assert_eq!(stats["name"], "dep");
    assert_eq!(stats["state"], "closed");
    assert_eq!(stats["failure_count"], 1);
    assert_eq!(stats["last_failure_time"], 1_700_000_000.0);
    assert_eq!(stats["last_success_time"], serde_json::Value::Null);
    assert_eq!(stats["config"]["recovery_timeout"], 1.5);
    assert_eq!(stats["config"]["timeout"], 5.0);
    assert_eq!(stats["config"]["half_open_permits"], 1);
    assert_eq!(stats["backend"], "memory");
    assert_eq!(stats["degraded"], false);
}

// Redis backend: two registries with different instance ids over one Redis.

fn test_redis_url() -> Option<String> {
    let url = std::env::var("TEST_REDIS_URL").ok();
    if url.is_none() {
        eprintln!("skipped: TEST_REDIS_URL is not set");
    }
    url
}

fn redis_handle(url: &str) -> RedisHandle {
    RedisHandle::connect(url, Duration::from_millis(500), Duration::from_millis(500))
        .expect("redis client")
}

/// Two registries ("a" and "b") over one Redis with one breaker `dep`, under a key prefix
/// unique to the test.
struct Pair {
    a: Breakers,
    b: Breakers,
    log_a: Log,
    log_b: Log,
    url: String,
    prefix: String,
}

impl Pair {
    fn new(url: &str, config: BreakerConfig, cache_ttl: Duration) -> Self {
        let redis = redis_handle(url);
        let prefix = format!("test-{}:circuit_breaker:", uuid::Uuid::new_v4());
        let registry = |instance: &str, log: &Log| {
            let sink = Arc::clone(log);
            Breakers::builder(instance)
                .breaker("dep", config)
                .redis(redis.clone())
                .key_prefix(prefix.clone())
                .cache_ttl(cache_ttl)
                .on_transition(move |t| sink.lock().unwrap().push(t.clone()))
                .build()
                .expect("valid breakers")
        };
        let (log_a, log_b) = (Log::default(), Log::default());
        Self {
            a: registry("instance-a", &log_a),
            b: registry("instance-b", &log_b),
            log_a,
            log_b,
            url: url.to_owned(),
            prefix,
        }
    }

    fn a(&self) -> Breaker {
        self.a.get("dep").expect("dep")
    }

    fn b(&self) -> Breaker {
        self.b.get("dep").expect("dep")
    }

    /// Opens the breaker through `a` and returns a time by which the recovery timeout has
    /// passed on the Redis clock, which is this host's wall clock.
    async fn open_through_a(&self) -> Instant {
        open(&self.a()).await;
        Instant::now() + self.a().config().recovery_timeout + Duration::from_millis(20)
    }
}

impl Drop for Pair {
    /// Deletes the test's key, also after a failed assertion.
    fn drop(&mut self) {
        let deleted = redis::Client::open(self.url.as_str())
            .and_then(|client| client.get_connection())
            .and_then(|mut connection| {
                redis::cmd("DEL")
                    .arg(format!("{}dep", self.prefix))
                    .query::<()>(&mut connection)
            });
        if let Err(error) = deleted {
            eprintln!("could not delete the test key {}dep: {error}", self.prefix);
        }
    }
}

#[tokio::test]
async fn redis_instances_share_state() {
    let Some(url) = test_redis_url() else { return };
    let pair = Pair::new(
        &url,
        config(3, Duration::from_secs(30), 2, 1),
        Duration::from_secs(1),
    );

    open(&pair.a()).await;
    let calls = AtomicUsize::new(0);
    let result = pair
        .b()
        .call(async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<(), io::Error>(())
        })
        .await;

    assert!(
        matches!(result, Err(BreakerError::Open { .. })),
        "{result:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let stats = pair.b.stats("dep").await.expect("dep");
    assert_eq!(stats.state, BreakerState::Open);
    assert_eq!(stats.failure_count, 3);
    assert_eq!(stats.backend, Backend::Redis);
    assert_eq!(stats.instance_id, "instance-b");
    assert!(!stats.degraded);
    assert_eq!(steps(&pair.log_a).len(), 1, "a made the transition");
    assert!(steps(&pair.log_b).is_empty(), "b only observed it");
}

async fn redis_half_open_admits(permits: u32) {
    let Some(url) = test_redis_url() else { return };
    let recovery = Duration::from_millis(300);
    let pair = Pair::new(
        &url,
        config(2, recovery, 10, permits),
        Duration::from_secs(1),
    );
    let recovered_at = pair.open_through_a().await;
    tokio::time::sleep_until(recovered_at.into()).await;

    let admitted = race(&[pair.a(), pair.b()], 50).await;

    assert_eq!(admitted, permits as usize);
    let stats = pair.a.stats("dep").await.expect("dep");
    assert_eq!(stats.state, BreakerState::HalfOpen);
    assert_eq!(stats.consecutive_successes, permits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_half_open_admits_one_of_fifty() {
    redis_half_open_admits(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_half_open_admits_three_of_fifty() {
    redis_half_open_admits(3).await;
}

#[tokio::test]
async fn redis_probes_close_and_failed_probe_reopens() {
    let Some(url) = test_redis_url() else { return };
    let recovery = Duration::from_millis(200);
    let mut settings = config(2, recovery, 2, 1);
    settings.call_timeout = Duration::from_millis(100);
    let pair = Pair::new(&url, settings, Duration::from_secs(1));

    let recovered_at = pair.open_through_a().await;
    tokio::time::sleep_until(recovered_at.into()).await;
    let hung = pair
        .b()
        .call(std::future::pending::<Result<(), io::Error>>())
        .await;
    assert!(
        matches!(hung, Err(BreakerError::Timeout { .. })),
        "{hung:?}"
    );
    assert_eq!(pair.a.stats("dep").await.unwrap().state, BreakerState::Open);

    let recovered_at = Instant::now() + recovery + Duration::from_millis(20);
    tokio::time::sleep_until(recovered_at.into()).await;
    succeed(&pair.a()).await.expect("first probe");
    succeed(&pair.b()).await.expect("second probe");

    assert_eq!(
        pair.a.stats("dep").await.unwrap().state,
        BreakerState::Closed
    );
    use BreakerState::{Closed, HalfOpen, Open};
    use TransitionReason::*;
    let mut all = steps(&pair.log_a);
    all.extend(steps(&pair.log_b));
    for step in [
        (Closed, Open, FailureThresholdReached),
        (HalfOpen, Open, ProbeFailed),
        (HalfOpen, Closed, SuccessThresholdReached),
    ] {
        assert!(all.contains(&step), "{step:?} missing from {all:?}");
    }
    assert_eq!(all.len(), 5, "{all:?}");
}

#[tokio::test]
async fn redis_reset_seen_by_other_instance() {
    let Some(url) = test_redis_url() else { return };
    let pair = Pair::new(
        &url,
        config(2, Duration::from_secs(30), 2, 1),
        Duration::from_secs(1),
    );
    open(&pair.a()).await;

    let after_reset = pair.b.reset("dep").await.expect("dep");
    let seen_by_a = pair.a.stats("dep").await.expect("dep");

    assert_eq!(after_reset.state, BreakerState::Closed);
    assert_eq!(seen_by_a.state, BreakerState::Closed);
    assert_eq!(seen_by_a.failure_count, 0);
    assert_eq!(seen_by_a.consecutive_failures, 0);
    assert!(succeed(&pair.a()).await.is_ok());
    assert_eq!(
        steps(&pair.log_b),
        [(
            BreakerState::Open,
            BreakerState::Closed,
            TransitionReason::Reset
        )]
    );
}

#[tokio::test]
async fn redis_cache_bounds_admission_after_open() {
    let Some(url) = test_redis_url() else { return };
    let ttl = Duration::from_millis(300);
    let pair = Pair::new(&url, config(2, Duration::from_secs(30), 2, 1), ttl);
    succeed(&pair.b()).await.expect("b reads a closed breaker");

    open(&pair.a()).await;
    let opened_by = Instant::now();
    let mut late_admissions = Vec::new();
    let deadline = opened_by + Duration::from_secs(5);
    loop {
        let started = Instant::now();
        match succeed(&pair.b()).await {
            Ok(()) => late_admissions.push(started.duration_since(opened_by)),
            Err(BreakerError::Open { .. }) => break,
            Err(other) => panic!("unexpected error {other}"),
        }
        assert!(
            started < deadline,
            "b still admits calls 5 s after the open"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // b read the state before the open completed, so its copy expired by `opened_by + ttl`.
    // A call started after that moment must not be admitted, however slow the machine is.
    for started_after in &late_admissions {
        assert!(
            *started_after <= ttl,
            "a call started {started_after:?} after the open was admitted"
        );
    }
}

#[tokio::test]
async fn redis_successes_from_cache_reach_shared_totals() {
    let Some(url) = test_redis_url() else { return };
    let pair = Pair::new(
        &url,
        config(2, Duration::from_secs(30), 2, 1),
        Duration::from_secs(60),
    );

    for _ in 0..20 {
        succeed(&pair.b()).await.expect("closed");
    }

    let own = pair.b.stats("dep").await.expect("dep");
    assert_eq!(
        own.success_count, 20,
        "stats flush this instance's pending successes"
    );
    let other = pair.a.stats("dep").await.expect("dep");
    assert_eq!(other.success_count, 20);
}

/// A private `redis-server` on a free loopback port, killed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Returns `None` when `redis-server` is not installed.
    fn start(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Self { child, port })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn wait_for_stats(
    breakers: &Breakers,
    condition: &str,
    check: impl Fn(&registrar::resilience::breaker::BreakerStats) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = breakers.stats("dep").await.expect("dep");
        if check(&stats) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{condition} within 10 s: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_outage_falls_back_to_memory() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let Some(mut server) = RedisServer::start(port) else {
        eprintln!("skipped: redis-server is not installed");
        return;
    };
    let url = format!("redis://127.0.0.1:{}", server.port);
    let log = Log::default();
    let sink = Arc::clone(&log);
    let breakers = Breakers::builder("instance-a")
        .breaker("dep", config(2, Duration::from_secs(30), 2, 1))
        .redis(redis_handle(&url))
        .cache_ttl(Duration::ZERO)
        .on_transition(move |t| sink.lock().unwrap().push(t.clone()))
        .build()
        .expect("valid breakers");
    let breaker = breakers.get("dep").expect("dep");
    wait_for_stats(&breakers, "Redis reachable", |s| !s.degraded).await;

    server.kill();
    succeed(&breaker).await.expect("fallback state admits");
    let stats = breakers.stats("dep").await.expect("dep");
    assert!(stats.degraded);
    assert_eq!(stats.backend, Backend::Redis);
    open(&breaker).await;
    let rejected = succeed(&breaker).await;
    assert!(
        matches!(rejected, Err(BreakerError::Open { .. })),
        "{rejected:?}"
    );
    assert_eq!(
        steps(&log),
        [(
            BreakerState::Closed,
            BreakerState::Open,
            TransitionReason::FailureThresholdReached
        )]
    );

    let _restarted = RedisServer::start(port).expect("restart redis-server");
    wait_for_stats(&breakers, "Redis reachable again", |s| !s.degraded).await;
}

#[tokio::test]
async fn redis_dropped_probe_frees_slot() {
    let Some(url) = test_redis_url() else { return };
    let pair = Pair::new(
        &url,
        config(2, Duration::from_millis(200), 2, 1),
        Duration::from_secs(1),
    );
    let recovered_at = pair.open_through_a().await;
    tokio::time::sleep_until(recovered_at.into()).await;
    let probe = pair.a().try_acquire().await.expect("probe");
    assert!(probe.is_probe());
    assert!(pair.b().try_acquire().await.is_err(), "one slot");

    drop(probe);

    // The lease is 7 s, so a slot free within 3 s was released by the drop.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if pair.b().try_acquire().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "slot not released within 3 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn redis_lost_probe_slot_expires() {
    let Some(url) = test_redis_url() else { return };
    let mut settings = config(2, Duration::from_millis(200), 2, 1);
    settings.call_timeout = Duration::from_millis(100);
    let pair = Pair::new(&url, settings, Duration::from_secs(1));
    let recovered_at = pair.open_through_a().await;
    tokio::time::sleep_until(recovered_at.into()).await;

    // A probe whose process died: its permit never reports and never releases.
    std::mem::forget(pair.a().try_acquire().await.expect("probe"));
    let admitted_at = Instant::now();
    assert!(pair.b().try_acquire().await.is_err(), "slot still held");
    let lease = settings.call_timeout + registrar::resilience::breaker::PROBE_LEASE_MARGIN;
    tokio::time::sleep_until((admitted_at + lease + Duration::from_millis(20)).into()).await;

    let probe = pair
        .b()
        .try_acquire()
        .await
        .expect("slot released after the lease");
    assert!(probe.is_probe());
    probe.success().await;
    assert_eq!(pair.a.stats("dep").await.unwrap().consecutive_successes, 1);
}

/// Returns how many times Redis ran EVALSHA since its statistics were last reset.
async fn evalsha_calls(redis: &RedisHandle) -> u64 {
    let mut connection = redis.connection();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .expect("INFO commandstats");
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("numeric calls"))
}

#[tokio::test]
async fn redis_closed_fast_path_skips_round_trips() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let Some(server) = RedisServer::start(port) else {
        eprintln!("skipped: redis-server is not installed");
        return;
    };
    let redis = redis_handle(&format!("redis://127.0.0.1:{}", server.port));
    let breakers = Breakers::builder("instance-a")
        .breaker("dep", config(2, Duration::from_secs(30), 2, 1))
        .redis(redis.clone())
        .cache_ttl(Duration::from_secs(60))
        .build()
        .expect("valid breakers");
    let breaker = breakers.get("dep").expect("dep");
    wait_for_stats(&breakers, "Redis reachable", |s| !s.degraded).await;
    let mut connection = redis.connection();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut connection)
        .await
        .expect("CONFIG RESETSTAT");

    for _ in 0..1000 {
        succeed(&breaker).await.expect("closed");
    }
    assert_eq!(evalsha_calls(&redis).await, 0, "successes stay local");

    fail(&breaker).await;
    assert_eq!(evalsha_calls(&redis).await, 1, "a failure goes to Redis");
    succeed(&breaker).await.expect("closed");
    let after_failure = evalsha_calls(&redis).await;
    assert_eq!(
        after_failure, 3,
        "after a failure, admission and outcome go to Redis"
    );

    let stats = breakers.stats("dep").await.expect("dep");
    assert_eq!(stats.success_count, 1001);
    assert_eq!(stats.failure_count, 1);
    assert_eq!(stats.consecutive_failures, 0);
}
