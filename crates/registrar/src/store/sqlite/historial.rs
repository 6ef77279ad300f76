//! The academic record and period closing on SQLite. Writes run in `BEGIN IMMEDIATE`
//! transactions, so the existence checks and the insert see no concurrent writer.

use sqlx::SqliteConnection;
use time::Date;

use super::convert::{estudiante_from_row, historial_from_row, materia_from_row};
use super::reads::periodo_row;
use super::{SqliteStore, finish};
use crate::domain::enrollment::EnrollError;
use crate::domain::error::DomainError;
use crate::domain::historial::{
    HistorialCompleto, HistorialQuery, HistorialRecord, HistorialUpdate, NewHistorial,
    apply_update, check_update, historial_duplicado, historial_not_found, materia_not_found,
};
use crate::domain::model::{PERIODO_CERRADO, Periodo};
use crate::domain::views::MateriaRef;
use crate::store::StoreError;
use crate::store::sql;

/// Returns whether `statement` finds a row for `key`.
async fn exists(
    conn: &mut SqliteConnection,
    statement: &'static str,
    key: &str,
) -> Result<bool, StoreError> {
    let row = sqlx::query(statement)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.is_some())
}

async fn record_row(
    conn: &mut SqliteConnection,
    id_historial: i64,
) -> Result<Option<HistorialRecord>, StoreError> {
    let row = sqlx::query(sql::SELECT_HISTORIAL)
        .bind(id_historial)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| historial_from_row(&r)).transpose()
}

async fn materia_row(
    conn: &mut SqliteConnection,
    sigla: &str,
) -> Result<Option<MateriaRef>, StoreError> {
    let row = sqlx::query(sql::SELECT_MATERIA)
        .bind(sigla)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| materia_from_row(&r)).transpose()
}

impl SqliteStore {
    pub(super) async fn insert_historial(
        &self,
        new: &NewHistorial,
        today: Date,
    ) -> Result<HistorialRecord, EnrollError> {
        let mut tx = self.begin_write().await?;
        let result = async {
            if !exists(&mut tx, sql::ESTUDIANTE_EXISTS, &new.registro_academico).await? {
                return Err(DomainError::estudiante_not_found(&new.registro_academico).into());
            }
            if !exists(&mut tx, sql::MATERIA_EXISTS, &new.sigla_materia).await? {
                return Err(materia_not_found(&new.sigla_materia).into());
            }
            if !exists(&mut tx, sql::PERIODO_EXISTS, &new.codigo_periodo).await? {
                return Err(DomainError::periodo_not_found(&new.codigo_periodo).into());
            }
            let id: Option<i64> = sqlx::query_scalar(sql::INSERT_HISTORIAL)
                .bind(&new.registro_academico)
                .bind(&new.sigla_materia)
                .bind(&new.codigo_periodo)
                .bind(new.nota_final)
                .bind(&new.estado)
                .bind(&new.observacion)
                .bind(today.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            let Some(id) = id else {
                return Err(historial_duplicado(new).into());
            };
            let record = record_row(&mut tx, id).await?.ok_or_else(|| {
                StoreError::corrupt("historial_academico", "inserted row not found")
            })?;
            Ok(record)
        }
        .await;
        finish(tx, result).await
    }

    pub(super) async fn historial_completo(
        &self,
        id_historial: i64,
    ) -> Result<Option<HistorialCompleto>, StoreError> {
        let mut conn = self.read.acquire().await?;
        let Some(record) = record_row(&mut conn, id_historial).await? else {
            return Ok(None);
        };
        // The foreign keys keep the three rows from disappearing while the row exists.
        let missing =
            |what: &str| StoreError::corrupt("historial_academico", format!("{what} missing"));
        let estudiante = sqlx::query(sql::SELECT_ESTUDIANTE)
            .bind(&record.registro_academico)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| estudiante_from_row(&r))
            .transpose()?
            .ok_or_else(|| missing("estudiante"))?;
        let materia = materia_row(&mut conn, &record.sigla_materia)
            .await?
            .ok_or_else(|| missing("materia"))?;
        let periodo = periodo_row(&mut conn, &record.codigo_periodo)
            .await?
            .ok_or_else(|| missing("periodo_academico"))?;
        Ok(Some(HistorialCompleto {
            record,
            estudiante,
            materia,
            periodo,
        }))
    }

    pub(super) async fn select_historial(
        &self,
        query: HistorialQuery<'_>,
    ) -> Result<Vec<HistorialRecord>, StoreError> {
        let rows = match query {
            HistorialQuery::Student {
                registro_academico,
                codigo_periodo,
                estado,
            } => {
                sqlx::query(sql::SELECT_STUDENT_HISTORIAL)
                    .bind(registro_academico)
                    .bind(codigo_periodo)
                    .bind(estado)
                    .fetch_all(&self.read)
                    .await?
            }
            HistorialQuery::Materia {
                sigla_materia,
                codigo_periodo,
            } => {
                sqlx::query(sql::SELECT_MATERIA_HISTORIAL)
                    .bind(sigla_materia)
                    .bind(codigo_periodo)
                    .fetch_all(&self.read)
                    .await?
            }
            HistorialQuery::Periodo { codigo_periodo } => {
                sqlx::query(sql::SELECT_PERIODO_HISTORIAL)
                    .bind(codigo_periodo)
                    .fetch_all(&self.read)
                    .await?
            }
        };
        rows.iter().map(historial_from_row).collect()
    }

    pub(super) async fn change_historial(
        &self,
        id_historial: i64,
        update: &HistorialUpdate,
    ) -> Result<HistorialRecord, EnrollError> {
        let mut tx = self.begin_write().await?;
        let result = async {
            let current = record_row(&mut tx, id_historial)
                .await?
                .ok_or_else(|| historial_not_found(id_historial))?;
            let update = check_update(update)?;
            let updated = apply_update(current, &update);
            sqlx::query(sql::UPDATE_HISTORIAL)
                .bind(updated.nota_final)
                .bind(&updated.estado)
                .bind(&updated.observacion)
                .bind(id_historial)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            Ok(updated)
        }
        .await;
        finish(tx, result).await
    }

    pub(super) async fn remove_historial(&self, id_historial: i64) -> Result<(), EnrollError> {
        let deleted = sqlx::query(sql::DELETE_HISTORIAL)
            .bind(id_historial)
            .execute(&self.write)
            .await
            .map_err(StoreError::from)?;
        if deleted.rows_affected() == 0 {
            return Err(historial_not_found(id_historial).into());
        }
        Ok(())
    }

    pub(super) async fn find_materia(&self, sigla: &str) -> Result<Option<MateriaRef>, StoreError> {
        let mut conn = self.read.acquire().await?;
        materia_row(&mut conn, sigla).await
    }

    pub(super) async fn set_periodo_cerrado(
        &self,
        codigo_periodo: &str,
    ) -> Result<Periodo, EnrollError> {
        let mut tx = self.begin_write().await?;
        let result = async {
            let mut periodo = periodo_row(&mut tx, codigo_periodo)
                .await?
                .ok_or_else(|| DomainError::periodo_not_found(codigo_periodo))?;
            sqlx::query(sql::CLOSE_PERIODO)
                .bind(codigo_periodo)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            periodo.estado = Some(PERIODO_CERRADO.to_owned());
            Ok(periodo)
        }
        .await;
        finish(tx, result).await
    }
}
