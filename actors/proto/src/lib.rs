//! Keel's protocol as plain data: typed ids, tasks and their states, the resource
//! algebra, one module of messages per protocol, and the registry's state with the
//! operations that change it. No behaviour beyond validation and arithmetic, no I/O,
//! no clock: the pure cores (`keel-core`) and the actix shells (`keel-actors`) share
//! these types.

pub mod ids;
pub mod messages;
pub mod registry;
pub mod resources;
pub mod task;
pub mod time;
