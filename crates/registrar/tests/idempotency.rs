//! Idempotent enrollment requests: one job per key under races, replays byte for byte, 409
//! while running, 422 for a key reused with another body, fresh runs after business errors
//! and after invalidation, and the monitoring counts. The enqueues that share one
//! transaction (group commit) are checked through HTTP and through the store.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{TestApp, assert_invariants, fresh_db, scalar_bind, test_config};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use registrar::audit::{AuditEvent, AuditEventType};
use registrar::idempotency::{Claim, Endpoint, KeySource, NewRecord, RequestKey};
use registrar::jobs::model::{JobKind, NewJob};
use registrar::store::{EnqueueCombiner, EnqueueRequest, StoreError};
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio_util::sync::CancellationToken;

const BY_GROUPS: &str = "/api/v1/queue/inscripciones/async-by-groups";
const ASYNC: &str = "/api/v1/queue/inscripciones/async";
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

/// One request of the enqueue race.
#[derive(Clone)]
struct RaceRequest {
    path: &'static str,
    /// The `Idempotency-Key` header; `None` derives the key from the body.
    key: Option<String>,
    body: Value,
}

impl RaceRequest {
    /// Returns the name under which the race groups its requests: the header, or the body.
    fn key_name(&self) -> String {
        match &self.key {
            Some(key) => key.clone(),
            None => format!("body:{}", self.body),
        }
    }
}

/// Sends one enqueue request; returns the status and the body text.
async fn send(client: &reqwest::Client, base: &str, request: &RaceRequest) -> (u16, String) {
    let mut builder = client
        .post(format!("{base}{}", request.path))
        .json(&request.body);
    if let Some(key) = &request.key {
        builder = builder.header("Idempotency-Key", key);
    }
    let response = builder.send().await.expect("POST");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Builds the 100 requests of the race. 60 have a key of their own and alternate between the
/// two endpoints. 20 share one key and body, 15 share one key with two bodies, and 5 are
/// identical bodies without a header.
fn race_requests() -> Vec<RaceRequest> {
    let mut requests = Vec::new();
    for i in 0..60 {
        let path = if i % 2 == 0 { BY_GROUPS } else { ASYNC };
        requests.push(RaceRequest {
            path,
            key: Some(format!("race-unique-{i}")),
            body: body(&format!("RB{i:04}"), &["G-ELC102-E", "G-ELC106-E"]),
        });
    }
    let shared = RaceRequest {
        path: BY_GROUPS,
        key: Some("race-shared".into()),
        body: body("RA0011", &["G-ELC102-E"]),
    };
    requests.extend(std::iter::repeat_n(shared, 20));

    let reused = RaceRequest {
        path: ASYNC,
        key: Some("race-reused".into()),
        body: body("RA0012", &["G-ELC102-E"]),
    };
    let other_body = RaceRequest {
        body: body("RA0013", &["G-ELC106-E"]),
        ..reused.clone()
    };
    requests.extend(std::iter::repeat_n(reused, 10));
    requests.extend(std::iter::repeat_n(other_body, 5));

    let body_key = RaceRequest {
        path: BY_GROUPS,
        key: None,
        body: body("RA0014", &["G-ELC108-E"]),
    };
    requests.extend(std::iter::repeat_n(body_key, 5));

    // Spreads the repeats of each key over the tasks, the same way on every run.
    requests.shuffle(&mut StdRng::seed_from_u64(7));
    requests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueue_race_commits_each_key_once() {
    let db = fresh_db().await;
    let config = test_config(&db);
    // Without workers every job stays queued, so a repeated key is always in flight.
    let app = TestApp::start(db, config, false).await;
    let requests = race_requests();
    assert_eq!(requests.len(), 100);

    // 50 tasks send two requests each, one after the other, all released at once.
    let barrier = Arc::new(Barrier::new(50));
    let mut tasks = Vec::new();
    for pair in requests.chunks(2) {
        let pair = pair.to_vec();
        let client = app.client.clone();
        let base = app.base.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut answers = Vec::new();
            for request in pair {
                let answer = send(&client, &base, &request).await;
                answers.push((request, answer));
            }
            answers
        }));
    }
    let mut by_key: BTreeMap<String, Vec<(RaceRequest, u16, String)>> = BTreeMap::new();
    for task in tasks {
        for (request, (status, text)) in task.await.expect("request task") {
            by_key
                .entry(request.key_name())
                .or_default()
                .push((request, status, text));
        }
    }
    assert_eq!(by_key.len(), 63, "distinct keys in the race");

    let mut accepted_task_ids = Vec::new();
    for (key, answers) in &by_key {
        let accepted: Vec<&(RaceRequest, u16, String)> = answers
            .iter()
            .filter(|(_, status, _)| *status == 202)
            .collect();
        assert_eq!(accepted.len(), 1, "key {key}: one request is accepted");
        let (winner, _, text) = accepted[0];
        let response: Value = serde_json::from_str(text).expect("202 body is JSON");
        let task_id = response["main_task_id"]
            .as_str()
            .or(response["task_id"].as_str())
            .unwrap_or_else(|| panic!("key {key}: 202 body has no task id: {text}"));
        accepted_task_ids.push(task_id.to_owned());
        for (request, status, text) in answers.iter().filter(|(_, status, _)| *status != 202) {
            if request.body == winner.body {
                assert_eq!(*status, 409, "key {key}: a repeat is in flight: {text}");
                assert!(text.contains("IDEMPOTENCY_IN_FLIGHT"), "{text}");
            } else {
                assert_eq!(*status, 422, "key {key}: another body is rejected: {text}");
                assert!(text.contains("IDEMPOTENCY_KEY_REUSED"), "{text}");
            }
        }
    }
    let rejected = by_key["race-reused"]
        .iter()
        .filter(|(_, status, _)| *status == 422)
        .count();
    assert!(
        rejected == 5 || rejected == 10,
        "the bodies that lost the reused key get 422, got {rejected}"
    );

    assert_eq!(app.count("SELECT COUNT(*) FROM job").await, 63);
    assert_eq!(
        app.count("SELECT COUNT(DISTINCT idempotency_key) FROM job")
            .await,
        63,
        "one job per key"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_record").await,
        63
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM idempotency_record r JOIN job j \
             ON j.task_id = r.task_id AND j.idempotency_key = r.idempotency_key"
        )
        .await,
        63,
        "each record names its key's job"
    );
    for task_id in &accepted_task_ids {
        let jobs = scalar_bind(
            &app.db,
            "SELECT CAST(COUNT(*) AS INTEGER) FROM job WHERE task_id = $1",
            task_id,
        )
        .await;
        assert_eq!(jobs, 1, "the accepted task {task_id} is queued");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_event WHERE event_type = 'INSCRIPTION_REQUESTED'")
            .await,
        63,
        "one requested event per queued job"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM job j WHERE (SELECT COUNT(*) FROM audit_event a \
             WHERE a.event_type = 'INSCRIPTION_REQUESTED' AND a.entity_id = j.task_id \
             AND a.request_id = j.request_id AND a.correlation_id = j.correlation_id) = 1"
        )
        .await,
        63,
        "each job has its own requested event, with the job's request and correlation ids"
    );
    // 30 unique by-groups requests of two groups, the shared key and the body key of one.
    assert_eq!(app.count("SELECT COUNT(*) FROM job_group_view").await, 62);
}

