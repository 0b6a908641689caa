"""A custom executor written with pymesos's executor driver, launched by Keel's agent
for v1_scheduler.py. It reports its task RUNNING, says hello to the scheduler, answers
its "ping" with "pong" and then finishes the task."""

import logging
import sys
import threading

from addict import Dict
from pymesos import Executor, MesosExecutorDriver, decode_data, encode_data


class TestExecutor(Executor):
    def __init__(self):
        self.task_id = None

    def launchTask(self, driver, task):
        self.task_id = task.task_id.value
        assert decode_data(task.data) == b"task data"
        update = Dict()
        update.task_id.value = self.task_id
        update.state = "TASK_RUNNING"
        driver.sendStatusUpdate(update)
        driver.sendFrameworkMessage(encode_data(b"hello from the executor"))

    def frameworkMessage(self, driver, message):
        if decode_data(message) == b"ping":
            driver.sendFrameworkMessage(encode_data(b"pong"))
            update = Dict()
            update.task_id.value = self.task_id
            update.state = "TASK_FINISHED"
            driver.sendStatusUpdate(update)

    def killTask(self, driver, task_id):
        update = Dict()
        update.task_id.value = task_id.value
        update.state = "TASK_KILLED"
        driver.sendStatusUpdate(update)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    MesosExecutorDriver(TestExecutor(), use_addict=True).run()
