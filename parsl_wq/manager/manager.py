"""The manager's loop: submit what the executor sends, report what Work Queue finishes.

Conversation over the channel (``parsl_wq.protocol.messages``)::

    executor                          manager
    SubmitTask     ------------->  arrive: queue.submit, alone or with others (a bundle)
                   <-------------  report: TaskDone (one per app, from queue.wait)
                   <-------------  QueueState (about once a second)
    FactoryStarted ------------->  remember the factory's process group
    Stop           ------------->  close; workers are told to leave if the
                                   executor started them
    EOF            ------------->  the executor's process died: the same, for
                                   ORPHAN_GRACE seconds workers that reconnect
                                   are told to leave again, and the factory is
                                   stopped
"""

import dataclasses
import itertools
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pickle import PickleBuffer
from types import ModuleType
from typing import Dict, List, Optional, Tuple

from parsl_wq.manager import allocation, bundles, monitor
from parsl_wq.manager.fast_abort import FastAbort
from parsl_wq.manager.learning import Labels
from parsl_wq.manager.queue import not_started
from parsl_wq.manager.queue_state import QueueStateSender
from parsl_wq.manager.waiting import ChannelWait, catalog_reporter
from parsl_wq.protocol import results, warm
from parsl_wq.protocol.channel import Channel
from parsl_wq.protocol.messages import FactoryStarted, ManagerConfig, Stop, SubmitTask, TaskDone, TaskUsage
from parsl_wq.protocol.sandbox import (CALLS, CALLS_ID, CARRIED, EXIT_NOT_OURS, EXIT_OVERDUE, NOT_OURS, OVERDUE,
                                       RESULTS, calls_id, read_results)

OUTPUT_TAIL = 4000      # characters of a task's output kept for error messages
WAIT_SECONDS = 5        # longest wait for Work Queue; a message from the executor ends it at once
ORPHAN_GRACE = 5        # seconds to keep telling reconnecting workers to leave
IDLE_POLL = 1           # seconds between looks at the workers while no task is in Work Queue
MAX_RESTARTS = 3        # times a task that a worker could not start is submitted again
DEMAND_REPORT_SECONDS = 2  # most often the catalog is told that demand grew, besides Work Queue's own reports
SEND_POLL = 0.01        # seconds to wait for the executor to read, between passes over the workers


@dataclass
class Submitted:
    """A task in Work Queue: its apps (one, or a bundle) and the runner's files on this side."""
    apps: List[SubmitTask]
    calls: str
    results: str
    task: object = None     # the Work Queue task
    label: Dict[str, int] = dataclasses.field(default_factory=dict)    # warm: the allocation the manager learned
    arriving: List[Tuple[str, str]] = dataclasses.field(default_factory=list)    # ``arriving_names``

    def move_arrived(self) -> None:
        """Move each output that Work Queue wrote under a name of its own (``arriving_names``) to its place."""
        for written, final in self.arriving:
            try:
                os.replace(written, final)
            except FileNotFoundError:   # it did not come back
                pass
            except OSError as e:
                sys.stderr.write(f"parsl_wq manager: could not move output {written!r} to {final!r}: {e}\n")

    def outcomes(self) -> Dict[int, Tuple[bytes, float]]:
        """The outcome of each app that wrote one and the seconds it ran, by task id; the files are removed."""
        try:
            with open(self.results, "rb") as f:
                outcomes = read_results(f)
        except FileNotFoundError:
            outcomes = {}
        remove(self.calls, self.results)
        return outcomes


def arriving_names(apps: List[SubmitTask], identity: str) -> List[Tuple[str, str]]:
    """(the name Work Queue writes, the app's output) for each output file whose name on this side has a
    character Work Queue does not carry (``CARRIED``): it is written beside it under a name of the task's own,
    and moved into place once the task ends."""
    outputs = [f.local for app in apps for f in app.outputs]
    return [(os.path.join(os.path.dirname(local), f".pwq-{identity}.{number}"), local)
            for number, local in enumerate(outputs) if not set(os.path.basename(local)) <= CARRIED]


def task_seconds(task) -> float:
    """Seconds from when Work Queue began sending the task to a worker to when it had its results."""
    return max(0.0, (task._task.time_when_done - task._task.time_when_commit_start) / 1e6)


