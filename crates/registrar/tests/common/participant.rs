//! A real HTTP server on 127.0.0.1 that plays a saga participant (billing or notification).
//! A test sets how it answers (accept, decline, fail or hang) and reads every request it
//! received, with its idempotency key and correlation id.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// How the participant answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200.
    Accept,
    /// 402: a business refusal.
    Decline,
    /// 500: an outage.
    Fail,
    /// Never answers (until the caller's timeout).
    Hang,
}

/// One request the participant received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub idempotency_key: Option<String>,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    modes: Vec<(String, Mode)>,
    default_mode: Option<Mode>,
    received: Vec<Received>,
}

#[derive(Clone)]
pub struct Participant {
    pub base: String,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
}

impl Participant {
    /// Starts the server on a free 127.0.0.1 port; it answers every path with `mode`.
    pub async fn start(mode: Mode) -> Self {
        let shared = Arc::new(Mutex::new(Shared {
            default_mode: Some(mode),
            ..Shared::default()
        }));
        let app = Router::new()
            .route("/{*path}", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind participant");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
        });
        Self { base, shared, stop }
    }

    /// Sets the answer for every path.
    pub fn set_mode(&self, mode: Mode) {
        let mut shared = self.shared.lock().expect("lock");
        shared.modes.clear();
        shared.default_mode = Some(mode);
    }

    /// Sets the answer for paths ending with `suffix`, before the default.
    pub fn set_mode_for(&self, suffix: &str, mode: Mode) {
        let mut shared = self.shared.lock().expect("lock");
        shared.modes.retain(|(s, _)| s != suffix);
        shared.modes.push((suffix.to_owned(), mode));
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().expect("lock").received.clone()
    }

    /// The requests received on paths ending with `suffix`.
    pub fn received_on(&self, suffix: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path.ends_with(suffix))
            .collect()
    }

    /// Polls until `count` requests reached paths ending with `suffix`.
    pub async fn wait_for(&self, suffix: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.received_on(suffix).len() < count {
            assert!(
                Instant::now() < deadline,
                "participant got {} of {count} requests on {suffix} within {timeout:?}",
                self.received_on(suffix).len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn handle(
    State(shared): State<Arc<Mutex<Shared>>>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let mode = {
        let mut shared = shared.lock().expect("lock");
        shared.received.push(Received {
            path: uri.path().to_owned(),
            idempotency_key: header(&headers, "idempotency-key"),
            correlation_id: header(&headers, "x-correlation-id"),
            request_id: header(&headers, "x-request-id"),
            body: serde_json::from_str(&body).unwrap_or(Value::Null),
        });
        shared
            .modes
            .iter()
            .find(|(suffix, _)| uri.path().ends_with(suffix.as_str()))
            .map(|(_, m)| *m)
            .or(shared.default_mode)
            .unwrap_or(Mode::Accept)
    };
    match mode {
        Mode::Accept => StatusCode::OK,
        Mode::Decline => StatusCode::PAYMENT_REQUIRED,
        Mode::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        Mode::Hang => {
            // Held until the caller gives up; bounded so the test process never leaks it.
            tokio::time::sleep(Duration::from_secs(120)).await;
            StatusCode::GATEWAY_TIMEOUT
        }
    }
}