/// Builds an enqueue request with a header key, one group view and its requested event.
fn enqueue_request(key: &str, fingerprint: &str, task_id: &str) -> EnqueueRequest {
    let now_ms = registrar::clock::now_ms();
    let correlation_id = format!("corr-{task_id}");
    let request_id = format!("req-{task_id}");
    EnqueueRequest {
        job: NewJob {
            task_id: task_id.into(),
            kind: JobKind::Inscription,
            payload: body("RA0015", &["G-ELC102-E"]),
            correlation_id: correlation_id.clone(),
            request_id: Some(request_id.clone()),
            idempotency_key: Some(key.into()),
            group_views: vec![(format!("view-{task_id}"), "G-ELC102-E".into())],
        },
        record: NewRecord {
            key: RequestKey {
                key: key.into(),
                source: KeySource::Header,
                fingerprint: fingerprint.into(),
            },
            endpoint: Endpoint::ByGroups,
            task_id: Some(task_id.into()),
            registro_academico: Some("RA0015".into()),
            codigo_periodo: Some("2024-2".into()),
            correlation_id: correlation_id.clone(),
            response_status: 202,
            response_body: json!({ "main_task_id": task_id }).to_string(),
            now_ms,
            expires_at_ms: now_ms + 600_000,
        },
        pending_timeout_ms: 600_000,
        audit: Some(
            AuditEvent::new(
                AuditEventType::InscriptionRequested,
                "inscripcion",
                "enqueue",
            )
            .entity_id(task_id)
            .ids(correlation_id, Some(request_id)),
        ),
    }
}

async fn requested_events(app: &TestApp, task_id: &str) -> i64 {
    scalar_bind(
        &app.db,
        "SELECT CAST(COUNT(*) AS INTEGER) FROM audit_event \
         WHERE event_type = 'INSCRIPTION_REQUESTED' AND entity_id = $1",
        task_id,
    )
    .await
}

