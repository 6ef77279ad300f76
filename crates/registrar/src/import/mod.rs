//! `registrar import`: loads a catalog from a folder of CSV files or from one JSON document.
//!
//! Every row is validated before anything is written, and every problem is reported with its
//! file, line and field. The load then runs as one transaction that inserts new rows and
//! updates changed ones, so importing the same files again changes nothing.

mod rows;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::domain::catalog::{Catalog, CatalogKeys};
use crate::domain::model::PERIODO_ACTIVO;
use rows::{Fields, RowReader};

/// The tables an import may contain, in load order (parents before children).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Carreras,
    Materias,
    Prerrequisitos,
    Docentes,
    Aulas,
    Horarios,
    Grupos,
    Periodos,
    Estudiantes,
    Bloqueos,
    Historial,
}

impl Table {
    pub const ALL: [Table; 11] = [
        Table::Carreras,
        Table::Materias,
        Table::Prerrequisitos,
        Table::Docentes,
        Table::Aulas,
        Table::Horarios,
        Table::Grupos,
        Table::Periodos,
        Table::Estudiantes,
        Table::Bloqueos,
        Table::Historial,
    ];

    /// Returns the key of the table in a JSON document, which is also the stem of its CSV file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Carreras => "carreras",
            Self::Materias => "materias",
            Self::Prerrequisitos => "prerrequisitos",
            Self::Docentes => "docentes",
            Self::Aulas => "aulas",
            Self::Horarios => "horarios",
            Self::Grupos => "grupos",
            Self::Periodos => "periodos",
            Self::Estudiantes => "estudiantes",
            Self::Bloqueos => "bloqueos",
            Self::Historial => "historial",
        }
    }
}

impl Table {
    /// Returns every column of the table. An import must carry all of them, because an
    /// absent column would otherwise overwrite stored values with nothing.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Self::Carreras => &["codigo_carrera", "nombre"],
            Self::Materias => &["sigla", "nombre", "creditos", "es_electiva"],
            Self::Docentes => &[
                "codigo_docente",
                "nombre",
                "apellido",
                "ci",
                "correo",
                "telefono",
            ],
            Self::Aulas => &["codigo_aula", "modulo", "aula", "capacidad", "ubicacion"],
            Self::Horarios => &["codigo_horario", "dias_semana", "hora_inicio", "hora_fin"],
            Self::Grupos => &[
                "codigo_grupo",
                "sigla_materia",
                "codigo_docente",
                "codigo_aula",
                "codigo_horario",
                "descripcion",
                "cupo",
            ],
            Self::Periodos => &[
                "codigo_periodo",
                "semestre",
                "fecha_inicio",
                "fecha_fin",
                "estado",
            ],
            Self::Estudiantes => &[
                "registro_academico",
                "codigo_carrera",
                "nombre",
                "apellido",
                "ci",
                "correo",
                "telefono",
                "direccion",
                "estado_academico",
            ],
            Self::Bloqueos => &["codigo_bloqueo", "registro_academico", "descripcion"],
            Self::Historial => &[
                "registro_academico",
                "sigla_materia",
                "codigo_periodo",
                "nota_final",
                "estado",
                "observacion",
                "fecha_registro",
            ],
            Self::Prerrequisitos => &["sigla_materia", "sigla_requerida"],
        }
    }
}

/// Reports columns that are missing from, or unknown to, one row's fields.
fn check_columns(table: Table, fields: &Fields) -> Vec<rows::FieldProblem> {
    let expected = table.columns();
    let mut problems: Vec<rows::FieldProblem> = expected
        .iter()
        .filter(|c| !fields.contains_key(**c))
        .map(|c| rows::FieldProblem {
            field: (*c).to_owned(),
            message: "column is missing; list every column and leave a cell empty for no value"
                .to_owned(),
        })
        .collect();
    let mut unknown: Vec<&String> = fields
        .keys()
        .filter(|k| !expected.contains(&k.as_str()))
        .collect();
    unknown.sort();
    problems.extend(unknown.into_iter().map(|k| rows::FieldProblem {
        field: k.clone(),
        message: format!("unknown column; the columns are {}", expected.join(", ")),
    }));
    problems
}

/// The rows of one table as read from a file, each with its line number.
#[derive(Debug, Clone)]
pub struct Source {
    pub table: Table,
    pub file: String,
    pub rows: Vec<(usize, Fields)>,
}

