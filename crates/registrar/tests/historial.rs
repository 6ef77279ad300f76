//! The academic record over HTTP: every `/api/v1/historial` route with its success and error
//! cases, the reports against values computed by hand, concurrent duplicate creates, and
//! closing a period before its grades are imported.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use common::{TestApp, scalar};
use serde_json::{Value, json};
use tokio::task::JoinSet;

const HISTORIAL: &str = "/api/v1/historial";

fn row(ra: &str, sigla: &str, periodo: &str, nota: Value, estado: &str) -> Value {
    json!({
        "registro_academico": ra,
        "sigla_materia": sigla,
        "codigo_periodo": periodo,
        "nota_final": nota,
        "estado": estado,
    })
}

/// Creates a row that the test needs; returns its id.
async fn create(app: &TestApp, body: &Value) -> i64 {
    let (status, created) = app.post(HISTORIAL, body).await;
    assert_eq!(status, 201, "creating {body} failed: {created}");
    created["id_historial"].as_i64().expect("id_historial")
}

fn ids_of(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["sigla_materia"].as_str().expect("sigla").to_owned(),
                r["codigo_periodo"].as_str().expect("periodo").to_owned(),
            )
        })
        .collect()
}

fn pair(sigla: &str, periodo: &str) -> (String, String) {
    (sigla.to_owned(), periodo.to_owned())
}

#[tokio::test]
async fn create_returns_row_with_names() {
    let app = TestApp::spawn().await;
    let before = time::OffsetDateTime::now_utc().date().to_string();
    let mut body = row("EST0001", "MAT101", "2024-01", json!(78.456), "APROBADA");
    body["observacion"] = json!("Examen final");
    let (status, created) = app.post(HISTORIAL, &body).await;
    let after = time::OffsetDateTime::now_utc().date().to_string();

    assert_eq!(status, 201, "{created}");
    assert!(created["id_historial"].is_i64(), "{created}");
    assert_eq!(created["registro_academico"], "EST0001");
    assert_eq!(created["sigla_materia"], "MAT101");
    assert_eq!(created["codigo_periodo"], "2024-01");
    assert_eq!(
        created["nota_final"],
        json!(78.46),
        "rounded to two decimals"
    );
    assert_eq!(created["estado"], "APROBADA");
    assert_eq!(created["observacion"], "Examen final");
    let fecha = created["fecha_registro"].as_str().expect("fecha_registro");
    assert!(fecha == before || fecha == after, "fecha_registro {fecha}");
    assert_eq!(created["estudiante_nombre"], "Estudiante Carga");
    assert_eq!(created["materia_nombre"], "Cálculo I");
    assert_eq!(created["periodo_nombre"], "1/2024");

    // Without the trailing slash, and with the grade as a string as the predecessor sent it.
    let body = row("EST0001", "FIS101", "2024-01", json!("61.5"), "APROBADA");
    let (status, created) = app.post("/api/v1/historial", &body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["nota_final"], json!(61.5));
    assert_eq!(created["observacion"], Value::Null);
}

