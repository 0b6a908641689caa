//! Agents in the simulation: their cores, their containers (a task runs for a drawn
//! duration and exits with a drawn code; some ignore SIGTERM), and their disks. A
//! crashed agent's containers keep running and their exits are remembered, as the
//! per-container waiter does on a real agent; the next agent process recovers from
//! the disk what it checkpointed (checkpointing frameworks' work) and the shell's
//! part is played here: the containers it does not recover are destroyed, and the
//! ones that ended meanwhile (or are gone) are reported to it at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use keel_core::agent::container::{ContainerId, ExitStatus, Termination};
use keel_core::agent::{
    self, Agent, Checkpoint, RecoveredAgent, RecoveredExecutor, RecoveredFramework, RecoveredTask,
};
use keel_proto::ids::{FrameworkId, TaskId};
use keel_proto::messages::Msg;
use keel_proto::task::AgentInfo;

use super::{micros, names, Container, Event, Node, Pid, World, SECOND};

impl World {
    pub(super) fn start_agent(&mut self, i: usize) {
        let master = self.known_master();
        let recovered = self.recovered_agent(i);
        let node = &mut self.agents[i];
        node.up = true;
        node.incarnation += 1;
        let info = AgentInfo {
            hostname: format!("agent-{i}"),
            id: None,
            resources: "cpus:4;mem:1024;disk:1024".parse().unwrap_or_default(),
            attributes: BTreeMap::new(),
        };
        let mut config =
            agent::AgentConfig::new(node.upid.clone(), master, format!("/sim/agent-{i}").into(), info);
        config.incarnation = self.rng.u64(..);
        config.seed = self.rng.u64(..);
        config.kill_grace_period = Duration::from_secs(2);
        node.core = Some(Agent::new(config));
        match recovered {
            Some(recovered) => {
                let recovering: BTreeSet<ContainerId> = recovered
                    .frameworks
                    .iter()
                    .flat_map(|f| f.executors.iter().map(|e| e.container.clone()))
                    .collect();
                // What it does not recover (frameworks that do not checkpoint) is destroyed.
                node.containers.retain(|id, _| recovering.contains(id));
                let tasks: usize =
                    recovered.frameworks.iter().flat_map(|f| f.executors.iter().map(|e| e.tasks.len())).sum();
                if tasks > 0 {
                    self.observe("agent_recovered_tasks");
                }
                self.log(|| format!("agent {i} starts and recovers {tasks} tasks"));
                self.agent_input(i, agent::Input::Recover(Box::new(recovered)));
                // Containers that ended while it was down, or are gone, end now.
                for container in recovering {
                    let status = match self.agents[i].containers.get_mut(&container) {
                        Some(c) if c.running => continue,
                        Some(c) => c.exited.take().unwrap_or(ExitStatus::Unknown),
                        None => ExitStatus::Unknown,
                    };
                    let termination = Termination { status, message: describe(status), memory_limit: None };
                    self.agent_input(i, agent::Input::ContainerExited { container, termination });
                }
            }
            None => {
                node.containers.clear();
                self.log(|| format!("agent {i} starts"));
                self.agent_input(i, agent::Input::Start);
            }
        }
        if let Some(leader) = self.election.last_leader.clone() {
            self.agent_input(i, agent::Input::MasterDetected(Some(leader)));
        }
    }

    /// What agent `i`'s disk says a previous process left, if it had registered.
    fn recovered_agent(&self, i: usize) -> Option<RecoveredAgent> {
        let disk = &self.agents[i].disk;
        let Some(Checkpoint::Agent(info)) = disk.get("agent") else { return None };
        let resources = match disk.get("resources") {
            Some(Checkpoint::Resources(total)) => Some(total.clone()),
            _ => None,
        };
        let mut frameworks = Vec::new();
        for checkpoint in disk.range("framework/".to_string().."framework0".to_string()).map(|(_, c)| c) {
            let Checkpoint::Framework { framework_id, info, scheduler } = checkpoint else { continue };
            let mut executors = Vec::new();
            let prefix = format!("executor/{framework_id}/");
            for (_, checkpoint) in disk.iter().filter(|(key, _)| key.starts_with(&prefix)) {
                let Checkpoint::Executor { executor_id, info, pid, container, sandbox, .. } = checkpoint
                else {
                    continue;
                };
                let prefix = format!("task/{framework_id}/{executor_id}/");
                let tasks = disk
                    .iter()
                    .filter(|(key, _)| key.starts_with(&prefix))
                    .filter_map(|(_, c)| match c {
                        Checkpoint::Task { info, state, pending, .. } => Some(RecoveredTask {
                            info: info.clone(),
                            state: *state,
                            pending: pending.clone(),
                        }),
                        _ => None,
                    })
                    .collect();
                executors.push(RecoveredExecutor {
                    executor_id: executor_id.clone(),
                    info: info.clone(),
                    pid: pid.clone(),
                    container: container.clone(),
                    sandbox: sandbox.clone(),
                    tasks,
                });
            }
            let mut info = info.clone();
            info.id = Some(framework_id.clone());
            frameworks.push(RecoveredFramework { info, scheduler: scheduler.clone(), executors });
        }
        Some(RecoveredAgent { info: info.clone(), resources, frameworks })
    }