/// A problem in the input, located by file, line and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProblem {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ImportProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.field, self.message
        )
    }
}

/// The input could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Format(ImportProblem),
    #[error("{} malformed CSV record(s), the first: {}", .0.len(), .0[0])]
    Malformed(Vec<ImportProblem>),
    #[error("{path} contains none of the catalog files ({expected})")]
    Empty { path: PathBuf, expected: String },
}

/// Reads a folder of `<table>.csv` files or a `.json` document.
pub fn read_sources(path: &Path) -> Result<Vec<Source>, ReadError> {
    if path.is_dir() {
        read_csv_folder(path)
    } else {
        read_json(path)
    }
}

fn read_csv_folder(dir: &Path) -> Result<Vec<Source>, ReadError> {
    let mut sources = Vec::new();
    for table in Table::ALL {
        let path = dir.join(format!("{}.csv", table.name()));
        if !path.exists() {
            continue;
        }
        let file = path.display().to_string();
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(&path)
            .map_err(|e| csv_error(&file, e))?;
        let headers = reader.headers().map_err(|e| csv_error(&file, e))?.clone();
        let mut rows = Vec::new();
        let mut malformed = Vec::new();
        for record in reader.records() {
            let record = match record {
                Ok(record) => record,
                Err(e) => {
                    malformed.push(csv_problem(&file, e));
                    continue;
                }
            };
            let line = record.position().map_or(0, |p| p.line() as usize);
            let fields: Fields = headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect();
            rows.push((line, fields));
        }
        if !malformed.is_empty() {
            return Err(ReadError::Malformed(malformed));
        }
        sources.push(Source { table, file, rows });
    }
    if sources.is_empty() {
        let expected = Table::ALL
            .iter()
            .map(|t| format!("{}.csv", t.name()))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ReadError::Empty {
            path: dir.to_owned(),
            expected,
        });
    }
    Ok(sources)
}

fn csv_problem(file: &str, e: csv::Error) -> ImportProblem {
    let line = e.position().map_or(0, |p| p.line() as usize);
    ImportProblem {
        file: file.to_owned(),
        line,
        field: "-".to_owned(),
        message: format!("malformed CSV: {e}"),
    }
}

fn csv_error(file: &str, e: csv::Error) -> ReadError {
    ReadError::Format(csv_problem(file, e))
}

/// Reads `{"carreras": [{…}], "materias": [{…}], …}`. A row's "line" is its 1-based position
/// in its array.
fn read_json(path: &Path) -> Result<Vec<Source>, ReadError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    let format_error = |line: usize, field: &str, message: String| {
        ReadError::Format(ImportProblem {
            file: file.clone(),
            line,
            field: field.to_owned(),
            message,
        })
    };
    let document: Value =
        serde_json::from_str(&text).map_err(|e| format_error(e.line(), "-", e.to_string()))?;
    let Value::Object(tables) = document else {
        return Err(format_error(
            1,
            "-",
            "the document must be a JSON object".into(),
        ));
    };

    let mut sources = Vec::new();
    for table in Table::ALL {
        let Some(value) = tables.get(table.name()) else {
            continue;
        };
        let Value::Array(items) = value else {
            return Err(format_error(
                0,
                table.name(),
                "must be an array of objects".into(),
            ));
        };
        let mut rows = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Value::Object(map) = item else {
                return Err(format_error(
                    i + 1,
                    table.name(),
                    "each row must be an object".into(),
                ));
            };
            let fields: Fields = map.iter().map(|(k, v)| (k.clone(), json_text(v))).collect();
            rows.push((i + 1, fields));
        }
        sources.push(Source {
            table,
            file: format!("{file}#{}", table.name()),
            rows,
        });
    }
    Ok(sources)
}

/// Turns a JSON value into the text a CSV cell would hold; arrays join with `|`.
fn json_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(json_text).collect::<Vec<_>>().join("|"),
        other => other.to_string(),
    }
}

/// The file and line of a parsed row, to locate problems found across rows.
#[derive(Debug, Clone)]
struct Origin {
    file: String,
    line: usize,
}

