//! Idempotency of the enrollment endpoints: the key of a request, the fingerprint of its
//! body, and the decision an earlier request with the same key leads to.
//!
//! A key comes from the `Idempotency-Key` header (`inscription:hdr:<value>`) or, without it,
//! from the body: `inscription:` + the SHA-256 of the request dumped the way the service we
//! replace dumped it, so keys computed by its clients keep matching. The record of a key
//! lives in the database, written in the transaction that queues the job; Redis, when
//! configured, caches finished successes so a replay needs no database round trip.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::enrollment::EnrollmentRequest;
use crate::shared_state::RedisHandle;

/// The request header that carries a client's key.
pub const HEADER: &str = "idempotency-key";
/// The response header that marks a replayed response.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Prefix of the Redis keys that cache replays.
pub const CACHE_PREFIX: &str = "idempotency:";

/// The endpoints whose requests are idempotent. The name enters the fingerprint, so one key
/// sent to two endpoints counts as two different requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /api/v1/inscripciones/`.
    Create,
    /// `POST /api/v1/queue/inscripciones/async`.
    Async,
    ByGroups,
    Bulk,
    Sync,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Async => "async",
            Self::ByGroups => "async-by-groups",
            Self::Bulk => "bulk-async",
            Self::Sync => "sync",
        }
    }
}

/// The origin of a request's key. A header key reused with another body is the client's
/// mistake (422), and a body key cannot be reused with another body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Header,
    Body,
}

/// The identity of one idempotent request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    pub key: String,
    pub source: KeySource,
    /// SHA-256 of the endpoint and the normalised body.
    pub fingerprint: String,
}

/// The reason an `Idempotency-Key` header was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidKey(pub &'static str);

/// Checks a header value: 1 to 255 printable ASCII characters.
pub fn check_header(value: &[u8]) -> Result<&str, InvalidKey> {
    if value.is_empty() {
        return Err(InvalidKey("must not be empty"));
    }
    if value.len() > 255 {
        return Err(InvalidKey("must be at most 255 characters"));
    }
    if !value.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(InvalidKey("must contain printable ASCII characters only"));
    }
    std::str::from_utf8(value)
        .map_err(|_| InvalidKey("must contain printable ASCII characters only"))
}

/// Builds the key of a one-enrollment request.
pub fn request_key(
    endpoint: Endpoint,
    header: Option<&str>,
    request: &EnrollmentRequest,
) -> RequestKey {
    let canonical = canonical_request(request);
    let fingerprint = sha256_hex(&format!("{}\n{canonical}", endpoint.as_str()));
    match header {
        Some(value) => RequestKey {
            key: format!("inscription:hdr:{value}"),
            source: KeySource::Header,
            fingerprint,
        },
        None => RequestKey {
            key: body_key(endpoint, &sha256_hex(&canonical)),
            source: KeySource::Body,
            fingerprint,
        },
    }
}

/// Names a body-derived key. `async-by-groups` keeps the predecessor's
/// `inscription:<sha256>`; the other endpoints add their name, so the same body sent to two
/// endpoints never shares a record.
fn body_key(endpoint: Endpoint, hash: &str) -> String {
    match endpoint {
        Endpoint::ByGroups => format!("inscription:{hash}"),
        other => format!("inscription:{}:{hash}", other.as_str()),
    }
}

/// Builds the key of a bulk request: the body key hashes every item in order.
pub fn bulk_key(header: Option<&str>, items: &[EnrollmentRequest]) -> RequestKey {
    let canonical = items
        .iter()
        .map(canonical_request)
        .collect::<Vec<_>>()
        .join("\n");
    let fingerprint = sha256_hex(&format!("{}\n{canonical}", Endpoint::Bulk.as_str()));
    match header {
        Some(value) => RequestKey {
            key: format!("inscription:hdr:{value}"),
            source: KeySource::Header,
            fingerprint,
        },
        None => RequestKey {
            key: format!("inscription:bulk:{}", sha256_hex(&canonical)),
            source: KeySource::Body,
            fingerprint,
        },
    }
}

