//! Idempotent enrollment requests: the `Idempotency-Key` header, the replay of a stored
//! response, the 409 for a request still running and the 422 for a key reused with another
//! body. The decisions themselves live in [`crate::idempotency`] and the store.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AppState, RequestContext};
use crate::audit::{self, AuditEvent, AuditEventType};
use crate::clock;
use crate::domain::error::{ErrorCode, FieldError};
use crate::idempotency::{
    self, Claim, Endpoint, NewRecord, REPLAYED_HEADER, RequestKey, StoredResponse,
};
use crate::jobs::model::NewJob;
use crate::store::EnqueueRequest;
use crate::telemetry::metrics as names;

/// Reads the `Idempotency-Key` header; a malformed one is a 422 naming the header.
pub fn header_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(idempotency::HEADER) else {
        return Ok(None);
    };
    idempotency::check_header(value.as_bytes())
        .map(|v| Some(v.to_owned()))
        .map_err(|e| {
            ApiError::validation(vec![FieldError {
                field: "header -> Idempotency-Key".into(),
                message: format!("{}; send 1 to 255 printable ASCII characters", e.0),
                kind: "value_error",
                input: json!(String::from_utf8_lossy(value.as_bytes())),
            }])
        })
}

/// Returns how long a synchronous request's pending record blocks its key before it counts
/// as abandoned by a process that died. A synchronous saga may outlive its request (it goes
/// on after a timeout), so the bound is twice the request timeout plus ten minutes.
pub fn pending_timeout_ms(state: &AppState) -> i64 {
    (state.config.request_timeout_seconds as i64 * 2 + 600) * 1000
}

/// Builds the record of a request whose response is `body`.
pub fn new_record(
    state: &AppState,
    ctx: &RequestContext,
    key: RequestKey,
    endpoint: Endpoint,
    task_id: Option<String>,
    owner: Option<(&str, &str)>,
    (status, body): (StatusCode, String),
) -> NewRecord {
    let now_ms = clock::now_ms();
    NewRecord {
        key,
        endpoint,
        task_id,
        registro_academico: owner.map(|(ra, _)| ra.to_owned()),
        codigo_periodo: owner.map(|(_, p)| p.to_owned()),
        correlation_id: ctx.correlation_id.clone(),
        response_status: status.as_u16(),
        response_body: body,
        now_ms,
        expires_at_ms: now_ms + state.config.idempotency_ttl_seconds as i64 * 1000,
    }
}

