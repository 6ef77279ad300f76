//! registrar: a course-registration service. Students enroll in course groups for an
//! academic period, directly or through a job queue whose rows live in the same database as
//! the enrollments.

pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod idempotency;
pub mod import;
pub mod jobs;
pub mod resilience;
pub mod saga;
pub mod seed;
pub mod shared_state;
pub mod store;
pub mod telemetry;
