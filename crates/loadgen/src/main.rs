//! `registrar-loadgen`: writes a benchmark catalog for `registrar import`, and runs goose load
//! tests against a registrar service on this machine (the registration rush, and the
//! predecessor's four JMeter scenarios). Each run writes an HTML report, a JTL results file
//! and a JSON summary, then checks the data invariants through the API.

mod attack;
mod catalog;
mod invariants;
mod jobs;
mod procfs;
mod report;
mod request;
mod rush;
mod sample;
mod scenarios;
mod stats;
mod target;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use reqwest::Url;

use crate::attack::{MAX_SECONDS, MAX_USERS, Stop};
use crate::catalog::CatalogSpec;
use crate::invariants::{JobRecord, Snapshot};
use crate::procfs::{CpuWindow, ProcessMemory};
use crate::report::jtl::JtlWriter;
use crate::report::{JTL_FILE, RunReport};
use crate::request::{Origin, RunContext, client_builder};
use crate::rush::RushState;
use crate::sample::Recorder;
use crate::scenarios::{DemoState, Kind, KindList};

#[derive(Parser)]
#[command(
    name = "registrar-loadgen",
    version,
    about = "Benchmark catalog and goose load tests for registrar"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a catalog in the JSON import format: period BENCH-1, three families of groups
    /// on non-overlapping slots, and students B00000 onwards.
    Catalog {
        /// Number of students.
        #[arg(long)]
        students: usize,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Groups in each of the three families; student i takes group i mod this count of
        /// each family.
        #[arg(long, default_value_t = 50)]
        groups_per_family: usize,
        /// `estado` of period BENCH-1 in the file. Use PLANIFICADO when the database already
        /// has an ACTIVO period: the rush then activates BENCH-1 through the API.
        #[arg(long, default_value = "ACTIVO")]
        periodo_estado: String,
    },
    /// Registration rush on an imported benchmark catalog: every student enrolls in three
    /// groups through async-by-groups and polls tasks/status/multiple until the job is
    /// finished. Exits with 1 if any enrollment does not succeed or an invariant breaks.
    Rush {
        #[command(flatten)]
        common: CommonArgs,
        /// Number of students, B00000 onwards; must not exceed the catalog's.
        #[arg(long)]
        students: usize,
        /// Groups per family; must match the catalog.
        #[arg(long, default_value_t = 50)]
        groups_per_family: usize,
        /// Bound on the whole rush, in seconds: no enrollment is sent and no poll goes on
        /// after it.
        #[arg(long, default_value_t = 300)]
        time_limit_secs: u64,
    },
    /// The predecessor's four scenarios against the demo catalog (`registrar serve --demo`):
    /// flow, contention, idempotency and health. Exits with 1 on an unexpected status
    /// (idempotency outcomes are only counted) or a broken invariant.
    Scenarios {
        #[command(flatten)]
        common: CommonArgs,
        /// Scenarios to run: all, or a comma-separated list of flow, contention, idempotency,
        /// health. Users are shared out among them in turn.
        #[arg(long, default_value = "all", value_parser = KindList::parse)]
        scenarios: KindList,
        /// Run time in seconds.
        #[arg(long, default_value_t = 30)]
        run_time_secs: u64,
        /// Pause of each user between two rounds of its scenario, in milliseconds.
        #[arg(long, default_value_t = 200)]
        think_time_ms: u64,
        /// Seconds after the run time during which the users keep polling the jobs they
        /// enqueued, so that the last ones can finish.
        #[arg(long, default_value_t = 30)]
        drain_secs: u64,
    },
    /// Read every period, inscription and student listing through the API and check the data
    /// invariants, for example after a JMeter run. Exits with 1 on a violation.
    Check {
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Args)]
struct TargetArgs {
    /// Base URL of the service. Only loopback addresses are accepted unless
    /// --allow-non-loopback is given.
    #[arg(long, default_value = "http://127.0.0.1:8003")]
    base_url: String,
    /// Accept a base URL that is not a loopback address. Use it only for a host you run.
    #[arg(long)]
    allow_non_loopback: bool,
    /// Timeout of each HTTP request, in seconds.
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,
}

#[derive(Args)]
struct CommonArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Concurrent users (goose users), at most 1000.
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Pause between two status polls of one job, in milliseconds.
    #[arg(long, default_value_t = 100)]
    poll_interval_ms: u64,
    /// Folder for report.html, results.jtl and summary.json; created if missing.
    /// Default: loadgen-results/COMMAND-UNIXTIME in the current folder.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Process id of the service, to report its peak resident set size (Linux only).
    #[arg(long)]
    server_pid: Option<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Catalog {
            students,
            out,
            groups_per_family,
            periodo_estado,
        } => write_catalog(
            &CatalogSpec {
                students,
                groups_per_family,
                periodo_estado,
            },
            &out,
        ),
        Command::Rush {
            common,
            students,
            groups_per_family,
            time_limit_secs,
        } => run_rush(common, students, groups_per_family, time_limit_secs),
        Command::Scenarios {
            common,
            scenarios,
            run_time_secs,
            think_time_ms,
            drain_secs,
        } => run_scenarios(
            common,
            scenarios.0,
            run_time_secs,
            Duration::from_millis(think_time_ms),
            drain_secs,
        ),
        Command::Check { target } => run_check(&target),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("registrar-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check_groups_per_family(groups_per_family: usize) -> anyhow::Result<()> {
    if groups_per_family == 0 || groups_per_family > catalog::MAX_GROUPS_PER_FAMILY {
        bail!(
            "invalid --groups-per-family {groups_per_family}: use 1 to {}",
            catalog::MAX_GROUPS_PER_FAMILY
        );
    }
    Ok(())
}

