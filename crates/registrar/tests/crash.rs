//! Worker crashes and shutdowns: a `registrar worker` process that holds a job is killed or
//! stopped, and the job must still complete exactly once.
//!
//! The worker is stalled on a database lock that the test holds, so it is mid-job when the
//! signal arrives. On PostgreSQL the test locks the group row before the job exists, so the
//! job's first enrollment blocks. On SQLite one writer locks the whole file, so the worker
//! could not even claim the job while the test held the lock. The job is therefore a bulk job
//! whose items each run in their own transaction, and the test takes the file's write lock
//! while the job runs.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::process::WorkerProcess;
use common::{TestApp, TestDb, assert_invariants, fresh_db, test_config};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};

const PERIOD: &str = "2024-2";
const STUDENT: &str = "EST0042";
const GRUPOS: [&str; 2] = ["G-ELC102-E", "G-ELC106-E"];
/// Number of items in the stalled bulk job on SQLite, where they keep the job running while the
/// test takes the write lock. Every item repeats one request, so only the first item writes an
/// enrollment and the others find the groups already enrolled.
const SQLITE_BULK_ITEMS: usize = 1_500;
/// Number of items on PostgreSQL, where the first item already blocks on the locked group row.
const POSTGRES_BULK_ITEMS: usize = 20;
const WAIT: Duration = Duration::from_secs(30);
/// Time a worker may take to start stopping after SIGTERM. It is half the workers' database
/// wait (`DATABASE_ACQUIRE_TIMEOUT`, also SQLite's busy timeout), so a worker that waits for
/// the locked database before it notices the signal fails the test.
const STOP_NOTICE: Duration = Duration::from_secs(5);

/// A transaction the test keeps open to stall the worker's enrollment.
enum HeldLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl HeldLock {
    /// Takes SQLite's write lock on the whole file. Writes from other connections wait until
    /// `release`, while reads go on.
    async fn sqlite_file(url: &str) -> Self {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("open");
        conn.execute("BEGIN IMMEDIATE")
            .await
            .expect("BEGIN IMMEDIATE");
        Self::Sqlite(conn)
    }

    /// Locks one group row, so an enrollment that locks the group waits until `release`.
    async fn postgres_group_row(url: &str, grupo: &str) -> Self {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("open");
        conn.execute("BEGIN").await.expect("BEGIN");
        sqlx::query("SELECT codigo_grupo FROM grupo WHERE codigo_grupo = $1 FOR UPDATE")
            .bind(grupo)
            .fetch_one(&mut conn)
            .await
            .expect("lock the group row");
        Self::Postgres(conn)
    }

    async fn release(self) {
        match self {
            Self::Sqlite(mut conn) => {
                conn.execute("ROLLBACK").await.expect("ROLLBACK");
            }
            Self::Postgres(mut conn) => {
                conn.execute("ROLLBACK").await.expect("ROLLBACK");
            }
        }
    }
}

async fn task_status(app: &TestApp, task_id: &str) -> Value {
    let (status, body) = app
        .get(&format!("/api/v1/queue/tasks/{task_id}/status"))
        .await;
    assert_eq!(status, 200, "status of {task_id} failed: {body}");
    body
}

fn bulk_items(db: &TestDb) -> usize {
    if db.is_postgres() {
        POSTGRES_BULK_ITEMS
    } else {
        SQLITE_BULK_ITEMS
    }
}

fn is_running(status: &Value) -> bool {
    matches!(status["status"].as_str(), Some("STARTED" | "PROGRESS"))
}