def receiving_disks(paths: List[str]) -> Tuple[Tuple[str, int], ...]:
    """(folder, bytes free) of each disk that the files at ``paths`` are written to, once per disk.

    Work Queue takes a file it cannot write here for its worker's failure:
    it removes the worker and tries the task elsewhere.
    """
    disks: Dict[int, Tuple[str, int]] = {}
    for folder in dict.fromkeys(os.path.dirname(path) for path in paths):
        try:
            device, space = os.stat(folder).st_dev, os.statvfs(folder)
        except OSError:
            continue
        disks.setdefault(device, (folder, space.f_bavail * space.f_frsize))
    return tuple(disks.values())


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
        self.told_held = 0                           # apps held, as last told to Work Queue
        # With a project name: demand that doubled since the last report is reported to the catalog at once.
        self.report_to_catalog = catalog_reporter(wq, queue) if config.project_name else None
        self.demand_reported = 0                     # apps held and tasks in Work Queue, as last reported
        self.demand_reported_at = -DEMAND_REPORT_SECONDS
        self.fast_abort = FastAbort(config.fast_abort) if config.fast_abort is not None else None
        self.aborts: Dict[int, int] = {}             # by the first app's id: times its task was a straggler
        self.last_abort_check = 0.0
        self.running_state = getattr(wq, "WORK_QUEUE_TASK_RUNNING", None)
        self.task_numbers = itertools.count()
        self.run_token = secrets.token_hex(8)   # in each calls file's id: another run's file is never taken for ours
        self.factory_group: Optional[int] = None     # the executor's work_queue_factory, if it started one
        self.at_maximum: Dict[int, int] = {}         # by app id: times its warm task outgrew its learned label
        self.canceled_ready: List[object] = []       # waiting tasks taken back (``relabel``), never freed
        self.ready_state = getattr(wq, "WORK_QUEUE_TASK_READY", None)
        self.queue_state = QueueStateSender(self, os.path.join(config.log_dir, "transactions.log"))
        # Warm tasks in a learning mode are sized here, from what the warm hosts measured.
        self.labels = Labels(config.allocation_mode, config.autolabel_window or 1, config.category_max_resources,
                             self.queue_state.workers.largest) if config.warm and config.monitor else None

    def serve(self) -> bool:
        """Submit what arrives, report what finishes, until told to stop.

        Returns False if the executor's end of the channel closed without a Stop.
        """
        while True:
            idle = self.queue.empty()
            sending = self.channel.pending()
            if sending:     # the executor is reading a large message: serve workers between writes
                self.channel.flush(timeout=SEND_POLL)
            try:
                messages = self.channel.receive(timeout=IDLE_POLL if idle and not sending else 0)
            except EOFError:
                return False
            for message in messages:
                if isinstance(message, Stop):
                    return True
                if isinstance(message, FactoryStarted):
                    self.factory_group = message.process_group
                    continue
                self.arrive(message)
            if self.release() or messages:
                self.waiting.ring()     # the next wait sends them without polling first
            self.tell_demand()
            if not self.queue.empty():
                # While apps are held, look again each second: workers that join give room too.
                task = self.waiting.wait(0 if sending else 1 if self.backlog else self.wait_seconds)
                if task is not None:
                    self.report(task)
            elif idle and not messages:
                self.waiting.wait(0)    # no task: workers still join and leave
            self.queue_state.maybe_send()
            if self.fast_abort is not None:
                self.abort_stragglers()

    def arrive(self, message: SubmitTask) -> None:
        """Submit an app at once while Work Queue has room for it, or when it goes first; otherwise hold it."""
        if self.backlog is None:
            self.submit([message])
        elif (self.backlog or self.room() <= 0) and not self.goes_first(message):
            self.backlog.add(message)
        else:
            self.submit([message])

    def goes_first(self, message: SubmitTask) -> bool:
        """Whether the app's priority is above every held app's and every task's that waits in Work Queue.

        Such an app would leave the backlog first anyway; submitted at once,
        Work Queue starts it in the next slot that frees. The next app of that
        priority finds this one waiting, so is held: one task per priority
        level goes past the room.
        """
        level = bundles.priority(message)
        if level <= self.backlog.highest_priority():
            return False
        return all(level > bundles.priority(submitted.apps[0]) for task_id, submitted in self.submitted.items()
                   if self.queue.task_state(task_id) == self.ready_state)

    def release(self) -> bool:
        """Submit held apps, in bundles, while Work Queue has room; returns whether it submitted any."""
        released = False
        while self.backlog:
            slots = self.slots()
            if bundles.room(slots, len(self.submitted)) <= 0:
                break
            self.submit(self.backlog.take(slots))
            released = True
        return released

    def tell_demand(self) -> None:
        """Tell Work Queue how many apps are held, so that its status (and a factory) counts them as tasks left.

        With a project name, have Work Queue report to the catalog when the demand (apps held and tasks not
        done) at least doubled since it last did, at most every DEMAND_REPORT_SECONDS: a factory reads its
        demand there, and Work Queue's own reports come a minute apart.
        """
        held = len(self.backlog) if self.backlog is not None else 0
        if held != self.told_held:
            self.queue.specify_num_tasks_left(held)
            self.told_held = held
        if self.report_to_catalog is None:
            return
        demand = held + len(self.submitted)
        if demand >= 2 * self.demand_reported and demand and \
                time.monotonic() - self.demand_reported_at >= DEMAND_REPORT_SECONDS:
            self.report_to_catalog()
            self.demand_reported_at = time.monotonic()
            self.demand_reported = demand
        elif not demand:
            self.demand_reported = 0

    def slots(self) -> int:
        """Tasks Work Queue can run at once, as far as can be seen now: those on workers, and idle workers."""
        stats = self.queue.stats
        return max(1, stats.tasks_on_workers + stats.workers_idle)

    def room(self) -> int:
        return bundles.room(self.slots(), len(self.submitted))

    def submit(self, apps: List[SubmitTask], fresh_inputs: bool = False) -> None:
        """Submit apps as one task; ``fresh_inputs`` sends every input again, under new names in the worker's cache."""
        number = next(self.task_numbers)
        identity = calls_id(self.run_token, number)
        calls_file, results_file = (os.path.join(self.config.task_dir, f"{number}.{kind}")
                                    for kind in ("calls", "results"))
        try:
            overdue = self.backlog.overdue(apps[0].category) if len(apps) > 1 else None
            with open(calls_file, "wb") as f:
                bundles.write_calls(f, identity, apps, overdue)
            label = self.learned_label(apps[0])
            arriving = arriving_names(apps, identity)
            task = self.make_task(apps, identity, calls_file, results_file, fresh_inputs, label,
                                  {final: written for written, final in arriving})
            task_id = self.queue.submit(task)
            self.submitted[task_id] = Submitted(apps, calls_file, results_file, task, label=label, arriving=arriving)
            self.waiting.submitted(task)
        except Exception as e:
            remove(calls_file, results_file)
            for message in apps:
                self.channel.send(TaskDone(message.task_id, -1, results.NOT_SUBMITTED, -1,
                                           f"Work Queue refused the task: {e!r}"))

    def learned_label(self, message: SubmitTask) -> Dict[str, int]:
        """The allocation learned for a warm task's undeclared resources; {} for the whole worker (or cold)."""
        if self.labels is None or message.task_id in self.at_maximum:
            return {}
        return self.labels.label(message.category, message.resources)

    def make_task(self, apps: List[SubmitTask], identity: str, calls_file: str, results_file: str,
                  fresh_inputs: bool = False, label: Optional[Dict[str, int]] = None,
                  written_as: Optional[Dict[str, str]] = None):
        """The Work Queue task for ``apps``; ``written_as`` names where Work Queue writes an output file (by its
        place) that is moved into place when the task ends (``arriving_names``)."""
        message = apps[0]
        task = self.wq.Task(message.command)
        task.specify_environment_variable(CALLS_ID, identity)
        resources = dict(label or {}, **message.resources)
        if message.warm is not None and message.task_id in self.at_maximum and self.labels is not None:
            resources = dict(self.labels.retry_allocation(message.category) or {}, **message.resources)
        if message.warm is not None:
            call = message.warm._replace(calls_id=identity)
            if "memory" in resources and "memory" not in message.resources:
                # a learned label (or the category's maximum): the warm host holds the apps to it, as the monitor would
                call = call._replace(limits=dict(call.limits or {}, memory=resources["memory"]))
            task.specify_environment_variable(warm.CALL_VARIABLE, warm.encode_call(call))
        task.specify_tag(str(message.task_id))
        task.specify_category(message.category)
        self.configure_category(message.category, warm_task=message.warm is not None)
        for name, value in resources.items():
            getattr(task, "specify_" + name)(value)
        for name, value in message.env.items():
            task.specify_environment_variable(name, value)
        if message.max_retries is not None:
            task.specify_max_retries(message.max_retries)
        inputs = {f.remote: f for app in apps for f in app.inputs}     # bundled apps share equal inputs
        for f in inputs.values():
            task.specify_input_file(f.local, f.remote, cache=f.cache and not fresh_inputs)
        task.specify_input_file(calls_file, CALLS, cache=False)
        if self.monitor_binary:
            task.specify_input_file(self.monitor_binary, monitor.MONITOR_NAME, cache=not fresh_inputs)
        for f in (f for app in apps for f in app.outputs):
            task.specify_output_file((written_as or {}).get(f.local, f.local), f.remote, cache=f.cache)
        task.specify_output_file(results_file, RESULTS, cache=False)
        return task

    def configure_category(self, category: str, warm_task: bool = False) -> None:
        if category in self.categories:
            return
        self.categories.add(category)
        # Work Queue learns only from its monitor, which warm tasks do not run under: they are sized here.
        allocation.configure_category(self.wq, self.queue, category,
                                      "fixed" if warm_task else self.config.allocation_mode,
                                      self.config.category_max_resources,
                                      self.config.category_first_allocation)

    def report(self, task) -> None:
        submitted = self.submitted.pop(task.id)
        submitted.move_arrived()
        apps = submitted.apps
        outcomes = submitted.outcomes()
        result_name = self.result_names.get(task.result, str(task.result))
        nothing_ran = self.nothing_ran(task, apps[0].warm is not None, outcomes)
        if nothing_ran:
            if self.restart(task, apps, nothing_ran):
                return
            result_name = results.NOT_STARTED
        self.restarts.pop(apps[0].task_id, None)
        usage = self.usage(task, bundled=len(apps))
        if apps[0].warm is not None:
            usage = dataclasses.replace(usage, attempts=usage.attempts + self.at_maximum.get(apps[0].task_id, 0))
            done = self.warm_done(task, result_name, usage)
            if self.learn(submitted, done, outcomes):
                return
        else:
            done = TaskDone(task_id=int(task.tag), result=task.result, result_name=result_name,
                            exit_code=task.return_status, output=(task.output or "")[-OUTPUT_TAIL:], usage=usage)
        if task.result == self.wq.WORK_QUEUE_RESULT_SUCCESS:
            self.queue_state.workers.forget(task.id)
        else:
            done = dataclasses.replace(done, lost=tuple(self.queue_state.workers.lost(task.id)),
                                       disks=receiving_disks([submitted.results] + [f.local for app in apps
                                                                                    for f in app.outputs]))
        if self.fast_abort is not None and task.result == self.wq.WORK_QUEUE_RESULT_SUCCESS \
                and len(outcomes) == len(apps):
            self.fast_abort.succeeded(apps[0].category, task_seconds(task), [s for _, s in outcomes.values()])
        self.aborts.pop(apps[0].task_id, None)
        if self.backlog is not None and outcomes:
            self.backlog.measured(apps[0].category, sum(s for _, s in outcomes.values()), len(outcomes))
        if len(apps) == 1:
            outcome = outcomes.pop(apps[0].task_id, None)
            self.channel.send(dataclasses.replace(done, outcome=PickleBuffer(outcome[0]) if outcome else None,
                                                  seconds=outcome[1] if outcome else None))
        else:
            self.split(apps, done, outcomes)

    def abort_stragglers(self) -> None:
        """Abort each running task that runs far past what its apps should take (``fast_abort``), once a second."""
        now = time.time()
        if now - self.last_abort_check < 1:
            return
        self.last_abort_check = now
        for task_id, submitted in list(self.submitted.items()):
            apps = submitted.apps
            limit = self.fast_abort.limit(apps[0].category, len(apps), self.aborts.get(apps[0].task_id, 0))
            if limit is None or self.queue.task_state(task_id) != self.running_state:
                continue
            started = submitted.task._task.time_when_commit_start / 1e6
            if started > 0 and now - started > limit:
                self.abort(task_id, submitted, now - started, limit)

    def abort(self, task_id: int, submitted: Submitted, seconds: float, limit: float) -> None:
        """Take a straggler back from its worker and submit its apps again; past max_retries, fail them."""
        apps = submitted.apps
        self.queue.cancel_by_taskid(task_id)
        self.waiting.forget(submitted.task)
        del self.submitted[task_id]
        remove(submitted.calls, submitted.results)
        aborts = self.aborts[apps[0].task_id] = self.aborts.get(apps[0].task_id, 0) + 1
        why = (f"fast abort: task {task_id} ({len(apps)} app{'s' if len(apps) > 1 else ''}) on {submitted.task.hostname} ran {seconds:.1f} s, "
               f"past {limit:.1f} s ({self.config.fast_abort:g} + {aborts - 1} times what its apps should take)")
        print(why, file=sys.stderr, flush=True)
        if apps[0].max_retries is not None and aborts > apps[0].max_retries:
            self.aborts.pop(apps[0].task_id)
            for message in apps:
                self.channel.send(TaskDone(message.task_id, self.wq.WORK_QUEUE_RESULT_MAX_RETRIES,
                                           results.MAX_RETRIES, -1, why + f"; aborted {aborts} times"))
            return
        self.submit(apps)

    def nothing_ran(self, task, warm_task: bool, outcomes: Dict[int, Tuple[bytes, float]]) -> Optional[str]:
        """Why no app of the task ran, if its worker did not start it or its runner refused the calls file."""
        if not_started(self.wq, task):
            return "could not set up its sandbox"
        code, output = task.return_status, task.output or ""
        if warm_task:
            answer = warm.decode_answer(output)
            code, output = (answer.exit_code, answer.output) if answer is not None else (None, "")
        if code == EXIT_NOT_OURS and NOT_OURS in output and not outcomes:   # not an app's os._exit(5)
            return "found in the task's sandbox a calls file that was not its own"
        return None

    def restart(self, task, apps: List[SubmitTask], why: str) -> bool:
        """Submit a task in which no app ran again, its inputs sent anew; False past MAX_RESTARTS."""
        restarts = self.restarts.get(apps[0].task_id, 0) + 1
        if restarts > MAX_RESTARTS:
            return False
        self.restarts[apps[0].task_id] = restarts
        print(f"Work Queue task {task.id} (apps {', '.join(str(a.task_id) for a in apps)}): the worker "
              f"{task.hostname} {why}, so no app ran; submitted again with its inputs "
              f"sent anew ({restarts} of {MAX_RESTARTS})", file=sys.stderr, flush=True)
        self.submit(apps, fresh_inputs=True)
        return True

    def split(self, apps: List[SubmitTask], done: TaskDone, outcomes: Dict[int, Tuple[bytes, float]]) -> None:
        """Report each app of a finished bundle that wrote its outcome; run the first other one again alone,
        and hold the rest again.

        An outcome is in the results file only once its app ran to its end,
        so an app reported here ran exactly once in this bundle. The apps run
        in turn, so the first app without one is the app that was running when
        the bundle ended (it was overdue, ended its Python, or its worker was
        lost): alone, it gets its own outcome. The apps after it never started.
        """
        unfinished = []
        for message in apps:
            outcome = outcomes.pop(message.task_id, None)     # each sent, then let go
            if outcome is not None:
                self.channel.send(dataclasses.replace(
                    done, task_id=message.task_id, result=self.wq.WORK_QUEUE_RESULT_SUCCESS,
                    result_name=results.SUCCESS, exit_code=0, outcome=PickleBuffer(outcome[0]),
                    seconds=outcome[1]))
            else:
                unfinished.append(message)
        if not unfinished:
            return
        if done.exit_code == EXIT_OVERDUE and OVERDUE in done.output:
            print(f"a bundle of {len(apps)} apps ended at app {unfinished[0].task_id}, which ran past "
                  f"{self.backlog.overdue(apps[0].category):g} s: it runs again alone, and {len(unfinished) - 1} "
                  f"apps after it wait for room again", file=sys.stderr, flush=True)
        self.submit(unfinished[:1])
        self.backlog.put_back(unfinished[1:])

    def learn(self, submitted: Submitted, done: TaskDone, outcomes: Dict[int, Tuple[bytes, float]]) -> bool:
        """Learn from a warm task's measurements (``learning``); run again at the maximum one that outgrew its
        learned label. Returns whether its apps were submitted again (nothing to report yet).

        Apps of a bundle that ended before the label was passed keep their outcomes.
        """
        apps = submitted.apps
        if self.labels is None:
            return False
        category = apps[0].category
        if done.result_name == results.SUCCESS and done.exit_code == 0:
            self.queue_state.workers.update()       # the labels' largest worker: the one that ran it is known by now
            before = self.labels.label(category, {})
            self.labels.measured(category, done.usage.measured)
            if self.labels.label(category, {}) != before:
                self.relabel(category)
        outgrew = set(done.usage.exceeded) & set(submitted.label)     # a declared limit fails the app, as cold
        if not (outgrew and done.result_name == results.RESOURCE_EXHAUSTION):
            for app in apps:
                self.at_maximum.pop(app.task_id, None)
            return False
        unfinished = [app for app in apps if app.task_id not in outcomes]
        for app in apps:
            if app.task_id in outcomes:
                outcome = outcomes.pop(app.task_id)
                self.channel.send(dataclasses.replace(
                    done, task_id=app.task_id, result=self.wq.WORK_QUEUE_RESULT_SUCCESS,
                    result_name=results.SUCCESS, exit_code=0, outcome=PickleBuffer(outcome[0]), seconds=outcome[1]))
        print(f"Work Queue task {submitted.task.id} ({len(apps)} app{'s' if len(apps) > 1 else ''} of "
              f"{category}) went past its learned allocation {submitted.label} ({done.usage.exceeded}); "
              f"{len(unfinished)} run again with the category's maximum", file=sys.stderr, flush=True)
        for app in unfinished:
            self.at_maximum[app.task_id] = self.at_maximum.get(app.task_id, 0) + 1
            self.submit([app])
        return True

    def relabel(self, category: str) -> None:
        """Give a category's new label to its warm tasks that wait in Work Queue: taken back, submitted again.

        Work Queue sizes a cold task when it starts it, from what the category
        learned by then; a warm task is sized when the manager submits it, so
        those submitted before the label would take a whole worker each.
        """
        for task_id, submitted in list(self.submitted.items()):
            apps = submitted.apps
            if apps[0].category != category or apps[0].warm is None or apps[0].task_id in self.at_maximum \
                    or self.queue.task_state(task_id) != self.ready_state:
                continue
            if self.queue.cancel_by_taskid(task_id) is None:
                continue
            # cctools 7.17.1 leaves a canceled READY task in its ready list (change_task_state only counts it),
            # and a later wait reads it: freeing it (the Python Task's __del__) crashes the manager.
            self.canceled_ready.append(submitted.task)
            self.waiting.forget(submitted.task)
            del self.submitted[task_id]
            remove(submitted.calls, submitted.results)
            self.submit(apps)

    def warm_done(self, task, result_name: str, usage: TaskUsage) -> TaskDone:
        """A warm task's output is the warm host's answer: the app's exit code, output and usage."""
        answer = warm.decode_answer(task.output or "")
        if answer is None:
            if result_name in (results.SUCCESS, results.OUTPUT_MISSING):    # the task ran, the host did not answer
                result_name = results.WARM_PROCESS_LOST
            return TaskDone(int(task.tag), task.result, result_name, -1, (task.output or "")[-OUTPUT_TAIL:], usage)
        if answer.exceeded:
            result_name = results.RESOURCE_EXHAUSTION
        usage = dataclasses.replace(usage, measured=answer.usage if self.config.monitor else {},
                                    exceeded=answer.exceeded)
        return TaskDone(int(task.tag), task.result, result_name, answer.exit_code,
                        answer.output[-OUTPUT_TAIL:], usage)

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
        reconnecting workers are told to leave again for ORPHAN_GRACE seconds,
        and the executor's factory is told to stop (it removes its workers).
        """
        if orphaned and self.factory_group is not None:
            try:
                os.killpg(self.factory_group, signal.SIGTERM)
            except OSError:
                pass
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
