//! The audit event value and its builder.

use serde_json::Value;

/// The kinds of audited event. The names are the wire values stored in `event_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditEventType {
    InscriptionRequested,
    InscriptionCreated,
    /// A rejected enrollment request, with its error code.
    InscriptionFailed,
    GroupAdded,
    GroupRemoved,
    InscriptionDeleted,
    SagaStarted,
    SagaCompleted,
    SagaCompensated,
    /// A saga whose compensation kept failing; it waits for an operator.
    SagaFailed,
    CircuitBreakerStateChanged,
    CircuitBreakerReset,
    IdempotencyInvalidated,
    /// An operator action: task cancellation, period activation or closing, worker control.
    AdminAction,
}

impl AuditEventType {
    pub const ALL: [Self; 14] = [
        Self::InscriptionRequested,
        Self::InscriptionCreated,
        Self::InscriptionFailed,
        Self::GroupAdded,
        Self::GroupRemoved,
        Self::InscriptionDeleted,
        Self::SagaStarted,
        Self::SagaCompleted,
        Self::SagaCompensated,
        Self::SagaFailed,
        Self::CircuitBreakerStateChanged,
        Self::CircuitBreakerReset,
        Self::IdempotencyInvalidated,
        Self::AdminAction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InscriptionRequested => "INSCRIPTION_REQUESTED",
            Self::InscriptionCreated => "INSCRIPTION_CREATED",
            Self::InscriptionFailed => "INSCRIPTION_FAILED",
            Self::GroupAdded => "GROUP_ADDED",
            Self::GroupRemoved => "GROUP_REMOVED",
            Self::InscriptionDeleted => "INSCRIPTION_DELETED",
            Self::SagaStarted => "SAGA_STARTED",
            Self::SagaCompleted => "SAGA_COMPLETED",
            Self::SagaCompensated => "SAGA_COMPENSATED",
            Self::SagaFailed => "SAGA_FAILED",
            Self::CircuitBreakerStateChanged => "CIRCUIT_BREAKER_STATE_CHANGED",
            Self::CircuitBreakerReset => "CIRCUIT_BREAKER_RESET",
            Self::IdempotencyInvalidated => "IDEMPOTENCY_INVALIDATED",
            Self::AdminAction => "ADMIN_ACTION",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One audited event. Build it with [`AuditEvent::new`] and the setters, then pass it to
/// [`crate::audit::record`].
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub event_type: AuditEventType,
    /// The kind of thing the event is about: `inscripcion`, `job`, `periodo`, `workers`,
    /// `saga`, `circuit_breaker`, `idempotency_key`.
    pub entity_type: String,
    pub entity_id: Option<String>,
    /// The operation on the entity, in snake case: `create_sync`, `enqueue`, `cancel_task`.
    pub action: String,
    /// Epoch milliseconds in UTC.
    pub occurred_at_ms: i64,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
    pub registro_academico: Option<String>,
    pub codigo_periodo: Option<String>,
    /// The group the event is about: the added or dropped group, or the group that caused a
    /// rejection. Every requested group goes in `data`.
    pub codigo_grupo: Option<String>,
    pub error_code: Option<String>,
    /// Further facts as a JSON object. Never put secrets here: it is logged and stored.
    pub data: Value,
}

impl AuditEvent {
    /// Starts an event that happens now, with an empty `data` object.
    pub fn new(
        event_type: AuditEventType,
        entity_type: impl Into<String>,
        action: impl Into<String>,
    ) -> Self {
        Self {
            event_type,
            entity_type: entity_type.into(),
            entity_id: None,
            action: action.into(),
            occurred_at_ms: crate::clock::now_ms(),
            correlation_id: None,
            request_id: None,
            registro_academico: None,
            codigo_periodo: None,
            codigo_grupo: None,
            error_code: None,
            data: Value::Object(Default::default()),
        }
    }

    pub fn entity_id(mut self, id: impl Into<String>) -> Self {
        self.entity_id = Some(id.into());
        self
    }

    /// Sets both ids explicitly, for events raised outside the request or job they belong
    /// to. Inside one, [`crate::audit::record`] fills them in.
    pub fn ids(mut self, correlation_id: impl Into<String>, request_id: Option<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self.request_id = request_id;
        self
    }

    pub fn student(mut self, registro_academico: impl Into<String>) -> Self {
        self.registro_academico = Some(registro_academico.into());
        self
    }

    pub fn periodo(mut self, codigo_periodo: impl Into<String>) -> Self {
        self.codigo_periodo = Some(codigo_periodo.into());
        self
    }

    pub fn grupo(mut self, codigo_grupo: impl Into<String>) -> Self {
        self.codigo_grupo = Some(codigo_grupo.into());
        self
    }

    pub fn error_code(mut self, code: impl Into<String>) -> Self {
        self.error_code = Some(code.into());
        self
    }

    /// Replaces `data`; pass a JSON object.
    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }
}
