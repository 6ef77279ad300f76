//! Log output of the real binary: JSON lines carrying the request's ids on every line the
//! request causes, in the API and in the job that runs it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A `registrar serve` child process whose stdout lines are collected as they arrive.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
}

impl Server {
    fn start(database_url: &str) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_registrar"));
        command
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("DATABASE_URL", database_url)
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info,registrar=debug")
            .env("WORKER_POLL_INTERVAL_MS", "50")
            .env_remove("REDIS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Ok(redis) = std::env::var("TEST_REDIS_URL") {
            command.env("REDIS_URL", redis);
        }
        let mut child = command.spawn().expect("start registrar serve");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one matches `predicate`; panics after 30 s. Every line must be JSON.
    fn wait_for(&mut self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        if let Some(found) = self.seen.iter().find(|l| predicate(l)) {
            return found.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line {what} within 30 s"));
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            self.seen.push(value.clone());
            if predicate(&value) {
                return value;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn request_ids_reach_api_and_job_lines() {
    let db = common::fresh_db().await;
    let mut server = Server::start(db.url());
    let listening = server.wait_for("listening", |l| l["message"] == "listening");
    let address = listening["address"].as_str().expect("address").to_owned();

    let client = reqwest::Client::new();
    let body = json!({ "registro_academico": "EST0042", "codigo_periodo": "2024-2", "grupos": ["G-ELC102-E"] });
    let response = client
        .post(format!(
            "http://{address}/api/v1/queue/inscripciones/async-by-groups"
        ))
        .header("x-correlation-id", "corr-log-trace")
        .header("x-request-id", "req-log-trace")
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-request-id"], "req-log-trace");
    assert_eq!(response.headers()["x-correlation-id"], "corr-log-trace");

    let ours = |l: &Value| l["correlation_id"] == "corr-log-trace";
    let started = server.wait_for("request started", |l| {
        ours(l) && l["message"] == "request started"
    });
    assert_eq!(started["level"], "DEBUG");
    let completed = server.wait_for("request completed", |l| {
        ours(l) && l["message"] == "request completed"
    });
    assert_eq!(completed["level"], "INFO");
    assert_eq!(completed["request_id"], "req-log-trace");
    assert_eq!(
        completed["route"],
        "/api/v1/queue/inscripciones/async-by-groups"
    );
    assert_eq!(completed["status"], 202);
    assert!(completed["duration_ms"].is_number(), "{completed}");
    assert_eq!(completed["method"], "POST");
    assert_eq!(completed["logger"], "registrar::http::middleware");
    let timestamp = completed["timestamp"].as_str().expect("timestamp");
    assert!(timestamp.ends_with('Z'), "{timestamp}");
    time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 timestamp");

    let committed = server.wait_for("enrollment committed", |l| {
        ours(l) && l["message"] == "enrollment committed"
    });
    assert_eq!(committed["request_id"], "req-log-trace");
    assert_eq!(committed["logger"], "registrar::jobs::worker");
    assert!(committed["task_id"].is_string(), "{committed}");
    let finished = server.wait_for("job finished", |l| {
        ours(l) && l["message"] == "job finished"
    });
    assert_eq!(finished["request_id"], "req-log-trace");

    let audit = server.wait_for("audit INSCRIPTION_CREATED", |l| {
        ours(l) && l["audit"] == true && l["event_type"] == "INSCRIPTION_CREATED"
    });
    assert_eq!(audit["request_id"], "req-log-trace");
    assert_eq!(audit["registro_academico"], "EST0042");

    drop(server);
    common::drop_database(&db);
}

#[test]
fn text_format_is_not_json() {
    let dir = std::env::temp_dir().join(format!("registrar-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create dir");
    let output = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("migrate")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("text.db").display()),
        )
        .env("LOG_FORMAT", "text")
        .env("LOG_LEVEL", "info")
        .output()
        .expect("run registrar migrate");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("migrations applied"), "{stdout}");
    assert!(!stdout.trim_start().starts_with('{'), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_log_level_names_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("migrate")
        .env("LOG_LEVEL", "registrar=loud")
        .output()
        .expect("run registrar migrate");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("LOG_LEVEL"), "{stderr}");
}

#[test]
fn database_password_is_never_logged() {
    // Nothing listens on port 1, so the connection fails after the one-second timeout.
    let output = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("migrate")
        .env(
            "DATABASE_URL",
            "postgres://registrar:s3cret-pw@127.0.0.1:1/registrar",
        )
        .env("DATABASE_ACQUIRE_TIMEOUT", "1")
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "debug")
        .output()
        .expect("run registrar migrate");
    assert!(
        !output.status.success(),
        "migrate cannot succeed without a server"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stdout.contains("s3cret-pw"), "{stdout}");
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    assert!(
        stdout.contains("postgres://registrar:***@127.0.0.1:1/registrar"),
        "{stdout}"
    );
}
