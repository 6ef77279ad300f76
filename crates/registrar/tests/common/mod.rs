//! Test harness: a fresh database per test, loaded with the demo catalog, and the real HTTP
//! server on a random port with its worker pool.
//!
//! The backend follows `TEST_DATABASE_URL`: unset (or `sqlite:`), each test gets its own
//! SQLite file; a `postgres://` URL names a server on which each test gets its own database,
//! copied from a template that is seeded once per test binary.

#![allow(dead_code)]

pub mod participant;
pub mod process;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use registrar::config::Config;
use registrar::http::{self, AppState};
use registrar::store::Store;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

/// Where a test's database lives.
#[derive(Debug, Clone)]
pub enum TestDb {
    Sqlite {
        url: String,
        path: PathBuf,
    },
    Postgres {
        url: String,
        admin_url: String,
        name: String,
    },
}

impl TestDb {
    pub fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } | Self::Postgres { url, .. } => url,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }
}

fn postgres_base_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
}

/// Replaces the database name at the end of a PostgreSQL URL.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let cut = base.rfind('/').expect("postgres URL has a path");
    format!("{}/{name}{query}", &base[..cut])
}

fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Returns this test binary's scratch folder. The name carries a random suffix besides the
/// process id, because folders of earlier runs stay behind and process ids are reused.
fn scratch_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let name = format!("registrar-tests-{}-{}", std::process::id(), unique_suffix());
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
    .clone()
}

/// Runs `f` on a fresh single-threaded runtime in another thread, for one-time set-up that
/// must not be tied to any test's runtime.
fn run_detached<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
    .join()
    .expect("set-up thread")
}

fn base_config(url: &str) -> Config {
    Config {
        database_url: url.to_owned(),
        log_level: "warn".to_owned(),
        ..Config::default()
    }
}

/// The seeded template, created once per test binary: a SQLite file or a PostgreSQL
/// database name.
fn template() -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        run_detached(|| {
            Box::pin(async {
                match postgres_base_url() {
                    Some(base) => {
                        let name = format!("registrar_tpl_{}", unique_suffix());
                        create_pg_database(&base, &name, None).await;
                        let config = base_config(&with_database(&base, &name));
                        let store = registrar::app::connect_store(&config)
                            .await
                            .expect("connect");
                        registrar::app::seed_demo(store.as_ref())
                            .await
                            .expect("seed");
                        drop(store);
                        name
                    }
                    None => {
                        let dir = scratch_dir();
                        let work = dir.join("template-work.db");
                        let golden = dir.join("template.db");
                        let url = format!("sqlite://{}", work.display());
                        let config = base_config(&url);
                        let store = registrar::app::connect_store(&config)
                            .await
                            .expect("connect");
                        registrar::app::seed_demo(store.as_ref())
                            .await
                            .expect("seed");
                        drop(store);
                        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open");
                        let into = format!("VACUUM INTO '{}'", golden.display());
                        sqlx::query(sqlx::AssertSqlSafe(into))
                            .execute(&mut conn)
                            .await
                            .expect("vacuum into");
                        golden.display().to_string()
                    }
                }
            })
        })
    })
}