fn write_catalog(spec: &CatalogSpec, out: &PathBuf) -> anyhow::Result<bool> {
    check_groups_per_family(spec.groups_per_family)?;
    if spec.students == 0 {
        bail!("invalid --students 0: use at least 1");
    }
    let document = catalog::build(spec);
    let text = serde_json::to_string(&document)?;
    std::fs::write(out, text).with_context(|| format!("failed to write {}", out.display()))?;
    println!(
        "wrote {}: {} students, {} groups, period {} ({})",
        out.display(),
        spec.students,
        catalog::FAMILIES * spec.groups_per_family,
        catalog::PERIODO,
        spec.periodo_estado
    );
    Ok(true)
}

fn parse_target(target: &TargetArgs) -> anyhow::Result<Url> {
    if target.request_timeout_secs == 0 {
        bail!("invalid --request-timeout-secs 0: use at least 1");
    }
    target::parse_base_url(&target.base_url, target.allow_non_loopback).map_err(anyhow::Error::msg)
}

fn run_check(target: &TargetArgs) -> anyhow::Result<bool> {
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

fn run_rush(
    common: CommonArgs,
    students: usize,
    groups_per_family: usize,
    time_limit_secs: u64,
) -> anyhow::Result<bool> {
    check_groups_per_family(groups_per_family)?;
    if students == 0 {
        bail!("invalid --students 0: use at least 1");
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
    ));
    let origin = Origin {
        scenario: "rush",
        scenario_users: common.users,
    };
    let work = shared_transaction!(
        "enroll and wait",
        Arc::clone(&state),
        origin,
        rush::enroll_next
    );
    let scenario = attack::scenario("rush", ctx.request_timeout, Duration::ZERO, work)?;
    let iterations = rush::iterations_per_user(students, common.users);
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

fn run_scenarios(
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

/// What a run found, before its samples are folded into the report.
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

/// Writes the reports, prints the summary and returns whether the run passed. Violations go
/// to standard error, one line each, so that they cannot be missed.
fn finish(report: RunReport, out_dir: &Path) -> anyhow::Result<bool> {
    let written = report::write(&report, out_dir)?;
    println!(
        "{}: {} users, {} requests ({} failed) in {:.1} s, {:.1} requests/s",
        report.command,
        report.users,
        report.aggregates.requests,
        report.aggregates.failures,
        report.duration.as_secs_f64(),
        report.throughput()
    );
    let aggregates = &report.aggregates;
    let enqueue = aggregates.latencies_where(report::summary::is_enqueue);
    let polls = aggregates.latencies_where(report::summary::is_status_poll);
    println!("  enqueue latency     {}", enqueue.summary().line());
    println!("  status poll latency {}", polls.summary().line());
    for (scenario, tally) in &report.jobs {
        println!(
            "  {scenario} jobs: SUCCESS {}, business errors {:?}, failures {:?}, not enqueued {}, \
             unfinished {}, {} enrollments/s end to end",
            tally.success,
            tally.business_errors,
            tally.failures,
            tally.not_enqueued,
            tally.unfinished,
            tally
                .completed_per_second()
                .map_or_else(|| "no".to_owned(), |r| format!("{r:.1}"))
        );
    }
    if let Some(idem) = &report.idempotency {
        println!(
            "  idempotency: {} fresh, {} replayed, {} in flight (409), other {:?}",
            idem.fresh, idem.replayed, idem.in_flight, idem.other
        );
    }
    if let Some(memory) = report.server_memory {
        println!(
            "  server peak RSS {:.1} MiB",
            memory.peak_rss_kib as f64 / 1024.0
        );
    }
    if let Some(cpu) = report.server_cpu_seconds {
        println!("  server CPU {cpu:.2} s during the load phase");
    }
    println!(
        "  reports: {}, {}, {}",
        written.html.display(),
        written.jtl.display(),
        written.json.display()
    );
    for violation in &report.violations {
        eprintln!("INVARIANT VIOLATED: {violation}");
    }
    for problem in &report.problems {
        eprintln!("FAILED: {problem}");
    }
    if report.passed() {
        println!(
            "  result: PASS ({} inscriptions checked)",
            report.inscriptions_checked
        );
    } else {
        eprintln!(
            "registrar-loadgen: {} FAILED: {} invariant violations, {} other problems",
            report.command,
            report.violations.len(),
            report.problems.len()
        );
    }
    Ok(report.passed())
}