    /// A container's main process ends: its agent is told if one runs, else the
    /// status is kept for the next one.
    pub(super) fn container_exit(&mut self, i: usize, container: ContainerId, status: ExitStatus) {
        let node = &mut self.agents[i];
        let Some(c) = node.containers.get_mut(&container) else { return };
        if !c.running {
            return;
        }
        c.running = false;
        let task = c.task_id.clone();
        if !node.up {
            c.exited = Some(status);
            self.log(|| format!("container of {task} on agent {i} (down): {}", describe(status)));
            return;
        }
        self.log(|| format!("container of {task} on agent {i}: {}", describe(status)));
        let termination = Termination { status, message: describe(status), memory_limit: None };
        self.agent_input(i, agent::Input::ContainerExited { container, termination });
    }

    pub(super) fn agent_input(&mut self, i: usize, input: agent::Input) {
        let now = self.secs();
        let Some(core) = self.agents[i].core.as_mut() else { return };
        let effects = core.handle(now, input);
        let incarnation = self.agents[i].incarnation;
        let me = self.agents[i].upid.clone();
        for effect in effects {
            match effect {
                agent::Effect::Send { to, message } => {
                    self.check_persisted(i, &message);
                    self.send(me.clone(), to, message);
                }
                agent::Effect::Link(to) => self.link(me.clone(), to),
                agent::Effect::Unlink(to) => self.network.unlink(&me, &to),
                agent::Effect::SetTimer(t) => {
                    self.at(micros(t.after), Event::Timer { pid: Pid::Agent(i), id: t.id, incarnation })
                }
                agent::Effect::CancelTimer(_) => {}
                agent::Effect::Launch(spec) => self.launch(i, spec),
                agent::Effect::Signal { container, .. } => {
                    let stubborn = self.agents[i].containers.get(&container).is_some_and(|c| c.stubborn);
                    if !stubborn {
                        let delay = self.rng.u64(10_000..2 * SECOND);
                        let status = ExitStatus::Signaled(15);
                        self.at(delay, Event::ContainerExit { agent: i, container, status });
                    }
                }
                agent::Effect::Update { .. } => {}
                agent::Effect::Destroy(container) => {
                    if self.agents[i].containers.get(&container).is_some_and(|c| c.running) {
                        let status = ExitStatus::Signaled(9);
                        self.at(1_000, Event::ContainerExit { agent: i, container, status });
                    }
                }
                agent::Effect::Checkpoint(checkpoint) => self.checkpoint(i, checkpoint),
                agent::Effect::Exit { reason } => {
                    self.log(|| format!("agent {i} exits: {reason}"));
                    self.crash(Node::Agent(i));
                    let down = self.rng.u64(SECOND..5 * SECOND);
                    self.at(down, Event::Restart(Node::Agent(i)));
                    return;
                }
            }
        }
    }

