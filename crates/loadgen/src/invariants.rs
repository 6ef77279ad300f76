//! The invariants that must hold after any load run, checked through the public API:
//! no group over its `cupo`, each `inscritos_actuales` equal to the detail rows that the
//! listings show, one inscription per student and period, no group or materia twice in an
//! inscription, no schedule overlap in an active period, and every job's outcome visible in
//! the data.
//!
//! The check reads every period, every inscription of each period and the listing of each
//! student who has one, so it sees every detail row in the database.
// NOTE: the API lists groups only through the inscriptions that hold them, so a group with
// no detail row but a non-zero `inscritos_actuales` goes unnoticed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use reqwest::{Client, Url};
use serde_json::Value;

use crate::target::endpoint;

/// Concurrent listing requests of the check.
const CHECK_CONCURRENCY: usize = 8;

/// A weekly slot in minutes after midnight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub days: BTreeSet<String>,
    pub start: u32,
    pub end: u32,
}

impl Slot {
    /// Applies the service's overlap rule: a shared day and intersecting time ranges.
    /// Back-to-back slots do not overlap.
    pub fn overlaps(&self, other: &Slot) -> bool {
        !self.days.is_disjoint(&other.days) && self.start < other.end && other.start < self.end
    }
}

/// A group as one detail row of a student listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub codigo_grupo: String,
    pub sigla_materia: String,
    pub cupo: i64,
    pub inscritos_actuales: i64,
    pub slot: Option<Slot>,
}

/// One inscription with its detail rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inscription {
    pub codigo_inscripcion: String,
    pub registro_academico: String,
    pub codigo_periodo: String,
    pub groups: Vec<GroupView>,
}

/// Everything the API showed after a run.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `codigo_periodo` to `estado`.
    pub periods: BTreeMap<String, String>,
    /// `(registro_academico, codigo_periodo)` of each row of the per-period listings.
    pub period_rows: Vec<(String, String)>,
    /// Inscriptions from the per-student listings.
    pub inscriptions: Vec<Inscription>,
}

/// How a finished job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Success,
    /// The job finished with `result.status` `ERROR`: the service rejected the enrollment.
    BusinessError {
        code: String,
    },
    /// `FAILURE`, `REVOKED`, an unknown id, a finished job without a readable result, or
    /// group views of one job that disagree.
    Failure {
        reason: String,
    },
    /// Still not finished when the run's time was up.
    Unfinished,
}

/// Classifies one status item, as `GET …/tasks/{id}/status` or `POST …/tasks/status/multiple`
/// return it. Returns `None` while the job is not finished, and for an item whose lookup
/// failed on the server (`ERROR`), which the next poll retries.
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

/// One enrollment request of the run and how its job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub registro_academico: String,
    pub codigo_periodo: String,
    pub grupos: Vec<String>,
    pub outcome: JobOutcome,
}

/// Checks the data invariants of a snapshot and returns one message per violation.
pub fn check_snapshot(snapshot: &Snapshot) -> Vec<String> {
    let mut violations = Vec::new();

    let mut per_student_period: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (ra, periodo) in &snapshot.period_rows {
        *per_student_period.entry((ra, periodo)).or_default() += 1;
    }
    for ((ra, periodo), count) in per_student_period {
        if count > 1 {
            violations.push(format!(
                "student {ra} has {count} inscriptions in period {periodo}, at most 1 allowed"
            ));
        }
    }

    let mut details_per_group: BTreeMap<&str, i64> = BTreeMap::new();
    let mut views_per_group: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for inscription in &snapshot.inscriptions {
        violations.extend(check_inscription(inscription));
        for group in &inscription.groups {
            *details_per_group.entry(&group.codigo_grupo).or_default() += 1;
            let seen = (group.cupo, group.inscritos_actuales);
            let first = *views_per_group.entry(&group.codigo_grupo).or_insert(seen);
            if first != seen {
                violations.push(format!(
                    "group {} changed during the check: cupo/inscritos {}/{} then {}/{}",
                    group.codigo_grupo, first.0, first.1, seen.0, seen.1
                ));
            }
        }
    }
    for (codigo, (cupo, inscritos)) in &views_per_group {
        let details = details_per_group[codigo];
        if *inscritos < 0 || inscritos > cupo {
            violations.push(format!(
                "group {codigo} has inscritos_actuales {inscritos} outside 0..={cupo} (cupo)"
            ));
        }
        if *inscritos != details {
            violations.push(format!(
                "group {codigo} has inscritos_actuales {inscritos} but {details} detail rows"
            ));
        }
    }

    violations.extend(check_overlaps(snapshot));
    violations
}

