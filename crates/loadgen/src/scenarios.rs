//! The four scenarios of the predecessor's JMeter plan, done right, against the demo catalog
//! (`registrar serve --demo`, active period `2024-2`):
//!
//! - `flow`: enqueue through `POST …/inscripciones/async`, poll `GET …/tasks/{id}/status`
//!   until the job is finished;
//! - `contention`: every user enrolls a different student in `G-ELC108-E`, which has one
//!   seat;
//! - `idempotency`: each user repeats one request with its own `Idempotency-Key`;
//! - `health`: the health and monitoring endpoints.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use goose::prelude::*;
use serde_json::{Value, json};

use crate::invariants::{JobOutcome, JobRecord, KeyedReply};
use crate::jobs::{JobLog, wait_one, wait_views};
use crate::request::{Call, Origin, RunContext, send};

/// The demo catalog's active period.
pub const DEMO_PERIODO: &str = "2024-2";

/// Groups of the `flow` scenario: two materias whose slots do not overlap.
const FLOW_GROUPS: [&str; 2] = ["G1MAT207", "G2FIS101"];
/// The demo group with one seat.
const CONTENDED_GROUP: &str = "G-ELC108-E";
/// Groups of the `idempotency` scenario.
const IDEMPOTENT_GROUPS: [&str; 2] = ["G-ELC102-E", "G-ELC106-E"];

/// Demo students `EST0000`–`EST9999` are split so that no two scenarios share a student:
/// idempotency takes `EST0000`–`EST0999`, flow `EST1000`–`EST4999`, contention
/// `EST5000`–`EST9999`.
const IDEMPOTENCY_FIRST: usize = 0;
const IDEMPOTENCY_COUNT: usize = 1000;
const FLOW_FIRST: usize = 1000;
const FLOW_COUNT: usize = 4000;
const CONTENTION_FIRST: usize = 5000;
const CONTENTION_COUNT: usize = 5000;

pub const ENQUEUE_ASYNC: &str = "enqueue async";
pub const ENQUEUE_BY_GROUPS: &str = "enqueue async-by-groups";
pub const ENQUEUE_IDEMPOTENT: &str = "enqueue idempotent";

/// The selectable scenarios, in the order of `--scenarios all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Flow,
    Contention,
    Idempotency,
    Health,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Flow,
        Kind::Contention,
        Kind::Idempotency,
        Kind::Health,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Flow => "flow",
            Kind::Contention => "contention",
            Kind::Idempotency => "idempotency",
            Kind::Health => "health",
        }
    }

    /// Parses a comma-separated list such as `flow,health`, or `all`.
    pub fn parse_list(raw: &str) -> Result<Vec<Kind>, String> {
        if raw == "all" {
            return Ok(Kind::ALL.to_vec());
        }
        let mut kinds = Vec::new();
        for name in raw.split(',').map(str::trim) {
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == name)
                .ok_or_else(|| {
                    format!(
                        "unknown scenario {name:?}: use all or a list of flow, contention, \
                         idempotency, health"
                    )
                })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(kinds)
    }
}

/// The `--scenarios` option: the selected scenarios, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindList(pub Vec<Kind>);

impl KindList {
    pub fn parse(raw: &str) -> Result<Self, String> {
        Kind::parse_list(raw).map(Self)
    }
}

/// Idempotent-request outcomes, counted per reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdempotencyTally {
    /// `202` without `Idempotent-Replayed: true`: the server queued a new job.
    pub fresh: usize,
    /// `202` with `Idempotent-Replayed: true`.
    pub replayed: usize,
    /// `409`: the first request with the key was still in flight.
    pub in_flight: usize,
    /// Any other status, or no response, by status.
    pub other: BTreeMap<String, usize>,
}