async fn create_pg_database(base: &str, name: &str, template: Option<&str>) {
    let admin = with_database(base, "postgres");
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("admin connection");
    let sql = match template {
        Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
        None => format!("CREATE DATABASE {name}"),
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .expect("create database");
}

/// Creates a fresh copy of the seeded template.
pub async fn fresh_db() -> TestDb {
    let template = template().to_owned();
    match postgres_base_url() {
        Some(base) => {
            let name = format!("registrar_t_{}", unique_suffix());
            create_pg_database(&base, &name, Some(&template)).await;
            TestDb::Postgres {
                url: with_database(&base, &name),
                admin_url: with_database(&base, "postgres"),
                name,
            }
        }
        None => {
            let path = scratch_dir().join(format!("test-{}.db", unique_suffix()));
            std::fs::copy(&template, &path).expect("copy template");
            TestDb::Sqlite {
                url: format!("sqlite://{}", path.display()),
                path,
            }
        }
    }
}

/// Builds a configuration for tests: short poll interval, lease and retry delays.
pub fn test_config(db: &TestDb) -> Config {
    Config {
        worker_poll_interval_ms: 50,
        job_lease_seconds: 2,
        task_retry_delay: 0.05,
        task_retry_backoff_max: 0.5,
        shutdown_grace_seconds: 5,
        redis_url: std::env::var("TEST_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty()),
        // Tests share one Redis: each keeps its keys apart.
        redis_key_prefix: format!("test-{}:", uuid::Uuid::new_v4().simple()),
        ..base_config(db.url())
    }
}

/// A running server with its own database.
pub struct TestApp {
    pub base: String,
    pub breakers: registrar::resilience::breaker::Breakers,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub db: TestDb,
    pub config: Config,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the app after `tune` adjusts the configuration.
    pub async fn spawn_with(tune: impl FnOnce(&mut Config)) -> Self {
        let db = fresh_db().await;
        let mut config = test_config(&db);
        tune(&mut config);
        Self::start(db, config, true).await
    }

    /// Starts a server on an existing database, with or without in-process workers.
    pub async fn start(db: TestDb, config: Config, with_workers: bool) -> Self {
        let store = registrar::app::connect_store(&config)
            .await
            .expect("connect store");
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let redis = registrar::app::connect_redis(&config).expect("redis client");
        let breakers = registrar::app::build_breakers(&config, redis.clone(), Some(store.clone()))
            .expect("circuit breakers");
        let workers = if with_workers {
            let (workers, handle) = registrar::app::start_workers(
                store.clone(),
                &config,
                breakers.clone(),
                shutdown.clone(),
            );
            tasks.push(handle);
            Some(workers)
        } else {
            None
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let state = AppState::new(
            store.clone(),
            Arc::new(config.clone()),
            workers,
            breakers.clone(),
        )
        .with_redis(redis);
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            http::serve(
                listener,
                http::app(state),
                async move { stop.cancelled().await },
                Duration::from_secs(5),
            )
            .await
            .expect("serve");
        }));
        Self {
            base,
            breakers,
            client: reqwest::Client::new(),
            store,
            db,
            config,
            shutdown,
            tasks,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        read(response).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST");
        read(response).await
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        read(response).await
    }

    /// Posts `body` with extra headers; returns the status, the response headers and the
    /// body bytes as text.
    pub async fn post_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut request = self.client.post(self.url(path)).json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("POST");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        (status, headers, text)
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE");
        read(response).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .expect("PUT");
        read(response).await
    }

    /// Queues one atomic request through async-by-groups; returns the 202 body. Each call
    /// is a new request with its own `Idempotency-Key`, as separate clients send them.
    pub async fn enqueue(&self, ra: &str, periodo: &str, grupos: &[&str]) -> Value {
        let body = json!({ "registro_academico": ra, "codigo_periodo": periodo, "grupos": grupos });
        let response = self
            .client
            .post(self.url("/api/v1/queue/inscripciones/async-by-groups"))
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await
            .expect("POST");
        let (status, response) = read(response).await;
        assert_eq!(status, 202, "enqueue failed: {response}");
        response
    }

    /// Polls the batch status endpoint until every id is terminal or `timeout` passes.
    pub async fn wait_terminal(&self, ids: &[String], timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(400) {
                let (status, body) = self
                    .post("/api/v1/queue/tasks/status/multiple", &json!(chunk))
                    .await;
                assert_eq!(status, 200, "status/multiple failed: {body}");
                all.extend(body.as_array().expect("array").iter().cloned());
            }
            let done = all.iter().all(|s| {
                matches!(
                    s["status"].as_str(),
                    Some("SUCCESS" | "FAILURE" | "REVOKED")
                )
            });
            if done {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "jobs not terminal within {timeout:?}: {:?}",
                all.iter().map(|s| &s["status"]).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Enqueues and waits; returns the request-level job's status object.
    pub async fn enroll(&self, ra: &str, periodo: &str, grupos: &[&str]) -> Value {
        let response = self.enqueue(ra, periodo, grupos).await;
        let main = response["main_task_id"]
            .as_str()
            .expect("main_task_id")
            .to_owned();
        let mut done = self.wait_terminal(&[main], Duration::from_secs(30)).await;
        done.remove(0)
    }

    /// Runs one scalar SQL query that returns a count.
    pub async fn count(&self, sql: &'static str) -> i64 {
        scalar(&self.db, sql).await
    }

    pub async fn seats(&self, grupo: &str) -> i64 {
        scalar_bind(
            &self.db,
            "SELECT inscritos_actuales FROM grupo WHERE codigo_grupo = $1",
            grupo,
        )
        .await
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        drop_database(&self.db);
    }
}

/// Removes a test's database. Best effort: a failure leaves a database behind, which the CI
/// script clears before the next run.
pub fn drop_database(db: &TestDb) {
    match db.clone() {
        TestDb::Sqlite { path, .. } => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        TestDb::Postgres {
            admin_url, name, ..
        } => {
            run_detached(move || {
                Box::pin(async move {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                            .execute(&mut conn)
                            .await;
                    }
                })
            });
        }
    }
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

pub async fn scalar(db: &TestDb, sql: &'static str) -> i64 {
    match db {
        TestDb::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("open");
            sqlx::query_scalar(sql)
                .fetch_one(&mut conn)
                .await
                .expect(sql)
        }
        TestDb::Postgres { url, .. } => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("open");
            sqlx::query_scalar(sql)
                .fetch_one(&mut conn)
                .await
                .expect(sql)
        }
    }
}

pub async fn scalar_bind(db: &TestDb, sql: &'static str, arg: &str) -> i64 {
    match db {
        TestDb::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("open");
            sqlx::query_scalar(sql)
                .bind(arg)
                .fetch_one(&mut conn)
                .await
                .expect(sql)
        }
        TestDb::Postgres { url, .. } => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("open");
            let value: i32 = sqlx::query_scalar(sql)
                .bind(arg)
                .fetch_one(&mut conn)
                .await
                .expect(sql);
            i64::from(value)
        }
    }
}

