//! Enrollment batches planned in memory. A batch reads every row its requests can look at in
//! a few set queries, under the locks a single request would take, and keeps them in a
//! [`Snapshot`]. The one enrollment routine then runs on each request in turn against the
//! snapshot, through [`SnapshotTx`], and the batch writes what the accepted requests changed
//! in a few set statements. A batch of 32 requests thus costs about a dozen statements
//! instead of about twenty per request, which on SQLite are also a thread hand-off each.
//!
//! A request's changes go to a journal first. A rejected request drops its journal, as a
//! rollback to its savepoint would, and an accepted one applies it to the snapshot, so that
//! later requests of the batch see its seats and its inscription.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use time::Date;

use crate::domain::enrollment::{
    EnrollError, EnrollMode, EnrollmentRequest, EnrollmentRules, EnrollmentTx, enroll,
};
use crate::domain::model::{Estudiante, GroupSlot, HeldGroup, Inscripcion, Periodo};
use crate::jobs::model::JobUpdate;
use crate::saga::model::Saga;
use crate::store::{BatchOutcome, BatchStep, EnrollmentResult, StoreError};

/// The rows a batch's requests read, taken under the batch's locks.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub estudiantes: HashMap<String, Estudiante>,
    /// The description of each student's first `bloqueo` row; absent when none exists.
    pub bloqueos: HashMap<String, Option<String>>,
    pub periodos: HashMap<String, Periodo>,
    /// Inscriptions by (student, period).
    pub inscripciones: HashMap<(String, String), Inscripcion>,
    /// Inscriptions that the batch inserted before it locked any group, so that it takes its
    /// locks in the order a single request does, by (student, period). The first accepted
    /// request of each one takes it as created; the batch deletes those left unclaimed.
    pub reserved: HashMap<(String, String), Inscripcion>,
    /// Groups held by each inscription, in `codigo_grupo` order.
    pub held: HashMap<String, Vec<HeldGroup>>,
    /// Every requested group that exists, with its seat counter.
    pub groups: HashMap<String, GroupSlot>,
    /// (student, sigla) pairs with an `APROBADA` historial row, for the requested materias
    /// and the materias they require.
    pub passed: HashSet<(String, String)>,
    /// (sigla_materia, sigla_requerida) of the requested materias, sorted by both.
    pub prerequisites: Vec<(String, String)>,
    pub inscripcion_codes: Codes,
    pub detalle_codes: Codes,
}

/// Code values drawn for the batch, handed out in order.
#[derive(Debug, Default)]
pub struct Codes {
    prefix: char,
    values: VecDeque<i64>,
}

impl Codes {
    pub fn new(prefix: char, values: impl IntoIterator<Item = i64>) -> Self {
        Self {
            prefix,
            values: values.into_iter().collect(),
        }
    }

    pub fn extend(&mut self, values: impl IntoIterator<Item = i64>) {
        self.values.extend(values);
    }

    /// Counts the values not handed out yet.
    pub fn left(&self) -> usize {
        self.values.len()
    }

    fn take(&mut self) -> Result<i64, StoreError> {
        self.values.pop_front().ok_or_else(|| {
            StoreError::corrupt("code_sequence", "an enrollment batch ran out of codes")
        })
    }

    /// Puts back values taken by a rejected request, so the next request reuses them.
    fn give_back(&mut self, taken: Vec<i64>) {
        for value in taken.into_iter().rev() {
            self.values.push_front(value);
        }
    }

    /// Takes the next value, formatted as a code.
    pub fn next_code(&mut self) -> Result<String, StoreError> {
        let value = self.take()?;
        Ok(self.format(value))
    }

    fn format(&self, value: i64) -> String {
        format!("{}{value:09}", self.prefix)
    }
}

