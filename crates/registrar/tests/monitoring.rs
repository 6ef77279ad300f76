//! What operators watch: `/health` and its probes, `/metrics` in JSON and Prometheus text,
//! and the queue monitoring endpoints.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestApp, execute, fresh_db, test_config};
use registrar::http::{self, AppState};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn health_reports_each_component() {
    let app = TestApp::spawn().await;
    let (status, health) = app.get("/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["components"]["database"], "healthy");
    assert_eq!(health["components"]["workers"], "running");
    assert_eq!(health["components"]["queue"], "healthy");
    assert_eq!(health["checks"]["database"]["required"], true);
    assert!(
        health["checks"]["database"]["connections"]["max"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(health["checks"]["queue"]["waiting"], 0);
    let redis = if app.config.redis_url.is_some() {
        "healthy"
    } else {
        "not_configured"
    };
    assert_eq!(health["components"]["redis"], redis);

    let (status, live) = app.get("/health/live").await;
    assert_eq!(status, 200);
    assert_eq!(live["status"], "alive");
    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(status, 200);
    assert_eq!(ready["status"], "ready");
    app.stop().await;
}

#[tokio::test]
async fn health_reports_queue_backlog() {
    let db = fresh_db().await;
    let config = test_config(&db);
    let app = TestApp::start(db, config, false).await;
    app.enqueue("EST0010", "2024-2", &["G-ELC102-E"]).await;
    execute(
        &app.db,
        "UPDATE job SET created_at = created_at - 600000",
        &[],
    )
    .await;

    let (status, health) = app.get("/health").await;
    assert_eq!(
        status, 200,
        "a backlog degrades the service but does not stop it"
    );
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["components"]["queue"], "backlogged");
    assert_eq!(health["components"]["workers"], "none_in_process");
    assert_eq!(health["checks"]["queue"]["waiting"], 1);
    let age = health["checks"]["queue"]["oldest_job_age_seconds"]
        .as_f64()
        .unwrap();
    assert!(age >= 600.0, "{age}");
    app.stop().await;
}

#[tokio::test]
async fn health_503_when_worker_pool_stopped() {
    let db = fresh_db().await;
    let config = test_config(&db);
    let store = registrar::app::connect_store(&config).await.expect("store");
    let pool_shutdown = CancellationToken::new();
    let breakers = registrar::app::build_breakers(&config, None, None).expect("breakers");
    let (workers, handle) = registrar::app::start_workers(
        store.clone(),
        &config,
        breakers.clone(),
        pool_shutdown.clone(),
    );
    pool_shutdown.cancel();
    handle.await.expect("pool task");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::new(store, Arc::new(config), Some(workers), breakers);
    let server_shutdown = CancellationToken::new();
    let stop = server_shutdown.clone();
    let server = tokio::spawn(http::serve(
        listener,
        http::app(state),
        async move { stop.cancelled().await },
        Duration::from_secs(5),
    ));
    let client = reqwest::Client::new();

    let response = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], "SERVICE_UNAVAILABLE");
    assert!(
        body["message"].as_str().unwrap().contains("workers"),
        "{body}"
    );
    assert_eq!(body["details"]["components"]["workers"], "stopped");
    assert_eq!(body["details"]["components"]["database"], "healthy");

    let response = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let response = client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    server_shutdown.cancel();
    let _ = server.await;
    common::drop_database(&db);
}

#[tokio::test]
async fn health_keeps_original_keys() {
    let app = TestApp::spawn().await;
    let (_, health) = app.get("/health").await;
    for key in [
        "status",
        "database",
        "version",
        "mode",
        "timestamp",
        "components",
    ] {
        assert!(health.get(key).is_some(), "missing {key}: {health}");
    }
    assert_eq!(health["database"], json!("connected"));
    app.stop().await;
}