#[tokio::test]
async fn create_errors_follow_check_order() {
    let app = TestApp::spawn().await;
    let long = "x".repeat(201);
    let mut with_long_note = row("EST0001", "MAT101", "2024-01", json!(70), "APROBADA");
    with_long_note["observacion"] = json!(long);
    let mut without_estado = row("EST0001", "MAT101", "2024-01", json!(70), "APROBADA");
    without_estado
        .as_object_mut()
        .expect("object")
        .remove("estado");

    // (case, body, HTTP status, error_code)
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("estado missing", without_estado, 422, "VALIDATION_ERROR"),
        (
            "observacion too long",
            with_long_note,
            422,
            "VALIDATION_ERROR",
        ),
        (
            "nota not a number",
            row("EST0001", "MAT101", "2024-01", json!("ochenta"), "APROBADA"),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "estado checked before nota",
            row("EST0001", "MAT101", "2024-01", json!(150), "aprobada"),
            422,
            "ESTADO_MATERIA_INVALIDO",
        ),
        (
            "nota above 100",
            row("EST0001", "MAT101", "2024-01", json!(101), "APROBADA"),
            422,
            "NOTA_INVALIDA",
        ),
        (
            "nota below 0",
            row("EST0001", "MAT101", "2024-01", json!(-1), "REPROBADA"),
            422,
            "NOTA_INVALIDA",
        ),
        (
            "nota checked before the student",
            row("NOPE", "MAT101", "2024-01", json!(101), "APROBADA"),
            422,
            "NOTA_INVALIDA",
        ),
        (
            "student checked before materia",
            row("NOPE", "NOPE", "NOPE", json!(70), "APROBADA"),
            404,
            "ESTUDIANTE_NOT_FOUND",
        ),
        (
            "materia checked before period",
            row("EST0001", "NOPE", "NOPE", json!(70), "APROBADA"),
            404,
            "MATERIA_NOT_FOUND",
        ),
        (
            "unknown period",
            row("EST0001", "MAT101", "NOPE", json!(70), "APROBADA"),
            404,
            "PERIODO_NOT_FOUND",
        ),
        (
            "row of the demo catalog",
            row("EST001", "INF110", "2023-2", json!(90), "APROBADA"),
            409,
            "HISTORIAL_DUPLICADO",
        ),
    ];
    for (case, body, status, code) in cases {
        let (got, response) = app.post(HISTORIAL, &body).await;
        assert_eq!(got, status, "{case}: {response}");
        assert_eq!(response["error_code"], code, "{case}: {response}");
    }

    let (_, nota) = app
        .post(
            HISTORIAL,
            &row("EST0001", "MAT101", "2024-01", json!(101), "APROBADA"),
        )
        .await;
    assert_eq!(nota["details"]["nota_proporcionada"], json!(101.0));
    assert_eq!(nota["details"]["nota_minima"], json!(0.0));
    assert_eq!(nota["details"]["nota_maxima"], json!(100.0));

    let (_, estado) = app
        .post(
            HISTORIAL,
            &row("EST0001", "MAT101", "2024-01", json!(70), "Aprobada"),
        )
        .await;
    assert_eq!(estado["details"]["estado_proporcionado"], "Aprobada");
    assert_eq!(
        estado["details"]["estados_validos"],
        json!(["APROBADA", "REPROBADA", "RETIRADA"])
    );

    let (_, materia) = app
        .post(
            HISTORIAL,
            &row("EST0001", "NOPE", "2024-01", json!(70), "APROBADA"),
        )
        .await;
    assert_eq!(materia["details"]["sigla_materia"], "NOPE");

    let (_, duplicate) = app
        .post(
            HISTORIAL,
            &row("EST001", "INF110", "2023-2", json!(90), "APROBADA"),
        )
        .await;
    assert_eq!(duplicate["details"]["registro_academico"], "EST001");
    assert_eq!(duplicate["details"]["sigla_materia"], "INF110");
    assert_eq!(duplicate["details"]["codigo_periodo"], "2023-2");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM historial_academico").await,
        4,
        "a rejected create wrote a row"
    );
}

#[tokio::test]
async fn get_by_id_returns_complete_row() {
    let app = TestApp::spawn().await;
    let id = create(
        &app,
        &row("EST0002", "QUI203", "2024-01", json!(55), "APROBADA"),
    )
    .await;

    let (status, full) = app.get(&format!("{HISTORIAL}/{id}")).await;
    assert_eq!(status, 200, "{full}");
    assert_eq!(full["id_historial"], id);
    assert_eq!(full["nota_final"], json!(55.0));
    assert_eq!(full["estudiante"]["registro_academico"], "EST0002");
    assert_eq!(full["estudiante"]["codigo_carrera"], "INF");
    assert_eq!(full["materia"]["sigla"], "QUI203");
    assert_eq!(full["materia"]["creditos"], 4);
    assert_eq!(full["materia"]["es_electiva"], false);
    assert_eq!(full["periodo"]["codigo_periodo"], "2024-01");
    assert_eq!(full["periodo"]["estado"], "CERRADO");

    let (status, missing) = app.get(&format!("{HISTORIAL}/999999")).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error_code"], "HISTORIAL_NOT_FOUND");
    assert_eq!(missing["details"]["id_historial"], "999999");

    let (status, invalid) = app.get(&format!("{HISTORIAL}/abc")).await;
    assert_eq!(status, 422);
    assert_eq!(invalid["error_code"], "VALIDATION_ERROR");
    assert_eq!(
        invalid["details"]["validation_errors"][0]["field"],
        "path -> id_historial"
    );
}

