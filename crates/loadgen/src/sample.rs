//! Every HTTP request of a run, recorded once: written to the JTL file as it happens and
//! folded into per-request-type and per-second aggregates for the HTML and JSON reports.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::report::jtl::JtlWriter;
use crate::stats::Latencies;

/// Distinct failure messages the aggregates keep; further ones are counted under one entry.
const MAX_DISTINCT_ERRORS: usize = 100;

/// The entry that collects failure messages past [`MAX_DISTINCT_ERRORS`].
pub const OTHER_ERRORS: &str = "(other messages, not kept)";

/// One HTTP request and its response.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When the request was sent, in milliseconds since the Unix epoch.
    pub started_epoch_ms: u64,
    /// When the request was sent, relative to the start of the run.
    pub offset: Duration,
    /// Time until the whole response body was read.
    pub elapsed: Duration,
    /// Time until the response headers arrived.
    pub latency: Duration,
    /// Request type, such as `enqueue async-by-groups`.
    pub label: &'static str,
    pub url: String,
    /// HTTP status, or `None` when no response arrived.
    pub status: Option<u16>,
    pub success: bool,
    /// Failure reason; empty when the request succeeded.
    pub failure: String,
    /// Response body size in bytes (headers not counted).
    pub bytes: u64,
    /// Request body size in bytes (headers not counted).
    pub sent_bytes: u64,
    /// Scenario name and 1-based user number, as JMeter's `threadName`.
    pub thread: String,
    /// Users configured for the sample's scenario.
    pub group_users: usize,
    /// Users configured for the whole run.
    pub all_users: usize,
}

impl Sample {
    /// Returns the status as text, or `error` when no response arrived.
    pub fn status_text(&self) -> String {
        self.status
            .map_or_else(|| "error".to_owned(), |code| code.to_string())
    }
}

/// Counts and latencies of one request type.
#[derive(Default)]
pub struct LabelStats {
    pub latencies: Latencies,
    pub count: u64,
    pub failures: u64,
    /// Responses by status code; `error` counts requests that got no response.
    pub status_codes: BTreeMap<String, u64>,
    pub bytes: u64,
}

/// Requests sent and failed in one second of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecondBucket {
    pub requests: u64,
    pub failures: u64,
}

/// Totals over a run, enough to draw every chart and table of the reports.
#[derive(Default)]
pub struct Aggregates {
    pub by_label: BTreeMap<&'static str, LabelStats>,
    /// Index `i` covers the second `[i, i + 1)` after the start of the run.
    pub per_second: Vec<SecondBucket>,
    /// Failure messages with their counts, prefixed by the request type.
    pub errors: BTreeMap<String, u64>,
    pub requests: u64,
    pub failures: u64,
}

impl Aggregates {
    pub fn add(&mut self, sample: &Sample) {
        self.requests += 1;
        let stats = self.by_label.entry(sample.label).or_default();
        stats.count += 1;
        stats.bytes += sample.bytes;
        stats.latencies.record(sample.elapsed);
        *stats.status_codes.entry(sample.status_text()).or_default() += 1;

        let second = sample.offset.as_secs() as usize;
        if self.per_second.len() <= second {
            self.per_second.resize(second + 1, SecondBucket::default());
        }
        self.per_second[second].requests += 1;

        if !sample.success {
            self.failures += 1;
            stats.failures += 1;
            self.per_second[second].failures += 1;
            let message = format!("{}: {}", sample.label, sample.failure);
            if self.errors.contains_key(&message) || self.errors.len() < MAX_DISTINCT_ERRORS {
                *self.errors.entry(message).or_default() += 1;
            } else {
                *self.errors.entry(OTHER_ERRORS.to_owned()).or_default() += 1;
            }
        }
    }

    /// Merges the latencies of every label that satisfies `include`.
    pub fn latencies_where(&self, include: impl Fn(&str) -> bool) -> Latencies {
        let mut merged = Latencies::new();
        for (label, stats) in &self.by_label {
            if include(label) {
                merged.merge(&stats.latencies);
            }
        }
        merged
    }
}

struct RecorderState {
    aggregates: Aggregates,
    jtl: Option<JtlWriter<Box<dyn Write + Send>>>,
    /// The first JTL write error; later rows are dropped.
    jtl_error: Option<String>,
}

/// The shared sink of every sample of a run.
pub struct Recorder {
    started: Instant,
    started_epoch_ms: u64,
    state: Mutex<RecorderState>,
}

