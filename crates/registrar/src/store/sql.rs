//! SQL statements whose text both SQLite and PostgreSQL accept: `$n` placeholders, `ON
//! CONFLICT DO NOTHING` and `RETURNING` mean the same in both. Each backend module keeps only
//! the statements of its own dialect: locking clauses, array parameters and functions that
//! differ by name.
//!
//! The column lists and the statements that a backend extends (with `FOR UPDATE`, for
//! example) are macros, so that `concat!` can build the longer statement at compile time.
//!
//! TODO: the SQLite store still spells out its own copies of these statements, with the same
//! text. Switch it to this module, so that a change here reaches both backends.

// Column lists and statements that a backend extends.

/// The columns of a group with its horario, as `slot_from_row` decodes them. The query must
/// alias `grupo` as `g` and join `horario` as `h`.
macro_rules! slot_columns {
    () => {
        "g.codigo_grupo, g.sigla_materia, g.cupo, g.inscritos_actuales, \
         h.dias_semana, h.hora_inicio, h.hora_fin"
    };
}
pub(crate) use slot_columns;

/// The columns of `job` that `job_from_row` decodes.
macro_rules! job_columns {
    () => {
        "task_id, kind, state, payload, meta, result, correlation_id, \
         request_id, attempts, created_at, started_at, completed_at"
    };
}
pub(crate) use job_columns;

macro_rules! select_inscripcion {
    () => {
        "SELECT codigo_inscripcion, registro_academico, codigo_periodo, fecha_inscripcion \
         FROM inscripcion WHERE codigo_inscripcion = $1"
    };
}
pub(crate) use select_inscripcion;

/// The inscription of student `$1` in period `$2`.
macro_rules! select_inscripcion_of_student {
    () => {
        "SELECT codigo_inscripcion, registro_academico, codigo_periodo, fecha_inscripcion \
         FROM inscripcion WHERE registro_academico = $1 AND codigo_periodo = $2"
    };
}
pub(crate) use select_inscripcion_of_student;

macro_rules! insert_inscripcion {
    () => {
        "INSERT INTO inscripcion (codigo_inscripcion, registro_academico, codigo_periodo, \
         fecha_inscripcion) VALUES ($1, $2, $3, $4)"
    };
}
pub(crate) use insert_inscripcion;

/// `SELECT 1` when worker `$2` holds the lease of job `$1`.
macro_rules! select_lease {
    () => {
        "SELECT 1 FROM job WHERE task_id = $1 AND lease_owner = $2 \
         AND state IN ('STARTED', 'PROGRESS')"
    };
}
pub(crate) use select_lease;

macro_rules! select_job_state {
    () => {
        "SELECT state FROM job WHERE task_id = $1"
    };
}
pub(crate) use select_job_state;

// Enrollment.

pub const SELECT_ESTUDIANTE: &str = "SELECT registro_academico, codigo_carrera, nombre, apellido, ci, correo, telefono, \
     direccion, estado_academico FROM estudiante WHERE registro_academico = $1";
pub const SELECT_PERIODO: &str = "SELECT codigo_periodo, semestre, fecha_inicio, fecha_fin, estado \
     FROM periodo_academico WHERE codigo_periodo = $1";
pub const SELECT_INSCRIPCION: &str = select_inscripcion!();

/// The description of the student's first `bloqueo` row.
pub const SELECT_BLOQUEO: &str = "SELECT descripcion FROM bloqueo WHERE registro_academico = $1 \
     ORDER BY codigo_bloqueo LIMIT 1";

/// The groups that inscription `$1` holds, with their detail codes.
pub const SELECT_HELD_GROUPS: &str = concat!(
    "SELECT d.codigo_detalle, ",
    slot_columns!(),
    " FROM detalle_inscripcion d \
     JOIN grupo g ON g.codigo_grupo = d.codigo_grupo \
     LEFT JOIN horario h ON h.codigo_horario = g.codigo_horario \
     WHERE d.codigo_inscripcion = $1 ORDER BY g.codigo_grupo"
);

pub const INSERT_DETALLE: &str = "INSERT INTO detalle_inscripcion (codigo_detalle, codigo_inscripcion, codigo_grupo) \
     VALUES ($1, $2, $3)";