#[tokio::test]
async fn student_listing_filters_and_orders() {
    let app = TestApp::spawn().await;
    let base = format!("{HISTORIAL}/estudiante/EST001");

    let (status, all) = app.get(&base).await;
    assert_eq!(status, 200, "{all}");
    // Newest fecha_registro first: 2024-06-25, 2024-04-02, then the two rows of 2023-12-10.
    let listed = ids_of(&all);
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0], pair("MAT101", "2024-01"));
    assert_eq!(listed[1], pair("QUI203", "2024-01"));
    assert!(
        listed[2..].contains(&pair("INF110", "2023-2")),
        "{listed:?}"
    );
    assert!(
        listed[2..].contains(&pair("MAT101", "2023-2")),
        "{listed:?}"
    );
    assert_eq!(all[0]["nota_final"], json!(71.0));
    assert_eq!(all[1]["nota_final"], Value::Null);

    let (_, in_period) = app.get(&format!("{base}?codigo_periodo=2023-2")).await;
    assert_eq!(in_period.as_array().map(Vec::len), Some(2));
    let (_, passed) = app.get(&format!("{base}?estado=APROBADA")).await;
    assert_eq!(passed.as_array().map(Vec::len), Some(2));
    let (_, both) = app
        .get(&format!("{base}?codigo_periodo=2023-2&estado=APROBADA"))
        .await;
    assert_eq!(ids_of(&both), vec![pair("INF110", "2023-2")]);

    for estado in ["aprobada", "", "PENDIENTE"] {
        let (status, rejected) = app.get(&format!("{base}?estado={estado}")).await;
        assert_eq!(status, 422, "estado={estado:?}: {rejected}");
        assert_eq!(
            rejected["error_code"], "ESTADO_MATERIA_INVALIDO",
            "estado={estado:?}"
        );
    }

    let (status, unknown) = app.get(&format!("{HISTORIAL}/estudiante/NOPE")).await;
    assert_eq!(status, 200);
    assert_eq!(unknown, json!([]));
}

#[tokio::test]
async fn estado_route_lists_one_state() {
    let app = TestApp::spawn().await;
    let (status, failed) = app
        .get(&format!("{HISTORIAL}/estudiante/EST001/estado/REPROBADA"))
        .await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(ids_of(&failed), vec![pair("MAT101", "2023-2")]);
    assert_eq!(failed[0]["nota_final"], json!(42.0));

    let (status, rejected) = app
        .get(&format!("{HISTORIAL}/estudiante/EST001/estado/Aprobada"))
        .await;
    assert_eq!(status, 422);
    assert_eq!(rejected["error_code"], "ESTADO_MATERIA_INVALIDO");
}

