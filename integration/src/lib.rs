//! keel-integration.
