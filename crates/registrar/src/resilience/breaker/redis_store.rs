//! Breaker state shared through Redis: one hash per breaker, changed only by `breaker.lua`.

use std::sync::LazyLock;

use redis::Script;

use super::config::BreakerConfig;
use super::machine::{BreakerState, Change, Outcome, Snapshot, Ticket, TransitionReason, millis};
use crate::shared_state::RedisHandle;

/// Loaded once per process. `invoke_async` sends EVALSHA and loads the script when Redis
/// answers NOSCRIPT, for example after a Redis restart.
static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("breaker.lua")));

pub(crate) enum Op<'a> {
    /// Ask to make a call; `token` names the probe slot if one is granted.
    Acquire {
        token: &'a str,
    },
    Record {
        ticket: &'a Ticket,
        outcome: Outcome,
    },
    Release {
        token: &'a str,
    },
    Stats,
    Reset,
}

/// Successes of calls admitted from the local cache, not yet added to the shared totals.
/// They add to the totals only and do not reset `consecutive_failures`, because their order
/// relative to failures recorded by other instances is unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PendingSuccesses {
    pub count: u64,
    /// Epoch milliseconds on this process's clock; -1 when `count` is 0.
    pub last_ms: i64,
}
// NOTE: a reset on another instance does not discard these, so up to one cache interval of
// this instance's successes from before the reset can appear in the totals after it.

pub(crate) enum Decision {
    Admitted { probe_token: Option<String> },
    Rejected { retry_after_ms: i64 },
    None,
}

pub(crate) struct Reply {
    pub decision: Decision,
    pub snapshot: Snapshot,
    pub change: Option<Change>,
    /// Redis TIME when the script ran, in epoch milliseconds.
    pub now_ms: i64,
}

#[derive(Clone)]
pub(crate) struct RedisStore {
    handle: RedisHandle,
    key_prefix: String,
}

impl RedisStore {
    pub fn new(handle: RedisHandle, key_prefix: String) -> Self {
        Self { handle, key_prefix }
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.key_prefix)
    }

    pub async fn run(
        &self,
        name: &str,
        config: &BreakerConfig,
        op: Op<'_>,
        pending: PendingSuccesses,
    ) -> Result<Reply, redis::RedisError> {
        let (op_name, token, epoch, outcome) = match &op {
            Op::Acquire { token } => ("acquire", *token, 0, ""),
            Op::Record { ticket, outcome } => {
                let outcome = match outcome {
                    Outcome::Success => "success",
                    Outcome::Failure => "failure",
                };
                match ticket {
                    Ticket::Closed { epoch } => ("record", "", *epoch, outcome),
                    Ticket::Probe { token } => ("record", token.as_str(), 0, outcome),
                }
            }
            Op::Release { token } => ("release", *token, 0, ""),
            Op::Stats => ("stats", "", 0, ""),
            Op::Reset => ("reset", "", 0, ""),
        };

        let mut invocation = SCRIPT.key(self.key(name));
        invocation
            .arg(op_name)
            .arg(config.failure_threshold)
            .arg(millis(config.recovery_timeout))
            .arg(config.success_threshold)
            .arg(config.half_open_permits)
            .arg(millis(config.probe_lease()))
            .arg(pending.count)
            .arg(pending.last_ms)
            .arg(token)
            .arg(epoch)
            .arg(outcome);
        let mut connection = self.handle.connection();
        let fields: Vec<String> = invocation.invoke_async(&mut connection).await?;
        parse_reply(&fields).ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::Parse,
                "unexpected reply from the circuit breaker script",
                format!("{fields:?}"),
            ))
        })
    }
}

fn parse_reply(fields: &[String]) -> Option<Reply> {
    let [
        decision,
        retry_after,
        granted,
        state,
        epoch,
        failures,
        successes,
        consecutive_failures,
        consecutive_successes,
        last_failure,
        last_success,
        from,
        to,
        reason,
        now,
    ] = fields
    else {
        return None;
    };

    let decision = match decision.as_str() {
        "admitted" => Decision::Admitted {
            probe_token: (!granted.is_empty()).then(|| granted.clone()),
        },
        "rejected" => Decision::Rejected {
            retry_after_ms: retry_after.parse().ok()?,
        },
        _ => Decision::None,
    };
    let change = if reason.is_empty() {
        None
    } else {
        Some((
            BreakerState::parse(from)?,
            BreakerState::parse(to)?,
            TransitionReason::parse(reason)?,
        ))
    };
    let optional_time = |text: &str| text.parse::<i64>().ok().filter(|ms| *ms >= 0);
    let snapshot = Snapshot {
        state: BreakerState::parse(state)?,
        epoch: epoch.parse().ok()?,
        failure_count: failures.parse().ok()?,
        success_count: successes.parse().ok()?,
        consecutive_failures: consecutive_failures.parse().ok()?,
        consecutive_successes: consecutive_successes.parse().ok()?,
        last_failure_ms: optional_time(last_failure),
        last_success_ms: optional_time(last_success),
    };
    Some(Reply {
        decision,
        snapshot,
        change,
        now_ms: now.parse().ok()?,
    })
}