impl IdempotencyTally {
    /// Counts one reply to a request with `Idempotency-Key: key`. Returns the reply's
    /// `main_task_id` for the replay check when it is a `202` that carries one.
    pub fn count(
        &mut self,
        key: String,
        status: Option<u16>,
        replayed_header: Option<&str>,
        body: Option<&Value>,
    ) -> Option<KeyedReply> {
        let replayed = replayed_header.is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let main_task_id = body.and_then(|v| v["main_task_id"].as_str());
        match (status, main_task_id) {
            (Some(202), Some(main_task_id)) => {
                if replayed {
                    self.replayed += 1;
                } else {
                    self.fresh += 1;
                }
                Some(KeyedReply {
                    key,
                    main_task_id: main_task_id.to_owned(),
                    replayed,
                })
            }
            (Some(409), _) => {
                self.in_flight += 1;
                None
            }
            (status, _) => {
                let status = match status {
                    Some(202) => "202 without main_task_id".to_owned(),
                    Some(code) => code.to_string(),
                    None => "no response".to_owned(),
                };
                *self.other.entry(status).or_default() += 1;
                None
            }
        }
    }
}

/// Shared state of one run of the scenarios.
pub struct DemoState {
    pub ctx: Arc<RunContext>,
    /// Makes idempotency keys unique to this run, so that replays of earlier runs never mix
    /// in.
    pub run_nonce: u64,
    next_flow: AtomicUsize,
    next_contention: AtomicUsize,
    pub flow_jobs: JobLog,
    pub contention_jobs: JobLog,
    pub keyed: Mutex<Vec<KeyedReply>>,
    pub idempotency: Mutex<IdempotencyTally>,
}

impl DemoState {
    pub fn new(ctx: Arc<RunContext>, run_nonce: u64) -> Self {
        Self {
            ctx,
            run_nonce,
            next_flow: AtomicUsize::new(0),
            next_contention: AtomicUsize::new(0),
            flow_jobs: JobLog::default(),
            contention_jobs: JobLog::default(),
            keyed: Mutex::new(Vec::new()),
            idempotency: Mutex::new(IdempotencyTally::default()),
        }
    }
}

fn demo_student(first: usize, count: usize, n: usize) -> String {
    format!("EST{:04}", first + n % count)
}

fn enrollment_body(ra: &str, grupos: &[&str]) -> Value {
    json!({ "registro_academico": ra, "codigo_periodo": DEMO_PERIODO, "grupos": grupos })
}

fn record(ra: String, grupos: &[&str], outcome: JobOutcome) -> JobRecord {
    JobRecord {
        registro_academico: ra,
        codigo_periodo: DEMO_PERIODO.to_owned(),
        grupos: grupos.iter().map(|g| (*g).to_owned()).collect(),
        outcome,
    }
}

/// Reads the group task ids of an `async-by-groups` reply.
pub fn group_task_ids(reply: &Value) -> Option<Vec<String>> {
    reply["group_tasks"]
        .as_array()?
        .iter()
        .map(|t| t["task_id"].as_str().map(str::to_owned))
        .collect()
}

/// Enqueues one enrollment through `async`, then polls its status until it is finished.
pub async fn flow_once(user: &mut GooseUser, state: &DemoState, origin: Origin) {
    let ctx = &state.ctx;
    if !ctx.may_enqueue() {
        return;
    }
    let ra = demo_student(
        FLOW_FIRST,
        FLOW_COUNT,
        state.next_flow.fetch_add(1, Ordering::Relaxed),
    );
    let body = enrollment_body(&ra, &FLOW_GROUPS);
    state.flow_jobs.sending();
    let reply = send(
        user,
        ctx,
        origin,
        Call {
            label: ENQUEUE_ASYNC,
            method: GooseMethod::Post,
            path: "/api/v1/queue/inscripciones/async",
            body: Some(&body),
            headers: &[],
            expected: &[202],
        },
    )
    .await;
    let task_id = reply
        .json()
        .and_then(|v| v["task_id"].as_str().map(str::to_owned));
    let Some(task_id) = task_id.filter(|_| reply.ok) else {
        state
            .flow_jobs
            .not_enqueued(format!("{ENQUEUE_ASYNC}: status {:?}", reply.status));
        return;
    };
    let outcome = wait_one(user, ctx, origin, &task_id).await;
    state.flow_jobs.finished(record(ra, &FLOW_GROUPS, outcome));
}

