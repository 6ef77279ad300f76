//! The academic record (historial académico): one row per student, materia and period with the
//! final grade and its state, the rules that check a row, and the summaries built from rows.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use time::Date;

use super::error::{DomainError, ErrorCode};
use super::model::{Estudiante, Periodo};
use super::views::MateriaRef;

pub const ESTADO_APROBADA: &str = "APROBADA";
pub const ESTADO_REPROBADA: &str = "REPROBADA";
pub const ESTADO_RETIRADA: &str = "RETIRADA";
/// The values `estado` may take, compared case-sensitively.
pub const HISTORIAL_ESTADOS: [&str; 3] = [ESTADO_APROBADA, ESTADO_REPROBADA, ESTADO_RETIRADA];

pub const NOTA_MINIMA: f64 = 0.0;
pub const NOTA_MAXIMA: f64 = 100.0;
/// The longest `observacion` the column holds, in characters.
pub const MAX_OBSERVACION: usize = 200;

/// One historial row with the names of its student, materia and period.
#[derive(Debug, Clone, PartialEq)]
pub struct HistorialRecord {
    pub id_historial: i64,
    pub registro_academico: String,
    pub sigla_materia: String,
    pub codigo_periodo: String,
    pub nota_final: Option<f64>,
    pub estado: String,
    pub observacion: Option<String>,
    pub fecha_registro: Option<Date>,
    pub estudiante_nombre: String,
    pub estudiante_apellido: String,
    pub materia_nombre: String,
    pub creditos: i64,
    pub periodo_semestre: Option<String>,
}

impl HistorialRecord {
    /// Returns the period's `semestre`, or its code when it has none.
    pub fn periodo_nombre(&self) -> &str {
        self.periodo_semestre
            .as_deref()
            .unwrap_or(&self.codigo_periodo)
    }

    pub fn is_aprobada(&self) -> bool {
        self.estado == ESTADO_APROBADA
    }
}

/// A historial row with its student, materia and period in full.
#[derive(Debug, Clone, PartialEq)]
pub struct HistorialCompleto {
    pub record: HistorialRecord,
    pub estudiante: Estudiante,
    pub materia: MateriaRef,
    pub periodo: Periodo,
}

/// A row to create, after request validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewHistorial {
    pub registro_academico: String,
    pub sigla_materia: String,
    pub codigo_periodo: String,
    pub nota_final: Option<f64>,
    pub estado: String,
    pub observacion: Option<String>,
}

/// Fields an update may set. Absent fields keep their value, and `Some(None)` clears a nullable
/// one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistorialUpdate {
    pub nota_final: Option<Option<f64>>,
    pub estado: Option<String>,
    pub observacion: Option<Option<String>>,
}

/// A selection of historial rows. Each variant has its own statement, so that every read can
/// use an index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HistorialQuery<'a> {
    /// A student's rows, newest `fecha_registro` first, optionally of one period or state.
    Student {
        registro_academico: &'a str,
        codigo_periodo: Option<&'a str>,
        estado: Option<&'a str>,
    },
    /// A materia's rows, by period and student, optionally of one period.
    Materia {
        sigla_materia: &'a str,
        codigo_periodo: Option<&'a str>,
    },
    /// A period's rows, by materia and student.
    Periodo { codigo_periodo: &'a str },
}

/// Rounds to two decimals, the scale of `nota_final` and of every average the API returns.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Rejects an `estado` other than APROBADA, REPROBADA and RETIRADA, compared
/// case-sensitively.
pub fn check_estado(estado: &str) -> Result<(), DomainError> {
    if HISTORIAL_ESTADOS.contains(&estado) {
        return Ok(());
    }
    Err(DomainError::new(
        ErrorCode::EstadoMateriaInvalido,
        format!(
            "estado {estado:?} is not valid; use one of {}",
            HISTORIAL_ESTADOS.join(", ")
        ),
        json!({ "estado_proporcionado": estado, "estados_validos": HISTORIAL_ESTADOS }),
    ))
}

