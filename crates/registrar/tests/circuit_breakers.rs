//! Circuit breakers in the running service: billing's breaker opens on failures and then
//! fails fast without calling billing; after the recovery timeout a burst of enrollments lets
//! exactly the configured probes through; a hanging probe reopens it and a good one closes it;
//! two servers sharing Redis agree; the endpoints answer with live state.

mod common;

use std::time::{Duration, Instant};

use common::participant::{Mode, Participant};
use common::{TestApp, assert_invariants, fresh_db, test_config};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

async fn breaker(app: &TestApp, name: &str) -> Value {
    let (status, body) = app.get("/api/v1/queue/circuit-breakers").await;
    assert_eq!(status, 200, "{body}");
    body["circuit_breakers"][name].clone()
}

/// Polls until the breaker reports `state`.
async fn wait_state(app: &TestApp, name: &str, state: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let current = breaker(app, name).await;
        if current["state"] == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {state}: {current}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the recovery timeout since the breaker's last failure has passed.
async fn wait_recovery(app: &TestApp, name: &str, recovery: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let current = breaker(app, name).await;
        let last = current["last_failure_time"].as_f64().expect("last failure");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        if now > last + recovery + 0.05 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "recovery never passed: {current}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn billing_failures_open_breaker() {
    let billing = Participant::start(Mode::Fail).await;
    let base = billing.base.clone();
    let app = TestApp::spawn_with(move |c| {
        c.billing_url = Some(base);
        c.saga_step_attempts = 1;
        c.circuit_breakers = "billing:failure_threshold=2,recovery_timeout=600".into();
    })
    .await;
    // The charge fails, then the cancellation fails: two failures open the breaker.
    let first = app.enroll("RA0001", "2024-2", &["G-ELC102-E"]).await;
    assert_eq!(
        first["result"]["error_code"], "SAGA_COMPENSATION_FAILED",
        "{first}"
    );
    assert_eq!(breaker(&app, "billing").await["state"], "open");
    assert_eq!(billing.received().len(), 2);
    let (status, health) = app.get("/health").await;
    assert_eq!(
        status, 200,
        "an open breaker degrades the service, it does not stop it"
    );
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["components"]["circuit_breakers"], "degraded");

    // The next enrollment's charge is rejected by the breaker without a call to billing.
    let queued = app.enqueue("RA0002", "2024-2", &["G-ELC106-E"]).await;
    let task_id = queued["main_task_id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, sagas) = app.get("/api/v1/queue/sagas?status=compensating").await;
        if !sagas.as_object().expect("object").is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second saga never started compensating"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(billing.received().len(), 2, "billing was not called again");
    let (_, status) = app
        .get(&format!("/api/v1/queue/tasks/{task_id}/status"))
        .await;
    assert_ne!(status["status"], "FAILURE");

    // The synchronous path rejects the request at once with 503 and Retry-After, enrolling nothing.
    let (status, headers, text) = app
        .post_with(
            "/api/v1/inscripciones/sync",
            &[],
            &json!({ "registro_academico": "RA0003", "codigo_periodo": "2024-2", "grupos": ["G-ELC110-E"] }),
        )
        .await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("CIRCUIT_BREAKER_OPEN"), "{text}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(app.seats("G-ELC110-E").await, 0);
}

#[tokio::test]
async fn burst_admits_configured_probes() {
    let notification = Participant::start(Mode::Fail).await;
    let base = notification.base.clone();
    let app = TestApp::spawn_with(move |c| {
        c.notification_url = Some(base);
        c.worker_concurrency = 16;
        c.circuit_breakers = "notification:failure_threshold=1,recovery_timeout=2,\
                              success_threshold=1,timeout=2,half_open_permits=2"
            .into();
    })
    .await;
    let first = app.enroll("RA0001", "2024-2", &["G-ELC102-E"]).await;
    assert_eq!(
        first["result"]["status"], "SUCCESS",
        "a failed notice does not fail it"
    );
    assert_eq!(breaker(&app, "notification").await["state"], "open");
    assert_eq!(notification.received().len(), 1);

    // Probes hang until their 2 s timeout, holding both slots while the burst runs.
    notification.set_mode(Mode::Hang);
    wait_recovery(&app, "notification", 2.0).await;
    let mut ids = Vec::new();
    let mut racers = Vec::new();
    for i in 0..50 {
        let client = app.client.clone();
        let url = app.url("/api/v1/queue/inscripciones/async-by-groups");
        racers.push(tokio::spawn(async move {
            let body = json!({ "registro_academico": format!("EST{:04}", 100 + i), "codigo_periodo": "2024-2", "grupos": ["G-ELC106-E"] });
            let response: Value = client.post(url).json(&body).send().await.expect("POST").json().await.expect("json");
            response["main_task_id"].as_str().expect("id").to_owned()
        }));
    }
    for racer in racers {
        ids.push(racer.await.expect("racer"));
    }
    app.wait_terminal(&ids, WAIT).await;
    assert_eq!(
        notification.received().len(),
        3,
        "exactly two probes reached the service during the burst"
    );
    // The hanging probes timed out and reopened the breaker.
    assert_eq!(breaker(&app, "notification").await["state"], "open");

    notification.set_mode(Mode::Accept);
    wait_recovery(&app, "notification", 2.0).await;
    let last = app.enroll("RA0002", "2024-2", &["G-ELC102-E"]).await;
    assert_eq!(last["result"]["status"], "SUCCESS");
    wait_state(&app, "notification", "closed").await;
    assert_eq!(notification.received().len(), 4);
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn shared_redis_state_agrees() {
    let Some(redis_url) = std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("skipped: TEST_REDIS_URL is not set");
        return;
    };
    let billing = Participant::start(Mode::Fail).await;
    let db = fresh_db().await;
    let mut config = test_config(&db);
    config.redis_url = Some(redis_url);
    config.billing_url = Some(billing.base.clone());
    config.saga_step_attempts = 1;
    config.circuit_breakers = "billing:failure_threshold=2,recovery_timeout=600".into();
    let one = TestApp::start(db.clone(), config.clone(), true).await;
    // The second server shares the database, Redis and the key prefix, without workers.
    let two = TestApp::start(db, config, false).await;

    let done = one.enroll("RA0001", "2024-2", &["G-ELC102-E"]).await;
    assert_eq!(done["status"], "SUCCESS");
    let seen_by_two = breaker(&two, "billing").await;
    assert_eq!(seen_by_two["state"], "open", "{seen_by_two}");
    assert_eq!(seen_by_two["backend"], "redis");
    assert_ne!(
        seen_by_two["instance_id"],
        breaker(&one, "billing").await["instance_id"]
    );

    let (status, reset) = two
        .post("/api/v1/queue/circuit-breakers/billing/reset", &json!({}))
        .await;
    assert_eq!(status, 200, "{reset}");
    assert_eq!(reset["circuit_breaker"]["state"], "closed");
    let seen_by_one = breaker(&one, "billing").await;
    assert_eq!(seen_by_one["state"], "closed", "{seen_by_one}");
    assert_eq!(seen_by_one["consecutive_failures"], 0);
}

#[tokio::test]
async fn endpoints_report_every_breaker() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/v1/queue/circuit-breakers").await;
    assert_eq!(status, 200);
    for name in [
        "database",
        "redis",
        "billing",
        "notification",
        "celery_stats",
        "health_check",
    ] {
        let stats = &body["circuit_breakers"][name];
        assert_eq!(stats["state"], "closed", "{name}: {body}");
        assert!(stats["config"]["failure_threshold"].as_u64().is_some());
    }
    assert_eq!(body["overall_health"], "healthy");
    let (status, missing) = app
        .post(
            "/api/v1/queue/circuit-breakers/nonexistent/reset",
            &json!({}),
        )
        .await;
    assert_eq!(status, 404, "{missing}");
    // Requests that reach the database count as its successes.
    let (status, _) = app.get("/api/v1/periodos/").await;
    assert_eq!(status, 200);
    let database = breaker(&app, "database").await;
    assert!(
        database["success_count"].as_u64().unwrap_or(0) >= 1,
        "{database}"
    );

    // The Prometheus page reports each breaker's state and the sagas in flight.
    let text = app
        .client
        .get(app.url("/metrics/prometheus"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    // Tests in this binary share one recorder, so another test may have opened billing.
    let billing = "registrar_circuit_breaker_state{breaker=\"billing\"} ";
    assert!(text.lines().any(|l| l.starts_with(billing)), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("registrar_sagas_in_flight ")),
        "{text}"
    );
}

#[tokio::test]
async fn operator_endpoints_need_token() {
    let app = TestApp::spawn_with(|c| c.admin_token = Some("s3cret".into())).await;
    let calls = [
        ("POST", "/api/v1/queue/circuit-breakers/billing/reset"),
        ("DELETE", "/api/v1/queue/idempotency/cache/some-key"),
        ("POST", "/api/v1/queue/sagas/cleanup"),
        ("DELETE", "/api/v1/queue/tasks/some-task"),
    ];
    for (method, path) in calls {
        let request = |token: Option<&str>| {
            let mut builder = app
                .client
                .request(method.parse().expect("method"), app.url(path));
            if let Some(token) = token {
                builder = builder.bearer_auth(token);
            }
            builder
        };
        let missing = request(None).send().await.expect("send");
        assert_eq!(
            missing.status().as_u16(),
            401,
            "{method} {path} without a token"
        );
        let wrong = request(Some("guess")).send().await.expect("send");
        assert_eq!(
            wrong.status().as_u16(),
            403,
            "{method} {path} with a wrong token"
        );
        let right = request(Some("s3cret")).send().await.expect("send");
        assert!(
            matches!(right.status().as_u16(), 200 | 404),
            "{method} {path} with the token: {}",
            right.status()
        );
    }
}

#[tokio::test]
async fn two_serve_processes_share_breakers() {
    let Some(redis_url) = std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("skipped: TEST_REDIS_URL is not set");
        return;
    };
    let billing = Participant::start(Mode::Fail).await;
    let db = fresh_db().await;
    let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
    let env = [
        ("REDIS_URL", redis_url.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
        ("BILLING_URL", billing.base.as_str()),
        ("SAGA_STEP_ATTEMPTS", "1"),
        (
            "CIRCUIT_BREAKERS",
            "billing:failure_threshold=2,recovery_timeout=600",
        ),
        ("WORKER_POLL_INTERVAL_MS", "50"),
    ];
    let one = common::process::ServeProcess::spawn(&db, &env);
    let two = common::process::ServeProcess::spawn(&db, &env);
    let client = reqwest::Client::new();
    one.wait_live(&client).await;
    two.wait_live(&client).await;
    let get = |base: &str| {
        let client = client.clone();
        let url = format!("{base}/api/v1/queue/circuit-breakers");
        async move {
            let body: Value = client
                .get(url)
                .send()
                .await
                .expect("GET")
                .json()
                .await
                .expect("json");
            body["circuit_breakers"]["billing"].clone()
        }
    };

    // An enrollment through the first process fails its charge and its cancellation.
    let request = json!({ "registro_academico": "RA0001", "codigo_periodo": "2024-2", "grupos": ["G-ELC102-E"] });
    let response = client
        .post(format!("{}/api/v1/queue/inscripciones/async", one.base))
        .json(&request)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 202);
    let deadline = Instant::now() + WAIT;
    while get(&two.base).await["state"] != "open" {
        assert!(
            Instant::now() < deadline,
            "the second process never saw billing open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(
        get(&one.base).await["instance_id"],
        get(&two.base).await["instance_id"]
    );

    let reset = client
        .post(format!(
            "{}/api/v1/queue/circuit-breakers/billing/reset",
            two.base
        ))
        .send()
        .await
        .expect("POST");
    assert_eq!(reset.status().as_u16(), 200);
    let seen_by_one = get(&one.base).await;
    assert_eq!(seen_by_one["state"], "closed", "{seen_by_one}");
}
