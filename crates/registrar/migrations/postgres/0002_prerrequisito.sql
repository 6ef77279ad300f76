-- Prerequisites: a student may enroll in a group of sigla_materia only after the historial
-- marks sigla_requerida APROBADA for that student.
CREATE TABLE prerrequisito (
    sigla_materia VARCHAR(8) COLLATE "C" NOT NULL REFERENCES materia (sigla),
    sigla_requerida VARCHAR(8) COLLATE "C" NOT NULL REFERENCES materia (sigla),
    PRIMARY KEY (sigla_materia, sigla_requerida),
    CHECK (sigla_materia <> sigla_requerida)
);
CREATE INDEX prerrequisito_sigla_requerida ON prerrequisito (sigla_requerida);

-- The historial reports read by materia (optionally within one period) and by period; the
-- unique (registro_academico, sigla_materia, codigo_periodo) index serves reads by student.
CREATE INDEX historial_academico_materia_periodo ON historial_academico (sigla_materia, codigo_periodo);
CREATE INDEX historial_academico_codigo_periodo ON historial_academico (codigo_periodo);