/// Runs a statement that changes fixture data (for example, shrinking a group's `cupo`).
pub async fn execute(db: &TestDb, sql: &'static str, args: &[&str]) {
    match db {
        TestDb::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("open");
            let mut q = sqlx::query(sql);
            for a in args {
                q = q.bind(a.to_string());
            }
            q.execute(&mut conn).await.expect(sql);
        }
        TestDb::Postgres { url, .. } => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("open");
            let mut q = sqlx::query(sql);
            for a in args {
                q = q.bind(a.to_string());
            }
            q.execute(&mut conn).await.expect(sql);
        }
    }
}

/// The invariants that must hold after any load or concurrency test. Each query counts
/// violations; the assertion message names the rule.
pub const INVARIANTS: &[(&str, &str)] = &[
    (
        "one inscription per (student, period)",
        "SELECT COUNT(*) FROM (SELECT registro_academico, codigo_periodo FROM inscripcion \
         GROUP BY registro_academico, codigo_periodo HAVING COUNT(*) > 1) x",
    ),
    (
        "one detail per (inscription, group)",
        "SELECT COUNT(*) FROM (SELECT codigo_inscripcion, codigo_grupo FROM detalle_inscripcion \
         GROUP BY codigo_inscripcion, codigo_grupo HAVING COUNT(*) > 1) x",
    ),
    (
        "one group per materia within an inscription",
        "SELECT COUNT(*) FROM (SELECT d.codigo_inscripcion, g.sigla_materia \
         FROM detalle_inscripcion d JOIN grupo g ON g.codigo_grupo = d.codigo_grupo \
         GROUP BY d.codigo_inscripcion, g.sigla_materia HAVING COUNT(*) > 1) x",
    ),
    (
        "seat counter equals detail rows and stays within 0..=cupo",
        "SELECT COUNT(*) FROM grupo g WHERE g.inscritos_actuales < 0 \
         OR g.inscritos_actuales > g.cupo OR g.inscritos_actuales <> \
         (SELECT COUNT(*) FROM detalle_inscripcion d WHERE d.codigo_grupo = g.codigo_grupo)",
    ),
    (
        "every job terminal",
        "SELECT COUNT(*) FROM job WHERE state NOT IN ('SUCCESS', 'FAILURE', 'REVOKED')",
    ),
];

/// Asserts every invariant, including that no student has two overlapping groups.
pub async fn assert_invariants(db: &TestDb) {
    for (rule, sql) in INVARIANTS {
        let violations = scalar(db, sql).await;
        assert_eq!(violations, 0, "invariant broken: {rule}");
    }
    assert_no_schedule_overlap(db).await;
}

/// Checks pairwise overlaps of each student's groups in ACTIVO periods, with the same rule
/// as the service: a shared day and overlapping half-open time ranges.
async fn assert_no_schedule_overlap(db: &TestDb) {
    let base = "SELECT i.registro_academico, g.codigo_grupo, {days}, h.hora_inicio, h.hora_fin \
         FROM inscripcion i JOIN periodo_academico p ON p.codigo_periodo = i.codigo_periodo \
         JOIN detalle_inscripcion d ON d.codigo_inscripcion = i.codigo_inscripcion \
         JOIN grupo g ON g.codigo_grupo = d.codigo_grupo \
         JOIN horario h ON h.codigo_horario = g.codigo_horario \
         WHERE p.estado = 'ACTIVO' ORDER BY i.registro_academico";
    type Row = (String, String, String, String, String);
    let rows: Vec<Row> = match db {
        TestDb::Sqlite { url, .. } => {
            let sql = base.replace("{days}", "h.dias_semana");
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("open");
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut conn)
                .await
                .expect("overlap query")
        }
        TestDb::Postgres { url, .. } => {
            let sql = base
                .replace("{days}", "array_to_json(h.dias_semana)::text")
                .replace(
                    "h.hora_inicio, h.hora_fin",
                    "h.hora_inicio::text, h.hora_fin::text",
                );
            let mut conn = sqlx::PgConnection::connect(url).await.expect("open");
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut conn)
                .await
                .expect("overlap query")
        }
    };
    for (i, a) in rows.iter().enumerate() {
        for b in rows[i + 1..].iter().take_while(|b| b.0 == a.0) {
            let days_a: Vec<String> = serde_json::from_str(&a.2).expect("days");
            let days_b: Vec<String> = serde_json::from_str(&b.2).expect("days");
            let shared = days_a.iter().any(|d| days_b.contains(d));
            let overlap = a.3 < b.4 && b.3 < a.4;
            assert!(
                !(shared && overlap),
                "invariant broken: student {} holds overlapping groups {} and {}",
                a.0,
                a.1,
                b.1
            );
        }
    }
}