/// Enrolls the next student in the one-seat group and follows the job to the end.
pub async fn contention_once(user: &mut GooseUser, state: &DemoState, origin: Origin) {
    let ctx = &state.ctx;
    if !ctx.may_enqueue() {
        return;
    }
    let ra = demo_student(
        CONTENTION_FIRST,
        CONTENTION_COUNT,
        state.next_contention.fetch_add(1, Ordering::Relaxed),
    );

    let grupos = [CONTENDED_GROUP];
    let body = enrollment_body(&ra, &grupos);
    state.contention_jobs.sending();
    let reply = send(
        user,
        ctx,
        origin,
        Call {
            label: ENQUEUE_BY_GROUPS,
            method: GooseMethod::Post,
            path: "/api/v1/queue/inscripciones/async-by-groups",
            body: Some(&body),
            headers: &[],
            expected: &[202],
        },
    )
    .await;

    let ids = reply.json().as_ref().and_then(group_task_ids);
    let Some(ids) = ids.filter(|ids| reply.ok && !ids.is_empty()) else {
        state
            .contention_jobs
            .not_enqueued(format!("{ENQUEUE_BY_GROUPS}: status {:?}", reply.status));
        return;
    };

    let outcome = wait_views(user, ctx, origin, &ids).await;
    state.contention_jobs.finished(record(ra, &grupos, outcome));
}

/// Sends this user's request again with its own `Idempotency-Key` and counts the outcome.
pub async fn idempotency_once(user: &mut GooseUser, state: &DemoState, origin: Origin) {
    if !state.ctx.may_enqueue() {
        return;
    }
    let index = user.weighted_users_index;
    let ra = demo_student(IDEMPOTENCY_FIRST, IDEMPOTENCY_COUNT, index);
    let key = format!("loadgen-{}-{index}", state.run_nonce);
    let body = enrollment_body(&ra, &IDEMPOTENT_GROUPS);
    let reply = send(
        user,
        &state.ctx,
        origin,
        Call {
            label: ENQUEUE_IDEMPOTENT,
            method: GooseMethod::Post,
            path: "/api/v1/queue/inscripciones/async-by-groups",
            body: Some(&body),
            headers: &[("Idempotency-Key", &key)],
            expected: &[202, 409],
        },
    )
    .await;

    let replayed = reply.header("Idempotent-Replayed");
    let keyed = state.idempotency.lock().expect("idempotency lock").count(
        key,
        reply.status,
        replayed,
        reply.json().as_ref(),
    );
    if let Some(keyed) = keyed {
        state.keyed.lock().expect("keyed replies lock").push(keyed);
    }
}

