//! The three reports of a run: the JTL results file (written while the run goes), the HTML
//! report and the JSON summary (both written from a [`RunReport`] at the end).

pub mod html;
pub mod jtl;
pub mod summary;
pub mod text;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::jobs::JobTally;
use crate::procfs::ProcessMemory;
use crate::sample::Aggregates;
use crate::scenarios::IdempotencyTally;

/// File names inside the output folder.
pub const HTML_FILE: &str = "report.html";
pub const JTL_FILE: &str = "results.jtl";
pub const JSON_FILE: &str = "summary.json";

/// Everything a run measured and checked.
pub struct RunReport {
    /// `rush` or `scenarios`.
    pub command: &'static str,
    pub base_url: String,
    pub scenarios: Vec<&'static str>,
    pub users: usize,
    pub time_limit: Duration,
    pub started_epoch_ms: u64,
    /// Wall time of the load phase, without the checks after it.
    pub duration: Duration,
    pub aggregates: Aggregates,
    /// Job outcomes by scenario.
    pub jobs: BTreeMap<&'static str, JobTally>,
    pub idempotency: Option<IdempotencyTally>,
    /// Inscriptions the invariant check read.
    pub inscriptions_checked: usize,
    pub violations: Vec<String>,
    /// Expectations of the run that failed, other than invariant violations.
    pub problems: Vec<String>,
    pub server_memory: Option<ProcessMemory>,
    /// CPU seconds the server used during the load phase.
    pub server_cpu_seconds: Option<f64>,
    /// Busy fraction of the whole machine's CPU during the load phase, the load generator
    /// and other processes included.
    pub machine_busy: Option<f64>,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.problems.is_empty()
    }

    /// Returns the jobs seen finished in each second of the run, over all scenarios.
    pub fn finished_per_second(&self) -> Vec<u64> {
        let mut total: Vec<u64> = Vec::new();
        for tally in self.jobs.values() {
            if total.len() < tally.finished_per_second.len() {
                total.resize(tally.finished_per_second.len(), 0);
            }
            for (second, count) in tally.finished_per_second.iter().enumerate() {
                total[second] += count;
            }
        }
        total
    }

    /// Returns requests per second over the load phase.
    pub fn throughput(&self) -> f64 {
        self.aggregates.requests as f64 / self.duration.as_secs_f64().max(f64::EPSILON)
    }
}

/// Paths of the written reports.
pub struct Written {
    pub html: PathBuf,
    pub jtl: PathBuf,
    pub json: PathBuf,
}

/// Writes the HTML report and the JSON summary into `out_dir`; the JTL file is already there.
pub fn write(report: &RunReport, out_dir: &Path) -> anyhow::Result<Written> {
    let written = Written {
        html: out_dir.join(HTML_FILE),
        jtl: out_dir.join(JTL_FILE),
        json: out_dir.join(JSON_FILE),
    };
    std::fs::write(&written.html, html::render(report))
        .with_context(|| format!("failed to write {}", written.html.display()))?;
    let json = serde_json::to_string_pretty(&summary::to_json(report))? + "\n";
    std::fs::write(&written.json, json)
        .with_context(|| format!("failed to write {}", written.json.display()))?;
    Ok(written)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::sample::tests::sample;

    /// Builds a small rush report: two enqueue requests, three status polls (one failed) and
    /// one health request over three seconds, with one violation.
    pub fn example() -> RunReport {
        let mut aggregates = Aggregates::default();
        aggregates.add(&sample("enqueue async-by-groups", 100, Some(202), true));
        aggregates.add(&sample("enqueue async-by-groups", 1100, Some(202), true));
        aggregates.add(&sample("status multiple", 1200, Some(200), true));
        aggregates.add(&sample("status multiple", 2200, Some(200), true));
        aggregates.add(&sample("status multiple", 2300, Some(500), false));
        aggregates.add(&sample("health <&>", 2400, Some(200), true));
        let tally = JobTally {
            requested: 3,
            success: 1,
            business_errors: BTreeMap::from([("GRUPO_SIN_CUPO".into(), 1)]),
            end_to_end: Some(Duration::from_millis(2500)),
            finished_per_second: vec![0, 1, 1],
            not_enqueued: 1,
            not_enqueued_reasons: BTreeMap::from([("enqueue returned 503".into(), 1)]),
            ..JobTally::default()
        };
        RunReport {
            command: "rush",
            base_url: "http://127.0.0.1:18003/".into(),
            scenarios: vec!["rush"],
            users: 2,
            time_limit: Duration::from_secs(60),
            started_epoch_ms: 1_700_000_000_000,
            duration: Duration::from_secs(3),
            aggregates,
            jobs: BTreeMap::from([("rush", tally)]),
            idempotency: None,
            inscriptions_checked: 1,
            violations: vec!["group BG1-001 has inscritos_actuales 3 but 2 detail rows".into()],
            problems: Vec::new(),
            server_memory: Some(ProcessMemory {
                peak_rss_kib: 51_200,
                rss_kib: 40_960,
            }),
            server_cpu_seconds: Some(1.5),
            machine_busy: Some(0.75),
        }
    }
}