/// Parses and validates every row, against the rest of the import and the keys already in
/// the database. Returns the catalog, or every problem found.
pub fn parse(sources: &[Source], existing: &CatalogKeys) -> Result<Catalog, Vec<ImportProblem>> {
    let mut catalog = Catalog::default();
    let mut problems = Vec::new();
    let mut origins: HashMap<Table, Vec<Origin>> = HashMap::new();

    for source in sources {
        let mut table_origins = Vec::with_capacity(source.rows.len());
        // Every CSV row has the header's columns, so the file is checked once, at its header.
        let is_csv = source.file.ends_with(".csv");
        if let (true, Some((_, first))) = (is_csv, source.rows.first()) {
            for p in check_columns(source.table, first) {
                problems.push(ImportProblem {
                    file: source.file.clone(),
                    line: 1,
                    field: p.field,
                    message: p.message,
                });
            }
        }
        for (line, fields) in &source.rows {
            if !is_csv {
                for p in check_columns(source.table, fields) {
                    problems.push(ImportProblem {
                        file: source.file.clone(),
                        line: *line,
                        field: p.field,
                        message: p.message,
                    });
                }
            }
            let mut reader = RowReader::new(fields);
            push_row(&mut catalog, source.table, &mut reader);
            for p in reader.problems {
                problems.push(ImportProblem {
                    file: source.file.clone(),
                    line: *line,
                    field: p.field,
                    message: p.message,
                });
            }
            table_origins.push(Origin {
                file: source.file.clone(),
                line: *line,
            });
        }
        origins
            .entry(source.table)
            .or_default()
            .extend(table_origins);
    }

    let origin = |table: Table, index: usize| -> Origin {
        origins
            .get(&table)
            .and_then(|o| o.get(index))
            .cloned()
            .unwrap_or(Origin {
                file: table.name().to_owned(),
                line: 0,
            })
    };
    let mut report = |table: Table, index: usize, field: &str, message: String| {
        let at = origin(table, index);
        problems.push(ImportProblem {
            file: at.file,
            line: at.line,
            field: field.to_owned(),
            message,
        });
    };
    check_cross_rows(&catalog, existing, &mut report);

    if !problems.is_empty() {
        return Err(problems);
    }
    // Load the ACTIVO period after the others, so that a period this import closes is closed
    // before the new one opens and the one-active-period index never finds two.
    catalog
        .periodos
        .sort_by_key(|p| p.estado.as_deref() == Some(PERIODO_ACTIVO));
    Ok(catalog)
}

fn push_row(catalog: &mut Catalog, table: Table, r: &mut RowReader) {
    match table {
        Table::Carreras => catalog.carreras.push(rows::carrera(r)),
        Table::Materias => catalog.materias.push(rows::materia(r)),
        Table::Prerrequisitos => catalog.prerrequisitos.push(rows::prerrequisito(r)),
        Table::Docentes => catalog.docentes.push(rows::docente(r)),
        Table::Aulas => catalog.aulas.push(rows::aula(r)),
        Table::Horarios => catalog.horarios.push(rows::horario(r)),
        Table::Grupos => catalog.grupos.push(rows::grupo(r)),
        Table::Periodos => catalog.periodos.push(rows::periodo(r)),
        Table::Estudiantes => catalog.estudiantes.push(rows::estudiante(r)),
        Table::Bloqueos => catalog.bloqueos.push(rows::bloqueo(r)),
        Table::Historial => catalog.historial.push(rows::historial(r)),
    }
}

/// A table, its key field, and the rows whose key repeats an earlier row's.
type DuplicateCheck = (Table, &'static str, Vec<(usize, String)>);

/// Finds keys listed twice in one table.
fn duplicates<'a>(keys: impl Iterator<Item = String> + 'a) -> Vec<(usize, String)> {
    let mut seen = HashSet::new();
    keys.enumerate()
        .filter(|(_, k)| !k.is_empty() && !seen.insert(k.clone()))
        .collect()
}

/// Returns the union of keys in the import and in the database.
fn known(imported: impl Iterator<Item = String>, existing: &HashSet<String>) -> HashSet<String> {
    let mut all: HashSet<String> = imported.collect();
    all.extend(existing.iter().cloned());
    all
}

