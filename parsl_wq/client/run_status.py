"""The files a run keeps up to date for ``parsl-wq`` (``parsl_wq.cli.main``) to read, from another terminal.

Written by the executor, in its folder ``RUN_DIR/LABEL``, never read back by it::

    run.json      at start: how workers reach the manager (address, port, project, password file, TLS)
    status.json   about once a second, replaced whole (a rename): apps per category (waiting, running,
                  done, failed), workers connected, allocations beside measured peaks, the last failures
    tasks.jsonl   one JSON line per finished app: times, worker, allocated and measured resources, result

Only files: reading them needs neither the network nor the run's password.
"""

import json
import logging
import os
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional

from parsl_wq.protocol.messages import QueueState, TaskDone
from parsl_wq.client.progress import ProgressBar
from parsl_wq.client.usage import UsageSummary

logger = logging.getLogger(__name__)

RUN = "run.json"
STATUS = "status.json"
TASKS = "tasks.jsonl"
WRITE_EVERY = 1.0       # seconds between two writes of status.json
FAILURES_KEPT = 10
ERROR_CHARS = 300
KEPT = ("cores", "memory", "disk", "gpus", "wall_time", "cpu_time")     # in tasks.jsonl


class RunStatus:
    """Counts apps as the executor submits and resolves them, and writes the run's status files."""

    def __init__(self, folder: str, usage: UsageSummary, progress: Optional[ProgressBar] = None):
        self.folder = folder
        self.usage = usage
        self.progress = progress
        self.started = time.time()
        self.apps: Dict[str, Dict[str, Any]] = {}          # by category
        self.failures: Deque[Dict[str, Any]] = deque(maxlen=FAILURES_KEPT)
        self.queue: Optional[QueueState] = None
        self.last_write = 0.0
        self.lock = threading.Lock()            # the counts
        self.output_lock = threading.Lock()     # status.json and the bar
        self.tasks_file = open(os.path.join(folder, TASKS), "a", buffering=1 << 16)

    def write_run(self, run: Dict[str, Any]) -> None:
        write_json(os.path.join(self.folder, RUN), dict(run, started=self.started, pid=os.getpid()))

    def submitted(self, category: str, app: str) -> None:
        with self.lock:
            counts = self.counts(category)
            counts["submitted"] += 1
            if app not in counts["apps"]:
                counts["apps"].append(app)

    def counts(self, category: str) -> Dict[str, Any]:
        if category not in self.apps:
            self.apps[category] = {"apps": [], "submitted": 0, "done": 0, "failed": 0}
        return self.apps[category]

    def finished(self, task_id: int, category: str, app: str, submitted_at: float, done: Optional[TaskDone],
                 error: Optional[BaseException]) -> None:
        """An app's future got its result (``error`` None) or an exception."""
        now = time.time()
        usage = done.usage if done is not None else None
        row: Dict[str, Any] = {"task": task_id, "app": app, "category": category,
                               "submitted": round(submitted_at, 3), "finished": round(now, 3),
                               "result": "ok" if error is None else type(error).__name__}
        if error is not None:
            row["error"] = one_line(error)
        if done is not None:
            row["wq_result"] = done.result_name
            if done.seconds is not None:
                row["seconds"] = round(done.seconds, 4)
        if usage is not None:
            row.update(host=usage.host, started=round(usage.started, 3) or None,
                       ended=round(usage.ended, 3) or None, attempts=usage.attempts, bundled=usage.bundled,
                       allocated=kept(usage.allocated), measured=kept(usage.measured))
        with self.lock:
            self.counts(category)["done" if error is None else "failed"] += 1
            if error is not None:
                self.failures.append({k: row.get(k) for k in ("task", "app", "category", "host", "finished",
                                                               "result", "error")})
            try:
                self.tasks_file.write(json.dumps(row, separators=(",", ":")) + "\n")
            except (OSError, ValueError) as e:
                logger.warning("parsl_wq: could not write %s: %s", TASKS, e)
        self.write_status()

    def queue_state(self, state: QueueState) -> None:
        self.queue = state
        self.write_status()

    def write_status(self, ended: bool = False) -> None:
        """Replace status.json, at most once per WRITE_EVERY unless ``ended``."""
        now = time.time()
        if not ended and now - self.last_write < WRITE_EVERY:
            return
        with self.lock:
            self.last_write = now
            status = self.snapshot(now, ended)
            try:
                self.tasks_file.flush()
            except (OSError, ValueError):
                pass
        with self.output_lock:
            try:
                write_json(os.path.join(self.folder, STATUS), status)
            except OSError as e:
                logger.warning("parsl_wq: could not write %s: %s", STATUS, e)
            if self.progress is not None:
                try:
                    self.progress.show(status)
                except Exception as e:      # a bar that cannot draw must not stop the run
                    logger.warning("parsl_wq: the progress bar failed and is off: %s", e)
                    self.progress = None

    def snapshot(self, now: float, ended: bool) -> Dict[str, Any]:
        queue = self.queue
        apps = {}
        for category, counts in self.apps.items():
            outstanding = counts["submitted"] - counts["done"] - counts["failed"]
            running = min(queue.running.get(category, 0) if queue else 0, outstanding)
            apps[category] = dict(counts, apps=list(counts["apps"]), running=running,
                                  waiting=outstanding - running)
        categories = {name: {"allocation": stats.last_allocation, "peak": stats.peak, "tasks": stats.tasks,
                             "exhausted": stats.exhausted}
                      for name, stats in self.usage.categories.items()}
        return {"folder": self.folder, "started": self.started, "updated": now, "ended": now if ended else None,
                "pid": os.getpid(), "apps": apps, "categories": categories,
                "workers": queue.workers if queue else [], "failures": list(self.failures)}

    def close(self) -> None:
        self.write_status(ended=True)
        with self.lock:
            self.tasks_file.close()
        if self.progress is not None:
            self.progress.close()


def kept(resources: Dict[str, float]) -> Dict[str, float]:
    """The resources a row keeps (``resource_usage`` has them all): a line stays under about 400 bytes."""
    return {k: round(v, 3) for k, v in resources.items() if k in KEPT}


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else "")[:ERROR_CHARS]


def write_json(path: str, data: Any) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(temporary, path)


# ------------------------------------------------------------------ reading

def load_json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_tasks(folder: str) -> List[Dict[str, Any]]:
    """The rows of tasks.jsonl; a last line cut short by a running writer is left out."""
    rows = []
    try:
        with open(os.path.join(folder, TASKS)) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue
    except OSError:
        pass
    return rows
