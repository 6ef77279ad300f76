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
    let (workers, handle) =
        registrar::app::start_workers(store.clone(), &config, pool_shutdown.clone());
    pool_shutdown.cancel();
    handle.await.expect("pool task");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::new(store, Arc::new(config), Some(workers));
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
