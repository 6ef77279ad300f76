//! The API error type and the contract's error envelope:
//! `{error, error_code, message, details, timestamp, path, request_id}`.
//!
//! Handlers return [`ApiError`]; its response carries the error as an extension, and the
//! envelope middleware, which has the path and the request id, writes the body. Responses
//! that axum itself produces (unknown route, wrong method) get the same envelope there.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::enrollment::EnrollError;
use crate::domain::error::{DomainError, ErrorCode, FieldError, validation_details};
use crate::store::StoreError;

/// Field errors listed in one response.
pub const MAX_REPORTED_ERRORS: usize = 20;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub status: StatusCode,
    pub message: String,
    pub details: Value,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>, details: Value) -> Self {
        Self {
            code,
            status: code.status(),
            message: message.into(),
            details,
            headers: Vec::new(),
        }
    }

    /// A 422 listing the field errors. At most [`MAX_REPORTED_ERRORS`] are listed, so that
    /// a huge invalid body cannot produce a larger response; `total_errors` counts them all.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let shown = &errors[..errors.len().min(MAX_REPORTED_ERRORS)];
        let mut message = shown
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        if errors.len() > shown.len() {
            message.push_str(&format!("; and {} more", errors.len() - shown.len()));
        }
        let mut details = validation_details(shown);
        details["total_errors"] = json!(errors.len());
        Self::new(ErrorCode::ValidationError, message, details)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message, json!({}))
    }

    /// Builds the 503 for a store that cannot be reached, with a hint to retry.
    pub fn unavailable(retry_after_seconds: u32) -> Self {
        let mut err = Self::new(
            ErrorCode::ServiceUnavailable,
            "The database is busy or unreachable; retry the request shortly",
            json!({ "retry_after_seconds": retry_after_seconds }),
        );
        if let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
            err.headers.push((header::RETRY_AFTER, value));
        }
        err
    }

    pub fn internal() -> Self {
        Self::new(
            ErrorCode::InternalServerError,
            "An unexpected error occurred; report the request_id to the operators",
            json!({}),
        )
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        Self::new(e.code, e.message, e.details)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if let Some(constraint) = e.as_constraint_error() {
            tracing::warn!(error = %e, "request rejected by a database constraint");
            return constraint.into();
        }
        if e.is_transient() {
            tracing::warn!(error = %e, "store unavailable; responded 503");
            return Self::unavailable(1);
        }
        tracing::error!(error = %e, "store error");
        Self::internal()
    }
}

impl From<EnrollError> for ApiError {
    fn from(e: EnrollError) -> Self {
        match e {
            EnrollError::Rejected(rejection) => rejection.into(),
            EnrollError::Store(store) => store.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        for (name, value) in &self.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// Builds the envelope body for `error` on `path`.
pub fn envelope(error: &ApiError, path: &str, request_id: &str) -> Value {
    json!({
        "error": true,
        "error_code": error.code.as_str(),
        "message": error.message,
        "details": error.details,
        "timestamp": crate::clock::now_rfc3339(),
        "path": path,
        "request_id": request_id,
    })
}
