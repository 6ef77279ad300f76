//! Idempotent enqueues on SQLite, where JSON columns hold text.

fn json_text(value: &serde_json::Value) -> String {
    value.to_string()
}

crate::store::enqueue::enqueue_queries!(
    conn = sqlx::SqliteConnection,
    database = sqlx::Sqlite,
    claim_key = super::resilience::claim_key,
    json = json_text,
    position = i64
);