/// Takes one seat of group `$1` unless the group is full.
pub const TAKE_SEAT: &str = "UPDATE grupo SET inscritos_actuales = inscritos_actuales + 1 \
     WHERE codigo_grupo = $1 AND inscritos_actuales < cupo";

pub const DELETE_DETALLE: &str =
    "DELETE FROM detalle_inscripcion WHERE codigo_inscripcion = $1 AND codigo_grupo = $2";

/// Frees one seat of group `$1`.
pub const RELEASE_SEAT: &str =
    "UPDATE grupo SET inscritos_actuales = inscritos_actuales - 1 WHERE codigo_grupo = $1";

/// Frees the seat of every group that inscription `$1` holds.
pub const RELEASE_INSCRIPCION_SEATS: &str = "UPDATE grupo SET inscritos_actuales = inscritos_actuales - 1 WHERE codigo_grupo IN \
     (SELECT codigo_grupo FROM detalle_inscripcion WHERE codigo_inscripcion = $1)";

pub const DELETE_INSCRIPCION_DETALLES: &str =
    "DELETE FROM detalle_inscripcion WHERE codigo_inscripcion = $1";

pub const DELETE_INSCRIPCION: &str = "DELETE FROM inscripcion WHERE codigo_inscripcion = $1";

pub const UPDATE_FECHA_INSCRIPCION: &str =
    "UPDATE inscripcion SET fecha_inscripcion = $1 WHERE codigo_inscripcion = $2";

// Periods.

pub const INSERT_PERIODO: &str = "INSERT INTO periodo_academico (codigo_periodo, semestre, fecha_inicio, fecha_fin, \
     estado) VALUES ($1, $2, $3, $4, $5)";

pub const UPDATE_PERIODO: &str = "UPDATE periodo_academico SET semestre = $1, fecha_inicio = $2, fecha_fin = $3, \
     estado = $4 WHERE codigo_periodo = $5";

/// The ACTIVO period other than `$1`, if any.
pub const SELECT_OTHER_ACTIVE_PERIODO: &str =
    "SELECT codigo_periodo FROM periodo_academico WHERE estado = 'ACTIVO' AND codigo_periodo <> $1";

/// Closes the ACTIVO period other than `$1`.
pub const CLOSE_OTHER_ACTIVE_PERIODO: &str = "UPDATE periodo_academico SET estado = 'CERRADO' \
     WHERE estado = 'ACTIVO' AND codigo_periodo <> $1";

pub const ACTIVATE_PERIODO: &str =
    "UPDATE periodo_academico SET estado = 'ACTIVO' WHERE codigo_periodo = $1";

pub const SELECT_ALL_PERIODOS: &str = "SELECT codigo_periodo, semestre, fecha_inicio, fecha_fin, estado \
     FROM periodo_academico ORDER BY codigo_periodo";

pub const SELECT_ACTIVE_PERIODO: &str = "SELECT codigo_periodo, semestre, fecha_inicio, fecha_fin, estado \
     FROM periodo_academico WHERE estado = 'ACTIVO'";

// Query endpoints.

/// Every detail of student `$1`'s inscriptions with its group, materia, docente, aula and
/// horario, in detail order.
pub const SELECT_STUDENT_GROUPS: &str = "SELECT d.codigo_detalle, d.codigo_inscripcion, g.codigo_grupo, \
     g.sigla_materia, g.descripcion, g.cupo, g.inscritos_actuales, \
     m.sigla, m.nombre AS materia_nombre, m.creditos, m.es_electiva, \
     dc.codigo_docente, dc.nombre AS docente_nombre, dc.apellido AS docente_apellido, \
     a.codigo_aula, a.modulo, a.aula, a.ubicacion, \
     h.codigo_horario, h.dias_semana, h.hora_inicio, h.hora_fin \
     FROM detalle_inscripcion d \
     JOIN inscripcion i ON i.codigo_inscripcion = d.codigo_inscripcion \
     JOIN grupo g ON g.codigo_grupo = d.codigo_grupo \
     LEFT JOIN materia m ON m.sigla = g.sigla_materia \
     LEFT JOIN docente dc ON dc.codigo_docente = g.codigo_docente \
     LEFT JOIN aula a ON a.codigo_aula = g.codigo_aula \
     LEFT JOIN horario h ON h.codigo_horario = g.codigo_horario \
     WHERE i.registro_academico = $1 ORDER BY d.codigo_detalle";