#[tokio::test]
async fn por_periodo_groups_and_averages() {
    let app = TestApp::spawn().await;
    let (status, periods) = app
        .get(&format!("{HISTORIAL}/estudiante/EST001/por-periodo"))
        .await;
    assert_eq!(status, 200, "{periods}");
    let periods = periods.as_array().expect("array").clone();
    assert_eq!(periods.len(), 2);

    assert_eq!(periods[0]["codigo_periodo"], "2023-2");
    assert_eq!(periods[0]["periodo_nombre"], "2/2023");
    assert_eq!(
        ids_of(&periods[0]["materias"]),
        vec![pair("INF110", "2023-2"), pair("MAT101", "2023-2")]
    );
    // Only APROBADA rows count: INF110's 85.5, not MAT101's failing 42.
    assert_eq!(periods[0]["promedio_periodo"], json!(85.5));

    assert_eq!(periods[1]["codigo_periodo"], "2024-01");
    assert_eq!(
        ids_of(&periods[1]["materias"]),
        vec![pair("MAT101", "2024-01"), pair("QUI203", "2024-01")]
    );
    assert_eq!(periods[1]["promedio_periodo"], json!(71.0));

    // A period without semestre is named by its code, and one without passed rows has no
    // average.
    let (status, _) = app
        .post(
            "/api/v1/periodos",
            &json!({ "codigo_periodo": "2031-1", "estado": "CERRADO" }),
        )
        .await;
    assert_eq!(status, 201);
    create(
        &app,
        &row("EST0003", "FIS101", "2031-1", json!(20), "REPROBADA"),
    )
    .await;
    let (_, periods) = app
        .get(&format!("{HISTORIAL}/estudiante/EST0003/por-periodo"))
        .await;
    assert_eq!(periods[0]["periodo_nombre"], "2031-1");
    assert_eq!(periods[0]["promedio_periodo"], Value::Null);

    let (status, unknown) = app
        .get(&format!("{HISTORIAL}/estudiante/NOPE/por-periodo"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(unknown, json!([]));
}

#[tokio::test]
async fn resumen_counts_and_credits() {
    let app = TestApp::spawn().await;
    let path = format!("{HISTORIAL}/estudiante/EST001/resumen");
    let (status, resumen) = app.get(&path).await;
    assert_eq!(status, 200, "{resumen}");
    assert_eq!(resumen["registro_academico"], "EST001");
    assert_eq!(resumen["total_materias"], 4);
    assert_eq!(resumen["materias_aprobadas"], 2);
    assert_eq!(resumen["materias_reprobadas"], 1);
    assert_eq!(resumen["materias_retiradas"], 1);
    // (85.5 + 71) / 2
    assert_eq!(resumen["promedio_general"], json!(78.25));
    // INF110 and MAT101, 5 credits each.
    assert_eq!(resumen["creditos_aprobados"], 10);

    // Passing MAT101 again adds a row and a grade but no credits.
    create(
        &app,
        &row("EST001", "MAT101", "2024-2", json!(90), "APROBADA"),
    )
    .await;
    let (_, resumen) = app.get(&path).await;
    assert_eq!(resumen["total_materias"], 5);
    assert_eq!(resumen["materias_aprobadas"], 3);
    // (85.5 + 71 + 90) / 3 = 82.1666…
    assert_eq!(resumen["promedio_general"], json!(82.17));
    assert_eq!(resumen["creditos_aprobados"], 10);

    let (status, empty) = app
        .get(&format!("{HISTORIAL}/estudiante/NOPE/resumen"))
        .await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["total_materias"], 0);
    assert_eq!(empty["materias_aprobadas"], 0);
    assert_eq!(empty["materias_reprobadas"], 0);
    assert_eq!(empty["materias_retiradas"], 0);
    assert_eq!(empty["promedio_general"], Value::Null);
    assert_eq!(empty["creditos_aprobados"], 0);
}

#[tokio::test]
async fn update_sets_only_present_fields() {
    let app = TestApp::spawn().await;
    let mut body = row("EST0004", "MAT101", "2024-01", json!(40), "REPROBADA");
    body["observacion"] = json!("Primer intento");
    let id = create(&app, &body).await;
    let path = format!("{HISTORIAL}/{id}");

    let (status, updated) = app.put(&path, &json!({ "nota_final": 65 })).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["nota_final"], json!(65.0));
    assert_eq!(updated["estado"], "REPROBADA", "estado was not sent");
    assert_eq!(
        updated["observacion"], "Primer intento",
        "observacion was not sent"
    );

    let (status, updated) = app
        .put(&path, &json!({ "estado": "APROBADA", "observacion": null }))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["estado"], "APROBADA");
    assert_eq!(updated["observacion"], Value::Null);
    assert_eq!(
        updated["nota_final"],
        json!(65.0),
        "nota_final was not sent"
    );

    let (status, updated) = app
        .put(&path, &json!({ "estado": "RETIRADA", "nota_final": null }))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["nota_final"], Value::Null);

    let (status, unchanged) = app.put(&path, &json!({})).await;
    assert_eq!(status, 200, "{unchanged}");
    assert_eq!(unchanged["estado"], "RETIRADA");

    // (case, path, body, HTTP status, error_code)
    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        (
            "unknown row checked before estado",
            format!("{HISTORIAL}/999999"),
            json!({ "estado": "X" }),
            404,
            "HISTORIAL_NOT_FOUND",
        ),
        (
            "estado checked before nota",
            path.clone(),
            json!({ "estado": "X", "nota_final": 200 }),
            422,
            "ESTADO_MATERIA_INVALIDO",
        ),
        (
            "nota above 100",
            path.clone(),
            json!({ "nota_final": 100.5 }),
            422,
            "NOTA_INVALIDA",
        ),
        (
            "nota not a number",
            path.clone(),
            json!({ "nota_final": [1] }),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "estado cannot be cleared",
            path.clone(),
            json!({ "estado": null }),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "id not a number",
            format!("{HISTORIAL}/uno"),
            json!({ "nota_final": 50 }),
            422,
            "VALIDATION_ERROR",
        ),
    ];
    for (case, target, body, status, code) in cases {
        let (got, response) = app.put(&target, &body).await;
        assert_eq!(got, status, "{case}: {response}");
        assert_eq!(response["error_code"], code, "{case}: {response}");
    }
    let (_, after) = app.get(&path).await;
    assert_eq!(
        after["estado"], "RETIRADA",
        "a rejected update changed the row"
    );
    assert_eq!(
        after["nota_final"],
        Value::Null,
        "a rejected update changed the row"
    );
}

