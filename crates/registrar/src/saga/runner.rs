//! Drives a saga from its log: the fee assessment, the notification, and the compensation
//! when the fee is declined or cannot be assessed. Every step's outcome is written before
//! the next starts, so the next run resumes a run that died anywhere from the log. Its
//! participant calls repeat with the same idempotency key, and the withdrawal of the
//! enrollment commits in one transaction with the saga's final status.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tracing::{Instrument, info, warn};

use super::model::{ASSESS_FEE, SEND_CONFIRMATION, Saga, SagaStatus, StepStatus, initial_steps};
use super::participants::{CallError, Participants};
use crate::audit::{self, AuditEvent, AuditEventType};
use crate::clock;
use crate::domain::enrollment::{EnrollmentOutcome, EnrollmentRequest};
use crate::domain::error::{DomainError, ErrorCode};
use crate::jobs::model::{JobState, JobUpdate};
use crate::jobs::result::{enrollment_result, error_result};
use crate::resilience::breaker::{BreakerError, Breakers};
use crate::store::{JobWrite, Store, StoreError};
use crate::telemetry::context::{self, RequestIds};
use crate::telemetry::metrics as names;

/// The state of a saga after a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The saga ended: completed, compensated, or failed for an operator.
    Finished(SagaStatus),
    /// A participant call failed and may pass later; run the saga again after the delay.
    RetryLater(Duration),
    /// The job's lease was lost: another worker owns the saga now.
    LeaseLost,
}

/// The job a saga runs in, when it runs in one.
#[derive(Debug, Clone, Copy)]
pub struct JobLease<'a> {
    pub task_id: &'a str,
    pub owner: &'a str,
}

#[derive(Clone)]
pub struct SagaRunner {
    store: Arc<dyn Store>,
    participants: Participants,
    breakers: Breakers,
    /// Attempts of a participant call (and of each compensation) before giving up.
    attempts: u32,
    /// Base delay between attempts; doubled per attempt up to `max_delay`.
    base_delay: Duration,
    max_delay: Duration,
}

/// A participant step that did not succeed.
enum StepFailure {
    Declined(String),
    Failed(String),
    /// The breaker rejected the call without making it.
    Open(Duration),
}

impl SagaRunner {
    pub fn new(
        store: Arc<dyn Store>,
        participants: Participants,
        breakers: Breakers,
        attempts: u32,
        base_delay: Duration,
        max_delay: Duration,
    ) -> Self {
        Self {
            store,
            participants,
            breakers,
            attempts: attempts.max(1),
            base_delay,
            max_delay,
        }
    }

    /// Returns whether a billing service is configured.
    pub fn has_billing(&self) -> bool {
        self.participants.has_billing()
    }

    /// Returns whether any participant is configured, so that sagas have steps after the
    /// enrollment transaction.
    pub fn has_participants(&self) -> bool {
        self.participants.has_billing() || self.participants.has_notification()
    }

    /// Builds the saga of an enrollment that the transaction about to commit made:
    /// `Executing` when participants remain to be called, `Completed` otherwise, with the
    /// job result it ends with.
    pub fn saga_for_enrollment(
        &self,
        ids: &SagaIds<'_>,
        request: &EnrollmentRequest,
        outcome: &EnrollmentOutcome,
    ) -> Saga {
        let now_ms = clock::now_ms();
        let added: Vec<String> = outcome
            .new_details
            .iter()
            .map(|d| d.codigo_grupo.clone())
            .collect();
        // A request that added nothing has no fee to assess.
        let billing = self.participants.has_billing() && !added.is_empty();
        let notification = self.participants.has_notification() && !added.is_empty();
        let saga_id = new_saga_id();
        let steps = initial_steps(
            &saga_id,
            &request.grupos,
            StepStatus::Completed,
            billing,
            notification,
            now_ms,
        );
        let status = if billing || notification {
            SagaStatus::Executing
        } else {
            SagaStatus::Completed
        };
        Saga {
            saga_id,
            task_id: ids.task_id.map(str::to_owned),
            correlation_id: ids.correlation_id.to_owned(),
            request_id: ids.request_id.map(str::to_owned),
            registro_academico: request.registro_academico.clone(),
            codigo_periodo: request.codigo_periodo.clone(),
            grupos: request.grupos.clone(),
            codigo_inscripcion: Some(outcome.inscripcion.codigo_inscripcion.clone()),
            created_inscripcion: outcome.created_inscripcion,
            added_grupos: added,
            status,
            steps,
            result: Some(enrollment_result(&Ok(outcome.clone()))),
            error: None,
            error_code: None,
            created_at: now_ms,
            updated_at: now_ms,
            completed_at: (status == SagaStatus::Completed).then_some(now_ms),
        }
    }

