//! The breaker's state machine. The in-process backend runs it directly. The Redis backend
//! runs the same rules in `breaker.lua`, so a rule changed here must change there too.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::config::BreakerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "closed" => Some(Self::Closed),
            "open" => Some(Self::Open),
            "half_open" => Some(Self::HalfOpen),
            _ => None,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cause of a state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionReason {
    /// `closed` to `open`: `failure_threshold` consecutive failures.
    FailureThresholdReached,
    /// `open` to `half_open`: a call arrived after `recovery_timeout`.
    RecoveryTimeoutElapsed,
    /// `half_open` to `closed`: `success_threshold` consecutive probe successes.
    SuccessThresholdReached,
    /// `half_open` to `open`: a probe failed or timed out.
    ProbeFailed,
    /// Any state to `closed`: an operator reset the breaker.
    Reset,
}

impl TransitionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailureThresholdReached => "failure_threshold_reached",
            Self::RecoveryTimeoutElapsed => "recovery_timeout_elapsed",
            Self::SuccessThresholdReached => "success_threshold_reached",
            Self::ProbeFailed => "probe_failed",
            Self::Reset => "reset",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        [
            Self::FailureThresholdReached,
            Self::RecoveryTimeoutElapsed,
            Self::SuccessThresholdReached,
            Self::ProbeFailed,
            Self::Reset,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
    }
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change, reported to the registry's transition hook by the process that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub breaker: String,
    pub from: BreakerState,
    pub to: BreakerState,
    /// Epoch milliseconds (UTC) on the clock of the backend that made the change.
    pub at: i64,
    pub reason: TransitionReason,
}

/// The claim an admitted call keeps until it reports its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ticket {
    /// A call admitted in `closed`. Its outcome changes the consecutive counters only while
    /// the breaker is still in the same closed period (`epoch`).
    Closed { epoch: u64 },
    /// A half-open probe holding a slot. Its outcome counts only while the slot is held.
    Probe { token: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
}

/// The result of asking to make a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    Admitted(Ticket),
    /// Rejected; the value is the time left until `half_open` in milliseconds (0 when the
    /// breaker is already half-open with every slot taken).
    Rejected {
        retry_after_ms: i64,
    },
}

/// A copy of a breaker's counters, from either backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub state: BreakerState,
    /// Incremented on every transition, so late outcomes from an earlier period are ignored.
    pub epoch: u64,
    pub failure_count: u64,
    pub success_count: u64,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_failure_ms: Option<i64>,
    pub last_success_ms: Option<i64>,
}

/// A state change found by the machine, before the caller names the breaker.
pub(crate) type Change = (BreakerState, BreakerState, TransitionReason);

/// In-process breaker state. All times are epoch milliseconds from the caller's clock.
#[derive(Debug)]
pub(crate) struct Machine {
    snapshot: Snapshot,
    opened_at_ms: i64,
    /// Half-open probe slots: token to admission time.
    probes: HashMap<String, i64>,
    next_token: u64,
}

