//! Business rules and records, free of HTTP and SQL.

pub mod catalog;
pub mod enrollment;
pub mod error;
pub mod historial;
pub mod model;
pub mod periodo;
pub mod schedule;
pub mod validation;
pub mod views;
