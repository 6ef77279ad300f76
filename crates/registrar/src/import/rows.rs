//! Row parsers shared by the CSV and JSON formats: each row arrives as field name to text,
//! and each parser reports every problem with the field it found it in.

use std::collections::HashMap;

use time::macros::format_description;
use time::{Date, Time};

use crate::domain::catalog::{
    Aula, Bloqueo, Carrera, Docente, EstudianteRow, GrupoRow, HistorialRow, HorarioRow, Materia,
    Prerrequisito,
};
use crate::domain::historial::HISTORIAL_ESTADOS;
use crate::domain::model::Periodo;

/// One row's fields as text; an empty value counts as absent.
pub type Fields = HashMap<String, String>;

/// A problem found in one field of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// Reads typed values out of a row, collecting every problem instead of stopping at the first.
pub struct RowReader<'a> {
    fields: &'a Fields,
    pub problems: Vec<FieldProblem>,
}

impl<'a> RowReader<'a> {
    pub fn new(fields: &'a Fields) -> Self {
        Self {
            fields,
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(FieldProblem {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn raw(&self, field: &str) -> Option<&str> {
        self.fields
            .get(field)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Reads an optional text of at most `max` characters.
    pub fn text(&mut self, field: &str, max: usize) -> Option<String> {
        let value = self.raw(field)?.to_owned();
        if value.chars().count() > max {
            self.problem(field, format!("is longer than {max} characters"));
            return None;
        }
        Some(value)
    }

    /// A required text of at most `max` characters; returns an empty string when missing so
    /// that parsing can go on and report further problems.
    pub fn required(&mut self, field: &str, max: usize) -> String {
        if self.raw(field).is_none() {
            self.problem(field, "is required");
            return String::new();
        }
        self.text(field, max).unwrap_or_default()
    }

    pub fn integer(&mut self, field: &str) -> Option<i64> {
        let value = self.raw(field)?;
        match value.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                let message = format!("must be a whole number, found {value:?}");
                self.problem(field, message);
                None
            }
        }
    }

    pub fn decimal(&mut self, field: &str) -> Option<f64> {
        let value = self.raw(field)?;
        match value.parse::<f64>() {
            Ok(n) if n.is_finite() => Some(n),
            _ => {
                let message = format!("must be a number, found {value:?}");
                self.problem(field, message);
                None
            }
        }
    }

    pub fn boolean(&mut self, field: &str) -> Option<bool> {
        let value = self.raw(field)?.to_ascii_lowercase();
        match value.as_str() {
            "true" | "1" | "yes" | "si" | "sí" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => {
                self.problem(field, format!("must be true or false, found {value:?}"));
                None
            }
        }
    }

    pub fn date(&mut self, field: &str) -> Option<Date> {
        let value = self.raw(field)?;
        match Date::parse(value, format_description!("[year]-[month]-[day]")) {
            Ok(d) => Some(d),
            Err(_) => {
                let message = format!("must be a date YYYY-MM-DD, found {value:?}");
                self.problem(field, message);
                None
            }
        }
    }

    /// Reads a time `HH:MM` or `HH:MM:SS`.
    pub fn time(&mut self, field: &str) -> Option<Time> {
        let value = self.raw(field)?;
        let parsed = Time::parse(value, format_description!("[hour]:[minute]:[second]"))
            .or_else(|_| Time::parse(value, format_description!("[hour]:[minute]")));
        match parsed {
            Ok(t) => Some(t),
            Err(_) => {
                let message = format!("must be a time HH:MM or HH:MM:SS, found {value:?}");
                self.problem(field, message);
                None
            }
        }
    }

    /// Reads a list separated by `|`, for example `LUNES|MIERCOLES`.
    pub fn list(&mut self, field: &str) -> Vec<String> {
        self.raw(field)
            .map(|v| {
                v.split('|')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reports a failed rule on `field`.
    pub fn reject(&mut self, field: &str, message: impl Into<String>) {
        self.problem(field, message);
    }
}

pub fn carrera(r: &mut RowReader) -> Carrera {
    Carrera {
        codigo_carrera: r.required("codigo_carrera", 8),
        nombre: r.required("nombre", 100),
    }
}

pub fn materia(r: &mut RowReader) -> Materia {
    let sigla = r.required("sigla", 8);
    let nombre = r.required("nombre", 100);
    let creditos = r.integer("creditos");
    if creditos.is_none() && r.problems.iter().all(|p| p.field != "creditos") {
        r.reject("creditos", "is required");
    }
    if creditos.is_some_and(|c| c < 0) {
        r.reject("creditos", "must not be negative");
    }
    Materia {
        sigla,
        nombre,
        creditos: creditos.unwrap_or(0),
        es_electiva: r.boolean("es_electiva").unwrap_or(false),
    }
}

pub fn prerrequisito(r: &mut RowReader) -> Prerrequisito {
    let sigla_materia = r.required("sigla_materia", 8);
    let sigla_requerida = r.required("sigla_requerida", 8);
    if !sigla_materia.is_empty() && sigla_materia == sigla_requerida {
        r.reject(
            "sigla_requerida",
            "must differ from sigla_materia: a materia cannot require itself",
        );
    }
    Prerrequisito {
        sigla_materia,
        sigla_requerida,
    }
}

pub fn docente(r: &mut RowReader) -> Docente {
    Docente {
        codigo_docente: r.required("codigo_docente", 8),
        nombre: r.text("nombre", 50),
        apellido: r.text("apellido", 50),
        ci: r.text("ci", 20),
        correo: r.text("correo", 100),
        telefono: r.text("telefono", 20),
    }
}

pub fn aula(r: &mut RowReader) -> Aula {
    let codigo_aula = r.required("codigo_aula", 8);
    let modulo = r.text("modulo", 10);
    let aula = r.text("aula", 10);
    let capacidad = r.integer("capacidad");
    if capacidad.is_some_and(|c| c <= 0) {
        r.reject("capacidad", "must be greater than 0");
    }
    Aula {
        codigo_aula,
        modulo,
        aula,
        capacidad,
        ubicacion: r.text("ubicacion", 100),
    }
}

/// Always returns a row, so that row positions stay aligned with their lines; a row with
/// problems carries placeholder times and is never loaded, because the import then fails.
pub fn horario(r: &mut RowReader) -> HorarioRow {
    let codigo_horario = r.required("codigo_horario", 8);
    let dias_semana = r.list("dias_semana");
    if dias_semana.is_empty() {
        r.reject("dias_semana", "is required: list the days separated by |");
    }
    let inicio = r.time("hora_inicio");
    let fin = r.time("hora_fin");
    for (field, value) in [("hora_inicio", inicio), ("hora_fin", fin)] {
        if value.is_none() && r.problems.iter().all(|p| p.field != field) {
            r.reject(field, "is required");
        }
    }
    if let (Some(i), Some(f)) = (inicio, fin)
        && f <= i
    {
        r.reject("hora_fin", "must be later than hora_inicio");
    }
    HorarioRow {
        codigo_horario,
        dias_semana,
        hora_inicio: inicio.unwrap_or(Time::MIDNIGHT),
        hora_fin: fin.unwrap_or(Time::MIDNIGHT),
    }
}

pub fn grupo(r: &mut RowReader) -> GrupoRow {
    let codigo_grupo = r.required("codigo_grupo", 16);
    let sigla_materia = r.required("sigla_materia", 8);
    let codigo_docente = r.text("codigo_docente", 8);
    let codigo_aula = r.text("codigo_aula", 8);
    let codigo_horario = r.text("codigo_horario", 8);
    let descripcion = r.text("descripcion", 150);
    let cupo = r.integer("cupo").unwrap_or(40);
    if !(1..=MAX_CUPO).contains(&cupo) {
        r.reject("cupo", format!("must be between 1 and {MAX_CUPO}"));
    }
    GrupoRow {
        codigo_grupo,
        sigla_materia,
        codigo_docente,
        codigo_aula,
        codigo_horario,
        descripcion,
        cupo,
    }
}

/// The largest seat count a group may have; the column is a 32-bit integer.
pub const MAX_CUPO: i64 = 100_000;

/// Period states with a meaning; enrollment needs `ACTIVO`.
pub const PERIODO_ESTADOS: [&str; 3] = ["ACTIVO", "PLANIFICADO", "CERRADO"];

/// Student states; all but `REGULAR` block enrollment.
pub const ESTUDIANTE_ESTADOS: [&str; 4] = ["REGULAR", "BLOQUEADO", "INACTIVO", "SUSPENDIDO"];

/// Reads a state, upper-cased, that must be one of `allowed`.
fn state(r: &mut RowReader, field: &str, allowed: &[&str]) -> Option<String> {
    let value = r.text(field, 20)?.to_uppercase();
    if !allowed.contains(&value.as_str()) {
        r.reject(field, format!("must be one of {}", allowed.join(", ")));
    }
    Some(value)
}

pub fn periodo(r: &mut RowReader) -> Periodo {
    let codigo_periodo = r.required("codigo_periodo", 16);
    let semestre = r.text("semestre", 10);
    let fecha_inicio = r.date("fecha_inicio");
    let fecha_fin = r.date("fecha_fin");
    if let (Some(i), Some(f)) = (fecha_inicio, fecha_fin)
        && f < i
    {
        r.reject("fecha_fin", "must be on or after fecha_inicio");
    }
    Periodo {
        codigo_periodo,
        semestre,
        fecha_inicio,
        fecha_fin,
        estado: state(r, "estado", &PERIODO_ESTADOS),
    }
}

/// Imported students get no usable password: the `!` marker cannot match any hash.
pub fn estudiante(r: &mut RowReader) -> EstudianteRow {
    EstudianteRow {
        registro_academico: r.required("registro_academico", 20),
        codigo_carrera: r.text("codigo_carrera", 8),
        nombre: r.required("nombre", 100),
        apellido: r.required("apellido", 100),
        ci: r.text("ci", 20),
        correo: r.text("correo", 100),
        contrasena: "!".to_owned(),
        telefono: r.text("telefono", 20),
        direccion: r.text("direccion", 150),
        estado_academico: state(r, "estado_academico", &ESTUDIANTE_ESTADOS)
            .unwrap_or_else(|| "REGULAR".to_owned()),
    }
}

pub fn bloqueo(r: &mut RowReader) -> Bloqueo {
    Bloqueo {
        codigo_bloqueo: r.required("codigo_bloqueo", 10),
        registro_academico: r.required("registro_academico", 20),
        descripcion: r.text("descripcion", 100),
    }
}

pub fn historial(r: &mut RowReader) -> HistorialRow {
    let registro_academico = r.required("registro_academico", 20);
    let sigla_materia = r.required("sigla_materia", 8);
    let codigo_periodo = r.required("codigo_periodo", 16);
    let nota_final = r.decimal("nota_final");
    if nota_final.is_some_and(|n| !(0.0..=100.0).contains(&n)) {
        r.reject("nota_final", "must be between 0 and 100");
    }
    let estado = r.required("estado", 15);
    if !estado.is_empty() && !HISTORIAL_ESTADOS.contains(&estado.as_str()) {
        r.reject("estado", "must be APROBADA, REPROBADA or RETIRADA");
    }
    HistorialRow {
        registro_academico,
        sigla_materia,
        codigo_periodo,
        nota_final,
        estado,
        observacion: r.text("observacion", 200),
        fecha_registro: r.date("fecha_registro"),
    }
}
