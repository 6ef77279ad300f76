//! Concurrent requests through HTTP: seat limits, all-or-nothing requests, duplicate requests,
//! lock order, and a seeded mix of enroll, drop and delete. Every test ends by checking the
//! shared invariants.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::{TestApp, TestDb, assert_invariants, execute};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::sync::{Barrier, Semaphore};
use tokio::task::JoinSet;

const PERIOD: &str = "2024-2";
const WAIT: Duration = Duration::from_secs(50);

/// Runs `task` once per item, and a barrier releases all of them at the same moment. Returns
/// the outputs in item order.
async fn run_together<I, T, F, Fut>(app: &Arc<TestApp>, items: Vec<I>, task: F) -> Vec<T>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(Arc<TestApp>, I) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(items.len()));
    let mut set = JoinSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let request = task(app.clone(), item);
        let barrier = barrier.clone();
        set.spawn(async move {
            barrier.wait().await;
            (index, request.await)
        });
    }
    let mut outputs: Vec<Option<T>> = std::iter::repeat_with(|| None).take(set.len()).collect();
    while let Some(joined) = set.join_next().await {
        let (index, output) = joined.expect("request task panicked");
        outputs[index] = Some(output);
    }
    outputs
        .into_iter()
        .map(|o| o.expect("every task returns"))
        .collect()
}

