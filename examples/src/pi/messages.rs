//! The pi framework's messages, plain data. Framework messages (scheduler <->
//! executor, relayed by the master and the agent, best effort) are JSON payloads;
//! [`Tick`] is a kernel message the scheduler process sends itself.

use serde::{Deserialize, Serialize};

/// One unit of work: draw `samples` points with `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkUnit {
    /// The unit's number, `0..units`.
    pub unit: u64,
    /// The PRNG seed.
    pub seed: u64,
    /// Points to draw.
    pub samples: u64,
}

/// A unit's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitResult {
    /// The unit's number.
    pub unit: u64,
    /// Points drawn.
    pub samples: u64,
    /// Points inside the quarter circle.
    pub hits: u64,
}

/// Scheduler -> executor, in `FrameworkToExecutorMessage::data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToExecutor {
    /// Compute this unit and answer with [`FromExecutor::Result`]. Sent when the
    /// executor's task is RUNNING, a few units in flight per executor; resent
    /// (possibly to another executor) when no answer came in time.
    Work(WorkUnit),
    /// Every unit is in: finish the task (TASK_FINISHED) and exit. Resent until the
    /// task is terminal.
    Done,
}

/// Executor -> scheduler, in `ExecutorToFrameworkMessage::data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromExecutor {
    /// The answer to one [`ToExecutor::Work`].
    Result(UnitResult),
}

impl ToExecutor {
    /// The JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        // Plain data with no maps keyed by non-strings always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a payload.
    pub fn decode(data: &[u8]) -> Result<ToExecutor, serde_json::Error> {
        serde_json::from_slice(data)
    }
}

impl FromExecutor {
    /// The JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a payload.
    pub fn decode(data: &[u8]) -> Result<FromExecutor, serde_json::Error> {
        serde_json::from_slice(data)
    }
}

/// The scheduler's timer, sent to itself every [`TICK`](super::scheduler::TICK):
/// resends units and "done" messages that went unanswered, and bounds the wait for
/// the executors to finish.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {}
keel_kernel::message!(Tick, "keel.examples.pi.Tick");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_as_json() {
        let work = ToExecutor::Work(WorkUnit { unit: 3, seed: 9, samples: 100 });
        assert_eq!(ToExecutor::decode(&work.encode()).ok(), Some(work));
        assert_eq!(ToExecutor::Done.encode(), b"\"done\"");
        let result = FromExecutor::Result(UnitResult { unit: 3, samples: 100, hits: 78 });
        let text = String::from_utf8(result.encode()).expect("utf-8");
        assert_eq!(text, r#"{"result":{"unit":3,"samples":100,"hits":78}}"#);
        assert!(FromExecutor::decode(b"garbage").is_err());
    }
}
