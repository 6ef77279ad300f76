//! Idempotency records and saga logs on PostgreSQL: the shared statements, with row locks
//! so that concurrent requests with one key, and concurrent runs of one saga, queue up.

crate::store::resilience::resilience_queries!(
    conn = sqlx::PgConnection,
    database = sqlx::Postgres,
    row = sqlx::postgres::PgRow,
    lock = "FOR UPDATE",
    lock_record = "FOR UPDATE OF r",
    result_text = "j.result::text"
);
