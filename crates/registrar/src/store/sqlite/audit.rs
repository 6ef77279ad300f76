//! The audit trail on SQLite, where `data` is JSON text.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::audit::{AuditEvent, AuditFilter, AuditRecord};
use crate::store::StoreError;
use crate::store::audit::{AuditBind, EVENTS_PER_STATEMENT, list_query};

impl SqliteStore {
    pub(super) async fn insert_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let events: Vec<&AuditEvent> = events.iter().collect();
        // One multi-row statement commits on its own, which saves the round trips of BEGIN
        // and COMMIT. More events than one statement takes share a transaction.
        if events.len() <= EVENTS_PER_STATEMENT {
            let mut conn = self.write_connection().await?;
            return super::enqueue::insert_events(&mut conn, &events).await;
        }
        let mut tx = self.begin_write().await?;
        super::enqueue::insert_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn list_audit(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let (sql, binds) = list_query(filter);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for bind in binds {
            query = match bind {
                AuditBind::Int(v) => query.bind(v),
                AuditBind::Text(v) => query.bind(v),
            };
        }
        let rows = query.fetch_all(&self.read).await?;
        rows.iter().map(record_from_row).collect()
    }
}

fn record_from_row(row: &SqliteRow) -> Result<AuditRecord, StoreError> {
    let data: String = row.try_get("data")?;
    Ok(AuditRecord {
        id: row.try_get("id")?,
        occurred_at: crate::clock::rfc3339_from_ms(row.try_get("occurred_at")?),
        event_type: row.try_get("event_type")?,
        entity_type: row.try_get("entity_type")?,
        entity_id: row.try_get("entity_id")?,
        action: row.try_get("action")?,
        correlation_id: row.try_get("correlation_id")?,
        request_id: row.try_get("request_id")?,
        registro_academico: row.try_get("registro_academico")?,
        codigo_periodo: row.try_get("codigo_periodo")?,
        codigo_grupo: row.try_get("codigo_grupo")?,
        error_code: row.try_get("error_code")?,
        data: serde_json::from_str(&data).map_err(|e| StoreError::corrupt("audit_event", e))?,
    })
}