/// Rejects a grade outside 0..=100 and returns it rounded to two decimals.
pub fn check_nota(nota: f64) -> Result<f64, DomainError> {
    if (NOTA_MINIMA..=NOTA_MAXIMA).contains(&nota) {
        return Ok(round2(nota));
    }
    Err(DomainError::new(
        ErrorCode::NotaInvalida,
        format!(
            "nota_final {nota} is out of range; send a grade from {NOTA_MINIMA} to {NOTA_MAXIMA}"
        ),
        json!({
            "nota_proporcionada": nota,
            "nota_minima": NOTA_MINIMA,
            "nota_maxima": NOTA_MAXIMA,
        }),
    ))
}

/// Checks a new row's state, then its grade. Returns the row with the grade rounded.
pub fn check_new(new: &NewHistorial) -> Result<NewHistorial, DomainError> {
    check_estado(&new.estado)?;
    let nota_final = new.nota_final.map(check_nota).transpose()?;
    Ok(NewHistorial {
        nota_final,
        ..new.clone()
    })
}

/// Checks an update's state, then its grade. Returns the update with the grade rounded.
pub fn check_update(update: &HistorialUpdate) -> Result<HistorialUpdate, DomainError> {
    if let Some(estado) = &update.estado {
        check_estado(estado)?;
    }
    let nota_final = match update.nota_final {
        Some(Some(nota)) => Some(Some(check_nota(nota)?)),
        other => other,
    };
    Ok(HistorialUpdate {
        nota_final,
        ..update.clone()
    })
}

/// Applies the present fields of a checked update.
pub fn apply_update(mut record: HistorialRecord, update: &HistorialUpdate) -> HistorialRecord {
    if let Some(nota) = update.nota_final {
        record.nota_final = nota;
    }
    if let Some(estado) = &update.estado {
        record.estado = estado.clone();
    }
    if let Some(observacion) = &update.observacion {
        record.observacion = observacion.clone();
    }
    record
}

pub fn historial_not_found(id_historial: i64) -> DomainError {
    DomainError::new(
        ErrorCode::HistorialNotFound,
        format!("historial row {id_historial} not found"),
        json!({ "id_historial": id_historial.to_string() }),
    )
}

pub fn historial_duplicado(new: &NewHistorial) -> DomainError {
    DomainError::new(
        ErrorCode::HistorialDuplicado,
        format!(
            "student {} already has a historial row for materia {} in period {}; \
             update that row with PUT /api/v1/historial/{{id_historial}}",
            new.registro_academico, new.sigla_materia, new.codigo_periodo
        ),
        json!({
            "registro_academico": new.registro_academico,
            "sigla_materia": new.sigla_materia,
            "codigo_periodo": new.codigo_periodo,
        }),
    )
}

pub fn materia_not_found(sigla_materia: &str) -> DomainError {
    DomainError::new(
        ErrorCode::MateriaNotFound,
        format!("materia {sigla_materia} not found"),
        json!({ "sigla_materia": sigla_materia }),
    )
}

/// Returns the mean of the grades, rounded to two decimals, or `None` without grades.
fn mean(notas: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = notas.fold((0.0, 0u32), |(sum, count), n| (sum + n, count + 1));
    (count > 0).then(|| round2(sum / f64::from(count)))
}

/// Returns the mean grade of the APROBADA rows that have a grade: a student's average.
pub fn promedio_aprobadas<'a>(records: impl Iterator<Item = &'a HistorialRecord>) -> Option<f64> {
    mean(
        records
            .filter(|r| r.is_aprobada())
            .filter_map(|r| r.nota_final),
    )
}

/// One period of a student's record.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodoHistorial {
    pub codigo_periodo: String,
    pub periodo_nombre: String,
    /// The period's rows, by `sigla_materia`.
    pub materias: Vec<HistorialRecord>,
    pub promedio_periodo: Option<f64>,
}

