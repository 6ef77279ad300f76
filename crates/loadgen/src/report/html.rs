//! The HTML report: one self-contained file with inline CSS and inline SVG charts, no
//! script and no external reference, so that it opens offline and can be attached as is.
//!
//! goose 0.19's own HTML report loads ECharts from a CDN, which is why the tool draws its
//! own.

use std::fmt::Write as _;

use crate::report::RunReport;
use crate::report::summary::{is_enqueue, is_status_poll};
use crate::sample::Aggregates;
use crate::stats::LatencySummary;

const CHART_WIDTH: f64 = 760.0;
const CHART_HEIGHT: f64 = 240.0;
/// Room for the axis labels left of and below the plot.
const MARGIN_LEFT: f64 = 56.0;
const MARGIN_BOTTOM: f64 = 28.0;
/// Room for the unit and the legend above the plot.
const MARGIN_TOP: f64 = 30.0;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:60em}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;\
text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}\
.fail{color:#b00020;font-weight:bold}.pass{color:#1b5e20;font-weight:bold}\
svg text{font-size:11px;fill:#444}";

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Returns a round upper bound for an axis that must show `max`.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * magnitude >= max {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// A named series of one value per second.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<f64>,
}

/// Draws series over seconds as an SVG line chart with a y axis in `unit`.
pub fn line_chart(series: &[Series], unit: &str) -> String {
    let points = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0, f64::max);
    let top = nice_ceiling(max);
    let plot_width = CHART_WIDTH - MARGIN_LEFT - 10.0;
    let plot_height = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let x = |i: usize| MARGIN_LEFT + plot_width * i as f64 / (points.max(2) - 1) as f64;
    let y = |v: f64| MARGIN_TOP + plot_height * (1.0 - v / top);

    let mut svg = format!(
        "<svg width=\"{CHART_WIDTH}\" \
         height=\"{CHART_HEIGHT}\" role=\"img\">"
    );
    for tick in 0..=4 {
        let value = top * f64::from(tick) / 4.0;
        let _ = write!(
            svg,
            "<line x1=\"{MARGIN_LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            CHART_WIDTH - 10.0,
            y(value),
            y(value),
            MARGIN_LEFT - 4.0,
            y(value) + 4.0,
            format_number(value)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{MARGIN_LEFT}\" y=\"{:.1}\">0 s</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} s</text>\
         <text x=\"4\" y=\"12\">{}</text>",
        CHART_HEIGHT - 8.0,
        CHART_WIDTH - 10.0,
        CHART_HEIGHT - 8.0,
        points.saturating_sub(1),
        escape(unit)
    );
    for (index, s) in series.iter().enumerate() {
        let coordinates: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" style=\"fill:{}\">{}</text>",
            escape(s.color),
            coordinates.join(" "),
            CHART_WIDTH - 420.0 + 140.0 * index as f64,
            12.0,
            escape(s.color),
            escape(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Draws p50, p95 and p99 of each request type as grouped horizontal bars.
pub fn percentile_bars(rows: &[(String, LatencySummary)]) -> String {
    const ROW: f64 = 46.0;
    const LABEL_WIDTH: f64 = 190.0;
    let top = nice_ceiling(rows.iter().map(|(_, s)| s.p99_ms).fold(0.0, f64::max));
    let bar_room = CHART_WIDTH - LABEL_WIDTH - 90.0;
    let height = ROW * rows.len() as f64 + 10.0;
    let mut svg = format!(
        "<svg width=\"{CHART_WIDTH}\" \
         height=\"{height}\" role=\"img\">"
    );
    for (index, (label, summary)) in rows.iter().enumerate() {
        let base = 8.0 + ROW * index as f64;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.1}\">{}</text>",
            base + 20.0,
            escape(label)
        );
        let bars = [
            ("p50", "#4e79a7", summary.p50_ms),
            ("p95", "#f28e2b", summary.p95_ms),
            ("p99", "#e15759", summary.p99_ms),
        ];
        for (offset, (name, color, value)) in bars.iter().enumerate() {
            let y = base + 12.0 * offset as f64;
            let width = bar_room * value / top;
            let _ = write!(
                svg,
                "<rect x=\"{LABEL_WIDTH}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"10\" \
                 fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{name} {} ms</text>",
                LABEL_WIDTH + width + 4.0,
                y + 9.0,
                format_number(*value)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn format_number(value: f64) -> String {
    if value >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn throughput_section(aggregates: &Aggregates, finished: &[u64]) -> String {
    let requests = aggregates
        .per_second
        .iter()
        .map(|b| b.requests as f64)
        .collect();
    let failures = aggregates
        .per_second
        .iter()
        .map(|b| b.failures as f64)
        .collect();
    let chart = line_chart(
        &[
            Series {
                name: "requests/s",
                color: "#4e79a7",
                values: requests,
            },
            Series {
                name: "failed/s",
                color: "#e15759",
                values: failures,
            },
            Series {
                name: "jobs finished/s",
                color: "#59a14f",
                values: finished.iter().map(|&n| n as f64).collect(),
            },
        ],
        "requests per second",
    );
    format!("<h2>Throughput over time</h2>{chart}")
}

fn latency_section(aggregates: &Aggregates) -> String {
    let mut rows: Vec<(String, LatencySummary)> = aggregates
        .by_label
        .iter()
        .map(|(label, stats)| ((*label).to_owned(), stats.latencies.summary()))
        .collect();
    rows.push((
        "all enqueue requests".into(),
        aggregates.latencies_where(is_enqueue).summary(),
    ));
    rows.push((
        "all status polls".into(),
        aggregates.latencies_where(is_status_poll).summary(),
    ));
    let mut html = String::from(
        "<h2>Latency by request type</h2><table><tr><th>request type</th><th>count</th>\
         <th>failed</th><th>mean ms</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th>\
         <th>max ms</th></tr>",
    );
    for (label, summary) in &rows {
        let failed = aggregates
            .by_label
            .get(label.as_str())
            .map_or_else(|| "".to_owned(), |s| s.failures.to_string());
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{failed}</td><td>{:.2}</td><td>{:.2}</td>\
             <td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            escape(label),
            summary.count,
            summary.mean_ms,
            summary.p50_ms,
            summary.p95_ms,
            summary.p99_ms,
            summary.max_ms
        );
    }
    html.push_str("</table>");
    html.push_str(&percentile_bars(&rows));
    html
}

fn status_section(aggregates: &Aggregates) -> String {
    let mut codes: Vec<&str> = aggregates
        .by_label
        .values()
        .flat_map(|s| s.status_codes.keys().map(String::as_str))
        .collect();
    codes.sort_unstable();
    codes.dedup();
    let mut html = String::from("<h2>Status codes</h2><table><tr><th>request type</th>");
    for code in &codes {
        let _ = write!(html, "<th>{}</th>", escape(code));
    }
    html.push_str("</tr>");
    for (label, stats) in &aggregates.by_label {
        let _ = write!(html, "<tr><td>{}</td>", escape(label));
        for code in &codes {
            let count = stats.status_codes.get(*code).copied().unwrap_or(0);
            let _ = write!(html, "<td>{count}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    html
}

fn errors_section(aggregates: &Aggregates) -> String {
    if aggregates.errors.is_empty() {
        return "<h2>Errors</h2><p>No request failed.</p>".to_owned();
    }
    let mut html =
        String::from("<h2>Errors</h2><table><tr><th>request type: message</th><th>count</th></tr>");
    for (message, count) in &aggregates.errors {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{count}</td></tr>",
            escape(message)
        );
    }
    html.push_str("</table>");
    html
}

fn jobs_section(report: &RunReport) -> String {
    if report.jobs.is_empty() {
        return String::new();
    }
    let mut html = String::from(
        "<h2>Jobs</h2><table><tr><th>scenario</th><th>requested</th><th>SUCCESS</th>\
         <th>business errors</th><th>failures</th><th>not enqueued</th><th>unfinished</th>\
         <th>end to end s</th><th>enrollments/s</th></tr>",
    );
    for (scenario, tally) in &report.jobs {
        let list = |map: &std::collections::BTreeMap<String, usize>| {
            map.iter()
                .map(|(k, v)| format!("{} {v}", escape(k)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(scenario),
            tally.requested,
            tally.success,
            list(&tally.business_errors),
            list(&tally.failures),
            tally.not_enqueued,
            tally.unfinished,
            tally
                .end_to_end
                .map_or_else(String::new, |d| format!("{:.3}", d.as_secs_f64())),
            tally
                .completed_per_second()
                .map_or_else(String::new, |r| format!("{r:.1}")),
        );
    }
    html.push_str("</table>");
    for (scenario, tally) in &report.jobs {
        if !tally.not_enqueued_reasons.is_empty() {
            let reasons: Vec<String> = tally
                .not_enqueued_reasons
                .iter()
                .map(|(reason, count)| format!("{reason}: {count}"))
                .collect();
            let _ = write!(
                html,
                "<p>{}: no job for {}.</p>",
                escape(scenario),
                escape(&reasons.join(", "))
            );
        }
    }
    if let Some(idem) = &report.idempotency {
        let other: Vec<String> = idem
            .other
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = write!(
            html,
            "<p>Idempotent repeats: {} fresh 202, {} replayed 202, {} in-flight 409, \
             other: {}.</p>",
            idem.fresh,
            idem.replayed,
            idem.in_flight,
            escape(&other.join(", "))
        );
    }
    html
}

fn verdict_section(report: &RunReport) -> String {
    let mut html = format!(
        "<h2>Invariants</h2><p>{} inscriptions read after the run.</p>",
        report.inscriptions_checked
    );
    if report.passed() {
        html.push_str("<p class=\"pass\">PASS: no violation, no failed expectation.</p>");
        return html;
    }
    html.push_str("<p class=\"fail\">FAIL</p><ul>");
    for line in report.violations.iter().chain(&report.problems) {
        let _ = write!(html, "<li>{}</li>", escape(line));
    }
    html.push_str("</ul>");
    html
}

/// Renders the whole report.
pub fn render(report: &RunReport) -> String {
    let memory = report.server_memory.map_or_else(
        || "not measured (no --server-pid)".to_owned(),
        |m| format!("peak RSS {:.1} MiB", m.peak_rss_kib as f64 / 1024.0),
    );
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>registrar-loadgen {command}</title><style>{STYLE}</style></head><body>\
         <h1>registrar-loadgen {command}</h1><table>\
         <tr><td>target</td><td>{base}</td></tr>\
         <tr><td>scenarios</td><td>{scenarios}</td></tr>\
         <tr><td>users</td><td>{users}</td></tr>\
         <tr><td>time limit</td><td>{limit} s</td></tr>\
         <tr><td>started (Unix ms)</td><td>{started}</td></tr>\
         <tr><td>load phase</td><td>{duration:.3} s</td></tr>\
         <tr><td>requests</td><td>{requests} ({failed} failed), {rate:.1}/s</td></tr>\
         <tr><td>server memory</td><td>{memory}</td></tr>\
         <tr><td>server CPU</td><td>{cpu}</td></tr>\
         <tr><td>machine CPU busy</td><td>{busy}</td></tr></table>",
        command = escape(report.command),
        base = escape(&report.base_url),
        scenarios = escape(&report.scenarios.join(", ")),
        users = report.users,
        limit = report.time_limit.as_secs(),
        started = report.started_epoch_ms,
        duration = report.duration.as_secs_f64(),
        requests = report.aggregates.requests,
        failed = report.aggregates.failures,
        rate = report.throughput(),
        cpu = report
            .server_cpu_seconds
            .map_or_else(|| "not measured".to_owned(), |s| format!("{s:.2} s")),
        busy = report.machine_busy.map_or_else(
            || "not measured".to_owned(),
            |b| format!("{:.0} %", b * 100.0)
        ),
    );
    html.push_str(&verdict_section(report));
    html.push_str(&jobs_section(report));
    html.push_str(&throughput_section(
        &report.aggregates,
        &report.finished_per_second(),
    ));
    html.push_str(&latency_section(&report.aggregates));
    html.push_str(&status_section(&report.aggregates));
    html.push_str(&errors_section(&report.aggregates));
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::example;

    #[test]
    fn report_has_no_external_reference() {
        let html = render(&example());
        for needle in ["<script", "src=", "href=", "<link", "@import", "url("] {
            assert!(!html.contains(needle), "report contains {needle}");
        }
        // The only URL in the file is the target's, shown as text.
        let without_target = html.replace("http://127.0.0.1:18003/", "");
        assert!(!without_target.contains("http"), "report names another URL");
    }

    #[test]
    fn report_escapes_text() {
        let html = render(&example());
        assert!(html.contains("health &lt;&amp;&gt;"));
        assert!(!html.contains("health <&>"));
    }

    #[test]
    fn report_shows_violations_and_status_codes() {
        let html = render(&example());
        assert!(html.contains("class=\"fail\""));
        assert!(html.contains("has inscritos_actuales 3 but 2 detail rows"));
        assert!(html.contains("<th>500</th>"));
        assert!(html.contains("GRUPO_SIN_CUPO 1"));
        assert!(html.contains("rush: no job for enqueue returned 503: 1."));
        assert!(html.contains("peak RSS 50.0 MiB"));
    }

    #[test]
    fn throughput_chart_has_point_per_second() {
        let report = example();
        let html = throughput_section(&report.aggregates, &report.finished_per_second());
        let first_line = html
            .split("points=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        assert_eq!(
            first_line.split(' ').count(),
            report.aggregates.per_second.len()
        );
        assert_eq!(report.aggregates.per_second.len(), 3);
        assert!(html.contains("jobs finished/s"));
    }

    #[test]
    fn chart_scales_to_round_ceiling() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        let svg = line_chart(
            &[Series {
                name: "x",
                color: "#000",
                values: vec![0.0, 7.0],
            }],
            "unit",
        );
        // The top grid line is labelled with the ceiling, and the peak reaches it no higher.
        assert!(svg.contains(">10</text>"), "{svg}");
    }
}
