//! Shapes of the API's request and response bodies, for the OpenAPI document only. Handlers
//! build their JSON directly; these types describe it, and `tests/openapi.rs` checks that the
//! document covers every route.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The error envelope of every 4xx and 5xx response.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// Always `true`.
    pub error: bool,
    /// A stable code such as `VALIDATION_ERROR`, `GRUPO_SIN_CUPO` or `SERVICE_UNAVAILABLE`.
    pub error_code: String,
    pub message: String,
    /// Facts about the error. A validation error lists `validation_errors` (each with
    /// `field`, `message`, `type` and `input`) and `total_errors`.
    pub details: Value,
    /// RFC 3339 in UTC.
    pub timestamp: String,
    pub path: String,
    pub request_id: String,
}

/// `GET /`.
#[derive(Serialize, ToSchema)]
pub struct RootInfo {
    pub message: String,
    pub version: String,
    pub status: String,
    pub mode: String,
    pub features: Vec<String>,
}

/// `GET /health`: the overall status and each component's.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `healthy`, `degraded` (Redis unreachable, workers paused, queue backlogged) or, in a
    /// 503 envelope's details, `unhealthy`.
    pub status: String,
    pub database: String,
    pub version: String,
    pub mode: String,
    pub timestamp: String,
    /// Component name to status word: `database`, `redis`, `workers`, `queue`, `backend`,
    /// `logging`, `middlewares`.
    pub components: HashMap<String, String>,
    /// Component name to details: `status`, `required`, and figures such as `latency_ms`,
    /// `connections`, `waiting` and `oldest_job_age_seconds`.
    pub checks: HashMap<String, Value>,
}

/// `GET /health/live` and `GET /health/ready`.
#[derive(Serialize, ToSchema)]
pub struct Probe {
    /// `alive` or `ready`.
    pub status: String,
    pub timestamp: String,
}

