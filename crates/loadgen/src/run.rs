//! The runs behind the `rush`, `scenarios` and `check` commands: argument checks, the goose
//! run, the invariant check and the reports.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use reqwest::Url;

use crate::attack::{self, MAX_SECONDS, MAX_USERS, Stop};
use crate::invariants::{self, JobRecord, Snapshot};
use crate::procfs::{CpuWindow, ProcessMemory};
use crate::report::jtl::JtlWriter;
use crate::report::{self, JTL_FILE, RunReport};
use crate::request::{Origin, RunContext, client_builder};
use crate::rush::{self, RushState};
use crate::sample::Recorder;
use crate::scenarios::{self, DemoState, Kind};
use crate::{
    CommonArgs, TargetArgs, catalog, check_groups_per_family, jobs, shared_transaction, target,
};

fn parse_target(target: &TargetArgs) -> anyhow::Result<Url> {
    if target.request_timeout_secs == 0 {
        bail!("invalid --request-timeout-secs 0: use at least 1");
    }
    target::parse_base_url(&target.base_url, target.allow_non_loopback).map_err(anyhow::Error::msg)
}

pub fn run_check(target: &TargetArgs) -> anyhow::Result<bool> {
    let base = parse_target(target)?;
    let client = client_builder(Duration::from_secs(target.request_timeout_secs))
        .build()
        .context("failed to build the HTTP client")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let (snapshot, violations) = runtime.block_on(check_invariants(&client, &base, &[], false));
    for violation in &violations {
        eprintln!("INVARIANT VIOLATED: {violation}");
    }
    if violations.is_empty() {
        println!(
            "check: PASS ({} periods, {} inscriptions checked)",
            snapshot.periods.len(),
            snapshot.inscriptions.len()
        );
    } else {
        eprintln!(
            "registrar-loadgen: check FAILED: {} invariant violations",
            violations.len()
        );
    }
    Ok(violations.is_empty())
}

/// A run that passed its argument checks, with its output folder and JTL file open.
struct Prepared {
    base: Url,
    out_dir: PathBuf,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    jtl: JtlWriter<Box<dyn Write + Send>>,
}

fn prepare(common: &CommonArgs, command: &str, seconds: u64) -> anyhow::Result<Prepared> {
    let base = parse_target(&common.target)?;
    if common.users == 0 || common.users > MAX_USERS {
        bail!("invalid --users {}: use 1 to {MAX_USERS}", common.users);
    }
    if seconds == 0 || seconds > MAX_SECONDS {
        bail!("invalid run time {seconds} s: use 1 to {MAX_SECONDS} seconds");
    }
    if let Some(pid) = common.server_pid {
        // Fail before the run, not after it, when the pid is wrong.
        ProcessMemory::read(pid).map_err(anyhow::Error::msg)?;
    }

    let out_dir = common.out_dir.clone().unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("loadgen-results").join(format!("{command}-{now}"))
    });
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("failed to create {}", out_dir.display()))?;
    let jtl_path = out_dir.join(JTL_FILE);
    let file = File::create(&jtl_path)
        .with_context(|| format!("failed to create {}", jtl_path.display()))?;
    let sink: Box<dyn Write + Send> = Box::new(BufWriter::new(file));
    let jtl =
        JtlWriter::new(sink).with_context(|| format!("failed to write {}", jtl_path.display()))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let client = client_builder(Duration::from_secs(common.target.request_timeout_secs))
        .build()
        .context("failed to build the HTTP client")?;
    Ok(Prepared {
        base,
        out_dir,
        runtime,
        client,
        jtl,
    })
}

/// Builds the shared state of a run: jobs are enqueued for `seconds`, and polled for `drain`
/// more.
fn context(
    common: &CommonArgs,
    prepared: &mut Prepared,
    seconds: u64,
    drain: Duration,
) -> Arc<RunContext> {
    let jtl = std::mem::replace(
        &mut prepared.jtl,
        JtlWriter::new(Box::new(std::io::sink()) as Box<dyn Write + Send>)
            .expect("writing to a sink cannot fail"),
    );
    let recorder = Recorder::new(Some(jtl));
    let enqueue_deadline = recorder.started() + Duration::from_secs(seconds);
    Arc::new(RunContext {
        base: prepared.base.clone(),
        recorder,
        all_users: common.users,
        enqueue_deadline,
        poll_deadline: enqueue_deadline + drain,
        request_timeout: Duration::from_secs(common.target.request_timeout_secs),
        poll_interval: Duration::from_millis(common.poll_interval_ms),
    })
}