fn check_cross_rows(
    catalog: &Catalog,
    existing: &CatalogKeys,
    report: &mut impl FnMut(Table, usize, &str, String),
) {
    let dup_checks: Vec<DuplicateCheck> = vec![
        (
            Table::Carreras,
            "codigo_carrera",
            duplicates(catalog.carreras.iter().map(|r| r.codigo_carrera.clone())),
        ),
        (
            Table::Materias,
            "sigla",
            duplicates(catalog.materias.iter().map(|r| r.sigla.clone())),
        ),
        (
            Table::Prerrequisitos,
            "sigla_requerida",
            duplicates(
                catalog
                    .prerrequisitos
                    .iter()
                    .map(|r| format!("{} requiring {}", r.sigla_materia, r.sigla_requerida)),
            ),
        ),
        (
            Table::Docentes,
            "codigo_docente",
            duplicates(catalog.docentes.iter().map(|r| r.codigo_docente.clone())),
        ),
        (
            Table::Aulas,
            "codigo_aula",
            duplicates(catalog.aulas.iter().map(|r| r.codigo_aula.clone())),
        ),
        (
            Table::Horarios,
            "codigo_horario",
            duplicates(catalog.horarios.iter().map(|r| r.codigo_horario.clone())),
        ),
        (
            Table::Grupos,
            "codigo_grupo",
            duplicates(catalog.grupos.iter().map(|r| r.codigo_grupo.clone())),
        ),
        (
            Table::Periodos,
            "codigo_periodo",
            duplicates(catalog.periodos.iter().map(|r| r.codigo_periodo.clone())),
        ),
        (
            Table::Estudiantes,
            "registro_academico",
            duplicates(
                catalog
                    .estudiantes
                    .iter()
                    .map(|r| r.registro_academico.clone()),
            ),
        ),
        (
            Table::Bloqueos,
            "codigo_bloqueo",
            duplicates(catalog.bloqueos.iter().map(|r| r.codigo_bloqueo.clone())),
        ),
        (
            Table::Historial,
            "registro_academico",
            duplicates(catalog.historial.iter().map(|r| {
                format!(
                    "{}/{}/{}",
                    r.registro_academico, r.sigla_materia, r.codigo_periodo
                )
            })),
        ),
    ];
    for (table, field, dups) in dup_checks {
        for (index, key) in dups {
            report(
                table,
                index,
                field,
                format!("{key} appears more than once in this file"),
            );
        }
    }

    let carreras = known(
        catalog.carreras.iter().map(|r| r.codigo_carrera.clone()),
        &existing.carreras,
    );
    let materias = known(
        catalog.materias.iter().map(|r| r.sigla.clone()),
        &existing.materias,
    );
    let docentes = known(
        catalog.docentes.iter().map(|r| r.codigo_docente.clone()),
        &existing.docentes,
    );
    let aulas = known(
        catalog.aulas.iter().map(|r| r.codigo_aula.clone()),
        &existing.aulas,
    );
    let horarios = known(
        catalog.horarios.iter().map(|r| r.codigo_horario.clone()),
        &existing.horarios,
    );
    let periodos = known(
        catalog.periodos.iter().map(|r| r.codigo_periodo.clone()),
        &existing.periodos,
    );
    let estudiantes = known(
        catalog
            .estudiantes
            .iter()
            .map(|r| r.registro_academico.clone()),
        &existing.estudiantes,
    );

    let mut check = |table: Table,
                     index: usize,
                     field: &str,
                     value: &str,
                     set: &HashSet<String>,
                     kind: &str| {
        if !value.is_empty() && !set.contains(value) {
            report(
                table,
                index,
                field,
                format!("{kind} {value} is neither in this import nor in the database"),
            );
        }
    };
    for (i, p) in catalog.prerrequisitos.iter().enumerate() {
        for (field, value) in [
            ("sigla_materia", &p.sigla_materia),
            ("sigla_requerida", &p.sigla_requerida),
        ] {
            check(Table::Prerrequisitos, i, field, value, &materias, "materia");
        }
    }
    for (i, g) in catalog.grupos.iter().enumerate() {
        check(
            Table::Grupos,
            i,
            "sigla_materia",
            &g.sigla_materia,
            &materias,
            "materia",
        );
        for (field, value, set, kind) in [
            ("codigo_docente", &g.codigo_docente, &docentes, "docente"),
            ("codigo_aula", &g.codigo_aula, &aulas, "aula"),
            ("codigo_horario", &g.codigo_horario, &horarios, "horario"),
        ] {
            if let Some(v) = value {
                check(Table::Grupos, i, field, v, set, kind);
            }
        }
    }
    for (i, e) in catalog.estudiantes.iter().enumerate() {
        if let Some(c) = &e.codigo_carrera {
            check(
                Table::Estudiantes,
                i,
                "codigo_carrera",
                c,
                &carreras,
                "carrera",
            );
        }
    }
    for (i, b) in catalog.bloqueos.iter().enumerate() {
        check(
            Table::Bloqueos,
            i,
            "registro_academico",
            &b.registro_academico,
            &estudiantes,
            "estudiante",
        );
    }
    for (i, h) in catalog.historial.iter().enumerate() {
        check(
            Table::Historial,
            i,
            "registro_academico",
            &h.registro_academico,
            &estudiantes,
            "estudiante",
        );
        check(
            Table::Historial,
            i,
            "sigla_materia",
            &h.sigla_materia,
            &materias,
            "materia",
        );
        check(
            Table::Historial,
            i,
            "codigo_periodo",
            &h.codigo_periodo,
            &periodos,
            "periodo",
        );
    }

    check_held_groups(catalog, existing, report);
    let cis = catalog
        .estudiantes
        .iter()
        .map(|e| e.ci.clone().unwrap_or_default());
    for (index, ci) in duplicates(cis) {
        report(
            Table::Estudiantes,
            index,
            "ci",
            format!("ci {ci} belongs to another student in this file"),
        );
    }
    check_active_periods(catalog, existing, report);
    check_prerequisite_cycles(catalog, existing, report);
}

