//! Catalog records as the seed and the importer load them.

use serde::{Deserialize, Serialize};
use time::{Date, Time};

use super::model::Periodo;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Carrera {
    pub codigo_carrera: String,
    pub nombre: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Materia {
    pub sigla: String,
    pub nombre: String,
    pub creditos: i64,
    #[serde(default)]
    pub es_electiva: bool,
}

/// A prerequisite: enrolling in `sigla_materia` requires having passed `sigla_requerida`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Prerrequisito {
    pub sigla_materia: String,
    pub sigla_requerida: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Docente {
    pub codigo_docente: String,
    pub nombre: Option<String>,
    pub apellido: Option<String>,
    pub ci: Option<String>,
    pub correo: Option<String>,
    pub telefono: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Aula {
    pub codigo_aula: String,
    pub modulo: Option<String>,
    pub aula: Option<String>,
    pub capacidad: Option<i64>,
    pub ubicacion: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HorarioRow {
    pub codigo_horario: String,
    pub dias_semana: Vec<String>,
    pub hora_inicio: Time,
    pub hora_fin: Time,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GrupoRow {
    pub codigo_grupo: String,
    pub sigla_materia: String,
    pub codigo_docente: Option<String>,
    pub codigo_aula: Option<String>,
    pub codigo_horario: Option<String>,
    pub descripcion: Option<String>,
    pub cupo: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EstudianteRow {
    pub registro_academico: String,
    pub codigo_carrera: Option<String>,
    pub nombre: String,
    pub apellido: String,
    pub ci: Option<String>,
    pub correo: Option<String>,
    /// A password hash; never returned by the API.
    pub contrasena: String,
    pub telefono: Option<String>,
    pub direccion: Option<String>,
    pub estado_academico: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bloqueo {
    pub codigo_bloqueo: String,
    pub registro_academico: String,
    pub descripcion: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistorialRow {
    pub registro_academico: String,
    pub sigla_materia: String,
    pub codigo_periodo: String,
    pub nota_final: Option<f64>,
    pub estado: String,
    pub observacion: Option<String>,
    pub fecha_registro: Option<Date>,
}

/// A whole catalog, loaded in one transaction in the order of the fields (parents first).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Catalog {
    #[serde(default)]
    pub carreras: Vec<Carrera>,
    #[serde(default)]
    pub materias: Vec<Materia>,
    #[serde(default)]
    pub prerrequisitos: Vec<Prerrequisito>,
    #[serde(default)]
    pub docentes: Vec<Docente>,
    #[serde(default)]
    pub aulas: Vec<Aula>,
    #[serde(default)]
    pub horarios: Vec<HorarioRow>,
    #[serde(default)]
    pub grupos: Vec<GrupoRow>,
    #[serde(default)]
    pub periodos: Vec<Periodo>,
    #[serde(default)]
    pub estudiantes: Vec<EstudianteRow>,
    #[serde(default)]
    pub bloqueos: Vec<Bloqueo>,
    #[serde(default)]
    pub historial: Vec<HistorialRow>,
}

/// Rows written (inserted or changed) per table by one catalog load.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LoadReport {
    pub rows: Vec<(String, u64)>,
}

impl LoadReport {
    /// Adds a table's count and logs it, so that a long import shows its progress.
    pub fn record(&mut self, table: &str, rows: u64) {
        tracing::info!(table, rows_written = rows, "catalog table loaded");
        self.rows.push((table.to_owned(), rows));
    }

    pub fn total(&self) -> u64 {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

/// Keys already in the database, against which an import's references are checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogKeys {
    pub carreras: std::collections::HashSet<String>,
    pub materias: std::collections::HashSet<String>,
    pub docentes: std::collections::HashSet<String>,
    pub aulas: std::collections::HashSet<String>,
    pub horarios: std::collections::HashSet<String>,
    pub periodos: std::collections::HashSet<String>,
    pub estudiantes: std::collections::HashSet<String>,
    pub active_periodo: Option<String>,
    /// The prerequisites already stored, which an import adds to.
    pub prerrequisitos: Vec<Prerrequisito>,
    /// Groups that students hold, which an import may not change in ways that would break
    /// their enrollments.
    pub held_grupos: std::collections::HashMap<String, HeldGrupo>,
    /// Horarios of held groups, which an import may not move.
    pub held_horarios: std::collections::HashMap<String, HorarioRow>,
}

/// The values of a group that students hold, which an import must keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldGrupo {
    pub sigla_materia: String,
    pub codigo_horario: Option<String>,
    pub inscritos_actuales: i64,
}