/// Checks one inscription: no group twice and no materia twice.
fn check_inscription(inscription: &Inscription) -> Vec<String> {
    let mut violations = Vec::new();
    let mut groups = BTreeSet::new();
    let mut materias = BTreeMap::new();
    for group in &inscription.groups {
        if !groups.insert(&group.codigo_grupo) {
            violations.push(format!(
                "inscription {} holds group {} twice",
                inscription.codigo_inscripcion, group.codigo_grupo
            ));
        }
        if let Some(other) = materias.insert(&group.sigla_materia, &group.codigo_grupo)
            && other != &group.codigo_grupo
        {
            violations.push(format!(
                "inscription {} holds groups {other} and {} of materia {}",
                inscription.codigo_inscripcion, group.codigo_grupo, group.sigla_materia
            ));
        }
    }
    violations
}

/// Checks that no student holds two overlapping groups in `ACTIVO` periods.
fn check_overlaps(snapshot: &Snapshot) -> Vec<String> {
    let mut held: BTreeMap<&str, Vec<&GroupView>> = BTreeMap::new();
    for inscription in &snapshot.inscriptions {
        let active = snapshot
            .periods
            .get(&inscription.codigo_periodo)
            .is_some_and(|estado| estado == "ACTIVO");
        if active {
            held.entry(&inscription.registro_academico)
                .or_default()
                .extend(&inscription.groups);
        }
    }
    let mut violations = Vec::new();
    for (ra, groups) in held {
        for (i, a) in groups.iter().enumerate() {
            for b in &groups[i + 1..] {
                let (Some(slot_a), Some(slot_b)) = (&a.slot, &b.slot) else {
                    continue;
                };
                if a.codigo_grupo != b.codigo_grupo && slot_a.overlaps(slot_b) {
                    violations.push(format!(
                        "student {ra} holds overlapping groups {} and {}",
                        a.codigo_grupo, b.codigo_grupo
                    ));
                }
            }
        }
    }
    violations
}

/// Checks each job against the data: a SUCCESS job's groups are all held, every job is
/// finished, and, when `rejected_means_absent` is set (nobody held any group before the run),
/// a rejected job's groups are not held by that student.
pub fn check_jobs(
    snapshot: &Snapshot,
    jobs: &[JobRecord],
    rejected_means_absent: bool,
) -> Vec<String> {
    let mut held: HashMap<(&str, &str), BTreeSet<&str>> = HashMap::new();
    for inscription in &snapshot.inscriptions {
        held.entry((&inscription.registro_academico, &inscription.codigo_periodo))
            .or_default()
            .extend(inscription.groups.iter().map(|g| g.codigo_grupo.as_str()));
    }
    let empty = BTreeSet::new();
    let mut violations = Vec::new();
    for job in jobs {
        let ra = job.registro_academico.as_str();
        let groups = held
            .get(&(ra, job.codigo_periodo.as_str()))
            .unwrap_or(&empty);
        match &job.outcome {
            JobOutcome::Success => {
                let missing: Vec<&str> = job
                    .grupos
                    .iter()
                    .map(String::as_str)
                    .filter(|g| !groups.contains(g))
                    .collect();
                if !missing.is_empty() {
                    violations.push(format!(
                        "student {ra}: job SUCCESS but groups {missing:?} are not held"
                    ));
                }
            }
            JobOutcome::BusinessError { code } if rejected_means_absent => {
                let present: Vec<&str> = job
                    .grupos
                    .iter()
                    .map(String::as_str)
                    .filter(|g| groups.contains(g))
                    .collect();
                if !present.is_empty() {
                    violations.push(format!(
                        "student {ra}: job rejected with {code} but groups {present:?} are held"
                    ));
                }
            }
            JobOutcome::BusinessError { .. } | JobOutcome::Failure { .. } => {}
            JobOutcome::Unfinished => {
                violations.push(format!(
                    "student {ra}: job not finished at the end of the run"
                ));
            }
        }
    }
    violations
}

/// One `202` reply to a request with an `Idempotency-Key` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedReply {
    pub key: String,
    pub main_task_id: String,
    /// Whether the reply carried `Idempotent-Replayed: true`.
    pub replayed: bool,
}

