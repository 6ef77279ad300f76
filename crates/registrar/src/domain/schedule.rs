//! The schedule-overlap rule: two groups conflict when they share a day name and their time
//! ranges overlap. Ranges are half-open, so 08:00–10:00 and 10:00–12:00 do not conflict.

use serde_json::{Value, json};
use time::Time;
use time::macros::format_description;

use super::error::{DomainError, ErrorCode};
use super::model::{GroupSlot, Horario};

/// Returns the shared days when the two slots overlap in time, and `None` otherwise.
pub fn overlap(a: &Horario, b: &Horario) -> Option<Vec<String>> {
    let times_overlap = a.hora_inicio < b.hora_fin && b.hora_inicio < a.hora_fin;
    if !times_overlap {
        return None;
    }
    let shared: Vec<String> = a
        .dias_semana
        .iter()
        .filter(|day| b.dias_semana.contains(day))
        .cloned()
        .collect();
    (!shared.is_empty()).then_some(shared)
}

pub fn format_time(t: Time) -> String {
    t.format(format_description!("[hour]:[minute]:[second]"))
        .unwrap_or_default()
}

/// Finds the first conflicting pair among `candidates` and between a candidate and `held`.
/// Groups without a horario never conflict.
pub fn find_conflict(candidates: &[&GroupSlot], held: &[&GroupSlot]) -> Option<DomainError> {
    for (i, a) in candidates.iter().enumerate() {
        let others = candidates[i + 1..].iter().chain(held.iter());
        for b in others {
            let (Some(ha), Some(hb)) = (&a.horario, &b.horario) else {
                continue;
            };
            if let Some(days) = overlap(ha, hb) {
                return Some(conflict_error(a, ha, b, hb, days));
            }
        }
    }
    None
}

fn conflict_error(
    a: &GroupSlot,
    ha: &Horario,
    b: &GroupSlot,
    hb: &Horario,
    days: Vec<String>,
) -> DomainError {
    let hours = format!(
        "{}-{} vs {}-{}",
        format_time(ha.hora_inicio),
        format_time(ha.hora_fin),
        format_time(hb.hora_inicio),
        format_time(hb.hora_fin)
    );
    let details: Value = json!({
        "grupo1": a.codigo_grupo,
        "grupo2": b.codigo_grupo,
        "dias_conflicto": days,
        "horas_conflicto": hours,
    });
    DomainError::new(
        ErrorCode::ConflictoHorario,
        format!(
            "Conflicto de horarios entre los grupos {} y {}",
            a.codigo_grupo, b.codigo_grupo
        ),
        details,
    )
    .with_grupo(&a.codigo_grupo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::time;

    fn slot(code: &str, days: &[&str], start: Time, end: Time) -> GroupSlot {
        GroupSlot {
            codigo_grupo: code.into(),
            sigla_materia: code.into(),
            cupo: 10,
            inscritos_actuales: 0,
            horario: Some(Horario {
                dias_semana: days.iter().map(|d| d.to_string()).collect(),
                hora_inicio: start,
                hora_fin: end,
            }),
        }
    }

    #[test]
    fn back_to_back_slots_do_not_conflict() {
        let a = slot("A", &["LUNES"], time!(8:00), time!(10:00));
        let b = slot("B", &["LUNES"], time!(10:00), time!(12:00));
        assert!(find_conflict(&[&a, &b], &[]).is_none());
    }

    #[test]
    fn overlapping_slot_on_shared_day_conflicts() {
        let a = slot("A", &["LUNES", "MIERCOLES"], time!(8:00), time!(10:00));
        let b = slot("B", &["MIERCOLES"], time!(9:30), time!(11:00));
        let err = find_conflict(&[&a], &[&b]).expect("conflict");
        assert_eq!(err.code, ErrorCode::ConflictoHorario);
        assert_eq!(err.details["grupo1"], "A");
        assert_eq!(err.details["grupo2"], "B");
        assert_eq!(err.details["dias_conflicto"], json!(["MIERCOLES"]));
        assert_eq!(
            err.details["horas_conflicto"],
            "08:00:00-10:00:00 vs 09:30:00-11:00:00"
        );
    }

    #[test]
    fn same_hours_on_other_days_do_not_conflict() {
        let a = slot("A", &["LUNES"], time!(8:00), time!(10:00));
        let b = slot("B", &["MARTES"], time!(8:00), time!(10:00));
        assert!(find_conflict(&[&a, &b], &[]).is_none());
    }

    #[test]
    fn group_without_horario_never_conflicts() {
        let a = slot("A", &["LUNES"], time!(8:00), time!(10:00));
        let mut b = a.clone();
        b.codigo_grupo = "B".into();
        b.horario = None;
        assert!(find_conflict(&[&a, &b], &[]).is_none());
    }
}
