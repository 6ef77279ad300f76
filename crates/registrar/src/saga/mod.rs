pub mod model;
pub mod participants;
pub mod runner;
