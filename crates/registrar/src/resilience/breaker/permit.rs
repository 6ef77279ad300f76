//! The permit an admitted call keeps until it reports its outcome.

use std::time::Duration;

use super::call::Breaker;
use super::machine::{Outcome, Ticket};

/// The state that admitted a call, which decides where its outcome goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Memory,
    /// Admitted from the local copy of a closed breaker's Redis state.
    Cache,
    Redis,
}

/// Permission to make one call. Report its outcome with [`Permit::success`] or
/// [`Permit::failure`]. Dropping it without an outcome frees its probe slot and counts as
/// neither.
pub struct Permit {
    breaker: Breaker,
    /// `None` once the outcome is reported.
    ticket: Option<Ticket>,
    source: Source,
}

impl Permit {
    pub(super) fn new(breaker: Breaker, ticket: Ticket, source: Source) -> Self {
        Self {
            breaker,
            ticket: Some(ticket),
            source,
        }
    }

    /// True for a half-open probe, whose outcome decides whether the breaker closes.
    pub fn is_probe(&self) -> bool {
        matches!(self.ticket, Some(Ticket::Probe { .. }))
    }

    /// The deadline the caller should apply to the call. Report a call that exceeds it as a
    /// failure.
    pub fn call_timeout(&self) -> Duration {
        self.breaker.config().call_timeout
    }

    pub async fn success(mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker
                .finish(ticket, self.source, Outcome::Success)
                .await;
        }
    }

    pub async fn failure(mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker
                .finish(ticket, self.source, Outcome::Failure)
                .await;
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.abandon(ticket, self.source);
        }
    }
}