impl Snapshot {
    /// Lists the groups named by any request of the batch, sorted and without repeats.
    pub fn requested_groups<'a>(
        requests: impl IntoIterator<Item = &'a EnrollmentRequest>,
    ) -> Vec<String> {
        let codes: std::collections::BTreeSet<&String> =
            requests.into_iter().flat_map(|r| &r.grupos).collect();
        codes.into_iter().cloned().collect()
    }

    /// Records the `bloqueo` rows read in `codigo_bloqueo` order: the first row per student
    /// counts.
    pub fn add_bloqueo(&mut self, registro_academico: String, descripcion: Option<String>) {
        self.bloqueos
            .entry(registro_academico)
            .or_insert(descripcion);
    }

    pub fn add_inscripcion(&mut self, inscripcion: Inscripcion) {
        let key = (
            inscripcion.registro_academico.clone(),
            inscripcion.codigo_periodo.clone(),
        );
        self.inscripciones.insert(key, inscripcion);
    }
}

/// The rows and counters that the accepted requests of a batch write.
#[derive(Debug, Default)]
pub struct Writes {
    /// Inscriptions to insert.
    pub inscripciones: Vec<Inscripcion>,
    /// Reserved inscriptions that an accepted request took, by (student, period).
    pub claimed: Vec<(String, String)>,
    /// (codigo_detalle, codigo_inscripcion, codigo_grupo), in creation order.
    pub detalles: Vec<(String, String, String)>,
    /// Seats taken per group.
    pub seats: BTreeMap<String, i64>,
}

impl Writes {
    fn append(&mut self, other: Writes) {
        self.inscripciones.extend(other.inscripciones);
        self.claimed.extend(other.claimed);
        self.detalles.extend(other.detalles);
        for (grupo, taken) in other.seats {
            *self.seats.entry(grupo).or_default() += taken;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.inscripciones.is_empty()
            && self.claimed.is_empty()
            && self.detalles.is_empty()
            && self.seats.is_empty()
    }
}

/// The plan of a whole batch: one outcome per step, and what the accepted requests write.
#[derive(Default)]
pub struct BatchPlan<'a> {
    pub outcomes: Vec<BatchOutcome>,
    pub writes: Writes,
    pub job_updates: Vec<(&'a str, JobUpdate)>,
    pub sagas: Vec<Saga>,
}

/// Plans every step of a batch in order. `leased` maps the task ids whose lease the batch
/// holds to whether a saga is already logged for them.
pub async fn plan_batch<'a>(
    snapshot: &mut Snapshot,
    steps: &'a [BatchStep<'_>],
    leased: &HashMap<String, bool>,
    rules: &EnrollmentRules,
    today: Date,
) -> Result<BatchPlan<'a>, StoreError> {
    let mut plan = BatchPlan::default();
    for step in steps {
        let outcome = match leased.get(step.task_id) {
            None => BatchOutcome::LeaseLost,
            Some(true) => BatchOutcome::SagaLogged,
            Some(false) => {
                let result =
                    self::plan(snapshot, &mut plan.writes, step.request, rules, today).await?;
                let write = (step.finish)(&result);
                plan.job_updates.push((step.task_id, write.job));
                plan.sagas.extend(write.saga);
                BatchOutcome::Done(result)
            }
        };
        plan.outcomes.push(outcome);
    }
    Ok(plan)
}