/// Sends one round of requests to the health and monitoring endpoints.
pub async fn health_once(user: &mut GooseUser, state: &DemoState, origin: Origin) {
    if !state.ctx.may_enqueue() {
        return;
    }
    let calls: [(&'static str, GooseMethod, &str, u16); 13] = [
        ("health", GooseMethod::Get, "/health", 200),
        ("health ready", GooseMethod::Get, "/health/ready", 200),
        ("root", GooseMethod::Get, "/", 200),
        ("metrics", GooseMethod::Get, "/metrics", 200),
        (
            "metrics prometheus",
            GooseMethod::Get,
            "/metrics/prometheus",
            200,
        ),
        ("queue stats", GooseMethod::Get, "/api/v1/queue/stats", 200),
        (
            "queue stats enhanced",
            GooseMethod::Get,
            "/api/v1/queue/stats/enhanced",
            200,
        ),
        (
            "queue workers",
            GooseMethod::Get,
            "/api/v1/queue/workers",
            200,
        ),
        (
            "queue queues",
            GooseMethod::Get,
            "/api/v1/queue/queues",
            200,
        ),
        (
            "circuit breakers",
            GooseMethod::Get,
            "/api/v1/queue/circuit-breakers",
            200,
        ),
        (
            "sagas",
            GooseMethod::Get,
            "/api/v1/queue/sagas?limit=10",
            200,
        ),
        (
            "idempotency cache",
            GooseMethod::Get,
            "/api/v1/queue/idempotency/cache",
            200,
        ),
        (
            "queue health-check",
            GooseMethod::Post,
            "/api/v1/queue/health-check",
            202,
        ),
    ];
    for (label, method, path, expected) in calls {
        send(
            user,
            &state.ctx,
            origin,
            Call {
                label,
                method,
                path,
                body: None,
                headers: &[],
                expected: &[expected],
            },
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_list_parses() {
        assert_eq!(Kind::parse_list("all").unwrap(), Kind::ALL.to_vec());
        assert_eq!(
            Kind::parse_list("health, flow,health").unwrap(),
            vec![Kind::Health, Kind::Flow]
        );
        assert!(Kind::parse_list("flow,rush").is_err());
    }

    #[test]
    fn scenario_students_do_not_overlap() {
        let ranges = [
            (IDEMPOTENCY_FIRST, IDEMPOTENCY_COUNT),
            (FLOW_FIRST, FLOW_COUNT),
            (CONTENTION_FIRST, CONTENTION_COUNT),
        ];
        for (i, (first, count)) in ranges.iter().enumerate() {
            assert!(
                first + count <= 10_000,
                "range {i} leaves the demo students"
            );
            if let Some((next, _)) = ranges.get(i + 1) {
                assert_eq!(first + count, *next, "range {i} overlaps or leaves a gap");
            }
        }
        assert_eq!(
            demo_student(FLOW_FIRST, FLOW_COUNT, FLOW_COUNT + 3),
            "EST1003"
        );
    }

    #[test]
    fn idempotent_replies_are_counted() {
        let mut tally = IdempotencyTally::default();
        let body = json!({"main_task_id": "t1"});
        let fresh = tally.count("k".into(), Some(202), None, Some(&body));
        let replay = tally.count("k".into(), Some(202), Some("True"), Some(&body));
        let not_replay = tally.count("k".into(), Some(202), Some("false"), Some(&body));
        let busy = tally.count("k".into(), Some(409), None, None);
        let reused = tally.count("k".into(), Some(422), None, None);
        let empty = tally.count("k".into(), Some(202), Some("true"), Some(&json!({})));
        let lost = tally.count("k".into(), None, None, None);

        assert_eq!(fresh.map(|r| r.replayed), Some(false));
        assert_eq!(
            replay.map(|r| (r.replayed, r.main_task_id)),
            Some((true, "t1".into()))
        );
        assert_eq!(not_replay.map(|r| r.replayed), Some(false));
        assert!(busy.is_none() && reused.is_none() && empty.is_none() && lost.is_none());
        assert_eq!(tally.fresh, 2);
        assert_eq!(tally.replayed, 1);
        assert_eq!(tally.in_flight, 1);
        assert_eq!(tally.other["422"], 1);
        assert_eq!(tally.other["202 without main_task_id"], 1);
        assert_eq!(tally.other["no response"], 1);
    }

    #[test]
    fn group_task_ids_are_read() {
        let reply = json!({"group_tasks": [
            {"grupo": "G1", "task_id": "a"},
            {"grupo": "G2", "task_id": "b"},
        ]});
        assert_eq!(group_task_ids(&reply), Some(vec!["a".into(), "b".into()]));
        assert_eq!(
            group_task_ids(&json!({"group_tasks": [{"grupo": "G1"}]})),
            None
        );
    }
}
