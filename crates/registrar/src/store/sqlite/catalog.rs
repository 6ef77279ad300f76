//! Loads catalog rows into SQLite, keeping rows that already exist.

use sqlx::{Sqlite, Transaction};

use crate::domain::catalog::{Catalog, LoadReport};
use crate::domain::schedule::format_time;
use crate::store::StoreError;

pub async fn insert_missing(
    tx: &mut Transaction<'static, Sqlite>,
    catalog: &Catalog,
) -> Result<LoadReport, StoreError> {
    let mut report = LoadReport::default();
    let mut count = |table: &str, n: u64| report.inserted.push((table.to_owned(), n));

    let mut n = 0;
    for c in &catalog.carreras {
        n += sqlx::query(
            "INSERT INTO carrera (codigo_carrera, nombre) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(&c.codigo_carrera)
        .bind(&c.nombre)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    count("carrera", n);

    let mut n = 0;
    for m in &catalog.materias {
        n += sqlx::query(
            "INSERT INTO materia (sigla, nombre, creditos, es_electiva) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&m.sigla)
        .bind(&m.nombre)
        .bind(m.creditos)
        .bind(m.es_electiva)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    count("materia", n);

    let mut n = 0;
    for d in &catalog.docentes {
        n += sqlx::query(
            "INSERT INTO docente (codigo_docente, nombre, apellido, ci, correo, telefono) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&d.codigo_docente)
        .bind(&d.nombre)
        .bind(&d.apellido)
        .bind(&d.ci)
        .bind(&d.correo)
        .bind(&d.telefono)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    count("docente", n);

    let mut n = 0;
    for a in &catalog.aulas {
        n += sqlx::query(
            "INSERT INTO aula (codigo_aula, modulo, aula, capacidad, ubicacion) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&a.codigo_aula)
        .bind(&a.modulo)
        .bind(&a.aula)
        .bind(a.capacidad)
        .bind(&a.ubicacion)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    count("aula", n);

    let mut n = 0;
    for h in &catalog.horarios {
        let dias = serde_json::to_string(&h.dias_semana).expect("strings serialise");
        n += sqlx::query(
            "INSERT INTO horario (codigo_horario, dias_semana, hora_inicio, hora_fin) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&h.codigo_horario)
        .bind(dias)
        .bind(format_time(h.hora_inicio))
        .bind(format_time(h.hora_fin))
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    count("horario", n);

    let mut n = 0;
    for g in &catalog.grupos {
        n += sqlx::query(
            "INSERT INTO grupo (codigo_grupo, sigla_materia, codigo_docente, codigo_aula, \
             codigo_horario, descripcion, cupo) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&g.codigo_grupo)
        .bind(&g.sigla_materia)
        .bind(&g.codigo_docente)
        .bind(&g.codigo_aula)
        .bind(&g.codigo_horario)
        .bind(&g.descripcion)
        .bind(g.cupo)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    count("grupo", n);

    let mut n = 0;
    for p in &catalog.periodos {
        n += sqlx::query(
            "INSERT INTO periodo_academico (codigo_periodo, semestre, fecha_inicio, fecha_fin, \
             estado) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&p.codigo_periodo)
        .bind(&p.semestre)
        .bind(p.fecha_inicio.map(|d| d.to_string()))
        .bind(p.fecha_fin.map(|d| d.to_string()))
        .bind(&p.estado)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    count("periodo_academico", n);

    let mut n = 0;
    for e in &catalog.estudiantes {
        n += sqlx::query(
            "INSERT INTO estudiante (registro_academico, codigo_carrera, nombre, apellido, ci, \
             correo, contrasena, telefono, direccion, estado_academico) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        )
        .bind(&e.registro_academico)
        .bind(&e.codigo_carrera)
        .bind(&e.nombre)
        .bind(&e.apellido)
        .bind(&e.ci)
        .bind(&e.correo)
        .bind(&e.contrasena)
        .bind(&e.telefono)
        .bind(&e.direccion)
        .bind(&e.estado_academico)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    count("estudiante", n);

    let mut n = 0;
    for b in &catalog.bloqueos {
        n += sqlx::query(
            "INSERT INTO bloqueo (codigo_bloqueo, registro_academico, descripcion) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(&b.codigo_bloqueo)
        .bind(&b.registro_academico)
        .bind(&b.descripcion)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    count("bloqueo", n);

    let mut n = 0;
    for h in &catalog.historial {
        n += sqlx::query(
            "INSERT INTO historial_academico (registro_academico, sigla_materia, codigo_periodo, \
             nota_final, estado, observacion, fecha_registro) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&h.registro_academico)
        .bind(&h.sigla_materia)
        .bind(&h.codigo_periodo)
        .bind(h.nota_final)
        .bind(&h.estado)
        .bind(&h.observacion)
        .bind(h.fecha_registro.map(|d| d.to_string()))
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    count("historial_academico", n);

    Ok(report)
}