/// Queues every `(student, groups)` request through async-by-groups at once and waits until
/// each request-level job is terminal. Returns the 202 bodies and the final job statuses, both
/// in request order.
async fn enqueue_all(
    app: &Arc<TestApp>,
    requests: Vec<(String, Vec<&'static str>)>,
) -> (Vec<Value>, Vec<Value>) {
    let queued = run_together(app, requests, |app, (ra, grupos)| async move {
        app.enqueue(&ra, PERIOD, &grupos).await
    })
    .await;
    let ids: Vec<String> = queued.iter().map(main_task_id).collect();
    let statuses = app.wait_terminal(&ids, WAIT).await;
    (queued, statuses)
}

fn main_task_id(queued: &Value) -> String {
    queued["main_task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("202 body has no main_task_id: {queued}"))
        .to_owned()
}

fn view_ids(queued: &Value) -> Vec<String> {
    queued["group_tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("202 body has no group_tasks: {queued}"))
        .iter()
        .map(|t| t["task_id"].as_str().expect("group task_id").to_owned())
        .collect()
}

/// Returns the business outcome of a finished enrollment job: `SUCCESS`, or the rejection's
/// `error_code`.
fn outcome(status: &Value) -> String {
    match status["result"]["status"].as_str() {
        Some("SUCCESS") => "SUCCESS".to_owned(),
        Some("ERROR") => status["result"]["error_code"]
            .as_str()
            .unwrap_or("ERROR without error_code")
            .to_owned(),
        _ => format!("no result, job state {}", status["status"]),
    }
}

/// Counts how many jobs ended with each outcome.
fn tally(statuses: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for status in statuses {
        *counts.entry(outcome(status)).or_insert(0) += 1;
    }
    counts
}

/// Asserts that every job ran to completion: state SUCCESS, whatever the business outcome.
fn assert_all_jobs_completed(statuses: &[Value]) {
    for status in statuses {
        assert_eq!(
            status["status"], "SUCCESS",
            "job {} did not complete (FAILURE means a store error such as a deadlock): {status}",
            status["task_id"]
        );
    }
}

/// True when `code` is `prefix` followed by exactly nine digits.
fn has_code_form(code: &str, prefix: char) -> bool {
    code.len() == 10 && code.starts_with(prefix) && code[1..].bytes().all(|b| b.is_ascii_digit())
}

/// Asserts that the inscription and detail codes in successful job results are distinct and
/// have the `I` or `D` + 9 digits form. Returns how many of each it checked.
fn assert_codes_distinct(statuses: &[Value]) -> (usize, usize) {
    let mut inscripciones = HashSet::new();
    let mut detalles = HashSet::new();
    for status in statuses.iter().filter(|s| outcome(s) == "SUCCESS") {
        let data = &status["result"]["data"];
        let codigo = data["codigo_inscripcion"]
            .as_str()
            .expect("codigo_inscripcion");
        assert!(
            has_code_form(codigo, 'I'),
            "codigo_inscripcion {codigo} is not I + 9 digits"
        );
        assert!(
            inscripciones.insert(codigo.to_owned()),
            "codigo_inscripcion {codigo} was handed out twice"
        );
        for detalle in data["detalles"].as_array().expect("detalles") {
            let codigo = detalle["codigo_detalle"].as_str().expect("codigo_detalle");
            assert!(
                has_code_form(codigo, 'D'),
                "codigo_detalle {codigo} is not D + 9 digits"
            );
            assert!(
                detalles.insert(codigo.to_owned()),
                "codigo_detalle {codigo} was handed out twice"
            );
        }
    }
    (inscripciones.len(), detalles.len())
}

/// Lists the student's inscriptions in the period, each as its code and its groups.
async fn student_groups(app: &TestApp, ra: &str) -> Vec<(String, Vec<String>)> {
    let (status, body) = app
        .get(&format!("/api/v1/inscripciones/estudiante/{ra}"))
        .await;
    assert_eq!(status, 200, "listing of {ra} failed: {body}");
    body["inscripciones"]
        .as_array()
        .expect("inscripciones")
        .iter()
        .filter(|i| i["codigo_periodo"] == PERIOD)
        .map(|i| {
            let grupos = i["detalles"]
                .as_array()
                .expect("detalles")
                .iter()
                .map(|d| {
                    d["grupo"]["codigo_grupo"]
                        .as_str()
                        .expect("codigo_grupo")
                        .to_owned()
                })
                .collect();
            (
                i["codigo_inscripcion"].as_str().expect("codigo").to_owned(),
                grupos,
            )
        })
        .collect()
}

/// Counts the detail rows that point at `grupo`.
async fn detail_rows(db: &TestDb, grupo: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM detalle_inscripcion WHERE codigo_grupo = $1";
    match db {
        TestDb::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("open");
            sqlx::query_scalar(sql)
                .bind(grupo)
                .fetch_one(&mut conn)
                .await
                .expect(sql)
        }
        TestDb::Postgres { url, .. } => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("open");
            sqlx::query_scalar(sql)
                .bind(grupo)
                .fetch_one(&mut conn)
                .await
                .expect(sql)
        }
    }
}

async fn set_cupo(db: &TestDb, grupo: &str, cupo: &str) {
    execute(
        db,
        "UPDATE grupo SET cupo = CAST($1 AS INTEGER) WHERE codigo_grupo = $2",
        &[cupo, grupo],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cupo_30_admits_30_of_200() {
    const GRUPO: &str = "G-ELC102-E";
    let app = Arc::new(TestApp::spawn().await);
    execute(
        &app.db,
        "UPDATE grupo SET cupo = 30 WHERE codigo_grupo = $1",
        &[GRUPO],
    )
    .await;

    let requests = (0..200)
        .map(|i| (format!("EST{i:04}"), vec![GRUPO]))
        .collect();
    let (_, statuses) = enqueue_all(&app, requests).await;

    assert_all_jobs_completed(&statuses);
    let counts = tally(&statuses);
    assert_eq!(counts.get("SUCCESS"), Some(&30), "outcomes: {counts:?}");
    assert_eq!(
        counts.get("GRUPO_SIN_CUPO"),
        Some(&170),
        "outcomes: {counts:?}"
    );
    assert_eq!(counts.len(), 2, "unexpected outcomes: {counts:?}");
    assert_eq!(app.seats(GRUPO).await, 30, "seat counter of {GRUPO}");
    assert_eq!(
        detail_rows(&app.db, GRUPO).await,
        30,
        "detail rows of {GRUPO}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inscripcion").await,
        30,
        "a rejected request left an inscription behind"
    );
    assert_eq!(assert_codes_distinct(&statuses), (30, 30));
    assert_invariants(&app.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_request_leaves_nothing() {
    let app = Arc::new(TestApp::spawn().await);
    let fill = json!({
        "registro_academico": "RA0001",
        "codigo_periodo": PERIOD,
        "grupos": ["G-ELC108-E"],
    });
    let (status, body) = app.post("/api/v1/inscripciones/sync", &fill).await;
    assert_eq!(status, 201, "filling G-ELC108-E failed: {body}");

    // (student, groups in request order, error_code, group that caused the rejection)
    let cases: [(&str, Vec<&'static str>, &str, &str); 3] = [
        (
            "EST0700",
            vec!["G-ELC106-E", "G-ELC108-E"],
            "GRUPO_SIN_CUPO",
            "G-ELC108-E",
        ),
        (
            "EST0701",
            vec!["G-ELC102-E", "G-ELC110-E"],
            "CONFLICTO_HORARIO",
            "G-ELC102-E",
        ),
        (
            "EST0702",
            vec!["G1MAT207", "G2MAT207"],
            "GRUPO_DUPLICADO",
            "G2MAT207",
        ),
    ];
    let touched = [
        "G-ELC102-E",
        "G-ELC106-E",
        "G-ELC108-E",
        "G-ELC110-E",
        "G1MAT207",
        "G2MAT207",
    ];
    let mut seats_before = Vec::new();
    for grupo in touched {
        seats_before.push(app.seats(grupo).await);
    }

    let requests = cases
        .iter()
        .map(|(ra, grupos, _, _)| (ra.to_string(), grupos.clone()))
        .collect();
    let (queued, statuses) = enqueue_all(&app, requests).await;

    for ((ra, grupos, code, culprit), (queued, status)) in
        cases.iter().zip(queued.iter().zip(&statuses))
    {
        assert_eq!(
            status["status"], "SUCCESS",
            "{ra}: job did not complete: {status}"
        );
        assert_eq!(
            status["result"]["status"], "ERROR",
            "{ra}: request was not rejected: {status}"
        );
        assert_eq!(
            status["result"]["error_code"], *code,
            "{ra}: wrong error_code: {status}"
        );
        assert_eq!(
            status["result"]["grupo"], *culprit,
            "{ra}: wrong grupo: {status}"
        );

        let views = view_ids(queued);
        assert_eq!(views.len(), grupos.len(), "{ra}: one view per group");
        let view_statuses = app.wait_terminal(&views, WAIT).await;
        for (grupo, view) in grupos.iter().zip(&view_statuses) {
            assert_eq!(
                view["grupo"], *grupo,
                "{ra}: view of {grupo} names another group: {view}"
            );
            assert_eq!(
                view["result"]["status"], "ERROR",
                "{ra}: view of {grupo} is not ERROR: {view}"
            );
            assert_eq!(
                view["result"]["error_code"], *code,
                "{ra}: view of {grupo} has the wrong error_code: {view}"
            );
            assert_eq!(
                view["result"]["grupo"], *culprit,
                "{ra}: view of {grupo} does not name the group that caused the rejection: {view}"
            );
        }

        let inscripciones = student_groups(&app, ra).await;
        assert!(
            inscripciones.is_empty(),
            "{ra}: rejected request left an inscription: {inscripciones:?}"
        );
    }

    let conflict = &statuses[1]["result"]["details"];
    assert_eq!(
        conflict["grupo1"], "G-ELC102-E",
        "conflict details: {conflict}"
    );
    assert_eq!(
        conflict["grupo2"], "G-ELC110-E",
        "conflict details: {conflict}"
    );
    assert_eq!(
        conflict["dias_conflicto"],
        json!(["LUNES", "MIERCOLES"]),
        "conflict details: {conflict}"
    );
    assert_eq!(
        conflict["horas_conflicto"], "08:00:00-10:00:00 vs 09:00:00-11:00:00",
        "conflict details: {conflict}"
    );

    for (grupo, before) in touched.iter().zip(seats_before) {
        assert_eq!(
            app.seats(grupo).await,
            before,
            "seat counter of {grupo} changed"
        );
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM detalle_inscripcion").await,
        1,
        "only the filling enrollment may hold a detail"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inscripcion").await,
        1,
        "only the filling enrollment may hold an inscription"
    );
    assert_invariants(&app.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_request_from_20_clients() {
    const RA: &str = "EST0800";
    const GRUPOS: [&str; 2] = ["G-ELC102-E", "G-ELC106-E"];
    let app = Arc::new(TestApp::spawn().await);

    let requests = (0..20).map(|_| (RA.to_owned(), GRUPOS.to_vec())).collect();
    let (_, statuses) = enqueue_all(&app, requests).await;

    assert_all_jobs_completed(&statuses);
    let counts = tally(&statuses);
    assert_eq!(counts.get("SUCCESS"), Some(&20), "outcomes: {counts:?}");
    let codes: HashSet<&str> = statuses
        .iter()
        .map(|s| {
            s["result"]["data"]["codigo_inscripcion"]
                .as_str()
                .expect("codigo")
        })
        .collect();
    assert_eq!(
        codes.len(),
        1,
        "jobs report different inscriptions: {codes:?}"
    );
    let creators = statuses
        .iter()
        .filter(|s| s["result"]["data"]["grupos_ya_inscritos"] == json!([]))
        .count();
    assert_eq!(
        creators, 1,
        "exactly one job may add the groups; the rest find them held"
    );

    let inscripciones = student_groups(&app, RA).await;
    assert_eq!(
        inscripciones.len(),
        1,
        "{RA} has {} inscriptions: {inscripciones:?}",
        inscripciones.len()
    );
    assert_eq!(
        inscripciones[0].1, GRUPOS,
        "{RA} has other groups than requested"
    );
    for grupo in GRUPOS {
        assert_eq!(app.seats(grupo).await, 1, "seat counter of {grupo}");
        assert_eq!(
            detail_rows(&app.db, grupo).await,
            1,
            "detail rows of {grupo}"
        );
    }
    assert_invariants(&app.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_seat_ten_students() {
    const GRUPO: &str = "G-ELC108-E";
    let app = Arc::new(TestApp::spawn().await);

    let requests = (1..=10)
        .map(|i| (format!("RA{i:04}"), vec![GRUPO]))
        .collect();
    let (_, statuses) = enqueue_all(&app, requests).await;

    assert_all_jobs_completed(&statuses);
    let counts = tally(&statuses);
    assert_eq!(counts.get("SUCCESS"), Some(&1), "outcomes: {counts:?}");
    assert_eq!(
        counts.get("GRUPO_SIN_CUPO"),
        Some(&9),
        "outcomes: {counts:?}"
    );
    assert_eq!(app.seats(GRUPO).await, 1, "seat counter of {GRUPO}");
    assert_eq!(
        detail_rows(&app.db, GRUPO).await,
        1,
        "detail rows of {GRUPO}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inscripcion").await,
        1,
        "a rejected request left an inscription behind"
    );
    assert_invariants(&app.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversed_pairs_do_not_deadlock() {
    const A: &str = "G-ELC102-E";
    const B: &str = "G-ELC106-E";
    let app = Arc::new(TestApp::spawn().await);
    for grupo in [A, B] {
        set_cupo(&app.db, grupo, "100").await;
    }

    // 50 pairs: an even student requests [A, B], the next odd one requests [B, A].
    let requests = (0..100)
        .map(|i| {
            let grupos = if i % 2 == 0 { vec![A, B] } else { vec![B, A] };
            (format!("EST{:04}", 1000 + i), grupos)
        })
        .collect();
    let (_, statuses) = enqueue_all(&app, requests).await;

    assert_all_jobs_completed(&statuses);
    let counts = tally(&statuses);
    assert_eq!(counts.get("SUCCESS"), Some(&100), "outcomes: {counts:?}");
    for grupo in [A, B] {
        assert_eq!(app.seats(grupo).await, 100, "seat counter of {grupo}");
        assert_eq!(
            detail_rows(&app.db, grupo).await,
            100,
            "detail rows of {grupo}"
        );
    }
    let (inscripciones, detalles) = assert_codes_distinct(&statuses);
    assert_eq!(inscripciones, 100, "distinct inscription codes in results");
    assert_eq!(detalles, 200, "distinct detail codes in results");
    assert_invariants(&app.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_materia_one_group() {
    const GRUPOS: [&str; 3] = ["G1MAT207", "G2MAT207", "G3MAT207"];
    let app = Arc::new(TestApp::spawn().await);
    let students: Vec<String> = (0..10).map(|i| format!("EST{:04}", 1200 + i)).collect();

    // Each student sends one request per MAT207 group, all at once.
    let requests = students
        .iter()
        .flat_map(|ra| GRUPOS.iter().map(move |g| (ra.clone(), vec![*g])))
        .collect();
    let (_, statuses) = enqueue_all(&app, requests).await;

    assert_all_jobs_completed(&statuses);
    for (ra, mine) in students.iter().zip(statuses.chunks(GRUPOS.len())) {
        let counts = tally(mine);
        assert_eq!(counts.get("SUCCESS"), Some(&1), "{ra} outcomes: {counts:?}");
        assert_eq!(
            counts.get("GRUPO_DUPLICADO"),
            Some(&2),
            "{ra} outcomes: {counts:?}"
        );
        let inscripciones = student_groups(&app, ra).await;
        assert_eq!(
            inscripciones.len(),
            1,
            "{ra} inscriptions: {inscripciones:?}"
        );
        assert_eq!(
            inscripciones[0].1.len(),
            1,
            "{ra} has more than one MAT207 group: {inscripciones:?}"
        );
    }
    let mut seats = 0;
    for grupo in GRUPOS {
        seats += app.seats(grupo).await;
    }
    assert_eq!(seats, 10, "MAT207 seats taken by 10 students");
    assert_invariants(&app.db).await;
}

/// One step of the random mix.
#[derive(Debug, Clone)]
enum Op {
    Queue(String, Vec<&'static str>),
    Sync(String, Vec<&'static str>),
    /// Drops one of the groups the student holds when the step runs, chosen by index modulo
    /// their number.
    Drop(String, usize),
    Delete(String),
}

/// What a step of the random mix observed: the HTTP status and error code of its last
/// request, and the job it queued, if any.
#[derive(Debug)]
struct OpResult {
    op: Op,
    http: u16,
    error_code: Option<String>,
    task_id: Option<String>,
}

async fn run_op(app: Arc<TestApp>, op: Op) -> OpResult {
    let finish = |http: u16, body: &Value, task_id: Option<String>, op: Op| OpResult {
        op,
        http,
        error_code: body["error_code"].as_str().map(str::to_owned),
        task_id,
    };
    match &op {
        Op::Queue(ra, grupos) => {
            let queued = app.enqueue(ra, PERIOD, grupos).await;
            let id = main_task_id(&queued);
            finish(202, &queued, Some(id), op)
        }
        Op::Sync(ra, grupos) => {
            let body =
                json!({ "registro_academico": ra, "codigo_periodo": PERIOD, "grupos": grupos });
            let (http, response) = app.post("/api/v1/inscripciones/sync", &body).await;
            finish(http, &response, None, op)
        }
        Op::Drop(ra, pick) => {
            let Some((codigo, grupos)) = student_groups(&app, ra).await.pop() else {
                return finish(0, &Value::Null, None, op);
            };
            if grupos.is_empty() {
                return finish(0, &Value::Null, None, op);
            }
            let grupo = &grupos[pick % grupos.len()];
            let path = format!("/api/v1/inscripciones/{codigo}/grupos/{grupo}");
            let (http, response) = app.delete(&path).await;
            finish(http, &response, None, op)
        }
        Op::Delete(ra) => {
            let Some((codigo, _)) = student_groups(&app, ra).await.pop() else {
                return finish(0, &Value::Null, None, op);
            };
            let (http, response) = app.delete(&format!("/api/v1/inscripciones/{codigo}")).await;
            finish(http, &response, None, op)
        }
    }
}

/// Returns whether a step may see this HTTP status and error code when other steps race it.
/// Status 0 means the student had no group to drop or no inscription to delete, so the step
/// sent nothing.
fn allowed(op: &Op, http: u16, error_code: Option<&str>) -> bool {
    match op {
        Op::Queue(..) => http == 202,
        Op::Sync(..) => {
            http == 201
                || (http == 409
                    && matches!(
                        error_code,
                        // A repeat of a body still running holds its idempotency key.
                        Some("INSCRIPCION_DUPLICADA" | "GRUPO_SIN_CUPO" | "IDEMPOTENCY_IN_FLIGHT")
                    ))
        }
        Op::Drop(..) => {
            http == 0
                || http == 200
                || (http == 404 && error_code == Some("DETALLE_INSCRIPCION_NOT_FOUND"))
        }
        Op::Delete(..) => {
            http == 0 || http == 204 || (http == 404 && error_code == Some("INSCRIPCION_NOT_FOUND"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_mix_keeps_counters() {
    // Four groups of different materias with no schedule overlap, so only seats limit them.
    const GRUPOS: [(&str, i64); 4] = [
        ("G1FIS101", 4),
        ("G1QUI203", 4),
        ("G1INF110", 3),
        ("G1MAT101", 3),
    ];
    const SEED: u64 = 0x5EED_2024;
    const OPS: usize = 160;
    const IN_FLIGHT: usize = 16;

    let app = Arc::new(TestApp::spawn().await);
    for (grupo, cupo) in GRUPOS {
        set_cupo(&app.db, grupo, &cupo.to_string()).await;
    }

    let mut rng = StdRng::seed_from_u64(SEED);
    let students: Vec<String> = (0..12).map(|i| format!("EST{:04}", 1300 + i)).collect();
    let ops: Vec<Op> = (0..OPS)
        .map(|_| {
            let ra = students[rng.random_range(0..students.len())].clone();
            let first = rng.random_range(0..GRUPOS.len());
            let mut grupos = vec![GRUPOS[first].0];
            if rng.random_bool(0.4) {
                let second = (first + rng.random_range(1..GRUPOS.len())) % GRUPOS.len();
                grupos.push(GRUPOS[second].0);
            }
            match rng.random_range(0..20) {
                0..=6 => Op::Queue(ra, grupos),
                7..=10 => Op::Sync(ra, grupos),
                11..=16 => Op::Drop(ra, rng.random_range(0..GRUPOS.len())),
                _ => Op::Delete(ra),
            }
        })
        .collect();

    // A semaphore keeps a bounded number of steps in flight, so steps overlap each other and
    // the queued jobs for the whole run.
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let results = run_together(&app, ops, |app, op| {
        let permits = permits.clone();
        async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            run_op(app, op).await
        }
    })
    .await;

    for r in &results {
        assert!(
            allowed(&r.op, r.http, r.error_code.as_deref()),
            "{:?} got HTTP {} with error_code {:?}",
            r.op,
            r.http,
            r.error_code
        );
    }
    let ids: Vec<String> = results.iter().filter_map(|r| r.task_id.clone()).collect();
    let statuses = app.wait_terminal(&ids, WAIT).await;
    assert_all_jobs_completed(&statuses);
    for status in &statuses {
        let code = outcome(status);
        assert!(
            code == "SUCCESS" || code == "GRUPO_SIN_CUPO",
            "queued job {} ended with {code}: {status}",
            status["task_id"]
        );
    }

    for (grupo, cupo) in GRUPOS {
        let seats = app.seats(grupo).await;
        let rows = detail_rows(&app.db, grupo).await;
        assert_eq!(
            seats, rows,
            "seat counter of {grupo} differs from its detail rows"
        );
        assert!(
            seats <= cupo,
            "{grupo} holds {seats} students, over its cupo {cupo}"
        );
    }
    assert_invariants(&app.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_workers_keep_counters() {
    // Four groups of different materias; C and D have fewer seats than requests for them,
    // and some pairs clash in schedule, so batches mix successes and rejections.
    const A: &str = "G-ELC102-E";
    const B: &str = "G-ELC106-E";
    const C: &str = "G-ELC108-E";
    const D: &str = "G-ELC110-E";
    const CUPOS: [(&str, i64); 4] = [(A, 200), (B, 200), (C, 20), (D, 10)];
    let app = Arc::new(
        TestApp::spawn_with(|config| {
            config.worker_concurrency = 3;
            config.worker_batch_size = 8;
        })
        .await,
    );
    for (grupo, cupo) in CUPOS {
        set_cupo(&app.db, grupo, &cupo.to_string()).await;
    }

    // Three batches run at once and their requests overlap in every group, in both orders.
    let patterns: [&[&str]; 4] = [&[A, B], &[B, A, C], &[C, D], &[D, A]];
    let requests: Vec<(String, Vec<&'static str>)> = (0..160)
        .map(|i| (format!("EST{:04}", 1400 + i), patterns[i % 4].to_vec()))
        .collect();
    let (_, statuses) = enqueue_all(&app, requests.clone()).await;

    assert_all_jobs_completed(&statuses);
    let counts = tally(&statuses);
    let successes = counts.get("SUCCESS").copied().unwrap_or(0);
    let full = counts.get("GRUPO_SIN_CUPO").copied().unwrap_or(0);
    let clashes = counts.get("CONFLICTO_HORARIO").copied().unwrap_or(0);
    assert_eq!(
        successes + full + clashes,
        160,
        "unexpected outcomes: {counts:?}"
    );
    assert!(successes > 0, "no request succeeded: {counts:?}");
    assert!(full > 0, "no request met a full group: {counts:?}");
    for (grupo, cupo) in CUPOS {
        let seats = app.seats(grupo).await;
        assert_eq!(
            seats,
            detail_rows(&app.db, grupo).await,
            "seat counter of {grupo} differs from its detail rows"
        );
        assert!(seats <= cupo, "{grupo} holds {seats}, over its cupo {cupo}");
    }

    // Each student sent one request: a success holds exactly its groups, a rejection none.
    for ((ra, grupos), status) in requests.iter().zip(&statuses) {
        let held = student_groups(&app, ra).await;
        if outcome(status) == "SUCCESS" {
            assert_eq!(held.len(), 1, "{ra} inscriptions: {held:?}");
            let mut expected: Vec<String> = grupos.iter().map(|g| (*g).to_owned()).collect();
            let mut got = held[0].1.clone();
            expected.sort();
            got.sort();
            assert_eq!(got, expected, "groups held by {ra}");
        } else {
            assert!(held.is_empty(), "rejected {ra} holds {held:?}");
        }
    }
    let (inscripciones, _) = assert_codes_distinct(&statuses);
    assert_eq!(inscripciones, successes, "distinct inscription codes");
    assert_invariants(&app.db).await;
}
