//! Following queued jobs to the end by polling their status, and counting how they ended.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use goose::prelude::*;
use serde_json::{Value, json};

use crate::invariants::{JobOutcome, JobRecord, classify};
use crate::request::{Call, Origin, RunContext, send};

pub const STATUS_ONE: &str = "status one";
pub const STATUS_MULTIPLE: &str = "status multiple";

/// Polls `GET /api/v1/queue/tasks/{id}/status` until the job is finished or the poll
/// deadline passes. A 404 is a valid response (an id the server does not know) and ends the
/// job as a failure.
pub async fn wait_one(
    user: &mut GooseUser,
    ctx: &RunContext,
    origin: Origin,
    task_id: &str,
) -> JobOutcome {
    let path = format!("/api/v1/queue/tasks/{task_id}/status");
    while ctx.may_poll() {
        let reply = send(
            user,
            ctx,
            origin,
            Call {
                label: STATUS_ONE,
                method: GooseMethod::Get,
                path: &path,
                body: None,
                headers: &[],
                expected: &[200, 404],
            },
        )
        .await;
        if reply.status == Some(404) {
            return JobOutcome::Failure {
                reason: "TASK_NOT_FOUND".into(),
            };
        }
        if let Some(outcome) = reply.json().as_ref().and_then(classify) {
            return outcome;
        }
        tokio::time::sleep(ctx.poll_interval).await;
    }
    JobOutcome::Unfinished
}

/// Combines the outcomes of the group views of one job. Returns `None` while any view is
/// unfinished; views that disagree are a failure, because one job enrolls all its groups or
/// none.
pub fn combine_views(items: &[Value]) -> Option<JobOutcome> {
    let outcomes: Vec<JobOutcome> = items.iter().map(classify).collect::<Option<_>>()?;
    let first = outcomes.first()?.clone();
    if outcomes.iter().all(|o| *o == first) {
        Some(first)
    } else {
        Some(JobOutcome::Failure {
            reason: "group views of one job disagree".into(),
        })
    }
}

/// Polls `POST /api/v1/queue/tasks/status/multiple` with the group task ids of one job until
/// every view is finished or the poll deadline passes.
pub async fn wait_views(
    user: &mut GooseUser,
    ctx: &RunContext,
    origin: Origin,
    task_ids: &[String],
) -> JobOutcome {
    let mut outcome = JobOutcome::Unfinished;
    wait_jobs(user, ctx, origin, &[task_ids.to_vec()], |_, o| outcome = o).await;
    outcome
}

/// Polls `POST /api/v1/queue/tasks/status/multiple` with the group task ids of every
/// unfinished job in one request, until every job is finished or the poll deadline passes.
/// Calls `finished` with the job's index once per job, as soon as it is seen finished, and
/// with [`JobOutcome::Unfinished`] for the jobs left at the deadline.
pub async fn wait_jobs(
    user: &mut GooseUser,
    ctx: &RunContext,
    origin: Origin,
    jobs: &[Vec<String>],
    mut finished: impl FnMut(usize, JobOutcome),
) {
    let mut open: Vec<usize> = (0..jobs.len()).collect();
    while !open.is_empty() && ctx.may_poll() {
        let ids: Vec<&str> = open
            .iter()
            .flat_map(|&job| jobs[job].iter().map(String::as_str))
            .collect();
        let body = json!(ids);
        let reply = send(
            user,
            ctx,
            origin,
            Call {
                label: STATUS_MULTIPLE,
                method: GooseMethod::Post,
                path: "/api/v1/queue/tasks/status/multiple",
                body: Some(&body),
                headers: &[],
                expected: &[200],
            },
        )
        .await;

        if let Some(Value::Array(items)) = reply.json() {
            let by_id: HashMap<&str, &Value> = items
                .iter()
                .filter_map(|item| Some((item["task_id"].as_str()?, item)))
                .collect();
            open.retain(|&job| {
                let views: Option<Vec<Value>> = jobs[job]
                    .iter()
                    .map(|id| by_id.get(id.as_str()).map(|item| (*item).clone()))
                    .collect();
                match views.as_deref().and_then(combine_views) {
                    Some(outcome) => {
                        finished(job, outcome);
                        false
                    }
                    None => true,
                }
            });
        }
        if !open.is_empty() {
            tokio::time::sleep(ctx.poll_interval).await;
        }
    }
    for job in open {
        finished(job, JobOutcome::Unfinished);
    }
}

/// Job outcomes of one scenario, counted per enrollment request.
#[derive(Debug, Clone, Default)]
pub struct JobTally {
    pub requested: usize,
    pub success: usize,
    /// Business errors by `error_code`.
    pub business_errors: BTreeMap<String, usize>,
    /// Failures by reason.
    pub failures: BTreeMap<String, usize>,
    /// Requests whose enqueue call failed, or that were never sent because time was up.
    pub not_enqueued: usize,
    /// Reasons that requests produced no job, with their counts.
    pub not_enqueued_reasons: BTreeMap<String, usize>,
    pub unfinished: usize,
    /// From the first enqueue request sent to the last job seen finished.
    pub end_to_end: Option<Duration>,
    /// Jobs seen finished in each second of the run; index `i` covers `[i, i + 1)`.
    pub finished_per_second: Vec<u64>,
}

