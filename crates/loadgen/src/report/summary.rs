//! The JSON summary: throughput, enrollments completed per second end to end, enqueue and
//! status-poll latency percentiles, request counts per type, errors, job outcomes, invariant
//! violations and the server's peak RSS.

use serde_json::{Value, json};

use crate::jobs::JobTally;
use crate::report::RunReport;
use crate::stats::round3;

/// Request types whose latency counts as enqueue latency.
pub fn is_enqueue(label: &str) -> bool {
    label.starts_with("enqueue ")
}

/// Request types whose latency counts as status-poll latency.
pub fn is_status_poll(label: &str) -> bool {
    label.starts_with("status ")
}

fn jobs_json(tally: &JobTally) -> Value {
    json!({
        "requested": tally.requested,
        "success": tally.success,
        "business_error": tally.business_errors,
        "failure": tally.failures,
        "not_enqueued": tally.not_enqueued,
        "not_enqueued_reasons": tally.not_enqueued_reasons,
        "unfinished": tally.unfinished,
        "end_to_end_seconds": tally.end_to_end.map(|d| round3(d.as_secs_f64())),
        "enrollments_completed_per_second": tally.completed_per_second().map(round3),
    })
}

/// Returns one entry per second of the run: requests sent, requests failed and jobs seen
/// finished, over all scenarios.
fn timeline(report: &RunReport) -> Vec<Value> {
    let finished = report.finished_per_second();
    let seconds = report.aggregates.per_second.len().max(finished.len());
    (0..seconds)
        .map(|second| {
            let bucket = report
                .aggregates
                .per_second
                .get(second)
                .copied()
                .unwrap_or_default();
            json!({
                "second": second,
                "requests": bucket.requests,
                "failed": bucket.failures,
                "jobs_finished": finished.get(second).copied().unwrap_or(0),
            })
        })
        .collect()
}

pub fn to_json(report: &RunReport) -> Value {
    let aggregates = &report.aggregates;
    let by_label: serde_json::Map<String, Value> = aggregates
        .by_label
        .iter()
        .map(|(label, stats)| {
            let value = json!({
                "count": stats.count,
                "failed": stats.failures,
                "status_codes": stats.status_codes,
                "latency": stats.latencies.summary().to_json(),
            });
            ((*label).to_owned(), value)
        })
        .collect();
    let jobs: serde_json::Map<String, Value> = report
        .jobs
        .iter()
        .map(|(scenario, tally)| ((*scenario).to_owned(), jobs_json(tally)))
        .collect();
    let errors: Vec<Value> = aggregates
        .errors
        .iter()
        .map(|(message, count)| json!({ "message": message, "count": count }))
        .collect();

    json!({
        "command": report.command,
        "base_url": report.base_url,
        "scenarios": report.scenarios,
        "users": report.users,
        "time_limit_seconds": report.time_limit.as_secs(),
        "started_epoch_ms": report.started_epoch_ms,
        "duration_seconds": round3(report.duration.as_secs_f64()),
        "requests": {
            "total": aggregates.requests,
            "failed": aggregates.failures,
            "per_second": round3(report.throughput()),
        },
        "enqueue_latency": aggregates.latencies_where(is_enqueue).summary().to_json(),
        "status_poll_latency": aggregates.latencies_where(is_status_poll).summary().to_json(),
        "by_request_type": by_label,
        "errors": errors,
        "jobs": jobs,
        "idempotency": report.idempotency.as_ref().map(|t| json!({
            "fresh": t.fresh,
            "replayed": t.replayed,
            "in_flight_409": t.in_flight,
            "other": t.other,
        })),
        "invariants": {
            "inscriptions_checked": report.inscriptions_checked,
            "violations": report.violations,
        },
        "problems": report.problems,
        "server_memory": report.server_memory.map(|m| json!({
            "peak_rss_kib": m.peak_rss_kib,
            "rss_kib": m.rss_kib,
        })),
        "server_cpu_seconds": report.server_cpu_seconds.map(round3),
        "machine_cpu_busy": report.machine_busy.map(round3),
        "timeline": timeline(report),
        "passed": report.passed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::example;

    #[test]
    fn summary_counts_requests_and_latency_groups() {
        let summary = to_json(&example());
        assert_eq!(summary["requests"]["total"], 6);
        assert_eq!(summary["requests"]["failed"], 1);
        assert_eq!(summary["requests"]["per_second"], 2.0);
        assert_eq!(summary["enqueue_latency"]["count"], 2);
        assert_eq!(summary["status_poll_latency"]["count"], 3);
        assert_eq!(
            summary["by_request_type"]["status multiple"]["status_codes"]["500"],
            1
        );
        assert_eq!(summary["errors"][0]["count"], 1);
        let timeline = summary["timeline"].as_array().unwrap();
        assert_eq!(timeline.len(), 3);
        assert_eq!(timeline[2]["requests"], 3);
        assert_eq!(timeline[2]["failed"], 1);
        assert_eq!(timeline[1]["jobs_finished"], 1);
    }

    #[test]
    fn summary_reports_jobs_memory_and_verdict() {
        let summary = to_json(&example());
        let rush = &summary["jobs"]["rush"];
        assert_eq!(rush["success"], 1);
        assert_eq!(rush["business_error"]["GRUPO_SIN_CUPO"], 1);
        assert_eq!(rush["enrollments_completed_per_second"], 0.4);
        assert_eq!(summary["server_memory"]["peak_rss_kib"], 51_200);
        assert_eq!(
            summary["invariants"]["violations"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(summary["passed"], false);

        let mut clean = example();
        clean.violations.clear();
        assert_eq!(to_json(&clean)["passed"], true);
    }

    #[test]
    fn latency_groups_split_by_label() {
        assert!(is_enqueue("enqueue async"));
        assert!(!is_enqueue("queue health-check"));
        assert!(is_status_poll("status one"));
        assert!(!is_status_poll("queue stats"));
    }
}
