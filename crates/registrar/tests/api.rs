//! The HTTP contract around the enrollment routes: the error envelope, request validation,
//! ids in headers, trailing slashes, periods and task lookups.

mod common;

use std::time::Duration;

use common::TestApp;
use serde_json::{Value, json};

fn assert_envelope(body: &Value, code: &str, path: &str) {
    assert_eq!(body["error"], true, "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    assert!(
        body["message"].is_string(),
        "message must be a string: {body}"
    );
    assert!(body["details"].is_object(), "{body}");
    assert!(
        body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
    assert_eq!(body["path"], path, "{body}");
    assert!(body["request_id"].is_string(), "{body}");
}

fn first_field(body: &Value) -> &str {
    body["details"]["validation_errors"][0]["field"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn invalid_bodies_name_the_field() {
    let app = TestApp::spawn().await;
    let path = "/api/v1/queue/inscripciones/async-by-groups";
    let long = "X".repeat(21);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "registro_academico": "EST001", "codigo_periodo": "2024-2", "grupos": [] }),
            "body -> grupos",
        ),
        (
            json!({ "registro_academico": "EST001", "codigo_periodo": "2024-2", "grupos": ["A", "A"] }),
            "body -> grupos -> 1",
        ),
        (
            json!({ "registro_academico": " ", "codigo_periodo": "2024-2", "grupos": ["A"] }),
            "body -> registro_academico",
        ),
        (
            json!({ "registro_academico": long, "codigo_periodo": "2024-2", "grupos": ["A"] }),
            "body -> registro_academico",
        ),
        (
            json!({ "registro_academico": "EST001", "codigo_periodo": "2024-2", "grupos": ["A", 7] }),
            "body -> grupos -> 1",
        ),
        (
            json!({ "registro_academico": 5, "codigo_periodo": "2024-2", "grupos": ["A"] }),
            "body -> registro_academico",
        ),
        (
            json!({ "registro_academico": "EST001", "grupos": ["A"] }),
            "body -> codigo_periodo",
        ),
        (
            json!({ "registro_academico": "EST001", "codigo_periodo": "2024-2", "grupos": ["A", "B", "C", "D", "E", "F", "G", "H", "I"] }),
            "body -> grupos",
        ),
    ];
    for (body, field) in cases {
        let (status, response) = app.post(path, &body).await;
        assert_eq!(status, 422, "{body} -> {response}");
        assert_envelope(&response, "VALIDATION_ERROR", path);
        assert_eq!(first_field(&response), field, "{body} -> {response}");
    }

    let (status, response) = app.post_raw(path, "{\"registro_academico\": ").await;
    assert_eq!(status, 422);
    assert_envelope(&response, "VALIDATION_ERROR", path);
    assert_eq!(
        response["details"]["validation_errors"][0]["type"],
        "json_invalid"
    );

    let (status, response) = app.post_raw(path, "").await;
    assert_eq!(status, 422);
    assert_eq!(first_field(&response), "body");

    assert_eq!(
        app.count("SELECT COUNT(*) FROM job").await,
        0,
        "nothing was queued"
    );
}

#[tokio::test]
async fn oversized_body_gets_413() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 1024).await;
    let grupos: Vec<String> = (0..200).map(|i| format!("G{i:05}")).collect();
    let body =
        json!({ "registro_academico": "EST001", "codigo_periodo": "2024-2", "grupos": grupos });
    let path = "/api/v1/queue/inscripciones/async-by-groups";
    let (status, response) = app.post(path, &body).await;
    assert_eq!(status, 413);
    assert_envelope(&response, "HTTP_413", path);
}

#[tokio::test]
async fn unknown_route_and_wrong_method_use_envelope() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/v1/nope").await;
    assert_eq!(status, 404);
    assert_envelope(&body, "HTTP_404", "/api/v1/nope");

    let (status, body) = app.get("/api/v1/inscripciones/sync").await;
    assert_eq!(status, 405);
    assert_envelope(&body, "HTTP_405", "/api/v1/inscripciones/sync");
}

