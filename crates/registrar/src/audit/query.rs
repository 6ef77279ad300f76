//! Reading the audit trail back: the filter of `GET /api/v1/audit` and the stored rows.

use serde::Serialize;
use serde_json::Value;

use super::AuditEventType;

/// Events returned when the request gives no `limit`.
pub const DEFAULT_PAGE_SIZE: i64 = 100;
/// The largest `limit` accepted.
pub const MAX_PAGE_SIZE: i64 = 1000;

/// A filter on the audit trail. Every present field narrows the result, and events come
/// newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Events at or after this time, epoch milliseconds.
    pub from_ms: Option<i64>,
    /// Events strictly before this time, epoch milliseconds.
    pub to_ms: Option<i64>,
    pub registro_academico: Option<String>,
    pub event_type: Option<AuditEventType>,
    pub correlation_id: Option<String>,
    pub codigo_grupo: Option<String>,
    pub error_code: Option<String>,
    /// The pagination cursor: only events with a smaller id.
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// One stored event as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    /// RFC 3339 in UTC.
    pub occurred_at: String,
    pub event_type: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub action: String,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
    pub registro_academico: Option<String>,
    pub codigo_periodo: Option<String>,
    pub codigo_grupo: Option<String>,
    pub error_code: Option<String>,
    pub data: Value,
}
