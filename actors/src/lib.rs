//! Keel's cluster actors and the `keel` command line. This crate is where cluster
//! semantics live; the kernel below it knows nothing about clusters.

pub mod agent;
pub mod allocator;
pub mod bench;
pub mod cli;
pub mod demo;
pub mod detector;
pub mod etcd;
pub mod executor;
pub mod local;
pub mod master;
pub mod registry;
pub mod scheduler;
pub mod shell;
pub mod v1;

pub use keel_proto::{ids, messages, resources, task};
