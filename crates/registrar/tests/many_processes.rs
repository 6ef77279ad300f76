//! Two `serve` and two `worker` processes on one database take 2,000 enrollment requests,
//! some racing for scarce seats and some repeating a student, while one worker is killed
//! with SIGKILL halfway. Afterwards every job is terminal and every invariant holds.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestDb, assert_invariants, execute, fresh_db, scalar};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

const REQUESTS: usize = 2_000;

/// Kills the child processes it holds when dropped, so a failing test leaves none behind.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn registrar(db: &TestDb, args: &[&str]) -> Child {
    // One prefix per database (its name ends the URL): the processes of this test share
    // Redis keys with each other and with no other test.
    let prefix = format!("test-{}:", db.url().rsplit('/').next().unwrap_or("db"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_registrar"));
    command
        .args(args)
        .env("DATABASE_URL", db.url())
        .env("WORKER_CONCURRENCY", "4")
        .env("JOB_LEASE_SECONDS", "2")
        .env("WORKER_POLL_INTERVAL_MS", "200")
        .env("TASK_RETRY_DELAY", "0.05")
        .env("TASK_RETRY_BACKOFF_MAX", "0.5")
        .env("LOG_LEVEL", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Ok(redis) = std::env::var("TEST_REDIS_URL") {
        command
            .env("REDIS_URL", redis)
            .env("REDIS_KEY_PREFIX", prefix);
    }
    command.spawn().expect("start registrar")
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let healthy = client
            .get(format!("{base}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if healthy {
            return;
        }
        assert!(Instant::now() < deadline, "{base} did not become healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Builds request `i`: most ask for two open groups, every tenth adds a group with few seats,
/// and every twentieth repeats an earlier student.
fn request(i: usize) -> Value {
    let student = if i % 20 == 19 { i - 7 } else { i };
    let mut grupos = vec!["G-ELC102-E", "G-ELC106-E"];
    match i % 10 {
        3 => grupos.push("G-ELC108-E"),
        6 => grupos.push("G1QUI203"),
        8 => grupos = vec!["G1INF110"],
        _ => {}
    }
    json!({
        "registro_academico": format!("EST{student:04}"),
        "codigo_periodo": "2024-2",
        "grupos": grupos,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_processes_keep_invariants() {
    let db = fresh_db().await;
    execute(
        &db,
        "UPDATE grupo SET cupo = 5000 WHERE codigo_grupo IN ($1, $2)",
        &["G-ELC102-E", "G-ELC106-E"],
    )
    .await;
    execute(
        &db,
        "UPDATE grupo SET cupo = 5 WHERE codigo_grupo = $1",
        &["G1QUI203"],
    )
    .await;
    execute(
        &db,
        "UPDATE grupo SET cupo = 7 WHERE codigo_grupo = $1",
        &["G1INF110"],
    )
    .await;

    let ports = [free_port(), free_port()];
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let mut processes = Processes(Vec::new());
    for port in ports {
        let bind = format!("127.0.0.1:{port}");
        processes
            .0
            .push(registrar(&db, &["serve", "--bind", &bind]));
    }
    processes.0.push(registrar(&db, &["worker"]));
    processes.0.push(registrar(&db, &["worker"]));
    let client = reqwest::Client::new();
    for base in &bases {
        wait_healthy(&client, base).await;
    }

    let gate = Arc::new(Semaphore::new(32));
    let mut handles = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        if i == REQUESTS / 2 {
            // SIGKILL one worker process while jobs are in flight.
            let worker = &mut processes.0[2];
            worker.kill().expect("kill worker");
            worker.wait().expect("reap worker");
        }
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let url = format!(
            "{}/api/v1/queue/inscripciones/async-by-groups",
            bases[i % 2]
        );
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            // Repeated students are separate requests, each with its own key.
            let response = client
                .post(url)
                .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                .json(&request(i))
                .send()
                .await
                .expect("POST");
            drop(permit);
            assert_eq!(response.status().as_u16(), 202, "request {i}");
            let body: Value = response.json().await.expect("json");
            body["main_task_id"]
                .as_str()
                .expect("main_task_id")
                .to_owned()
        }));
    }
    let mut ids = Vec::with_capacity(REQUESTS);
    for handle in handles {
        ids.push(handle.await.expect("request task"));
    }

    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let unfinished = scalar(
            &db,
            "SELECT COUNT(*) FROM job WHERE state NOT IN ('SUCCESS', 'FAILURE', 'REVOKED')",
        )
        .await;
        if unfinished == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unfinished} jobs still unfinished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM job").await,
        REQUESTS as i64,
        "one job per request"
    );
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM job WHERE state = 'FAILURE'").await,
        0,
        "no job failed"
    );
    // The students whose request succeeded are exactly the students with an inscription.
    let mut enrolled = std::collections::HashSet::new();
    for (chunk_index, chunk) in ids.chunks(400).enumerate() {
        let response = client
            .post(format!(
                "{}/api/v1/queue/tasks/status/multiple",
                bases[chunk_index % 2]
            ))
            .json(&chunk)
            .send()
            .await
            .expect("POST");
        let statuses: Vec<Value> = response.json().await.expect("json");
        for (offset, status) in statuses.iter().enumerate() {
            assert_eq!(status["status"], "SUCCESS", "{status}");
            let i = chunk_index * 400 + offset;
            if status["result"]["status"] == "SUCCESS" {
                let student = request(i)["registro_academico"]
                    .as_str()
                    .expect("ra")
                    .to_owned();
                enrolled.insert(student);
            }
        }
    }
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM inscripcion").await,
        enrolled.len() as i64,
        "one inscription per successful student, repeats merged"
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT CAST(inscritos_actuales AS BIGINT) FROM grupo WHERE codigo_grupo = 'G1QUI203'"
        )
        .await,
        5
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT CAST(inscritos_actuales AS BIGINT) FROM grupo WHERE codigo_grupo = 'G1INF110'"
        )
        .await,
        7
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT CAST(inscritos_actuales AS BIGINT) FROM grupo WHERE codigo_grupo = 'G-ELC108-E'"
        )
        .await,
        1
    );
    assert_invariants(&db).await;

    drop(processes);
    common::drop_database(&db);
}
