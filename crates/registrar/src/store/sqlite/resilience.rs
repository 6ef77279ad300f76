//! Idempotency records and saga logs on SQLite: the shared statements, without row locks,
//! which SQLite's serial write transactions make unnecessary.

crate::store::resilience::resilience_queries!(
    conn = sqlx::SqliteConnection,
    database = sqlx::Sqlite,
    row = sqlx::sqlite::SqliteRow,
    lock = "",
    lock_record = "",
    result_text = "j.result"
);
