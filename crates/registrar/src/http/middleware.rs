//! Request and correlation ids, the request log line, and the error envelope.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};

use super::AppState;
use super::error::{ApiError, envelope};
use crate::domain::error::ErrorCode;
use crate::telemetry::context::{self, RequestIds};
use crate::telemetry::metrics as names;

/// The ids of the request being served, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub correlation_id: String,
}

/// Paths whose successful requests are logged at DEBUG, so that probes do not flood the log.
const QUIET_PATHS: &[&str] = &[
    "/health",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/metrics/prometheus",
    "/favicon.ico",
];

/// Accepts a client-sent id of 1–128 characters from `[A-Za-z0-9._:-]`.
fn valid_id(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    ok.then(|| value.to_owned())
}

fn short_hex() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..8].to_owned()
}

pub async fn envelope_and_ids(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = valid_id(req.headers(), "x-request-id").unwrap_or_else(short_hex);
    let correlation_id = valid_id(req.headers(), "x-correlation-id")
        .unwrap_or_else(|| format!("corr_{}", short_hex()));
    req.extensions_mut().insert(RequestContext {
        request_id: request_id.clone(),
        correlation_id: correlation_id.clone(),
    });
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());

    let client_ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_default();
    let span = info_span!(
        "request",
        request_id = %request_id,
        correlation_id = %correlation_id,
        method = %method,
        path = %path,
        client_ip = %client_ip,
    );
    span.in_scope(|| debug!(route = %route, "request started"));
    let ids = RequestIds {
        correlation_id: correlation_id.clone(),
        request_id: Some(request_id.clone()),
    };
    let mut response = context::scope(ids, next.run(req).instrument(span.clone())).await;

    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        write_envelope(&mut response, &error, &path, &request_id);
    } else if response.status().is_client_error() || response.status().is_server_error() {
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if !is_json {
            let error = generic_error(response.status());
            write_envelope(&mut response, &error, &path, &request_id);
        }
    }

    let elapsed = started.elapsed();
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-request-id", request_id.as_str()),
        ("x-correlation-id", correlation_id.as_str()),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&format!("{:.4}", elapsed.as_secs_f64())) {
        headers.insert("x-process-time", value);
    }

    let status = response.status();
    state.counters.record(status.as_u16());
    let labels = [
        ("method", method.to_string()),
        ("route", route.clone()),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!(names::HTTP_REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION_SECONDS, &labels)
        .record(elapsed.as_secs_f64());
    let _entered = span.enter();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    if status.is_server_error() {
        warn!(route = %route, status = status.as_u16(), duration_ms, "request failed");
    } else if QUIET_PATHS.contains(&path.as_str()) {
        debug!(route = %route, status = status.as_u16(), duration_ms, "request completed");
    } else {
        info!(route = %route, status = status.as_u16(), duration_ms, "request completed");
    }
    response
}

fn write_envelope(response: &mut Response, error: &ApiError, path: &str, request_id: &str) {
    let body = envelope(error, path, request_id).to_string();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.headers_mut().remove(header::CONTENT_LENGTH);
    *response.body_mut() = Body::from(body);
}

fn generic_error(status: axum::http::StatusCode) -> ApiError {
    let code = match status.as_u16() {
        404 => ErrorCode::NotFound,
        408 => ErrorCode::RequestTimeout,
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        s if s >= 500 => ErrorCode::InternalServerError,
        _ => ErrorCode::ValidationError,
    };
    let mut error = ApiError::new(
        code,
        status.canonical_reason().unwrap_or("Request failed"),
        json!({}),
    );
    error.status = status;
    error
}

pub async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "No route matches {} {}; check the path and the API prefix /api/v1",
        req.method(),
        req.uri().path()
    ))
}

pub async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "Method {} is not allowed on {}",
            req.method(),
            req.uri().path()
        ),
        json!({ "method": req.method().as_str() }),
    )
}