pub const SELECT_DETALLES: &str = "SELECT codigo_detalle, codigo_inscripcion, codigo_grupo FROM detalle_inscripcion \
     WHERE codigo_inscripcion = $1 ORDER BY codigo_detalle";

pub const SELECT_STUDENT_INSCRIPCIONES: &str = "SELECT codigo_inscripcion, registro_academico, codigo_periodo, fecha_inscripcion \
     FROM inscripcion WHERE registro_academico = $1 \
     ORDER BY fecha_inscripcion DESC, codigo_inscripcion DESC";

pub const SELECT_PERIOD_INSCRIPCIONES: &str = "SELECT codigo_inscripcion, registro_academico, codigo_periodo, fecha_inscripcion \
     FROM inscripcion WHERE codigo_periodo = $1 \
     ORDER BY fecha_inscripcion DESC, codigo_inscripcion DESC";

pub const COUNT_INSCRIPCIONES: &str = "SELECT COUNT(*) FROM inscripcion";

/// `(codigo_periodo, inscription count)` for every period, periods without inscriptions
/// included.
pub const COUNT_INSCRIPCIONES_PER_PERIODO: &str = "SELECT p.codigo_periodo, COUNT(i.codigo_inscripcion) FROM periodo_academico p \
     LEFT JOIN inscripcion i ON i.codigo_periodo = p.codigo_periodo \
     GROUP BY p.codigo_periodo ORDER BY p.codigo_periodo";

pub const COUNT_REGULAR_ESTUDIANTES: &str =
    "SELECT COUNT(*) FROM estudiante WHERE estado_academico = 'REGULAR'";

pub const COUNT_OPEN_GRUPOS: &str = "SELECT COUNT(*) FROM grupo WHERE inscritos_actuales < cupo";

// Academic record.

/// A historial row with its student's name, its materia's name and credits and its period's
/// `semestre`, as `historial_from_row` decodes it. `nota_final` is read as a float: SQLite
/// may store a whole grade as an integer, and PostgreSQL's `numeric` needs a decimal type.
macro_rules! select_historial_record {
    () => {
        "SELECT h.id_historial, h.registro_academico, h.sigla_materia, h.codigo_periodo, \
         CAST(h.nota_final AS DOUBLE PRECISION) AS nota_final, h.estado, h.observacion, \
         h.fecha_registro, e.nombre AS estudiante_nombre, e.apellido AS estudiante_apellido, \
         m.nombre AS materia_nombre, m.creditos, p.semestre AS periodo_semestre \
         FROM historial_academico h \
         JOIN estudiante e ON e.registro_academico = h.registro_academico \
         JOIN materia m ON m.sigla = h.sigla_materia \
         JOIN periodo_academico p ON p.codigo_periodo = h.codigo_periodo"
    };
}
pub(crate) use select_historial_record;

pub const SELECT_HISTORIAL: &str =
    concat!(select_historial_record!(), " WHERE h.id_historial = $1");

/// Student `$1`'s rows, of period `$2` and state `$3` when they are not null, newest first;
/// rows without `fecha_registro` come last.
pub const SELECT_STUDENT_HISTORIAL: &str = concat!(
    select_historial_record!(),
    " WHERE h.registro_academico = $1 AND ($2 IS NULL OR h.codigo_periodo = $2) \
     AND ($3 IS NULL OR h.estado = $3) \
     ORDER BY h.fecha_registro IS NULL, h.fecha_registro DESC, h.id_historial DESC"
);

/// Materia `$1`'s rows, of period `$2` when it is not null.
pub const SELECT_MATERIA_HISTORIAL: &str = concat!(
    select_historial_record!(),
    " WHERE h.sigla_materia = $1 AND ($2 IS NULL OR h.codigo_periodo = $2) \
     ORDER BY h.codigo_periodo, h.registro_academico"
);

pub const SELECT_PERIODO_HISTORIAL: &str = concat!(
    select_historial_record!(),
    " WHERE h.codigo_periodo = $1 ORDER BY h.sigla_materia, h.registro_academico"
);

pub const SELECT_MATERIA: &str =
    "SELECT sigla, nombre, creditos, es_electiva FROM materia WHERE sigla = $1";