/// Reads the database through the API and checks every invariant, plus the job checks.
async fn check_invariants(
    client: &reqwest::Client,
    base: &Url,
    jobs: &[JobRecord],
    rejected_means_absent: bool,
) -> (Snapshot, Vec<String>) {
    match invariants::fetch_snapshot(client, base).await {
        Ok(snapshot) => {
            let mut violations = invariants::check_snapshot(&snapshot);
            violations.extend(invariants::check_jobs(
                &snapshot,
                jobs,
                rejected_means_absent,
            ));
            (snapshot, violations)
        }
        Err(e) => (
            Snapshot::default(),
            vec![format!(
                "the invariant check could not read the data: {e:#}"
            )],
        ),
    }
}

pub fn run_rush(
    common: CommonArgs,
    students: usize,
    groups_per_family: usize,
    batch_size: usize,
    time_limit_secs: u64,
) -> anyhow::Result<bool> {
    check_groups_per_family(groups_per_family)?;
    if students == 0 {
        bail!("invalid --students 0: use at least 1");
    }
    if batch_size == 0 || batch_size > rush::MAX_BATCH {
        bail!(
            "invalid --batch-size {batch_size}: use 1 to {}",
            rush::MAX_BATCH
        );
    }
    let mut prepared = prepare(&common, "rush", time_limit_secs)?;
    let activated = prepared
        .runtime
        .block_on(rush::prepare_period(&prepared.client, &prepared.base))?;
    if activated {
        println!("period {} activated through the API", catalog::PERIODO);
    }

    let ctx = context(&common, &mut prepared, time_limit_secs, Duration::ZERO);
    let state = Arc::new(RushState::new(
        Arc::clone(&ctx),
        students,
        groups_per_family,
        batch_size,
    ));
    let origin = Origin {
        scenario: "rush",
        scenario_users: common.users,
    };
    let work = shared_transaction!(
        "enroll and wait",
        Arc::clone(&state),
        origin,
        rush::enroll_batch
    );
    let scenario = attack::scenario("rush", ctx.request_timeout, Duration::ZERO, work)?;
    let iterations = rush::iterations_per_user(students, common.users, batch_size);
    let cpu_window = CpuWindow::start(common.server_pid);
    let started = Instant::now();
    prepared.runtime.block_on(attack::run(
        prepared.base.as_str(),
        common.users,
        Stop::Iterations(iterations),
        vec![scenario],
    ))?;
    let duration = started.elapsed();
    let cpu = cpu_window.finish();

    let (records, tally) = state.jobs.take_parts(ctx.recorder.started());
    let (snapshot, violations) = prepared.runtime.block_on(check_invariants(
        &prepared.client,
        &prepared.base,
        &records,
        true,
    ));

    let mut problems = Vec::new();
    if tally.success != students {
        problems.push(format!(
            "{} of {students} enrollments succeeded (business errors {:?}, failures {:?}, \
             not enqueued {}, unfinished {})",
            tally.success,
            tally.business_errors,
            tally.failures,
            tally.not_enqueued,
            tally.unfinished
        ));
    }
    let outcome = Outcome {
        command: "rush",
        scenarios: vec!["rush"],
        seconds: time_limit_secs,
        duration,
        cpu,
        jobs: BTreeMap::from([("rush", tally)]),
        idempotency: None,
        inscriptions_checked: snapshot.inscriptions.len(),
        violations,
        problems,
    };
    let report = build_report(&common, &prepared, &ctx, outcome)?;
    finish(report, &prepared.out_dir)
}

