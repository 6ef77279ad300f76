//! The enrollment rush: every student enrolls in three groups through the job queue, with a
//! fixed number of concurrent clients, while one poller follows the jobs to the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Client, StatusCode, Url};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::catalog::{self, PERIODO};
use crate::procfs::{self, MachineCpu};
use crate::report::{Counts, RushReport, VerifyReport};
use crate::stats::Latencies;
use crate::target::endpoint;

/// Maximum task ids per status request. The service accepts up to 500.
pub const STATUS_BATCH: usize = 400;

/// How many error messages of each kind the report keeps.
const KEPT_MESSAGES: usize = 10;

/// Options of one rush.
#[derive(Debug, Clone)]
pub struct RushOptions {
    pub base_url: Url,
    pub students: usize,
    pub concurrency: usize,
    pub groups_per_family: usize,
    pub poll_interval: Duration,
    /// Bound on the enqueue and poll phases together.
    pub timeout: Duration,
    pub request_timeout: Duration,
    pub verify: VerifyScope,
    /// Process id of the service, to measure its CPU time during the rush.
    pub server_pid: Option<u32>,
}

/// Scope of the check, after the timed phase, that SUCCESS students list their groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyScope {
    All,
    /// An evenly spread sample of this many students.
    Sample(usize),
    None,
}

impl VerifyScope {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "all" => Ok(Self::All),
            "none" => Ok(Self::None),
            number => number
                .parse::<usize>()
                .map(Self::Sample)
                .map_err(|_| format!("invalid --verify value {raw:?}: use all, none or a count")),
        }
    }
}

/// Outcome of a finished job, as the batch status endpoint reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Success,
    /// The job finished with `result.status` `ERROR`: the service rejected the enrollment.
    BusinessError {
        code: String,
    },
    /// `FAILURE`, `REVOKED`, an unknown id, or a finished job without a readable result.
    Failure {
        reason: String,
    },
}

/// Classifies one item of `POST /api/v1/queue/tasks/status/multiple`. Returns `None` while
/// the job is not finished, and for an item whose lookup failed on the server, which the
/// next poll retries.
pub fn classify(item: &Value) -> Option<JobOutcome> {
    let status = item["status"].as_str().unwrap_or_default();
    match status {
        "SUCCESS" => Some(match item["result"]["status"].as_str() {
            Some("SUCCESS") => JobOutcome::Success,
            Some("ERROR") => JobOutcome::BusinessError {
                code: item["result"]["error_code"]
                    .as_str()
                    .unwrap_or("UNKNOWN")
                    .to_owned(),
            },
            _ => JobOutcome::Failure {
                reason: "SUCCESS without a result status".into(),
            },
        }),
        "FAILURE" | "REVOKED" | "NOT_FOUND" => Some(JobOutcome::Failure {
            reason: status.to_owned(),
        }),
        _ => None,
    }
}

/// Checks the body of `GET /api/v1/inscripciones/estudiante/{ra}`: exactly one inscription in
/// the benchmark period, holding exactly the expected groups.
pub fn check_listing(body: &Value, expected: &[String]) -> Result<(), String> {
    let Some(list) = body["inscripciones"].as_array() else {
        return Err("response has no inscripciones array".into());
    };
    let in_period: Vec<&Value> = list
        .iter()
        .filter(|i| i["codigo_periodo"] == PERIODO)
        .collect();
    let [inscripcion] = in_period.as_slice() else {
        return Err(format!(
            "{} inscriptions in {PERIODO}, expected 1",
            in_period.len()
        ));
    };
    let Some(detalles) = inscripcion["detalles"].as_array() else {
        return Err("inscription has no detalles array".into());
    };
    let mut listed: Vec<&str> = detalles
        .iter()
        .map(|d| {
            d["grupo"]["codigo_grupo"]
                .as_str()
                .or_else(|| d["codigo_grupo"].as_str())
                .unwrap_or("?")
        })
        .collect();
    listed.sort_unstable();
    let mut expected_sorted: Vec<&str> = expected.iter().map(String::as_str).collect();
    expected_sorted.sort_unstable();
    if listed != expected_sorted {
        return Err(format!("lists {listed:?}, expected {expected_sorted:?}"));
    }
    Ok(())
}