/// Builds a JSON response with exactly these bytes, so a replay repeats the first response
/// byte for byte.
pub fn raw_json(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = raw_json(status, stored.body);
    response
        .headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

/// Builds the response to a request whose key belongs to an earlier request.
pub fn answer(claim: Claim, key: &RequestKey) -> Response {
    match claim {
        Claim::Replay(stored) => replay(stored),
        Claim::InFlight => {
            let mut error = ApiError::new(
                ErrorCode::IdempotencyInFlight,
                "A request with this idempotency key is still being processed; retry shortly",
                json!({ "idempotency_key": key.key, "retry_after_seconds": 1 }),
            );
            error
                .headers
                .push((header::RETRY_AFTER, HeaderValue::from_static("1")));
            error.into_response()
        }
        Claim::Reused => ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "This Idempotency-Key was used with a different request body; send a new key",
            json!({ "idempotency_key": key.key, "field": "header -> Idempotency-Key" }),
        )
        .into_response(),
        Claim::Fresh => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Replays from the Redis cache when it contains a finished success for the key. A Redis
/// failure, or the `redis` breaker rejecting the call, is a miss, and the database responds.
pub async fn cached_replay(state: &AppState, key: &RequestKey) -> Option<Response> {
    let redis = state.redis.as_ref()?;
    let lookup = idempotency::cache_get(redis, &key.key);
    let cached = match state.saga.breakers().get("redis") {
        Some(breaker) => breaker.call(lookup).await.map_err(|e| e.to_string()),
        None => lookup.await.map_err(|e| e.to_string()),
    };
    let stored = match cached {
        Ok(stored) => stored?,
        Err(e) => {
            tracing::warn!(error = %e, idempotency_key = %key.key, "idempotency cache read failed; asking the database");
            return None;
        }
    };
    if stored.fingerprint != key.fingerprint {
        return None;
    }
    state.idempotency.hit();
    metrics::counter!(names::IDEMPOTENCY_HITS_TOTAL).increment(1);
    state
        .idempotency
        .cache_hits
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(replay(stored))
}

/// Remembers a replayed success in Redis, so the next replay skips the database.
pub async fn remember(state: &AppState, key: &RequestKey, claim: &Claim) {
    if let (Some(redis), Claim::Replay(stored)) = (&state.redis, claim) {
        let put = idempotency::cache_put(redis, &key.key, stored, stored.expires_at_ms);
        let written = match state.saga.breakers().get("redis") {
            Some(breaker) => breaker.call(put).await.map_err(|e| e.to_string()),
            None => put.await.map_err(|e| e.to_string()),
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, idempotency_key = %key.key, "caching the replay failed; the database serves the next one");
        }
    }
}

/// Queues `job` once per key: the record, the job and `audit`, the event of a fresh request,
/// are written in one transaction, which concurrent enqueues share. A repeat of the request
/// gets the response that the record selects. `body` is the 202 response.
#[expect(
    clippy::too_many_arguments,
    reason = "each argument is a distinct part of the enqueue"
)]
pub async fn enqueue_once(
    state: &AppState,
    ctx: &RequestContext,
    key: RequestKey,
    endpoint: Endpoint,
    job: NewJob,
    owner: Option<(&str, &str)>,
    body: &Value,
    audit: Option<AuditEvent>,
) -> Result<Response, ApiError> {
    if let Some(response) = cached_replay(state, &key).await {
        return Ok(response);
    }
    let text = body.to_string();
    let record = new_record(
        state,
        ctx,
        key.clone(),
        endpoint,
        Some(job.task_id.clone()),
        owner,
        (StatusCode::ACCEPTED, text.clone()),
    );
    // The writer task runs outside this request's context, so the ids go with the event.
    let audit = audit.map(audit::with_current_ids);
    let request = EnqueueRequest {
        job,
        record,
        pending_timeout_ms: pending_timeout_ms(state),
        audit: audit.clone(),
    };
    let claim = state.enqueue_combiner.enqueue(request).await?;
    if claim == Claim::Fresh {
        if let Some(event) = &audit {
            audit::log_and_count(event);
        }
        state.idempotency.miss();
        metrics::counter!(names::IDEMPOTENCY_MISSES_TOTAL).increment(1);
        state.wake_workers();
        return Ok(raw_json(StatusCode::ACCEPTED, text));
    }
    if matches!(claim, Claim::Replay(_)) {
        state.idempotency.hit();
        metrics::counter!(names::IDEMPOTENCY_HITS_TOTAL).increment(1);
        remember(state, &key, &claim).await;
    }
    let outcome = match &claim {
        Claim::Replay(_) => "replay",
        Claim::InFlight => "in_flight",
        _ => "reused",
    };
    tracing::info!(idempotency_key = %key.key, outcome, "repeated request served from its idempotency record");
    Ok(answer(claim, &key))
}

/// Drops the keys of a (student, period) after its enrollment changed, from the database
/// and the Redis cache, so a repeat of an old request runs afresh.
pub async fn invalidate(state: &AppState, registro_academico: &str, codigo_periodo: &str) {
    let keys = match state
        .store
        .invalidate_idempotency(registro_academico, codigo_periodo)
        .await
    {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(error = %e, registro_academico, codigo_periodo, "invalidating idempotency keys failed; they expire with their TTL");
            return;
        }
    };
    if keys.is_empty() {
        return;
    }
    if let Some(redis) = &state.redis
        && let Err(e) = idempotency::cache_delete(redis, &keys).await
    {
        tracing::warn!(error = %e, "dropping cached replays failed; they expire with their TTL");
    }
    let event = AuditEvent::new(
        AuditEventType::IdempotencyInvalidated,
        "idempotency_key",
        "invalidate",
    )
    .student(registro_academico)
    .periodo(codigo_periodo)
    .data(json!({ "keys": keys, "by": "enrollment_change" }));
    audit::record(state.store.as_ref(), event).await;
}
