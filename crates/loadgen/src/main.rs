//! `registrar-loadgen`: writes a benchmark catalog for `registrar import` and runs an
//! enrollment rush against a registrar service on this machine.

mod catalog;
mod procfs;
mod report;
mod rush;
mod stats;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::catalog::CatalogSpec;
use crate::procfs::ProcessMemory;
use crate::rush::{RushOptions, VerifyScope};

#[derive(Parser)]
#[command(
    name = "registrar-loadgen",
    version,
    about = "Benchmark catalog and enrollment rush for registrar"
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
    /// Enroll every student in three groups through the job queue, follow the jobs to the
    /// end, check the enrollments and report throughput and latency.
    Rush {
        /// Base URL of the service; only loopback addresses are accepted.
        #[arg(long)]
        base_url: String,
        /// Number of students, B00000 onwards; must not exceed the catalog's.
        #[arg(long)]
        students: usize,
        /// Concurrent enqueue clients.
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// Groups per family; must match the catalog.
        #[arg(long, default_value_t = 50)]
        groups_per_family: usize,
        /// Pause between two rounds of status polling, in milliseconds.
        #[arg(long, default_value_t = 100)]
        poll_interval_ms: u64,
        /// Bound on enqueueing and polling together, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
        /// Timeout of each HTTP request, in seconds.
        #[arg(long, default_value_t = 30)]
        request_timeout_secs: u64,
        /// SUCCESS students to check through the API afterwards: all, none, or a count
        /// spread evenly over them.
        #[arg(long, default_value = "all", value_parser = VerifyScope::parse)]
        verify: VerifyScope,
        /// Write the JSON summary to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Process id of the service, to report its CPU time and peak resident set size
        /// (Linux only).
        #[arg(long)]
        server_pid: Option<u32>,
    },
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
            base_url,
            students,
            concurrency,
            groups_per_family,
            poll_interval_ms,
            timeout_secs,
            request_timeout_secs,
            verify,
            json,
            server_pid,
        } => (|| {
            let options = RushOptions {
                base_url: target::parse_base_url(&base_url).map_err(anyhow::Error::msg)?,
                students,
                concurrency,
                groups_per_family,
                poll_interval: Duration::from_millis(poll_interval_ms),
                timeout: Duration::from_secs(timeout_secs),
                request_timeout: Duration::from_secs(request_timeout_secs),
                verify,
                server_pid,
            };
            run_rush(options, json)
        })(),
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

fn run_rush(options: RushOptions, json: Option<PathBuf>) -> anyhow::Result<bool> {
    check_groups_per_family(options.groups_per_family)?;
    if options.students == 0 || options.concurrency == 0 {
        bail!("--students and --concurrency must be at least 1");
    }
    if let Some(pid) = options.server_pid {
        // Fail before the rush, not after it, when the pid is wrong.
        ProcessMemory::read(pid).map_err(anyhow::Error::msg)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let server_pid = options.server_pid;
    let mut report = runtime.block_on(rush::run(options))?;
    if let Some(pid) = server_pid {
        match ProcessMemory::read(pid) {
            Ok(memory) => report.server_memory = Some(memory),
            Err(e) => eprintln!("registrar-loadgen: server memory not read: {e}"),
        }
    }
    print!("{}", report.render());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(report.passed())
}