pub const ESTUDIANTE_EXISTS: &str = "SELECT 1 FROM estudiante WHERE registro_academico = $1";
pub const MATERIA_EXISTS: &str = "SELECT 1 FROM materia WHERE sigla = $1";
pub const PERIODO_EXISTS: &str = "SELECT 1 FROM periodo_academico WHERE codigo_periodo = $1";

/// Inserts a row unless (student, materia, period) has one; returns the new id, or no row
/// for a duplicate. Under concurrent inserts PostgreSQL makes the later one wait for the
/// earlier one's commit and then skip, so duplicates never surface as errors.
pub const INSERT_HISTORIAL: &str = "INSERT INTO historial_academico (registro_academico, sigla_materia, codigo_periodo, \
     nota_final, estado, observacion, fecha_registro) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (registro_academico, sigla_materia, codigo_periodo) DO NOTHING \
     RETURNING id_historial";

pub const UPDATE_HISTORIAL: &str = "UPDATE historial_academico SET nota_final = $1, estado = $2, observacion = $3 \
     WHERE id_historial = $4";

pub const DELETE_HISTORIAL: &str = "DELETE FROM historial_academico WHERE id_historial = $1";

pub const CLOSE_PERIODO: &str =
    "UPDATE periodo_academico SET estado = 'CERRADO' WHERE codigo_periodo = $1";

// Prerequisites.

/// The prerequisites of materias `$2` that student `$1` has not passed, as
/// `(sigla_materia, sigla_requerida)`. `$siglas` is the backend's condition that
/// `p.sigla_materia` is in the list bound to `$2`.
macro_rules! select_missing_prerequisites {
    ($siglas:literal) => {
        concat!(
            "SELECT p.sigla_materia, p.sigla_requerida FROM prerrequisito p WHERE ",
            $siglas,
            " AND NOT EXISTS (SELECT 1 FROM historial_academico h \
             WHERE h.registro_academico = $1 AND h.sigla_materia = p.sigla_requerida \
             AND h.estado = 'APROBADA') \
             ORDER BY p.sigla_materia, p.sigla_requerida"
        )
    };
}
pub(crate) use select_missing_prerequisites;

pub const SELECT_PRERREQUISITOS: &str = "SELECT sigla_materia, sigla_requerida FROM prerrequisito ORDER BY sigla_materia, sigla_requerida";

// Catalog. One statement per table and load mode: `KEEP_EXISTING` inserts rows whose key is
// new and leaves the others alone; `UPSERT` also updates a row when one of its values
// differs, so loading the same rows twice writes nothing the second time. Neither changes a
// group's seat counter or a student's password.

macro_rules! insert_carrera {
    () => {
        "INSERT INTO carrera (codigo_carrera, nombre) VALUES ($1, $2) ON CONFLICT"
    };
}
macro_rules! insert_materia {
    () => {
        "INSERT INTO materia (sigla, nombre, creditos, es_electiva) VALUES ($1, $2, $3, $4) \
         ON CONFLICT"
    };
}
macro_rules! insert_docente {
    () => {
        "INSERT INTO docente (codigo_docente, nombre, apellido, ci, correo, telefono) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT"
    };
}
macro_rules! insert_aula {
    () => {
        "INSERT INTO aula (codigo_aula, modulo, aula, capacidad, ubicacion) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT"
    };
}
macro_rules! insert_horario {
    () => {
        "INSERT INTO horario (codigo_horario, dias_semana, hora_inicio, hora_fin) \
         VALUES ($1, $2, $3, $4) ON CONFLICT"
    };
}
macro_rules! insert_grupo {
    () => {
        "INSERT INTO grupo (codigo_grupo, sigla_materia, codigo_docente, codigo_aula, \
         codigo_horario, descripcion, cupo) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT"
    };
}
macro_rules! insert_periodo {
    () => {
        "INSERT INTO periodo_academico (codigo_periodo, semestre, fecha_inicio, fecha_fin, \
         estado) VALUES ($1, $2, $3, $4, $5) ON CONFLICT"
    };
}
macro_rules! insert_estudiante {
    () => {
        "INSERT INTO estudiante (registro_academico, codigo_carrera, nombre, apellido, ci, \
         correo, contrasena, telefono, direccion, estado_academico) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT"
    };
}
macro_rules! insert_bloqueo {
    () => {
        "INSERT INTO bloqueo (codigo_bloqueo, registro_academico, descripcion) \
         VALUES ($1, $2, $3) ON CONFLICT"
    };
}
macro_rules! insert_prerrequisito {
    () => {
        "INSERT INTO prerrequisito (sigla_materia, sigla_requerida) VALUES ($1, $2) ON CONFLICT"
    };
}
macro_rules! insert_historial {
    () => {
        "INSERT INTO historial_academico (registro_academico, sigla_materia, codigo_periodo, \
         nota_final, estado, observacion, fecha_registro) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT"
    };
}

