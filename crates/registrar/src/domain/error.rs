//! The catalogue of business error codes, with their HTTP status, and the error value that
//! carries one code, a message and the `details` object clients read.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

/// Every `error_code` the service sends. The strings are part of the wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    EstudianteNotFound,
    EstudianteBloqueado,
    EstudianteInactivo,
    EstudianteSuspendido,
    PeriodoNotFound,
    PeriodoInactivo,
    PeriodoInscripcionCerrado,
    PeriodoInscripcionNoIniciado,
    GrupoNotFound,
    GrupoSinCupo,
    ConflictoHorario,
    InscripcionNotFound,
    InscripcionDuplicada,
    GrupoDuplicado,
    DetalleInscripcionNotFound,
    LimiteMateriasExcedido,
    MateriaYaAprobada,
    PrerrequisitoNoCumplido,
    MateriaNotFound,
    HistorialNotFound,
    HistorialDuplicado,
    EstadoMateriaInvalido,
    NotaInvalida,
    DuplicateRecord,
    InvalidReference,
    IntegrityError,
    ValidationError,
    TaskNotFound,
    TaskAlreadyFinished,
    ServiceUnavailable,
    InternalServerError,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    Forbidden,
    Unauthorized,
    /// A request with an `Idempotency-Key` that an earlier request with another body used.
    IdempotencyKeyReused,
    /// A request whose idempotency key belongs to a request that is still running.
    IdempotencyInFlight,
    CircuitBreakerOpen,
    /// The billing service declined the fee; the enrollment was withdrawn.
    FeeRejected,
    /// The billing service could not be reached within the retries; the enrollment was
    /// withdrawn.
    FeeAssessmentFailed,
    /// A compensation kept failing; the saga waits for an operator.
    SagaCompensationFailed,
}

impl ErrorCode {
    /// Every code, for parsing stored ones.
    pub const ALL: [Self; 44] = [
        Self::EstudianteNotFound,
        Self::EstudianteBloqueado,
        Self::EstudianteInactivo,
        Self::EstudianteSuspendido,
        Self::PeriodoNotFound,
        Self::PeriodoInactivo,
        Self::PeriodoInscripcionCerrado,
        Self::PeriodoInscripcionNoIniciado,
        Self::GrupoNotFound,
        Self::GrupoSinCupo,
        Self::ConflictoHorario,
        Self::InscripcionNotFound,
        Self::InscripcionDuplicada,
        Self::GrupoDuplicado,
        Self::DetalleInscripcionNotFound,
        Self::LimiteMateriasExcedido,
        Self::MateriaYaAprobada,
        Self::PrerrequisitoNoCumplido,
        Self::MateriaNotFound,
        Self::HistorialNotFound,
        Self::HistorialDuplicado,
        Self::EstadoMateriaInvalido,
        Self::NotaInvalida,
        Self::DuplicateRecord,
        Self::InvalidReference,
        Self::IntegrityError,
        Self::ValidationError,
        Self::TaskNotFound,
        Self::TaskAlreadyFinished,
        Self::ServiceUnavailable,
        Self::InternalServerError,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::PayloadTooLarge,
        Self::RequestTimeout,
        Self::UnsupportedMediaType,
        Self::Forbidden,
        Self::Unauthorized,
        Self::IdempotencyKeyReused,
        Self::IdempotencyInFlight,
        Self::CircuitBreakerOpen,
        Self::FeeRejected,
        Self::FeeAssessmentFailed,
        Self::SagaCompensationFailed,
    ];

