//! Transient store errors put a job in RETRY with a backoff; the job then completes once the
//! cause is gone. On PostgreSQL a row lock held by the test, longer than the statement
//! timeout, makes the worker's enrollment fail with a cancelled statement.

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use sqlx::Connection;

#[tokio::test]
async fn locked_group_is_retried_then_enrolled() {
    let app = TestApp::spawn_with(|c| {
        c.database_statement_timeout_ms = 300;
        c.task_retry_delay = 0.2;
        c.task_retry_backoff_max = 0.4;
    })
    .await;
    let common::TestDb::Postgres { url, .. } = &app.db else {
        eprintln!("skipped: SQLite waits on its busy timeout instead of cancelling a statement");
        return;
    };

    let mut holder = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query("SELECT 1 FROM grupo WHERE codigo_grupo = 'G1FIS101' FOR UPDATE")
        .execute(&mut holder)
        .await
        .expect("lock the group row");

    let queued = app.enqueue("EST0042", "2024-2", &["G1FIS101"]).await;
    let main = queued["main_task_id"].as_str().expect("main").to_owned();
    let path = format!("/api/v1/queue/tasks/{main}/status");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, status) = app.get(&path).await;
        if status["status"] == "RETRY" {
            assert_eq!(status["meta"]["error_type"], "TransientError", "{status}");
            break;
        }
        assert_ne!(
            status["status"], "SUCCESS",
            "the job must not finish while the row is locked"
        );
        assert!(
            Instant::now() < deadline,
            "job never went to RETRY: {status}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    sqlx::query("COMMIT")
        .execute(&mut holder)
        .await
        .expect("release the lock");
    let done = app.wait_terminal(&[main], Duration::from_secs(20)).await;
    assert_eq!(done[0]["status"], "SUCCESS");
    assert_eq!(done[0]["result"]["status"], "SUCCESS", "{}", done[0]);
    assert!(
        done[0]["attempts"].as_i64().is_some_and(|n| n >= 2),
        "{}",
        done[0]
    );
    assert_eq!(app.seats("G1FIS101").await, 1);
    common::assert_invariants(&app.db).await;
}

#[tokio::test]
async fn retries_give_up_as_failure() {
    let app = TestApp::spawn_with(|c| {
        c.database_statement_timeout_ms = 200;
        c.task_retry_delay = 0.05;
        c.task_retry_backoff_max = 0.1;
        c.task_max_retries = 2;
    })
    .await;
    let common::TestDb::Postgres { url, .. } = &app.db else {
        eprintln!("skipped: SQLite waits on its busy timeout instead of cancelling a statement");
        return;
    };

    let mut holder = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query("SELECT 1 FROM grupo WHERE codigo_grupo = 'G2FIS101' FOR UPDATE")
        .execute(&mut holder)
        .await
        .expect("lock the group row");

    let job = app.enroll("EST0043", "2024-2", &["G2FIS101"]).await;
    assert_eq!(job["status"], "FAILURE", "{job}");
    assert_eq!(job["meta"]["error_type"], "MaxRetriesExceeded", "{job}");
    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("release");
    assert_eq!(app.seats("G2FIS101").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM inscripcion").await, 0);
}