pub fn run_scenarios(
    common: CommonArgs,
    kinds: Vec<Kind>,
    run_time_secs: u64,
    think_time: Duration,
    drain_secs: u64,
) -> anyhow::Result<bool> {
    if common.users < kinds.len() {
        bail!(
            "invalid --users {}: {} scenarios need at least one user each",
            common.users,
            kinds.len()
        );
    }
    let mut prepared = prepare(&common, "scenarios", run_time_secs)?;
    if drain_secs > MAX_SECONDS {
        bail!("invalid --drain-secs {drain_secs}: use 0 to {MAX_SECONDS}");
    }
    let ctx = context(
        &common,
        &mut prepared,
        run_time_secs,
        Duration::from_secs(drain_secs),
    );
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let state = Arc::new(DemoState::new(Arc::clone(&ctx), nonce));

    let mut goose_scenarios = Vec::new();
    for (index, kind) in kinds.iter().enumerate() {
        // Goose hands users to the scenarios in turn, starting from the last one registered,
        // so the last ones get one more when the users do not divide evenly.
        let from_last = kinds.len() - 1 - index;
        let scenario_users =
            common.users / kinds.len() + usize::from(from_last < common.users % kinds.len());
        let origin = Origin {
            scenario: kind.name(),
            scenario_users,
        };
        let shared = Arc::clone(&state);
        let work = match kind {
            Kind::Flow => shared_transaction!("flow", shared, origin, scenarios::flow_once),
            Kind::Contention => {
                shared_transaction!("contention", shared, origin, scenarios::contention_once)
            }
            Kind::Idempotency => {
                shared_transaction!("idempotency", shared, origin, scenarios::idempotency_once)
            }
            Kind::Health => shared_transaction!("health", shared, origin, scenarios::health_once),
        };
        goose_scenarios.push(attack::scenario(
            kind.name(),
            ctx.request_timeout,
            think_time,
            work,
        )?);
    }

    let cpu_window = CpuWindow::start(common.server_pid);
    let started = Instant::now();
    prepared.runtime.block_on(attack::run(
        prepared.base.as_str(),
        common.users,
        Stop::RunTime(run_time_secs as usize),
        goose_scenarios,
    ))?;
    let duration = started.elapsed();
    let cpu = cpu_window.finish();

    let run_start = ctx.recorder.started();
    let (flow_records, flow_tally) = state.flow_jobs.take_parts(run_start);
    let (contention_records, contention_tally) = state.contention_jobs.take_parts(run_start);
    let keyed = std::mem::take(&mut *state.keyed.lock().expect("keyed replies lock"));
    let idempotency = std::mem::take(&mut *state.idempotency.lock().expect("idempotency lock"));

    let mut records = flow_records;
    records.extend(contention_records);
    // A demo database may hold enrollments from earlier runs, so a rejected job's groups may
    // be held legitimately and only SUCCESS jobs are checked against the data.
    let (snapshot, mut violations) = prepared.runtime.block_on(check_invariants(
        &prepared.client,
        &prepared.base,
        &records,
        false,
    ));
    violations.extend(invariants::check_idempotency(&keyed));

    let mut jobs = BTreeMap::new();
    if kinds.contains(&Kind::Flow) {
        jobs.insert("flow", flow_tally);
    }
    if kinds.contains(&Kind::Contention) {
        jobs.insert("contention", contention_tally);
    }
    let names = kinds.iter().map(|k| k.name()).collect();
    let outcome = Outcome {
        command: "scenarios",
        scenarios: names,
        seconds: run_time_secs,
        duration,
        cpu,
        jobs,
        idempotency: kinds.contains(&Kind::Idempotency).then_some(idempotency),
        inscriptions_checked: snapshot.inscriptions.len(),
        violations,
        problems: Vec::new(),
    };
    let mut report = build_report(&common, &prepared, &ctx, outcome)?;
    // Idempotent repeats are only counted, because the server's replay behaviour is still
    // being built; every other unexpected status fails the run.
    for (label, stats) in &report.aggregates.by_label {
        if stats.failures > 0 && *label != scenarios::ENQUEUE_IDEMPOTENT {
            report.problems.push(format!(
                "{} of {} {label} requests failed",
                stats.failures, stats.count
            ));
        }
    }
    finish(report, &prepared.out_dir)
}

/// Findings of a run, before its samples are folded into the report.
struct Outcome {
    command: &'static str,
    scenarios: Vec<&'static str>,
    seconds: u64,
    duration: Duration,
    cpu: (Option<f64>, Option<f64>),
    jobs: BTreeMap<&'static str, jobs::JobTally>,
    idempotency: Option<scenarios::IdempotencyTally>,
    inscriptions_checked: usize,
    violations: Vec<String>,
    problems: Vec<String>,
}

fn build_report(
    common: &CommonArgs,
    prepared: &Prepared,
    ctx: &RunContext,
    outcome: Outcome,
) -> anyhow::Result<RunReport> {
    let started_epoch_ms = ctx.recorder.started_epoch_ms();
    let (aggregates, jtl_result) = ctx.recorder.finish();
    if let Err(e) = jtl_result {
        bail!(
            "failed to write {}: {e}",
            prepared.out_dir.join(JTL_FILE).display()
        );
    }
    let server_memory = common
        .server_pid
        .and_then(|pid| match ProcessMemory::read(pid) {
            Ok(memory) => Some(memory),
            Err(e) => {
                eprintln!("registrar-loadgen: server memory not read: {e}");
                None
            }
        });
    Ok(RunReport {
        command: outcome.command,
        base_url: prepared.base.to_string(),
        scenarios: outcome.scenarios,
        users: common.users,
        time_limit: Duration::from_secs(outcome.seconds),
        started_epoch_ms,
        duration: outcome.duration,
        aggregates,
        jobs: outcome.jobs,
        idempotency: outcome.idempotency,
        inscriptions_checked: outcome.inscriptions_checked,
        violations: outcome.violations,
        problems: outcome.problems,
        server_memory,
        server_cpu_seconds: outcome.cpu.0,
        machine_busy: outcome.cpu.1,
    })
}

/// Writes the reports, prints the summary and returns whether the run passed.
fn finish(report: RunReport, out_dir: &Path) -> anyhow::Result<bool> {
    let written = report::write(&report, out_dir)?;
    report::text::print(&report, &written);
    Ok(report.passed())
}
