//! Effect tests of the master core: inputs in, effects checked; no sockets, no sleeps.
