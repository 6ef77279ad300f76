//! The saga of each enrollment request against real billing and notification servers on
//! 127.0.0.1: completion, compensation on a declined or unreachable fee, a compensation
//! that keeps failing, and the same idempotency key on every retried call.

mod common;

use std::time::Duration;

use common::participant::{Mode, Participant};
use common::process::WorkerProcess;
use common::{TestApp, assert_invariants};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

async fn app_with(billing: Option<&Participant>, notification: Option<&Participant>) -> TestApp {
    let billing = billing.map(|p| p.base.clone());
    let notification = notification.map(|p| p.base.clone());
    TestApp::spawn_with(move |c| {
        c.billing_url = billing;
        c.notification_url = notification;
        c.saga_step_attempts = 3;
        // The breakers stay closed here: their own tests cover them.
        c.circuit_breakers =
            "billing:failure_threshold=100;notification:failure_threshold=100".into();
    })
    .await
}

async fn sagas(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get("/api/v1/queue/sagas").await;
    assert_eq!(status, 200, "{body}");
    body.as_object()
        .expect("object")
        .values()
        .cloned()
        .collect()
}

fn step<'a>(saga: &'a Value, name: &str) -> &'a Value {
    saga["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {saga}"))
}

#[tokio::test]
async fn saga_completes_carrying_ids() {
    let billing = Participant::start(Mode::Accept).await;
    let notification = Participant::start(Mode::Accept).await;
    let app = app_with(Some(&billing), Some(&notification)).await;
    let (status, _, text) = app
        .post_with(
            "/api/v1/queue/inscripciones/async",
            &[("X-Correlation-ID", "corr_saga0001")],
            &json!({ "registro_academico": "RA0001", "codigo_periodo": "2024-2", "grupos": ["G-ELC102-E"] }),
        )
        .await;
    assert_eq!(status, 202, "{text}");
    let task: Value = serde_json::from_str(&text).expect("json");
    let done = app
        .wait_terminal(&[task["task_id"].as_str().expect("id").to_owned()], WAIT)
        .await;
    assert_eq!(done[0]["result"]["status"], "SUCCESS", "{}", done[0]);

    let list = sagas(&app).await;
    assert_eq!(list.len(), 1);
    let saga = &list[0];
    assert_eq!(saga["status"], "completed", "{saga}");
    assert_eq!(saga["correlation_id"], "corr_saga0001");
    assert_eq!(step(saga, "assess_fee")["status"], "completed");
    assert_eq!(step(saga, "send_confirmation")["status"], "completed");
    let saga_id = saga["saga_id"].as_str().expect("saga_id");

    let charges = billing.received_on("/charges");
    assert_eq!(charges.len(), 1);
    assert_eq!(
        charges[0].idempotency_key.as_deref(),
        Some(format!("{saga_id}:assess_fee").as_str())
    );
    assert_eq!(charges[0].correlation_id.as_deref(), Some("corr_saga0001"));
    assert!(charges[0].request_id.is_some());
    let notices = notification.received_on("/notifications");
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].body["registro_academico"], "RA0001");
    assert_eq!(app.seats("G-ELC102-E").await, 1);
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn declined_fee_withdraws_enrollment() {
    let billing = Participant::start(Mode::Decline).await;
    billing.set_mode_for("/charges/cancel", Mode::Accept);
    let app = app_with(Some(&billing), None).await;
    let done = app
        .enroll("RA0002", "2024-2", &["G-ELC102-E", "G-ELC106-E"])
        .await;
    assert_eq!(done["status"], "SUCCESS");
    assert_eq!(done["result"]["status"], "ERROR", "{done}");
    assert_eq!(done["result"]["error_code"], "FEE_REJECTED");

    assert_eq!(app.seats("G-ELC102-E").await, 0);
    assert_eq!(app.seats("G-ELC106-E").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inscripcion WHERE registro_academico = 'RA0002'")
            .await,
        0
    );
    let list = sagas(&app).await;
    let saga = &list[0];
    assert_eq!(saga["status"], "compensated", "{saga}");
    assert_eq!(saga["error_code"], "FEE_REJECTED");
    assert_eq!(step(saga, "assess_fee")["status"], "compensated");
    assert_eq!(step(saga, "create_inscription")["status"], "compensated");
    let saga_id = saga["saga_id"].as_str().expect("saga_id");

    let charges = billing.received_on("/charges");
    let cancels = billing.received_on("/charges/cancel");
    assert_eq!(charges.len(), 1, "one charge");
    assert_eq!(cancels.len(), 1, "one cancel");
    assert_eq!(
        charges[0].idempotency_key.as_deref(),
        Some(format!("{saga_id}:assess_fee").as_str())
    );
    assert_eq!(
        cancels[0].idempotency_key.as_deref(),
        Some(format!("{saga_id}:cancel_fee").as_str())
    );
    // The audit trail counts the withdrawn enrollment as a rejection.
    let (status, audit) = app
        .get("/api/v1/audit?event_type=INSCRIPTION_FAILED&error_code=FEE_REJECTED")
        .await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["events"].as_array().map(Vec::len), Some(1), "{audit}");
    assert_eq!(audit["events"][0]["registro_academico"], "RA0002");
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn failing_billing_retries_one_key() {
    let billing = Participant::start(Mode::Fail).await;
    billing.set_mode_for("/charges/cancel", Mode::Accept);
    let app = app_with(Some(&billing), None).await;
    let done = app.enroll("RA0003", "2024-2", &["G-ELC106-E"]).await;
    assert_eq!(
        done["result"]["error_code"], "FEE_ASSESSMENT_FAILED",
        "{done}"
    );

    let charges = billing.received_on("/charges");
    assert_eq!(charges.len(), 3, "three attempts, as configured");
    let keys: Vec<_> = charges.iter().map(|c| c.idempotency_key.clone()).collect();
    assert!(
        keys.iter().all(|k| k == &keys[0]),
        "one key on every retry: {keys:?}"
    );
    assert_eq!(billing.received_on("/charges/cancel").len(), 1);
    assert_eq!(app.seats("G-ELC106-E").await, 0);
    let list = sagas(&app).await;
    assert_eq!(list[0]["status"], "compensated");
    assert_eq!(step(&list[0], "assess_fee")["retry_count"], 3);
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn failing_cancel_leaves_saga_failed() {
    let billing = Participant::start(Mode::Decline).await;
    billing.set_mode_for("/charges/cancel", Mode::Fail);
    let app = app_with(Some(&billing), None).await;
    let done = app.enroll("RA0004", "2024-2", &["G-ELC102-E"]).await;
    assert_eq!(
        done["result"]["error_code"], "SAGA_COMPENSATION_FAILED",
        "{done}"
    );
    let list = sagas(&app).await;
    assert_eq!(list[0]["status"], "failed", "never marked compensated");
    assert_eq!(billing.received_on("/charges/cancel").len(), 3);
    let (status, failed) = app.get("/api/v1/queue/sagas?status=failed").await;
    assert_eq!(status, 200);
    assert_eq!(failed.as_object().expect("object").len(), 1);
    // The enrollment stays, consistent, until an operator settles the fee.
    assert_eq!(app.seats("G-ELC102-E").await, 1);
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn failed_notification_keeps_saga() {
    let notification = Participant::start(Mode::Fail).await;
    let app = app_with(None, Some(&notification)).await;
    let done = app.enroll("RA0005", "2024-2", &["G-ELC102-E"]).await;
    assert_eq!(done["result"]["status"], "SUCCESS", "{done}");
    let list = sagas(&app).await;
    assert_eq!(list[0]["status"], "completed");
    assert_eq!(step(&list[0], "assess_fee")["status"], "skipped");
    assert_eq!(step(&list[0], "send_confirmation")["status"], "failed");
    assert_eq!(app.seats("G-ELC102-E").await, 1);
}

#[tokio::test]
async fn unconfigured_steps_are_skipped() {
    let app = app_with(None, None).await;
    let done = app.enroll("RA0006", "2024-2", &["G-ELC102-E"]).await;
    assert_eq!(done["result"]["status"], "SUCCESS");
    let rejected = app.enroll("BLQ001", "2024-2", &["G-ELC102-E"]).await;
    assert_eq!(rejected["result"]["status"], "ERROR");

    let (_, completed) = app.get("/api/v1/queue/sagas?status=completed").await;
    let completed: Vec<&Value> = completed.as_object().expect("object").values().collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(step(completed[0], "assess_fee")["status"], "skipped");
    assert_eq!(
        step(completed[0], "commit_grupo_inscriptions")["status"],
        "completed"
    );
    let (_, compensated) = app.get("/api/v1/queue/sagas?status=compensated").await;
    let compensated: Vec<&Value> = compensated.as_object().expect("object").values().collect();
    assert_eq!(compensated.len(), 1);
    assert_eq!(compensated[0]["error_code"], "ESTUDIANTE_BLOQUEADO");
    assert_eq!(
        step(compensated[0], "validate_student_and_period")["status"],
        "failed"
    );

    // Newest first: the rejection came second.
    let (_, all) = app.get("/api/v1/queue/sagas").await;
    let response = app
        .client
        .get(app.url("/api/v1/queue/sagas"))
        .send()
        .await
        .expect("GET");
    let text = response.text().await.expect("body");
    let first_status = all.as_object().expect("object").values().next().cloned();
    assert!(
        text.find("ESTUDIANTE_BLOQUEADO") < text.find("\"completed\""),
        "{text}"
    );
    assert!(first_status.is_some());

    let (status, bad) = app.get("/api/v1/queue/sagas?status=lost").await;
    assert_eq!(status, 422, "{bad}");
    let (status, cleaned) = app
        .post("/api/v1/queue/sagas/cleanup?max_age_hours=0", &json!({}))
        .await;
    assert_eq!(status, 200, "{cleaned}");
    assert_eq!(cleaned["cleaned_sagas"], 2);
    assert!(sagas(&app).await.is_empty());
}

#[tokio::test]
async fn sync_declined_fee_is_402() {
    let billing = Participant::start(Mode::Decline).await;
    billing.set_mode_for("/charges/cancel", Mode::Accept);
    let app = app_with(Some(&billing), None).await;
    let (status, body) = app
        .post(
            "/api/v1/inscripciones/sync",
            &json!({ "registro_academico": "RA0007", "codigo_periodo": "2024-2", "grupos": ["G-ELC106-E"] }),
        )
        .await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error_code"], "FEE_REJECTED");
    assert_eq!(app.seats("G-ELC106-E").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inscripcion WHERE registro_academico = 'RA0007'")
            .await,
        0
    );
    // The key was released with the error, so an accepted retry enrolls.
    billing.set_mode(Mode::Accept);
    let (status, body) = app
        .post(
            "/api/v1/inscripciones/sync",
            &json!({ "registro_academico": "RA0007", "codigo_periodo": "2024-2", "grupos": ["G-ELC106-E"] }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(app.seats("G-ELC106-E").await, 1);
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn killed_worker_saga_resumes() {
    let billing = Participant::start(Mode::Hang).await;
    let db = common::fresh_db().await;
    let mut config = common::test_config(&db);
    config.billing_url = Some(billing.base.clone());
    // The API process runs no workers: the worker processes below do.
    let app = TestApp::start(db.clone(), config, false).await;
    let env = [
        ("BILLING_URL", billing.base.as_str()),
        ("SAGA_STEP_ATTEMPTS", "3"),
    ];
    let mut first = WorkerProcess::spawn(&db, &env);

    let queued = app.enqueue("RA0008", "2024-2", &["G-ELC102-E"]).await;
    let task_id = queued["main_task_id"].as_str().expect("id").to_owned();
    // The charge is in flight: the enrollment has committed and the saga waits on billing.
    billing.wait_for("/charges", 1, WAIT).await;
    first.kill();
    assert_eq!(app.seats("G-ELC102-E").await, 1, "the enrollment committed");
    let list = sagas(&app).await;
    assert_eq!(list[0]["status"], "executing", "{}", list[0]);

    billing.set_mode(Mode::Decline);
    billing.set_mode_for("/charges/cancel", Mode::Accept);
    let _second = WorkerProcess::spawn(&db, &env);
    let done = app.wait_terminal(&[task_id], WAIT).await;
    assert_eq!(
        done[0]["result"]["error_code"], "FEE_REJECTED",
        "{}",
        done[0]
    );

    let charges = billing.received_on("/charges");
    assert_eq!(charges.len(), 2, "the resumed saga asked again");
    assert_eq!(
        charges[0].idempotency_key, charges[1].idempotency_key,
        "with the same key"
    );
    assert_eq!(billing.received_on("/charges/cancel").len(), 1);
    assert_eq!(app.seats("G-ELC102-E").await, 0);
    let list = sagas(&app).await;
    assert_eq!(list[0]["status"], "compensated");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inscripcion WHERE registro_academico = 'RA0008'")
            .await,
        0
    );
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn bulk_and_add_group_pay_fee() {
    let billing = Participant::start(Mode::Decline).await;
    billing.set_mode_for("/charges/cancel", Mode::Accept);
    let app = app_with(Some(&billing), None).await;
    let items = json!([
        { "registro_academico": "RA0009", "codigo_periodo": "2024-2", "grupos": ["G-ELC102-E"] },
        { "registro_academico": "RA0010", "codigo_periodo": "2024-2", "grupos": ["G-ELC106-E"] },
    ]);
    let (status, queued) = app
        .post("/api/v1/queue/inscripciones/bulk-async", &items)
        .await;
    assert_eq!(status, 202, "{queued}");
    let done = app
        .wait_terminal(&[queued["task_id"].as_str().expect("id").to_owned()], WAIT)
        .await;
    let result = &done[0]["result"];
    assert_eq!(result["failed"], 2, "{result}");
    assert_eq!(
        result["results"][0]["error_code"], "FEE_REJECTED",
        "{result}"
    );
    assert_eq!(app.seats("G-ELC102-E").await, 0);
    assert_eq!(app.seats("G-ELC106-E").await, 0);
    assert_eq!(billing.received_on("/charges").len(), 2);

    // An added group is assessed on its own; a declined fee leaves the inscription as it was.
    billing.set_mode(Mode::Accept);
    let (status, created) = app
        .post(
            "/api/v1/inscripciones/sync",
            &json!({ "registro_academico": "RA0009", "codigo_periodo": "2024-2", "grupos": ["G-ELC102-E"] }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let codigo = created["codigo_inscripcion"].as_str().expect("codigo");
    billing.set_mode(Mode::Decline);
    billing.set_mode_for("/charges/cancel", Mode::Accept);
    let (status, added) = app
        .post(
            &format!("/api/v1/inscripciones/{codigo}/grupos/G-ELC106-E"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 402, "{added}");
    assert_eq!(added["error_code"], "FEE_REJECTED");
    assert_eq!(app.seats("G-ELC106-E").await, 0);
    assert_eq!(app.seats("G-ELC102-E").await, 1, "the earlier group stays");
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn sync_answers_while_billing_down() {
    let billing = Participant::start(Mode::Fail).await;
    let base = billing.base.clone();
    // Billing's breaker opens at the third failure, so the cancellation must wait for it.
    let app = TestApp::spawn_with(move |c| {
        c.billing_url = Some(base);
        c.saga_step_attempts = 3;
        c.circuit_breakers = "billing:failure_threshold=3,recovery_timeout=600".into();
    })
    .await;
    let started = std::time::Instant::now();
    let (status, body) = app
        .post(
            "/api/v1/inscripciones/sync",
            &json!({ "registro_academico": "EST0011", "codigo_periodo": "2024-2", "grupos": ["G-ELC110-E"] }),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error_code"], "FEE_ASSESSMENT_FAILED");
    assert_eq!(body["details"]["saga_status"], "compensating");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "answered after {:?}",
        started.elapsed()
    );
    let list = sagas(&app).await;
    assert_eq!(list[0]["status"], "compensating");
}

#[tokio::test]
async fn sync_saga_outlives_request_timeout() {
    let billing = Participant::start(Mode::Hang).await;
    let base = billing.base.clone();
    let app = TestApp::spawn_with(move |c| {
        c.billing_url = Some(base);
        c.request_timeout_seconds = 1;
        c.circuit_breakers = "billing:failure_threshold=100,timeout=2".into();
    })
    .await;
    let body = json!({ "registro_academico": "EST0012", "codigo_periodo": "2024-2", "grupos": ["G-ELC106-E"] });
    let headers = [("Idempotency-Key", "sync-after-timeout")];
    let (status, _, text) = app
        .post_with("/api/v1/inscripciones/sync", &headers, &body)
        .await;
    assert_eq!(status, 408, "{text}");
    // The saga goes on without the client: the hanging charge times out, the next is accepted.
    billing.set_mode(Mode::Accept);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, replayed, text) = app
            .post_with("/api/v1/inscripciones/sync", &headers, &body)
            .await;
        if status == 201 {
            assert!(replayed.contains_key("idempotent-replayed"), "{text}");
            break;
        }
        assert_eq!(status, 409, "{text}");
        assert!(text.contains("IDEMPOTENCY_IN_FLIGHT"), "{text}");
        assert!(
            std::time::Instant::now() < deadline,
            "the saga never finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.seats("G-ELC106-E").await, 1);
    let charges = billing.received_on("/charges");
    assert_eq!(charges.len(), 2);
    assert_eq!(charges[0].idempotency_key, charges[1].idempotency_key);
}
