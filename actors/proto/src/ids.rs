//! Typed identifiers: frameworks, agents, tasks, executors, offers, status updates.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }
    };
}

id_type!(
    /// A framework's id, assigned by the master at first subscription.
    FrameworkId
);
id_type!(
    /// An agent's id, assigned by the master at registration.
    AgentId
);
id_type!(
    /// A task's id, chosen by the framework; unique within the framework.
    TaskId
);
id_type!(
    /// An executor's id, chosen by the framework (the command executor uses the task id).
    ExecutorId
);
id_type!(
    /// An offer's id, assigned by the master.
    OfferId
);
id_type!(
    /// A status update's unique id: what acknowledgements name.
    UpdateId
);

impl UpdateId {
    /// A fresh random id (128 bits, hex) from the process-wide generator: for shells.
    pub fn random() -> UpdateId {
        UpdateId::from_rng(&mut fastrand::Rng::new())
    }

    /// A fresh random id (128 bits, hex) from a seeded generator: for the cores.
    pub fn from_rng(rng: &mut fastrand::Rng) -> UpdateId {
        UpdateId(format!("{:016x}{:016x}", rng.u64(..), rng.u64(..)))
    }
}

/// Hands out ids of the form `{prefix}-{kind}{n}`, like Mesos's `<master id>-S0`.
#[derive(Debug, Clone)]
pub struct IdGenerator {
    prefix: String,
    next: std::collections::BTreeMap<String, u64>,
}

impl IdGenerator {
    /// A generator whose ids start with `prefix`.
    pub fn new(prefix: impl Into<String>) -> IdGenerator {
        IdGenerator { prefix: prefix.into(), next: std::collections::BTreeMap::new() }
    }

    /// The next id with the given kind letter (`S` agents, `F` frameworks, `O` offers).
    pub fn next(&mut self, kind: &str) -> String {
        let counter = self.next.entry(kind.to_string()).or_insert(0);
        let id = format!("{}-{kind}{counter}", self.prefix);
        *counter += 1;
        id
    }
}