impl Recorder {
    /// Starts the run clock now. `jtl` receives one row per sample when given.
    pub fn new(jtl: Option<JtlWriter<Box<dyn Write + Send>>>) -> Self {
        Self {
            started: Instant::now(),
            started_epoch_ms: epoch_ms(SystemTime::now()),
            state: Mutex::new(RecorderState {
                aggregates: Aggregates::default(),
                jtl,
                jtl_error: None,
            }),
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn started_epoch_ms(&self) -> u64 {
        self.started_epoch_ms
    }

    /// Returns the epoch time in milliseconds and the run offset of `at`.
    pub fn stamp(&self, at: Instant) -> (u64, Duration) {
        let offset = at.saturating_duration_since(self.started);
        (self.started_epoch_ms + offset.as_millis() as u64, offset)
    }

    pub fn record(&self, sample: Sample) {
        let mut state = self.state.lock().expect("recorder lock");
        state.aggregates.add(&sample);
        if state.jtl_error.is_none()
            && let Some(jtl) = state.jtl.as_mut()
            && let Err(e) = jtl.write(&sample)
        {
            state.jtl_error = Some(e.to_string());
        }
    }

    /// Flushes and closes the JTL file and returns the aggregates, or the first JTL write
    /// error. A sample recorded afterwards goes to fresh aggregates and no file.
    pub fn finish(&self) -> (Aggregates, Result<(), String>) {
        let mut state = self.state.lock().expect("recorder lock");
        let mut result = match state.jtl_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        if let Some(mut jtl) = state.jtl.take()
            && let Err(e) = jtl.flush()
            && result.is_ok()
        {
            result = Err(e.to_string());
        }
        (std::mem::take(&mut state.aggregates), result)
    }
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Builds a sample of `label` at `offset_ms` into the run.
    pub fn sample(label: &'static str, offset_ms: u64, status: Option<u16>, ok: bool) -> Sample {
        Sample {
            started_epoch_ms: 1_700_000_000_000 + offset_ms,
            offset: Duration::from_millis(offset_ms),
            elapsed: Duration::from_micros(12_400),
            latency: Duration::from_micros(10_600),
            label,
            url: "http://127.0.0.1:8003/health".into(),
            status,
            success: ok,
            failure: if ok {
                String::new()
            } else {
                "expected 200".into()
            },
            bytes: 100,
            sent_bytes: 0,
            thread: "health 1-1".into(),
            group_users: 1,
            all_users: 2,
        }
    }

    #[test]
    fn aggregates_count_by_label_and_second() {
        let mut aggregates = Aggregates::default();
        aggregates.add(&sample("health", 100, Some(200), true));
        aggregates.add(&sample("health", 2500, Some(503), false));
        aggregates.add(&sample("stats", 2600, None, false));

        assert_eq!(aggregates.requests, 3);
        assert_eq!(aggregates.failures, 2);
        assert_eq!(aggregates.per_second.len(), 3);
        assert_eq!(aggregates.per_second[0].requests, 1);
        assert_eq!(aggregates.per_second[1], SecondBucket::default());
        assert_eq!(aggregates.per_second[2].requests, 2);
        assert_eq!(aggregates.per_second[2].failures, 2);
        let health = &aggregates.by_label["health"];
        assert_eq!(health.count, 2);
        assert_eq!(health.failures, 1);
        assert_eq!(health.status_codes["200"], 1);
        assert_eq!(health.status_codes["503"], 1);
        assert_eq!(aggregates.by_label["stats"].status_codes["error"], 1);
        assert_eq!(aggregates.errors["health: expected 200"], 1);
    }

    #[test]
    fn recorder_writes_jtl_and_aggregates() {
        let path =
            std::env::temp_dir().join(format!("loadgen-recorder-{}.jtl", std::process::id()));
        let file: Box<dyn Write + Send> = Box::new(std::fs::File::create(&path).unwrap());
        let recorder = Recorder::new(Some(JtlWriter::new(file).unwrap()));
        recorder.record(sample("health", 10, Some(200), true));
        recorder.record(sample("stats", 20, Some(500), false));

        let (aggregates, result) = recorder.finish();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(result, Ok(()));
        assert_eq!(aggregates.requests, 2);
        assert_eq!(aggregates.failures, 1);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.lines().nth(2).unwrap().contains(",stats,500,"),
            "{text}"
        );

        // A sample after `finish` goes to fresh aggregates and to no file.
        recorder.record(sample("late", 30, Some(200), true));
        assert_eq!(recorder.finish().0.requests, 1);
    }

    #[test]
    fn aggregates_cap_distinct_errors() {
        let mut aggregates = Aggregates::default();
        for i in 0..(MAX_DISTINCT_ERRORS + 5) {
            let mut failed = sample("health", 0, Some(500), false);
            failed.failure = format!("message {i}");
            aggregates.add(&failed);
        }
        assert_eq!(aggregates.errors.len(), MAX_DISTINCT_ERRORS + 1);
        assert_eq!(aggregates.errors[OTHER_ERRORS], 5);
    }
}
