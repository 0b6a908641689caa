//! Keel's cluster actors and the `keel` command line. This crate is where cluster
//! semantics live; the kernel below it knows nothing about clusters.

pub mod demo;
