//! Reads of the query endpoints on SQLite. They use the read pool, and WAL mode lets them
//! run while a writer holds the write lock.

use std::collections::HashMap;

use sqlx::{Row, SqliteConnection};

use super::SqliteStore;
use super::convert::{estudiante_from_row, inscripcion_from_row, parse_days, periodo_from_row};
use super::tx::{SELECT_ESTUDIANTE, SELECT_INSCRIPCION, SELECT_PERIODO};
use crate::domain::model::{Inscripcion, Periodo};
use crate::domain::views::{
    AulaRef, DetalleConGrupo, DetalleSimple, DocenteRef, EnrollmentStatistics, GrupoView,
    HorarioRef, InscripcionConGrupos, InscripcionFull, MateriaRef,
};
use crate::store::StoreError;

pub async fn inscripcion_row(
    conn: &mut SqliteConnection,
    codigo_inscripcion: &str,
) -> Result<Option<Inscripcion>, StoreError> {
    let row = sqlx::query(SELECT_INSCRIPCION)
        .bind(codigo_inscripcion)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| inscripcion_from_row(&r)).transpose()
}

pub async fn periodo_row(
    conn: &mut SqliteConnection,
    codigo_periodo: &str,
) -> Result<Option<Periodo>, StoreError> {
    let row = sqlx::query(SELECT_PERIODO)
        .bind(codigo_periodo)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| periodo_from_row(&r)).transpose()
}

const GRUPO_VIEW_SQL: &str = "SELECT d.codigo_detalle, d.codigo_inscripcion, g.codigo_grupo, \
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

fn grupo_view_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<GrupoView, StoreError> {
    let materia = match r.try_get::<Option<String>, _>("sigla")? {
        Some(sigla) => Some(MateriaRef {
            sigla,
            nombre: r.try_get("materia_nombre")?,
            creditos: r.try_get("creditos")?,
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
        Some(codigo_horario) => {
            let dias: String = r.try_get("dias_semana")?;
            Some(HorarioRef {
                codigo_horario,
                dias_semana: parse_days("horario", &dias)?,
                hora_inicio: r.try_get("hora_inicio")?,
                hora_fin: r.try_get("hora_fin")?,
            })
        }
        None => None,
    };
    Ok(GrupoView {
        codigo_grupo: r.try_get("codigo_grupo")?,
        sigla_materia: r.try_get("sigla_materia")?,
        descripcion: r.try_get("descripcion")?,
        cupo: r.try_get("cupo")?,
        inscritos_actuales: r.try_get("inscritos_actuales")?,
        materia,
        docente,
        aula,
        horario,
    })
}

impl SqliteStore {
    pub(super) async fn inscripcion_full(
        &self,
        codigo_inscripcion: &str,
    ) -> Result<Option<InscripcionFull>, StoreError> {
        let mut conn = self.read.acquire().await?;
        let Some(inscripcion) = inscripcion_row(&mut conn, codigo_inscripcion).await? else {
            return Ok(None);
        };
        let estudiante = sqlx::query(SELECT_ESTUDIANTE)
            .bind(&inscripcion.registro_academico)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| estudiante_from_row(&r))
            .transpose()?;
        let periodo = periodo_row(&mut conn, &inscripcion.codigo_periodo).await?;
        let detalles = sqlx::query(
            "SELECT codigo_detalle, codigo_inscripcion, codigo_grupo FROM detalle_inscripcion \
             WHERE codigo_inscripcion = $1 ORDER BY codigo_detalle",
        )
        .bind(codigo_inscripcion)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| DetalleSimple {
            codigo_detalle: r.get(0),
            codigo_inscripcion: r.get(1),
            codigo_grupo: r.get(2),
        })
        .collect();
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
        let mut conn = self.read.acquire().await?;
        let inscripciones = sqlx::query(
            "SELECT codigo_inscripcion, registro_academico, codigo_periodo, fecha_inscripcion \
             FROM inscripcion WHERE registro_academico = $1 \
             ORDER BY fecha_inscripcion DESC, codigo_inscripcion DESC",
        )
        .bind(registro_academico)
        .fetch_all(&mut *conn)
        .await?;
        let rows = sqlx::query(GRUPO_VIEW_SQL)
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
        let rows = sqlx::query(
            "SELECT codigo_inscripcion, registro_academico, codigo_periodo, fecha_inscripcion \
             FROM inscripcion WHERE codigo_periodo = $1 \
             ORDER BY fecha_inscripcion DESC, codigo_inscripcion DESC",
        )
        .bind(codigo_periodo)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(inscripcion_from_row).collect()
    }

    pub(super) async fn statistics(&self) -> Result<EnrollmentStatistics, StoreError> {
        let mut conn = self.read.acquire().await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inscripcion")
            .fetch_one(&mut *conn)
            .await?;
        let per_period: Vec<(String, i64)> = sqlx::query_as(
            "SELECT p.codigo_periodo, COUNT(i.codigo_inscripcion) FROM periodo_academico p \
             LEFT JOIN inscripcion i ON i.codigo_periodo = p.codigo_periodo \
             GROUP BY p.codigo_periodo ORDER BY p.codigo_periodo",
        )
        .fetch_all(&mut *conn)
        .await?;
        let activos: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM estudiante WHERE estado_academico = 'REGULAR'",
        )
        .fetch_one(&mut *conn)
        .await?;
        let disponibles: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM grupo WHERE inscritos_actuales < cupo")
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
        let rows = sqlx::query(
            "SELECT codigo_periodo, semestre, fecha_inicio, fecha_fin, estado \
             FROM periodo_academico ORDER BY codigo_periodo",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(periodo_from_row).collect()
    }

    pub(super) async fn find_active_periodo(&self) -> Result<Option<Periodo>, StoreError> {
        let row = sqlx::query(
            "SELECT codigo_periodo, semestre, fecha_inicio, fecha_fin, estado \
             FROM periodo_academico WHERE estado = 'ACTIVO'",
        )
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| periodo_from_row(&r)).transpose()
    }
}