    /// Builds the saga of an enrollment the transaction rejected: the transaction rolled
    /// back, so the steps before the failing one are compensated and the saga too.
    pub fn saga_for_rejection(
        &self,
        ids: &SagaIds<'_>,
        request: &EnrollmentRequest,
        rejection: &DomainError,
    ) -> Saga {
        let now_ms = clock::now_ms();
        let saga_id = new_saga_id();
        let mut steps = initial_steps(
            &saga_id,
            &request.grupos,
            StepStatus::Pending,
            false,
            false,
            now_ms,
        );
        let failing = failing_step(rejection, &request.grupos);
        for (i, step) in steps.iter_mut().enumerate() {
            if step.status != StepStatus::Pending {
                continue;
            }
            if i < failing {
                step.status = StepStatus::Compensated;
                step.executed_at = Some(now_ms as f64 / 1000.0);
                step.compensated_at = Some(now_ms as f64 / 1000.0);
            } else if i == failing {
                step.status = StepStatus::Failed;
                step.error = Some(rejection.code.as_str().to_owned());
                step.executed_at = Some(now_ms as f64 / 1000.0);
            } else {
                step.status = StepStatus::Skipped;
            }
        }
        Saga {
            saga_id,
            task_id: ids.task_id.map(str::to_owned),
            correlation_id: ids.correlation_id.to_owned(),
            request_id: ids.request_id.map(str::to_owned),
            registro_academico: request.registro_academico.clone(),
            codigo_periodo: request.codigo_periodo.clone(),
            grupos: request.grupos.clone(),
            codigo_inscripcion: None,
            created_inscripcion: false,
            added_grupos: Vec::new(),
            status: SagaStatus::Compensated,
            steps,
            result: None,
            error: Some(rejection.message.clone()),
            error_code: Some(rejection.code.as_str().to_owned()),
            created_at: now_ms,
            updated_at: now_ms,
            completed_at: Some(now_ms),
        }
    }

    /// Runs the saga's remaining steps once. With a job, the job's final result is written
    /// with the saga's final status.
    pub async fn advance(
        &self,
        saga: &mut Saga,
        job: Option<JobLease<'_>>,
    ) -> Result<Progress, StoreError> {
        match saga.status {
            SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Failed => {
                return self.finish(saga, false, job).await;
            }
            SagaStatus::Compensating => return self.compensate(saga, job).await,
            SagaStatus::Pending | SagaStatus::Executing => {}
        }

        if saga
            .step(ASSESS_FEE)
            .is_some_and(|s| matches!(s.status, StepStatus::Pending | StepStatus::Executing))
        {
            match self.call("billing", self.participants.charge(saga)).await {
                Ok(()) => {
                    saga.mark(ASSESS_FEE, StepStatus::Completed, None, clock::now_ms());
                    self.store.save_saga(saga).await?;
                    info!(saga_id = %saga.saga_id, "fee assessed");
                }
                Err(StepFailure::Declined(reason)) => {
                    warn!(saga_id = %saga.saga_id, reason = %reason, "fee declined; compensating");
                    saga.mark(
                        ASSESS_FEE,
                        StepStatus::Failed,
                        Some(reason.clone()),
                        clock::now_ms(),
                    );
                    self.start_compensation(saga, ErrorCode::FeeRejected, reason);
                    self.store.save_saga(saga).await?;
                    return self.compensate(saga, job).await;
                }
                Err(failure) => {
                    let (reason, wait) = describe_failure(&failure);
                    let tries = self.count_try(saga, ASSESS_FEE, &reason);
                    if tries >= self.attempts {
                        warn!(saga_id = %saga.saga_id, reason = %reason, tries, "fee assessment gave up; compensating");
                        saga.mark(
                            ASSESS_FEE,
                            StepStatus::Failed,
                            Some(reason.clone()),
                            clock::now_ms(),
                        );
                        self.start_compensation(saga, ErrorCode::FeeAssessmentFailed, reason);
                        self.store.save_saga(saga).await?;
                        return self.compensate(saga, job).await;
                    }
                    self.store.save_saga(saga).await?;
                    return Ok(Progress::RetryLater(
                        wait.unwrap_or_else(|| self.delay(tries)),
                    ));
                }
            }
        }

        if saga
            .step(SEND_CONFIRMATION)
            .is_some_and(|s| s.status == StepStatus::Pending)
        {
            // The notification is not critical: its failure is recorded and the saga goes on.
            match self
                .call("notification", self.participants.notify(saga))
                .await
            {
                Ok(()) => saga.mark(
                    SEND_CONFIRMATION,
                    StepStatus::Completed,
                    None,
                    clock::now_ms(),
                ),
                Err(failure) => {
                    let (reason, _) = describe_failure(&failure);
                    warn!(saga_id = %saga.saga_id, reason = %reason, "notification failed; the enrollment is kept");
                    saga.mark(
                        SEND_CONFIRMATION,
                        StepStatus::Failed,
                        Some(reason),
                        clock::now_ms(),
                    );
                }
            }
        }

        saga.status = SagaStatus::Completed;
        saga.completed_at = Some(clock::now_ms());
        saga.updated_at = clock::now_ms();
        self.finish(saga, false, job).await
    }

