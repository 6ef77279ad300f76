//! Idempotent enrollment requests: one job per key under races, replays byte for byte, 409
//! while running, 422 for a key reused with another body, fresh runs after business errors
//! and after invalidation, and the monitoring counts.

mod common;

use std::time::Duration;

use common::{TestApp, assert_invariants, fresh_db, scalar_bind, test_config};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const BY_GROUPS: &str = "/api/v1/queue/inscripciones/async-by-groups";
const WAIT: Duration = Duration::from_secs(30);

fn body(ra: &str, grupos: &[&str]) -> Value {
    json!({ "registro_academico": ra, "codigo_periodo": "2024-2", "grupos": grupos })
}

/// Starts the in-process workers of a test app that was started without them.
fn start_workers(app: &TestApp) -> CancellationToken {
    let stop = CancellationToken::new();
    let _ = registrar::app::start_workers(
        app.store.clone(),
        &app.config,
        app.breakers.clone(),
        stop.clone(),
    );
    stop
}

async fn jobs_with_key(app: &TestApp, key: &str) -> i64 {
    scalar_bind(
        &app.db,
        "SELECT CAST(COUNT(*) AS INTEGER) FROM job WHERE idempotency_key = $1",
        key,
    )
    .await
}

#[tokio::test]
async fn racing_key_makes_one_job() {
    let db = fresh_db().await;
    let config = test_config(&db);
    // No workers yet, so the job stays queued while the requests race.
    let app = TestApp::start(db, config, false).await;
    let request = body("RA0001", &["G-ELC102-E", "G-ELC106-E"]);
    let headers = [("Idempotency-Key", "race-key-1")];

    let mut racers = Vec::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let url = app.url(BY_GROUPS);
        let request = request.clone();
        racers.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .header(headers[0].0, headers[0].1)
                .json(&request)
                .send()
                .await
                .expect("POST");
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").cloned();
            (status, retry_after, response.text().await.expect("body"))
        }));
    }
    let mut accepted = Vec::new();
    let mut in_flight = 0;
    for racer in racers {
        let (status, retry_after, text) = racer.await.expect("racer");
        match status {
            202 => accepted.push(text),
            409 => {
                in_flight += 1;
                assert!(retry_after.is_some(), "a 409 carries Retry-After");
                assert!(text.contains("IDEMPOTENCY_IN_FLIGHT"), "{text}");
            }
            other => panic!("unexpected status {other}: {text}"),
        }
    }
    assert_eq!(accepted.len(), 1, "exactly one request queued a job");
    assert_eq!(in_flight, 19);
    assert_eq!(jobs_with_key(&app, "inscription:hdr:race-key-1").await, 1);

    let first: Value = serde_json::from_str(&accepted[0]).expect("json");
    let stop = start_workers(&app);
    let main = first["main_task_id"]
        .as_str()
        .expect("main_task_id")
        .to_owned();
    let done = app.wait_terminal(&[main], WAIT).await;
    assert_eq!(done[0]["result"]["status"], "SUCCESS", "{}", done[0]);

    let (status, replay_headers, replay) = app.post_with(BY_GROUPS, &headers, &request).await;
    assert_eq!(status, 202);
    assert_eq!(
        replay, accepted[0],
        "the replay repeats the first answer byte for byte"
    );
    assert_eq!(
        replay_headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inscripcion WHERE registro_academico = 'RA0001'")
            .await,
        1
    );
    assert_eq!(jobs_with_key(&app, "inscription:hdr:race-key-1").await, 1);
    stop.cancel();
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn reused_key_is_rejected() {
    let app = TestApp::spawn().await;
    let headers = [("Idempotency-Key", "reused-key")];
    let (status, _, first) = app
        .post_with(BY_GROUPS, &headers, &body("RA0002", &["G-ELC102-E"]))
        .await;
    assert_eq!(status, 202, "{first}");
    let (status, _, second) = app
        .post_with(BY_GROUPS, &headers, &body("RA0003", &["G-ELC106-E"]))
        .await;
    assert_eq!(status, 422, "{second}");
    let error: Value = serde_json::from_str(&second).expect("json");
    assert_eq!(error["error_code"], "IDEMPOTENCY_KEY_REUSED");
    assert!(error["request_id"].is_string());
    assert_eq!(
        app.count("SELECT COUNT(*) FROM job").await,
        1,
        "the reused key queued no job"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inscripcion WHERE registro_academico = 'RA0003'")
            .await,
        0
    );
}

