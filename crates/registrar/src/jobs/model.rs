//! Job records: kinds, states and the rows the store keeps for each queued request.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// One enrollment request: one student, one period, one or more groups, all or nothing.
    Inscription,
    /// A list of independent enrollment requests, processed in order.
    Bulk,
    /// A no-op job that proves a worker consumes the queue.
    HealthCheck,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inscription => "inscription",
            Self::Bulk => "bulk",
            Self::HealthCheck => "health_check",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inscription" => Some(Self::Inscription),
            "bulk" => Some(Self::Bulk),
            "health_check" => Some(Self::HealthCheck),
            _ => None,
        }
    }
}

/// Job states with the names Celery clients know. A job that ran to completion is `Success`
/// even when the enrollment was rejected; the business outcome is in `result.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Pending,
    Started,
    Progress,
    /// Waiting for `run_at` after a transient failure.
    Retry,
    Success,
    Failure,
    Revoked,
}

impl JobState {
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Started,
        Self::Progress,
        Self::Retry,
        Self::Success,
        Self::Failure,
        Self::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Started => "STARTED",
            Self::Progress => "PROGRESS",
            Self::Retry => "RETRY",
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
            Self::Revoked => "REVOKED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Self::Pending),
            "STARTED" => Some(Self::Started),
            "PROGRESS" => Some(Self::Progress),
            "RETRY" => Some(Self::Retry),
            "SUCCESS" => Some(Self::Success),
            "FAILURE" => Some(Self::Failure),
            "REVOKED" => Some(Self::Revoked),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failure | Self::Revoked)
    }
}

/// A job to insert, with the per-group view ids that async-by-groups hands out.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub task_id: String,
    pub kind: JobKind,
    pub payload: Value,
    pub correlation_id: String,
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// `(view_id, codigo_grupo)` pairs in request order.
    pub group_views: Vec<(String, String)>,
}

/// A stored job. Times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub task_id: String,
    pub kind: JobKind,
    pub state: JobState,
    pub payload: Value,
    pub meta: Option<Value>,
    pub result: Option<Value>,
    pub correlation_id: String,
    pub request_id: Option<String>,
    pub attempts: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
}

/// The target of a task id: a job, or one group's view of a request-level job.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskRef {
    Job(Job),
    GroupView { job: Job, codigo_grupo: String },
}

/// The new state of a job after a worker step, written with a lease check.
#[derive(Debug, Clone, PartialEq)]
pub struct JobUpdate {
    pub state: JobState,
    pub meta: Option<Value>,
    pub result: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    Revoked,
    AlreadyFinished(JobState),
    NotFound,
}

/// Counts of jobs by state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobCounts {
    pub pending: i64,
    pub started: i64,
    pub progress: i64,
    pub retry: i64,
    pub success: i64,
    pub failure: i64,
    pub revoked: i64,
}

impl JobCounts {
    pub fn get(&self, state: JobState) -> i64 {
        match state {
            JobState::Pending => self.pending,
            JobState::Started => self.started,
            JobState::Progress => self.progress,
            JobState::Retry => self.retry,
            JobState::Success => self.success,
            JobState::Failure => self.failure,
            JobState::Revoked => self.revoked,
        }
    }

    pub fn add(&mut self, state: JobState, n: i64) {
        match state {
            JobState::Pending => self.pending += n,
            JobState::Started => self.started += n,
            JobState::Progress => self.progress += n,
            JobState::Retry => self.retry += n,
            JobState::Success => self.success += n,
            JobState::Failure => self.failure += n,
            JobState::Revoked => self.revoked += n,
        }
    }
}