/// Dumps `{codigo_periodo, grupos (sorted), registro_academico}` with sorted keys, `", "`
/// and `": "` separators and non-ASCII escaped as `\uXXXX`: the format of Python's
/// `json.dumps(..., sort_keys=True)`. serde_json has no such output mode (its separators
/// are compact and it writes UTF-8), so the few lines below write it by hand.
pub fn canonical_request(request: &EnrollmentRequest) -> String {
    let mut grupos: Vec<&str> = request.grupos.iter().map(|g| g.trim()).collect();
    grupos.sort_unstable();
    let mut out = String::from("{\"codigo_periodo\": ");
    push_python_string(&mut out, request.codigo_periodo.trim());
    out.push_str(", \"grupos\": [");
    for (i, grupo) in grupos.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_python_string(&mut out, grupo);
    }
    out.push_str("], \"registro_academico\": ");
    push_python_string(&mut out, request.registro_academico.trim());
    out.push('}');
    out
}

fn push_python_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A record to write with a queued job, or to open for a synchronous request.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub key: RequestKey,
    pub endpoint: Endpoint,
    pub task_id: Option<String>,
    pub registro_academico: Option<String>,
    pub codigo_periodo: Option<String>,
    pub correlation_id: String,
    pub response_status: u16,
    pub response_body: String,
    pub now_ms: i64,
    pub expires_at_ms: i64,
}

/// The store's decision for a request whose key it was asked to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The record was written (with the job, for a queued request): run the request.
    Fresh,
    /// A finished success owns the key: respond with the stored response.
    Replay(StoredResponse),
    /// The request holding the key has not finished.
    InFlight,
    /// A header key that an earlier request with another body holds.
    Reused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
    /// When the record expires, in epoch milliseconds; a cached copy expires with it.
    #[serde(default)]
    pub expires_at_ms: i64,
}

/// The stored record of a key, with the state of its job when it has one.
#[derive(Debug, Clone)]
pub struct Existing {
    pub fingerprint: String,
    pub task_id: Option<String>,
    pub state: String,
    pub response_status: u16,
    pub response_body: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// `None` when the record has a job that no longer exists.
    pub job_state: Option<String>,
    pub job_result: Option<String>,
}

/// The next step for a request whose key already has a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Overwrite the record and run the request afresh.
    Replace,
    Answer(Claim),
}

/// Decides between a replay, a 409, a 422 and a fresh run. A synchronous request's
/// `pending` record older than `pending_timeout_ms` belonged to a process that died, so it
/// no longer blocks its key.
pub fn decide(existing: &Existing, new: &NewRecord, pending_timeout_ms: i64) -> Decision {
    let now_ms = new.now_ms;
    if existing.expires_at <= now_ms {
        return Decision::Replace;
    }
    let in_flight = match &existing.task_id {
        Some(_) => match existing.job_state.as_deref() {
            None => return Decision::Replace,
            Some(state) => !matches!(state, "SUCCESS" | "FAILURE" | "REVOKED"),
        },
        None => existing.state == "pending" && existing.created_at + pending_timeout_ms > now_ms,
    };
    if existing.fingerprint != new.key.fingerprint {
        if new.key.source == KeySource::Header {
            return Decision::Answer(Claim::Reused);
        }
        return if in_flight {
            Decision::Answer(Claim::InFlight)
        } else {
            Decision::Replace
        };
    }
    if in_flight {
        return Decision::Answer(Claim::InFlight);
    }
    let succeeded = match &existing.task_id {
        Some(_) => {
            existing.job_state.as_deref() == Some("SUCCESS")
                && existing
                    .job_result
                    .as_deref()
                    .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
                    .is_some_and(|r| r["status"] == "SUCCESS")
        }
        None => existing.state == "completed",
    };
    if succeeded {
        Decision::Answer(Claim::Replay(StoredResponse {
            fingerprint: existing.fingerprint.clone(),
            status: existing.response_status,
            body: existing.response_body.clone(),
            expires_at_ms: existing.expires_at,
        }))
    } else {
        Decision::Replace
    }
}

/// Hits and misses of this process's replay lookups, for the monitoring endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub cache_hits: AtomicU64,
}

impl Counters {
    pub fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }
}

/// Looks a key up in the Redis cache.
pub async fn cache_get(
    redis: &RedisHandle,
    key: &str,
) -> Result<Option<StoredResponse>, redis::RedisError> {
    let mut conn = redis.connection();
    let cached: Option<String> = conn.get(redis.key(&format!("{CACHE_PREFIX}{key}"))).await?;
    Ok(cached.and_then(|text| serde_json::from_str(&text).ok()))
}

