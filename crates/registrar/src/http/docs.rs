//! The OpenAPI document at `/openapi.json` and the Swagger UI at `/docs`, whose files are
//! compiled into the binary, so the page works with no internet access.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::ApiError;
use super::{
    audit, dashboard, health, historial, inscripciones, metrics, monitoring, periodos, queue,
    resilience, schemas, system,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "registrar",
        description = "Course-registration service: enrolls students in course groups, \
                       synchronously or through a job queue. Every error uses the \
                       ErrorEnvelope schema; operator endpoints need \
                       `Authorization: Bearer $ADMIN_TOKEN` when ADMIN_TOKEN is set."
    ),
    paths(
        system::root,
        health::health,
        health::live,
        health::ready,
        metrics::metrics_json,
        metrics::prometheus,
        openapi_json,
        docs_index,
        docs_file,
        dashboard::page,
        inscripciones::create_async,
        inscripciones::create_sync,
        inscripciones::statistics,
        inscripciones::by_student,
        inscripciones::by_period,
        inscripciones::get_one,
        inscripciones::update,
        inscripciones::delete_one,
        inscripciones::add_group,
        inscripciones::drop_group,
        periodos::create,
        periodos::list,
        periodos::active,
        periodos::get_one,
        periodos::update,
        periodos::activate,
        periodos::close,
        historial::create,
        historial::get_one,
        historial::update,
        historial::delete_one,
        historial::by_student,
        historial::por_periodo,
        historial::resumen_estudiante,
        historial::by_estado,
        historial::report_materia,
        historial::report_periodo,
        queue::enqueue_async,
        queue::enqueue_by_groups,
        queue::enqueue_bulk,
        queue::status_multiple,
        queue::status,
        queue::cancel,
        queue::health_check,
        monitoring::stats,
        monitoring::stats_enhanced,
        monitoring::workers,
        monitoring::control,
        monitoring::queues,
        resilience::idempotency_cache,
        resilience::invalidate_key,
        resilience::sagas,
        resilience::cleanup_sagas,
        resilience::circuit_breakers,
        resilience::reset_breaker,
        audit::list,
    ),
    components(schemas(schemas::ErrorEnvelope)),
    modifiers(&ErrorResponses),
    tags(
        (name = "system", description = "Service information, health, metrics and documentation"),
        (name = "inscripciones", description = "Enrollments: create, read, change, delete"),
        (name = "periodos", description = "Academic periods"),
        (name = "historial", description = "Academic record and its reports"),
        (name = "queue", description = "Queued enrollments, tasks and queue monitoring"),
        (name = "audit", description = "The audit trail"),
    )
)]
pub struct ApiDoc;

/// Adds the error envelope as the `default` response of every operation, because any route
/// can return an error (validation, timeout, an unreachable store) in that shape.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut Document) {
        let content = ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "ErrorEnvelope",
            ))))
            .build();
        let response = ResponseBuilder::new()
            .description("An error, in the error envelope")
            .content("application/json", content)
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                // Handler names repeat across routers (`list`, `get_one`), so the operation
                // id is built from the method and path, which are unique.
                let id: String = format!("{method}{path}")
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                operation.operation_id = Some(id.trim_end_matches('_').to_owned());
                operation
                    .responses
                    .responses
                    .entry("default".into())
                    .or_insert_with(|| RefOr::T(response.clone()));
            }
        }
    }
}

/// Returns the document, built once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// The OpenAPI 3 document of every route.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> axum::Json<&'static Document> {
    axum::Json(document())
}

/// Redirects to the Swagger UI's page, whose relative links need the trailing file name.
#[utoipa::path(get, path = "/docs", tag = "system",
    responses((status = 303, description = "Redirect to /docs/index.html")))]
pub async fn docs_index() -> Redirect {
    Redirect::to("/docs/index.html")
}

fn swagger_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Arc::new(
                // "none" turns off the validator badge, which would send the document's URL
                // to an outside service.
                utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none"),
            )
        })
        .clone()
}

/// Serves one file of the Swagger UI, compiled into the binary.
#[utoipa::path(get, path = "/docs/{file}", tag = "system",
    params(("file" = String, Path, description = "A Swagger UI file, such as index.html")),
    responses((status = 200, description = "The file", content_type = "text/html")))]
pub async fn docs_file(Path(file): Path<String>) -> Result<Response, ApiError> {
    let served = utoipa_swagger_ui::serve(&file, swagger_config()).map_err(|e| {
        tracing::error!(error = %e, file = %file, "serving a Swagger UI file failed");
        ApiError::internal()
    })?;
    let Some(found) = served else {
        return Err(ApiError::not_found(format!(
            "No documentation file {file}; open /docs"
        )));
    };
    let mut response = (StatusCode::OK, Body::from(found.bytes.into_owned())).into_response();
    if let Ok(content_type) = HeaderValue::from_str(&found.content_type) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    if found.gzpipped {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}
