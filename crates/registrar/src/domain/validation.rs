//! Request validation that runs before anything is queued or written: non-blank ids within
//! the column lengths, and a non-empty list of distinct groups.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use super::enrollment::EnrollmentRequest;
use super::error::FieldError;

/// Column lengths of the schema; request ids longer than these could never match a row.
pub const MAX_REGISTRO_ACADEMICO: usize = 20;
pub const MAX_CODIGO_PERIODO: usize = 16;
pub const MAX_CODIGO_GRUPO: usize = 16;
pub const MAX_SIGLA_MATERIA: usize = 8;
pub const MAX_CODIGO_INSCRIPCION: usize = 10;
pub const MAX_SEMESTRE: usize = 10;
pub const MAX_ESTADO_PERIODO: usize = 15;

/// The `InscripcionCreate` body as clients send it, before validation.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct InscripcionCreate {
    pub registro_academico: String,
    pub codigo_periodo: String,
    pub grupos: Vec<String>,
}

/// Checks one id: trimmed, non-blank and at most `max` characters. Returns the trimmed id.
pub fn check_id(
    errors: &mut Vec<FieldError>,
    field: String,
    value: &str,
    max: usize,
) -> Option<String> {
    let trimmed = value.trim();
    let problem = if trimmed.is_empty() {
        Some("must not be blank; send the id as a non-empty string".to_owned())
    } else if trimmed.chars().count() > max {
        Some(format!("must be at most {max} characters long"))
    } else if trimmed.chars().any(char::is_control) {
        Some("must not contain control characters such as NUL, tab or newline".to_owned())
    } else {
        None
    };
    match problem {
        Some(message) => {
            errors.push(FieldError {
                field,
                message,
                kind: "value_error",
                input: Value::String(value.to_owned()),
            });
            None
        }
        None => Some(trimmed.to_owned()),
    }
}

/// Validates an `InscripcionCreate` found at `location` (e.g. `body` or `body -> 3`).
pub fn validate_enrollment(
    raw: &InscripcionCreate,
    max_grupos: usize,
    location: &str,
) -> Result<EnrollmentRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let ra = check_id(
        &mut errors,
        format!("{location} -> registro_academico"),
        &raw.registro_academico,
        MAX_REGISTRO_ACADEMICO,
    );
    let cp = check_id(
        &mut errors,
        format!("{location} -> codigo_periodo"),
        &raw.codigo_periodo,
        MAX_CODIGO_PERIODO,
    );

    let grupos_field = format!("{location} -> grupos");
    let grupos_input = || Value::from(raw.grupos.clone());
    if raw.grupos.is_empty() {
        errors.push(FieldError {
            field: grupos_field.clone(),
            message: "must contain at least one group code".to_owned(),
            kind: "value_error",
            input: grupos_input(),
        });
    } else if raw.grupos.len() > max_grupos {
        errors.push(FieldError {
            field: grupos_field.clone(),
            message: format!(
                "must contain at most {max_grupos} groups; send the rest in another request"
            ),
            kind: "value_error",
            input: grupos_input(),
        });
    }

    let mut grupos = Vec::with_capacity(raw.grupos.len());
    let mut seen = HashSet::new();
    for (i, g) in raw.grupos.iter().enumerate() {
        let field = format!("{grupos_field} -> {i}");
        let Some(code) = check_id(&mut errors, field.clone(), g, MAX_CODIGO_GRUPO) else {
            continue;
        };
        if !seen.insert(code.clone()) {
            errors.push(FieldError {
                field,
                message: format!("group {code} appears more than once; list each group once"),
                kind: "value_error",
                input: Value::String(g.clone()),
            });
            continue;
        }
        grupos.push(code);
    }

    match (ra, cp, errors.is_empty()) {
        (Some(registro_academico), Some(codigo_periodo), true) => Ok(EnrollmentRequest {
            registro_academico,
            codigo_periodo,
            grupos,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(ra: &str, cp: &str, grupos: &[&str]) -> InscripcionCreate {
        InscripcionCreate {
            registro_academico: ra.into(),
            codigo_periodo: cp.into(),
            grupos: grupos.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn valid_request_is_trimmed() {
        let req = validate_enrollment(&raw(" EST001 ", "2024-2", &["G-ELC102-E "]), 8, "body")
            .expect("valid");
        assert_eq!(req.registro_academico, "EST001");
        assert_eq!(req.grupos, vec!["G-ELC102-E"]);
    }

    #[test]
    fn empty_grupos_names_the_field() {
        let errors = validate_enrollment(&raw("EST001", "2024-2", &[]), 8, "body").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "body -> grupos");
    }

    #[test]
    fn duplicate_group_names_its_index() {
        let errors =
            validate_enrollment(&raw("EST001", "2024-2", &["A", "B", "A"]), 8, "body").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "body -> grupos -> 2");
    }

    #[test]
    fn blank_and_long_ids_are_each_reported() {
        let long = "X".repeat(MAX_REGISTRO_ACADEMICO + 1);
        let errors = validate_enrollment(&raw(&long, "  ", &["A"]), 8, "body").unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["body -> registro_academico", "body -> codigo_periodo"]
        );
    }

    #[test]
    fn too_many_groups_is_rejected() {
        let errors = validate_enrollment(&raw("E", "P", &["A", "B", "C"]), 2, "body").unwrap_err();
        assert_eq!(errors[0].field, "body -> grupos");
    }
}
