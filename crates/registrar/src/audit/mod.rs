//! The audit trail: business and operator events, each logged as one line with `audit = true`
//! and stored in the `audit_event` table, so that operators can reconstruct afterwards who was
//! affected by what, and when.
//!
//! Callers build an [`AuditEvent`] and hand it to [`record`] after the change it describes has
//! committed (or, for a rejection, after its transaction rolled back). `record` never fails:
//! an event that cannot be stored is still in the log. An enqueue stores its
//! `INSCRIPTION_REQUESTED` event in the transaction that queues the job instead, and logs it
//! with [`log_and_count`] after the commit.

pub mod enrollment;
mod event;
mod query;

pub use event::{AuditEvent, AuditEventType};
pub use query::{AuditFilter, AuditRecord, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

use crate::store::Store;
use crate::telemetry::context;
use crate::telemetry::metrics as names;

/// Logs `event` as one line with `audit = true` and stores it. The request and correlation
/// ids of the current request or job are filled in when the event has none. A storage
/// failure is logged and not returned, so auditing never fails the caller's operation.
pub async fn record(store: &dyn Store, event: AuditEvent) {
    let event = log(event);
    store_events(store, std::slice::from_ref(&event)).await;
}

/// Fills in the current request's or job's ids where `event` has none, logs it as one line
/// with `audit = true` and counts it. Returns the event, ready for [`store_events`].
pub fn log(event: AuditEvent) -> AuditEvent {
    let event = with_current_ids(event);
    log_and_count(&event);
    event
}

/// Fills in the current request's or job's ids where `event` has none.
pub fn with_current_ids(mut event: AuditEvent) -> AuditEvent {
    if let Some(ids) = context::current() {
        if event.correlation_id.is_none() {
            event.correlation_id = Some(ids.correlation_id);
        }
        if event.request_id.is_none() {
            event.request_id = ids.request_id;
        }
    }
    event
}

/// Logs `event` as one line with `audit = true` and counts it in the audit events metric.
pub fn log_and_count(event: &AuditEvent) {
    tracing::info!(
        target: "registrar::audit",
        audit = true,
        event_type = event.event_type.as_str(),
        entity_type = %event.entity_type,
        entity_id = event.entity_id.as_deref(),
        action = %event.action,
        correlation_id = event.correlation_id.as_deref(),
        request_id = event.request_id.as_deref(),
        registro_academico = event.registro_academico.as_deref(),
        codigo_periodo = event.codigo_periodo.as_deref(),
        codigo_grupo = event.codigo_grupo.as_deref(),
        error_code = event.error_code.as_deref(),
        data = %event.data,
        "audit event"
    );

    let labels = [
        ("event_type", event.event_type.as_str().to_owned()),
        ("error_code", event.error_code.clone().unwrap_or_default()),
    ];
    metrics::counter!(names::AUDIT_EVENTS_TOTAL, &labels).increment(1);
}

/// Stores events that [`log`] returned, in one transaction. A storage failure is logged and
/// not returned, so auditing never fails the caller's operation.
pub async fn store_events(store: &dyn Store, events: &[AuditEvent]) {
    if events.is_empty() {
        return;
    }
    if let Err(e) = store.insert_audit_events(events).await {
        for event in events {
            tracing::warn!(
                error = %e,
                event_type = event.event_type.as_str(),
                entity_id = event.entity_id.as_deref(),
                "storing an audit event failed; it is kept in the log only"
            );
        }
    }
}