/// Queues the bulk job and returns once `worker` holds it, stalled on a lock the test holds.
async fn queue_stalled_job(app: &TestApp, worker: &WorkerProcess) -> (String, HeldLock) {
    let early_lock = match &app.db {
        TestDb::Postgres { url, .. } => Some(HeldLock::postgres_group_row(url, GRUPOS[0]).await),
        TestDb::Sqlite { .. } => None,
    };

    let item = json!({ "registro_academico": STUDENT, "codigo_periodo": PERIOD, "grupos": GRUPOS });
    let items = vec![item; bulk_items(&app.db)];
    let (status, queued) = app
        .post("/api/v1/queue/inscripciones/bulk-async", &json!(items))
        .await;
    assert_eq!(status, 202, "bulk enqueue failed: {queued}");
    let task_id = queued["task_id"].as_str().expect("task_id").to_owned();

    let deadline = Instant::now() + WAIT;
    loop {
        let status = task_status(app, &task_id).await;
        if is_running(&status) {
            break;
        }
        assert_eq!(
            status["status"],
            "PENDING",
            "job left PENDING for another state than STARTED: {status}\nlogs:\n{}",
            worker.logs()
        );
        assert!(
            Instant::now() < deadline,
            "worker did not claim the job within {WAIT:?}; logs:\n{}",
            worker.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let lock = match (early_lock, &app.db) {
        (Some(lock), _) => lock,
        (None, db) => HeldLock::sqlite_file(db.url()).await,
    };
    // From here on the job cannot commit another step, so it stays STARTED or PROGRESS.
    let status = task_status(app, &task_id).await;
    assert!(
        is_running(&status),
        "the job finished before the test held the lock, so nothing stalls it; \
         raise SQLITE_BULK_ITEMS: {status}"
    );
    (task_id, lock)
}

/// Polls until the only job's lease has expired. While the test holds SQLite's write lock, the
/// worker can renew no lease and finish no claim, and it tries to claim every 50 ms. So an
/// expired lease shows that the worker's claim loop is waiting on the lock as well.
async fn wait_lease_expired(url: &str, worker: &WorkerProcess) {
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("open");
    let deadline = Instant::now() + WAIT;
    loop {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as i64;
        let expired: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM job WHERE lease_expires_at < $1")
                .bind(now_ms)
                .fetch_one(&mut conn)
                .await
                .expect("read the job lease");
        if expired == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled job's lease did not expire within {WAIT:?}; logs:\n{}",
            worker.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that the job completed once: every item succeeded, and the student has one
/// inscription with one detail and one seat per group.
async fn assert_completed_once(app: &TestApp, task_id: &str) -> Value {
    let done = app.wait_terminal(&[task_id.to_owned()], WAIT).await;
    let status = &done[0];
    assert_eq!(
        status["status"], "SUCCESS",
        "job did not complete: {status}"
    );
    let result = &status["result"];
    let items = bulk_items(&app.db);
    assert_eq!(result["total"], items, "items in the result: {result}");
    assert_eq!(result["successful"], items, "successful items: {result}");
    assert_eq!(result["failed"], 0, "failed items: {result}");

    assert_eq!(
        app.count("SELECT COUNT(*) FROM inscripcion").await,
        1,
        "the student must have exactly one inscription"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM detalle_inscripcion").await,
        GRUPOS.len() as i64,
        "one detail per requested group"
    );
    for grupo in GRUPOS {
        assert_eq!(app.seats(grupo).await, 1, "seat counter of {grupo}");
    }
    status.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_job_runs_again_once() {
    let db = fresh_db().await;
    let app = TestApp::start(db.clone(), test_config(&db), false).await;
    let mut first = WorkerProcess::spawn(&app.db, &[]);
    let (task_id, lock) = queue_stalled_job(&app, &first).await;

    first.kill();
    lock.release().await;
    let status = task_status(&app, &task_id).await;
    assert!(
        is_running(&status),
        "the killed worker's job must stay leased until the lease expires: {status}"
    );

    let second = WorkerProcess::spawn(&app.db, &[]);
    let status = assert_completed_once(&app, &task_id).await;
    let attempts = status["attempts"].as_i64().expect("attempts");
    assert!(
        attempts >= 2,
        "the job must have been claimed again after the kill, but attempts is {attempts}; \
         logs:\n{}",
        second.logs()
    );
    assert_invariants(&app.db).await;
}

/// Stops a worker that holds a stalled job with SIGTERM and `grace_seconds` of grace, then
/// checks that the job is finished or back in the queue, and that it completes exactly once.
async fn check_sigterm(grace_seconds: &str) {
    let db = fresh_db().await;
    let app = TestApp::start(db.clone(), test_config(&db), false).await;
    let mut worker = WorkerProcess::spawn(&app.db, &[("SHUTDOWN_GRACE_SECONDS", grace_seconds)]);
    let (task_id, lock) = queue_stalled_job(&app, &worker).await;
    // PostgreSQL claims do not touch the locked group row, so only SQLite needs this wait.
    if let TestDb::Sqlite { url, .. } = &app.db {
        wait_lease_expired(url, &worker).await;
    }

    worker.terminate();
    // The worker must notice the signal even while its claims wait on the locked database.
    worker.wait_log("worker pool stopping", STOP_NOTICE).await;
    lock.release().await;
    let exit = worker.wait_exit(WAIT).await;
    assert!(
        exit.success(),
        "worker exited with {exit}; logs:\n{}",
        worker.logs()
    );

    let status = task_status(&app, &task_id).await;
    let state = status["status"].as_str().unwrap_or("none");
    // PENDING means the worker released the job, and RETRY that a step failed on the lock
    // and the job was queued again with a delay. Both are back in the queue.
    assert!(
        matches!(state, "PENDING" | "RETRY" | "SUCCESS"),
        "a stopped worker left its job in {state}, but it must finish the job or return it \
         to the queue: {status}\nlogs:\n{}",
        worker.logs()
    );

    let _next = (state != "SUCCESS").then(|| WorkerProcess::spawn(&app.db, &[]));
    assert_completed_once(&app, &task_id).await;
    assert_invariants(&app.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_job_within_grace() {
    check_sigterm("10").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_returns_job_after_grace() {
    check_sigterm("0").await;
}