#[tokio::test]
async fn metrics_json_reports_real_values() {
    let app = TestApp::spawn().await;
    let done = app.enroll("EST0011", "2024-2", &["G-ELC102-E"]).await;
    assert_eq!(done["status"], "SUCCESS");
    let (status, _) = app.get("/api/v1/no-such-route").await;
    assert_eq!(status, 404);

    let (status, metrics) = app.get("/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics["uptime_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(metrics["uptime"], metrics["uptime_seconds"]);
    assert!(metrics["requests_total"].as_u64().unwrap() >= 3);
    assert_eq!(metrics["errors_total"], 0);
    assert!(metrics["requests_by_status"]["202"].as_u64().unwrap() >= 1);
    assert_eq!(metrics["requests_by_status"]["404"], 1);
    assert_eq!(metrics["jobs_by_state"]["success"], 1);
    assert_eq!(metrics["queue"]["depth"], 0);
    assert!(metrics["database_connections"]["in_use"].is_u64());
    assert!(metrics["database_connections"]["idle"].is_u64());
    assert_eq!(metrics["mode"], "asynchronous");
    assert_eq!(metrics["degraded"], false);
    app.stop().await;
}

/// Samples of a Prometheus text exposition, keyed by the series as written
/// (`name{label="value",…}`). Panics on a line that is not valid exposition format.
fn parse_exposition(text: &str) -> std::collections::HashMap<String, f64> {
    let mut typed = std::collections::HashSet::new();
    let mut samples = std::collections::HashMap::new();
    let valid_name = |name: &str| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap_or("");
            assert!(valid_name(name), "bad metric name in {line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type in {line}"
            );
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "bad metric name in {line}");
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "bad labels in {line}"
            );
            for pair in labels[1..labels.len() - 1].split("\",") {
                let (key, quoted) = pair.split_once('=').expect("label has =");
                assert!(valid_name(key), "bad label name in {line}");
                assert!(quoted.starts_with('"'), "unquoted label value in {line}");
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample without a TYPE line: {line}");
        samples.insert(series.to_owned(), value);
    }
    samples
}