impl Machine {
    pub fn new() -> Self {
        Self {
            snapshot: Snapshot {
                state: BreakerState::Closed,
                epoch: 0,
                failure_count: 0,
                success_count: 0,
                consecutive_failures: 0,
                consecutive_successes: 0,
                last_failure_ms: None,
                last_success_ms: None,
            },
            opened_at_ms: 0,
            probes: HashMap::new(),
            next_token: 0,
        }
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Decides whether a call may run now. Moves `open` to `half_open` when the recovery
    /// timeout has passed, and releases probe slots older than the probe lease.
    pub fn acquire(&mut self, config: &BreakerConfig, now_ms: i64) -> (Admission, Option<Change>) {
        let mut change = None;
        if self.snapshot.state == BreakerState::Open {
            let left = self.opened_at_ms + millis(config.recovery_timeout) - now_ms;
            if left > 0 {
                return (
                    Admission::Rejected {
                        retry_after_ms: left,
                    },
                    None,
                );
            }
            change = Some(self.enter(
                BreakerState::HalfOpen,
                TransitionReason::RecoveryTimeoutElapsed,
                now_ms,
            ));
        }

        if self.snapshot.state == BreakerState::Closed {
            let ticket = Ticket::Closed {
                epoch: self.snapshot.epoch,
            };
            return (Admission::Admitted(ticket), change);
        }

        let lease_ms = millis(config.probe_lease());
        self.probes
            .retain(|_, admitted_ms| now_ms - *admitted_ms < lease_ms);
        if self.probes.len() >= config.half_open_permits as usize {
            return (Admission::Rejected { retry_after_ms: 0 }, change);
        }
        self.next_token += 1;
        let token = format!("m{}", self.next_token);
        self.probes.insert(token.clone(), now_ms);
        (Admission::Admitted(Ticket::Probe { token }), change)
    }

    /// Counts an outcome in the lifetime totals and, when the ticket still belongs to the
    /// current period, in the consecutive counters that drive transitions.
    pub fn record(
        &mut self,
        config: &BreakerConfig,
        ticket: &Ticket,
        outcome: Outcome,
        now_ms: i64,
    ) -> Option<Change> {
        match outcome {
            Outcome::Success => {
                self.snapshot.success_count += 1;
                self.snapshot.last_success_ms = Some(now_ms);
            }
            Outcome::Failure => {
                self.snapshot.failure_count += 1;
                self.snapshot.last_failure_ms = Some(now_ms);
            }
        }

        let current = match ticket {
            Ticket::Closed { epoch } => {
                self.snapshot.state == BreakerState::Closed && *epoch == self.snapshot.epoch
            }
            Ticket::Probe { token } => {
                self.snapshot.state == BreakerState::HalfOpen && self.probes.remove(token).is_some()
            }
        };
        if !current {
            return None;
        }

        match outcome {
            Outcome::Success => {
                self.snapshot.consecutive_failures = 0;
                self.snapshot.consecutive_successes += 1;
            }
            Outcome::Failure => {
                self.snapshot.consecutive_successes = 0;
                self.snapshot.consecutive_failures += 1;
            }
        }

        match (self.snapshot.state, outcome) {
            (BreakerState::Closed, Outcome::Failure)
                if self.snapshot.consecutive_failures >= config.failure_threshold =>
            {
                Some(self.enter(
                    BreakerState::Open,
                    TransitionReason::FailureThresholdReached,
                    now_ms,
                ))
            }
            (BreakerState::HalfOpen, Outcome::Failure) => {
                Some(self.enter(BreakerState::Open, TransitionReason::ProbeFailed, now_ms))
            }
            (BreakerState::HalfOpen, Outcome::Success)
                if self.snapshot.consecutive_successes >= config.success_threshold =>
            {
                Some(self.enter(
                    BreakerState::Closed,
                    TransitionReason::SuccessThresholdReached,
                    now_ms,
                ))
            }
            _ => None,
        }
    }

    /// Frees the slot of a probe that ended without an outcome, such as a dropped call.
    pub fn release(&mut self, ticket: &Ticket) {
        if let Ticket::Probe { token } = ticket {
            self.probes.remove(token);
        }
    }

    /// Closes the breaker and clears every counter. The epoch and the token counter carry
    /// on, so tickets issued before the reset stay stale.
    pub fn reset(&mut self) -> Option<Change> {
        let from = self.snapshot.state;
        let epoch = self.snapshot.epoch;
        let next_token = self.next_token;
        *self = Self::new();
        self.snapshot.epoch = epoch + 1;
        self.next_token = next_token;
        (from != BreakerState::Closed).then_some((
            from,
            BreakerState::Closed,
            TransitionReason::Reset,
        ))
    }

    fn enter(&mut self, to: BreakerState, reason: TransitionReason, now_ms: i64) -> Change {
        let from = self.snapshot.state;
        self.snapshot.state = to;
        self.snapshot.epoch += 1;
        self.probes.clear();
        if to == BreakerState::Open {
            self.opened_at_ms = now_ms;
        }
        (from, to, reason)
    }
}

pub(crate) fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 2,
            recovery_timeout: Duration::from_millis(100),
            success_threshold: 2,
            call_timeout: Duration::from_millis(50),
            half_open_permits: 1,
        }
    }

    fn admit(machine: &mut Machine, now_ms: i64) -> Ticket {
        match machine.acquire(&config(), now_ms).0 {
            Admission::Admitted(ticket) => ticket,
            Admission::Rejected { .. } => panic!("rejected at {now_ms} ms"),
        }
    }

    fn open(machine: &mut Machine, now_ms: i64) {
        for _ in 0..2 {
            let ticket = admit(machine, now_ms);
            machine.record(&config(), &ticket, Outcome::Failure, now_ms);
        }
        assert_eq!(machine.snapshot().state, BreakerState::Open);
    }

    #[test]
    fn success_in_closed_resets_consecutive_failures() {
        let mut machine = Machine::new();
        let first = admit(&mut machine, 0);
        machine.record(&config(), &first, Outcome::Failure, 0);
        let second = admit(&mut machine, 0);
        machine.record(&config(), &second, Outcome::Success, 0);
        let third = admit(&mut machine, 0);
        let change = machine.record(&config(), &third, Outcome::Failure, 0);

        assert_eq!(change, None);
        assert_eq!(machine.snapshot().consecutive_failures, 1);
        assert_eq!(machine.snapshot().failure_count, 2);
        assert_eq!(machine.snapshot().success_count, 1);
    }

    #[test]
    fn open_rejects_with_time_left() {
        let mut machine = Machine::new();
        open(&mut machine, 1_000);

        let (admission, change) = machine.acquire(&config(), 1_030);

        assert_eq!(admission, Admission::Rejected { retry_after_ms: 70 });
        assert_eq!(change, None);
    }

    #[test]
    fn late_outcome_from_earlier_period_is_ignored() {
        let mut machine = Machine::new();
        let slow = admit(&mut machine, 0);
        open(&mut machine, 0);
        machine.reset();

        let change = machine.record(&config(), &slow, Outcome::Failure, 10);

        assert_eq!(change, None);
        assert_eq!(machine.snapshot().consecutive_failures, 0);
        assert_eq!(machine.snapshot().failure_count, 1);
    }

    #[test]
    fn stale_probe_slot_is_released() {
        let mut machine = Machine::new();
        open(&mut machine, 0);
        let _lost = admit(&mut machine, 100);
        let lease_ms = millis(config().probe_lease());

        let (blocked, _) = machine.acquire(&config(), 100 + lease_ms - 1);
        let (admitted, _) = machine.acquire(&config(), 100 + lease_ms);

        assert_eq!(blocked, Admission::Rejected { retry_after_ms: 0 });
        assert!(matches!(
            admitted,
            Admission::Admitted(Ticket::Probe { .. })
        ));
    }

    #[test]
    fn outcome_of_released_probe_is_ignored() {
        let mut machine = Machine::new();
        open(&mut machine, 0);
        let probe = admit(&mut machine, 100);
        machine.release(&probe);

        let change = machine.record(&config(), &probe, Outcome::Failure, 110);

        assert_eq!(change, None);
        assert_eq!(machine.snapshot().state, BreakerState::HalfOpen);
    }
}
