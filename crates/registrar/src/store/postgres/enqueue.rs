//! Idempotent enqueues on PostgreSQL, where JSON columns are JSONB.

fn json_value(value: &serde_json::Value) -> &serde_json::Value {
    value
}

crate::store::enqueue::enqueue_queries!(
    conn = sqlx::PgConnection,
    database = sqlx::Postgres,
    claim_key = super::resilience::claim_key,
    json = json_value,
    position = i32
);
