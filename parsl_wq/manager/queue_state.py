"""What the manager tells the executor about its queue, about once a second (a ``QueueState`` message).

Manager side; standard library only. Apps are counted as running when the
Work Queue task that carries them (alone or in a bundle) is on a worker; the
executor knows the rest (submitted, done, failed). Workers come from Work
Queue's transactions log, read as it grows, because Debian's 9.9 build has no
call that lists them; the same lines are there on every engine::

    TIME PID WORKER ID ADDRESS CONNECTION
    TIME PID WORKER ID RESOURCES {"cores":[2,"cores"],"memory":[1000,"MB"],...}
    TIME PID WORKER ID DISCONNECTION REASON
    TIME PID TASK N RUNNING ADDRESS ...      (then WAITING_RETRIEVAL, RETRIEVED, DONE, or WAITING again)
"""

import json
import sys
import time
from typing import Dict, Iterable, List, Optional, Tuple

from parsl_wq.protocol.messages import QueueState

INTERVAL = 1.0      # seconds between two QueueState messages
TASK_ENDS = ("WAITING_RETRIEVAL", "RETRIEVED", "DONE", "WAITING", "CANCELED")


class WorkerLog:
    """The workers connected now, and the tasks each runs, from a transactions log read as it grows."""

    def __init__(self, path: str):
        self.path = path
        self.offset = 0
        self.partial = b""
        self.workers: Dict[str, Dict] = {}      # by Work Queue's worker id
        self.running: Dict[str, str] = {}       # task id -> address of its worker
        self.joined: List[Dict] = []            # since the last take_changes(), with resources known
        self.left: List[Dict] = []
        self.starts: Dict[str, List[Tuple[str, float]]] = {}    # task id -> (worker address, when) of each try
        self.gone: Dict[str, Tuple[float, str]] = {}            # worker address -> (when, reason) it left
        self.largest: Dict[str, float] = {}     # resource -> the most any worker seen had (Work Queue's max_worker)

    def update(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        self.read(line.decode(errors="replace") for line in lines)

    def read(self, lines: Iterable[str]) -> None:
        for line in lines:
            fields = line.split(None, 5)
            if len(fields) < 5 or line.startswith("#"):
                continue
            when, kind, ident, event = float(fields[0]) / 1e6, fields[2], fields[3], fields[4]
            rest = fields[5] if len(fields) > 5 else ""
            if kind == "WORKER":
                self.worker_event(when, ident, event, rest)
            elif kind == "TASK":
                if event == "RUNNING":
                    self.running[ident] = rest.split()[0] if rest.split() else ""
                    self.starts.setdefault(ident, []).append((self.running[ident], when))
                elif event in TASK_ENDS:
                    self.running.pop(ident, None)

    def worker_event(self, when: float, ident: str, event: str, rest: str) -> None:
        if rest == "CONNECTION":      # "WORKER ID ADDRESS CONNECTION"
            self.workers[ident] = {"id": ident, "address": event, "connected": when}
        elif event == "RESOURCES" and ident in self.workers:
            try:
                resources = json.loads(rest)
            except ValueError:
                return
            worker = self.workers[ident]
            known = "cores" in worker
            for name in ("cores", "memory", "disk", "gpus"):
                if name in resources:
                    worker[name] = resources[name][0]
                    self.largest[name] = max(self.largest.get(name, 0), worker[name])
            if not known and "cores" in worker:
                self.joined.append(dict(worker))
        elif rest.startswith("DISCONNECTION"):     # "WORKER ID ADDRESS DISCONNECTION REASON"
            self.gone[event] = (when, rest[len("DISCONNECTION"):].strip())
            worker = self.workers.pop(ident, None)
            if worker is not None and "cores" in worker:
                self.left.append(dict(worker, left=when))

    def forget(self, task_id: int) -> None:
        self.starts.pop(str(task_id), None)

    def lost(self, task_id: int) -> List[str]:
        """The tries of a task that ended with their worker's disconnection ("ADDRESS (REASON)"); forgets the task.

        A worker's address (host:port of its connection) names one connection,
        so a try on an address that disconnected after the try began was lost with it.
        """
        self.update()
        lost = []
        for address, started in self.starts.pop(str(task_id), ()):
            left = self.gone.get(address)
            if left is not None and left[0] >= started:
                lost.append(f"{address} ({left[1].lower() or 'disconnected'})")
        return lost

    def take_changes(self) -> Tuple[List[Dict], List[Dict]]:
        """Workers that joined (resources known) and that left since the last call."""
        changes = (self.joined, self.left)
        self.joined, self.left = [], []
        return changes

    def connected(self) -> list:
        """One dict per worker: id, address, connected (epoch s), cores, memory, disk, gpus, tasks (running)."""
        tasks: Dict[str, int] = {}
        for address in self.running.values():
            tasks[address] = tasks.get(address, 0) + 1
        return [dict(w, tasks=tasks.get(w["address"], 0)) for w in self.workers.values()]


class QueueStateSender:
    """Builds a QueueState from the manager's tasks and sends it, at most once per INTERVAL."""

    def __init__(self, manager, transactions_log: str):
        self.manager = manager
        self.workers = WorkerLog(transactions_log)
        self.last = 0.0

    def maybe_send(self) -> None:
        now = time.time()
        if now - self.last < INTERVAL:
            return
        self.last = now
        try:
            state = self.state(now)
        except Exception as e:      # what only informs the user must not stop the manager
            sys.stderr.write(f"parsl_wq manager: the queue's state could not be read: {e!r}\n")
            return
        self.manager.channel.send(state)

    def state(self, now: Optional[float] = None) -> QueueState:
        running: Dict[str, int] = {}
        for task_id, submitted in self.manager.submitted.items():
            if self.manager.queue.task_state(task_id) != self.manager.ready_state:
                category = submitted.apps[0].category
                running[category] = running.get(category, 0) + len(submitted.apps)
        self.workers.update()
        joined, left = self.workers.take_changes()
        return QueueState(time=now or time.time(), running=running, workers=self.workers.connected(),
                          joined=joined, left=left)
