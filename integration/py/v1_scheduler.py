"""An unmodified pymesos scheduler, run by integration/tests/mesos_v1.rs against Keel.

It subscribes, launches command tasks and one task on a custom executor written with
pymesos's executor driver (v1_executor.py), exchanges framework messages with that
executor, acknowledges every update (pymesos's implicit acknowledgements), reconciles
(implicitly and explicitly, with a task Keel never saw) and tears down. It prints one
line per thing it saw ("SEEN <json>") and "DONE" once everything happened; it exits 1
on a timeout or when the driver dies.

    python v1_scheduler.py MASTER COMMAND_TASKS EXECUTOR_COMMAND TIMEOUT_SECS
"""

import json
import logging
import sys
import threading
import time

from addict import Dict
from pymesos import MesosSchedulerDriver, Scheduler, decode_data, encode_data

MASTER, COMMAND_TASKS, EXECUTOR_COMMAND, TIMEOUT = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
CPUS, MEM = 0.1, 32


def seen(kind, **fields):
    fields["kind"] = kind
    print("SEEN " + json.dumps(fields, sort_keys=True), flush=True)


class TestScheduler(Scheduler):
    def __init__(self):
        self.lock = threading.Lock()
        self.to_launch = ["cmd-%d" % i for i in range(COMMAND_TASKS)] + ["exec-task"]
        self.states = {}
        self.final = set()
        self.messages = 0
        self.reconciling = False
        self.reconciled = set()
        self.done = threading.Event()

    def registered(self, driver, framework_id, master_info):
        seen("registered", framework_id=framework_id["value"], version=master_info.get("version"))

    def reregistered(self, driver, master_info):
        seen("reregistered")

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                cpus = sum(r.scalar.value for r in offer.resources if r.name == "cpus")
                mem = sum(r.scalar.value for r in offer.resources if r.name == "mem")
                tasks = []
                while self.to_launch and cpus >= 2 * CPUS and mem >= 2 * MEM:
                    task_id = self.to_launch.pop(0)
                    task = Dict()
                    task.task_id.value = task_id
                    task.agent_id.value = offer.agent_id.value
                    task.name = task_id
                    task.resources = [
                        dict(name="cpus", type="SCALAR", scalar={"value": CPUS}),
                        dict(name="mem", type="SCALAR", scalar={"value": MEM}),
                    ]
                    if task_id == "exec-task":
                        task.executor.executor_id.value = "pymesos-executor"
                        task.executor.name = "pymesos executor"
                        task.executor.command.value = EXECUTOR_COMMAND
                        task.executor.resources = [
                            dict(name="cpus", type="SCALAR", scalar={"value": CPUS}),
                            dict(name="mem", type="SCALAR", scalar={"value": MEM}),
                        ]
                        task.data = encode_data(b"task data")
                        cpus -= CPUS
                        mem -= MEM
                    else:
                        task.command.value = "echo hello from %s" % task_id
                    tasks.append(task)
                    cpus -= CPUS
                    mem -= MEM
            if tasks:
                seen("launch", tasks=[t.task_id.value for t in tasks], agent_id=offer.agent_id.value)
                driver.launchTasks(offer.id, tasks)
            else:
                driver.declineOffer(offer.id, Dict(refuse_seconds=1.0))

    def statusUpdate(self, driver, update):
        task_id = update.task_id.value
        seen("update", task_id=task_id, state=update.state, reason=update.get("reason"),
             source=update.get("source"), has_uuid="uuid" in update, message=update.get("message"))
        with self.lock:
            if self.reconciling and update.get("reason") == "REASON_RECONCILIATION":
                self.reconciled.add(task_id)
                if {"never-launched", "cmd-0"} <= self.reconciled:
                    self.done.set()
                return
            self.states[task_id] = update.state
            if update.state in ("TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR"):
                self.final.add(task_id)
            self.maybe_reconcile(driver)

    def frameworkMessage(self, driver, executor_id, agent_id, message):
        data = decode_data(message).decode()
        seen("message", executor_id=executor_id["value"], data=data)
        if data == "hello from the executor":
            driver.sendFrameworkMessage(executor_id, agent_id, encode_data(b"ping"))
        elif data == "pong":
            with self.lock:
                self.messages += 1
                self.maybe_reconcile(driver)

    def maybe_reconcile(self, driver):
        everything = COMMAND_TASKS + 1
        if not self.reconciling and len(self.final) == everything and self.messages >= 1:
            self.reconciling = True
            seen("reconcile")
            driver.reconcileTasks([])
            driver.reconcileTasks([{"task_id": {"value": "cmd-0"}}, {"task_id": {"value": "never-launched"}}])

    def error(self, driver, message):
        seen("error", message=message)


def main():
    logging.basicConfig(level=logging.WARNING)
    framework = Dict()
    framework.user = ""
    framework.name = "pymesos-on-keel"
    framework.hostname = "localhost"
    scheduler = TestScheduler()
    driver = MesosSchedulerDriver(scheduler, framework, MASTER, use_addict=True)
    driver.start()
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and not scheduler.done.is_set():
        if driver.aborted:
            seen("aborted")
            sys.exit(1)
        time.sleep(0.1)
    if not scheduler.done.is_set():
        seen("timeout", states=scheduler.states, messages=scheduler.messages)
        driver.stop()
        sys.exit(1)
    driver.stop()  # TEARDOWN
    driver.join()
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
