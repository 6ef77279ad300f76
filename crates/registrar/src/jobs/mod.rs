//! The job queue: jobs are database rows, enqueued in the request's transaction and run by
//! worker pools that claim them with a lease.

pub mod model;
pub mod result;
pub mod worker;