/// Builds the HTTP client: no proxy and no redirects, so that every request goes to the
/// loopback base URL and nowhere else.
pub fn http_client(options: &RushOptions) -> anyhow::Result<Client> {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(options.request_timeout)
        .pool_max_idle_per_host(options.concurrency + 2)
        .build()
        .context("failed to build the HTTP client")
}

/// Makes the benchmark period `ACTIVO` through the API when it is not. Returns whether it
/// called `activar`.
pub async fn ensure_period_active(client: &Client, base: &Url) -> anyhow::Result<bool> {
    let url = endpoint(base, &format!("/api/v1/periodos/{PERIODO}"));
    let response = client
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("GET {url} failed; is the service running?"))?;
    if response.status() == StatusCode::NOT_FOUND {
        bail!("period {PERIODO} not found: import the catalog first (registrar-loadgen catalog)");
    }
    if !response.status().is_success() {
        bail!("GET {url} returned {}", response.status());
    }
    let periodo: Value = response.json().await.context("invalid period JSON")?;
    if periodo["estado"] == "ACTIVO" {
        return Ok(false);
    }
    let url = endpoint(base, &format!("/api/v1/periodos/{PERIODO}/activar"));
    let response = client.post(url.clone()).send().await?;
    if !response.status().is_success() {
        bail!("POST {url} returned {}", response.status());
    }
    Ok(true)
}

/// One job the service accepted.
struct Enqueued {
    student: usize,
    task_id: String,
}

/// Counts and latencies that the enqueue clients recorded.
#[derive(Default)]
struct EnqueueTally {
    latencies: Latencies,
    errors: usize,
    messages: Vec<String>,
    /// Students left unsent because the timeout passed.
    unsent: usize,
}

/// Counts and latencies that the poller recorded.
#[derive(Default)]
struct PollTally {
    latencies: Latencies,
    requests: usize,
    rounds: usize,
    /// Failed status requests and items whose lookup failed on the server.
    errors: usize,
    messages: Vec<String>,
    outcomes: Vec<(usize, JobOutcome)>,
    last_terminal: Option<Instant>,
    unfinished: usize,
}

fn keep(messages: &mut Vec<String>, message: String) {
    if messages.len() < KEPT_MESSAGES {
        messages.push(message);
    }
}

/// Sends one enrollment and returns its main task id.
async fn enqueue_one(
    client: &Client,
    url: &Url,
    student: usize,
    groups_per_family: usize,
) -> Result<String, String> {
    let ra = catalog::student_id(student);
    let body = json!({
        "registro_academico": ra,
        "codigo_periodo": PERIODO,
        "grupos": catalog::student_groups(student, groups_per_family),
    });
    let response = client
        .post(url.clone())
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{ra}: request failed: {e}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("{ra}: reading the response failed: {e}"))?;
    if status != StatusCode::ACCEPTED {
        return Err(format!("{ra}: expected 202, got {status}: {text}"));
    }
    let reply: Value =
        serde_json::from_str(&text).map_err(|e| format!("{ra}: invalid JSON: {e}"))?;
    let groups = reply["group_tasks"].as_array().map_or(0, Vec::len);
    if groups != catalog::FAMILIES {
        return Err(format!("{ra}: {groups} group_tasks, expected 3"));
    }
    reply["main_task_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{ra}: response has no main_task_id"))
}