#[tokio::test]
async fn delete_then_not_found() {
    let app = TestApp::spawn().await;
    let id = create(
        &app,
        &row("EST0005", "MAT101", "2024-01", json!(88), "APROBADA"),
    )
    .await;
    let path = format!("{HISTORIAL}/{id}");

    let (status, body) = app.delete(&path).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, Value::Null, "204 has no body");
    let (status, missing) = app.get(&path).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error_code"], "HISTORIAL_NOT_FOUND");
    let (status, again) = app.delete(&path).await;
    assert_eq!(status, 404);
    assert_eq!(again["error_code"], "HISTORIAL_NOT_FOUND");
    let (status, invalid) = app.delete(&format!("{HISTORIAL}/x")).await;
    assert_eq!(status, 422);
    assert_eq!(invalid["error_code"], "VALIDATION_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_creates_yield_one_row() {
    const REQUESTS: usize = 16;
    let app = Arc::new(TestApp::spawn().await);
    let body = row("EST0006", "FIS101", "2024-01", json!(77), "APROBADA");
    let barrier = Arc::new(tokio::sync::Barrier::new(REQUESTS));
    let mut set = JoinSet::new();
    for _ in 0..REQUESTS {
        let app = app.clone();
        let body = body.clone();
        let barrier = barrier.clone();
        set.spawn(async move {
            barrier.wait().await;
            app.post(HISTORIAL, &body).await
        });
    }

    let mut created = 0;
    let mut duplicates = 0;
    while let Some(joined) = set.join_next().await {
        let (status, response) = joined.expect("request task");
        match (status, response["error_code"].as_str()) {
            (201, _) => created += 1,
            (409, Some("HISTORIAL_DUPLICADO")) => duplicates += 1,
            other => panic!("unexpected answer {other:?}: {response}"),
        }
    }
    assert_eq!(created, 1, "exactly one create succeeds");
    assert_eq!(duplicates, REQUESTS - 1, "the others are duplicates");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM historial_academico \
             WHERE registro_academico = 'EST0006' AND sigla_materia = 'FIS101'"
        )
        .await,
        1
    );
}