/// Returns the outcomes of a batch that was rolled back: every job it held runs on its own.
pub fn deferred(steps: &[BatchStep<'_>], leased: &HashMap<String, bool>) -> Vec<BatchOutcome> {
    steps
        .iter()
        .map(|s| match leased.get(s.task_id) {
            None => BatchOutcome::LeaseLost,
            Some(true) => BatchOutcome::SagaLogged,
            Some(false) => BatchOutcome::Deferred,
        })
        .collect()
}

/// Runs the enrollment routine on one request against the snapshot. An accepted request's
/// changes are applied to the snapshot and added to `writes`. A rejected one changes
/// nothing.
pub async fn plan(
    snapshot: &mut Snapshot,
    writes: &mut Writes,
    request: &EnrollmentRequest,
    rules: &EnrollmentRules,
    today: Date,
) -> Result<EnrollmentResult, StoreError> {
    let mut tx = SnapshotTx {
        snapshot,
        journal: Writes::default(),
        inscripcion_codes: Vec::new(),
        detalle_codes: Vec::new(),
    };
    match enroll(&mut tx, request, &EnrollMode::Merge, rules, today).await {
        Ok(outcome) => {
            let journal = std::mem::take(&mut tx.journal);
            tx.snapshot.apply(&journal);
            writes.append(journal);
            Ok(Ok(outcome))
        }
        Err(EnrollError::Rejected(rejection)) => {
            let SnapshotTx {
                snapshot,
                inscripcion_codes,
                detalle_codes,
                ..
            } = tx;
            snapshot.inscripcion_codes.give_back(inscripcion_codes);
            snapshot.detalle_codes.give_back(detalle_codes);
            Ok(Err(rejection))
        }
        Err(EnrollError::Store(e)) => Err(e),
    }
}

impl Snapshot {
    /// Makes an accepted request's changes visible to the requests after it.
    fn apply(&mut self, journal: &Writes) {
        for (grupo, taken) in &journal.seats {
            if let Some(slot) = self.groups.get_mut(grupo) {
                slot.inscritos_actuales += taken;
            }
        }
        for inscripcion in &journal.inscripciones {
            self.add_inscripcion(inscripcion.clone());
        }
        for key in &journal.claimed {
            if let Some(inscripcion) = self.reserved.remove(key) {
                self.add_inscripcion(inscripcion);
            }
        }
        for (codigo_detalle, codigo_inscripcion, codigo_grupo) in &journal.detalles {
            let Some(slot) = self.groups.get(codigo_grupo) else {
                continue;
            };
            let held = self.held.entry(codigo_inscripcion.clone()).or_default();
            let at = held.partition_point(|h| h.slot.codigo_grupo < *codigo_grupo);
            held.insert(
                at,
                HeldGroup {
                    codigo_detalle: codigo_detalle.clone(),
                    slot: slot.clone(),
                },
            );
        }
    }
}

/// The enrollment routine's view of a snapshot during one request.
struct SnapshotTx<'s> {
    snapshot: &'s mut Snapshot,
    journal: Writes,
    inscripcion_codes: Vec<i64>,
    detalle_codes: Vec<i64>,
}

