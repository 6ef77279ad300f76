//! Enrollment rules through every entry point: the queued job, the synchronous endpoint and
//! add-group, with each rule's error code and status.

mod common;

use std::time::Duration;

use common::{TestApp, assert_invariants, execute};
use serde_json::{Value, json};

const PERIOD: &str = "2024-2";

async fn sync(app: &TestApp, ra: &str, periodo: &str, grupos: &[&str]) -> (u16, Value) {
    let body = json!({ "registro_academico": ra, "codigo_periodo": periodo, "grupos": grupos });
    app.post("/api/v1/inscripciones/sync", &body).await
}

/// Asserts that a finished job rejected the request with `code`.
fn assert_rejected(status: &Value, code: &str) {
    assert_eq!(status["status"], "SUCCESS", "job state: {status}");
    assert_eq!(status["result"]["status"], "ERROR", "result: {status}");
    assert_eq!(status["result"]["error_code"], code, "result: {status}");
}

#[tokio::test]
async fn readme_flow_enrolls_both_groups() {
    let app = TestApp::spawn().await;
    let queued = app
        .enqueue("EST001", PERIOD, &["G-ELC102-E", "G-ELC106-E"])
        .await;
    assert!(queued["main_task_id"].is_string());
    let views: Vec<String> = queued["group_tasks"]
        .as_array()
        .expect("group_tasks")
        .iter()
        .map(|t| t["task_id"].as_str().expect("task_id").to_owned())
        .collect();
    assert_eq!(views.len(), 2);
    assert_ne!(views[0], views[1]);

    let statuses = app.wait_terminal(&views, Duration::from_secs(20)).await;
    for (status, grupo) in statuses.iter().zip(["G-ELC102-E", "G-ELC106-E"]) {
        assert_eq!(status["status"], "SUCCESS");
        assert_eq!(status["result"]["status"], "SUCCESS");
        assert_eq!(status["result"]["grupo"], grupo);
        let detalles = status["result"]["data"]["detalles"]
            .as_array()
            .expect("detalles");
        assert_eq!(detalles.len(), 1);
        assert_eq!(detalles[0]["codigo_grupo"], grupo);
    }

    let (code, listing) = app.get("/api/v1/inscripciones/estudiante/EST001").await;
    assert_eq!(code, 200);
    let groups: Vec<&str> = listing["inscripciones"][0]["detalles"]
        .as_array()
        .expect("detalles")
        .iter()
        .map(|d| d["grupo"]["codigo_grupo"].as_str().expect("codigo_grupo"))
        .collect();
    assert_eq!(groups, vec!["G-ELC102-E", "G-ELC106-E"]);
    assert_eq!(app.seats("G-ELC102-E").await, 1);
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn each_rule_rejects_with_its_code() {
    let app = TestApp::spawn_with(|c| c.max_materias_por_periodo = 3).await;
    execute(
        &app.db,
        "UPDATE estudiante SET estado_academico = 'INACTIVO' WHERE registro_academico = $1",
        &["EST0001"],
    )
    .await;
    execute(
        &app.db,
        "UPDATE estudiante SET estado_academico = 'SUSPENDIDO' WHERE registro_academico = $1",
        &["EST0002"],
    )
    .await;
    execute(
        &app.db,
        "UPDATE grupo SET cupo = 1, inscritos_actuales = 0 WHERE codigo_grupo = $1",
        &["G1QUI203"],
    )
    .await;
    let (status, _) = sync(&app, "EST0003", PERIOD, &["G1QUI203"]).await;
    assert_eq!(status, 201, "filling G1QUI203");

    // (student, period, groups, error code, HTTP status of the synchronous endpoint)
    let cases: &[(&str, &str, &[&str], &str, u16)] = &[
        ("NOPE", PERIOD, &["G-ELC102-E"], "ESTUDIANTE_NOT_FOUND", 404),
        (
            "BLQ001",
            PERIOD,
            &["G-ELC102-E"],
            "ESTUDIANTE_BLOQUEADO",
            403,
        ),
        (
            "BLQ002",
            PERIOD,
            &["G-ELC102-E"],
            "ESTUDIANTE_BLOQUEADO",
            403,
        ),
        (
            "EST0001",
            PERIOD,
            &["G-ELC102-E"],
            "ESTUDIANTE_INACTIVO",
            403,
        ),
        (
            "EST0002",
            PERIOD,
            &["G-ELC102-E"],
            "ESTUDIANTE_SUSPENDIDO",
            403,
        ),
        ("EST0010", "NOPE", &["G-ELC102-E"], "PERIODO_NOT_FOUND", 404),
        (
            "EST0010",
            "2024-01",
            &["G-ELC102-E"],
            "PERIODO_INACTIVO",
            422,
        ),
        (
            "EST0010",
            PERIOD,
            &["G-ELC102-E", "G-NOPE"],
            "GRUPO_NOT_FOUND",
            404,
        ),
        ("EST0010", PERIOD, &["G1QUI203"], "GRUPO_SIN_CUPO", 409),
        (
            "EST0010",
            PERIOD,
            &["G-ELC102-E", "G-ELC110-E"],
            "CONFLICTO_HORARIO",
            409,
        ),
        (
            "EST0010",
            PERIOD,
            &["G1MAT207", "G2MAT207"],
            "GRUPO_DUPLICADO",
            409,
        ),
        (
            "EST0010",
            PERIOD,
            &["G-ELC102-E", "G-ELC106-E", "G1FIS101", "G2MAT207"],
            "LIMITE_MATERIAS_EXCEDIDO",
            422,
        ),
        ("EST001", PERIOD, &["G1INF110"], "MATERIA_YA_APROBADA", 409),
    ];
    for (ra, periodo, grupos, code, http) in cases {
        let (status, body) = sync(&app, ra, periodo, grupos).await;
        assert_eq!(status, *http, "sync {ra} {grupos:?}: {body}");
        assert_eq!(body["error_code"], *code, "sync {ra} {grupos:?}: {body}");
        assert_eq!(body["error"], true);
        assert!(body["message"].is_string());

        let job = app.enroll(ra, periodo, grupos).await;
        assert_rejected(&job, code);
    }

    let (_, body) = sync(&app, "BLQ002", PERIOD, &["G-ELC102-E"]).await;
    assert_eq!(
        body["details"]["razon_bloqueo"],
        "Deuda pendiente en tesorería"
    );
    let (_, body) = sync(&app, "EST0010", PERIOD, &["G-ELC102-E", "G-ELC110-E"]).await;
    assert_eq!(body["details"]["grupo1"], "G-ELC102-E");
    assert_eq!(body["details"]["grupo2"], "G-ELC110-E");
    assert_eq!(
        body["details"]["dias_conflicto"],
        json!(["LUNES", "MIERCOLES"])
    );
    assert_eq!(
        body["details"]["horas_conflicto"],
        "08:00:00-10:00:00 vs 09:00:00-11:00:00"
    );
    let (_, body) = sync(&app, "EST0010", PERIOD, &["G1QUI203"]).await;
    assert_eq!(body["details"]["cupo_total"], 1);
    assert_eq!(body["details"]["cupo_disponible"], 0);

    assert_eq!(app.count("SELECT COUNT(*) FROM inscripcion").await, 1);
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn sync_rejects_existing_inscription() {
    let app = TestApp::spawn().await;
    let (status, first) = sync(&app, "EST0100", PERIOD, &["G-ELC102-E"]).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["registro_academico"], "EST0100");
    assert_eq!(first["estudiante"]["registro_academico"], "EST0100");
    assert_eq!(first["periodo_academico"]["estado"], "ACTIVO");
    assert_eq!(first["detalles"][0]["codigo_grupo"], "G-ELC102-E");

    let (status, second) = sync(&app, "EST0100", PERIOD, &["G-ELC106-E"]).await;
    assert_eq!(status, 409);
    assert_eq!(second["error_code"], "INSCRIPCION_DUPLICADA");
    assert_eq!(
        second["details"]["inscripcion_existente"],
        first["codigo_inscripcion"]
    );
    assert_eq!(app.seats("G-ELC106-E").await, 0);
}

#[tokio::test]
async fn job_path_merges_into_existing_inscription() {
    let app = TestApp::spawn().await;
    let first = app.enroll("EST0200", PERIOD, &["G-ELC102-E"]).await;
    assert_eq!(first["result"]["status"], "SUCCESS");

    let merged = app
        .enroll("EST0200", PERIOD, &["G-ELC102-E", "G-ELC106-E"])
        .await;
    assert_eq!(merged["result"]["status"], "SUCCESS", "{merged}");
    let data = &merged["result"]["data"];
    assert_eq!(data["grupos_ya_inscritos"], json!(["G-ELC102-E"]));
    assert_eq!(data["detalles"].as_array().map(Vec::len), Some(1));
    assert_eq!(data["detalles"][0]["codigo_grupo"], "G-ELC106-E");
    assert_eq!(
        data["codigo_inscripcion"],
        first["result"]["data"]["codigo_inscripcion"]
    );

    let repeat = app.enroll("EST0200", PERIOD, &["G-ELC106-E"]).await;
    assert_eq!(repeat["result"]["status"], "SUCCESS");
    assert!(repeat["result"]["data"]["mensaje"].is_string());
    assert_eq!(app.seats("G-ELC106-E").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM detalle_inscripcion").await,
        2
    );
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn failed_merge_keeps_existing_groups() {
    let app = TestApp::spawn().await;
    app.enroll("EST0300", PERIOD, &["G1MAT207"]).await;
    let job = app
        .enroll("EST0300", PERIOD, &["G-ELC106-E", "G2MAT207"])
        .await;
    assert_rejected(&job, "GRUPO_DUPLICADO");
    assert_eq!(job["result"]["grupo"], "G2MAT207");
    assert_eq!(app.seats("G1MAT207").await, 1);
    assert_eq!(app.seats("G-ELC106-E").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM detalle_inscripcion").await,
        1
    );
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn add_group_checks_like_enrollment() {
    let app = TestApp::spawn().await;
    let (_, created) = sync(&app, "EST0400", PERIOD, &["G-ELC102-E"]).await;
    let codigo = created["codigo_inscripcion"].as_str().expect("codigo");

    let (status, added) = app
        .post(
            &format!("/api/v1/inscripciones/{codigo}/grupos/G-ELC106-E"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{added}");
    assert!(
        added["detalle"]
            .as_str()
            .is_some_and(|d| d.starts_with('D'))
    );

    let cases = [
        ("G-ELC106-E", 409, "GRUPO_DUPLICADO"),
        ("G-ELC110-E", 409, "CONFLICTO_HORARIO"),
        ("G-NOPE", 404, "GRUPO_NOT_FOUND"),
    ];
    for (grupo, http, code) in cases {
        let (status, body) = app
            .post(
                &format!("/api/v1/inscripciones/{codigo}/grupos/{grupo}"),
                &json!({}),
            )
            .await;
        assert_eq!(status, http, "{grupo}: {body}");
        assert_eq!(body["error_code"], code, "{grupo}: {body}");
    }
    let (status, body) = app
        .post(
            "/api/v1/inscripciones/I999999999/grupos/G1FIS101",
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error_code"], "INSCRIPCION_NOT_FOUND");
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn drop_and_delete_free_seats() {
    let app = TestApp::spawn().await;
    let (_, created) = sync(&app, "EST0500", PERIOD, &["G-ELC102-E", "G-ELC106-E"]).await;
    let codigo = created["codigo_inscripcion"]
        .as_str()
        .expect("codigo")
        .to_owned();
    assert_eq!(app.seats("G-ELC102-E").await, 1);

    let path = format!("/api/v1/inscripciones/{codigo}/grupos/G-ELC102-E");
    let (status, dropped) = app.delete(&path).await;
    assert_eq!(status, 200, "{dropped}");
    assert_eq!(dropped["status"], "SUCCESS");
    assert_eq!(app.seats("G-ELC102-E").await, 0);

    let (status, again) = app.delete(&path).await;
    assert_eq!(status, 404);
    assert_eq!(again["error_code"], "DETALLE_INSCRIPCION_NOT_FOUND");
    assert_eq!(again["details"]["codigo_grupo"], "G-ELC102-E");
    assert_eq!(
        app.seats("G-ELC102-E").await,
        0,
        "a repeated drop must not free a seat twice"
    );

    let (status, _) = app.delete(&format!("/api/v1/inscripciones/{codigo}")).await;
    assert_eq!(status, 204);
    assert_eq!(app.seats("G-ELC106-E").await, 0);
    let (status, body) = app.delete(&format!("/api/v1/inscripciones/{codigo}")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error_code"], "INSCRIPCION_NOT_FOUND");
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn drop_requires_active_period() {
    let app = TestApp::spawn().await;
    let (_, created) = sync(&app, "EST0600", PERIOD, &["G-ELC102-E"]).await;
    let codigo = created["codigo_inscripcion"]
        .as_str()
        .expect("codigo")
        .to_owned();
    let (status, _) = app
        .post("/api/v1/periodos/1-2025/activar", &json!({}))
        .await;
    assert_eq!(status, 200);

    let (status, body) = app
        .delete(&format!("/api/v1/inscripciones/{codigo}/grupos/G-ELC102-E"))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error_code"], "PERIODO_INACTIVO");
    assert_eq!(app.seats("G-ELC102-E").await, 1);
}

#[tokio::test]
async fn update_keeps_date_within_period() {
    let app = TestApp::spawn().await;
    let (_, created) = sync(&app, "EST0700", PERIOD, &["G-ELC102-E"]).await;
    let codigo = created["codigo_inscripcion"]
        .as_str()
        .expect("codigo")
        .to_owned();
    let path = format!("/api/v1/inscripciones/{codigo}");

    let (status, updated) = app
        .put(&path, &json!({ "fecha_inscripcion": "2024-08-15" }))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["fecha_inscripcion"], "2024-08-15");

    let (status, body) = app
        .put(&path, &json!({ "fecha_inscripcion": "2020-01-01" }))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["details"]["validation_errors"][0]["field"],
        "body -> fecha_inscripcion"
    );
    let (status, body) = app
        .put(&path, &json!({ "fecha_inscripcion": "15/08/2024" }))
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = app
        .put(
            "/api/v1/inscripciones/I999999999",
            &json!({ "fecha_inscripcion": "2024-08-15" }),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error_code"], "INSCRIPCION_NOT_FOUND");
}

#[tokio::test]
async fn enrollment_window_is_enforced_when_enabled() {
    let app = TestApp::spawn_with(|c| c.enforce_enrollment_window = true).await;
    execute(
        &app.db,
        "UPDATE periodo_academico SET fecha_fin = '2024-12-20' WHERE codigo_periodo = $1",
        &[PERIOD],
    )
    .await;
    let (status, body) = sync(&app, "EST0800", PERIOD, &["G-ELC102-E"]).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error_code"], "PERIODO_INSCRIPCION_CERRADO");
}

#[tokio::test]
async fn bulk_reports_each_item() {
    let app = TestApp::spawn().await;
    let mut items: Vec<Value> = (0..7)
        .map(|i| {
            json!({ "registro_academico": format!("EST1{i:03}"), "codigo_periodo": PERIOD, "grupos": ["G1FIS101"] })
        })
        .collect();
    for ra in ["NOPE1", "NOPE2", "BLQ001"] {
        items.push(
            json!({ "registro_academico": ra, "codigo_periodo": PERIOD, "grupos": ["G1FIS101"] }),
        );
    }
    let (status, queued) = app
        .post("/api/v1/queue/inscripciones/bulk-async", &json!(items))
        .await;
    assert_eq!(status, 202, "{queued}");
    let id = queued["task_id"].as_str().expect("task_id").to_owned();
    let done = app.wait_terminal(&[id], Duration::from_secs(30)).await;
    let result = &done[0]["result"];
    assert_eq!(result["total"], 10);
    assert_eq!(result["successful"], 7);
    assert_eq!(result["failed"], 3);
    assert_eq!(result["results"][7]["error_code"], "ESTUDIANTE_NOT_FOUND");
    assert_eq!(result["results"][9]["error_code"], "ESTUDIANTE_BLOQUEADO");
    assert_eq!(app.seats("G1FIS101").await, 7);
    assert_invariants(&app.db).await;
}