/// The insert statement of each catalog table for one load mode.
pub struct CatalogStatements {
    pub carrera: &'static str,
    pub materia: &'static str,
    pub docente: &'static str,
    pub aula: &'static str,
    pub horario: &'static str,
    pub grupo: &'static str,
    pub periodo: &'static str,
    pub estudiante: &'static str,
    pub bloqueo: &'static str,
    pub historial: &'static str,
    pub prerrequisito: &'static str,
}

pub const KEEP_EXISTING: CatalogStatements = CatalogStatements {
    carrera: concat!(insert_carrera!(), " DO NOTHING"),
    materia: concat!(insert_materia!(), " DO NOTHING"),
    docente: concat!(insert_docente!(), " DO NOTHING"),
    aula: concat!(insert_aula!(), " DO NOTHING"),
    horario: concat!(insert_horario!(), " DO NOTHING"),
    grupo: concat!(insert_grupo!(), " DO NOTHING"),
    periodo: concat!(insert_periodo!(), " DO NOTHING"),
    estudiante: concat!(insert_estudiante!(), " DO NOTHING"),
    bloqueo: concat!(insert_bloqueo!(), " DO NOTHING"),
    historial: concat!(insert_historial!(), " DO NOTHING"),
    prerrequisito: concat!(insert_prerrequisito!(), " DO NOTHING"),
};

