//! Prerequisites and passed materias in the enrollment routine, on every path (queued job,
//! sync and add-group): met, unmet, met by a grade recorded just before the request, the
//! order against `MATERIA_YA_APROBADA`, the configuration switches, and prerequisites loaded
//! by `registrar import`.
//!
//! The demo catalog's prerequisites: MAT102 requires MAT101, INF120 requires INF110, ELC202
//! requires ELC102 and MAT102. EST001 has passed INF110 and MAT101; the EST0000–EST9999
//! students have no historial.

mod common;

use std::process::Command;

use common::{TestApp, assert_invariants};
use serde_json::{Value, json};

const PERIOD: &str = "2024-2";

async fn sync(app: &TestApp, ra: &str, grupos: &[&str]) -> (u16, Value) {
    let body = json!({ "registro_academico": ra, "codigo_periodo": PERIOD, "grupos": grupos });
    app.post("/api/v1/inscripciones/sync", &body).await
}

async fn record_grade(app: &TestApp, ra: &str, sigla: &str, estado: &str) -> i64 {
    let body = json!({
        "registro_academico": ra,
        "sigla_materia": sigla,
        "codigo_periodo": "2024-01",
        "nota_final": if estado == "APROBADA" { 75 } else { 30 },
        "estado": estado,
    });
    let (status, created) = app.post("/api/v1/historial", &body).await;
    assert_eq!(status, 201, "recording {sigla} for {ra} failed: {created}");
    created["id_historial"].as_i64().expect("id_historial")
}

