//! The saga's participants outside the database: a billing service that assesses and
//! cancels fees, and a service notified of each completed enrollment. Each is an HTTP
//! endpoint set in configuration.
//!
//! Every call carries `Idempotency-Key: <saga_id>:<step>`, so a retried call, from this
//! process or from the one that resumes the saga after a crash, never charges twice, and
//! the request's `X-Correlation-ID` and `X-Request-ID`.
//!
//! The calls:
//! - `POST {BILLING_URL}/charges`: 2xx accepts the fee; 400, 402, 409 and 422 decline it (a
//!   business response, not an outage); anything else is a failure to retry.
//! - `POST {BILLING_URL}/charges/cancel`: 2xx or 404 (nothing to cancel) succeeds.
//! - `POST {NOTIFICATION_URL}/notifications`: 2xx succeeds.

use std::time::Duration;

use serde_json::json;

use super::model::{ASSESS_FEE, SEND_CONFIRMATION, Saga};

/// Builds the outbound idempotency key of one saga step.
pub fn step_key(saga_id: &str, step: &str) -> String {
    format!("{saga_id}:{step}")
}

/// The step name under which a fee cancellation is sent.
pub const CANCEL_FEE: &str = "cancel_fee";

/// The failure of a participant call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The participant declined; retrying does not change that.
    Declined { status: u16, reason: String },
    /// The participant could not be reached or failed; a retry may pass.
    Failed(String),
}

impl CallError {
    /// Whether the breaker around the participant should count this as a failure.
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Failed(_))
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Declined { status, reason } => write!(f, "declined with {status}: {reason}"),
            Self::Failed(reason) => f.write_str(reason),
        }
    }
}

#[derive(Clone)]
pub struct Participants {
    client: reqwest::Client,
    billing: Option<String>,
    notification: Option<String>,
}

impl Participants {
    /// `timeout` bounds each call; the breakers apply their own limit on top.
    pub fn new(billing: Option<String>, notification: Option<String>, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .unwrap_or_default();
        let trim = |u: Option<String>| u.map(|u| u.trim_end_matches('/').to_owned());
        Self {
            client,
            billing: trim(billing),
            notification: trim(notification),
        }
    }

    pub fn has_billing(&self) -> bool {
        self.billing.is_some()
    }

    pub fn has_notification(&self) -> bool {
        self.notification.is_some()
    }

    pub async fn charge(&self, saga: &Saga) -> Result<(), CallError> {
        let Some(base) = &self.billing else {
            return Ok(());
        };
        let body = json!({
            "saga_id": saga.saga_id,
            "registro_academico": saga.registro_academico,
            "codigo_periodo": saga.codigo_periodo,
            "codigo_inscripcion": saga.codigo_inscripcion,
            "grupos": saga.added_grupos,
        });
        self.post(&format!("{base}/charges"), saga, ASSESS_FEE, &body, false)
            .await
    }

    pub async fn cancel_charge(&self, saga: &Saga) -> Result<(), CallError> {
        let Some(base) = &self.billing else {
            return Ok(());
        };
        let body = json!({
            "saga_id": saga.saga_id,
            "charge_key": step_key(&saga.saga_id, ASSESS_FEE),
        });
        self.post(
            &format!("{base}/charges/cancel"),
            saga,
            CANCEL_FEE,
            &body,
            true,
        )
        .await
    }

    pub async fn notify(&self, saga: &Saga) -> Result<(), CallError> {
        let Some(base) = &self.notification else {
            return Ok(());
        };
        let body = json!({
            "event": "inscription_confirmed",
            "saga_id": saga.saga_id,
            "registro_academico": saga.registro_academico,
            "codigo_periodo": saga.codigo_periodo,
            "codigo_inscripcion": saga.codigo_inscripcion,
            "grupos": saga.added_grupos,
        });
        self.post(
            &format!("{base}/notifications"),
            saga,
            SEND_CONFIRMATION,
            &body,
            false,
        )
        .await
    }

    async fn post(
        &self,
        url: &str,
        saga: &Saga,
        step: &str,
        body: &serde_json::Value,
        not_found_is_success: bool,
    ) -> Result<(), CallError> {
        let mut request = self
            .client
            .post(url)
            .header("Idempotency-Key", step_key(&saga.saga_id, step))
            .header("X-Correlation-ID", &saga.correlation_id)
            .json(body);
        if let Some(request_id) = &saga.request_id {
            request = request.header("X-Request-ID", request_id);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CallError::Failed(describe(&e)))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(()),
            404 if not_found_is_success => Ok(()),
            // Only these are business responses. Any other 4xx (a wrong path, a refused
            // credential) is a fault to retry and count against the breaker.
            400 | 402 | 409 | 422 => {
                let text = response.text().await.unwrap_or_default();
                Err(CallError::Declined {
                    status,
                    reason: text.chars().take(200).collect(),
                })
            }
            _ => Err(CallError::Failed(format!("responded {status}"))),
        }
    }
}

/// Names the kind of transport failure without echoing URLs or bodies.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    }
}