/// Loads the report fixture into period 2030-1: five students, two materias.
async fn report_fixture(app: &TestApp) {
    let periodo = json!({ "codigo_periodo": "2030-1", "semestre": "1/2030", "estado": "CERRADO" });
    let (status, body) = app.post("/api/v1/periodos", &periodo).await;
    assert_eq!(status, 201, "{body}");
    let rows = [
        ("EST0100", "MAT101", json!(90), "APROBADA"),
        ("EST0101", "MAT101", json!(50), "REPROBADA"),
        ("EST0102", "MAT101", Value::Null, "RETIRADA"),
        ("EST0103", "MAT101", json!(70.25), "APROBADA"),
        ("EST0104", "MAT101", json!(82), "APROBADA"),
        ("EST0100", "FIS101", json!(60), "APROBADA"),
        ("EST0101", "FIS101", json!(35.5), "REPROBADA"),
    ];
    for (ra, sigla, nota, estado) in rows {
        create(app, &row(ra, sigla, "2030-1", nota, estado)).await;
    }
}

#[tokio::test]
async fn period_report_matches_hand_computation() {
    let app = TestApp::spawn().await;
    report_fixture(&app).await;

    let (status, report) = app
        .get(&format!("{HISTORIAL}/reportes/rendimiento-periodo/2030-1"))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["codigo_periodo"], "2030-1");
    assert_eq!(report["periodo_nombre"], "1/2030");
    assert_eq!(report["estado_periodo"], "CERRADO");
    assert_eq!(report["total_registros"], 7);
    assert_eq!(report["total_estudiantes"], 5);
    assert_eq!(report["aprobadas"], 4);
    assert_eq!(report["reprobadas"], 2);
    assert_eq!(report["retiradas"], 1);
    // 4 of 7 rows passed.
    assert_eq!(report["tasa_aprobacion"], json!(57.14));
    // (90 + 50 + 70.25 + 82 + 60 + 35.5) / 6 graded rows = 64.625
    assert_eq!(report["promedio_nota"], json!(64.63));

    let materias = report["materias"].as_array().expect("materias");
    assert_eq!(materias.len(), 2);
    let fis = &materias[0];
    assert_eq!(fis["sigla_materia"], "FIS101");
    assert_eq!(fis["materia_nombre"], "Física I");
    assert_eq!(fis["total_registros"], 2);
    assert_eq!(fis["aprobadas"], 1);
    assert_eq!(fis["reprobadas"], 1);
    assert_eq!(fis["retiradas"], 0);
    assert_eq!(fis["tasa_aprobacion"], json!(50.0));
    // (60 + 35.5) / 2
    assert_eq!(fis["promedio_nota"], json!(47.75));
    let mat = &materias[1];
    assert_eq!(mat["sigla_materia"], "MAT101");
    assert_eq!(mat["total_registros"], 5);
    assert_eq!(mat["total_estudiantes"], 5);
    assert_eq!(mat["aprobadas"], 3);
    assert_eq!(mat["reprobadas"], 1);
    assert_eq!(mat["retiradas"], 1);
    assert_eq!(mat["tasa_aprobacion"], json!(60.0));
    // (90 + 50 + 70.25 + 82) / 4 = 73.0625
    assert_eq!(mat["promedio_nota"], json!(73.06));

    let (status, empty) = app
        .get(&format!("{HISTORIAL}/reportes/rendimiento-periodo/1-2025"))
        .await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["total_registros"], 0);
    assert_eq!(empty["tasa_aprobacion"], Value::Null);
    assert_eq!(empty["promedio_nota"], Value::Null);
    assert_eq!(empty["materias"], json!([]));

    let (status, missing) = app
        .get(&format!("{HISTORIAL}/reportes/rendimiento-periodo/NOPE"))
        .await;
    assert_eq!(status, 404);
    assert_eq!(missing["error_code"], "PERIODO_NOT_FOUND");
}