async fn scrape(app: &TestApp) -> std::collections::HashMap<String, f64> {
    let response = app
        .client
        .get(app.url("/metrics/prometheus"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    parse_exposition(&response.text().await.expect("body"))
}

#[tokio::test]
async fn prometheus_counters_move_under_load() {
    let app = TestApp::spawn().await;
    let before = scrape(&app).await;
    for _ in 0..5 {
        let (status, _) = app.get("/api/v1/periodos").await;
        assert_eq!(status, 200);
    }
    let done = app.enroll("EST0012", "2024-2", &["G-ELC102-E"]).await;
    assert_eq!(done["status"], "SUCCESS");
    let after = scrape(&app).await;

    let value = |samples: &std::collections::HashMap<String, f64>, series: &str| {
        samples.get(series).copied().unwrap_or(0.0)
    };
    let requests =
        r#"registrar_http_requests_total{method="GET",route="/api/v1/periodos",status="200"}"#;
    assert!(
        value(&after, requests) - value(&before, requests) >= 5.0,
        "{requests} did not move by 5"
    );
    let latency = r#"registrar_http_request_duration_seconds_count{method="GET",route="/api/v1/periodos",status="200"}"#;
    assert!(value(&after, latency) - value(&before, latency) >= 5.0);
    let inf_bucket = r#"registrar_http_request_duration_seconds_bucket{method="GET",route="/api/v1/periodos",status="200",le="+Inf"}"#;
    assert!(after.contains_key(inf_bucket), "no +Inf bucket");
    let created = r#"registrar_audit_events_total{event_type="INSCRIPTION_CREATED",error_code=""}"#;
    assert!(value(&after, created) - value(&before, created) >= 1.0);
    let job_runs = r#"registrar_job_duration_seconds_count{kind="inscription",outcome="success"}"#;
    assert!(value(&after, job_runs) >= 1.0);
    assert!(after[r#"registrar_jobs{state="SUCCESS"}"#] >= 1.0);
    assert_eq!(after["registrar_queue_depth"], 0.0);
    assert!(after.contains_key("registrar_queue_oldest_job_age_seconds"));
    assert!(after.contains_key(r#"registrar_db_connections{state="idle"}"#));
    assert_eq!(after["registrar_db_up"], 1.0);
    app.stop().await;
}

#[tokio::test]
async fn queue_stats_count_finished_jobs() {
    let app = TestApp::spawn().await;
    let done = app.enroll("EST0013", "2024-2", &["G-ELC102-E"]).await;
    assert_eq!(done["status"], "SUCCESS");

    let (status, stats) = app.get("/api/v1/queue/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["completed_tasks"], 1);
    assert_eq!(stats["pending_tasks"], 0);
    assert_eq!(stats["active_tasks"], 0);
    assert_eq!(stats["failed_tasks"], 0);
    assert_eq!(stats["workers_online"], 1);
    assert_eq!(stats["degraded"], false);

    let (status, enhanced) = app.get("/api/v1/queue/stats/enhanced").await;
    assert_eq!(status, 200);
    assert_eq!(enhanced["completed_tasks"], 1);
    assert_eq!(enhanced["queue"]["depth"], 0);
    assert_eq!(enhanced["queue"]["degraded"], false);
    assert_eq!(enhanced["workers"][0]["status"], "online");
    assert!(enhanced["workers"][0]["processed_tasks"].as_u64().unwrap() >= 1);
    assert!(enhanced["database"]["connections"]["max"].as_u64().unwrap() > 0);
    app.stop().await;
}

#[tokio::test]
async fn workers_lists_in_process_pool() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/v1/queue/workers").await;
    assert_eq!(status, 200);
    let workers = body["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0]["status"], "online");
    assert_eq!(workers[0]["active_tasks"], 0);
    assert_eq!(
        workers[0]["pool"]["max_concurrency"],
        app.config.worker_concurrency
    );
    assert!(workers[0]["name"].as_str().is_some_and(|n| !n.is_empty()));
    app.stop().await;
}

/// Reads one task's status.
async fn task_status(app: &TestApp, task_id: &str) -> String {
    let (status, body) = app
        .get(&format!("/api/v1/queue/tasks/{task_id}/status"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn workers_control_pauses_and_resumes() {
    let app = TestApp::spawn().await;
    let (status, paused) = app
        .post(
            "/api/v1/queue/workers/control",
            &json!({ "action": "PAUSE" }),
        )
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["action"], "pause");
    assert_eq!(paused["workers"][0]["status"], "paused");
    let (_, health) = app.get("/health").await;
    assert_eq!(health["components"]["workers"], "paused");
    assert_eq!(health["status"], "degraded");

    let queued = app.enqueue("EST0014", "2024-2", &["G-ELC102-E"]).await;
    let task_id = queued["main_task_id"].as_str().unwrap().to_owned();
    // The pool polls every 50 ms in tests, so 20 polls pass in this window.
    let window = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < window {
        assert_eq!(
            task_status(&app, &task_id).await,
            "PENDING",
            "a paused pool claimed a job"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, resumed) = app
        .post(
            "/api/v1/queue/workers/control",
            &json!({ "action": "resume" }),
        )
        .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["workers"][0]["status"], "online");
    let done = app.wait_terminal(&[task_id], Duration::from_secs(30)).await;
    assert_eq!(done[0]["status"], "SUCCESS");

    let (_, audit) = app.get("/api/v1/audit?event_type=ADMIN_ACTION").await;
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["resume_workers", "pause_workers"]);
    app.stop().await;
}

#[tokio::test]
async fn workers_control_rejects_unknown_action() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post(
            "/api/v1/queue/workers/control",
            &json!({ "action": "explode" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error_code"], "VALIDATION_ERROR");
    assert_eq!(
        body["details"]["validation_errors"][0]["field"],
        "body -> action"
    );

    let (status, body) = app
        .post(
            "/api/v1/queue/workers/control",
            &json!({ "action": "ping", "worker_name": "someone-else" }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn workers_control_requires_admin_token() {
    let app = TestApp::spawn_with(|c| c.admin_token = Some("s3cret".into())).await;
    let (status, _) = app
        .post(
            "/api/v1/queue/workers/control",
            &json!({ "action": "pause" }),
        )
        .await;
    assert_eq!(status, 401);
    let response = app
        .client
        .post(app.url("/api/v1/queue/workers/control"))
        .bearer_auth("s3cret")
        .json(&json!({ "action": "ping" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn queues_report_waiting_jobs() {
    let db = fresh_db().await;
    let config = test_config(&db);
    let app = TestApp::start(db, config, false).await;
    app.enqueue("EST0015", "2024-2", &["G-ELC102-E"]).await;
    app.enqueue("EST0016", "2024-2", &["G-ELC102-E"]).await;

    let (status, body) = app.get("/api/v1/queue/queues").await;
    assert_eq!(status, 200);
    assert_eq!(body["degraded"], false);
    let queues = body["queues"].as_array().unwrap();
    let inscripciones = queues
        .iter()
        .find(|q| q["name"] == "inscripciones")
        .unwrap();
    assert_eq!(inscripciones["waiting"], 2);
    assert!(inscripciones["oldest_job_age_seconds"].as_f64().unwrap() >= 0.0);
    let bulk = queues
        .iter()
        .find(|q| q["name"] == "inscripciones_bulk")
        .unwrap();
    assert_eq!(bulk["waiting"], 0);
    app.stop().await;
}

#[tokio::test]
async fn unreadable_store_reports_degraded() {
    let db = fresh_db().await;
    let config = test_config(&db);
    let app = TestApp::start(db, config, false).await;
    execute(&app.db, "ALTER TABLE job RENAME TO job_hidden", &[]).await;

    let (status, stats) = app.get("/api/v1/queue/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["degraded"], true);
    assert!(stats["completed_tasks"].is_null(), "{stats}");
    let (_, metrics) = app.get("/metrics").await;
    assert_eq!(metrics["degraded"], true);
    assert!(metrics["jobs_by_state"].is_null(), "{metrics}");
    let (_, queues) = app.get("/api/v1/queue/queues").await;
    assert_eq!(queues["degraded"], true);
    assert!(queues["queues"][0]["waiting"].is_null(), "{queues}");
    let (status, health) = app.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["components"]["queue"], "unknown");
    assert_eq!(health["status"], "degraded");
    app.stop().await;
}
