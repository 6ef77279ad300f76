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
mod run;
mod rush;
mod sample;
mod scenarios;
mod stats;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::catalog::CatalogSpec;
use crate::scenarios::KindList;

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
        /// Students each user enqueues before it polls their jobs in one status request, at
        /// most 100. A user finishes at most this many enrollments per poll interval, so raise
        /// it (or --users) when the service may be faster than users x batch / interval.
        #[arg(long, default_value_t = 1)]
        batch_size: usize,
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
        /// Run time in seconds: no job is enqueued after it.
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
    /// Process id of the service, to report its CPU time and peak resident set size (Linux
    /// only).
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
            batch_size,
            time_limit_secs,
        } => run::run_rush(
            common,
            students,
            groups_per_family,
            batch_size,
            time_limit_secs,
        ),
        Command::Scenarios {
            common,
            scenarios,
            run_time_secs,
            think_time_ms,
            drain_secs,
        } => run::run_scenarios(
            common,
            scenarios.0,
            run_time_secs,
            Duration::from_millis(think_time_ms),
            drain_secs,
        ),
        Command::Check { target } => run::run_check(&target),
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
