//! SQL of the audit trail, shared by both backends: the insert's size limit, and the listing
//! query built from the filters that are present.

use crate::audit::AuditFilter;

/// Audit events that one multi-row insert takes within the bind limit, at 12 columns each.
pub(crate) const EVENTS_PER_STATEMENT: usize = crate::store::enqueue::MAX_BINDS / 12;

/// A value bound to a placeholder of [`list_query`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AuditBind {
    Int(i64),
    Text(String),
}

/// Builds the listing query for `filter`, newest first, with its values in placeholder order.
/// Only present filters become conditions, so each query can use the index that fits it.
pub(crate) fn list_query(filter: &AuditFilter) -> (String, Vec<AuditBind>) {
    let mut conditions: Vec<String> = Vec::new();
    let mut binds = Vec::new();
    let mut add = |column_test: &str, value: AuditBind| {
        binds.push(value);
        conditions.push(format!("{column_test} ${}", binds.len()));
    };

    if let Some(from) = filter.from_ms {
        add("occurred_at >=", AuditBind::Int(from));
    }
    if let Some(to) = filter.to_ms {
        add("occurred_at <", AuditBind::Int(to));
    }
    let text_filters = [
        ("registro_academico =", &filter.registro_academico),
        ("correlation_id =", &filter.correlation_id),
        ("codigo_grupo =", &filter.codigo_grupo),
        ("error_code =", &filter.error_code),
    ];
    for (test, value) in text_filters {
        if let Some(value) = value {
            add(test, AuditBind::Text(value.clone()));
        }
    }
    if let Some(event_type) = filter.event_type {
        add(
            "event_type =",
            AuditBind::Text(event_type.as_str().to_owned()),
        );
    }
    if let Some(before) = filter.before_id {
        add("id <", AuditBind::Int(before));
    }
    binds.push(AuditBind::Int(filter.limit));
    let limit_placeholder = binds.len();

    let mut sql = String::from(
        "SELECT id, occurred_at, event_type, entity_type, entity_id, action, correlation_id, \
         request_id, registro_academico, codigo_periodo, codigo_grupo, error_code, data \
         FROM audit_event",
    );
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${limit_placeholder}"));
    (sql, binds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEventType;

    #[test]
    fn list_query_numbers_placeholders_in_bind_order() {
        let filter = AuditFilter {
            from_ms: Some(10),
            codigo_grupo: Some("G-1".into()),
            event_type: Some(AuditEventType::InscriptionFailed),
            limit: 5,
            ..AuditFilter::default()
        };
        let (sql, binds) = list_query(&filter);
        assert!(sql.contains("occurred_at >= $1 AND codigo_grupo = $2 AND event_type = $3"));
        assert!(sql.ends_with("ORDER BY id DESC LIMIT $4"));
        assert_eq!(binds.len(), 4);
        assert_eq!(binds[3], AuditBind::Int(5));
    }

    #[test]
    fn list_query_without_filters_has_no_where() {
        let (sql, binds) = list_query(&AuditFilter {
            limit: 1,
            ..AuditFilter::default()
        });
        assert!(!sql.contains("WHERE"));
        assert_eq!(binds, vec![AuditBind::Int(1)]);
    }
}
