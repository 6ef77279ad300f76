//! Read models that the query endpoints return, shaped like the wire contract.

use serde::Serialize;

use super::model::{Estudiante, Inscripcion, Periodo};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DetalleSimple {
    pub codigo_detalle: String,
    pub codigo_inscripcion: String,
    pub codigo_grupo: String,
}

/// An inscription with its student, period and details.
#[derive(Debug, Clone, PartialEq)]
pub struct InscripcionFull {
    pub inscripcion: Inscripcion,
    pub estudiante: Option<Estudiante>,
    pub periodo: Option<Periodo>,
    pub detalles: Vec<DetalleSimple>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MateriaRef {
    pub sigla: String,
    pub nombre: String,
    pub creditos: i64,
    pub es_electiva: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DocenteRef {
    pub codigo_docente: String,
    pub nombre: Option<String>,
    pub apellido: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AulaRef {
    pub codigo_aula: String,
    pub modulo: Option<String>,
    pub aula: Option<String>,
    pub ubicacion: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HorarioRef {
    pub codigo_horario: String,
    pub dias_semana: Vec<String>,
    /// `HH:MM:SS`.
    pub hora_inicio: String,
    pub hora_fin: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GrupoView {
    pub codigo_grupo: String,
    pub sigla_materia: String,
    pub descripcion: Option<String>,
    pub cupo: i64,
    pub inscritos_actuales: i64,
    pub materia: Option<MateriaRef>,
    pub docente: Option<DocenteRef>,
    pub aula: Option<AulaRef>,
    pub horario: Option<HorarioRef>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DetalleConGrupo {
    pub codigo_detalle: String,
    pub grupo: GrupoView,
}

/// An inscription with each detail's group expanded, for the per-student listing.
#[derive(Debug, Clone, PartialEq)]
pub struct InscripcionConGrupos {
    pub inscripcion: Inscripcion,
    pub detalles: Vec<DetalleConGrupo>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EnrollmentStatistics {
    pub total_inscripciones: i64,
    /// Inscription count per `codigo_periodo`, periods without inscriptions included.
    pub inscripciones_por_periodo: Vec<(String, i64)>,
    pub estudiantes_activos: i64,
    pub grupos_disponibles: i64,
}

/// Fields a period update may set; absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeriodoUpdate {
    pub semestre: Option<Option<String>>,
    pub fecha_inicio: Option<Option<time::Date>>,
    pub fecha_fin: Option<Option<time::Date>>,
    pub estado: Option<Option<String>>,
}