#[tokio::test]
async fn materia_report_lists_students() {
    let app = TestApp::spawn().await;
    report_fixture(&app).await;
    let base = format!("{HISTORIAL}/reportes/estudiantes-por-materia/MAT101");

    let (status, report) = app.get(&format!("{base}?codigo_periodo=2030-1")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["sigla_materia"], "MAT101");
    assert_eq!(report["materia_nombre"], "Cálculo I");
    assert_eq!(report["creditos"], 5);
    assert_eq!(report["codigo_periodo"], "2030-1");
    assert_eq!(report["total_registros"], 5);
    assert_eq!(report["tasa_aprobacion"], json!(60.0));
    assert_eq!(report["promedio_nota"], json!(73.06));
    let students = report["estudiantes"].as_array().expect("estudiantes");
    let listed: Vec<(&str, &str, Value)> = students
        .iter()
        .map(|s| {
            (
                s["registro_academico"].as_str().expect("ra"),
                s["estado"].as_str().expect("estado"),
                s["nota_final"].clone(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("EST0100", "APROBADA", json!(90.0)),
            ("EST0101", "REPROBADA", json!(50.0)),
            ("EST0102", "RETIRADA", Value::Null),
            ("EST0103", "APROBADA", json!(70.25)),
            ("EST0104", "APROBADA", json!(82.0)),
        ]
    );
    assert_eq!(students[0]["estudiante_nombre"], "Estudiante Carga");
    assert_eq!(students[0]["periodo_nombre"], "1/2030");

    // Without a period the report spans every period, oldest code first: EST001's two rows
    // of the demo catalog come before the fixture.
    let (status, all) = app.get(&base).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["codigo_periodo"], Value::Null);
    assert_eq!(all["total_registros"], 7);
    assert_eq!(all["total_estudiantes"], 6);
    assert_eq!(all["estudiantes"][0]["registro_academico"], "EST001");
    assert_eq!(all["estudiantes"][0]["codigo_periodo"], "2023-2");
    assert_eq!(all["estudiantes"][1]["codigo_periodo"], "2024-01");

    let (status, none) = app
        .get(&format!(
            "{HISTORIAL}/reportes/estudiantes-por-materia/ELC108"
        ))
        .await;
    assert_eq!(status, 200, "{none}");
    assert_eq!(none["total_registros"], 0);
    assert_eq!(none["estudiantes"], json!([]));

    let (status, missing) = app
        .get(&format!(
            "{HISTORIAL}/reportes/estudiantes-por-materia/NOPE"
        ))
        .await;
    assert_eq!(status, 404);
    assert_eq!(missing["error_code"], "MATERIA_NOT_FOUND");
    let (status, missing) = app.get(&format!("{base}?codigo_periodo=NOPE")).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error_code"], "PERIODO_NOT_FOUND");
}

#[tokio::test]
async fn close_period_stops_enrollment_without_grades() {
    let app = TestApp::spawn().await;
    let enroll = json!({
        "registro_academico": "EST0200",
        "codigo_periodo": "2024-2",
        "grupos": ["G1FIS101"],
    });
    let (status, body) = app.post("/api/v1/inscripciones/sync", &enroll).await;
    assert_eq!(status, 201, "{body}");

    let (status, closed) = app.post("/api/v1/periodos/2024-2/cerrar", &json!({})).await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["codigo_periodo"], "2024-2");
    assert_eq!(closed["estado"], "CERRADO");
    let (_, stored) = app.get("/api/v1/periodos/2024-2").await;
    assert_eq!(stored["estado"], "CERRADO");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM historial_academico WHERE codigo_periodo = '2024-2'")
            .await,
        0,
        "closing wrote grades"
    );

    let mut other = enroll.clone();
    other["registro_academico"] = json!("EST0201");
    let (status, rejected) = app.post("/api/v1/inscripciones/sync", &other).await;
    assert_eq!(status, 422, "{rejected}");
    assert_eq!(rejected["error_code"], "PERIODO_INACTIVO");

    let (status, missing) = app.post("/api/v1/periodos/NOPE/cerrar", &json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error_code"], "PERIODO_NOT_FOUND");
}