/// Checks that a replay never invents a task: every replayed `main_task_id` is one that the
/// same key got in a fresh reply. A key may get several fresh replies, because a job that
/// ended in a business error is not replayed.
pub fn check_idempotency(replies: &[KeyedReply]) -> Vec<String> {
    let mut fresh: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for reply in replies.iter().filter(|r| !r.replayed) {
        fresh
            .entry(&reply.key)
            .or_default()
            .insert(&reply.main_task_id);
    }
    let mut violations = Vec::new();
    for reply in replies.iter().filter(|r| r.replayed) {
        let known = fresh
            .get(reply.key.as_str())
            .is_some_and(|ids| ids.contains(reply.main_task_id.as_str()));
        if !known {
            violations.push(format!(
                "key {}: replay returned main_task_id {} that no fresh reply issued",
                reply.key, reply.main_task_id
            ));
        }
    }
    violations
}

/// Parses `HH:MM` or `HH:MM:SS` into minutes after midnight.
fn minutes(clock: &str) -> Option<u32> {
    let mut parts = clock.split(':');
    let hours: u32 = parts.next()?.parse().ok()?;
    let mins: u32 = parts.next()?.parse().ok()?;
    Some(hours * 60 + mins)
}

fn parse_group(value: &Value) -> Option<GroupView> {
    let slot = value
        .get("horario")
        .filter(|h| h.is_object())
        .and_then(|h| {
            Some(Slot {
                days: h["dias_semana"]
                    .as_array()?
                    .iter()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect(),
                start: minutes(h["hora_inicio"].as_str()?)?,
                end: minutes(h["hora_fin"].as_str()?)?,
            })
        });
    Some(GroupView {
        codigo_grupo: value["codigo_grupo"].as_str()?.to_owned(),
        sigla_materia: value["sigla_materia"].as_str()?.to_owned(),
        cupo: value["cupo"].as_i64()?,
        inscritos_actuales: value["inscritos_actuales"].as_i64()?,
        slot,
    })
}

/// Parses the body of `GET /api/v1/inscripciones/estudiante/{ra}`.
pub fn parse_student_listing(body: &Value) -> Result<Vec<Inscription>, String> {
    let list = body["inscripciones"]
        .as_array()
        .ok_or("response has no inscripciones array")?;
    list.iter()
        .map(|item| {
            let field = |name: &str| {
                item[name]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("inscription without {name}"))
            };
            let detalles = item["detalles"]
                .as_array()
                .ok_or("inscription has no detalles array")?;
            let groups = detalles
                .iter()
                .map(|d| parse_group(&d["grupo"]).ok_or("detail without a complete grupo"))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Inscription {
                codigo_inscripcion: field("codigo_inscripcion")?,
                registro_academico: field("registro_academico")?,
                codigo_periodo: field("codigo_periodo")?,
                groups,
            })
        })
        .collect()
}

async fn get_json(client: &Client, url: Url) -> anyhow::Result<Value> {
    let response = client
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("GET {url} failed"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("GET {url} returned {status}");
    }
    response
        .json()
        .await
        .with_context(|| format!("GET {url} returned invalid JSON"))
}