/// Rejects imported prerequisites that close a cycle with the others, stored ones included:
/// no materia in a cycle could ever be taken.
fn check_prerequisite_cycles(
    catalog: &Catalog,
    existing: &CatalogKeys,
    report: &mut impl FnMut(Table, usize, &str, String),
) {
    let mut requires: HashMap<&str, Vec<&str>> = HashMap::new();
    for p in existing
        .prerrequisitos
        .iter()
        .chain(&catalog.prerrequisitos)
    {
        requires
            .entry(&p.sigla_materia)
            .or_default()
            .push(&p.sigla_requerida);
    }
    for (index, p) in catalog.prerrequisitos.iter().enumerate() {
        // A materia that requires itself is reported by the row check.
        if p.sigla_materia == p.sigla_requerida {
            continue;
        }
        if requires_transitively(&requires, &p.sigla_requerida, &p.sigla_materia) {
            report(
                Table::Prerrequisitos,
                index,
                "sigla_requerida",
                format!(
                    "{} already requires {}, directly or through other prerequisites; this \
                     pair would form a cycle in which no materia could be taken",
                    p.sigla_requerida, p.sigla_materia
                ),
            );
        }
    }
}

/// Returns whether `from` requires `to` through a chain of one or more prerequisites.
fn requires_transitively(requires: &HashMap<&str, Vec<&str>>, from: &str, to: &str) -> bool {
    let mut pending = vec![from];
    let mut seen = HashSet::new();
    while let Some(sigla) = pending.pop() {
        if sigla == to {
            return true;
        }
        if seen.insert(sigla)
            && let Some(next) = requires.get(sigla)
        {
            pending.extend(next.iter().copied());
        }
    }
    false
}

/// Keeps the enrollments of held groups valid: a held group keeps its materia and horario and
/// no fewer seats than are taken, and a held group's horario keeps its days and times.
/// Changing them could leave students with two groups of one materia or overlapping groups.
fn check_held_groups(
    catalog: &Catalog,
    existing: &CatalogKeys,
    report: &mut impl FnMut(Table, usize, &str, String),
) {
    for (i, g) in catalog.grupos.iter().enumerate() {
        let Some(held) = existing.held_grupos.get(&g.codigo_grupo) else {
            continue;
        };
        let taken = held.inscritos_actuales;
        let code = &g.codigo_grupo;
        if g.sigla_materia != held.sigla_materia {
            let message = format!(
                "{code} is held by {taken} student(s), so its materia cannot change from {}; \
                 create a new group instead",
                held.sigla_materia
            );
            report(Table::Grupos, i, "sigla_materia", message);
        }
        if g.codigo_horario != held.codigo_horario {
            let message = format!(
                "{code} is held by {taken} student(s), so its horario cannot change from {}; \
                 create a new group instead",
                held.codigo_horario.as_deref().unwrap_or("none")
            );
            report(Table::Grupos, i, "codigo_horario", message);
        }
        if g.cupo < taken {
            let message =
                format!("{code} has {taken} seats taken, so cupo must be at least {taken}");
            report(Table::Grupos, i, "cupo", message);
        }
    }
    for (i, h) in catalog.horarios.iter().enumerate() {
        let Some(held) = existing.held_horarios.get(&h.codigo_horario) else {
            continue;
        };
        if h != held {
            let message = format!(
                "{} is the horario of groups that students hold, so its days and times cannot \
                 change; create a new horario instead",
                h.codigo_horario
            );
            report(Table::Horarios, i, "dias_semana", message);
        }
    }
}