#[tokio::test]
async fn trailing_slash_is_served_without_redirect() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/v1/periodos/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.as_array().is_some_and(|p| p.len() == 4));
    let (status, _) = app.get("/api/v1/periodos").await;
    assert_eq!(status, 200);

    let body = json!({ "registro_academico": "EST001", "codigo_periodo": "2024-2", "grupos": ["G-ELC102-E"] });
    let (status, queued) = app.post("/api/v1/inscripciones/", &body).await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["status"], "PENDING");
    let monitor = queued["monitor_url"].as_str().expect("monitor_url");
    let (status, _) = app.get(monitor).await;
    assert_eq!(status, 200);
    // Another student, because a repeat of the same body would be an idempotent repeat.
    let other = json!({ "registro_academico": "TEST001", "codigo_periodo": "2024-2", "grupos": ["G-ELC102-E"] });
    let (status, _) = app.post("/api/v1/inscripciones", &other).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn ids_are_echoed_or_generated() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/api/v1/nope"))
        .header("x-request-id", "req-123")
        .header("x-correlation-id", "abc")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.headers()["x-request-id"], "req-123");
    assert_eq!(response.headers()["x-correlation-id"], "abc");
    assert!(response.headers().contains_key("x-process-time"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["request_id"], "req-123");

    let response = app
        .client
        .get(app.url("/health"))
        .header("x-correlation-id", "bad id with spaces")
        .send()
        .await
        .expect("GET");
    let correlation = response.headers()["x-correlation-id"]
        .to_str()
        .expect("ascii");
    assert!(correlation.starts_with("corr_"), "{correlation}");
    let request_id = response.headers()["x-request-id"].to_str().expect("ascii");
    assert_eq!(request_id.len(), 8);

    let queued = app
        .client
        .post(app.url("/api/v1/queue/inscripciones/async-by-groups"))
        .header("x-correlation-id", "flow-42")
        .json(&json!({ "registro_academico": "EST001", "codigo_periodo": "2024-2", "grupos": ["G-ELC102-E"] }))
        .send()
        .await
        .expect("POST");
    let queued: Value = queued.json().await.expect("json");
    assert_eq!(queued["correlation_id"], "flow-42");
    let main = queued["main_task_id"].as_str().expect("main").to_owned();
    let done = app.wait_terminal(&[main], Duration::from_secs(20)).await;
    assert_eq!(done[0]["correlation_id"], "flow-42");
}