impl EnrollmentTx for SnapshotTx<'_> {
    async fn find_estudiante(
        &mut self,
        registro_academico: &str,
    ) -> Result<Option<Estudiante>, StoreError> {
        Ok(self.snapshot.estudiantes.get(registro_academico).cloned())
    }

    async fn find_bloqueo(
        &mut self,
        registro_academico: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        Ok(self.snapshot.bloqueos.get(registro_academico).cloned())
    }

    async fn find_periodo(&mut self, codigo_periodo: &str) -> Result<Option<Periodo>, StoreError> {
        Ok(self.snapshot.periodos.get(codigo_periodo).cloned())
    }

    async fn lock_or_create_inscripcion(
        &mut self,
        registro_academico: &str,
        codigo_periodo: &str,
        today: Date,
    ) -> Result<(Inscripcion, bool), StoreError> {
        let key = (registro_academico.to_owned(), codigo_periodo.to_owned());
        if let Some(existing) = self.snapshot.inscripciones.get(&key) {
            return Ok((existing.clone(), false));
        }
        if let Some(reserved) = self.snapshot.reserved.get(&key) {
            let inscripcion = reserved.clone();
            self.journal.claimed.push(key);
            return Ok((inscripcion, true));
        }
        let value = self.snapshot.inscripcion_codes.take()?;
        self.inscripcion_codes.push(value);
        let inscripcion = Inscripcion {
            codigo_inscripcion: self.snapshot.inscripcion_codes.format(value),
            registro_academico: key.0,
            codigo_periodo: key.1,
            fecha_inscripcion: today,
        };
        self.journal.inscripciones.push(inscripcion.clone());
        Ok((inscripcion, true))
    }

    async fn lock_inscripcion(
        &mut self,
        codigo_inscripcion: &str,
    ) -> Result<Option<Inscripcion>, StoreError> {
        Ok(self
            .snapshot
            .inscripciones
            .values()
            .find(|i| i.codigo_inscripcion == codigo_inscripcion)
            .cloned())
    }

    async fn held_groups(
        &mut self,
        codigo_inscripcion: &str,
    ) -> Result<Vec<HeldGroup>, StoreError> {
        Ok(self
            .snapshot
            .held
            .get(codigo_inscripcion)
            .cloned()
            .unwrap_or_default())
    }

    async fn lock_groups(&mut self, sorted_codes: &[String]) -> Result<Vec<GroupSlot>, StoreError> {
        Ok(sorted_codes
            .iter()
            .filter_map(|code| {
                let mut slot = self.snapshot.groups.get(code)?.clone();
                slot.inscritos_actuales += self.journal.seats.get(code).copied().unwrap_or(0);
                Some(slot)
            })
            .collect())
    }

    async fn passed_materias(
        &mut self,
        registro_academico: &str,
        siglas: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let ra = registro_academico.to_owned();
        Ok(siglas
            .iter()
            .filter(|sigla| {
                self.snapshot
                    .passed
                    .contains(&(ra.clone(), (*sigla).clone()))
            })
            .cloned()
            .collect())
    }

    async fn missing_prerequisites(
        &mut self,
        registro_academico: &str,
        siglas: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let ra = registro_academico.to_owned();
        Ok(self
            .snapshot
            .prerequisites
            .iter()
            .filter(|(materia, requerida)| {
                siglas.contains(materia)
                    && !self
                        .snapshot
                        .passed
                        .contains(&(ra.clone(), requerida.clone()))
            })
            .cloned()
            .collect())
    }

    async fn insert_detalle(
        &mut self,
        codigo_inscripcion: &str,
        codigo_grupo: &str,
    ) -> Result<String, StoreError> {
        let value = self.snapshot.detalle_codes.take()?;
        self.detalle_codes.push(value);
        let codigo = self.snapshot.detalle_codes.format(value);
        self.journal.detalles.push((
            codigo.clone(),
            codigo_inscripcion.to_owned(),
            codigo_grupo.to_owned(),
        ));
        Ok(codigo)
    }

    async fn take_seat(&mut self, codigo_grupo: &str) -> Result<bool, StoreError> {
        let Some(slot) = self.snapshot.groups.get(codigo_grupo) else {
            return Ok(false);
        };
        let taken = self
            .journal
            .seats
            .entry(codigo_grupo.to_owned())
            .or_default();
        if slot.inscritos_actuales + *taken >= slot.cupo {
            return Ok(false);
        }
        *taken += 1;
        Ok(true)
    }
}

