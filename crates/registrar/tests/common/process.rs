//! A `registrar worker` child process for tests that kill or stop one.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::TestDb;

/// A `registrar worker` child process with its log lines collected.
pub struct WorkerProcess {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl WorkerProcess {
    /// Starts a worker on the test's database with a 2 s lease, a 50 ms poll interval and a
    /// 10 s database wait.
    /// `extra` adds or overrides environment variables.
    pub fn spawn(db: &TestDb, extra: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_registrar"));
        command
            .arg("worker")
            .env_clear()
            .env("DATABASE_URL", db.url())
            .env("JOB_LEASE_SECONDS", "2")
            .env("WORKER_POLL_INTERVAL_MS", "50")
            .env("DATABASE_ACQUIRE_TIMEOUT", "10")
            .env("TASK_RETRY_DELAY", "0.05")
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in extra {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start the registrar worker process");
        let logs = Arc::new(Mutex::new(Vec::new()));
        collect_lines(child.stdout.take().expect("stdout piped"), logs.clone());
        collect_lines(child.stderr.take().expect("stderr piped"), logs.clone());
        Self { child, logs }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the worker");
        self.child.wait().expect("reap the worker");
    }

    /// Sends SIGTERM, the signal a service manager sends to stop a process.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(
            status.success(),
            "kill -TERM {} failed: {status}",
            self.pid()
        );
    }

    /// Polls until the process exits, and panics with its logs after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the worker") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker {} did not exit within {timeout:?}; logs:\n{}",
                self.pid(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until a log line contains `text`, and panics with the logs after `timeout`.
    pub async fn wait_log(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.logs().contains(text) {
            assert!(
                Instant::now() < deadline,
                "worker {} logged no {text:?} within {timeout:?}; logs:\n{}",
                self.pid(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().expect("log lock").join("\n")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect_lines(stream: impl Read + Send + 'static, logs: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            logs.lock().expect("log lock").push(line);
        }
    });
}

/// A `registrar serve` child process on a free 127.0.0.1 port, killed when dropped.
pub struct ServeProcess {
    child: Child,
    pub base: String,
}

impl ServeProcess {
    /// Starts `serve` on the test's database; `extra` adds environment variables.
    pub fn spawn(db: &TestDb, extra: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_registrar"));
        command
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env_clear()
            .env("DATABASE_URL", db.url())
            .env("LOG_LEVEL", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in extra {
            command.env(key, value);
        }
        let child = command.spawn().expect("start registrar serve");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Polls `/health/live` until the process answers.
    pub async fn wait_live(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let live = client
                .get(format!("{}/health/live", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if live {
                return;
            }
            assert!(Instant::now() < deadline, "{} never came up", self.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
