//! The shared Redis connection: health reporting and reconnection after a Redis restart,
//! against a private `redis-server` that the test starts on a free loopback port.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestApp;
use registrar::shared_state::RedisHandle;

struct RedisServer {
    child: Child,
    port: u16,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl RedisServer {
    /// Starts `redis-server` on `port`, keeping nothing on disk; `None` when it is not
    /// installed.
    fn start(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Self { child, port })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn handle(url: &str) -> RedisHandle {
    RedisHandle::connect(url, Duration::from_millis(500), Duration::from_millis(500))
        .expect("client")
}

#[tokio::test]
async fn redis_reconnects_after_restart() {
    let port = free_port();
    let Some(mut server) = RedisServer::start(port) else {
        eprintln!("skipped: redis-server is not installed");
        return;
    };
    let redis = handle(&server.url());
    wait_until("first ping", Duration::from_secs(10), async || {
        redis.ping().await.is_ok()
    })
    .await;

    server.kill();
    wait_until(
        "ping failing while Redis is down",
        Duration::from_secs(10),
        async || redis.ping().await.is_err(),
    )
    .await;

    let _restarted = RedisServer::start(port).expect("restart redis-server");
    wait_until("ping after restart", Duration::from_secs(15), async || {
        redis.ping().await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn health_reports_redis_state() {
    let port = free_port();
    let Some(mut server) = RedisServer::start(port) else {
        eprintln!("skipped: redis-server is not installed");
        return;
    };
    let url = server.url();
    let app = TestApp::spawn_with(|c| c.redis_url = Some(url)).await;
    wait_until(
        "Redis healthy in /health",
        Duration::from_secs(10),
        async || {
            let (_, body) = app.get("/health").await;
            body["components"]["redis"] == "healthy"
        },
    )
    .await;

    server.kill();
    let (status, body) = app.get("/health").await;
    assert_eq!(
        status, 200,
        "the database is up, so the service still serves"
    );
    assert_eq!(body["components"]["redis"], "unreachable");
    assert_eq!(body["status"], "degraded");
}