#[tokio::test]
async fn close_period_requires_admin_token() {
    let app = TestApp::spawn_with(|c| c.admin_token = Some("s3cret".into())).await;
    let url = app.url("/api/v1/periodos/2024-2/cerrar");

    let response = app.client.post(&url).send().await.expect("POST");
    assert_eq!(response.status().as_u16(), 401);
    let response = app
        .client
        .post(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 403);
    let (_, periodo) = app.get("/api/v1/periodos/2024-2").await;
    assert_eq!(
        periodo["estado"], "ACTIVO",
        "a rejected close changed the period"
    );

    let response = app
        .client
        .post(&url)
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 200);
}

fn scratch_folder() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "registrar-historial-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("create folder");
    dir
}

#[tokio::test]
async fn grades_import_fills_closed_period() {
    let app = TestApp::spawn().await;
    let enroll = json!({
        "registro_academico": "EST0202",
        "codigo_periodo": "2024-2",
        "grupos": ["G1FIS101", "G1QUI203"],
    });
    let (status, body) = app.post("/api/v1/inscripciones/sync", &enroll).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app.post("/api/v1/periodos/2024-2/cerrar", &json!({})).await;
    assert_eq!(status, 200, "{body}");

    let dir = scratch_folder();
    std::fs::write(
        dir.join("historial.csv"),
        "registro_academico,sigla_materia,codigo_periodo,nota_final,estado,observacion,\
         fecha_registro\n\
         EST0202,FIS101,2024-2,77,APROBADA,,2025-01-10\n\
         EST0202,QUI203,2024-2,38.5,REPROBADA,Examen final reprobado,2025-01-10\n",
    )
    .expect("write historial.csv");
    let output = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("import")
        .arg(&dir)
        .env("DATABASE_URL", app.db.url())
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run registrar import");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("historial_academico: 2 row(s) changed"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    let (status, rows) = app
        .get(&format!(
            "{HISTORIAL}/estudiante/EST0202?codigo_periodo=2024-2"
        ))
        .await;
    assert_eq!(status, 200, "{rows}");
    let mut listed = ids_of(&rows);
    listed.sort();
    assert_eq!(
        listed,
        vec![pair("FIS101", "2024-2"), pair("QUI203", "2024-2")]
    );
    let (_, report) = app
        .get(&format!("{HISTORIAL}/reportes/rendimiento-periodo/2024-2"))
        .await;
    assert_eq!(report["estado_periodo"], "CERRADO");
    assert_eq!(report["aprobadas"], 1);
    assert_eq!(report["reprobadas"], 1);
    assert_eq!(
        scalar(
            &app.db,
            "SELECT COUNT(*) FROM historial_academico WHERE registro_academico = 'EST0202'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn nul_in_observacion_is_rejected_alike() {
    let app = TestApp::spawn().await;
    let body = json!({
        "registro_academico": "RA0004",
        "sigla_materia": "MAT101",
        "codigo_periodo": "2024-01",
        "estado": "APROBADA",
        "observacion": "a\u{0}b",
    });
    let (status, response) = app.post("/api/v1/historial/", &body).await;
    assert_eq!(status, 422, "{response}");
    assert_eq!(
        response["details"]["validation_errors"][0]["field"],
        "body -> observacion"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM historial_academico WHERE registro_academico = 'RA0004'")
            .await,
        0
    );
}

#[tokio::test]
async fn long_rejected_input_is_not_echoed_whole() {
    let app = TestApp::spawn().await;
    let body = json!({
        "registro_academico": "RA0005",
        "sigla_materia": "MAT101",
        "codigo_periodo": "2024-01",
        "estado": "APROBADA",
        "observacion": "x".repeat(50_000),
    });
    let (status, response) = app.post("/api/v1/historial/", &body).await;
    assert_eq!(status, 422, "{response}");
    let echoed = response["details"]["validation_errors"][0]["input"]
        .as_str()
        .unwrap_or("");
    assert!(
        echoed.chars().count() <= 201,
        "echoed {} characters",
        echoed.chars().count()
    );
}
