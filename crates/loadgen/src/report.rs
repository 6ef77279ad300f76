//! The rush's results: the pass or fail verdict, the human summary and the JSON summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::catalog::FAMILIES;
use crate::procfs::ProcessMemory;
use crate::rush::{RushOptions, STATUS_BATCH};
use crate::stats::{LatencySummary, round3};

/// Job outcomes, counted per student.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub success: usize,
    /// Business errors by `error_code`.
    pub business_errors: BTreeMap<String, usize>,
    /// `FAILURE`, `REVOKED` and unknown ids by reason.
    pub failures: BTreeMap<String, usize>,
    /// Students whose enqueue request failed or was never sent before the timeout.
    pub not_enqueued: usize,
    /// Jobs still unfinished when the timeout passed.
    pub unfinished: usize,
}

impl Counts {
    pub fn business_error_total(&self) -> usize {
        self.business_errors.values().sum()
    }

    pub fn failure_total(&self) -> usize {
        self.failures.values().sum()
    }
}

/// The check, after the timed phase, that each SUCCESS student lists exactly their groups.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub checked: usize,
    pub violation_count: usize,
    /// The first violations, for the report.
    pub violations: Vec<String>,
}

/// Everything one rush measured.
#[derive(Debug, Clone)]
pub struct RushReport {
    pub options: RushOptions,
    pub period_activated: bool,
    /// From the first enqueue request sent until the last job was seen finished.
    pub end_to_end: Option<Duration>,
    /// From the first enqueue request sent until the last enqueue response arrived.
    pub enqueue_phase: Duration,
    pub enqueue: LatencySummary,
    pub enqueue_messages: Vec<String>,
    pub poll: LatencySummary,
    pub poll_rounds: usize,
    pub poll_errors: usize,
    pub poll_messages: Vec<String>,
    pub counts: Counts,
    pub verify: VerifyReport,
    /// CPU seconds the server used from the first enqueue request to the end of polling.
    pub server_cpu_seconds: Option<f64>,
    /// Busy fraction of the whole machine's CPU over the same window, the load generator
    /// and other processes included.
    pub machine_busy: Option<f64>,
    pub server_memory: Option<ProcessMemory>,
}

impl RushReport {
    /// Enrollments that ended in SUCCESS per second, end to end.
    pub fn throughput(&self) -> Option<f64> {
        let seconds = self.end_to_end?.as_secs_f64();
        (seconds > 0.0).then(|| self.counts.success as f64 / seconds)
    }

    /// Lists every broken expectation: each student enrolled, every job successful, every
    /// checked listing exact.
    pub fn problems(&self) -> Vec<String> {
        let counts = &self.counts;
        let mut problems = Vec::new();
        if counts.success != self.options.students {
            problems.push(format!(
                "{} of {} enrollments succeeded",
                counts.success, self.options.students
            ));
        }
        if counts.not_enqueued > 0 {
            problems.push(format!("{} students not enqueued", counts.not_enqueued));
        }
        if counts.unfinished > 0 {
            problems.push(format!(
                "{} jobs unfinished at the timeout",
                counts.unfinished
            ));
        }
        if counts.business_error_total() > 0 {
            problems.push(format!(
                "business errors: {:?}",
                self.counts.business_errors
            ));
        }
        if counts.failure_total() > 0 {
            problems.push(format!("failed jobs: {:?}", self.counts.failures));
        }
        if self.verify.violation_count > 0 {
            problems.push(format!(
                "{} listings differ from the expected groups",
                self.verify.violation_count
            ));
        }
        problems
    }

    pub fn passed(&self) -> bool {
        self.problems().is_empty()
    }

    pub fn to_json(&self) -> Value {
        let options = &self.options;
        let counts = &self.counts;
        json!({
            "base_url": options.base_url.as_str(),
            "students": options.students,
            "groups_per_student": FAMILIES,
            "groups_per_family": options.groups_per_family,
            "concurrency": options.concurrency,
            "poll_interval_ms": options.poll_interval.as_millis() as u64,
            "status_batch": STATUS_BATCH,
            "period_activated": self.period_activated,
            "end_to_end_seconds": self.end_to_end.map(|d| round3(d.as_secs_f64())),
            "enrollments_per_second": self.throughput().map(round3),
            "enqueue_phase_seconds": round3(self.enqueue_phase.as_secs_f64()),
            "enqueue_latency": self.enqueue.to_json(),
            "enqueue_errors": self.enqueue_messages,
            "status_poll_latency": self.poll.to_json(),
            "status_poll_rounds": self.poll_rounds,
            "status_poll_errors": self.poll_errors,
            "status_poll_messages": self.poll_messages,
            "jobs": {
                "success": counts.success,
                "business_error": counts.business_errors,
                "failure": counts.failures,
                "not_enqueued": counts.not_enqueued,
                "unfinished": counts.unfinished,
            },
            "verified": {
                "checked": self.verify.checked,
                "violations": self.verify.violation_count,
                "first_violations": self.verify.violations,
            },
            "server_cpu_seconds": self.server_cpu_seconds.map(round3),
            "machine_cpu_busy": self.machine_busy.map(round3),
            "server_memory": self.server_memory.map(|m| json!({
                "peak_rss_kib": m.peak_rss_kib,
                "rss_kib": m.rss_kib,
            })),
            "problems": self.problems(),
            "passed": self.passed(),
        })
    }

