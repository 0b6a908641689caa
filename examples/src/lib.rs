//! keel-examples.
