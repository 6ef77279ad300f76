//! Loads catalog rows into PostgreSQL with the statements of one load mode. Dates, times and
//! day lists bind as native values. Counts bind as `bigint`, and the server casts them to the
//! `integer` columns, so a value out of range fails the load.

use sqlx::{Postgres, Transaction};

use crate::domain::catalog::{Catalog, LoadReport};
use crate::store::StoreError;
use crate::store::sql::CatalogStatements;

pub async fn load(
    tx: &mut Transaction<'static, Postgres>,
    catalog: &Catalog,
    statements: &CatalogStatements,
) -> Result<LoadReport, StoreError> {
    let mut report = LoadReport::default();
    let mut count = |table: &str, n: u64| report.record(table, n);

    let mut n = 0;
    for c in &catalog.carreras {
        n += sqlx::query(statements.carrera)
            .bind(&c.codigo_carrera)
            .bind(&c.nombre)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    count("carrera", n);

    let mut n = 0;
    for m in &catalog.materias {
        n += sqlx::query(statements.materia)
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
    for p in &catalog.prerrequisitos {
        n += sqlx::query(statements.prerrequisito)
            .bind(&p.sigla_materia)
            .bind(&p.sigla_requerida)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    count("prerrequisito", n);

    let mut n = 0;
    for d in &catalog.docentes {
        n += sqlx::query(statements.docente)
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
        n += sqlx::query(statements.aula)
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
        n += sqlx::query(statements.horario)
            .bind(&h.codigo_horario)
            .bind(&h.dias_semana)
            .bind(h.hora_inicio)
            .bind(h.hora_fin)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    count("horario", n);

    let mut n = 0;
    for g in &catalog.grupos {
        n += sqlx::query(statements.grupo)
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
        n += sqlx::query(statements.periodo)
            .bind(&p.codigo_periodo)
            .bind(&p.semestre)
            .bind(p.fecha_inicio)
            .bind(p.fecha_fin)
            .bind(&p.estado)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    count("periodo_academico", n);

    let mut n = 0;
    for e in &catalog.estudiantes {
        n += sqlx::query(statements.estudiante)
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
        n += sqlx::query(statements.bloqueo)
            .bind(&b.codigo_bloqueo)
            .bind(&b.registro_academico)
            .bind(&b.descripcion)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    count("bloqueo", n);

    // nota_final binds as double precision, and the server rounds it to the numeric(5, 2) column.
    let mut n = 0;
    for h in &catalog.historial {
        n += sqlx::query(statements.historial)
            .bind(&h.registro_academico)
            .bind(&h.sigla_materia)
            .bind(&h.codigo_periodo)
            .bind(h.nota_final)
            .bind(&h.estado)
            .bind(&h.observacion)
            .bind(h.fecha_registro)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    count("historial_academico", n);

    Ok(report)
}
