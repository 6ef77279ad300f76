//! The terminal summary of a run: the main figures, the paths of the reports and every
//! violation on standard error, one line each, so that none can be missed.

use crate::report::summary::{is_enqueue, is_status_poll};
use crate::report::{RunReport, Written};

pub fn print(report: &RunReport, written: &Written) {
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
    let enqueue = aggregates.latencies_where(is_enqueue);
    let polls = aggregates.latencies_where(is_status_poll);
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
}
