"""The manager process: owns the Work Queue queue and nothing else.

Started by the executor as ``python -m parsl_wq.manager READ_FD WRITE_FD BELL_READ_FD BELL_WRITE_FD``.
Work Queue's ``wait`` holds the GIL for up to a second, so the queue lives in
a process of its own; this module imports only the standard library and Work
Queue: it is ready in about 0.2 s here, most of it importing Work Queue's
own module (importing Parsl would add about half a second).

Conversation over the channel (see ``parsl_wq.messages``)::

    executor                          manager
    ManagerConfig  ------------->
                   <-------------  Ready(port) | StartFailed(reason)
    SubmitTask     ------------->  queue.submit, alone or with others (a bundle)
                   <-------------  TaskDone (one per app, from queue.wait)
                   <-------------  QueueState (about once a second)
    Stop           ------------->  exit; workers are told to leave if the
                                   executor started them
    EOF            ------------->  the executor's process died: the same, and for
                                   ORPHAN_GRACE seconds workers that reconnect
                                   are told to leave again
"""

import dataclasses
import itertools
import os
import pickle
import sys
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Dict, List, Optional, Tuple

from parsl_wq import allocation, bundles, monitor, runner, warm
from parsl_wq.engine import load_work_queue
from parsl_wq.messages import Channel, ManagerConfig, Ready, StartFailed, Stop, SubmitTask, TaskDone, TaskUsage
from parsl_wq.queue_state import QueueStateSender
from parsl_wq.waiting import ChannelWait

OUTPUT_TAIL = 4000      # characters of a task's output kept for error messages
WAIT_SECONDS = 5        # longest wait for Work Queue; a message from the executor ends it at once
ORPHAN_GRACE = 5        # seconds to keep telling reconnecting workers to leave
IDLE_POLL = 1           # seconds between looks at the workers while no task is in Work Queue
MAX_RESTARTS = 3        # times a task that a worker could not start is submitted again


def create_queue(wq: ModuleType, config: ManagerConfig):
    """The configured queue, and the resource monitor binary each task must carry (or None)."""
    debug_log = os.path.join(config.log_dir, "debug.log") if config.debug_log else None
    tls = {"ssl": config.ssl} if config.ssl else {}    # builds without TLS have no ssl parameter
    queue = wq.WorkQueue(config.port, debug_log=debug_log,
                         stats_log=os.path.join(config.log_dir, "stats.log"),
                         transactions_log=os.path.join(config.log_dir, "transactions.log"), **tls)
    if config.catalog:
        host, port = config.catalog.rsplit(":", 1)
        queue.specify_catalog_server(host, int(port))
    if config.project_name:
        queue.specify_name(config.project_name)
    if config.keepalive_interval is not None:
        queue.specify_keepalive_interval(config.keepalive_interval)
    if config.keepalive_timeout is not None:
        queue.specify_keepalive_timeout(config.keepalive_timeout)
    if config.password_file:
        queue.specify_password_file(config.password_file)
    monitor_binary = None
    if config.monitor:
        if config.monitor_interval is not None:
            monitor_binary = monitor.sample_every(config.monitor_interval, config.log_dir)
        queue.enable_monitoring(watchdog=True)
    if config.allocation_mode != "fixed" and hasattr(wq, "cctools_version_string"):
        # cctools 7.x (not Debian's 2021 build, which has no such setting) raises every
        # value of a task's allocation to the worker share of its largest resource
        # (work_queue.c task_worker_box_size, "proportional-resources", on by default):
        # a learned label {cores: 1, memory: 250} on a 2-core, 2000 MB worker becomes
        # 1000 MB, and a declared memory limit is raised the same way and not enforced.
        # Learning categories label every resource, so nothing needs the proportions.
        queue.tune("proportional-resources", 0)
    if config.autolabel_window is not None:
        queue.tune("category-steady-n-tasks", config.autolabel_window)
    return queue, monitor_binary