/// Groups a student's rows by period, periods in ascending code order.
///
/// NOTE: code order is chronological only within one code format: `1-2025` sorts before
/// `2023-2`, because the demo catalog mixes year-first and semester-first codes.
pub fn group_by_periodo(records: &[HistorialRecord]) -> Vec<PeriodoHistorial> {
    let mut by_periodo: BTreeMap<&str, Vec<HistorialRecord>> = BTreeMap::new();
    for record in records {
        by_periodo
            .entry(&record.codigo_periodo)
            .or_default()
            .push(record.clone());
    }
    by_periodo
        .into_iter()
        .map(|(codigo, mut materias)| {
            materias.sort_by(|a, b| a.sigla_materia.cmp(&b.sigla_materia));
            PeriodoHistorial {
                codigo_periodo: codigo.to_owned(),
                periodo_nombre: materias[0].periodo_nombre().to_owned(),
                promedio_periodo: promedio_aprobadas(materias.iter()),
                materias,
            }
        })
        .collect()
}

/// A student's totals across every period.
#[derive(Debug, Clone, PartialEq)]
pub struct Resumen {
    /// Rows, so a materia taken twice counts twice.
    pub total_materias: usize,
    pub materias_aprobadas: usize,
    pub materias_reprobadas: usize,
    pub materias_retiradas: usize,
    pub promedio_general: Option<f64>,
    /// Credits of the distinct materias with an APROBADA row; a materia passed twice counts
    /// once.
    pub creditos_aprobados: i64,
}

pub fn resumen(records: &[HistorialRecord]) -> Resumen {
    let count = |estado: &str| records.iter().filter(|r| r.estado == estado).count();
    let mut passed: BTreeMap<&str, i64> = BTreeMap::new();
    for record in records.iter().filter(|r| r.is_aprobada()) {
        passed.insert(&record.sigla_materia, record.creditos);
    }
    Resumen {
        total_materias: records.len(),
        materias_aprobadas: count(ESTADO_APROBADA),
        materias_reprobadas: count(ESTADO_REPROBADA),
        materias_retiradas: count(ESTADO_RETIRADA),
        promedio_general: promedio_aprobadas(records.iter()),
        creditos_aprobados: passed.values().sum(),
    }
}

/// Counts and averages over a set of rows, for the reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    pub total_registros: usize,
    /// Distinct students among the rows.
    pub total_estudiantes: usize,
    pub aprobadas: usize,
    pub reprobadas: usize,
    pub retiradas: usize,
    /// APROBADA rows as a percentage of all rows, withdrawals included, with two decimals;
    /// `None` without rows.
    pub tasa_aprobacion: Option<f64>,
    /// Mean grade of the rows that have one, whatever their state.
    pub promedio_nota: Option<f64>,
}

pub fn tally<'a>(records: impl Iterator<Item = &'a HistorialRecord> + Clone) -> Tally {
    let count = |estado: &str| records.clone().filter(|r| r.estado == estado).count();
    let total = records.clone().count();
    let aprobadas = count(ESTADO_APROBADA);
    let students: BTreeSet<&str> = records
        .clone()
        .map(|r| r.registro_academico.as_str())
        .collect();
    let tasa_aprobacion = (total > 0).then(|| round2(100.0 * aprobadas as f64 / total as f64));
    Tally {
        total_registros: total,
        total_estudiantes: students.len(),
        aprobadas,
        reprobadas: count(ESTADO_REPROBADA),
        retiradas: count(ESTADO_RETIRADA),
        tasa_aprobacion,
        promedio_nota: mean(records.filter_map(|r| r.nota_final)),
    }
}

/// One materia's share of a period's rows.
#[derive(Debug, Clone, PartialEq)]
pub struct MateriaTally {
    pub sigla_materia: String,
    pub materia_nombre: String,
    pub tally: Tally,
}