/// Caches a finished success until `expires_at_ms`.
pub async fn cache_put(
    redis: &RedisHandle,
    key: &str,
    response: &StoredResponse,
    expires_at_ms: i64,
) -> Result<(), redis::RedisError> {
    let ttl_ms = expires_at_ms - crate::clock::now_ms();
    if ttl_ms <= 0 {
        return Ok(());
    }
    let Ok(text) = serde_json::to_string(response) else {
        return Ok(());
    };
    let mut conn = redis.connection();
    redis::cmd("SET")
        .arg(redis.key(&format!("{CACHE_PREFIX}{key}")))
        .arg(text)
        .arg("PX")
        .arg(ttl_ms)
        .query_async::<()>(&mut conn)
        .await
}

/// Drops keys from the Redis cache.
pub async fn cache_delete(redis: &RedisHandle, keys: &[String]) -> Result<(), redis::RedisError> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut conn = redis.connection();
    let names: Vec<String> = keys
        .iter()
        .map(|k| redis.key(&format!("{CACHE_PREFIX}{k}")))
        .collect();
    let _: i64 = conn.del(names).await?;
    Ok(())
}

/// Strips the optional storage prefix from a key given to the invalidation endpoint.
pub fn strip_prefix(key: &str) -> &str {
    key.strip_prefix(CACHE_PREFIX).unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ra: &str, periodo: &str, grupos: &[&str]) -> EnrollmentRequest {
        EnrollmentRequest {
            registro_academico: ra.into(),
            codigo_periodo: periodo.into(),
            grupos: grupos.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    #[test]
    fn body_keys_match_the_predecessor_vectors() {
        let first = request_key(
            Endpoint::ByGroups,
            None,
            &request("EST001", "2024-2", &["G-ELC106-E", "G-ELC102-E"]),
        );
        assert_eq!(
            first.key,
            "inscription:2c15d1f2fadb524ad297fd1cf563c0567c38a4aa2f1ed3dcca2b59de1dfa4198"
        );
        let second = request_key(
            Endpoint::ByGroups,
            None,
            &request("RA0001", "1-2025", &["G-ELC108-E"]),
        );
        assert_eq!(
            second.key,
            "inscription:db2296e62a6860226c028c45a4fc43cc43bc5c5722b3fca731386800c1bc3146"
        );
    }

    #[test]
    fn strings_are_trimmed_and_escaped_like_python() {
        let trimmed = request_key(
            Endpoint::Async,
            None,
            &request(" EST001 ", "2024-2", &["B", " A"]),
        );
        let plain = request_key(
            Endpoint::Async,
            None,
            &request("EST001", "2024-2", &["A", "B"]),
        );
        assert_eq!(trimmed, plain);
        assert_eq!(
            canonical_request(&request("Ñ\"", "p", &["😀"])),
            r#"{"codigo_periodo": "p", "grupos": ["\ud83d\ude00"], "registro_academico": "\u00d1\""}"#
        );
    }

    #[test]
    fn body_keys_are_named_by_endpoint() {
        let body = request("EST001", "2024-2", &["A"]);
        let by_groups = request_key(Endpoint::ByGroups, None, &body).key;
        let sync = request_key(Endpoint::Sync, None, &body).key;
        assert!(sync.starts_with("inscription:sync:"), "{sync}");
        assert_eq!(sync.rsplit(':').next(), by_groups.rsplit(':').next());
        assert_ne!(sync, by_groups);
    }

    #[test]
    fn fingerprint_includes_the_endpoint() {
        let body = request("EST001", "2024-2", &["A"]);
        let a = request_key(Endpoint::Async, Some("k"), &body);
        let b = request_key(Endpoint::ByGroups, Some("k"), &body);
        assert_eq!(a.key, b.key);
        assert_ne!(a.fingerprint, b.fingerprint);
        assert_eq!(a.key, "inscription:hdr:k");
    }

    #[test]
    fn header_values_are_checked() {
        assert!(check_header(b"").is_err());
        assert!(check_header(&[b'a'; 256]).is_err());
        assert!(check_header(b"tab\there").is_err());
        assert!(check_header("é".as_bytes()).is_err());
        assert_eq!(check_header(b"order-42 retry").unwrap(), "order-42 retry");
        assert_eq!(check_header(&[b'a'; 255]).unwrap().len(), 255);
    }
}