    /// Finds the code with the wire name `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EstudianteNotFound => "ESTUDIANTE_NOT_FOUND",
            Self::EstudianteBloqueado => "ESTUDIANTE_BLOQUEADO",
            Self::EstudianteInactivo => "ESTUDIANTE_INACTIVO",
            Self::EstudianteSuspendido => "ESTUDIANTE_SUSPENDIDO",
            Self::PeriodoNotFound => "PERIODO_NOT_FOUND",
            Self::PeriodoInactivo => "PERIODO_INACTIVO",
            Self::PeriodoInscripcionCerrado => "PERIODO_INSCRIPCION_CERRADO",
            Self::PeriodoInscripcionNoIniciado => "PERIODO_INSCRIPCION_NO_INICIADO",
            Self::GrupoNotFound => "GRUPO_NOT_FOUND",
            Self::GrupoSinCupo => "GRUPO_SIN_CUPO",
            Self::ConflictoHorario => "CONFLICTO_HORARIO",
            Self::InscripcionNotFound => "INSCRIPCION_NOT_FOUND",
            Self::InscripcionDuplicada => "INSCRIPCION_DUPLICADA",
            Self::GrupoDuplicado => "GRUPO_DUPLICADO",
            Self::DetalleInscripcionNotFound => "DETALLE_INSCRIPCION_NOT_FOUND",
            Self::LimiteMateriasExcedido => "LIMITE_MATERIAS_EXCEDIDO",
            Self::MateriaYaAprobada => "MATERIA_YA_APROBADA",
            Self::PrerrequisitoNoCumplido => "PRERREQUISITO_NO_CUMPLIDO",
            Self::MateriaNotFound => "MATERIA_NOT_FOUND",
            Self::HistorialNotFound => "HISTORIAL_NOT_FOUND",
            Self::HistorialDuplicado => "HISTORIAL_DUPLICADO",
            Self::EstadoMateriaInvalido => "ESTADO_MATERIA_INVALIDO",
            Self::NotaInvalida => "NOTA_INVALIDA",
            Self::DuplicateRecord => "DUPLICATE_RECORD",
            Self::InvalidReference => "INVALID_REFERENCE",
            Self::IntegrityError => "INTEGRITY_ERROR",
            Self::ValidationError => "VALIDATION_ERROR",
            Self::TaskNotFound => "TASK_NOT_FOUND",
            Self::TaskAlreadyFinished => "TASK_ALREADY_FINISHED",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
            Self::NotFound => "HTTP_404",
            Self::MethodNotAllowed => "HTTP_405",
            Self::PayloadTooLarge => "HTTP_413",
            Self::RequestTimeout => "HTTP_408",
            Self::UnsupportedMediaType => "HTTP_415",
            Self::Forbidden => "AUTHORIZATION_ERROR",
            Self::Unauthorized => "AUTHENTICATION_ERROR",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::IdempotencyInFlight => "IDEMPOTENCY_IN_FLIGHT",
            Self::CircuitBreakerOpen => "CIRCUIT_BREAKER_OPEN",
            Self::FeeRejected => "FEE_REJECTED",
            Self::FeeAssessmentFailed => "FEE_ASSESSMENT_FAILED",
            Self::SagaCompensationFailed => "SAGA_COMPENSATION_FAILED",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::EstudianteNotFound
            | Self::PeriodoNotFound
            | Self::GrupoNotFound
            | Self::InscripcionNotFound
            | Self::DetalleInscripcionNotFound
            | Self::TaskNotFound
            | Self::MateriaNotFound
            | Self::HistorialNotFound
            | Self::NotFound => StatusCode::NOT_FOUND,
            Self::EstudianteBloqueado
            | Self::EstudianteInactivo
            | Self::EstudianteSuspendido
            | Self::Forbidden => StatusCode::FORBIDDEN,
            Self::PeriodoInactivo
            | Self::PeriodoInscripcionCerrado
            | Self::PeriodoInscripcionNoIniciado
            | Self::LimiteMateriasExcedido
            | Self::EstadoMateriaInvalido
            | Self::NotaInvalida
            | Self::InvalidReference
            | Self::IntegrityError
            | Self::ValidationError
            | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::GrupoSinCupo
            | Self::ConflictoHorario
            | Self::InscripcionDuplicada
            | Self::GrupoDuplicado
            | Self::MateriaYaAprobada
            | Self::PrerrequisitoNoCumplido
            | Self::HistorialDuplicado
            | Self::DuplicateRecord
            | Self::TaskAlreadyFinished
            | Self::IdempotencyInFlight => StatusCode::CONFLICT,
            Self::FeeRejected => StatusCode::PAYMENT_REQUIRED,
            Self::ServiceUnavailable | Self::CircuitBreakerOpen | Self::FeeAssessmentFailed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::SagaCompensationFailed => StatusCode::BAD_GATEWAY,
            Self::InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }
}

/// A rule that rejected a request: the code, a sentence for people, and the `details` object
/// with the keys the error catalogue fixes for that code.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
    /// The group that caused the rejection, when one did; job results report it as `grupo`.
    pub grupo: Option<String>,
}

impl DomainError {
    pub fn new(code: ErrorCode, message: impl Into<String>, details: Value) -> Self {
        Self {
            code,
            message: message.into(),
            details,
            grupo: None,
        }
    }

    pub fn with_grupo(mut self, grupo: &str) -> Self {
        self.grupo = Some(grupo.to_owned());
        self
    }

    pub fn estudiante_not_found(registro_academico: &str) -> Self {
        Self::new(
            ErrorCode::EstudianteNotFound,
            format!("Estudiante {registro_academico} no encontrado"),
            json!({ "registro_academico": registro_academico }),
        )
    }