impl JobTally {
    /// Returns SUCCESS enrollments per second, end to end.
    pub fn completed_per_second(&self) -> Option<f64> {
        let seconds = self.end_to_end?.as_secs_f64();
        (seconds > 0.0).then(|| self.success as f64 / seconds)
    }
}

#[derive(Default)]
struct LogState {
    records: Vec<JobRecord>,
    not_enqueued: BTreeMap<String, usize>,
    first_sent: Option<Instant>,
    /// When each finished job was seen finished.
    finished_at: Vec<Instant>,
}

/// The jobs of one scenario, shared by its users.
#[derive(Default)]
pub struct JobLog {
    state: Mutex<LogState>,
}

impl JobLog {
    /// Notes that an enqueue request is about to be sent.
    pub fn sending(&self) {
        let mut state = self.state.lock().expect("job log lock");
        state.first_sent.get_or_insert_with(Instant::now);
    }

    /// Notes a request that produced no job, with the reason.
    pub fn not_enqueued(&self, reason: String) {
        let mut state = self.state.lock().expect("job log lock");
        *state.not_enqueued.entry(reason).or_default() += 1;
    }

    pub fn finished(&self, record: JobRecord) {
        let mut state = self.state.lock().expect("job log lock");
        if record.outcome != JobOutcome::Unfinished {
            state.finished_at.push(Instant::now());
        }
        state.records.push(record);
    }

    /// Takes the records and returns them with their tally; `run_start` is the start of the
    /// run's timeline.
    pub fn take_parts(&self, run_start: Instant) -> (Vec<JobRecord>, JobTally) {
        let state = std::mem::take(&mut *self.state.lock().expect("job log lock"));
        let last_finished = state.finished_at.iter().max().copied();
        let mut finished_per_second = Vec::new();
        for at in &state.finished_at {
            let second = at.saturating_duration_since(run_start).as_secs() as usize;
            if finished_per_second.len() <= second {
                finished_per_second.resize(second + 1, 0);
            }
            finished_per_second[second] += 1;
        }
        let mut tally = JobTally {
            not_enqueued: state.not_enqueued.values().sum(),
            end_to_end: state
                .first_sent
                .zip(last_finished)
                .map(|(first, last)| last.saturating_duration_since(first)),
            finished_per_second,
            not_enqueued_reasons: state.not_enqueued,
            ..JobTally::default()
        };
        tally.requested = state.records.len() + tally.not_enqueued;
        for record in &state.records {
            match &record.outcome {
                JobOutcome::Success => tally.success += 1,
                JobOutcome::BusinessError { code } => {
                    *tally.business_errors.entry(code.clone()).or_default() += 1;
                }
                JobOutcome::Failure { reason } => {
                    *tally.failures.entry(reason.clone()).or_default() += 1;
                }
                JobOutcome::Unfinished => tally.unfinished += 1,
            }
        }
        (state.records, tally)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn views_combine_when_all_agree() {
        let done = json!({"status": "SUCCESS", "result": {"status": "SUCCESS"}});
        let pending = json!({"status": "PENDING"});
        let failed = json!({"status": "FAILURE"});
        assert_eq!(
            combine_views(&[done.clone(), done.clone()]),
            Some(JobOutcome::Success)
        );
        assert_eq!(combine_views(&[done.clone(), pending]), None);
        assert!(matches!(
            combine_views(&[done, failed]),
            Some(JobOutcome::Failure { reason }) if reason.contains("disagree")
        ));
        assert_eq!(combine_views(&[]), None);
    }

    #[test]
    fn log_tallies_outcomes() {
        let start = Instant::now();
        let log = JobLog::default();
        log.sending();
        let record = |outcome| JobRecord {
            registro_academico: "A".into(),
            codigo_periodo: "P".into(),
            grupos: vec!["G".into()],
            outcome,
        };
        log.finished(record(JobOutcome::Success));
        log.finished(record(JobOutcome::BusinessError {
            code: "GRUPO_SIN_CUPO".into(),
        }));
        log.finished(record(JobOutcome::Unfinished));
        log.not_enqueued("expected 202, got 500".into());
        let (records, tally) = log.take_parts(start);
        assert_eq!(records.len(), 3);
        assert_eq!(tally.requested, 4);
        assert_eq!(tally.success, 1);
        assert_eq!(tally.business_errors["GRUPO_SIN_CUPO"], 1);
        assert_eq!(tally.unfinished, 1);
        assert_eq!(tally.not_enqueued, 1);
        assert_eq!(tally.not_enqueued_reasons["expected 202, got 500"], 1);
        assert!(tally.end_to_end.is_some());
        assert_eq!(tally.finished_per_second, vec![2]);
    }
}
