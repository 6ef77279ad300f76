//! The route table: every route the API serves, in one list. The router is built from it,
//! and a test checks that the OpenAPI document describes each entry.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodRouter, on};

use super::{
    AppState, audit, dashboard, docs, health, historial, inscripciones, metrics, monitoring,
    periodos, queue, resilience, system,
};

/// One route: a method on a path pattern, with its handler.
pub struct Route {
    pub method: Method,
    /// The axum path pattern, which is also the OpenAPI path: `{name}` marks a parameter.
    pub path: &'static str,
    pub handler: MethodRouter<AppState>,
}

fn route<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = axum::routing::MethodFilter::try_from(method.clone())
        .expect("the table uses only standard methods");
    Route {
        method,
        path,
        handler: on(filter, handler),
    }
}

/// Returns every route. Paths have no trailing slash: the router trims it from requests.
pub fn table() -> Vec<Route> {
    use Method as M;
    vec![
        // System, monitoring of the process, and documentation.
        route(M::GET, "/", system::root),
        route(M::GET, "/health", health::health),
        route(M::GET, "/health/live", health::live),
        route(M::GET, "/health/ready", health::ready),
        route(M::GET, "/metrics", metrics::metrics_json),
        route(M::GET, "/metrics/prometheus", metrics::prometheus),
        route(M::GET, "/openapi.json", docs::openapi_json),
        route(M::GET, "/docs", docs::docs_index),
        route(M::GET, "/docs/{file}", docs::docs_file),
        route(M::GET, "/dashboard", dashboard::page),
        // Inscriptions.
        route(
            M::POST,
            "/api/v1/inscripciones",
            inscripciones::create_async,
        ),
        route(
            M::POST,
            "/api/v1/inscripciones/sync",
            inscripciones::create_sync,
        ),
        route(
            M::GET,
            "/api/v1/inscripciones/estadisticas/general",
            inscripciones::statistics,
        ),
        route(
            M::GET,
            "/api/v1/inscripciones/estudiante/{registro_academico}",
            inscripciones::by_student,
        ),
        route(
            M::GET,
            "/api/v1/inscripciones/periodo/{codigo_periodo}",
            inscripciones::by_period,
        ),
        route(
            M::GET,
            "/api/v1/inscripciones/{codigo_inscripcion}",
            inscripciones::get_one,
        ),
        route(
            M::PUT,
            "/api/v1/inscripciones/{codigo_inscripcion}",
            inscripciones::update,
        ),
        route(
            M::DELETE,
            "/api/v1/inscripciones/{codigo_inscripcion}",
            inscripciones::delete_one,
        ),
        route(
            M::POST,
            "/api/v1/inscripciones/{codigo_inscripcion}/grupos/{codigo_grupo}",
            inscripciones::add_group,
        ),
        route(
            M::DELETE,
            "/api/v1/inscripciones/{codigo_inscripcion}/grupos/{codigo_grupo}",
            inscripciones::drop_group,
        ),
        // Periods.
        route(M::POST, "/api/v1/periodos", periodos::create),
        route(M::GET, "/api/v1/periodos", periodos::list),
        route(M::GET, "/api/v1/periodos/activo", periodos::active),
        route(
            M::GET,
            "/api/v1/periodos/{codigo_periodo}",
            periodos::get_one,
        ),
        route(
            M::PUT,
            "/api/v1/periodos/{codigo_periodo}",
            periodos::update,
        ),
        route(
            M::POST,
            "/api/v1/periodos/{codigo_periodo}/activar",
            periodos::activate,
        ),
        route(
            M::POST,
            "/api/v1/periodos/{codigo_periodo}/cerrar",
            periodos::close,
        ),
        // Academic record.
        route(M::POST, "/api/v1/historial", historial::create),
        route(
            M::GET,
            "/api/v1/historial/{id_historial}",
            historial::get_one,
        ),
        route(
            M::PUT,
            "/api/v1/historial/{id_historial}",
            historial::update,
        ),
        route(
            M::DELETE,
            "/api/v1/historial/{id_historial}",
            historial::delete_one,
        ),
        route(
            M::GET,
            "/api/v1/historial/estudiante/{registro_academico}",
            historial::by_student,
        ),
        route(
            M::GET,
            "/api/v1/historial/estudiante/{registro_academico}/por-periodo",
            historial::por_periodo,
        ),
        route(
            M::GET,
            "/api/v1/historial/estudiante/{registro_academico}/resumen",
            historial::resumen_estudiante,
        ),
        route(
            M::GET,
            "/api/v1/historial/estudiante/{registro_academico}/estado/{estado}",
            historial::by_estado,
        ),
        route(
            M::GET,
            "/api/v1/historial/reportes/estudiantes-por-materia/{sigla_materia}",
            historial::report_materia,
        ),
        route(
            M::GET,
            "/api/v1/historial/reportes/rendimiento-periodo/{codigo_periodo}",
            historial::report_periodo,
        ),
        // The job queue and its monitoring.
        route(
            M::POST,
            "/api/v1/queue/inscripciones/async",
            queue::enqueue_async,
        ),
        route(
            M::POST,
            "/api/v1/queue/inscripciones/async-by-groups",
            queue::enqueue_by_groups,
        ),
        route(
            M::POST,
            "/api/v1/queue/inscripciones/bulk-async",
            queue::enqueue_bulk,
        ),
        route(
            M::POST,
            "/api/v1/queue/tasks/status/multiple",
            queue::status_multiple,
        ),
        route(
            M::GET,
            "/api/v1/queue/tasks/{task_id}/status",
            queue::status,
        ),
        route(M::DELETE, "/api/v1/queue/tasks/{task_id}", queue::cancel),
        route(M::POST, "/api/v1/queue/health-check", queue::health_check),
        route(M::GET, "/api/v1/queue/stats", monitoring::stats),
        route(
            M::GET,
            "/api/v1/queue/stats/enhanced",
            monitoring::stats_enhanced,
        ),
        route(M::GET, "/api/v1/queue/workers", monitoring::workers),
        route(
            M::POST,
            "/api/v1/queue/workers/control",
            monitoring::control,
        ),
        route(M::GET, "/api/v1/queue/queues", monitoring::queues),
        // Resilience: idempotency records, sagas and circuit breakers.
        route(
            M::GET,
            "/api/v1/queue/idempotency/cache",
            resilience::idempotency_cache,
        ),
        route(
            M::DELETE,
            "/api/v1/queue/idempotency/cache/{key}",
            resilience::invalidate_key,
        ),
        route(M::GET, "/api/v1/queue/sagas", resilience::sagas),
        route(
            M::POST,
            "/api/v1/queue/sagas/cleanup",
            resilience::cleanup_sagas,
        ),
        route(
            M::GET,
            "/api/v1/queue/circuit-breakers",
            resilience::circuit_breakers,
        ),
        route(
            M::POST,
            "/api/v1/queue/circuit-breakers/{name}/reset",
            resilience::reset_breaker,
        ),
        // The audit trail.
        route(M::GET, "/api/v1/audit", audit::list),
    ]
}