#[tokio::test]
async fn business_error_runs_afresh() {
    let app = TestApp::spawn().await;
    // G-ELC108-E has one seat: RA0004 takes it, so RA0005's request is rejected.
    let taken = app.enroll("RA0004", "2024-2", &["G-ELC108-E"]).await;
    assert_eq!(taken["result"]["status"], "SUCCESS");
    let request = body("RA0005", &["G-ELC108-E"]);
    let (status, _, first) = app.post_with(BY_GROUPS, &[], &request).await;
    assert_eq!(status, 202);
    let first: Value = serde_json::from_str(&first).expect("json");
    let key = first["idempotency_key"].as_str().expect("key").to_owned();
    assert!(
        key.starts_with("inscription:") && !key.contains("hdr"),
        "{key}"
    );
    let main = first["main_task_id"].as_str().expect("id").to_owned();
    let done = app.wait_terminal(std::slice::from_ref(&main), WAIT).await;
    assert_eq!(
        done[0]["result"]["error_code"], "GRUPO_SIN_CUPO",
        "{}",
        done[0]
    );

    // A seat frees up; the same body is not replayed but runs again and now succeeds.
    let (status, _) = app
        .delete(&format!(
            "/api/v1/inscripciones/{}",
            taken["result"]["data"]["codigo_inscripcion"]
                .as_str()
                .expect("codigo")
        ))
        .await;
    assert_eq!(status, 204);
    let (status, headers, second) = app.post_with(BY_GROUPS, &[], &request).await;
    assert_eq!(status, 202, "{second}");
    assert!(headers.get("idempotent-replayed").is_none());
    let second: Value = serde_json::from_str(&second).expect("json");
    let again = second["main_task_id"].as_str().expect("id").to_owned();
    assert_ne!(again, main, "a new job runs");
    let done = app.wait_terminal(&[again], WAIT).await;
    assert_eq!(done[0]["result"]["status"], "SUCCESS", "{}", done[0]);
    assert_eq!(jobs_with_key(&app, &key).await, 2);
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn drop_invalidates_student_keys() {
    let app = TestApp::spawn().await;
    let request = body("RA0006", &["G-ELC102-E"]);
    let headers = [("Idempotency-Key", "drop-then-again")];
    let (_, _, first) = app.post_with(BY_GROUPS, &headers, &request).await;
    let first: Value = serde_json::from_str(&first).expect("json");
    let main = first["main_task_id"].as_str().expect("id").to_owned();
    let done = app.wait_terminal(std::slice::from_ref(&main), WAIT).await;
    let codigo = done[0]["result"]["data"]["codigo_inscripcion"]
        .as_str()
        .expect("codigo")
        .to_owned();
    let (status, headers_back, _) = app.post_with(BY_GROUPS, &headers, &request).await;
    assert_eq!(status, 202);
    assert!(headers_back.get("idempotent-replayed").is_some());

    let (status, _) = app
        .delete(&format!("/api/v1/inscripciones/{codigo}/grupos/G-ELC102-E"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_record WHERE registro_academico = 'RA0006'")
            .await,
        0
    );
    let (status, headers_back, again) = app.post_with(BY_GROUPS, &headers, &request).await;
    assert_eq!(status, 202);
    assert!(headers_back.get("idempotent-replayed").is_none());
    let again: Value = serde_json::from_str(&again).expect("json");
    assert_ne!(again["main_task_id"].as_str(), Some(main.as_str()));
    let done = app
        .wait_terminal(
            &[again["main_task_id"].as_str().expect("id").to_owned()],
            WAIT,
        )
        .await;
    assert_eq!(done[0]["result"]["status"], "SUCCESS");
    assert_eq!(app.seats("G-ELC102-E").await, 1);
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn sync_race_enrolls_once() {
    let app = TestApp::spawn().await;
    let request = body("RA0007", &["G-ELC106-E"]);
    let headers = [("Idempotency-Key", "sync-key")];
    let mut racers = Vec::new();
    for _ in 0..10 {
        let client = app.client.clone();
        let url = app.url("/api/v1/inscripciones/sync");
        let request = request.clone();
        racers.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .header("Idempotency-Key", "sync-key")
                .json(&request)
                .send()
                .await
                .expect("POST");
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key("idempotent-replayed");
            (status, replayed, response.text().await.expect("body"))
        }));
    }
    let mut created = Vec::new();
    for racer in racers {
        let (status, replayed, text) = racer.await.expect("racer");
        match (status, replayed) {
            (201, false) => created.push(text),
            (201, true) | (409, false) => {}
            other => panic!("unexpected answer {other:?}: {text}"),
        }
    }
    assert_eq!(created.len(), 1, "one request enrolled");
    let (status, replay_headers, replay) = app
        .post_with("/api/v1/inscripciones/sync", &headers, &request)
        .await;
    assert_eq!(status, 201);
    assert_eq!(replay, created[0]);
    assert!(replay_headers.contains_key("idempotent-replayed"));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inscripcion WHERE registro_academico = 'RA0007'")
            .await,
        1
    );
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn malformed_key_names_header() {
    let app = TestApp::spawn().await;
    let long = "k".repeat(256);
    for bad in [long.as_str(), "tab\tinside"] {
        let (status, _, text) = app
            .post_with(
                BY_GROUPS,
                &[("Idempotency-Key", bad)],
                &body("RA0008", &["G-ELC102-E"]),
            )
            .await;
        assert_eq!(status, 422, "{text}");
        assert!(text.contains("Idempotency-Key"), "{text}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM job").await, 0);
}