/// Runs one enqueue client, which takes the next student until none is left or the
/// deadline passes.
async fn enqueue_client(
    client: Client,
    url: Url,
    next: Arc<AtomicUsize>,
    options: Arc<RushOptions>,
    deadline: Instant,
    accepted: mpsc::UnboundedSender<Enqueued>,
) -> EnqueueTally {
    let mut tally = EnqueueTally::default();
    loop {
        let student = next.fetch_add(1, Ordering::Relaxed);
        if student >= options.students {
            break;
        }
        if Instant::now() >= deadline {
            tally.unsent += 1;
            continue;
        }
        let started = Instant::now();
        let result = enqueue_one(&client, &url, student, options.groups_per_family).await;
        tally.latencies.record(started.elapsed());
        match result {
            Ok(task_id) => {
                // The poller outlives every client, so the receiver is still open.
                let _ = accepted.send(Enqueued { student, task_id });
            }
            Err(message) => {
                tally.errors += 1;
                keep(&mut tally.messages, message);
            }
        }
    }
    tally
}

/// Sends one status request and records every finished job of the batch.
async fn poll_batch(
    client: &Client,
    url: &Url,
    ids: &[String],
    pending: &mut HashMap<String, usize>,
    tally: &mut PollTally,
) {
    let started = Instant::now();
    let reply = match client.post(url.clone()).json(ids).send().await {
        Ok(response) if response.status().is_success() => response.json::<Value>().await,
        Ok(response) => {
            tally.errors += 1;
            let message = format!("status request returned {}", response.status());
            keep(&mut tally.messages, message);
            return;
        }
        Err(e) => Err(e),
    };
    tally.latencies.record(started.elapsed());
    tally.requests += 1;
    let items = match reply {
        Ok(Value::Array(items)) => items,
        Ok(_) => {
            tally.errors += 1;
            keep(&mut tally.messages, "status reply is not an array".into());
            return;
        }
        Err(e) => {
            tally.errors += 1;
            keep(&mut tally.messages, format!("status request failed: {e}"));
            return;
        }
    };
    let seen = Instant::now();
    for item in &items {
        if item["status"] == "ERROR" {
            tally.errors += 1;
        }
        let Some(outcome) = classify(item) else {
            continue;
        };
        let Some(task_id) = item["task_id"].as_str() else {
            continue;
        };
        if let Some(student) = pending.remove(task_id) {
            tally.outcomes.push((student, outcome));
            tally.last_terminal = Some(seen);
        }
    }
}

/// Polls the accepted jobs in batches until every one is finished, the clients are done and
/// nothing is pending, or the deadline passes.
async fn poll_until_done(
    client: Client,
    url: Url,
    mut accepted: mpsc::UnboundedReceiver<Enqueued>,
    interval: Duration,
    deadline: Instant,
) -> PollTally {
    let mut tally = PollTally::default();
    let mut pending: HashMap<String, usize> = HashMap::new();
    let mut clients_done = false;
    loop {
        loop {
            match accepted.try_recv() {
                Ok(job) => {
                    pending.insert(job.task_id, job.student);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    clients_done = true;
                    break;
                }
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        if pending.is_empty() {
            if clients_done {
                break;
            }
            // Wait for the first accepted job instead of polling nothing.
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, accepted.recv()).await {
                Ok(Some(job)) => {
                    pending.insert(job.task_id, job.student);
                }
                Ok(None) => clients_done = true,
                Err(_) => break,
            }
            continue;
        }
        tally.rounds += 1;
        let ids: Vec<String> = pending.keys().cloned().collect();
        for batch in ids.chunks(STATUS_BATCH) {
            poll_batch(&client, &url, batch, &mut pending, &mut tally).await;
        }
        if !(clients_done && pending.is_empty()) {
            tokio::time::sleep(interval).await;
        }
    }
    // Jobs accepted after the deadline are unfinished too.
    while let Ok(job) = accepted.try_recv() {
        pending.insert(job.task_id, job.student);
    }
    tally.unfinished = pending.len();
    tally
}

/// Returns the students to verify: all, or `count` of them spread evenly.
fn verify_selection(successes: &[usize], scope: VerifyScope) -> Vec<usize> {
    match scope {
        VerifyScope::None => Vec::new(),
        VerifyScope::All => successes.to_vec(),
        VerifyScope::Sample(count) if count >= successes.len() => successes.to_vec(),
        VerifyScope::Sample(0) => Vec::new(),
        VerifyScope::Sample(count) => (0..count)
            .map(|i| successes[i * successes.len() / count])
            .collect(),
    }
}

/// Checks each selected student's listing through the API, `concurrency` requests at once.
async fn verify_students(
    client: &Client,
    options: &RushOptions,
    students: Vec<usize>,
) -> VerifyReport {
    let students = Arc::new(students);
    let next = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..options.concurrency.min(students.len()).max(1) {
        let client = client.clone();
        let base = options.base_url.clone();
        let students = Arc::clone(&students);
        let next = Arc::clone(&next);
        let groups_per_family = options.groups_per_family;
        handles.push(tokio::spawn(async move {
            let mut violations = Vec::new();
            let mut checked = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&student) = students.get(i) else {
                    break;
                };
                checked += 1;
                let ra = catalog::student_id(student);
                let url = endpoint(&base, &format!("/api/v1/inscripciones/estudiante/{ra}"));
                let expected = catalog::student_groups(student, groups_per_family);
                let result = match client.get(url).send().await {
                    Ok(r) if r.status().is_success() => r
                        .json::<Value>()
                        .await
                        .map_err(|e| format!("invalid JSON: {e}"))
                        .and_then(|body| check_listing(&body, &expected)),
                    Ok(r) => Err(format!("listing returned {}", r.status())),
                    Err(e) => Err(format!("listing request failed: {e}")),
                };
                if let Err(message) = result {
                    violations.push(format!("{ra}: {message}"));
                }
            }
            (checked, violations)
        }));
    }
    let mut report = VerifyReport::default();
    for handle in handles {
        match handle.await {
            Ok((checked, violations)) => {
                report.checked += checked;
                report.violation_count += violations.len();
                for message in violations {
                    keep(&mut report.violations, message);
                }
            }
            Err(e) => {
                report.violation_count += 1;
                keep(
                    &mut report.violations,
                    format!("verify client panicked: {e}"),
                );
            }
        }
    }
    report
}

