//! The JSON a finished job stores as `result`, and the per-group view of it.

use serde_json::{Value, json};

use crate::domain::enrollment::EnrollmentOutcome;
use crate::domain::error::DomainError;

/// Builds the stored result of one enrollment: `status` `SUCCESS` with `data`, or `status`
/// `ERROR` with the error code, message, details and the group that caused it.
pub fn enrollment_result(outcome: &Result<EnrollmentOutcome, DomainError>) -> Value {
    match outcome {
        Ok(outcome) => {
            let (message, data) = success_data(outcome);
            json!({ "status": "SUCCESS", "message": message, "data": data })
        }
        Err(error) => error_result(error),
    }
}

fn success_data(outcome: &EnrollmentOutcome) -> (String, Value) {
    let i = &outcome.inscripcion;
    let held: Vec<&str> = outcome
        .already_held
        .iter()
        .map(|d| d.codigo_grupo.as_str())
        .collect();
    let mut data = json!({
        "codigo_inscripcion": i.codigo_inscripcion,
        "registro_academico": i.registro_academico,
        "codigo_periodo": i.codigo_periodo,
        "fecha_inscripcion": i.fecha_inscripcion.to_string(),
        "detalles": outcome.new_details,
        "grupos_ya_inscritos": held,
        "detalles_existentes": outcome.already_held,
    });
    let message = if outcome.new_details.is_empty() {
        let mensaje = "Todos los grupos solicitados ya estaban inscritos";
        data["detalles"] = json!(outcome.already_held);
        data["mensaje"] = json!(mensaje);
        mensaje.to_owned()
    } else if outcome.created_inscripcion {
        format!(
            "Inscripción {} creada con {} grupo(s)",
            i.codigo_inscripcion,
            outcome.new_details.len()
        )
    } else {
        let mensaje = format!(
            "Se agregaron {} grupo(s) nuevo(s)",
            outcome.new_details.len()
        );
        data["mensaje"] = json!(mensaje);
        mensaje
    };
    (message, data)
}

pub fn error_result(error: &DomainError) -> Value {
    json!({
        "status": "ERROR",
        "message": format!("Error al crear la inscripción: {}", error.message),
        "error": error.message,
        "error_code": error.code.as_str(),
        "details": error.details,
        "grupo": error.grupo,
    })
}

/// Builds one group's view of a request-level result: the same outcome, with only that group's
/// detail on success, and the root cause's code on every group on failure.
pub fn group_view_result(result: &Value, codigo_grupo: &str) -> Value {
    if result["status"] != "SUCCESS" {
        let mut view = result.clone();
        if view["grupo"].is_null() {
            view["grupo"] = json!(codigo_grupo);
        }
        return view;
    }
    let data = &result["data"];
    let mine = |list: &Value| -> Vec<Value> {
        list.as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|d| d["codigo_grupo"] == codigo_grupo)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut detalles = mine(&data["detalles"]);
    if detalles.is_empty() {
        detalles = mine(&data["detalles_existentes"]);
    }
    json!({
        "status": "SUCCESS",
        "message": format!("Grupo {codigo_grupo} inscrito"),
        "data": {
            "codigo_inscripcion": data["codigo_inscripcion"],
            "registro_academico": data["registro_academico"],
            "codigo_periodo": data["codigo_periodo"],
            "fecha_inscripcion": data["fecha_inscripcion"],
            "detalles": detalles,
        },
        "grupo": codigo_grupo,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Detalle, Inscripcion};
    use time::macros::date;

    fn outcome() -> EnrollmentOutcome {
        EnrollmentOutcome {
            inscripcion: Inscripcion {
                codigo_inscripcion: "I000000001".into(),
                registro_academico: "EST001".into(),
                codigo_periodo: "2024-2".into(),
                fecha_inscripcion: date!(2024 - 08 - 01),
            },
            created_inscripcion: true,
            new_details: vec![
                Detalle {
                    codigo_detalle: "D000000001".into(),
                    codigo_grupo: "A".into(),
                },
                Detalle {
                    codigo_detalle: "D000000002".into(),
                    codigo_grupo: "B".into(),
                },
            ],
            already_held: vec![],
        }
    }

    #[test]
    fn group_view_keeps_only_its_detail() {
        let result = enrollment_result(&Ok(outcome()));
        let view = group_view_result(&result, "B");
        assert_eq!(view["status"], "SUCCESS");
        assert_eq!(view["grupo"], "B");
        assert_eq!(view["data"]["detalles"].as_array().unwrap().len(), 1);
        assert_eq!(view["data"]["detalles"][0]["codigo_detalle"], "D000000002");
    }

    #[test]
    fn failed_request_reports_root_cause_on_every_group() {
        let error = DomainError::grupo_sin_cupo("B", 1, 1);
        let result = enrollment_result(&Err(error));
        let view = group_view_result(&result, "A");
        assert_eq!(view["status"], "ERROR");
        assert_eq!(view["error_code"], "GRUPO_SIN_CUPO");
        assert_eq!(view["grupo"], "B");
    }
}