    fn launch(&mut self, i: usize, spec: keel_core::agent::container::ContainerSpec) {
        let framework_id = FrameworkId(spec.env.get("KEEL_FRAMEWORK_ID").cloned().unwrap_or_default());
        let task_id = TaskId(spec.env.get("KEEL_TASK_ID").cloned().unwrap_or_default());
        let incarnation = self.agents[i].incarnation;
        if self.faulty && self.rng.f64() < self.config.faults.launch_failure {
            self.count_fault("launch");
            self.at(0, Event::LaunchFailed { agent: i, incarnation, container: spec.id });
            return;
        }
        let key = (framework_id.clone(), task_id.clone());
        let record = self.ledger.tasks.entry(key).or_default();
        record.starts += 1;
        let starts = record.starts;
        let told = record.told_final;
        if starts > 1 {
            self.violation(
                names::TASK_RAN_TWICE,
                format!("task {task_id} of {framework_id} started {starts} times (now on agent {i})"),
            );
        }
        if let Some((state, when)) = told {
            self.violation(
                names::TASK_RAN_AFTER_FINAL,
                format!(
                    "task {task_id} of {framework_id} started on agent {i} after its framework was told {} at {:.3}s",
                    state.name(),
                    when as f64 / SECOND as f64
                ),
            );
        }
        self.tasks_launched += 1;
        let duration_ms = self.task_duration_ms(i, &framework_id, &task_id);
        let code = if self.rng.f64() < 0.85 { 0 } else { 1 };
        let stubborn = self.rng.f64() < 0.1;
        self.log(|| format!("container of {task_id} starts on agent {i} for {duration_ms} ms"));
        let container = Container { framework_id, task_id, running: true, exited: None, stubborn };
        self.agents[i].containers.insert(spec.id.clone(), container);
        let status = ExitStatus::Exited(code);
        self.at(duration_ms * 1_000, Event::ContainerExit { agent: i, container: spec.id, status });
    }

    fn task_duration_ms(&self, i: usize, framework_id: &FrameworkId, task_id: &TaskId) -> u64 {
        self.agents[i]
            .core
            .as_ref()
            .and_then(|c| c.frameworks().get(framework_id))
            .and_then(|f| f.executors.values().find_map(|e| e.tasks.get(task_id)))
            .and_then(|t| t.info.labels.get("sim.duration_ms"))
            .and_then(|d| d.parse().ok())
            .unwrap_or(1_000)
    }

    fn checkpoint(&mut self, i: usize, checkpoint: Checkpoint) {
        let disk = &mut self.agents[i].disk;
        match &checkpoint {
            Checkpoint::Task { framework_id, executor_id, info, .. } => {
                disk.insert(format!("task/{framework_id}/{executor_id}/{}", info.task_id), checkpoint);
            }
            Checkpoint::RemoveExecutor { framework_id, executor_id } => {
                let tasks = format!("task/{framework_id}/{executor_id}/");
                let executor = format!("executor/{framework_id}/{executor_id}");
                disk.retain(|k, _| !k.starts_with(&tasks) && *k != executor);
            }
            Checkpoint::RemoveFramework { framework_id } => {
                let tasks = format!("task/{framework_id}/");
                let executors = format!("executor/{framework_id}/");
                let framework = format!("framework/{framework_id}");
                disk.retain(|k, _| !k.starts_with(&tasks) && !k.starts_with(&executors) && *k != framework);
            }
            Checkpoint::Clear => disk.clear(),
            Checkpoint::Agent(_) => {
                disk.insert("agent".into(), checkpoint);
            }
            Checkpoint::Resources(_) => {
                disk.insert("resources".into(), checkpoint);
            }
            Checkpoint::Framework { framework_id, .. } => {
                disk.insert(format!("framework/{framework_id}"), checkpoint);
            }
            Checkpoint::Executor { framework_id, executor_id, .. } => {
                disk.insert(format!("executor/{framework_id}/{executor_id}"), checkpoint);
            }
        }
    }

    /// Persist first, then tell: an update of a checkpointing framework is on the
    /// agent's disk before it is sent.
    fn check_persisted(&mut self, i: usize, message: &Msg) {
        let Msg::StatusUpdate(update) = message else { return };
        let checkpointing = self.agents[i]
            .core
            .as_ref()
            .and_then(|c| c.frameworks().get(&update.framework_id))
            .is_some_and(|f| f.info.checkpoint);
        if !checkpointing {
            return;
        }
        let executor_id = update.executor_id.clone().unwrap_or_default();
        let key = format!("task/{}/{executor_id}/{}", update.framework_id, update.status.task_id);
        let on_disk = matches!(
            self.agents[i].disk.get(&key),
            Some(Checkpoint::Task { pending, .. }) if pending.iter().any(|p| p.uuid == update.uuid)
        );
        if !on_disk {
            self.violation(
                names::PERSIST_BEFORE_TELL,
                format!(
                    "agent {i} sent update {} of task {} before checkpointing it",
                    update.uuid, update.status.task_id
                ),
            );
        }
    }
}

fn describe(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(code) => format!("exited with status {code}"),
        ExitStatus::Signaled(signal) => format!("killed by signal {signal}"),
        ExitStatus::Unknown => "ended while no agent watched it; status unknown".to_string(),
    }
}