/// Splits a period's rows by materia, in `sigla_materia` order.
pub fn tally_by_materia(records: &[HistorialRecord]) -> Vec<MateriaTally> {
    let mut by_materia: BTreeMap<&str, Vec<&HistorialRecord>> = BTreeMap::new();
    for record in records {
        by_materia
            .entry(&record.sigla_materia)
            .or_default()
            .push(record);
    }
    by_materia
        .into_iter()
        .map(|(sigla, rows)| MateriaTally {
            sigla_materia: sigla.to_owned(),
            materia_nombre: rows[0].materia_nombre.clone(),
            tally: tally(rows.iter().copied()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        ra: &str,
        sigla: &str,
        periodo: &str,
        nota: Option<f64>,
        estado: &str,
    ) -> HistorialRecord {
        HistorialRecord {
            id_historial: 0,
            registro_academico: ra.into(),
            sigla_materia: sigla.into(),
            codigo_periodo: periodo.into(),
            nota_final: nota,
            estado: estado.into(),
            observacion: None,
            fecha_registro: None,
            estudiante_nombre: "N".into(),
            estudiante_apellido: "A".into(),
            materia_nombre: format!("Materia {sigla}"),
            creditos: if sigla == "M1" { 5 } else { 4 },
            periodo_semestre: None,
        }
    }

    #[test]
    fn estado_is_case_sensitive() {
        let err = check_estado("aprobada").unwrap_err();
        assert_eq!(err.code, ErrorCode::EstadoMateriaInvalido);
        assert_eq!(err.details["estado_proporcionado"], "aprobada");
    }

    #[test]
    fn nota_bounds_are_inclusive() {
        assert_eq!(check_nota(0.0), Ok(0.0));
        assert_eq!(check_nota(100.0), Ok(100.0));
        assert_eq!(
            check_nota(100.001).unwrap_err().code,
            ErrorCode::NotaInvalida
        );
        assert_eq!(check_nota(-0.5).unwrap_err().code, ErrorCode::NotaInvalida);
    }

    #[test]
    fn nota_is_rounded_to_two_decimals() {
        assert_eq!(check_nota(85.456), Ok(85.46));
    }

    #[test]
    fn estado_is_checked_before_nota() {
        let new = NewHistorial {
            registro_academico: "E".into(),
            sigla_materia: "M".into(),
            codigo_periodo: "P".into(),
            nota_final: Some(150.0),
            estado: "MAL".into(),
            observacion: None,
        };
        assert_eq!(
            check_new(&new).unwrap_err().code,
            ErrorCode::EstadoMateriaInvalido
        );
    }

    #[test]
    fn resumen_counts_credits_once_per_materia() {
        let rows = vec![
            record("E", "M1", "P1", Some(60.0), ESTADO_APROBADA),
            record("E", "M1", "P2", Some(80.0), ESTADO_APROBADA),
            record("E", "M2", "P1", Some(30.0), ESTADO_REPROBADA),
            record("E", "M3", "P2", None, ESTADO_RETIRADA),
        ];
        let r = resumen(&rows);
        assert_eq!(r.total_materias, 4);
        assert_eq!(r.materias_aprobadas, 2);
        assert_eq!(r.materias_reprobadas, 1);
        assert_eq!(r.materias_retiradas, 1);
        assert_eq!(r.promedio_general, Some(70.0));
        assert_eq!(r.creditos_aprobados, 5);
    }

    #[test]
    fn resumen_of_no_rows_is_zero() {
        let r = resumen(&[]);
        assert_eq!(r.total_materias, 0);
        assert_eq!(r.promedio_general, None);
        assert_eq!(r.creditos_aprobados, 0);
    }

    #[test]
    fn periods_ascend_and_materias_sort_by_sigla() {
        let rows = vec![
            record("E", "M2", "P2", Some(70.0), ESTADO_APROBADA),
            record("E", "M1", "P2", Some(91.0), ESTADO_APROBADA),
            record("E", "M1", "P1", Some(20.0), ESTADO_REPROBADA),
        ];
        let periods = group_by_periodo(&rows);
        let codes: Vec<&str> = periods.iter().map(|p| p.codigo_periodo.as_str()).collect();
        assert_eq!(codes, vec!["P1", "P2"]);
        assert_eq!(periods[0].promedio_periodo, None);
        assert_eq!(periods[1].materias[0].sigla_materia, "M1");
        assert_eq!(periods[1].promedio_periodo, Some(80.5));
    }

    #[test]
    fn tally_rate_includes_withdrawals() {
        let rows = [
            record("A", "M1", "P", Some(90.0), ESTADO_APROBADA),
            record("B", "M1", "P", Some(40.0), ESTADO_REPROBADA),
            record("C", "M1", "P", None, ESTADO_RETIRADA),
        ];
        let t = tally(rows.iter());
        assert_eq!(t.tasa_aprobacion, Some(33.33));
        assert_eq!(t.promedio_nota, Some(65.0));
        assert_eq!(t.total_estudiantes, 3);
    }
}
