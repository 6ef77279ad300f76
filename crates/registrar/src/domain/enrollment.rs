//! The one enrollment routine behind every path: the queued job, the synchronous endpoint and
//! add-group. It runs inside one transaction that the caller opens and commits. When it
//! returns an error the caller rolls back, so a request enrolls in all its groups or none.
//!
//! Lock order, the same on every path so that two transactions never wait on each other in a
//! cycle: the inscription row of (student, period) first, then the group rows in sorted
//! `codigo_grupo` order, and last a shared lock on the historial rows that satisfy a
//! prerequisite. Historial writes lock only historial rows, so they cannot close a cycle.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::Date;

use super::error::{DomainError, ErrorCode};
use super::model::{
    Detalle, ESTADO_BLOQUEADO, ESTADO_INACTIVO, ESTADO_SUSPENDIDO, Estudiante, GroupSlot,
    HeldGroup, Inscripcion, Periodo,
};
use super::schedule::find_conflict;
use crate::store::StoreError;

/// Rules that configuration can tune or switch off.
#[derive(Debug, Clone)]
pub struct EnrollmentRules {
    pub max_materias_por_periodo: usize,
    pub reject_passed_materia: bool,
    pub enforce_prerequisites: bool,
    pub enforce_enrollment_window: bool,
}

impl Default for EnrollmentRules {
    fn default() -> Self {
        Self {
            max_materias_por_periodo: 8,
            reject_passed_materia: true,
            enforce_prerequisites: true,
            enforce_enrollment_window: false,
        }
    }
}

/// A validated request to enroll one student in one period in a set of groups.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnrollmentRequest {
    pub registro_academico: String,
    pub codigo_periodo: String,
    pub grupos: Vec<String>,
}

/// The routine's treatment of an inscription that already exists for (student, period).
#[derive(Debug, Clone, PartialEq)]
pub enum EnrollMode {
    /// Queued jobs: merge into the existing inscription; groups already held are reported,
    /// and a request whose groups are all held succeeds without change.
    Merge,
    /// The synchronous endpoint: an existing inscription is `INSCRIPCION_DUPLICADA`.
    RejectExisting,
    /// Add-group: the inscription is named by code, and a group it contains is `GRUPO_DUPLICADO`.
    AddToInscripcion { codigo_inscripcion: String },
}

/// The changes a successful enrollment made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnrollmentOutcome {
    pub inscripcion: Inscripcion,
    pub created_inscripcion: bool,
    /// Details created by this request, in request order.
    pub new_details: Vec<Detalle>,
    /// Requested groups that the inscription already held, with their existing details.
    pub already_held: Vec<Detalle>,
}