    fn start_compensation(&self, saga: &mut Saga, code: ErrorCode, reason: String) {
        saga.status = SagaStatus::Compensating;
        saga.error_code = Some(code.as_str().to_owned());
        saga.error = Some(reason);
        saga.updated_at = clock::now_ms();
    }

    /// Undoes the saga in reverse order: cancels the fee, then withdraws the enrollment in
    /// one transaction with the saga's `compensated` status.
    async fn compensate(
        &self,
        saga: &mut Saga,
        job: Option<JobLease<'_>>,
    ) -> Result<Progress, StoreError> {
        let fee_attempted = saga.step(ASSESS_FEE).is_some_and(|s| {
            matches!(
                s.status,
                StepStatus::Completed | StepStatus::Failed | StepStatus::Compensating
            )
        });
        if fee_attempted {
            match self
                .call("billing", self.participants.cancel_charge(saga))
                .await
            {
                Ok(()) => {
                    saga.mark(ASSESS_FEE, StepStatus::Compensated, None, clock::now_ms());
                }
                Err(StepFailure::Open(retry_after)) => {
                    // Nothing was called, so the attempt does not count: the cancellation
                    // waits for billing's breaker to admit it.
                    self.store.save_saga(saga).await?;
                    return Ok(Progress::RetryLater(retry_after));
                }
                Err(failure) => {
                    let (reason, wait) = describe_failure(&failure);
                    let tries = self.count_compensation_try(saga, &reason);
                    if tries >= self.attempts {
                        warn!(saga_id = %saga.saga_id, reason = %reason, "fee cancellation keeps failing; the saga needs an operator");
                        saga.status = SagaStatus::Failed;
                        saga.error_code =
                            Some(ErrorCode::SagaCompensationFailed.as_str().to_owned());
                        saga.error = Some(format!("cancelling the fee failed: {reason}"));
                        saga.completed_at = Some(clock::now_ms());
                        saga.updated_at = clock::now_ms();
                        return self.finish(saga, false, job).await;
                    }
                    self.store.save_saga(saga).await?;
                    return Ok(Progress::RetryLater(
                        wait.unwrap_or_else(|| self.delay(tries)),
                    ));
                }
            }
        }
        let now_ms = clock::now_ms();
        for name in saga.transaction_step_names() {
            saga.mark(&name, StepStatus::Compensated, None, now_ms);
        }
        saga.status = SagaStatus::Compensated;
        saga.completed_at = Some(now_ms);
        saga.updated_at = now_ms;
        self.finish(saga, true, job).await
    }

    /// Writes the saga's end, withdrawing the enrollment when asked, with the job's final
    /// result.
    async fn finish(
        &self,
        saga: &Saga,
        withdraw: bool,
        job: Option<JobLease<'_>>,
    ) -> Result<Progress, StoreError> {
        let update = JobUpdate {
            state: JobState::Success,
            meta: None,
            result: Some(job_result(saga)),
        };
        let write = job.map(|lease| JobWrite {
            task_id: lease.task_id,
            owner: lease.owner,
            update: &update,
            now_ms: clock::now_ms(),
        });
        if !self.store.finish_saga(saga, withdraw, write).await? {
            return Ok(Progress::LeaseLost);
        }
        info!(saga_id = %saga.saga_id, status = saga.status.as_str(), "saga finished");
        metrics::counter!(names::SAGA_OUTCOMES_TOTAL, "outcome" => saga.status.as_str())
            .increment(1);
        let event_type = match saga.status {
            SagaStatus::Completed => AuditEventType::SagaCompleted,
            SagaStatus::Failed => AuditEventType::SagaFailed,
            _ => AuditEventType::SagaCompensated,
        };
        audit::record(self.store.as_ref(), saga_event(saga, event_type, "finish")).await;
        if withdraw {
            // The enrollment was withdrawn: for the audit trail, the request was rejected.
            let mut event = saga_event(saga, AuditEventType::InscriptionFailed, "compensate");
            event.entity_type = "inscripcion".to_owned();
            event.entity_id = saga.codigo_inscripcion.clone();
            if let Some(grupo) = saga.added_grupos.first() {
                event = event.grupo(grupo);
            }
            audit::record(self.store.as_ref(), event).await;
        }
        Ok(Progress::Finished(saga.status))
    }

