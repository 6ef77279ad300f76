-- Idempotency records and saga logs.

-- One row per idempotency key. A queued request's row points at its job, whose state decides
-- between a replay, a 409 and a fresh run; a synchronous request's row is `pending` until its
-- saga ends. `(registro_academico, codigo_periodo)` finds the keys to drop when that
-- enrollment changes.
CREATE TABLE idempotency_record (
    idempotency_key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    task_id TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'completed')),
    registro_academico TEXT,
    codigo_periodo TEXT,
    correlation_id TEXT NOT NULL,
    response_status INTEGER NOT NULL,
    response_body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX idempotency_record_owner ON idempotency_record (registro_academico, codigo_periodo);
CREATE INDEX idempotency_record_expires_at ON idempotency_record (expires_at);

-- The log of one enrollment request's saga: the enrollment transaction, the fee assessment
-- and the notification, with each step's status. `added_grupos` and `created_inscripcion`
-- say what a compensation withdraws.
CREATE TABLE saga (
    saga_id TEXT PRIMARY KEY,
    task_id TEXT,
    correlation_id TEXT NOT NULL,
    request_id TEXT,
    registro_academico TEXT NOT NULL,
    codigo_periodo TEXT NOT NULL,
    grupos TEXT NOT NULL,
    codigo_inscripcion TEXT,
    created_inscripcion INTEGER NOT NULL,
    added_grupos TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'executing', 'completed', 'compensating', 'compensated', 'failed')),
    steps TEXT NOT NULL,
    result TEXT,
    error TEXT,
    error_code TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    completed_at INTEGER
);
CREATE INDEX saga_task_id ON saga (task_id);
CREATE INDEX saga_created_at ON saga (created_at);
CREATE INDEX saga_unfinished ON saga (updated_at) WHERE status IN ('pending', 'executing', 'compensating');