/// Both SQLite (3.39 and later) and PostgreSQL accept `IS DISTINCT FROM` between row values,
/// which compares NULLs as values.
pub const UPSERT: CatalogStatements = CatalogStatements {
    carrera: concat!(
        insert_carrera!(),
        " (codigo_carrera) DO UPDATE SET nombre = excluded.nombre \
         WHERE carrera.nombre IS DISTINCT FROM excluded.nombre"
    ),
    materia: concat!(
        insert_materia!(),
        " (sigla) DO UPDATE SET nombre = excluded.nombre, creditos = excluded.creditos, \
         es_electiva = excluded.es_electiva \
         WHERE (materia.nombre, materia.creditos, materia.es_electiva) \
         IS DISTINCT FROM (excluded.nombre, excluded.creditos, excluded.es_electiva)"
    ),
    docente: concat!(
        insert_docente!(),
        " (codigo_docente) DO UPDATE SET nombre = excluded.nombre, apellido = excluded.apellido, \
         ci = excluded.ci, correo = excluded.correo, telefono = excluded.telefono \
         WHERE (docente.nombre, docente.apellido, docente.ci, docente.correo, docente.telefono) \
         IS DISTINCT FROM (excluded.nombre, excluded.apellido, excluded.ci, excluded.correo, \
         excluded.telefono)"
    ),
    aula: concat!(
        insert_aula!(),
        " (codigo_aula) DO UPDATE SET modulo = excluded.modulo, aula = excluded.aula, \
         capacidad = excluded.capacidad, ubicacion = excluded.ubicacion \
         WHERE (aula.modulo, aula.aula, aula.capacidad, aula.ubicacion) \
         IS DISTINCT FROM (excluded.modulo, excluded.aula, excluded.capacidad, excluded.ubicacion)"
    ),
    horario: concat!(
        insert_horario!(),
        " (codigo_horario) DO UPDATE SET dias_semana = excluded.dias_semana, \
         hora_inicio = excluded.hora_inicio, hora_fin = excluded.hora_fin \
         WHERE (horario.dias_semana, horario.hora_inicio, horario.hora_fin) \
         IS DISTINCT FROM (excluded.dias_semana, excluded.hora_inicio, excluded.hora_fin)"
    ),
    grupo: concat!(
        insert_grupo!(),
        " (codigo_grupo) DO UPDATE SET sigla_materia = excluded.sigla_materia, \
         codigo_docente = excluded.codigo_docente, codigo_aula = excluded.codigo_aula, \
         codigo_horario = excluded.codigo_horario, descripcion = excluded.descripcion, \
         cupo = excluded.cupo \
         WHERE (grupo.sigla_materia, grupo.codigo_docente, grupo.codigo_aula, \
         grupo.codigo_horario, grupo.descripcion, grupo.cupo) \
         IS DISTINCT FROM (excluded.sigla_materia, excluded.codigo_docente, excluded.codigo_aula, \
         excluded.codigo_horario, excluded.descripcion, excluded.cupo)"
    ),
    periodo: concat!(
        insert_periodo!(),
        " (codigo_periodo) DO UPDATE SET semestre = excluded.semestre, \
         fecha_inicio = excluded.fecha_inicio, fecha_fin = excluded.fecha_fin, \
         estado = excluded.estado \
         WHERE (periodo_academico.semestre, periodo_academico.fecha_inicio, \
         periodo_academico.fecha_fin, periodo_academico.estado) \
         IS DISTINCT FROM (excluded.semestre, excluded.fecha_inicio, excluded.fecha_fin, \
         excluded.estado)"
    ),
    estudiante: concat!(
        insert_estudiante!(),
        " (registro_academico) DO UPDATE SET codigo_carrera = excluded.codigo_carrera, \
         nombre = excluded.nombre, apellido = excluded.apellido, ci = excluded.ci, \
         correo = excluded.correo, telefono = excluded.telefono, \
         direccion = excluded.direccion, estado_academico = excluded.estado_academico \
         WHERE (estudiante.codigo_carrera, estudiante.nombre, estudiante.apellido, estudiante.ci, \
         estudiante.correo, estudiante.telefono, estudiante.direccion, estudiante.estado_academico) \
         IS DISTINCT FROM (excluded.codigo_carrera, excluded.nombre, excluded.apellido, \
         excluded.ci, excluded.correo, excluded.telefono, excluded.direccion, \
         excluded.estado_academico)"
    ),
    bloqueo: concat!(
        insert_bloqueo!(),
        " (codigo_bloqueo) DO UPDATE SET registro_academico = excluded.registro_academico, \
         descripcion = excluded.descripcion \
         WHERE (bloqueo.registro_academico, bloqueo.descripcion) \
         IS DISTINCT FROM (excluded.registro_academico, excluded.descripcion)"
    ),
    historial: concat!(
        insert_historial!(),
        " (registro_academico, sigla_materia, codigo_periodo) DO UPDATE SET \
         nota_final = excluded.nota_final, estado = excluded.estado, \
         observacion = excluded.observacion, fecha_registro = excluded.fecha_registro \
         WHERE (historial_academico.nota_final, historial_academico.estado, \
         historial_academico.observacion, historial_academico.fecha_registro) \
         IS DISTINCT FROM (excluded.nota_final, excluded.estado, excluded.observacion, \
         excluded.fecha_registro)"
    ),
    // The pair is the whole row, so an existing pair has nothing to update.
    prerrequisito: concat!(insert_prerrequisito!(), " DO NOTHING"),
};

/// Keys of the catalog tables an import refers to, and the active period.
pub const SELECT_CATALOG_KEYS: &str = "SELECT 'carrera', codigo_carrera FROM carrera \
     UNION ALL SELECT 'materia', sigla FROM materia \
     UNION ALL SELECT 'docente', codigo_docente FROM docente \
     UNION ALL SELECT 'aula', codigo_aula FROM aula \
     UNION ALL SELECT 'horario', codigo_horario FROM horario \
     UNION ALL SELECT 'periodo', codigo_periodo FROM periodo_academico \
     UNION ALL SELECT 'estudiante', registro_academico FROM estudiante \
     UNION ALL SELECT 'activo', codigo_periodo FROM periodo_academico WHERE estado = 'ACTIVO'";

// Jobs.

pub const INSERT_JOB: &str = "INSERT INTO job (task_id, kind, state, payload, correlation_id, request_id, \
     idempotency_key, run_at, created_at) VALUES ($1, $2, 'PENDING', $3, $4, $5, $6, $7, $7)";

pub const INSERT_GROUP_VIEW: &str = "INSERT INTO job_group_view (view_id, task_id, codigo_grupo, position) \
     VALUES ($1, $2, $3, $4)";