async fn inscripciones_of(app: &TestApp, ra: &str) -> usize {
    let (status, body) = app
        .get(&format!("/api/v1/inscripciones/estudiante/{ra}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["inscripciones"]
        .as_array()
        .expect("inscripciones")
        .len()
}

#[tokio::test]
async fn unmet_prerequisite_rejects_sync_request() {
    let app = TestApp::spawn().await;
    let (status, body) = sync(&app, "TEST001", &["G1MAT102"]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error_code"], "PRERREQUISITO_NO_CUMPLIDO");
    assert_eq!(body["details"]["codigo_grupo"], "G1MAT102");
    assert_eq!(body["details"]["sigla_materia"], "MAT102");
    assert_eq!(body["details"]["registro_academico"], "TEST001");
    assert_eq!(
        body["details"]["prerrequisitos_faltantes"],
        json!(["MAT101"])
    );
    assert_eq!(
        inscripciones_of(&app, "TEST001").await,
        0,
        "inscription left"
    );
    assert_eq!(app.seats("G1MAT102").await, 0, "seat taken");
}

#[tokio::test]
async fn unmet_prerequisite_rolls_back_queued_request() {
    let app = TestApp::spawn().await;
    let job = app
        .enroll("EST0300", PERIOD, &["G-ELC106-E", "G1ELC202"])
        .await;
    assert_eq!(job["status"], "SUCCESS", "{job}");
    assert_eq!(job["result"]["status"], "ERROR", "{job}");
    assert_eq!(job["result"]["error_code"], "PRERREQUISITO_NO_CUMPLIDO");
    assert_eq!(job["result"]["grupo"], "G1ELC202");
    assert_eq!(
        job["result"]["details"]["prerrequisitos_faltantes"],
        json!(["ELC102", "MAT102"])
    );
    assert_eq!(
        app.seats("G-ELC106-E").await,
        0,
        "the other group kept its seat"
    );
    assert_eq!(
        inscripciones_of(&app, "EST0300").await,
        0,
        "inscription left"
    );
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn unmet_prerequisite_rejects_added_group() {
    let app = TestApp::spawn().await;
    let (status, created) = sync(&app, "EST0301", &["G-ELC106-E"]).await;
    assert_eq!(status, 201, "{created}");
    let codigo = created["codigo_inscripcion"].as_str().expect("codigo");

    let (status, body) = app
        .post(
            &format!("/api/v1/inscripciones/{codigo}/grupos/G1INF120"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error_code"], "PRERREQUISITO_NO_CUMPLIDO");
    assert_eq!(
        body["details"]["prerrequisitos_faltantes"],
        json!(["INF110"])
    );
    assert_eq!(app.seats("G1INF120").await, 0);
}

#[tokio::test]
async fn met_prerequisites_enroll() {
    let app = TestApp::spawn().await;
    // EST001 has passed MAT101 and INF110 in the demo catalog.
    let (status, body) = sync(&app, "EST001", &["G1MAT102", "G1INF120"]).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["detalles"].as_array().map(Vec::len), Some(2));
    assert_eq!(app.seats("G1MAT102").await, 1);
    assert_eq!(app.seats("G1INF120").await, 1);

    // The README's request has no prerequisites and still succeeds for the same student.
    let job = app
        .enroll("EST001", PERIOD, &["G-ELC102-E", "G-ELC106-E"])
        .await;
    assert_eq!(job["result"]["status"], "SUCCESS", "{job}");
    assert_invariants(&app.db).await;
}

#[tokio::test]
async fn grade_recorded_just_before_counts() {
    let app = TestApp::spawn().await;
    let (status, body) = sync(&app, "TEST001", &["G1MAT102"]).await;
    assert_eq!(status, 409, "{body}");

    record_grade(&app, "TEST001", "MAT101", "APROBADA").await;
    let (status, body) = sync(&app, "TEST001", &["G1MAT102"]).await;
    assert_eq!(status, 201, "{body}");

    // The same on the queued path, with the grade recorded right before the request.
    record_grade(&app, "EST0302", "INF110", "APROBADA").await;
    let job = app.enroll("EST0302", PERIOD, &["G1INF120"]).await;
    assert_eq!(job["result"]["status"], "SUCCESS", "{job}");
    assert_eq!(app.seats("G1INF120").await, 1);
}

#[tokio::test]
async fn only_aprobada_meets_a_prerequisite() {
    let app = TestApp::spawn().await;
    let id = record_grade(&app, "EST0303", "MAT101", "REPROBADA").await;
    let (status, body) = sync(&app, "EST0303", &["G1MAT102"]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error_code"], "PRERREQUISITO_NO_CUMPLIDO");

    let (status, updated) = app
        .put(
            &format!("/api/v1/historial/{id}"),
            &json!({ "estado": "APROBADA", "nota_final": 61 }),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    let (status, body) = sync(&app, "EST0303", &["G1MAT102"]).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn every_missing_prerequisite_is_listed() {
    let app = TestApp::spawn().await;
    // EST001 has passed neither ELC102 nor MAT102.
    let (status, body) = sync(&app, "EST001", &["G1ELC202"]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["details"]["prerrequisitos_faltantes"],
        json!(["ELC102", "MAT102"])
    );

    record_grade(&app, "EST001", "MAT102", "APROBADA").await;
    let (status, body) = sync(&app, "EST001", &["G1ELC202"]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["details"]["prerrequisitos_faltantes"],
        json!(["ELC102"])
    );
}

#[tokio::test]
async fn passed_materia_is_checked_first() {
    let app = TestApp::spawn().await;
    // EST0304 passed MAT102 without its prerequisite MAT101, and the passed-materia rule
    // rejects the request first.
    record_grade(&app, "EST0304", "MAT102", "APROBADA").await;
    let (status, body) = sync(&app, "EST0304", &["G1MAT102"]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error_code"], "MATERIA_YA_APROBADA");
    assert_eq!(body["details"]["sigla_materia"], "MAT102");
    assert_eq!(body["details"]["codigo_grupo"], "G1MAT102");
}

#[tokio::test]
async fn prerequisite_switch_turns_rule_off() {
    let app = TestApp::spawn_with(|c| c.enforce_prerequisites = false).await;
    let (status, body) = sync(&app, "TEST001", &["G1MAT102"]).await;
    assert_eq!(status, 201, "{body}");
    // The passed-materia rule keeps its own switch.
    let (status, body) = sync(&app, "EST001", &["G1INF110"]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error_code"], "MATERIA_YA_APROBADA");
}

#[tokio::test]
async fn passed_materia_switch_turns_rule_off() {
    let app = TestApp::spawn_with(|c| c.reject_passed_materia = false).await;
    let (status, body) = sync(&app, "EST001", &["G1INF110"]).await;
    assert_eq!(status, 201, "{body}");
    let job = app.enroll("TEST001", PERIOD, &["G1MAT102"]).await;
    assert_eq!(
        job["result"]["error_code"], "PRERREQUISITO_NO_CUMPLIDO",
        "{job}"
    );
}

#[tokio::test]
async fn imported_prerequisite_applies_at_once() {
    let app = TestApp::spawn().await;
    let dir = std::env::temp_dir().join(format!(
        "registrar-prerrequisitos-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("create folder");
    let import = |csv: &str| {
        std::fs::write(dir.join("prerrequisitos.csv"), csv).expect("write prerrequisitos.csv");
        Command::new(env!("CARGO_BIN_EXE_registrar"))
            .arg("import")
            .arg(&dir)
            .env("DATABASE_URL", app.db.url())
            .env("LOG_LEVEL", "warn")
            .output()
            .expect("run registrar import")
    };

    // A cycle with the demo catalog's MAT102 -> MAT101 is rejected and writes nothing.
    let rejected = import("sigla_materia,sigla_requerida\nMAT101,MAT102\nQUI203,FIS101\n");
    let stderr = String::from_utf8_lossy(&rejected.stderr).into_owned();
    assert!(!rejected.status.success(), "{stderr}");
    assert!(
        stderr.contains("prerrequisitos.csv:2: sigla_requerida: MAT102 already requires MAT101"),
        "{stderr}"
    );

    // NOTE: reading the SQLite file through the harness's own connection at this point made
    // the next import wait out its busy timeout for the write lock (seen with sqlx 0.9.1). The
    // cause is not known, so the test reads the database only at the end.
    let loaded = import("sigla_materia,sigla_requerida\nQUI203,FIS101\n");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("prerrequisito: 1 row(s) changed"),
        "{}",
        String::from_utf8_lossy(&loaded.stdout)
    );
    let (status, body) = sync(&app, "EST0305", &["G1QUI203"]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["details"]["prerrequisitos_faltantes"],
        json!(["FIS101"])
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM prerrequisito WHERE sigla_materia = 'MAT101'")
            .await,
        0,
        "the rejected import wrote a row"
    );
}
