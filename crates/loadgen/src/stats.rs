//! Latency recording and its percentile summary.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Highest latency a histogram records, in microseconds (10 minutes). Longer samples are
/// clamped to it.
const MAX_MICROS: u64 = 600_000_000;

/// A latency histogram in microseconds with three significant digits.
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        let histogram =
            Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static histogram bounds");
        Self { histogram }
    }

    /// Records one sample; samples shorter than 1 µs count as 1 µs.
    pub fn record(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        self.histogram
            .record(micros)
            .expect("sample is clamped to the histogram bounds");
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms share their bounds");
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// Percentiles of a set of latencies, in milliseconds. Values carry the histogram's
/// precision of three significant digits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    pub fn to_json(&self) -> Value {
        json!({
            "count": self.count,
            "mean_ms": round3(self.mean_ms),
            "p50_ms": round3(self.p50_ms),
            "p95_ms": round3(self.p95_ms),
            "p99_ms": round3(self.p99_ms),
            "max_ms": round3(self.max_ms),
        })
    }

    /// Formats the summary on one line, for the human report.
    pub fn line(&self) -> String {
        format!(
            "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests)",
            self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms, self.count
        )
    }
}

/// Rounds to three decimals, so that the JSON summary shows microseconds at most.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that `actual` is within the histogram's 0.1 % precision of `expected`.
    fn assert_close(actual: f64, expected: f64, label: &str) {
        let tolerance = expected * 0.001 + 0.001;
        assert!(
            (actual - expected).abs() <= tolerance,
            "{label}: {actual} is not within {tolerance} of {expected}"
        );
    }

    #[test]
    fn summary_of_one_to_hundred_ms() {
        let mut latencies = Latencies::new();
        for ms in 1..=100 {
            latencies.record(Duration::from_millis(ms));
        }
        let summary = latencies.summary();
        assert_eq!(summary.count, 100);
        assert_close(summary.p50_ms, 50.0, "p50");
        assert_close(summary.p95_ms, 95.0, "p95");
        assert_close(summary.p99_ms, 99.0, "p99");
        assert_close(summary.max_ms, 100.0, "max");
        assert_close(summary.mean_ms, 50.5, "mean");
    }

    #[test]
    fn summary_of_nothing_is_zero() {
        let summary = Latencies::new().summary();
        assert_eq!(summary, LatencySummary::default());
    }

    #[test]
    fn merge_adds_samples() {
        let mut first = Latencies::new();
        let mut second = Latencies::new();
        first.record(Duration::from_millis(2));
        second.record(Duration::from_millis(4));
        second.record(Duration::from_secs(3600));
        first.merge(&second);
        let summary = first.summary();
        assert_eq!(summary.count, 3);
        assert_close(summary.p50_ms, 4.0, "p50");
        assert_close(summary.max_ms, MAX_MICROS as f64 / 1000.0, "clamped max");
    }
}
