-- Catalog, enrollment and job tables for the PostgreSQL store: the same tables, columns,
-- constraints and indexes as the SQLite schema, in native types. Job timestamps stay epoch
-- milliseconds (bigint) because the application passes the times.
--
-- Code columns use the "C" collation, so ORDER BY sorts them by code point as SQLite's BINARY
-- collation does, whatever collation the database was created with. The codes on both sides
-- of every foreign key share that collation.

CREATE TABLE carrera (
    codigo_carrera VARCHAR(8) COLLATE "C" PRIMARY KEY,
    nombre VARCHAR(100) NOT NULL
);

CREATE TABLE plan_estudio (
    codigo_plan VARCHAR(8) COLLATE "C" PRIMARY KEY,
    plan VARCHAR(10),
    cant_semestre INTEGER NOT NULL,
    codigo_carrera VARCHAR(8) COLLATE "C" REFERENCES carrera (codigo_carrera)
);

CREATE TABLE materia (
    sigla VARCHAR(8) COLLATE "C" PRIMARY KEY,
    nombre VARCHAR(100) NOT NULL,
    creditos INTEGER NOT NULL CHECK (creditos >= 0),
    es_electiva BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE docente (
    codigo_docente VARCHAR(8) COLLATE "C" PRIMARY KEY,
    nombre VARCHAR(50),
    apellido VARCHAR(50),
    ci VARCHAR(20),
    correo VARCHAR(100),
    telefono VARCHAR(20)
);

CREATE TABLE aula (
    codigo_aula VARCHAR(8) COLLATE "C" PRIMARY KEY,
    modulo VARCHAR(10),
    aula VARCHAR(10),
    capacidad INTEGER CHECK (capacidad IS NULL OR capacidad > 0),
    ubicacion VARCHAR(100)
);

-- dias_semana is a one-dimensional array of day names without NULL elements, compared by
-- exact string equality.
CREATE TABLE horario (
    codigo_horario VARCHAR(8) COLLATE "C" PRIMARY KEY,
    dias_semana TEXT[] NOT NULL
        CHECK (array_ndims(dias_semana) = 1 AND array_position(dias_semana, NULL) IS NULL),
    hora_inicio TIME NOT NULL,
    hora_fin TIME NOT NULL,
    CHECK (hora_fin > hora_inicio)
);

CREATE TABLE grupo (
    codigo_grupo VARCHAR(16) COLLATE "C" PRIMARY KEY,
    sigla_materia VARCHAR(8) COLLATE "C" NOT NULL REFERENCES materia (sigla),
    codigo_docente VARCHAR(8) COLLATE "C" REFERENCES docente (codigo_docente),
    codigo_aula VARCHAR(8) COLLATE "C" REFERENCES aula (codigo_aula),
    codigo_horario VARCHAR(8) COLLATE "C" REFERENCES horario (codigo_horario),
    descripcion VARCHAR(150),
    cupo INTEGER NOT NULL DEFAULT 40 CHECK (cupo > 0),
    inscritos_actuales INTEGER NOT NULL DEFAULT 0,
    CHECK (inscritos_actuales >= 0 AND inscritos_actuales <= cupo)
);
CREATE INDEX grupo_sigla_materia ON grupo (sigla_materia);

CREATE TABLE estudiante (
    registro_academico VARCHAR(20) COLLATE "C" PRIMARY KEY,
    codigo_carrera VARCHAR(8) COLLATE "C" REFERENCES carrera (codigo_carrera),
    nombre VARCHAR(100) NOT NULL,
    apellido VARCHAR(100) NOT NULL,
    ci VARCHAR(20) UNIQUE,
    correo VARCHAR(100),
    contrasena TEXT NOT NULL,
    telefono VARCHAR(20),
    direccion VARCHAR(150),
    estado_academico VARCHAR(20) NOT NULL DEFAULT 'REGULAR'
);

CREATE TABLE periodo_academico (
    codigo_periodo VARCHAR(16) COLLATE "C" PRIMARY KEY,
    semestre VARCHAR(10),
    fecha_inicio DATE,
    fecha_fin DATE,
    estado VARCHAR(15),
    CHECK (fecha_inicio IS NULL OR fecha_fin IS NULL OR fecha_fin >= fecha_inicio)
);
-- At most one period may be ACTIVO at a time.
CREATE UNIQUE INDEX periodo_academico_un_activo ON periodo_academico (estado) WHERE estado = 'ACTIVO';

CREATE TABLE inscripcion (
    codigo_inscripcion VARCHAR(10) COLLATE "C" PRIMARY KEY,
    registro_academico VARCHAR(20) COLLATE "C" NOT NULL
        REFERENCES estudiante (registro_academico),
    codigo_periodo VARCHAR(16) COLLATE "C" NOT NULL REFERENCES periodo_academico (codigo_periodo),
    fecha_inscripcion DATE NOT NULL,
    UNIQUE (registro_academico, codigo_periodo)
);
CREATE INDEX inscripcion_codigo_periodo ON inscripcion (codigo_periodo);

CREATE TABLE detalle_inscripcion (
    codigo_detalle VARCHAR(10) COLLATE "C" PRIMARY KEY,
    codigo_inscripcion VARCHAR(10) COLLATE "C" NOT NULL
        REFERENCES inscripcion (codigo_inscripcion),
    codigo_grupo VARCHAR(16) COLLATE "C" NOT NULL REFERENCES grupo (codigo_grupo),
    UNIQUE (codigo_inscripcion, codigo_grupo)
);
CREATE INDEX detalle_inscripcion_codigo_grupo ON detalle_inscripcion (codigo_grupo);

CREATE TABLE pago (
    codigo_pago VARCHAR(10) COLLATE "C" PRIMARY KEY,
    registro_academico VARCHAR(20) COLLATE "C" NOT NULL
        REFERENCES estudiante (registro_academico),
    descripcion VARCHAR(100),
    monto NUMERIC(10, 2),
    fecha_pago DATE
);

CREATE TABLE bloqueo (
    codigo_bloqueo VARCHAR(10) COLLATE "C" PRIMARY KEY,
    registro_academico VARCHAR(20) COLLATE "C" NOT NULL
        REFERENCES estudiante (registro_academico),
    descripcion VARCHAR(100)
);
CREATE INDEX bloqueo_registro_academico ON bloqueo (registro_academico);

CREATE TABLE historial_academico (
    id_historial BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registro_academico VARCHAR(20) COLLATE "C" NOT NULL
        REFERENCES estudiante (registro_academico),
    sigla_materia VARCHAR(8) COLLATE "C" NOT NULL REFERENCES materia (sigla),
    codigo_periodo VARCHAR(16) COLLATE "C" NOT NULL REFERENCES periodo_academico (codigo_periodo),
    nota_final NUMERIC(5, 2) CHECK (nota_final IS NULL OR (nota_final >= 0 AND nota_final <= 100)),
    estado VARCHAR(15) NOT NULL CHECK (estado IN ('APROBADA', 'REPROBADA', 'RETIRADA')),
    observacion VARCHAR(200),
    fecha_registro DATE,
    UNIQUE (registro_academico, sigla_materia, codigo_periodo)
);

-- Counters behind the I… and D… codes: the letter and the value zero-padded to 9 digits.
-- MAXVALUE keeps the value within 9 digits, so nextval fails instead of producing a code
-- that does not fit the 10-character columns. A rolled-back transaction does not return the
-- values it drew, so codes can have gaps.
CREATE SEQUENCE inscripcion_codigo_seq AS BIGINT MINVALUE 1 MAXVALUE 999999999;
CREATE SEQUENCE detalle_codigo_seq AS BIGINT MINVALUE 1 MAXVALUE 999999999;

-- One row per queued job. Times are epoch milliseconds.
CREATE TABLE job (
    task_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('inscription', 'bulk', 'health_check')),
    state TEXT NOT NULL CHECK (state IN ('PENDING', 'STARTED', 'PROGRESS', 'RETRY', 'SUCCESS', 'FAILURE', 'REVOKED')),
    payload JSONB NOT NULL,
    meta JSONB,
    result JSONB,
    correlation_id TEXT NOT NULL,
    request_id TEXT,
    idempotency_key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT
);
CREATE INDEX job_ready ON job (run_at) WHERE state IN ('PENDING', 'RETRY');
CREATE INDEX job_leased ON job (lease_expires_at) WHERE state IN ('STARTED', 'PROGRESS');
CREATE INDEX job_completed_at ON job (completed_at) WHERE completed_at IS NOT NULL;

-- Per-group ids handed out by async-by-groups: each is a view of one request-level job.
CREATE TABLE job_group_view (
    view_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL REFERENCES job (task_id) ON DELETE CASCADE,
    codigo_grupo VARCHAR(16) COLLATE "C" NOT NULL,
    position INTEGER NOT NULL,
    UNIQUE (task_id, position)
);
CREATE INDEX job_group_view_task_id ON job_group_view (task_id);