/// Returns the distinct items, in first-seen order.
pub fn unique<T: Eq + std::hash::Hash + Copy>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items.into_iter().filter(|i| seen.insert(*i)).collect()
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;
    use crate::domain::error::ErrorCode;

    const TODAY: Date = date!(2026 - 03 - 02);

    fn student(ra: &str) -> Estudiante {
        Estudiante {
            registro_academico: ra.to_owned(),
            codigo_carrera: None,
            nombre: "Ana".to_owned(),
            apellido: "Rojas".to_owned(),
            ci: None,
            correo: None,
            telefono: None,
            direccion: None,
            estado_academico: "ACTIVO".to_owned(),
        }
    }

    fn group(codigo: &str, materia: &str, cupo: i64) -> GroupSlot {
        GroupSlot {
            codigo_grupo: codigo.to_owned(),
            sigla_materia: materia.to_owned(),
            cupo,
            inscritos_actuales: 0,
            horario: None,
        }
    }

    /// Two students, period P1, a group of one seat and two of ten, and codes from 1.
    fn snapshot() -> Snapshot {
        let mut snapshot = Snapshot::default();
        for ra in ["S1", "S2"] {
            snapshot.estudiantes.insert(ra.to_owned(), student(ra));
        }
        snapshot.periodos.insert(
            "P1".to_owned(),
            Periodo {
                codigo_periodo: "P1".to_owned(),
                semestre: None,
                fecha_inicio: None,
                fecha_fin: None,
                estado: Some("ACTIVO".to_owned()),
            },
        );
        for slot in [
            group("ONE", "MAT1", 1),
            group("TEN", "FIS1", 10),
            group("TWO", "QUI1", 10),
        ] {
            snapshot.groups.insert(slot.codigo_grupo.clone(), slot);
        }
        snapshot.inscripcion_codes = Codes::new('I', 1..=4);
        snapshot.detalle_codes = Codes::new('D', 1..=8);
        snapshot
    }

    fn request(ra: &str, grupos: &[&str]) -> EnrollmentRequest {
        EnrollmentRequest {
            registro_academico: ra.to_owned(),
            codigo_periodo: "P1".to_owned(),
            grupos: grupos.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    async fn run(
        snapshot: &mut Snapshot,
        writes: &mut Writes,
        r: EnrollmentRequest,
    ) -> EnrollmentResult {
        plan(snapshot, writes, &r, &EnrollmentRules::default(), TODAY)
            .await
            .expect("planning reads nothing from a database")
    }

    #[tokio::test]
    async fn plan_rejection_changes_nothing() {
        let mut snapshot = snapshot();
        let mut writes = Writes::default();
        let first = run(&mut snapshot, &mut writes, request("S1", &["ONE"])).await;
        assert!(first.is_ok(), "{first:?}");
        // S2 takes a seat of TEN, then finds ONE full: nothing of S2 may remain.
        let rejected = run(&mut snapshot, &mut writes, request("S2", &["TEN", "ONE"])).await;
        assert_eq!(
            rejected.expect_err("ONE is full").code,
            ErrorCode::GrupoSinCupo
        );
        assert_eq!(snapshot.groups["TEN"].inscritos_actuales, 0);
        assert_eq!(snapshot.groups["ONE"].inscritos_actuales, 1);

        // The next request gets the codes the rejected one gave back.
        let next = run(&mut snapshot, &mut writes, request("S2", &["TEN"])).await;
        let next = next.expect("TEN has seats");
        assert_eq!(next.inscripcion.codigo_inscripcion, "I000000002");
        assert_eq!(next.new_details[0].codigo_detalle, "D000000002");
        assert_eq!(writes.inscripciones.len(), 2);
        assert_eq!(writes.detalles.len(), 2);
        assert_eq!(
            writes.seats,
            BTreeMap::from([("ONE".to_owned(), 1), ("TEN".to_owned(), 1)])
        );
    }

    #[tokio::test]
    async fn plan_repeat_merges_into_inscription() {
        let mut snapshot = snapshot();
        let key = ("S1".to_owned(), "P1".to_owned());
        let reserved = Inscripcion {
            codigo_inscripcion: "I000000042".to_owned(),
            registro_academico: "S1".to_owned(),
            codigo_periodo: "P1".to_owned(),
            fecha_inscripcion: TODAY,
        };
        snapshot.reserved.insert(key.clone(), reserved);
        let mut writes = Writes::default();

        let first = run(&mut snapshot, &mut writes, request("S1", &["TEN"])).await;
        let first = first.expect("TEN has seats");
        assert!(first.created_inscripcion);
        assert_eq!(first.inscripcion.codigo_inscripcion, "I000000042");

        // The repeat merges into the same inscription and reports TEN as held.
        let second = run(&mut snapshot, &mut writes, request("S1", &["TEN", "TWO"])).await;
        let second = second.expect("TWO has seats");
        assert!(!second.created_inscripcion);
        assert_eq!(second.inscripcion.codigo_inscripcion, "I000000042");
        assert_eq!(second.already_held, first.new_details);
        assert_eq!(second.new_details.len(), 1);
        assert_eq!(writes.claimed, vec![key]);
        assert!(
            writes.inscripciones.is_empty(),
            "a reserved inscription is not inserted again"
        );
        assert!(snapshot.reserved.is_empty());
        assert_eq!(snapshot.groups["TEN"].inscritos_actuales, 1);
    }
}