    /// Formats the human summary: a header line, then one labelled line per figure.
    pub fn render(&self) -> String {
        let options = &self.options;
        let mut out = format!(
            "rush: {} students x {FAMILIES} groups, {} clients, {}\n",
            options.students, options.concurrency, options.base_url
        );
        let lines = self
            .timing_lines()
            .into_iter()
            .chain(self.outcome_lines())
            .chain(self.resource_lines())
            .chain(self.verdict_lines());
        for (label, value) in lines {
            let _ = writeln!(out, "  {label:<16} {value}");
        }
        out
    }

    fn timing_lines(&self) -> Vec<(&'static str, String)> {
        let mut lines = Vec::new();
        if self.period_activated {
            lines.push(("period", "activated through the API first".to_owned()));
        }
        let throughput = match (self.throughput(), self.end_to_end) {
            (Some(rate), Some(elapsed)) => format!(
                "{rate:.1} enrollments/s end to end ({} in {:.3} s)",
                self.counts.success,
                elapsed.as_secs_f64()
            ),
            _ => "no job finished".to_owned(),
        };
        lines.push(("throughput", throughput));

        let enqueue_seconds = self.enqueue_phase.as_secs_f64();
        let enqueue_rate = self.enqueue.count as f64 / enqueue_seconds.max(f64::EPSILON);
        lines.push((
            "enqueue phase",
            format!("{enqueue_seconds:.3} s ({enqueue_rate:.1} requests/s)"),
        ));
        lines.push(("enqueue latency", self.enqueue.line()));
        lines.push((
            "status polls",
            format!(
                "{} in {} rounds, {} errors",
                self.poll.line(),
                self.poll_rounds,
                self.poll_errors
            ),
        ));
        lines
    }

    fn outcome_lines(&self) -> Vec<(&'static str, String)> {
        let counts = &self.counts;
        vec![
            (
                "jobs",
                format!(
                    "SUCCESS {}, business ERROR {}, FAILURE {}, not enqueued {}, unfinished {}",
                    counts.success,
                    counts.business_error_total(),
                    counts.failure_total(),
                    counts.not_enqueued,
                    counts.unfinished
                ),
            ),
            (
                "verified",
                format!(
                    "{} students, {} violations",
                    self.verify.checked, self.verify.violation_count
                ),
            ),
        ]
    }

    fn resource_lines(&self) -> Vec<(&'static str, String)> {
        let mut lines = Vec::new();
        if let Some(cpu) = self.server_cpu_seconds {
            let per_enrollment = cpu * 1000.0 / self.counts.success.max(1) as f64;
            lines.push((
                "server CPU",
                format!("{cpu:.2} s ({per_enrollment:.2} ms per enrollment)"),
            ));
        }
        if let Some(busy) = self.machine_busy {
            let percent = busy * 100.0;
            lines.push((
                "machine CPU",
                format!("{percent:.0} % busy over the timed window"),
            ));
        }
        if let Some(memory) = self.server_memory {
            let peak = memory.peak_rss_kib as f64 / 1024.0;
            let now = memory.rss_kib as f64 / 1024.0;
            lines.push((
                "server memory",
                format!("peak RSS {peak:.1} MiB, RSS now {now:.1} MiB"),
            ));
        }
        lines
    }

    fn verdict_lines(&self) -> Vec<(&'static str, String)> {
        let mut lines = Vec::new();
        for message in self.enqueue_messages.iter().chain(&self.poll_messages) {
            lines.push(("error", message.clone()));
        }
        for message in &self.verify.violations {
            lines.push(("violation", message.clone()));
        }
        let problems = self.problems();
        let verdict = if problems.is_empty() {
            "PASS".to_owned()
        } else {
            format!("FAIL: {}", problems.join("; "))
        };
        lines.push(("result", verdict));
        lines
    }
}