/// Writes a job update when the worker holds the lease. `$4` is true for a terminal state,
/// which sets `completed_at` to `$5` and clears the lease.
pub const UPDATE_LEASED_JOB: &str = "UPDATE job SET state = $1, meta = COALESCE($2, meta), result = COALESCE($3, result), \
     completed_at = CASE WHEN $4 THEN $5 ELSE completed_at END, \
     lease_owner = CASE WHEN $4 THEN NULL ELSE lease_owner END, \
     lease_expires_at = CASE WHEN $4 THEN NULL ELSE lease_expires_at END \
     WHERE task_id = $6 AND lease_owner = $7 AND state IN ('STARTED', 'PROGRESS')";

pub const SCHEDULE_RETRY: &str = "UPDATE job SET state = 'RETRY', run_at = $1, meta = $2, lease_owner = NULL, \
     lease_expires_at = NULL WHERE task_id = $3 AND lease_owner = $4 \
     AND state IN ('STARTED', 'PROGRESS')";

/// The task id behind group view `$1`.
pub const SELECT_VIEW_TASK_ID: &str = "SELECT task_id FROM job_group_view WHERE view_id = $1";

pub const REVOKE_JOB: &str = "UPDATE job SET state = 'REVOKED', completed_at = $1, lease_owner = NULL, \
     lease_expires_at = NULL WHERE task_id = $2";

pub const SELECT_JOB: &str = concat!("SELECT ", job_columns!(), " FROM job WHERE task_id = $1");

/// The job behind group view `$1`, with the view's group as `view_grupo`.
pub const SELECT_VIEW_JOB: &str = "SELECT v.codigo_grupo AS view_grupo, j.* FROM job_group_view v \
     JOIN job j ON j.task_id = v.task_id WHERE v.view_id = $1";

pub const COUNT_JOBS_BY_STATE: &str = "SELECT state, COUNT(*) FROM job GROUP BY state";

pub const PURGE_GROUP_VIEWS: &str = "DELETE FROM job_group_view WHERE task_id IN \
     (SELECT task_id FROM job WHERE completed_at < $1)";

pub const PURGE_JOBS: &str = "DELETE FROM job WHERE completed_at < $1";

/// Groups that students hold, with what an import must keep of them.
pub const SELECT_HELD_GRUPOS: &str = "SELECT codigo_grupo, sigla_materia, codigo_horario, \
     CAST(inscritos_actuales AS BIGINT) FROM grupo WHERE inscritos_actuales > 0";

/// Horarios of groups that students hold.
pub const SELECT_HELD_HORARIOS: &str = "SELECT h.codigo_horario, h.dias_semana, h.hora_inicio, \
     h.hora_fin FROM horario h WHERE EXISTS (SELECT 1 FROM grupo g \
     WHERE g.codigo_horario = h.codigo_horario AND g.inscritos_actuales > 0)";

/// Jobs whose task id is in the JSON array `$1` (SQLite).
pub const SELECT_JOBS_IN_JSON: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM job WHERE task_id IN (SELECT value FROM json_each($1))"
);

/// Group views whose id is in the JSON array `$1`, with their jobs (SQLite).
pub const SELECT_VIEW_JOBS_IN_JSON: &str = "SELECT v.view_id, v.codigo_grupo AS view_grupo, j.* \
     FROM job_group_view v JOIN job j ON j.task_id = v.task_id \
     WHERE v.view_id IN (SELECT value FROM json_each($1))";

/// Jobs whose task id is in the array `$1` (PostgreSQL).
pub const SELECT_JOBS_ANY: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM job WHERE task_id = ANY($1)"
);

/// Group views whose id is in the array `$1`, with their jobs (PostgreSQL).
pub const SELECT_VIEW_JOBS_ANY: &str = "SELECT v.view_id, v.codigo_grupo AS view_grupo, j.* \
     FROM job_group_view v JOIN job j ON j.task_id = v.task_id WHERE v.view_id = ANY($1)";

/// The number of jobs waiting to run and the oldest one's creation time, by kind.
pub(crate) const SELECT_QUEUE_DEPTH: &str = "SELECT kind, COUNT(*), MIN(created_at) FROM job \
     WHERE state IN ('PENDING', 'RETRY') GROUP BY kind";
