//! Resilience policies for calls to dependencies: circuit breakers that stop calling a
//! dependency after repeated failures and probe it again after a recovery timeout.

pub mod breaker;
