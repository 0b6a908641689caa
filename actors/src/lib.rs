//! keel-actors.