@dataclass
class Submitted:
    """A task in Work Queue: its apps (one, or a bundle) and the runner's files on this side."""
    apps: List[SubmitTask]
    calls: str
    results: str

    def outcomes(self) -> Dict[int, Tuple[bytes, float]]:
        """The outcome of each app that wrote one and the seconds it ran, by task id; the files are removed."""
        try:
            with open(self.results, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        remove(self.calls, self.results)
        return runner.read_results(data)


def not_started(wq: ModuleType, task) -> bool:
    """Whether the worker gave up the task before starting its command: no app ran.

    A worker that cannot link an input into the task's sandbox (a file missing
    from its cache, or a stale ``t.N`` in a workspace that a killed worker with
    the same process id left) reports INPUT_MISSING, exit status 1, no output
    and no execution time; the manager, not finding the results file, then
    turns INPUT_MISSING into OUTPUT_MISSING (cctools 7.17, ``update_task_result``).
    An input missing on the submit side has exit status -1: the task was never
    sent. Any command that ran took some microseconds.
    """
    return (task.result in (wq.WORK_QUEUE_RESULT_INPUT_MISSING, wq.WORK_QUEUE_RESULT_OUTPUT_MISSING)
            and task.return_status == 1 and not task.output and task._task.time_workers_execute_last == 0)


def remove(*paths: str) -> None:
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


class Manager:
    def __init__(self, wq: ModuleType, queue, channel: Channel, config: ManagerConfig,
                 doorbell: Tuple[int, int], monitor_binary: Optional[str] = None, wait_seconds: int = WAIT_SECONDS):
        self.wq = wq
        self.queue = queue
        self.waiting = ChannelWait(wq, queue, doorbell, reports_to_catalog=bool(config.project_name))
        self.wait_seconds = wait_seconds
        self.monitor_binary = monitor_binary
        self.channel = channel
        self.config = config
        self.result_names = {getattr(wq, n): n[len("WORK_QUEUE_RESULT_"):]
                             for n in dir(wq) if n.startswith("WORK_QUEUE_RESULT_")}
        self.categories = set()
        self.submitted: Dict[int, Submitted] = {}    # by Work Queue id: tasks not yet reported
        self.restarts: Dict[int, int] = {}           # by the first app's id: times its task was not started
        self.backlog = bundles.Backlog(config.max_bundle) if config.max_bundle > 1 else None
        self.task_numbers = itertools.count()
        self.queue_state = QueueStateSender(self, os.path.join(config.log_dir, "transactions.log"))

    def serve(self) -> bool:
        """Submit what arrives, report what finishes, until told to stop.

        Returns False if the executor's end of the channel closed without a Stop.
        """
        while True:
            idle = self.queue.empty()
            try:
                messages = self.channel.receive(timeout=IDLE_POLL if idle else 0)
            except EOFError:
                return False
            for message in messages:
                if isinstance(message, Stop):
                    return True
                self.arrive(message)
            if self.release() or messages:
                self.waiting.ring()     # the next wait sends them without polling first
            if not self.queue.empty():
                # While apps are held, look again each second: workers that join give room too.
                task = self.waiting.wait(1 if self.backlog else self.wait_seconds)
                if task is not None:
                    self.report(task)
            elif idle and not messages:
                self.waiting.wait(0)    # no task: workers still join and leave
            self.queue_state.maybe_send()

    def arrive(self, message: SubmitTask) -> None:
        """Submit an app at once while Work Queue has room for it; otherwise hold it for a bundle."""
        if self.backlog is None:
            self.submit([message])
        elif self.backlog or self.room() <= 0:
            self.backlog.add(message)
        else:
            self.submit([message])

    def release(self) -> bool:
        """Submit held apps, in bundles, while Work Queue has room; returns whether it submitted any."""
        released = False
        while self.backlog:
            slots = self.slots()
            if 2 * slots - len(self.submitted) <= 0:
                break
            self.submit(self.backlog.take(slots))
            released = True
        return released

    def slots(self) -> int:
        """Tasks Work Queue can run at once, as far as can be seen now: those on workers, and idle workers."""
        stats = self.queue.stats
        return max(1, stats.tasks_on_workers + stats.workers_idle)

    def room(self) -> int:
        return 2 * self.slots() - len(self.submitted)

    def submit(self, apps: List[SubmitTask], fresh_inputs: bool = False) -> None:
        """Submit apps as one task; ``fresh_inputs`` sends every input again, under new names in the worker's cache."""
        calls, results = (os.path.join(self.config.task_dir, f"{next(self.task_numbers)}.{kind}")
                          for kind in ("calls", "results"))
        try:
            with open(calls, "wb") as f:
                pickle.dump(bundles.calls(apps), f, protocol=pickle.HIGHEST_PROTOCOL)
            task = self.make_task(apps, calls, results, fresh_inputs)
            task_id = self.queue.submit(task)
            self.submitted[task_id] = Submitted(apps, calls, results)
            self.waiting.submitted(task)
        except Exception as e:
            remove(calls, results)
            for message in apps:
                self.channel.send(TaskDone(message.task_id, -1, "NOT_SUBMITTED", -1,
                                           f"Work Queue refused the task: {e!r}"))

    def make_task(self, apps: List[SubmitTask], calls: str, results: str, fresh_inputs: bool = False):
        message = apps[0]
        if message.call is None:
            task = self.wq.Task(message.command)
        else:       # a coprocess gets neither the task's environment nor the resource monitor
            task = self.wq.RemoteTask(warm.FUNCTION, warm.NAME, **message.call)
        task.specify_tag(str(message.task_id))
        task.specify_category(message.category)
        self.configure_category(message.category)
        for name, value in message.resources.items():
            getattr(task, "specify_" + name)(value)
        if message.call is None:
            for name, value in message.env.items():
                task.specify_environment_variable(name, value)
        if message.max_retries is not None:
            task.specify_max_retries(message.max_retries)
        inputs = {f.remote: f for app in apps for f in app.inputs}     # bundled apps share equal inputs
        for f in inputs.values():
            task.specify_input_file(f.local, f.remote, cache=f.cache and not fresh_inputs)
        task.specify_input_file(calls, runner.CALLS, cache=False)
        if self.monitor_binary and message.call is None:
            task.specify_input_file(self.monitor_binary, monitor.MONITOR_NAME, cache=not fresh_inputs)
        for f in (f for app in apps for f in app.outputs):
            task.specify_output_file(f.local, f.remote, cache=f.cache)
        task.specify_output_file(results, runner.RESULTS, cache=False)
        return task

    def configure_category(self, category: str) -> None:
        if category in self.categories:
            return
        self.categories.add(category)
        allocation.configure_category(self.wq, self.queue, category, self.config.allocation_mode,
                                      self.config.category_max_resources,
                                      self.config.category_first_allocation)
        if self.config.fast_abort is not None:
            # per category: Work Queue applies the "default" category's multiplier only
            # once the "default" category itself has finished 10 tasks (abort_slow_workers)
            self.queue.activate_fast_abort_category(category, self.config.fast_abort)

    def report(self, task) -> None:
        submitted = self.submitted.pop(task.id)
        apps = submitted.apps
        outcomes = submitted.outcomes()
        result_name = self.result_names.get(task.result, str(task.result))
        if not_started(self.wq, task):
            if self.restart(task, apps):
                return
            result_name = "NOT_STARTED"
        self.restarts.pop(apps[0].task_id, None)
        usage = self.usage(task, bundled=len(apps))
        if apps[0].call is not None:
            done = self.warm_done(task, result_name, usage)
        else:
            done = TaskDone(task_id=int(task.tag), result=task.result, result_name=result_name,
                            exit_code=task.return_status, output=(task.output or "")[-OUTPUT_TAIL:], usage=usage)
        if self.backlog is not None and outcomes:
            self.backlog.measured(apps[0].category, sum(s for _, s in outcomes.values()), len(outcomes))
        if len(apps) == 1:
            outcome = outcomes.get(apps[0].task_id)
            self.channel.send(dataclasses.replace(done, outcome=outcome[0] if outcome else None,
                                                  seconds=outcome[1] if outcome else None))
        else:
            self.split(apps, done, outcomes)

    def restart(self, task, apps: List[SubmitTask]) -> bool:
        """Submit a task that its worker could not start again, its inputs sent anew; False past MAX_RESTARTS."""
        restarts = self.restarts.get(apps[0].task_id, 0) + 1
        if restarts > MAX_RESTARTS:
            return False
        self.restarts[apps[0].task_id] = restarts
        print(f"Work Queue task {task.id} (apps {', '.join(str(a.task_id) for a in apps)}): the worker "
              f"{task.hostname} could not set up its sandbox, so no app ran; submitted again with its inputs "
              f"sent anew ({restarts} of {MAX_RESTARTS})", file=sys.stderr, flush=True)
        self.submit(apps, fresh_inputs=True)
        return True

    def split(self, apps: List[SubmitTask], done: TaskDone, outcomes: Dict[int, Tuple[bytes, float]]) -> None:
        """Report each app of a finished bundle that wrote its outcome; run the others again, each alone.

        An outcome is in the results file only once its app ran to its end,
        so an app reported here ran exactly once in this bundle. An app without
        one did not finish because an app before it, or something outside,
        ended the bundle: alone, it gets its own outcome.
        """
        for message in apps:
            outcome = outcomes.get(message.task_id)
            if outcome is not None:
                self.channel.send(dataclasses.replace(
                    done, task_id=message.task_id, result=self.wq.WORK_QUEUE_RESULT_SUCCESS,
                    result_name="SUCCESS", exit_code=0, outcome=outcome[0], seconds=outcome[1]))
            else:
                self.submit([message])

    def warm_done(self, task, result_name: str, usage: TaskUsage) -> TaskDone:
        """A coprocess task's output is the warm host's answer: the app's exit code, output and usage."""
        answer = warm.read_answer(task.output or "")
        if answer is None:
            if result_name in ("SUCCESS", "OUTPUT_MISSING"):    # the coprocess ran, but did not answer
                result_name = "WARM_PROCESS_LOST"
            return TaskDone(int(task.tag), task.result, result_name, -1, (task.output or "")[-OUTPUT_TAIL:], usage)
        if answer["exceeded"]:
            result_name = "RESOURCE_EXHAUSTION"
        usage = dataclasses.replace(usage, measured=answer["usage"] if self.config.monitor else {},
                                    exceeded=answer["exceeded"])
        return TaskDone(int(task.tag), task.result, result_name, answer["exit_code"],
                        answer["output"][-OUTPUT_TAIL:], usage)

    def usage(self, task, bundled: int) -> TaskUsage:
        return TaskUsage(
            category=task.category or "",
            allocated=allocation.summary_to_dict(task.resources_allocated, allocation.ALLOCATED),
            measured=allocation.summary_to_dict(task.resources_measured, allocation.MEASURED),
            exceeded=allocation.summary_to_dict(task.limits_exceeded, allocation.MEASURED),
            attempts=task._task.try_count,   # Task.total_submissions raises in this build
            host=task.hostname or "",
            bundled=bundled,
            started=task.execute_cmd_start / 1e6,
            ended=task.execute_cmd_finish / 1e6)

    def close(self, orphaned: bool) -> None:
        """Cancel what still runs, then tell the executor's workers to leave.

        Work Queue shuts down only workers without tasks, hence the cancels
        first. A worker that takes the close for a lost connection reconnects
        (for up to its idle timeout, 900 s by default); when the executor's
        process is gone (``orphaned``) nobody else would stop such a worker, so
        reconnecting workers are told to leave again for ORPHAN_GRACE seconds.
        """
        for task_id, submitted in list(self.submitted.items()):
            self.queue.cancel_by_taskid(task_id)
            remove(submitted.calls, submitted.results)
        if not self.config.shutdown_workers:
            return
        self.queue.shutdown_workers(0)
        deadline = time.monotonic() + (ORPHAN_GRACE if orphaned else 0)
        while time.monotonic() < deadline:
            self.waiting.wait(1)        # accepts connections even with no task
            if self.queue.stats.workers_connected:
                self.queue.shutdown_workers(0)
            time.sleep(0.1)


def main(argv) -> int:
    channel = Channel(int(argv[1]), int(argv[2]))
    doorbell = (int(argv[3]), int(argv[4]))
    (config,) = channel.receive()
    try:
        wq = load_work_queue()
        queue, monitor_binary = create_queue(wq, config)
    except Exception as e:
        channel.send(StartFailed(f"{type(e).__name__}: {e}"))
        return 1
    channel.send(Ready(queue.port))
    manager = Manager(wq, queue, channel, config, doorbell, monitor_binary)
    if manager.waiting.fallback_reason:
        print(f"a task submitted while others run can reach Work Queue up to a second late: "
              f"{manager.waiting.fallback_reason}", file=sys.stderr, flush=True)
    stopped = False
    try:
        stopped = manager.serve()
    finally:
        manager.close(orphaned=not stopped)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
