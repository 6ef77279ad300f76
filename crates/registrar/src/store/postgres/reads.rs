//! Query endpoints' reads on PostgreSQL. They take no locks, and each statement reads the
//! data committed when it starts, as the SQLite store's reads do.

use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use time::Time;

use super::PgStore;
use super::convert::{estudiante_from_row, get_i64, inscripcion_from_row, periodo_from_row};
use crate::domain::model::{Inscripcion, Periodo};
use crate::domain::schedule::format_time;
use crate::domain::views::{
    AulaRef, DetalleConGrupo, DetalleSimple, DocenteRef, EnrollmentStatistics, GrupoView,
    HorarioRef, InscripcionConGrupos, InscripcionFull, MateriaRef,
};
use crate::store::StoreError;
use crate::store::sql;

pub async fn inscripcion_row(
    conn: &mut PgConnection,
    codigo_inscripcion: &str,
) -> Result<Option<Inscripcion>, StoreError> {
    let row = sqlx::query(sql::SELECT_INSCRIPCION)
        .bind(codigo_inscripcion)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| inscripcion_from_row(&r)).transpose()
}

pub async fn periodo_row(
    conn: &mut PgConnection,
    codigo_periodo: &str,
) -> Result<Option<Periodo>, StoreError> {
    let row = sqlx::query(sql::SELECT_PERIODO)
        .bind(codigo_periodo)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| periodo_from_row(&r)).transpose()
}

fn grupo_view_from_row(r: &PgRow) -> Result<GrupoView, StoreError> {
    let materia = match r.try_get::<Option<String>, _>("sigla")? {
        Some(sigla) => Some(MateriaRef {
            sigla,
            nombre: r.try_get("materia_nombre")?,
            creditos: get_i64(r, "creditos")?,
            es_electiva: r.try_get("es_electiva")?,
        }),
        None => None,
    };
    let docente = match r.try_get::<Option<String>, _>("codigo_docente")? {
        Some(codigo_docente) => Some(DocenteRef {
            codigo_docente,
            nombre: r.try_get("docente_nombre")?,
            apellido: r.try_get("docente_apellido")?,
        }),
        None => None,
    };
    let aula = match r.try_get::<Option<String>, _>("codigo_aula")? {
        Some(codigo_aula) => Some(AulaRef {
            codigo_aula,
            modulo: r.try_get("modulo")?,
            aula: r.try_get("aula")?,
            ubicacion: r.try_get("ubicacion")?,
        }),
        None => None,
    };
    let horario = match r.try_get::<Option<String>, _>("codigo_horario")? {
        Some(codigo_horario) => Some(HorarioRef {
            codigo_horario,
            dias_semana: r.try_get("dias_semana")?,
            hora_inicio: format_time(r.try_get::<Time, _>("hora_inicio")?),
            hora_fin: format_time(r.try_get::<Time, _>("hora_fin")?),
        }),
        None => None,
    };
    Ok(GrupoView {
        codigo_grupo: r.try_get("codigo_grupo")?,
        sigla_materia: r.try_get("sigla_materia")?,
        descripcion: r.try_get("descripcion")?,
        cupo: get_i64(r, "cupo")?,
        inscritos_actuales: get_i64(r, "inscritos_actuales")?,
        materia,
        docente,
        aula,
        horario,
    })
}

impl PgStore {
    pub(super) async fn inscripcion_full(
        &self,
        codigo_inscripcion: &str,
    ) -> Result<Option<InscripcionFull>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let Some(inscripcion) = inscripcion_row(&mut conn, codigo_inscripcion).await? else {
            return Ok(None);
        };
        let estudiante = sqlx::query(sql::SELECT_ESTUDIANTE)
            .bind(&inscripcion.registro_academico)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| estudiante_from_row(&r))
            .transpose()?;
        let periodo = periodo_row(&mut conn, &inscripcion.codigo_periodo).await?;
        let detalles = sqlx::query(sql::SELECT_DETALLES)
            .bind(codigo_inscripcion)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| {
                Ok(DetalleSimple {
                    codigo_detalle: r.try_get(0)?,
                    codigo_inscripcion: r.try_get(1)?,
                    codigo_grupo: r.try_get(2)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some(InscripcionFull {
            inscripcion,
            estudiante,
            periodo,
            detalles,
        }))
    }

    pub(super) async fn student_inscripciones(
        &self,
        registro_academico: &str,
    ) -> Result<Vec<InscripcionConGrupos>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let inscripciones = sqlx::query(sql::SELECT_STUDENT_INSCRIPCIONES)
            .bind(registro_academico)
            .fetch_all(&mut *conn)
            .await?;
        // Planned on every call, for the reason given in `find_tasks`.
        let rows = sqlx::query(sql::SELECT_STUDENT_GROUPS)
            .persistent(false)
            .bind(registro_academico)
            .fetch_all(&mut *conn)
            .await?;

        let mut by_inscripcion: HashMap<String, Vec<DetalleConGrupo>> = HashMap::new();
        for r in &rows {
            let codigo: String = r.try_get("codigo_inscripcion")?;
            by_inscripcion
                .entry(codigo)
                .or_default()
                .push(DetalleConGrupo {
                    codigo_detalle: r.try_get("codigo_detalle")?,
                    grupo: grupo_view_from_row(r)?,
                });
        }
        inscripciones
            .iter()
            .map(|r| {
                let inscripcion = inscripcion_from_row(r)?;
                let detalles = by_inscripcion
                    .remove(&inscripcion.codigo_inscripcion)
                    .unwrap_or_default();
                Ok(InscripcionConGrupos {
                    inscripcion,
                    detalles,
                })
            })
            .collect()
    }

    pub(super) async fn period_inscripciones(
        &self,
        codigo_periodo: &str,
    ) -> Result<Vec<Inscripcion>, StoreError> {
        let rows = sqlx::query(sql::SELECT_PERIOD_INSCRIPCIONES)
            .bind(codigo_periodo)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(inscripcion_from_row).collect()
    }

    pub(super) async fn statistics(&self) -> Result<EnrollmentStatistics, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let total: i64 = sqlx::query_scalar(sql::COUNT_INSCRIPCIONES)
            .fetch_one(&mut *conn)
            .await?;
        let per_period: Vec<(String, i64)> = sqlx::query_as(sql::COUNT_INSCRIPCIONES_PER_PERIODO)
            .fetch_all(&mut *conn)
            .await?;
        let activos: i64 = sqlx::query_scalar(sql::COUNT_REGULAR_ESTUDIANTES)
            .fetch_one(&mut *conn)
            .await?;
        let disponibles: i64 = sqlx::query_scalar(sql::COUNT_OPEN_GRUPOS)
            .fetch_one(&mut *conn)
            .await?;
        Ok(EnrollmentStatistics {
            total_inscripciones: total,
            inscripciones_por_periodo: per_period,
            estudiantes_activos: activos,
            grupos_disponibles: disponibles,
        })
    }

    pub(super) async fn all_periodos(&self) -> Result<Vec<Periodo>, StoreError> {
        let rows = sqlx::query(sql::SELECT_ALL_PERIODOS)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(periodo_from_row).collect()
    }

    pub(super) async fn find_active_periodo(&self) -> Result<Option<Periodo>, StoreError> {
        let row = sqlx::query(sql::SELECT_ACTIVE_PERIODO)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| periodo_from_row(&r)).transpose()
    }
}
