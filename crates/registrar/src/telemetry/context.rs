//! The ids of the request or job being served, readable anywhere inside it: audit events
//! take them, and outbound HTTP calls send them on as headers.
//!
//! The HTTP middleware scopes them around each request and the worker around each job. They
//! are task-local, so a `tokio::spawn` inside a request does not see them unless the spawned
//! future is wrapped in [`scope`] again.

use std::future::Future;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// The header carrying the request id, read and echoed by the API.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The header carrying the correlation id, read and echoed by the API.
pub const CORRELATION_ID_HEADER: &str = "x-correlation-id";

/// The ids of one request, or of the job that runs a queued request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIds {
    pub correlation_id: String,
    /// Absent for jobs queued before request ids were stored with them.
    pub request_id: Option<String>,
}

tokio::task_local! {
    static CURRENT: RequestIds;
}

/// Runs `future` with `ids` as the current ids.
pub async fn scope<F: Future>(ids: RequestIds, future: F) -> F::Output {
    CURRENT.scope(ids, future).await
}

/// Returns the ids of the request or job this task serves, if any.
pub fn current() -> Option<RequestIds> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Returns the current ids as `X-Request-ID` and `X-Correlation-ID` headers, for outbound
/// HTTP calls, so the called service can log the same ids. Empty outside a request or job.
pub fn outbound_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(ids) = current() else {
        return headers;
    };
    let pairs = [
        (CORRELATION_ID_HEADER, Some(ids.correlation_id)),
        (REQUEST_ID_HEADER, ids.request_id),
    ];
    for (name, value) in pairs {
        // The ids were validated or generated from a safe alphabet, so conversion only fails
        // for values this process never produces.
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outbound_headers_carry_scoped_ids() {
        let ids = RequestIds {
            correlation_id: "corr_1234abcd".into(),
            request_id: Some("abcd1234".into()),
        };
        let headers = scope(ids, async { outbound_headers() }).await;
        assert_eq!(headers["x-correlation-id"], "corr_1234abcd");
        assert_eq!(headers["x-request-id"], "abcd1234");
    }

    #[test]
    fn outbound_headers_empty_outside_scope() {
        assert!(outbound_headers().is_empty());
    }
}