/// Reads every period, every inscription and every listed student's groups.
pub async fn fetch_snapshot(client: &Client, base: &Url) -> anyhow::Result<Snapshot> {
    let mut snapshot = Snapshot::default();
    let periods = get_json(client, endpoint(base, "/api/v1/periodos")).await?;
    for periodo in periods.as_array().context("period list is not an array")? {
        let codigo = periodo["codigo_periodo"].as_str().unwrap_or_default();
        let estado = periodo["estado"].as_str().unwrap_or_default();
        snapshot
            .periods
            .insert(codigo.to_owned(), estado.to_owned());
    }

    let mut students = BTreeSet::new();
    for codigo in snapshot.periods.keys() {
        let url = endpoint(base, &format!("/api/v1/inscripciones/periodo/{codigo}"));
        let listing = get_json(client, url).await?;
        for row in listing["inscripciones"].as_array().into_iter().flatten() {
            let ra = row["registro_academico"].as_str().unwrap_or_default();
            snapshot.period_rows.push((ra.to_owned(), codigo.clone()));
            students.insert(ra.to_owned());
        }
    }

    let students: Arc<Vec<String>> = Arc::new(students.into_iter().collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CHECK_CONCURRENCY.min(students.len()) {
        let (client, base) = (client.clone(), base.clone());
        let (students, next) = (Arc::clone(&students), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut found = Vec::new();
            while let Some(ra) = students.get(next.fetch_add(1, Ordering::Relaxed)) {
                let url = endpoint(&base, &format!("/api/v1/inscripciones/estudiante/{ra}"));
                let body = get_json(&client, url).await?;
                let parsed = parse_student_listing(&body)
                    .map_err(|e| anyhow::anyhow!("listing of student {ra}: {e}"))?;
                found.extend(parsed);
            }
            anyhow::Ok(found)
        }));
    }
    for task in tasks {
        let found = task.await.context("a listing task panicked")??;
        snapshot.inscriptions.extend(found);
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn group(
        codigo: &str,
        sigla: &str,
        cupo: i64,
        inscritos: i64,
        slot: Option<Slot>,
    ) -> GroupView {
        GroupView {
            codigo_grupo: codigo.into(),
            sigla_materia: sigla.into(),
            cupo,
            inscritos_actuales: inscritos,
            slot,
        }
    }

    fn slot(days: &[&str], start: u32, end: u32) -> Option<Slot> {
        Some(Slot {
            days: days.iter().map(|d| (*d).to_owned()).collect(),
            start,
            end,
        })
    }

    fn inscription(codigo: &str, ra: &str, groups: Vec<GroupView>) -> Inscription {
        Inscription {
            codigo_inscripcion: codigo.into(),
            registro_academico: ra.into(),
            codigo_periodo: "P1".into(),
            groups,
        }
    }

    /// Two students, each in their own inscription of active period P1, sharing group G1 of
    /// cupo 2 and holding one other non-overlapping group each.
    fn consistent() -> Snapshot {
        let g1 = group("G1", "M1", 2, 2, slot(&["LUNES"], 480, 570));
        Snapshot {
            periods: BTreeMap::from([("P1".into(), "ACTIVO".into())]),
            period_rows: vec![("A".into(), "P1".into()), ("B".into(), "P1".into())],
            inscriptions: vec![
                inscription(
                    "I1",
                    "A",
                    vec![
                        g1.clone(),
                        group("G2", "M2", 5, 1, slot(&["LUNES"], 570, 600)),
                    ],
                ),
                inscription(
                    "I2",
                    "B",
                    vec![g1, group("G3", "M3", 5, 1, slot(&["MARTES"], 480, 570))],
                ),
            ],
        }
    }

    #[test]
    fn consistent_snapshot_passes() {
        assert_eq!(check_snapshot(&consistent()), Vec::<String>::new());
    }

    #[test]
    fn group_over_cupo_is_reported() {
        let mut snapshot = consistent();
        for inscription in &mut snapshot.inscriptions {
            inscription.groups[0].cupo = 1;
        }
        let violations = check_snapshot(&snapshot);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].contains("outside 0..=1"), "{violations:?}");
    }

    #[test]
    fn counter_differing_from_details_is_reported() {
        let mut snapshot = consistent();
        snapshot.inscriptions[1].groups.remove(0);
        let violations = check_snapshot(&snapshot);
        assert!(
            violations
                .iter()
                .any(|v| v.contains("G1") && v.contains("1 detail rows")),
            "{violations:?}"
        );
    }

    #[test]
    fn second_inscription_in_period_is_reported() {
        let mut snapshot = consistent();
        snapshot.period_rows.push(("A".into(), "P1".into()));
        let violations = check_snapshot(&snapshot);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].contains("2 inscriptions"), "{violations:?}");
    }

    #[test]
    fn repeated_group_and_materia_are_reported() {
        let mut snapshot = consistent();
        let extra = group("G4", "M2", 5, 1, slot(&["VIERNES"], 0, 60));
        snapshot.inscriptions[0].groups.push(extra);
        let first = snapshot.inscriptions[0].groups[0].clone();
        snapshot.inscriptions[0].groups.push(first);
        let violations = check_snapshot(&snapshot);
        assert!(
            violations
                .iter()
                .any(|v| v.contains("G4") && v.contains("materia M2")),
            "{violations:?}"
        );
        assert!(
            violations
                .iter()
                .any(|v| v.contains("holds group G1 twice")),
            "{violations:?}"
        );
    }

    #[test]
    fn overlap_in_active_period_is_reported() {
        let mut snapshot = consistent();
        snapshot.inscriptions[0].groups[1].slot = slot(&["LUNES"], 540, 600);
        let violations = check_snapshot(&snapshot);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].contains("overlapping"), "{violations:?}");

        snapshot.periods.insert("P1".into(), "CERRADO".into());
        assert_eq!(check_snapshot(&snapshot), Vec::<String>::new());
    }

    fn job(ra: &str, grupos: &[&str], outcome: JobOutcome) -> JobRecord {
        JobRecord {
            registro_academico: ra.into(),
            codigo_periodo: "P1".into(),
            grupos: grupos.iter().map(|g| (*g).to_owned()).collect(),
            outcome,
        }
    }

    #[test]
    fn jobs_match_held_groups() {
        let snapshot = consistent();
        let rejected = JobOutcome::BusinessError {
            code: "GRUPO_SIN_CUPO".into(),
        };
        let jobs = [
            job("A", &["G1", "G2"], JobOutcome::Success),
            job("C", &["G1"], rejected.clone()),
        ];
        assert_eq!(check_jobs(&snapshot, &jobs, true), Vec::<String>::new());

        let wrong = [
            job("B", &["G1", "G2"], JobOutcome::Success),
            job("A", &["G1"], rejected),
            job("C", &["G3"], JobOutcome::Unfinished),
        ];
        let violations = check_jobs(&snapshot, &wrong, true);
        assert_eq!(violations.len(), 3, "{violations:?}");
        assert!(
            violations[0].contains("[\"G2\"] are not held"),
            "{violations:?}"
        );
        assert!(violations[1].contains("are held"), "{violations:?}");
        assert!(violations[2].contains("not finished"), "{violations:?}");
        assert_eq!(check_jobs(&snapshot, &wrong, false).len(), 2);
    }

    #[test]
    fn replay_of_unknown_task_is_reported() {
        let reply = |key: &str, id: &str, replayed| KeyedReply {
            key: key.into(),
            main_task_id: id.into(),
            replayed,
        };
        let good = [
            reply("k1", "t1", false),
            reply("k1", "t1", true),
            reply("k2", "t2", false),
            reply("k2", "t3", false),
            reply("k2", "t3", true),
        ];
        assert_eq!(check_idempotency(&good), Vec::<String>::new());
        let bad = [reply("k1", "t1", false), reply("k1", "t9", true)];
        let violations = check_idempotency(&bad);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].contains("t9"), "{violations:?}");
    }

    #[test]
    fn classify_reads_job_states() {
        let rejected = json!({
            "status": "SUCCESS",
            "result": {"status": "ERROR", "error_code": "GRUPO_SIN_CUPO"},
        });
        assert_eq!(
            classify(&json!({"status": "SUCCESS", "result": {"status": "SUCCESS"}})),
            Some(JobOutcome::Success)
        );
        assert_eq!(
            classify(&rejected),
            Some(JobOutcome::BusinessError {
                code: "GRUPO_SIN_CUPO".into()
            })
        );
        for state in ["FAILURE", "REVOKED", "NOT_FOUND"] {
            assert!(
                matches!(
                    classify(&json!({"status": state})),
                    Some(JobOutcome::Failure { .. })
                ),
                "{state}"
            );
        }
        for state in ["PENDING", "STARTED", "PROGRESS", "RETRY", "ERROR"] {
            assert_eq!(classify(&json!({ "status": state })), None, "{state}");
        }
    }

    #[test]
    fn student_listing_is_parsed() {
        let body = json!({"inscripciones": [{
            "codigo_inscripcion": "I1",
            "registro_academico": "A",
            "codigo_periodo": "P1",
            "detalles": [{"codigo_detalle": "D1", "grupo": {
                "codigo_grupo": "G1", "sigla_materia": "M1", "cupo": 40,
                "inscritos_actuales": 3,
                "horario": {"dias_semana": ["LUNES", "MIERCOLES"],
                            "hora_inicio": "08:00:00", "hora_fin": "10:00:00"}
            }}]
        }]});
        let parsed = parse_student_listing(&body).unwrap();
        assert_eq!(parsed.len(), 1);
        let group = &parsed[0].groups[0];
        assert_eq!(group.inscritos_actuales, 3);
        assert_eq!(group.slot.as_ref().unwrap().start, 480);
        assert_eq!(group.slot.as_ref().unwrap().end, 600);
        assert!(parse_student_listing(&json!({"inscripciones": [{"detalles": []}]})).is_err());
    }
}