/// At most one period may be ACTIVO once the import is applied.
fn check_active_periods(
    catalog: &Catalog,
    existing: &CatalogKeys,
    report: &mut impl FnMut(Table, usize, &str, String),
) {
    let active: Vec<(usize, &str)> = catalog
        .periodos
        .iter()
        .enumerate()
        .filter(|(_, p)| p.estado.as_deref() == Some(PERIODO_ACTIVO))
        .map(|(i, p)| (i, p.codigo_periodo.as_str()))
        .collect();
    for (index, codigo) in active.iter().skip(1) {
        report(
            Table::Periodos,
            *index,
            "estado",
            format!("{codigo} is a second ACTIVO period; at most one may be active"),
        );
    }
    let Some((index, codigo)) = active.first() else {
        return;
    };
    if let Some(current) = &existing.active_periodo {
        let current_closed_here = catalog
            .periodos
            .iter()
            .any(|p| &p.codigo_periodo == current && p.estado.as_deref() != Some(PERIODO_ACTIVO));
        if current != codigo && !current_closed_here {
            report(
                Table::Periodos,
                *index,
                "estado",
                format!(
                    "{current} is ACTIVO in the database; import {codigo} with another estado \
                     and activate it with POST /api/v1/periodos/{codigo}/activar, or close {current} in this import"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::Prerrequisito;

    /// Builds a CSV source; columns a row does not name get empty cells, as in a file whose
    /// header lists every column.
    fn source(table: Table, rows: &[&[(&str, &str)]]) -> Source {
        Source {
            table,
            file: format!("{}.csv", table.name()),
            rows: rows
                .iter()
                .enumerate()
                .map(|(i, fields)| {
                    let mut map: Fields = table
                        .columns()
                        .iter()
                        .map(|c| (c.to_string(), String::new()))
                        .collect();
                    map.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                    (i + 2, map)
                })
                .collect(),
        }
    }

    #[test]
    fn missing_and_unknown_columns_are_reported() {
        let mut source = source(
            Table::Grupos,
            &[&[("codigo_grupo", "G1"), ("sigla_materia", "M")]],
        );
        let fields = &mut source.rows[0].1;
        fields.remove("codigo_horario");
        fields.insert("Cupo".into(), "1".into());
        let problems = parse(&[source], &CatalogKeys::default()).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"codigo_horario"), "{problems:?}");
        assert!(fields.contains(&"Cupo"), "{problems:?}");
        assert_eq!(problems[0].line, 1, "a CSV file is checked at its header");
    }

    #[test]
    fn held_group_keeps_materia_horario_and_seats() {
        let mut existing = CatalogKeys::default();
        existing.materias.insert("M1".into());
        existing.materias.insert("M2".into());
        existing.horarios.insert("H1".into());
        existing.held_grupos.insert(
            "G1".into(),
            crate::domain::catalog::HeldGrupo {
                sigla_materia: "M1".into(),
                codigo_horario: Some("H1".into()),
                inscritos_actuales: 5,
            },
        );
        let sources = vec![source(
            Table::Grupos,
            &[&[
                ("codigo_grupo", "G1"),
                ("sigla_materia", "M2"),
                ("cupo", "3"),
            ]],
        )];
        let problems = parse(&sources, &existing).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"sigla_materia"), "{problems:?}");
        assert!(fields.contains(&"codigo_horario"), "{problems:?}");
        assert!(fields.contains(&"cupo"), "{problems:?}");
    }

    #[test]
    fn valid_rows_build_the_catalog() {
        let sources = vec![
            source(
                Table::Materias,
                &[&[("sigla", "MAT1"), ("nombre", "Cálculo"), ("creditos", "5")]],
            ),
            source(
                Table::Horarios,
                &[&[
                    ("codigo_horario", "H1"),
                    ("dias_semana", "LUNES|MIERCOLES"),
                    ("hora_inicio", "08:00"),
                    ("hora_fin", "10:00"),
                ]],
            ),
            source(
                Table::Grupos,
                &[&[
                    ("codigo_grupo", "G1"),
                    ("sigla_materia", "MAT1"),
                    ("codigo_horario", "H1"),
                    ("cupo", "30"),
                ]],
            ),
        ];
        let catalog = parse(&sources, &CatalogKeys::default()).expect("valid");
        assert_eq!(catalog.grupos[0].cupo, 30);
        assert_eq!(catalog.horarios[0].dias_semana, vec!["LUNES", "MIERCOLES"]);
    }

    #[test]
    fn every_problem_is_located() {
        let sources = vec![
            source(
                Table::Materias,
                &[&[
                    ("sigla", "MAT1"),
                    ("nombre", "Cálculo"),
                    ("creditos", "cinco"),
                ]],
            ),
            source(
                Table::Grupos,
                &[
                    &[
                        ("codigo_grupo", "G1"),
                        ("sigla_materia", "NOPE"),
                        ("cupo", "0"),
                    ],
                    &[("codigo_grupo", "G1"), ("sigla_materia", "MAT1")],
                ],
            ),
        ];
        let problems = parse(&sources, &CatalogKeys::default()).unwrap_err();
        let located: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            located.contains(
                &"materias.csv:2: creditos: must be a whole number, found \"cinco\"".to_owned()
            ),
            "{located:?}"
        );
        assert!(
            located.iter().any(|p| p.starts_with("grupos.csv:2: cupo:")),
            "{located:?}"
        );
        assert!(
            located
                .iter()
                .any(|p| p.starts_with("grupos.csv:2: sigla_materia: materia NOPE")),
            "{located:?}"
        );
        assert!(
            located
                .iter()
                .any(|p| p.starts_with("grupos.csv:3: codigo_grupo: G1 appears more than once")),
            "{located:?}"
        );
    }

    #[test]
    fn prerequisite_problems_are_located() {
        let sources = vec![
            source(
                Table::Materias,
                &[
                    &[("sigla", "A"), ("nombre", "A"), ("creditos", "4")],
                    &[("sigla", "B"), ("nombre", "B"), ("creditos", "4")],
                ],
            ),
            source(
                Table::Prerrequisitos,
                &[
                    &[("sigla_materia", "A"), ("sigla_requerida", "A")],
                    &[("sigla_materia", "B"), ("sigla_requerida", "NOPE")],
                    &[("sigla_materia", "B"), ("sigla_requerida", "A")],
                    &[("sigla_materia", "B"), ("sigla_requerida", "A")],
                ],
            ),
        ];
        let problems = parse(&sources, &CatalogKeys::default()).unwrap_err();
        let located: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            located
                .iter()
                .any(|p| p.starts_with("prerrequisitos.csv:2: sigla_requerida: must differ")),
            "{located:?}"
        );
        assert!(
            located
                .iter()
                .any(|p| p.starts_with("prerrequisitos.csv:3: sigla_requerida: materia NOPE")),
            "{located:?}"
        );
        assert!(
            located.iter().any(|p| p.starts_with(
                "prerrequisitos.csv:5: sigla_requerida: B requiring A appears more than once"
            )),
            "{located:?}"
        );
    }

    #[test]
    fn prerequisite_cycle_through_stored_pair_is_rejected() {
        let sources = vec![source(
            Table::Prerrequisitos,
            &[&[("sigla_materia", "A"), ("sigla_requerida", "C")]],
        )];
        let existing = CatalogKeys {
            materias: ["A", "B", "C"].iter().map(|s| s.to_string()).collect(),
            prerrequisitos: vec![
                Prerrequisito {
                    sigla_materia: "C".into(),
                    sigla_requerida: "B".into(),
                },
                Prerrequisito {
                    sigla_materia: "B".into(),
                    sigla_requerida: "A".into(),
                },
            ],
            ..CatalogKeys::default()
        };
        let problems = parse(&sources, &existing).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "sigla_requerida");
        assert!(problems[0].message.contains("cycle"), "{problems:?}");
    }

    #[test]
    fn second_active_period_is_rejected() {
        let sources = vec![source(
            Table::Periodos,
            &[&[("codigo_periodo", "2030-1"), ("estado", "ACTIVO")]],
        )];
        let existing = CatalogKeys {
            active_periodo: Some("2024-2".into()),
            ..CatalogKeys::default()
        };
        let problems = parse(&sources, &existing).unwrap_err();
        assert_eq!(problems[0].field, "estado");
    }
}