    pub fn periodo_not_found(codigo_periodo: &str) -> Self {
        Self::new(
            ErrorCode::PeriodoNotFound,
            format!("Periodo académico {codigo_periodo} no encontrado"),
            json!({ "codigo_periodo": codigo_periodo }),
        )
    }

    pub fn periodo_inactivo(codigo_periodo: &str, estado_actual: Option<&str>) -> Self {
        Self::new(
            ErrorCode::PeriodoInactivo,
            format!("El periodo académico {codigo_periodo} no está activo"),
            json!({ "codigo_periodo": codigo_periodo, "estado_actual": estado_actual }),
        )
    }

    pub fn grupo_not_found(codigo_grupo: &str) -> Self {
        Self::new(
            ErrorCode::GrupoNotFound,
            format!("Grupo {codigo_grupo} no encontrado"),
            json!({ "codigo_grupo": codigo_grupo }),
        )
        .with_grupo(codigo_grupo)
    }

    pub fn grupo_sin_cupo(codigo_grupo: &str, cupo: i64, inscritos: i64) -> Self {
        Self::new(
            ErrorCode::GrupoSinCupo,
            format!("El grupo {codigo_grupo} no tiene cupo disponible"),
            json!({
                "codigo_grupo": codigo_grupo,
                "cupo_total": cupo,
                "inscritos_actuales": inscritos,
                "cupo_disponible": (cupo - inscritos).max(0),
            }),
        )
        .with_grupo(codigo_grupo)
    }

    pub fn inscripcion_not_found(codigo_inscripcion: &str) -> Self {
        Self::new(
            ErrorCode::InscripcionNotFound,
            format!("Inscripción {codigo_inscripcion} no encontrada"),
            json!({ "codigo_inscripcion": codigo_inscripcion }),
        )
    }

    pub fn grupo_duplicado(
        registro_academico: &str,
        codigo_grupo: &str,
        codigo_periodo: &str,
        message: String,
    ) -> Self {
        Self::new(
            ErrorCode::GrupoDuplicado,
            message,
            json!({
                "registro_academico": registro_academico,
                "codigo_grupo": codigo_grupo,
                "codigo_periodo": codigo_periodo,
            }),
        )
        .with_grupo(codigo_grupo)
    }

    pub fn detalle_not_found(codigo_inscripcion: &str, codigo_grupo: &str) -> Self {
        Self::new(
            ErrorCode::DetalleInscripcionNotFound,
            format!(
                "El grupo {codigo_grupo} no forma parte de la inscripción {codigo_inscripcion}"
            ),
            json!({ "codigo_inscripcion": codigo_inscripcion, "codigo_grupo": codigo_grupo }),
        )
    }

    /// A request that failed validation on one field; `details` takes the request-validation
    /// shape so that clients read field errors from one place.
    pub fn validation(field: &str, message: impl Into<String>, input: Value) -> Self {
        let message = message.into();
        Self::new(
            ErrorCode::ValidationError,
            format!("{field}: {message}"),
            validation_details(&[FieldError {
                field: field.to_owned(),
                message,
                kind: "value_error",
                input,
            }]),
        )
    }
}

/// One failed field of a request body, path or query.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Location parts joined with ` -> `, e.g. `body -> grupos -> 1`.
    pub field: String,
    pub message: String,
    pub kind: &'static str,
    pub input: Value,
}

/// Builds `{"validation_errors":[…],"total_errors":n}`.
pub fn validation_details(errors: &[FieldError]) -> Value {
    let items: Vec<Value> = errors
        .iter()
        .map(|e| {
            let mut item = Map::new();
            item.insert("field".into(), Value::String(e.field.clone()));
            item.insert("message".into(), Value::String(e.message.clone()));
            item.insert("type".into(), Value::String(e.kind.to_owned()));
            item.insert("input".into(), truncated_input(&e.input));
            Value::Object(item)
        })
        .collect();
    json!({ "validation_errors": items, "total_errors": errors.len() })
}

/// Longest string echoed back as a rejected `input`, in characters. Longer values are cut, so
/// an error response stays small whatever the request contained.
const MAX_ECHOED_INPUT: usize = 200;

fn truncated_input(input: &Value) -> Value {
    match input {
        Value::String(s) if s.chars().count() > MAX_ECHOED_INPUT => {
            let cut: String = s.chars().take(MAX_ECHOED_INPUT).collect();
            Value::String(format!("{cut}…"))
        }
        Value::Array(items) if items.len() > MAX_ECHOED_INPUT => {
            Value::String(format!("an array of {} items", items.len()))
        }
        other => other.clone(),
    }
}
