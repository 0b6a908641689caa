//! The cluster's protocols, one module each: plain data, who sends it and when.
//!
//! Kinds are `keel.<protocol>.<Name>`. Messages that cross two protocols (status
//! updates, acknowledgements, kills, framework messages) are defined once in
//! `common` and keep their kind on every hop, as in Mesos.

pub mod agent;
pub mod common;
pub mod executor;
pub mod scheduler;