#[tokio::test]
async fn unknown_task_is_not_found() {
    let app = TestApp::spawn().await;
    let id = "01a24287-0000-7000-8000-000000000000";
    let (status, body) = app.get(&format!("/api/v1/queue/tasks/{id}/status")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error_code"], "TASK_NOT_FOUND");

    let (status, body) = app
        .post("/api/v1/queue/tasks/status/multiple", &json!([id]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body[0]["status"], "NOT_FOUND");

    let (status, body) = app
        .post("/api/v1/queue/tasks/status/multiple", &json!(id))
        .await;
    assert_eq!(status, 200, "a bare string is read as one id");
    assert_eq!(body[0]["task_id"], id);

    let (status, body) = app
        .post(
            "/api/v1/queue/tasks/status/multiple",
            &json!({ "ids": [id] }),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    let (status, body) = app.delete(&format!("/api/v1/queue/tasks/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error_code"], "TASK_NOT_FOUND");
}

#[tokio::test]
async fn queued_task_can_be_cancelled_once() {
    let db = common::fresh_db().await;
    let config = common::test_config(&db);
    let app = TestApp::start(db, config, false).await;
    let queued = app.enqueue("EST001", "2024-2", &["G-ELC102-E"]).await;
    let main = queued["main_task_id"].as_str().expect("main").to_owned();
    let view = queued["group_tasks"][0]["task_id"]
        .as_str()
        .expect("view")
        .to_owned();

    let (status, body) = app.get(&format!("/api/v1/queue/tasks/{view}/status")).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["meta"]["message"], "Task is in PENDING state");

    let (status, _) = app.delete(&format!("/api/v1/queue/tasks/{main}")).await;
    assert_eq!(status, 204);
    let (status, body) = app.delete(&format!("/api/v1/queue/tasks/{view}")).await;
    assert_eq!(status, 409);
    assert_eq!(body["error_code"], "TASK_ALREADY_FINISHED");
    let (_, body) = app.get(&format!("/api/v1/queue/tasks/{main}/status")).await;
    assert_eq!(body["status"], "REVOKED");
}

#[tokio::test]
async fn cancel_requires_admin_token_when_set() {
    let app = TestApp::spawn_with(|c| c.admin_token = Some("s3cret".into())).await;
    let id = "01a24287-0000-7000-8000-000000000000";
    let (status, body) = app.delete(&format!("/api/v1/queue/tasks/{id}")).await;
    assert_eq!(status, 401, "{body}");
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/queue/tasks/{id}")))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status(), 403);
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/queue/tasks/{id}")))
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(
        response.status(),
        404,
        "authorised, and the task is unknown"
    );
}

#[tokio::test]
async fn periods_create_update_and_activate() {
    let app = TestApp::spawn().await;
    let (status, active) = app.get("/api/v1/periodos/activo").await;
    assert_eq!(status, 200);
    assert_eq!(active["codigo_periodo"], "2024-2");

    let body = json!({ "codigo_periodo": "2-2025", "semestre": "2/2025", "fecha_inicio": "2025-08-01", "fecha_fin": "2025-12-15", "estado": "PLANIFICADO" });
    let (status, created) = app.post("/api/v1/periodos/", &body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["fecha_inicio"], "2025-08-01");
    let (status, dup) = app.post("/api/v1/periodos/", &body).await;
    assert_eq!(status, 409);
    assert_eq!(dup["error_code"], "DUPLICATE_RECORD");

    let second_active = json!({ "codigo_periodo": "3-2025", "estado": "ACTIVO" });
    let (status, body) = app.post("/api/v1/periodos", &second_active).await;
    assert_eq!(status, 409, "{body}");

    let (status, body) = app
        .put(
            "/api/v1/periodos/2-2025",
            &json!({ "fecha_fin": "2025-07-01" }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = app
        .put("/api/v1/periodos/2-2025", &json!({ "semestre": "II/2025" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["semestre"], "II/2025");
    assert_eq!(
        body["fecha_inicio"], "2025-08-01",
        "absent fields keep their value"
    );

    let (status, body) = app
        .post("/api/v1/periodos/2-2025/activar", &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["estado"], "ACTIVO");
    let (_, old) = app.get("/api/v1/periodos/2024-2").await;
    assert_eq!(old["estado"], "CERRADO");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM periodo_academico WHERE estado = 'ACTIVO'")
            .await,
        1
    );

    let (status, body) = app.post("/api/v1/periodos/NOPE/activar", &json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(body["error_code"], "PERIODO_NOT_FOUND");
    let (status, body) = app
        .post("/api/v1/periodos", &json!({ "semestre": "x" }))
        .await;
    assert_eq!(status, 422);
    assert_eq!(first_field(&body), "body -> codigo_periodo");
}

#[tokio::test]
async fn health_job_is_consumed() {
    let app = TestApp::spawn().await;
    let (status, queued) = app.post("/api/v1/queue/health-check", &json!({})).await;
    assert_eq!(status, 202);
    let id = queued["task_id"].as_str().expect("task_id").to_owned();
    let done = app.wait_terminal(&[id], Duration::from_secs(20)).await;
    assert_eq!(done[0]["status"], "SUCCESS");
    assert_eq!(done[0]["result"]["status"], "healthy");

    let (status, stats) = app.get("/api/v1/queue/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["completed_tasks"], 1);
    assert_eq!(stats["pending_tasks"], 0);
}

#[tokio::test]
async fn system_endpoints_report_real_values() {
    let app = TestApp::spawn().await;
    let (status, root) = app.get("/").await;
    assert_eq!(status, 200);
    assert_eq!(root["status"], "running");
    let (status, health) = app.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["components"]["database"], "healthy");
    assert_ne!(health["timestamp"], "2024-10-28T00:00:00Z");
    let (status, metrics) = app.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics["requests_total"].as_u64().is_some_and(|n| n >= 2));

    let (status, stats) = app.get("/api/v1/inscripciones/estadisticas/general").await;
    assert_eq!(status, 200);
    assert_eq!(stats["total_inscripciones"], 0);
    assert_eq!(stats["inscripciones_por_periodo"]["2024-2"], 0);
    assert!(
        stats["estudiantes_activos"]
            .as_i64()
            .is_some_and(|n| n > 10_000)
    );
}