#[tokio::test]
async fn batch_claims_repeated_keys_in_order() {
    let db = fresh_db().await;
    let config = test_config(&db);
    let app = TestApp::start(db, config, false).await;
    let earlier = enqueue_request("batch-c", "fp-1", "task-c0");
    let claim = app
        .store
        .enqueue_idempotent(&earlier)
        .await
        .expect("enqueue");
    assert_eq!(claim, Claim::Fresh);

    let batch = vec![
        enqueue_request("batch-a", "fp-1", "task-a1"),
        enqueue_request("batch-a", "fp-1", "task-a2"),
        enqueue_request("batch-a", "fp-2", "task-a3"),
        enqueue_request("batch-b", "fp-1", "task-b1"),
        enqueue_request("batch-c", "fp-1", "task-c1"),
        enqueue_request("batch-b", "fp-1", "task-b2"),
    ];
    let claims = app
        .store
        .enqueue_idempotent_batch(&batch)
        .await
        .expect("batch");
    assert_eq!(
        claims,
        vec![
            Claim::Fresh,
            Claim::InFlight,
            Claim::Reused,
            Claim::Fresh,
            Claim::InFlight,
            Claim::InFlight,
        ]
    );

    assert_eq!(app.count("SELECT COUNT(*) FROM job").await, 3);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_record").await,
        3
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM job_group_view").await, 3);
    for task_id in ["task-c0", "task-a1", "task-b1"] {
        assert_eq!(requested_events(&app, task_id).await, 1, "{task_id}");
    }
    for task_id in ["task-a2", "task-a3", "task-c1", "task-b2"] {
        assert_eq!(requested_events(&app, task_id).await, 0, "{task_id}");
        let jobs = scalar_bind(
            &app.db,
            "SELECT CAST(COUNT(*) AS INTEGER) FROM job WHERE task_id = $1",
            task_id,
        )
        .await;
        assert_eq!(jobs, 0, "{task_id} queued no job");
    }
}

#[tokio::test]
async fn failed_batch_retries_each_request() {
    let db = fresh_db().await;
    let config = test_config(&db);
    let app = TestApp::start(db, config, false).await;
    let earlier = enqueue_request("retry-taken", "fp-1", "task-taken");
    let claim = app
        .store
        .enqueue_idempotent(&earlier)
        .await
        .expect("enqueue");
    assert_eq!(claim, Claim::Fresh);

    // The middle request reuses a task id, so its job insert fails, and with it any batch
    // that contains it.
    let combiner = EnqueueCombiner::start(app.store.clone());
    let (first, broken, last) = tokio::join!(
        combiner.enqueue(enqueue_request("retry-1", "fp-1", "task-retry-1")),
        combiner.enqueue(enqueue_request("retry-2", "fp-1", "task-taken")),
        combiner.enqueue(enqueue_request("retry-3", "fp-1", "task-retry-3")),
    );
    assert_eq!(first.expect("first request"), Claim::Fresh);
    assert_eq!(last.expect("last request"), Claim::Fresh);
    let error = broken.expect_err("a reused task id fails");
    assert!(
        error.as_constraint_error().is_some(),
        "the failure is the unique violation: {error}"
    );

    for key in ["retry-1", "retry-3"] {
        assert_eq!(jobs_with_key(&app, key).await, 1, "{key}");
    }
    assert_eq!(jobs_with_key(&app, "retry-2").await, 0);
    let records = scalar_bind(
        &app.db,
        "SELECT CAST(COUNT(*) AS INTEGER) FROM idempotency_record WHERE idempotency_key = $1",
        "retry-2",
    )
    .await;
    assert_eq!(records, 0, "the failed request's record was rolled back");
    assert_eq!(requested_events(&app, "task-retry-1").await, 1);
    assert_eq!(requested_events(&app, "task-retry-3").await, 1);
    assert_eq!(
        requested_events(&app, "task-taken").await,
        1,
        "only the first request with that task id stored an event"
    );
    combiner.stop().await;
}

#[tokio::test]
async fn stopped_combiner_writes_sent_requests() {
    let db = fresh_db().await;
    let config = test_config(&db);
    let app = TestApp::start(db, config, false).await;
    let combiner = EnqueueCombiner::start(app.store.clone());
    // On this single-threaded runtime the request is in the channel before `stop` runs.
    let (sent, ()) = tokio::join!(
        combiner.enqueue(enqueue_request("stop-1", "fp-1", "task-stop-1")),
        combiner.stop(),
    );
    assert_eq!(sent.expect("request sent before the stop"), Claim::Fresh);
    assert_eq!(jobs_with_key(&app, "stop-1").await, 1);

    let late = combiner
        .enqueue(enqueue_request("stop-2", "fp-1", "task-stop-2"))
        .await;
    assert!(
        matches!(late, Err(StoreError::EnqueueWriterStopped)),
        "a request after the stop is refused"
    );
    assert_eq!(jobs_with_key(&app, "stop-2").await, 0);
}
