//! Events of one enrollment request, built the same way on the synchronous path and in jobs.

use serde_json::json;

use super::{AuditEvent, AuditEventType};
use crate::domain::enrollment::{EnrollmentOutcome, EnrollmentRequest};
use crate::domain::error::DomainError;

fn about_request(
    event_type: AuditEventType,
    action: &str,
    request: &EnrollmentRequest,
) -> AuditEvent {
    AuditEvent::new(event_type, "inscripcion", action)
        .student(&request.registro_academico)
        .periodo(&request.codigo_periodo)
}

/// `INSCRIPTION_REQUESTED` for a request accepted for processing. `task_id` is the job that
/// will run it, on the queued paths.
pub fn requested(action: &str, request: &EnrollmentRequest, task_id: Option<&str>) -> AuditEvent {
    let event = about_request(AuditEventType::InscriptionRequested, action, request)
        .data(json!({ "grupos": request.grupos, "task_id": task_id }));
    match task_id {
        Some(id) => event.entity_id(id),
        None => event,
    }
}

/// `INSCRIPTION_REQUESTED` for a queued bulk job, one event for all its items, so that a
/// large bulk request does not wait for one write per item. The worker records each item's
/// outcome with the same correlation id.
pub fn bulk_requested(task_id: &str, items: usize) -> AuditEvent {
    AuditEvent::new(AuditEventType::InscriptionRequested, "job", "enqueue_bulk")
        .entity_id(task_id)
        .data(json!({ "task_id": task_id, "items": items }))
}

/// `INSCRIPTION_CREATED` for a committed enrollment, listing the groups it added and those
/// the inscription already held.
pub fn created(
    action: &str,
    request: &EnrollmentRequest,
    outcome: &EnrollmentOutcome,
) -> AuditEvent {
    let new_groups: Vec<&str> = outcome
        .new_details
        .iter()
        .map(|d| d.codigo_grupo.as_str())
        .collect();
    let already_held: Vec<&str> = outcome
        .already_held
        .iter()
        .map(|d| d.codigo_grupo.as_str())
        .collect();
    about_request(AuditEventType::InscriptionCreated, action, request)
        .entity_id(&outcome.inscripcion.codigo_inscripcion)
        .data(json!({
            "grupos": request.grupos,
            "new_groups": new_groups,
            "already_held": already_held,
            "created_inscripcion": outcome.created_inscripcion,
        }))
}

/// `INSCRIPTION_FAILED` for a rejected request, one event per request. `codigo_grupo` is the
/// group that caused the rejection. When the cause is not a group (a blocked student, say), it
/// is the only requested group, if there is one. `data.grupos` lists every requested group.
pub fn rejected(action: &str, request: &EnrollmentRequest, rejection: &DomainError) -> AuditEvent {
    let event = about_request(AuditEventType::InscriptionFailed, action, request)
        .error_code(rejection.code.as_str())
        .data(json!({
            "grupos": request.grupos,
            "message": rejection.message,
            "details": rejection.details,
        }));
    let only_group = match request.grupos.as_slice() {
        [grupo] => Some(grupo),
        _ => None,
    };
    match rejection.grupo.as_ref().or(only_group) {
        Some(grupo) => event.grupo(grupo),
        None => event,
    }
}

/// `INSCRIPTION_FAILED` for a job that gave up without a business outcome: timed out, or out
/// of retries. `error_code` is the job's `error_type`.
pub fn job_failed(request: &EnrollmentRequest, task_id: &str, error_code: &str) -> AuditEvent {
    about_request(AuditEventType::InscriptionFailed, "run_job", request)
        .entity_id(task_id)
        .error_code(error_code)
        .data(json!({ "grupos": request.grupos, "task_id": task_id }))
}
