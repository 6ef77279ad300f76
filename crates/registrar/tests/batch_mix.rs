//! Worker batches planned in memory compared with single jobs. One batch that mixes every
//! kind of request must give each job the result that running the jobs one at a time gives,
//! and leave the same groups held and the same seat counters.

mod common;

use std::time::Duration;

use common::{TestApp, assert_invariants, execute, fresh_db, test_config};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const PERIOD: &str = "2024-2";

/// (student, period, groups), queued in this order.
const REQUESTS: &[(&str, &str, &[&str])] = &[
    ("EST0030", PERIOD, &["G1QUI203"]),
    ("EST0031", PERIOD, &["G1QUI203", "G-ELC106-E"]),
    ("EST0032", PERIOD, &["G-ELC106-E", "G1QUI203"]),
    ("EST0030", PERIOD, &["G1QUI203", "G-ELC106-E"]),
    ("EST0030", PERIOD, &["G1QUI203"]),
    ("BLQ001", PERIOD, &["G-ELC102-E"]),
    ("EST0001", PERIOD, &["G-ELC102-E"]),
    ("EST0020", PERIOD, &["G-ELC110-E"]),
    ("EST0020", PERIOD, &["G-ELC106-E"]),
    ("EST0020", PERIOD, &["G-ELC102-E", "G-ELC106-E"]),
    ("EST0033", PERIOD, &["G-NOPE"]),
    ("EST0033", "2024-01", &["G-ELC102-E"]),
    ("EST0033", "NOPE", &["G-ELC102-E"]),
    ("EST001", PERIOD, &["G1INF110"]),
    ("EST001", PERIOD, &["G1MAT102"]),
    ("TEST001", PERIOD, &["G1MAT102"]),
    ("EST0033", PERIOD, &["G-ELC102-E", "G-ELC110-E"]),
    ("EST0033", PERIOD, &["G1MAT207", "G2MAT207"]),
    ("EST0033", PERIOD, &["G-ELC102-E"]),
    ("EST0034", PERIOD, &["G-ELC106-E", "G-NOPE"]),
    ("EST0034", PERIOD, &["G1MAT102"]),
    ("EST0034", PERIOD, &["G1QUI203"]),
    ("NOPE", PERIOD, &["G-ELC102-E"]),
    ("EST0035", PERIOD, &["G-ELC110-E"]),
    ("EST0035", PERIOD, &["G-ELC102-E"]),
];

/// Prepares the database, queues every request with no worker running, then runs the
/// queue with one worker task that claims `batch_size` jobs at a time. Returns each job's
/// outcome, and the groups of each student and the seat counters at the end.
async fn run_mix(batch_size: usize) -> (Vec<String>, Vec<String>) {
    let db = fresh_db().await;
    let app = TestApp::start(db.clone(), test_config(&db), false).await;
    // G1QUI203 fills up after the first two requests.
    execute(
        &app.db,
        "UPDATE grupo SET cupo = 2, inscritos_actuales = 0 WHERE codigo_grupo = $1",
        &["G1QUI203"],
    )
    .await;
    execute(
        &app.db,
        "UPDATE estudiante SET estado_academico = 'INACTIVO' WHERE registro_academico = $1",
        &["EST0001"],
    )
    .await;
    // EST0020 is enrolled in G-ELC102-E, which clashes with G-ELC110-E.
    let body = json!({
        "registro_academico": "EST0020",
        "codigo_periodo": PERIOD,
        "grupos": ["G-ELC102-E"],
    });
    let (status, created) = app.post("/api/v1/inscripciones/sync", &body).await;
    assert_eq!(status, 201, "{created}");

    let mut ids = Vec::new();
    for (ra, periodo, grupos) in REQUESTS {
        let queued = app.enqueue(ra, periodo, grupos).await;
        ids.push(queued["main_task_id"].as_str().expect("id").to_owned());
    }

    let mut config = app.config.clone();
    config.worker_concurrency = 1;
    config.worker_batch_size = batch_size;
    let shutdown = CancellationToken::new();
    let (_workers, handle) = registrar::app::start_workers(
        app.store.clone(),
        &config,
        app.breakers.clone(),
        shutdown.clone(),
    );
    let statuses = app.wait_terminal(&ids, Duration::from_secs(30)).await;
    shutdown.cancel();
    let _ = handle.await;

    let outcomes = statuses.iter().map(describe).collect();
    let mut students: Vec<&str> = REQUESTS.iter().map(|r| r.0).collect();
    students.sort();
    students.dedup();
    let mut final_state = Vec::new();
    for ra in students {
        let (_, listing) = app
            .get(&format!("/api/v1/inscripciones/estudiante/{ra}"))
            .await;
        let groups: Vec<Vec<String>> = listing["inscripciones"]
            .as_array()
            .expect("inscripciones")
            .iter()
            .map(|i| {
                let mut codes: Vec<String> = i["detalles"]
                    .as_array()
                    .expect("detalles")
                    .iter()
                    .map(|d| d["grupo"]["codigo_grupo"].to_string())
                    .collect();
                codes.sort();
                codes
            })
            .collect();
        final_state.push(format!("{ra}: {groups:?}"));
    }
    for grupo in ["G1QUI203", "G-ELC106-E", "G-ELC102-E", "G1MAT102"] {
        final_state.push(format!("{grupo}: {}", app.seats(grupo).await));
    }
    final_state.push(format!(
        "empty inscriptions: {}",
        app.count(
            "SELECT COUNT(*) FROM inscripcion i WHERE NOT EXISTS \
             (SELECT 1 FROM detalle_inscripcion d WHERE d.codigo_inscripcion = i.codigo_inscripcion)"
        )
        .await
    ));
    assert_invariants(&app.db).await;
    (outcomes, final_state)
}

/// Describes a finished job without its codes, which differ between runs on PostgreSQL.
fn describe(status: &Value) -> String {
    let result = &status["result"];
    let mut detalles: Vec<String> = result["data"]["detalles"]
        .as_array()
        .map(|d| d.iter().map(|x| x["codigo_grupo"].to_string()).collect())
        .unwrap_or_default();
    detalles.sort();
    format!(
        "{} {} {} {} new={detalles:?} held={}",
        status["status"],
        result["status"],
        result["error_code"],
        result["grupo"],
        result["data"]["grupos_ya_inscritos"]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_batch_matches_single_jobs() {
    let (single, single_state) = run_mix(1).await;
    let (batched, batched_state) = run_mix(32).await;
    for (index, (one, many)) in single.iter().zip(&batched).enumerate() {
        assert_eq!(
            one, many,
            "job {index} {:?}: result run alone (left) and in a batch (right)",
            REQUESTS[index]
        );
    }
    for (one, many) in single_state.iter().zip(&batched_state) {
        assert_eq!(
            one, many,
            "final state run alone (left) and in a batch (right)"
        );
    }
}
