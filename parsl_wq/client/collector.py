"""Collecting results: the futures of apps not yet resolved, and the thread that resolves them.

Runs in the user's process. ``Pending`` holds each submitted app's future and
what the executor remembers about it; the collector thread reads what the
manager process reports and resolves each app's future exactly once:

- a ``TaskDone`` becomes the app's value or exception (``parsl_wq.client.outcomes``),
  its usage goes to the per-category summary, the learned cores and Parsl monitoring;
- a ``QueueState`` goes to the run's status files and monitoring's node table.

A failure while delivering one app fails that app only. If the loop itself
cannot go on, or the manager's channel closes while the executor is not
stopping, ``broken(reason)`` puts the executor in its broken state, which
fails every pending future.
"""

import logging
import math
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from parsl.monitoring.message_type import MessageType

from parsl_wq.client.nodes import NodeRecords
from parsl_wq.client.outcomes import task_outcome
from parsl_wq.client.run_status import RunStatus
from parsl_wq.client.usage import UsageSummary, monitoring_record
from parsl_wq.errors import DeliveryFailed
from parsl_wq.protocol import results
from parsl_wq.protocol.messages import QueueState, TaskDone

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submitted:
    """What the executor remembers about an app until it resolves."""
    slots: int
    category: str
    declares_cores: bool
    monitoring_ids: Optional[Tuple[int, int]]     # Parsl's (task_id, try_id) when monitoring is on
    inputs: Tuple[str, ...]                       # submit-side paths of the files sent with the app
    app: str = ""
    submitted_at: float = 0.0


class TaskFuture(Future):
    """The future of one app, whose done-callbacks cannot stop the delivery of results.

    ``concurrent.futures`` guards callbacks only against ``Exception``: one that
    raises ``SystemExit`` or ``KeyboardInterrupt`` would skip the callbacks
    after it and end the collector thread, which runs them. Here each
    callback's ``BaseException`` is logged, and the next callback runs.
    """

    def _invoke_callbacks(self) -> None:
        for callback in self._done_callbacks:
            try:
                callback(self)
            except BaseException:
                logger.exception("a done-callback of task %s raised", getattr(self, "parsl_executor_task_id", "?"))


class Pending:
    """The futures of apps not yet resolved, by task id, and the cores they hold (Parsl's ``outstanding``)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.futures: Dict[int, Future] = {}
        self.submitted: Dict[int, Submitted] = {}
        self.slots = 0
        self.next_id = 0
        self.broken: Optional[BaseException] = None     # once set, no future is added

    def new_id(self) -> int:
        with self.lock:
            task_id, self.next_id = self.next_id, self.next_id + 1
            return task_id

    def add(self, task_id: int, future: Future, record: Submitted) -> None:
        """Register an app's future; raises the broken state's exception if it is set (the app is not added)."""
        with self.lock:
            if self.broken is not None:
                raise self.broken
            self.futures[task_id] = future
            self.submitted[task_id] = record
            self.slots += record.slots

    def pop(self, task_id: int) -> Tuple[Optional[Future], Optional[Submitted]]:
        """The app's future and record, taken out: whoever gets a future resolves it."""
        with self.lock:
            future = self.futures.pop(task_id, None)
            record = self.submitted.pop(task_id, None)
            if record is not None:
                self.slots -= record.slots
            return future, record

    def break_all(self, exception: BaseException) -> Optional[List[Future]]:
        """Enter the broken state: every future, taken out, and no future added from now on.

        Their records stay: the broken state resolves futures, not records.
        Returns None if the state was already set.
        """
        with self.lock:
            if self.broken is not None:
                return None
            self.broken = exception
            futures = list(self.futures.values())
            self.futures.clear()
            return futures

    def pop_all(self) -> Dict[int, Tuple[Future, Optional[Submitted]]]:
        """Every future left, with its record, taken out (at shutdown)."""
        with self.lock:
            left = {task_id: (future, self.submitted.pop(task_id, None)) for task_id, future in self.futures.items()}
            self.futures.clear()
            return left