/// Runs the rush and the checks after it.
pub async fn run(options: RushOptions) -> anyhow::Result<RushReport> {
    let client = http_client(&options)?;
    let period_activated = ensure_period_active(&client, &options.base_url).await?;
    let enqueue_url = endpoint(
        &options.base_url,
        "/api/v1/queue/inscripciones/async-by-groups",
    );
    let status_url = endpoint(&options.base_url, "/api/v1/queue/tasks/status/multiple");
    let options = Arc::new(options);

    let (accepted_tx, accepted_rx) = mpsc::unbounded_channel();
    let server_cpu_before = options.server_pid.and_then(procfs::process_cpu_seconds);
    let machine_before = MachineCpu::read();
    let started = Instant::now();
    let deadline = started + options.timeout;
    let poller = tokio::spawn(poll_until_done(
        client.clone(),
        status_url,
        accepted_rx,
        options.poll_interval,
        deadline,
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..options.concurrency)
        .map(|_| {
            tokio::spawn(enqueue_client(
                client.clone(),
                enqueue_url.clone(),
                Arc::clone(&next),
                Arc::clone(&options),
                deadline,
                accepted_tx.clone(),
            ))
        })
        .collect();
    drop(accepted_tx);

    let mut enqueue = EnqueueTally::default();
    for handle in clients {
        let tally = handle.await.context("an enqueue client panicked")?;
        enqueue.latencies.merge(&tally.latencies);
        enqueue.errors += tally.errors;
        enqueue.unsent += tally.unsent;
        for message in tally.messages {
            keep(&mut enqueue.messages, message);
        }
    }
    let enqueue_phase = started.elapsed();
    let poll = poller.await.context("the poller panicked")?;
    let server_cpu_after = options.server_pid.and_then(procfs::process_cpu_seconds);
    let machine_busy = MachineCpu::read()
        .zip(machine_before)
        .and_then(|(after, before)| after.busy_fraction_since(&before));

    let mut counts = Counts {
        not_enqueued: enqueue.errors + enqueue.unsent,
        unfinished: poll.unfinished,
        ..Counts::default()
    };
    let mut successes = Vec::new();
    for (student, outcome) in &poll.outcomes {
        match outcome {
            JobOutcome::Success => {
                counts.success += 1;
                successes.push(*student);
            }
            JobOutcome::BusinessError { code } => {
                *counts.business_errors.entry(code.clone()).or_default() += 1;
            }
            JobOutcome::Failure { reason } => {
                *counts.failures.entry(reason.clone()).or_default() += 1;
            }
        }
    }
    successes.sort_unstable();
    let verify = verify_students(
        &client,
        &options,
        verify_selection(&successes, options.verify),
    )
    .await;

    Ok(RushReport {
        options: (*options).clone(),
        period_activated,
        end_to_end: poll.last_terminal.map(|t| t - started),
        enqueue_phase,
        enqueue: enqueue.latencies.summary(),
        enqueue_messages: enqueue.messages,
        poll: poll.latencies.summary(),
        poll_rounds: poll.rounds,
        poll_errors: poll.errors,
        poll_messages: poll.messages,
        counts,
        verify,
        server_cpu_seconds: server_cpu_after
            .zip(server_cpu_before)
            .map(|(after, before)| after - before),
        machine_busy,
        server_memory: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_reads_job_states() {
        let success = json!({"status": "SUCCESS", "result": {"status": "SUCCESS"}});
        let rejected = json!({"status": "SUCCESS", "result": {"status": "ERROR", "error_code": "GRUPO_SIN_CUPO"}});
        let failed = json!({"status": "FAILURE", "result": null});
        let unknown = json!({"status": "NOT_FOUND"});
        let lookup_failed = json!({"status": "ERROR"});
        assert_eq!(classify(&success), Some(JobOutcome::Success));
        assert_eq!(
            classify(&rejected),
            Some(JobOutcome::BusinessError {
                code: "GRUPO_SIN_CUPO".into()
            })
        );
        assert!(matches!(
            classify(&failed),
            Some(JobOutcome::Failure { .. })
        ));
        assert!(matches!(
            classify(&unknown),
            Some(JobOutcome::Failure { .. })
        ));
        assert_eq!(classify(&lookup_failed), None);
        for state in ["PENDING", "STARTED", "PROGRESS", "RETRY"] {
            assert_eq!(classify(&json!({ "status": state })), None, "{state}");
        }
    }

    fn listing(groups: &[&str]) -> Value {
        let detalles: Vec<Value> = groups
            .iter()
            .map(|g| json!({"codigo_detalle": "D1", "grupo": {"codigo_grupo": g}}))
            .collect();
        json!({"inscripciones": [
            {"codigo_periodo": "2024-2", "detalles": []},
            {"codigo_periodo": PERIODO, "detalles": detalles},
        ]})
    }

    #[test]
    fn check_listing_accepts_expected_groups() {
        let expected = catalog::student_groups(4, 10);
        let codes: Vec<&str> = expected.iter().rev().map(String::as_str).collect();
        assert_eq!(check_listing(&listing(&codes), &expected), Ok(()));
    }

    #[test]
    fn check_listing_rejects_wrong_groups() {
        let expected = catalog::student_groups(4, 10);
        let missing = listing(&[&expected[0], &expected[1]]);
        let doubled = listing(&[&expected[0], &expected[1], &expected[2], &expected[2]]);
        let none = json!({"inscripciones": []});
        assert!(check_listing(&missing, &expected).is_err());
        assert!(check_listing(&doubled, &expected).is_err());
        assert!(check_listing(&none, &expected).is_err());
    }

    #[test]
    fn verify_selection_spreads_sample() {
        let successes: Vec<usize> = (0..100).collect();
        assert_eq!(
            verify_selection(&successes, VerifyScope::Sample(4)),
            vec![0, 25, 50, 75]
        );
        assert_eq!(verify_selection(&successes, VerifyScope::All).len(), 100);
        assert_eq!(
            verify_selection(&successes, VerifyScope::Sample(500)).len(),
            100
        );
        assert!(verify_selection(&successes, VerifyScope::None).is_empty());
    }
}
