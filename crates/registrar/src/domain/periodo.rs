//! Rules for academic periods that do not depend on the store.

use serde_json::json;
use time::Date;

use super::error::{DomainError, ErrorCode, FieldError, validation_details};
use super::model::Periodo;
use super::views::PeriodoUpdate;

/// Checks that a period's dates are in order.
pub fn check_dates(periodo: &Periodo) -> Result<(), DomainError> {
    if let (Some(inicio), Some(fin)) = (periodo.fecha_inicio, periodo.fecha_fin)
        && fin < inicio
    {
        return Err(DomainError::new(
            ErrorCode::ValidationError,
            format!("fecha_fin ({fin}) must not be before fecha_inicio ({inicio})"),
            validation_details(&[FieldError {
                field: "body -> fecha_fin".to_owned(),
                message: "must be on or after fecha_inicio".to_owned(),
                kind: "value_error",
                input: json!(fin.to_string()),
            }]),
        ));
    }
    Ok(())
}

/// Applies the present fields of `update` to `current` and checks the result.
pub fn apply_update(current: Periodo, update: &PeriodoUpdate) -> Result<Periodo, DomainError> {
    let mut next = current;
    if let Some(semestre) = &update.semestre {
        next.semestre = semestre.clone();
    }
    if let Some(inicio) = update.fecha_inicio {
        next.fecha_inicio = inicio;
    }
    if let Some(fin) = update.fecha_fin {
        next.fecha_fin = fin;
    }
    if let Some(estado) = &update.estado {
        next.estado = estado.clone();
    }
    check_dates(&next)?;
    Ok(next)
}

/// An inscription's date must lie within its period's dates, where the period has them.
pub fn check_fecha_in_periodo(periodo: &Periodo, fecha: Date) -> Result<(), DomainError> {
    let before = periodo.fecha_inicio.is_some_and(|inicio| fecha < inicio);
    let after = periodo.fecha_fin.is_some_and(|fin| fecha > fin);
    if !(before || after) {
        return Ok(());
    }
    let range = format!(
        "{} to {}",
        periodo
            .fecha_inicio
            .map(|d| d.to_string())
            .unwrap_or_default(),
        periodo.fecha_fin.map(|d| d.to_string()).unwrap_or_default()
    );
    Err(DomainError::new(
        ErrorCode::ValidationError,
        format!(
            "fecha_inscripcion {fecha} is outside period {} ({range})",
            periodo.codigo_periodo
        ),
        validation_details(&[FieldError {
            field: "body -> fecha_inscripcion".to_owned(),
            message: format!("must lie within the period's dates, {range}"),
            kind: "value_error",
            input: json!(fecha.to_string()),
        }]),
    ))
}
