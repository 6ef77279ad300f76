//! `/dashboard`: one self-contained HTML page for operators, with its script and styles
//! inline. It reads the health, queue, audit and resilience endpoints and refreshes itself.

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse};

/// The page, compiled into the binary.
const PAGE: &str = include_str!("page.html");

/// Only this page's own inline script and styles, and requests to this server, are allowed,
/// so the page cannot load anything from elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:";

/// The operators' dashboard: enrollments and rejections per minute, the queue, workers,
/// circuit breakers, sagas and the latest audit events.
#[utoipa::path(get, path = "/dashboard", tag = "system",
    params(("refresh" = Option<u32>, Query, description = "Refresh period in seconds, at least 1; default 5")),
    responses((status = 200, description = "The HTML page", content_type = "text/html")))]
pub async fn page() -> impl IntoResponse {
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        )],
        Html(PAGE),
    )
}
