//! Runs goose: one scenario per load pattern, every user on a client without proxy or
//! redirects, the run bounded in users and in time or iterations.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use goose::config::GooseConfiguration;
use goose::prelude::*;

use crate::request::client_builder;

/// Maximum `--users`.
pub const MAX_USERS: usize = 1000;
/// Maximum `--run-time-secs` and `--time-limit-secs`: one hour.
pub const MAX_SECONDS: u64 = 3600;

/// What ends the run besides the time bound that every transaction checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Goose stops the users after this many seconds.
    RunTime(usize),
    /// Each user runs its scenario this many times. Goose takes no run time together with
    /// iterations, so the transactions themselves stop working at the run's deadline.
    Iterations(usize),
}

/// Builds a goose transaction named `$name` that runs `$step(user, &state, origin)` with a
/// clone of the shared `Arc` state and always succeeds, because each step records the
/// outcome of its requests itself.
#[macro_export]
macro_rules! shared_transaction {
    ($name:expr, $state:expr, $origin:expr, $step:path) => {{
        let state = $state;
        let origin = $origin;
        let function: goose::prelude::TransactionFunction = std::sync::Arc::new(move |user| {
            let state = std::sync::Arc::clone(&state);
            Box::pin(async move {
                $step(user, &state, origin).await;
                Ok(())
            })
        });
        goose::prelude::Transaction::new(function).set_name($name)
    }};
}

/// Builds a scenario whose users first switch to the tool's HTTP client.
pub fn scenario(
    name: &str,
    request_timeout: Duration,
    think_time: Duration,
    work: Transaction,
) -> anyhow::Result<Scenario> {
    let set_up: TransactionFunction = Arc::new(move |user| {
        Box::pin(async move {
            user.set_client_builder(client_builder(request_timeout))
                .await?;
            Ok(())
        })
    });
    let set_up = Transaction::new(set_up)
        .set_name("set up client")
        .set_on_start();
    Scenario::new(name)
        .register_transaction(set_up)
        .register_transaction(work)
        .set_wait_time(think_time, think_time)
        .context("invalid think time")
}

/// Runs the scenarios with `users` users, all started within the first second, with goose's
/// telnet controller and its own metrics printout off. Goose 0.19 starts no WebSocket
/// controller unless asked to.
pub async fn run(
    host: &str,
    users: usize,
    stop: Stop,
    scenarios: Vec<Scenario>,
) -> anyhow::Result<GooseMetrics> {
    let mut attack = GooseAttack::initialize_with_config(GooseConfiguration::default())?;
    for scenario in scenarios {
        attack = attack.register_scenario(scenario);
    }
    let increase_rate = users.to_string();
    attack = *attack
        .set_default(GooseDefault::Host, host)?
        .set_default(GooseDefault::Users, users)?
        .set_default(GooseDefault::IncreaseRate, increase_rate.as_str())?
        .set_default(GooseDefault::NoTelnet, true)?
        .set_default(GooseDefault::NoPrintMetrics, true)?
        // Warnings only: goose otherwise logs a line per user started and stopped.
        .set_default(GooseDefault::Quiet, 1)?;
    attack = match stop {
        // Goose resets its metrics once every user has started unless told not to; the
        // tool's own samples are never reset either way.
        Stop::RunTime(seconds) => *attack
            .set_default(GooseDefault::RunTime, seconds)?
            .set_default(GooseDefault::NoResetMetrics, true)?,
        Stop::Iterations(count) => *attack.set_default(GooseDefault::Iterations, count)?,
    };
    attack.execute().await.context("the goose load test failed")
}