class Collector:
    """Resolves each app's future from what the manager process reports (run by the collector thread)."""

    def __init__(self, executor: Any, manager: Any, pending: Pending, run_status: RunStatus,
                 usage_summary: UsageSummary, learned_cores: Dict[str, int], mode: str,
                 broken: Callable[[str], None]):
        self.executor = executor        # for what Parsl sets on it: run_id, submit_monitoring_radio
        self.label = executor.label
        self.manager = manager
        self.pending = pending
        self.run_status = run_status
        self.usage_summary = usage_summary
        self.learned_cores = learned_cores
        self.mode = mode
        self.broken = broken
        self.stopping = False
        self.nodes: Optional[NodeRecords] = None

    def run(self) -> None:
        """Deliver each report until the manager's channel closes."""
        try:
            while True:
                try:
                    messages = self.manager.receive()
                except (EOFError, OSError, ValueError):
                    break
                for message in messages:
                    if isinstance(message, TaskDone):
                        self.deliver(message)
                    elif isinstance(message, QueueState):
                        self.queue_state(message)
        except BaseException as e:
            logger.exception("WorkQueueExecutor %s: the result collector failed", self.label)
            self.broken(f"the thread that collects results failed: {type(e).__name__}: {e}")
            return
        if not self.stopping:
            self.broken(f"the Work Queue manager process exited unexpectedly "
                        f"(exit code {self.manager.exit_code(timeout=5)}); "
                        f"see {self.manager.log_path}: {self.manager.log_tail()}{self.manager.disk_note()}")

    def queue_state(self, state: QueueState) -> None:
        """The run's status files and monitoring's node table; a failure here costs no app anything."""
        try:
            self.run_status.queue_state(state)
            radio = self.executor.submit_monitoring_radio
            if radio is not None:
                if self.nodes is None:
                    self.nodes = NodeRecords(self.executor.run_id, radio.send)
                self.nodes.update(state)
        except Exception:
            logger.exception("WorkQueueExecutor %s: recording the queue's state failed", self.label)

    def deliver(self, done: TaskDone) -> None:
        future, record = self.pending.pop(done.task_id)
        try:
            self.resolve(done, future, record)
        except BaseException as e:
            logger.exception("WorkQueueExecutor %s: delivering task %d failed", self.label, done.task_id)
            if future is not None and not future.done():
                future.set_exception(DeliveryFailed(done.task_id, e))

    def resolve(self, done: TaskDone, future: Optional[Future], record: Optional[Submitted]) -> None:
        ok, value = task_outcome(done, record.inputs if record is not None else ())
        if done.usage is not None and record is not None:
            try:
                self.account(done, record, ok)
            except Exception:       # the usage table or monitoring must not cost the app its result
                logger.exception("WorkQueueExecutor %s: accounting for task %d failed", self.label, done.task_id)
        self.finished(done.task_id, record, done, None if ok else value)
        if future is None or future.done():
            return
        future.resource_usage = done.usage  # type: ignore[attr-defined]
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def account(self, done: TaskDone, record: Submitted, ok: bool) -> None:
        """Fold an app's usage into the summary, the learned cores and Parsl monitoring."""
        usage = done.usage
        self.usage_summary.add(usage, succeeded=ok, exhausted=done.result_name == results.RESOURCE_EXHAUSTION)
        learned = usage.allocated.get("cores")
        if ok and learned and usage.attempts == 1 and not record.declares_cores and self.mode != "fixed":
            self.learned_cores[record.category] = max(1, math.ceil(learned))
        radio = self.executor.submit_monitoring_radio
        if record.monitoring_ids is not None and radio is not None and usage.measured:
            parsl_task_id, try_id = record.monitoring_ids
            radio.send((MessageType.RESOURCE_INFO, monitoring_record(usage, self.executor.run_id, parsl_task_id,
                                                                     try_id)))

    def finished(self, task_id: int, record: Optional[Submitted], done: Optional[TaskDone],
                 error: Optional[BaseException]) -> None:
        """Count a resolved app in the run's status files; a failure here costs the app nothing."""
        if record is None or self.run_status is None:
            return
        try:
            self.run_status.finished(task_id, record.category, record.app, record.submitted_at, done, error)
        except Exception:
            logger.exception("WorkQueueExecutor %s: recording task %d failed", self.label, task_id)