    async fn call(
        &self,
        breaker: &str,
        call: impl Future<Output = Result<(), CallError>>,
    ) -> Result<(), StepFailure> {
        let Some(breaker) = self.breakers.get(breaker) else {
            return call.await.map_err(step_failure);
        };
        match breaker.call_classified(call, CallError::is_outage).await {
            Ok(()) => Ok(()),
            Err(BreakerError::Open { retry_after, .. }) => Err(StepFailure::Open(retry_after)),
            Err(BreakerError::Timeout { after, .. }) => Err(StepFailure::Failed(format!(
                "timed out after {} ms",
                after.as_millis()
            ))),
            Err(BreakerError::Inner(e)) => Err(step_failure(e)),
        }
    }

    /// Returns the breakers of this process, for the monitoring endpoints.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    fn count_try(&self, saga: &mut Saga, step: &str, reason: &str) -> u32 {
        let now_ms = clock::now_ms();
        let Some(step) = saga.step_mut(step) else {
            return self.attempts;
        };
        step.retry_count += 1;
        step.error = Some(reason.to_owned());
        let tries = step.retry_count;
        saga.updated_at = now_ms;
        tries
    }

    fn count_compensation_try(&self, saga: &mut Saga, reason: &str) -> u32 {
        let now_ms = clock::now_ms();
        let Some(step) = saga.step_mut(ASSESS_FEE) else {
            return self.attempts;
        };
        step.status = StepStatus::Compensating;
        step.compensation_retry_count += 1;
        step.error = Some(reason.to_owned());
        let tries = step.compensation_retry_count;
        saga.updated_at = now_ms;
        tries
    }

    fn delay(&self, tries: u32) -> Duration {
        let factor = 2u32.saturating_pow(tries.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// Runs a saga in this task, waiting between attempts: for synchronous requests and for
    /// sagas recovered after a crash. A fee assessment that would wait longer than
    /// `patience` (an open breaker's recovery time, say) counts as failed for good; a
    /// compensation that would wait longer is left `compensating` for the recovery loop.
    /// Either way the caller gets an answer within bounded time.
    pub async fn run_to_end(
        &self,
        saga: &mut Saga,
        patience: Duration,
    ) -> Result<SagaStatus, StoreError> {
        loop {
            match self.advance(saga, None).await? {
                Progress::Finished(status) => return Ok(status),
                Progress::RetryLater(delay) if delay <= patience => tokio::time::sleep(delay).await,
                Progress::RetryLater(_) if saga.status == SagaStatus::Executing => {
                    warn!(saga_id = %saga.saga_id, "a participant stays unavailable; compensating");
                    saga.mark(
                        ASSESS_FEE,
                        StepStatus::Failed,
                        Some("unavailable for longer than the request can wait".to_owned()),
                        clock::now_ms(),
                    );
                    self.start_compensation(
                        saga,
                        ErrorCode::FeeAssessmentFailed,
                        "the billing service stayed unavailable".to_owned(),
                    );
                    self.store.save_saga(saga).await?;
                }
                // A compensation must finish, but not in this task: a wait beyond the
                // patience leaves it to the workers' recovery loop, which resumes it.
                Progress::RetryLater(delay) if delay <= patience => tokio::time::sleep(delay).await,
                Progress::RetryLater(_) => return Ok(saga.status),
                Progress::LeaseLost => return Ok(saga.status),
            }
        }
    }

    /// Resumes the sagas of synchronous requests whose process died mid-way.
    pub async fn recover_stalled(&self, stalled_after: Duration) -> Result<usize, StoreError> {
        let before = clock::now_ms() - stalled_after.as_millis() as i64;
        let stalled = self.store.stalled_sagas(before, 50).await?;
        let count = stalled.len();
        for mut saga in stalled {
            // The saga's own ids, so its log lines and audit events join its request's.
            let ids = RequestIds {
                correlation_id: saga.correlation_id.clone(),
                request_id: saga.request_id.clone(),
            };
            let span = tracing::info_span!(
                "saga_recovery",
                saga_id = %saga.saga_id,
                correlation_id = %saga.correlation_id,
                request_id = saga.request_id.as_deref().unwrap_or(""),
            );
            let resume = async {
                warn!(
                    status = saga.status.as_str(),
                    "resuming a saga left unfinished"
                );
                self.run_to_end(&mut saga, Duration::from_secs(5)).await
            };
            context::scope(ids, resume.instrument(span)).await?;
        }
        Ok(count)
    }
}

/// Builds the audit event of a saga's start or end.
pub fn saga_event(saga: &Saga, event_type: AuditEventType, action: &str) -> AuditEvent {
    let mut event = AuditEvent::new(event_type, "saga", action)
        .entity_id(&saga.saga_id)
        .ids(saga.correlation_id.clone(), saga.request_id.clone())
        .student(&saga.registro_academico)
        .periodo(&saga.codigo_periodo)
        .data(json!({
            "status": saga.status.as_str(),
            "task_id": saga.task_id,
            "grupos": saga.grupos,
            "added_grupos": saga.added_grupos,
            "codigo_inscripcion": saga.codigo_inscripcion,
            "reason": saga.error,
        }));
    if let Some(code) = &saga.error_code {
        event = event.error_code(code);
    }
    event
}

/// The ids a new saga carries.
#[derive(Debug, Clone, Copy)]
pub struct SagaIds<'a> {
    pub task_id: Option<&'a str>,
    pub correlation_id: &'a str,
    pub request_id: Option<&'a str>,
}