/// The routine's failure: a rule rejected the request, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{}", .0.message)]
    Rejected(DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DomainError> for EnrollError {
    fn from(e: DomainError) -> Self {
        Self::Rejected(e)
    }
}

/// Reads and writes the routine needs, each run inside the caller's open transaction.
/// Backends implement it with their own SQL and locking.
#[allow(async_fn_in_trait)]
pub trait EnrollmentTx {
    async fn find_estudiante(
        &mut self,
        registro_academico: &str,
    ) -> Result<Option<Estudiante>, StoreError>;
    /// Returns the description of the student's first `bloqueo` row, if any row exists.
    async fn find_bloqueo(
        &mut self,
        registro_academico: &str,
    ) -> Result<Option<Option<String>>, StoreError>;
    async fn find_periodo(&mut self, codigo_periodo: &str) -> Result<Option<Periodo>, StoreError>;
    /// Inserts the inscription for (student, period) unless it exists, then locks it.
    /// Returns the row and whether this call created it.
    async fn lock_or_create_inscripcion(
        &mut self,
        registro_academico: &str,
        codigo_periodo: &str,
        today: Date,
    ) -> Result<(Inscripcion, bool), StoreError>;
    /// Locks the inscription named by code; `None` when it does not exist.
    async fn lock_inscripcion(
        &mut self,
        codigo_inscripcion: &str,
    ) -> Result<Option<Inscripcion>, StoreError>;
    async fn held_groups(&mut self, codigo_inscripcion: &str)
    -> Result<Vec<HeldGroup>, StoreError>;
    /// Locks the named groups in the order given (the caller sorts) and returns those that
    /// exist.
    async fn lock_groups(&mut self, sorted_codes: &[String]) -> Result<Vec<GroupSlot>, StoreError>;
    /// Returns the subset of `siglas` that the student's historial marks `APROBADA`.
    async fn passed_materias(
        &mut self,
        registro_academico: &str,
        siglas: &[String],
    ) -> Result<Vec<String>, StoreError>;
    /// Returns the prerequisites of `siglas` without an `APROBADA` historial row for the
    /// student, as `(sigla_materia, sigla_requerida)` sorted by both. Backends that lock rows
    /// also keep the APROBADA rows that meet the other prerequisites from changing until commit.
    async fn missing_prerequisites(
        &mut self,
        registro_academico: &str,
        siglas: &[String],
    ) -> Result<Vec<(String, String)>, StoreError>;
    async fn insert_detalle(
        &mut self,
        codigo_inscripcion: &str,
        codigo_grupo: &str,
    ) -> Result<String, StoreError>;
    /// Takes one seat with a conditional update; false when the group was full.
    async fn take_seat(&mut self, codigo_grupo: &str) -> Result<bool, StoreError>;
}

/// Checks the student's academic state: blocked, inactive and suspended students may not
/// enroll. A `bloqueo` row blocks as well, with its description as the reason.
pub async fn check_estudiante<T: EnrollmentTx>(
    tx: &mut T,
    registro_academico: &str,
) -> Result<Estudiante, EnrollError> {
    let estudiante = tx
        .find_estudiante(registro_academico)
        .await?
        .ok_or_else(|| DomainError::estudiante_not_found(registro_academico))?;

    let ra = registro_academico;
    match estudiante.estado_academico.as_str() {
        ESTADO_BLOQUEADO => {
            return Err(bloqueado(ra, "Estado académico bloqueado".to_owned()).into());
        }
        ESTADO_INACTIVO => {
            return Err(DomainError::new(
                ErrorCode::EstudianteInactivo,
                format!("El estudiante {ra} está inactivo"),
                json!({ "registro_academico": ra, "fecha_inactivacion": null }),
            )
            .into());
        }
        ESTADO_SUSPENDIDO => {
            return Err(DomainError::new(
                ErrorCode::EstudianteSuspendido,
                format!("El estudiante {ra} está suspendido"),
                json!({
                    "registro_academico": ra,
                    "fecha_suspension": null,
                    "fecha_fin_suspension": null,
                }),
            )
            .into());
        }
        _ => {}
    }
    if let Some(reason) = tx.find_bloqueo(ra).await? {
        let reason = reason.unwrap_or_else(|| "Bloqueo registrado".to_owned());
        return Err(bloqueado(ra, reason).into());
    }
    Ok(estudiante)
}

fn bloqueado(registro_academico: &str, reason: String) -> DomainError {
    DomainError::new(
        ErrorCode::EstudianteBloqueado,
        format!("El estudiante {registro_academico} está bloqueado: {reason}"),
        json!({ "registro_academico": registro_academico, "razon_bloqueo": reason }),
    )
}

/// Checks that the period exists and accepts enrollment on `today`.
pub async fn check_periodo<T: EnrollmentTx>(
    tx: &mut T,
    codigo_periodo: &str,
    rules: &EnrollmentRules,
    today: Date,
) -> Result<Periodo, EnrollError> {
    let periodo = tx
        .find_periodo(codigo_periodo)
        .await?
        .ok_or_else(|| DomainError::periodo_not_found(codigo_periodo))?;
    if !periodo.is_active() {
        return Err(
            DomainError::periodo_inactivo(codigo_periodo, periodo.estado.as_deref()).into(),
        );
    }
    if rules.enforce_enrollment_window {
        check_window(&periodo, today)?;
    }
    Ok(periodo)
}

fn check_window(periodo: &Periodo, today: Date) -> Result<(), DomainError> {
    let cp = &periodo.codigo_periodo;
    if let Some(inicio) = periodo.fecha_inicio
        && today < inicio
    {
        return Err(DomainError::new(
            ErrorCode::PeriodoInscripcionNoIniciado,
            format!("La inscripción del periodo {cp} empieza el {inicio}"),
            json!({ "codigo_periodo": cp, "fecha_inicio": inicio.to_string() }),
        ));
    }
    if let Some(fin) = periodo.fecha_fin
        && today > fin
    {
        return Err(DomainError::new(
            ErrorCode::PeriodoInscripcionCerrado,
            format!("La inscripción del periodo {cp} cerró el {fin}"),
            json!({ "codigo_periodo": cp, "fecha_cierre": fin.to_string() }),
        ));
    }
    Ok(())
}

/// Runs every enrollment rule in the contract's order and writes the inscription, its details
/// and the seat counters. The caller commits on `Ok` and rolls back on `Err`.
pub async fn enroll<T: EnrollmentTx>(
    tx: &mut T,
    request: &EnrollmentRequest,
    mode: &EnrollMode,
    rules: &EnrollmentRules,
    today: Date,
) -> Result<EnrollmentOutcome, EnrollError> {
    let ra = request.registro_academico.as_str();
    let cp = request.codigo_periodo.as_str();

    check_estudiante(tx, ra).await?;
    check_periodo(tx, cp, rules, today).await?;

    // Serialise every request of this (student, period) on the inscription row.
    let (inscripcion, created) = match mode {
        EnrollMode::AddToInscripcion { codigo_inscripcion } => {
            let inscripcion = tx
                .lock_inscripcion(codigo_inscripcion)
                .await?
                .ok_or_else(|| DomainError::inscripcion_not_found(codigo_inscripcion))?;
            (inscripcion, false)
        }
        _ => tx.lock_or_create_inscripcion(ra, cp, today).await?,
    };
    if *mode == EnrollMode::RejectExisting && !created {
        return Err(DomainError::new(
            ErrorCode::InscripcionDuplicada,
            format!("El estudiante {ra} ya está inscrito en el periodo {cp}"),
            json!({
                "registro_academico": ra,
                "codigo_periodo": cp,
                "inscripcion_existente": inscripcion.codigo_inscripcion,
            }),
        )
        .into());
    }

    // Split the request into groups already held and groups to add.
    let held = tx.held_groups(&inscripcion.codigo_inscripcion).await?;
    let mut already_held = Vec::new();
    let mut to_add = Vec::new();
    for grupo in &request.grupos {
        match held.iter().find(|h| &h.slot.codigo_grupo == grupo) {
            Some(h) => already_held.push(Detalle {
                codigo_detalle: h.codigo_detalle.clone(),
                codigo_grupo: grupo.clone(),
            }),
            None => to_add.push(grupo.clone()),
        }
    }
    if let (EnrollMode::AddToInscripcion { .. }, Some(dup)) = (mode, already_held.first()) {
        let g = &dup.codigo_grupo;
        return Err(DomainError::grupo_duplicado(
            ra,
            g,
            cp,
            format!("El estudiante {ra} ya está inscrito en el grupo {g}"),
        )
        .into());
    }
    if to_add.is_empty() {
        return Ok(EnrollmentOutcome {
            inscripcion,
            created_inscripcion: created,
            new_details: Vec::new(),
            already_held,
        });
    }

    let slots = lock_requested_groups(tx, &to_add).await?;
    let held_slots: Vec<&GroupSlot> = held.iter().map(|h| &h.slot).collect();
    check_materias(request, &slots, &held_slots, rules)?;
    let new_refs: Vec<&GroupSlot> = slots.iter().collect();
    if let Some(conflict) = find_conflict(&new_refs, &held_slots) {
        return Err(conflict.into());
    }
    if rules.reject_passed_materia {
        check_not_passed(tx, ra, &slots).await?;
    }
    if rules.enforce_prerequisites {
        check_prerequisites(tx, ra, &slots).await?;
    }

    let mut new_details = Vec::with_capacity(slots.len());
    for slot in &slots {
        let g = &slot.codigo_grupo;
        if !tx.take_seat(g).await? {
            return Err(DomainError::grupo_sin_cupo(g, slot.cupo, slot.cupo).into());
        }
        let codigo_detalle = tx
            .insert_detalle(&inscripcion.codigo_inscripcion, g)
            .await?;
        new_details.push(Detalle {
            codigo_detalle,
            codigo_grupo: g.clone(),
        });
    }

    Ok(EnrollmentOutcome {
        inscripcion,
        created_inscripcion: created,
        new_details,
        already_held,
    })
}

/// Locks the groups in sorted order, then reports the first missing or full group in request
/// order. Returns the slots in request order.
async fn lock_requested_groups<T: EnrollmentTx>(
    tx: &mut T,
    requested: &[String],
) -> Result<Vec<GroupSlot>, EnrollError> {
    let sorted: Vec<String> = requested
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let locked = tx.lock_groups(&sorted).await?;

    let mut slots = Vec::with_capacity(requested.len());
    for code in requested {
        let slot = locked
            .iter()
            .find(|s| &s.codigo_grupo == code)
            .ok_or_else(|| DomainError::grupo_not_found(code))?;
        if slot.inscritos_actuales >= slot.cupo {
            return Err(
                DomainError::grupo_sin_cupo(code, slot.cupo, slot.inscritos_actuales).into(),
            );
        }
        slots.push(slot.clone());
    }
    Ok(slots)
}

/// Checks one group per materia across held and new groups, and at most the configured number of
/// materias per period.
fn check_materias(
    request: &EnrollmentRequest,
    new: &[GroupSlot],
    held: &[&GroupSlot],
    rules: &EnrollmentRules,
) -> Result<(), DomainError> {
    let ra = &request.registro_academico;
    let cp = &request.codigo_periodo;
    let mut seen: Vec<&GroupSlot> = held.to_vec();
    for slot in new {
        if let Some(other) = seen.iter().find(|s| s.sigla_materia == slot.sigla_materia) {
            let mut err = DomainError::grupo_duplicado(
                ra,
                &slot.codigo_grupo,
                cp,
                format!(
                    "Los grupos {} y {} son de la misma materia {}",
                    other.codigo_grupo, slot.codigo_grupo, slot.sigla_materia
                ),
            );
            err.details["sigla_materia"] = json!(slot.sigla_materia);
            err.details["grupo_existente"] = json!(other.codigo_grupo);
            return Err(err);
        }
        seen.push(slot);
    }

    let materias: HashSet<&str> = seen.iter().map(|s| s.sigla_materia.as_str()).collect();
    if materias.len() > rules.max_materias_por_periodo {
        return Err(DomainError::new(
            ErrorCode::LimiteMateriasExcedido,
            format!(
                "El estudiante {ra} superaría el límite de {} materias en el periodo {cp}",
                rules.max_materias_por_periodo
            ),
            json!({
                "registro_academico": ra,
                "limite_maximo": rules.max_materias_por_periodo,
                "materias_actuales": held.len(),
            }),
        ));
    }
    Ok(())
}

async fn check_not_passed<T: EnrollmentTx>(
    tx: &mut T,
    registro_academico: &str,
    slots: &[GroupSlot],
) -> Result<(), EnrollError> {
    let siglas: Vec<String> = slots.iter().map(|s| s.sigla_materia.clone()).collect();
    let passed = tx.passed_materias(registro_academico, &siglas).await?;
    let Some(slot) = slots.iter().find(|s| passed.contains(&s.sigla_materia)) else {
        return Ok(());
    };
    Err(DomainError::new(
        ErrorCode::MateriaYaAprobada,
        format!(
            "El estudiante {registro_academico} ya aprobó la materia {}",
            slot.sigla_materia
        ),
        json!({
            "registro_academico": registro_academico,
            "sigla_materia": slot.sigla_materia,
            "codigo_grupo": slot.codigo_grupo,
        }),
    )
    .with_grupo(&slot.codigo_grupo)
    .into())
}

/// Rejects the first requested group, in request order, whose materia has a prerequisite
/// that the student has not passed, listing every missing one.
async fn check_prerequisites<T: EnrollmentTx>(
    tx: &mut T,
    registro_academico: &str,
    slots: &[GroupSlot],
) -> Result<(), EnrollError> {
    let siglas: Vec<String> = slots.iter().map(|s| s.sigla_materia.clone()).collect();
    let missing = tx
        .missing_prerequisites(registro_academico, &siglas)
        .await?;
    for slot in slots {
        let faltantes: Vec<&str> = missing
            .iter()
            .filter(|(materia, _)| *materia == slot.sigla_materia)
            .map(|(_, requerida)| requerida.as_str())
            .collect();
        if faltantes.is_empty() {
            continue;
        }
        return Err(DomainError::new(
            ErrorCode::PrerrequisitoNoCumplido,
            format!(
                "Student {registro_academico} has not passed the prerequisites of materia {} \
                 (group {}): {}; record an APROBADA historial row for each first",
                slot.sigla_materia,
                slot.codigo_grupo,
                faltantes.join(", ")
            ),
            json!({
                "registro_academico": registro_academico,
                "codigo_grupo": slot.codigo_grupo,
                "sigla_materia": slot.sigla_materia,
                "prerrequisitos_faltantes": faltantes,
            }),
        )
        .with_grupo(&slot.codigo_grupo)
        .into());
    }
    Ok(())
}
