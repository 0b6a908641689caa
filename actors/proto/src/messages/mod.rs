//! The cluster's protocols, one module each: plain data, who sends it and when.
//!
//! Kinds are `keel.<protocol>.<Name>`. Messages that cross two protocols (status
//! updates, acknowledgements, kills, framework messages) are defined once in
//! `common` and keep their kind on every hop, as in Mesos.
//!
//! [`Msg`] holds any one of them: what the pure cores take and emit. A shell turns
//! a `Msg` back into its typed message with [`Msg::visit`] to send it, and
//! [`Msg::decode`] reads one from a kind and a body.

pub mod agent;
pub mod common;
pub mod executor;
pub mod scheduler;

use keel_message::Message;

use self::agent::*;
use self::common::*;
use self::executor::*;
use self::scheduler::*;

/// Something that takes a typed message: how a shell sends a [`Msg`].
pub trait Visit {
    /// What the visit returns.
    type Output;
    /// Takes the message.
    fn visit<M: Message + Clone + std::fmt::Debug>(self, message: M) -> Self::Output;
}

macro_rules! protocol {
    ($($name:ident),* $(,)?) => {
        /// Any message of Keel's protocols.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)] // moved, not stored in bulk
        pub enum Msg {
            $(
                #[doc = concat!("[`", stringify!($name), "`]")]
                $name($name),
            )*
        }

        $(
            impl From<$name> for Msg {
                fn from(message: $name) -> Msg {
                    Msg::$name(message)
                }
            }

            impl TryFrom<Msg> for $name {
                type Error = Msg;
                fn try_from(message: Msg) -> Result<$name, Msg> {
                    match message {
                        Msg::$name(message) => Ok(message),
                        other => Err(other),
                    }
                }
            }
        )*

        /// Every kind of the protocols.
        pub const KINDS: &[&str] = &[$(<$name as Message>::KIND),*];

        impl Msg {
            /// The message's kind on the wire.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Msg::$name(_) => <$name as Message>::KIND,)*
                }
            }

            /// Hands the typed message to `visitor`.
            pub fn visit<V: Visit>(self, visitor: V) -> V::Output {
                match self {
                    $(Msg::$name(message) => visitor.visit(message),)*
                }
            }

            /// Decodes a body of `kind`: `None` for a kind that is not Keel's,
            /// `Some(Err)` for a body that does not decode.
            pub fn decode(kind: &str, body: &[u8]) -> Option<Result<Msg, String>> {
                $(
                    if kind == <$name as Message>::KIND {
                        return Some(
                            keel_message::message::decode::<$name>(body)
                                .map(Msg::$name)
                                .map_err(|e| e.to_string()),
                        );
                    }
                )*
                None
            }

            /// Deserializes a message of `kind` from any serde deserializer: `None`
            /// for a kind that is not Keel's (for tools and property tests).
            pub fn deserialize_kind<'de, D: serde::Deserializer<'de>>(
                kind: &str,
                deserializer: D,
            ) -> Option<Result<Msg, D::Error>> {
                $(
                    if kind == <$name as Message>::KIND {
                        return Some(<$name as serde::Deserialize>::deserialize(deserializer).map(Msg::$name));
                    }
                )*
                None
            }

            /// Encodes the body.
            pub fn encode(&self) -> Vec<u8> {
                match self {
                    // Plain data always encodes.
                    $(Msg::$name(message) => keel_message::message::encode(message).unwrap_or_default(),)*
                }
            }
        }
    };
}

protocol! {
    // Agent <-> master.
    RegisterAgent, ReregisterAgent, AgentRegistered, AgentReregistered, Ping, Pong, ShutdownAgent,
    UnregisterAgent, RunTask, CheckLaunches, LaunchesChecked, ShutdownFramework, ShutdownExecutor,
    ExitedExecutor, CheckpointResources, UpdateFramework,
    // Several hops.
    StatusUpdate, StatusUpdateAcknowledgement, KillTask, FrameworkToExecutorMessage,
    ExecutorToFrameworkMessage,
    // Executor <-> agent.
    RegisterExecutor, ExecutorRegistered, ReregisterExecutor, ExecutorReregistered, LaunchTask,
    // Scheduler <-> master.
    SubscribeFramework, FrameworkSubscribed, FrameworkError, ResourceOffers, RescindOffer, AcceptOffers,
    DeclineOffers, ReviveOffers, SuppressOffers, ReconcileTasks, TeardownFramework, DeactivateFramework,
    AgentLost, ExecutorLost,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_unique_and_decode_back() {
        let mut kinds = KINDS.to_vec();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), KINDS.len());
        let ping = Msg::from(Ping { connected: true, round: 3, epoch: 2 });
        let back = Msg::decode(ping.kind(), &ping.encode()).unwrap().unwrap();
        assert_eq!(back, ping);
        assert!(Msg::decode("keel.nope.Nope", &[]).is_none());
        assert!(Msg::decode(ping.kind(), &[0xc1]).unwrap().is_err());
    }

    fn subjects_of(message: &impl keel_message::Message) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        message.subjects(&mut |label, id| out.push((label, id.to_string())));
        out
    }

    #[test]
    fn messages_about_tasks_name_their_framework_agent_and_task() {
        use crate::ids::{AgentId, FrameworkId, TaskId, UpdateId};
        let ack = StatusUpdateAcknowledgement {
            agent_id: AgentId("S1".into()),
            framework_id: FrameworkId("F1".into()),
            task_id: TaskId("t1".into()),
            uuid: UpdateId("u".into()),
        };
        assert_eq!(
            subjects_of(&ack),
            [
                ("uuid", "u".to_string()),
                ("framework", "F1".to_string()),
                ("agent", "S1".to_string()),
                ("task", "t1".to_string())
            ]
        );
        let kill =
            KillTask { framework_id: FrameworkId("F1".into()), task_id: TaskId("t1".into()), agent_id: None };
        assert_eq!(subjects_of(&kill), [("framework", "F1".to_string()), ("task", "t1".to_string())]);
        assert!(subjects_of(&Ping { connected: true, round: 1, epoch: 1 }).is_empty());
    }
}