fn new_saga_id() -> String {
    format!("inscription_saga_{}", uuid::Uuid::now_v7().simple())
}

fn step_failure(error: CallError) -> StepFailure {
    match error {
        CallError::Declined { status, reason } => {
            StepFailure::Declined(format!("billing answered {status}: {reason}"))
        }
        CallError::Failed(reason) => StepFailure::Failed(reason),
    }
}

fn describe_failure(failure: &StepFailure) -> (String, Option<Duration>) {
    match failure {
        StepFailure::Declined(reason) | StepFailure::Failed(reason) => (reason.clone(), None),
        StepFailure::Open(retry_after) => {
            ("the circuit breaker is open".to_owned(), Some(*retry_after))
        }
    }
}

/// Returns the index, among a new saga's steps, of the step a rejection stops at.
fn failing_step(rejection: &DomainError, grupos: &[String]) -> usize {
    use ErrorCode::*;
    match rejection.code {
        EstudianteNotFound
        | EstudianteBloqueado
        | EstudianteInactivo
        | EstudianteSuspendido
        | PeriodoNotFound
        | PeriodoInactivo
        | PeriodoInscripcionCerrado
        | PeriodoInscripcionNoIniciado => 0,
        GrupoNotFound | GrupoSinCupo => 1,
        InscripcionDuplicada => 2,
        _ => {
            let position = rejection
                .grupo
                .as_ref()
                .and_then(|g| grupos.iter().position(|x| x == g))
                .unwrap_or(0);
            3 + position
        }
    }
}

/// Builds the job result of a finished saga: the enrollment's result when it completed, and
/// otherwise the error that made it compensate.
pub fn job_result(saga: &Saga) -> Value {
    if saga.status == SagaStatus::Completed {
        return saga
            .result
            .clone()
            .unwrap_or_else(|| json!({ "status": "SUCCESS" }));
    }
    let code = saga
        .error_code
        .as_deref()
        .and_then(ErrorCode::parse)
        .unwrap_or(ErrorCode::SagaCompensationFailed);
    let message = match code {
        ErrorCode::FeeRejected => {
            "El servicio de cobro rechazó el arancel; la inscripción fue retirada".to_owned()
        }
        ErrorCode::FeeAssessmentFailed => {
            "El servicio de cobro no respondió; la inscripción fue retirada".to_owned()
        }
        ErrorCode::SagaCompensationFailed => {
            "No se pudo anular el cobro; un operador debe completar la compensación".to_owned()
        }
        _ => saga.error.clone().unwrap_or_default(),
    };
    let details = json!({
        "saga_id": saga.saga_id,
        "saga_status": saga.status.as_str(),
        "reason": saga.error,
    });
    error_result(&DomainError::new(code, message, details))
}
