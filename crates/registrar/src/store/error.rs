//! Store failures, classified so callers can tell a retryable hiccup from a bug.

use crate::domain::error::{DomainError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    /// The task that writes enqueue requests has stopped, because the process is shutting
    /// down or the task failed.
    #[error("the enqueue writer has stopped; retry on another instance or after the restart")]
    EnqueueWriterStopped,
}

/// SQLSTATEs of PostgreSQL errors that a retry can cure: serialization failure, deadlock,
/// lock timeout, query cancelled by statement timeout, and the server shutting down.
const TRANSIENT_SQLSTATES: &[&str] = &["40001", "40P01", "55P03", "57014", "57P01", "57P03"];

impl StoreError {
    pub fn corrupt(table: &'static str, reason: impl ToString) -> Self {
        Self::Corrupt {
            table,
            reason: reason.to_string(),
        }
    }

    /// True for failures that may pass on retry: a busy or locked SQLite file, a lost or
    /// exhausted connection, a PostgreSQL serialization failure or deadlock, and a stopped
    /// enqueue writer.
    pub fn is_transient(&self) -> bool {
        let err = match self {
            Self::Database(err) => err,
            Self::EnqueueWriterStopped => return true,
            Self::Migrate(_) | Self::Corrupt { .. } => return false,
        };
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    // 5 is SQLITE_BUSY and 6 SQLITE_LOCKED; extended codes keep them in the
                    // low byte.
                    return code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6));
                }
                TRANSIENT_SQLSTATES.contains(&code.as_ref())
                    || code.starts_with("08")
                    // Insufficient resources (too many connections, disk full) and a database
                    // or role that is gone or refused: the server is unavailable to us, and
                    // an operator may bring it back.
                    || code.starts_with("53")
                    || code.starts_with("28")
                    || code == "3D000"
            }
            _ => false,
        }
    }

    /// Maps a constraint violation to the contract's error code, without the driver's text.
    pub fn as_constraint_error(&self) -> Option<DomainError> {
        let Self::Database(sqlx::Error::Database(db)) = self else {
            return None;
        };
        let constraint = db.constraint().unwrap_or("").to_owned();
        let (code, message) = match db.kind() {
            sqlx::error::ErrorKind::UniqueViolation => (
                ErrorCode::DuplicateRecord,
                "A record with this key already exists",
            ),
            sqlx::error::ErrorKind::ForeignKeyViolation => (
                ErrorCode::InvalidReference,
                "A referenced record does not exist",
            ),
            sqlx::error::ErrorKind::CheckViolation => (
                ErrorCode::IntegrityError,
                "A value breaks a rule of the schema",
            ),
            sqlx::error::ErrorKind::NotNullViolation => {
                (ErrorCode::ValidationError, "A required value is missing")
            }
            // PostgreSQL's data exceptions (class 22): a value the column cannot hold, such
            // as a NUL character or a number out of range.
            _ if db.code().is_some_and(|c| c.starts_with("22")) => (
                ErrorCode::ValidationError,
                "A value contains characters or a size the database cannot store; \
                 remove control characters and check number ranges",
            ),
            _ => return None,
        };
        Some(DomainError::new(
            code,
            message,
            serde_json::json!({ "constraint": constraint }),
        ))
    }
}