#[tokio::test]
async fn cache_stats_and_invalidation() {
    let app = TestApp::spawn().await;
    let headers = [("Idempotency-Key", "counted")];
    let request = body("RA0009", &["G-ELC102-E"]);
    let (_, _, first) = app.post_with(BY_GROUPS, &headers, &request).await;
    let first: Value = serde_json::from_str(&first).expect("json");
    app.wait_terminal(
        &[first["main_task_id"].as_str().expect("id").to_owned()],
        WAIT,
    )
    .await;
    for _ in 0..3 {
        let (status, _, _) = app.post_with(BY_GROUPS, &headers, &request).await;
        assert_eq!(status, 202);
    }
    let (status, stats) = app.get("/api/v1/queue/idempotency/cache").await;
    assert_eq!(status, 200);
    assert_eq!(stats["total_cached_operations"], 1, "{stats}");
    assert_eq!(stats["misses"], 1, "{stats}");
    assert_eq!(stats["hits"], 3, "{stats}");
    assert_eq!(stats["hit_rate"], 0.75, "{stats}");
    if app.config.redis_url.is_some() {
        assert!(stats["cache_hits"].as_u64().unwrap_or(0) >= 1, "{stats}");
        assert_eq!(stats["redis_connected"], true);
    }

    let (status, removed) = app
        .delete("/api/v1/queue/idempotency/cache/idempotency:inscription:hdr:counted")
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["invalidated"], true);
    let (status, headers_back, _) = app.post_with(BY_GROUPS, &headers, &request).await;
    assert_eq!(status, 202);
    assert!(
        headers_back.get("idempotent-replayed").is_none(),
        "an invalidated key runs afresh, from the cache too"
    );
    let (status, missing) = app
        .delete("/api/v1/queue/idempotency/cache/never-issued")
        .await;
    assert_eq!(status, 200);
    assert_eq!(missing["invalidated"], false);
}
