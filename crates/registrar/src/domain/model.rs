//! Catalog and enrollment records as the store returns them.

use serde::{Deserialize, Serialize};
use time::{Date, Time};

/// `estado_academico` values with an effect on enrollment; any other value counts as regular.
pub const ESTADO_BLOQUEADO: &str = "BLOQUEADO";
pub const ESTADO_INACTIVO: &str = "INACTIVO";
pub const ESTADO_SUSPENDIDO: &str = "SUSPENDIDO";
/// The one period state that allows enrollment.
pub const PERIODO_ACTIVO: &str = "ACTIVO";
/// The state an activation gives the previously active period.
pub const PERIODO_CERRADO: &str = "CERRADO";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Estudiante {
    pub registro_academico: String,
    pub codigo_carrera: Option<String>,
    pub nombre: String,
    pub apellido: String,
    pub ci: Option<String>,
    pub correo: Option<String>,
    pub telefono: Option<String>,
    pub direccion: Option<String>,
    pub estado_academico: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Periodo {
    pub codigo_periodo: String,
    pub semestre: Option<String>,
    pub fecha_inicio: Option<Date>,
    pub fecha_fin: Option<Date>,
    pub estado: Option<String>,
}

impl Periodo {
    pub fn is_active(&self) -> bool {
        self.estado.as_deref() == Some(PERIODO_ACTIVO)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Inscripcion {
    pub codigo_inscripcion: String,
    pub registro_academico: String,
    pub codigo_periodo: String,
    pub fecha_inscripcion: Date,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Detalle {
    pub codigo_detalle: String,
    pub codigo_grupo: String,
}

/// A weekly meeting slot: the days it meets and its time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Horario {
    pub dias_semana: Vec<String>,
    pub hora_inicio: Time,
    pub hora_fin: Time,
}

/// The facts about a group that the enrollment rules check, read under its row lock.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSlot {
    pub codigo_grupo: String,
    pub sigla_materia: String,
    pub cupo: i64,
    pub inscritos_actuales: i64,
    pub horario: Option<Horario>,
}

/// A group that the inscription already contains, with its detail row.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldGroup {
    pub codigo_detalle: String,
    pub slot: GroupSlot,
}
