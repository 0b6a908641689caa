//! Frameworks written against `keel-actors`, each a library (driven by the tests on
//! an in-process cluster) behind a thin binary:
//!
//! - [`batch`]: runs a list of shell commands across the cluster with bounded retries
//!   (`keel-batch`).
//! - [`pi`]: estimates pi with a custom executor fed over framework messages, the
//!   scheduler written as an actor with its own timer message (`keel-pi`,
//!   `keel-pi-executor`).
//!
//! Invariant: nothing depends on this crate.

pub mod batch;
pub mod pi;
pub mod support;
