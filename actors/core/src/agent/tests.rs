//! Effect tests of the agent core.
