//! Idle workers wake up when a job is queued instead of waiting for their next poll: through
//! an in-process signal when the API and the workers share a process, and through
//! PostgreSQL's LISTEN/NOTIFY when they do not.

mod common;

use std::time::Duration;

use common::{TestApp, fresh_db, test_config};

/// A poll interval far longer than any wait below, so only a wake-up can finish the job in time.
const SLOW_POLL_MS: u64 = 120_000;

#[tokio::test]
async fn same_process_enqueue_wakes_workers() {
    let app = TestApp::spawn_with(|c| c.worker_poll_interval_ms = SLOW_POLL_MS).await;
    // Let the pool finish its first claim and go idle.
    let (status, _) = app.get("/health").await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let job = app.enroll("EST0001", "2024-2", &["G-ELC102-E"]).await;
    assert_eq!(job["result"]["status"], "SUCCESS", "{job}");
}

#[tokio::test]
async fn other_process_enqueue_wakes_workers_on_postgres() {
    let db = fresh_db().await;
    if !db.is_postgres() {
        eprintln!("skipped: SQLite has no notification between processes; workers poll");
        return;
    }
    let mut config = test_config(&db);
    config.worker_poll_interval_ms = SLOW_POLL_MS;
    let workers = TestApp::start(db.clone(), config.clone(), true).await;
    let api = TestApp::start(db, config, false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let queued = api.enqueue("EST0002", "2024-2", &["G-ELC106-E"]).await;
    let main = queued["main_task_id"].as_str().expect("main").to_owned();
    let done = api.wait_terminal(&[main], Duration::from_secs(10)).await;
    assert_eq!(done[0]["result"]["status"], "SUCCESS", "{}", done[0]);
    drop(workers);
}
