-- The audit trail: one row per business or operator event, written after the change it
-- describes has committed (a rejection's row is written after its transaction rolled back).
-- occurred_at is epoch milliseconds in UTC, as in the job table. codigo_grupo is the group
-- the event is about: the added or dropped group, or the group that caused a rejection; every
-- requested group is listed in data.
CREATE TABLE audit_event (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT,
    action TEXT NOT NULL,
    correlation_id TEXT,
    request_id TEXT,
    registro_academico TEXT,
    codigo_periodo TEXT,
    codigo_grupo TEXT,
    error_code TEXT,
    data JSONB NOT NULL DEFAULT '{}'
);

-- "Who was rejected from group X between 08:00 and 08:05" is one range scan of the first
-- index; the others serve the API's other filters, each narrowed by time.
CREATE INDEX audit_event_grupo_type_time ON audit_event (codigo_grupo, event_type, occurred_at);
CREATE INDEX audit_event_student_time ON audit_event (registro_academico, occurred_at);
CREATE INDEX audit_event_type_time ON audit_event (event_type, occurred_at);
CREATE INDEX audit_event_correlation ON audit_event (correlation_id);
CREATE INDEX audit_event_time ON audit_event (occurred_at);