/// Database pool use.
#[derive(Serialize, ToSchema)]
pub struct PoolConnections {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// `GET /metrics`. Job figures are `null`, with `degraded: true`, when the store cannot be
/// read.
#[derive(Serialize, ToSchema)]
pub struct MetricsJson {
    pub uptime: f64,
    pub uptime_seconds: f64,
    pub requests_total: u64,
    /// Responses with a 5xx status.
    pub errors_total: u64,
    pub requests_by_status: HashMap<String, u64>,
    /// Job counts keyed `pending`, `started`, `progress`, `retry`, `success`, `failure`,
    /// `revoked`.
    pub jobs_by_state: Option<HashMap<String, i64>>,
    /// `depth` and `oldest_job_age_seconds`.
    pub queue: Option<Value>,
    pub database_connections: PoolConnections,
    pub mode: String,
    pub degraded: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Estudiante {
    pub registro_academico: String,
    pub codigo_carrera: Option<String>,
    pub nombre: String,
    pub apellido: String,
    pub estado_academico: Option<String>,
    pub ci: Option<String>,
    pub correo: Option<String>,
    pub telefono: Option<String>,
    pub direccion: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Periodo {
    pub codigo_periodo: String,
    pub semestre: Option<String>,
    /// `YYYY-MM-DD`.
    pub fecha_inicio: Option<String>,
    pub fecha_fin: Option<String>,
    /// `ACTIVO`, `PLANIFICADO` or `CERRADO`.
    pub estado: Option<String>,
}

/// The body of `POST /api/v1/periodos` (with `codigo_periodo`) and of `PUT` (without it).
/// Absent fields keep their value on update.
#[derive(Serialize, ToSchema)]
pub struct PeriodoBody {
    pub codigo_periodo: Option<String>,
    pub semestre: Option<String>,
    pub fecha_inicio: Option<String>,
    pub fecha_fin: Option<String>,
    pub estado: Option<String>,
}

/// One group of an inscription.
#[derive(Serialize, ToSchema)]
pub struct Detalle {
    pub codigo_detalle: String,
    pub codigo_inscripcion: String,
    pub codigo_grupo: String,
}

/// An inscription with its student, period and groups.
#[derive(Serialize, ToSchema)]
pub struct Inscripcion {
    pub codigo_inscripcion: String,
    pub registro_academico: String,
    pub codigo_periodo: String,
    /// `YYYY-MM-DD`.
    pub fecha_inscripcion: String,
    pub estudiante: Option<Estudiante>,
    pub periodo_academico: Option<Periodo>,
    pub detalles: Vec<Detalle>,
}

/// An inscription in a list. Lists by student include `detalles`.
#[derive(Serialize, ToSchema)]
pub struct InscripcionSummary {
    pub codigo_inscripcion: String,
    pub registro_academico: String,
    pub codigo_periodo: String,
    pub fecha_inscripcion: String,
    pub detalles: Option<Vec<Detalle>>,
}

#[derive(Serialize, ToSchema)]
pub struct InscripcionList {
    pub inscripciones: Vec<InscripcionSummary>,
}

/// The body of `PUT /api/v1/inscripciones/{codigo_inscripcion}`.
#[derive(Serialize, ToSchema)]
pub struct InscripcionUpdateBody {
    /// `YYYY-MM-DD`, within the period's dates.
    pub fecha_inscripcion: Option<String>,
}

/// `POST /api/v1/inscripciones`: the queued enrollment.
#[derive(Serialize, ToSchema)]
pub struct AsyncCreated {
    pub message: String,
    pub task_id: String,
    /// `PENDING`.
    pub status: String,
    pub registro_academico: String,
    pub monitor_url: String,
    pub correlation_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct GroupAdded {
    pub message: String,
    /// The new detail's `codigo_detalle`.
    pub detalle: String,
}

#[derive(Serialize, ToSchema)]
pub struct GroupDropped {
    pub status: String,
    pub message: String,
    pub codigo_inscripcion: String,
    pub codigo_grupo: String,
}

#[derive(Serialize, ToSchema)]
pub struct EnrollmentStatistics {
    pub total_inscripciones: i64,
    pub inscripciones_por_periodo: HashMap<String, i64>,
    pub estudiantes_activos: i64,
    pub grupos_disponibles: i64,
}

/// A row of the academic record.
#[derive(Serialize, ToSchema)]
pub struct HistorialRecord {
    pub id_historial: i64,
    pub registro_academico: String,
    pub sigla_materia: String,
    pub codigo_periodo: String,
    /// Two decimals.
    pub nota_final: Option<f64>,
    /// `APROBADA`, `REPROBADA` or `RETIRADA`.
    pub estado: String,
    pub observacion: Option<String>,
    pub fecha_registro: Option<String>,
    pub estudiante_nombre: String,
    pub materia_nombre: String,
    pub periodo_nombre: String,
}

/// A row with its student, materia and period expanded.
#[derive(Serialize, ToSchema)]
pub struct HistorialDetail {
    #[serde(flatten)]
    pub record: HistorialRecord,
    pub estudiante: Estudiante,
    /// `sigla`, `nombre`, `creditos`.
    pub materia: Value,
    pub periodo: Periodo,
}

/// The body of `POST /api/v1/historial` and, with every field optional, of `PUT`.
#[derive(Serialize, ToSchema)]
pub struct HistorialBody {
    pub registro_academico: String,
    pub sigla_materia: String,
    pub codigo_periodo: String,
    pub nota_final: Option<f64>,
    pub estado: String,
    pub observacion: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HistorialPorPeriodo {
    pub codigo_periodo: String,
    pub periodo_nombre: String,
    pub materias: Vec<HistorialRecord>,
    pub promedio_periodo: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct HistorialResumen {
    pub registro_academico: String,
    pub total_materias: i64,
    pub materias_aprobadas: i64,
    pub materias_reprobadas: i64,
    pub materias_retiradas: i64,
    pub promedio_general: Option<f64>,
    pub creditos_aprobados: i64,
}

/// Counts and averages of a report.
#[derive(Serialize, ToSchema)]
pub struct Tally {
    pub total_registros: i64,
    pub total_estudiantes: i64,
    pub aprobadas: i64,
    pub reprobadas: i64,
    pub retiradas: i64,
    pub tasa_aprobacion: Option<f64>,
    pub promedio_nota: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct ReporteMateria {
    pub sigla_materia: String,
    pub materia_nombre: String,
    pub creditos: i64,
    pub codigo_periodo: Option<String>,
    #[serde(flatten)]
    pub tally: Tally,
    /// Each with `id_historial`, `registro_academico`, `estudiante_nombre`, `codigo_periodo`,
    /// `periodo_nombre`, `estado`, `nota_final`, `observacion`, `fecha_registro`.
    pub estudiantes: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct ReportePeriodo {
    pub codigo_periodo: String,
    pub periodo_nombre: String,
    pub estado_periodo: Option<String>,
    #[serde(flatten)]
    pub tally: Tally,
    /// Each with `sigla_materia`, `materia_nombre` and the tally fields.
    pub materias: Vec<Value>,
}

/// A queued job, as the predecessor's `TaskResponse`.
#[derive(Serialize, ToSchema)]
pub struct TaskResponse {
    pub task_id: String,
    /// `QUEUED`.
    pub status: String,
    pub message: String,
    pub progress: Option<i64>,
    pub data: Option<Value>,
    pub correlation_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct GroupTask {
    pub grupo: String,
    pub task_id: String,
}

/// `POST /api/v1/queue/inscripciones/async-by-groups`: one atomic job with a view id per
/// group.
#[derive(Serialize, ToSchema)]
pub struct MultipleTasksResponse {
    pub main_task_id: String,
    pub group_tasks: Vec<GroupTask>,
    pub status: String,
    pub message: String,
    pub correlation_id: String,
    pub total_groups: usize,
    pub idempotent_replay: bool,
}

/// A task's state. Unknown ids in a batch have `status: NOT_FOUND`, and unreadable ones
/// `status: ERROR`.
#[derive(Serialize, ToSchema)]
pub struct TaskStatus {
    pub task_id: String,
    /// `PENDING`, `STARTED`, `PROGRESS`, `RETRY`, `SUCCESS`, `FAILURE`, `REVOKED`.
    pub status: String,
    pub current: Option<i64>,
    pub total: Option<i64>,
    pub meta: Option<Value>,
    /// For an enrollment: `status` (`SUCCESS` or `ERROR`), and on error `error_code`,
    /// `details` and `grupo`.
    pub result: Option<Value>,
    pub correlation_id: Option<String>,
    pub main_task_id: Option<String>,
    pub grupo: Option<String>,
    pub attempts: Option<i64>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
}

/// `GET /api/v1/queue/stats`. Counts are `null`, with `degraded: true` and `error`, when the
/// store cannot be read.
#[derive(Serialize, ToSchema)]
pub struct QueueStats {
    pub active_tasks: Option<i64>,
    pub pending_tasks: Option<i64>,
    pub completed_tasks: Option<i64>,
    pub failed_tasks: Option<i64>,
    pub revoked_tasks: Option<i64>,
    pub workers_online: usize,
    pub degraded: bool,
    pub source: String,
    pub error: Option<String>,
}

/// `GET /api/v1/queue/stats/enhanced`: the `stats` fields plus these.
#[derive(Serialize, ToSchema)]
pub struct EnhancedStats {
    #[serde(flatten)]
    pub stats: QueueStats,
    /// `depth`, `oldest_job_age_seconds`, `degraded`.
    pub queue: Value,
    pub workers: Vec<WorkerInfo>,
    /// `backend` and `connections`.
    pub database: Value,
}

/// This process's worker pool.
#[derive(Serialize, ToSchema)]
pub struct WorkerInfo {
    pub name: String,
    /// `online`, `paused` or `stopped`.
    pub status: String,
    pub active_tasks: usize,
    /// Job attempts finished since start.
    pub processed_tasks: u64,
    /// Always `null`: CPU time is not measured.
    pub load_avg: Option<f64>,
    /// `max_concurrency`, `implementation`.
    pub pool: Value,
}

#[derive(Serialize, ToSchema)]
pub struct WorkersList {
    pub workers: Vec<WorkerInfo>,
}

/// The body of `POST /api/v1/queue/workers/control`.
#[derive(Serialize, ToSchema)]
pub struct WorkerControlBody {
    /// `pause`, `resume`, `stop` (the same as pause), `ping` or `restart`; any case.
    pub action: String,
    /// This process's worker name, as `GET /workers` lists it; absent means this process.
    pub worker_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WorkerControlResult {
    pub action: String,
    pub message: String,
    pub workers: Vec<WorkerInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct QueueInfo {
    pub name: String,
    pub job_kind: String,
    pub workers: Vec<String>,
    pub routing_key: String,
    pub exchange: String,
    pub waiting: Option<i64>,
    pub oldest_job_age_seconds: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct QueuesList {
    pub queues: Vec<QueueInfo>,
    pub degraded: bool,
}

/// One stored audit event.
#[derive(Serialize, ToSchema)]
pub struct AuditEventDoc {
    pub id: i64,
    /// RFC 3339 in UTC.
    pub occurred_at: String,
    /// `INSCRIPTION_REQUESTED`, `INSCRIPTION_CREATED`, `INSCRIPTION_FAILED`, `GROUP_ADDED`,
    /// `GROUP_REMOVED`, `INSCRIPTION_DELETED`, `SAGA_*`, `CIRCUIT_BREAKER_*`,
    /// `IDEMPOTENCY_INVALIDATED`, `ADMIN_ACTION`.
    pub event_type: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub action: String,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
    pub registro_academico: Option<String>,
    pub codigo_periodo: Option<String>,
    /// The group the event is about, or that caused a rejection.
    pub codigo_grupo: Option<String>,
    pub error_code: Option<String>,
    pub data: Value,
}

/// A page of audit events, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEventDoc>,
    pub count: usize,
    pub limit: i64,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}
