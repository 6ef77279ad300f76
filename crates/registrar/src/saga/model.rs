//! The saga log of one enrollment request: its status, its steps and what a compensation
//! has to undo.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    Pending,
    Executing,
    Completed,
    Compensating,
    Compensated,
    /// A compensation kept failing; an operator must finish it.
    Failed,
}

impl SagaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Executing => "executing",
            Self::Completed => "completed",
            Self::Compensating => "compensating",
            Self::Compensated => "compensated",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "executing" => Some(Self::Executing),
            "completed" => Some(Self::Completed),
            "compensating" => Some(Self::Compensating),
            "compensated" => Some(Self::Compensated),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Executing,
        Self::Completed,
        Self::Compensating,
        Self::Compensated,
        Self::Failed,
    ];

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Compensated | Self::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Executing,
    Completed,
    Compensating,
    Compensated,
    Failed,
    /// No participant is configured for the step.
    Skipped,
}

/// Step names. The enrollment transaction's steps all commit together.
pub const VALIDATE: &str = "validate_student_and_period";
pub const RESERVE: &str = "reserve_grupos";
pub const CREATE_INSCRIPTION: &str = "create_inscription";
pub const COMMIT_GRUPOS: &str = "commit_grupo_inscriptions";
pub const ASSESS_FEE: &str = "assess_fee";
pub const SEND_CONFIRMATION: &str = "send_confirmation";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaStep {
    pub step_id: String,
    pub name: String,
    pub status: StepStatus,
    pub error: Option<String>,
    /// Epoch seconds.
    pub executed_at: Option<f64>,
    pub compensated_at: Option<f64>,
    pub retry_count: u32,
    /// Attempts of the step's compensation that failed.
    #[serde(default)]
    pub compensation_retry_count: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Saga {
    pub saga_id: String,
    /// The job that runs the saga; `None` for a synchronous request.
    pub task_id: Option<String>,
    pub correlation_id: String,
    pub request_id: Option<String>,
    pub registro_academico: String,
    pub codigo_periodo: String,
    pub grupos: Vec<String>,
    pub codigo_inscripcion: Option<String>,
    /// Whether the enrollment transaction created the inscription row.
    pub created_inscripcion: bool,
    /// The groups the enrollment transaction added; a compensation withdraws these only.
    pub added_grupos: Vec<String>,
    pub status: SagaStatus,
    pub steps: Vec<SagaStep>,
    /// The job result to write when the saga completes.
    pub result: Option<Value>,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
}

fn epoch_seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

impl Saga {
    pub fn step(&self, name: &str) -> Option<&SagaStep> {
        self.steps.iter().find(|s| s.name == name)
    }

    pub fn step_mut(&mut self, name: &str) -> Option<&mut SagaStep> {
        self.steps.iter_mut().find(|s| s.name == name)
    }

    /// Sets a step's status, stamping the time of execution or compensation.
    pub fn mark(&mut self, name: &str, status: StepStatus, error: Option<String>, now_ms: i64) {
        if let Some(step) = self.step_mut(name) {
            step.status = status;
            if error.is_some() {
                step.error = error;
            }
            match status {
                StepStatus::Completed | StepStatus::Failed => {
                    step.executed_at = Some(epoch_seconds(now_ms))
                }
                StepStatus::Compensated => step.compensated_at = Some(epoch_seconds(now_ms)),
                _ => {}
            }
        }
        self.updated_at = now_ms;
    }

    /// The steps the enrollment transaction ran, in order.
    pub fn transaction_step_names(&self) -> Vec<String> {
        let mut names = vec![
            VALIDATE.to_owned(),
            RESERVE.to_owned(),
            CREATE_INSCRIPTION.to_owned(),
        ];
        names.extend(self.grupos.iter().map(|g| format!("create_detail_{g}")));
        names.push(COMMIT_GRUPOS.to_owned());
        names
    }

    /// The shape the monitoring endpoint lists: the predecessor's keys plus the additive
    /// ones.
    pub fn to_json(&self) -> Value {
        json!({
            "saga_id": self.saga_id,
            "name": "inscription",
            "correlation_id": self.correlation_id,
            "main_task_id": self.task_id,
            "registro_academico": self.registro_academico,
            "codigo_periodo": self.codigo_periodo,
            "grupos": self.grupos,
            "codigo_inscripcion": self.codigo_inscripcion,
            "status": self.status.as_str(),
            "created_at": epoch_seconds(self.created_at),
            "started_at": epoch_seconds(self.created_at),
            "completed_at": self.completed_at.map(epoch_seconds),
            "error": self.error,
            "error_code": self.error_code,
            "steps": self.steps,
        })
    }
}

/// Builds the steps of a new saga: the transaction's steps with `tx_status`, then the fee
/// and the notification, `Pending` when their participant is configured and `Skipped`
/// otherwise.
pub fn initial_steps(
    saga_id: &str,
    grupos: &[String],
    tx_status: StepStatus,
    billing: bool,
    notification: bool,
    now_ms: i64,
) -> Vec<SagaStep> {
    let mut names = vec![
        VALIDATE.to_owned(),
        RESERVE.to_owned(),
        CREATE_INSCRIPTION.to_owned(),
    ];
    names.extend(grupos.iter().map(|g| format!("create_detail_{g}")));
    names.push(COMMIT_GRUPOS.to_owned());
    let tx_steps = names.len();
    names.push(ASSESS_FEE.to_owned());
    names.push(SEND_CONFIRMATION.to_owned());
    names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let status = if i < tx_steps {
                tx_status
            } else if (name == ASSESS_FEE && billing) || (name == SEND_CONFIRMATION && notification)
            {
                StepStatus::Pending
            } else {
                StepStatus::Skipped
            };
            let executed_at = matches!(status, StepStatus::Completed | StepStatus::Compensated)
                .then(|| epoch_seconds(now_ms));
            SagaStep {
                step_id: format!("{saga_id}_{i}"),
                name,
                status,
                error: None,
                executed_at,
                compensated_at: (status == StepStatus::Compensated).then(|| epoch_seconds(now_ms)),
                retry_count: 0,
                compensation_retry_count: 0,
            }
        })
        .collect()
}

/// Filters of the saga listing.
#[derive(Debug, Clone, Default)]
pub struct SagaQuery {
    pub status: Option<SagaStatus>,
    pub limit: i64,
}

/// Counts for the statistics endpoint.
#[derive(Debug, Clone, Default)]
pub struct SagaCounts {
    pub by_status: Vec<(String, i64)>,
    pub oldest_created_at: Option<i64>,
}
