//! keel-isolation.
