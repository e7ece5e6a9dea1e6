"""What tasks used, for the user: per task, per category, and in words.

Every finished task carries a :class:`~parsl_wq.protocol.messages.TaskUsage` (what Work
Queue allocated, and with ``autolabel=True`` what its resource monitor
measured). ``resource_usage(future)`` returns it; ``UsageSummary`` folds them
into the per-category table the executor writes at shutdown.
"""

import datetime
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from parsl.dataflow.futures import AppFuture

from parsl_wq.protocol.messages import TaskUsage, amount, amounts

def resource_usage(future) -> Optional[TaskUsage]:
    """The ``TaskUsage`` of a finished task, or None if it did not run through parsl_wq.

    Accepts the ``AppFuture`` an app call returns, or the executor's own future.
    With Parsl retries, it is the usage of the last try.
    """
    if isinstance(future, AppFuture):   # its __getattr__ would make a new future of any name
        future = future.task_record.get("exec_fu")
    return getattr(future, "resource_usage", None)


MB = 1024 * 1024


def monitoring_record(usage: TaskUsage, run_id: str, task_id: int, try_id: int) -> Dict[str, Any]:
    """A Parsl monitoring RESOURCE_INFO record of what Work Queue measured for one try.

    It fills the same columns as Parsl's own per-task psutil monitor, so the
    monitoring database and visualizer show it; sent from the submit side, it
    arrives even when workers share no filesystem with the submit host.
    """
    measured = usage.measured
    record: Dict[str, Any] = {
        "run_id": run_id, "task_id": task_id, "try_id": try_id,
        "timestamp": datetime.datetime.now(), "hostname": usage.host,
        "first_msg": False, "last_msg": True,
        "resource_monitoring_interval": None,
        "psutil_process_status": "measured by Work Queue",
    }
    columns = {"memory": ("psutil_process_memory_resident", MB),
               "virtual_memory": ("psutil_process_memory_virtual", MB),
               "cpu_time": ("psutil_process_time_user", 1),
               "bytes_read": ("psutil_process_disk_read", 1),
               "bytes_written": ("psutil_process_disk_write", 1),
               "max_concurrent_processes": ("psutil_process_children_count", 1)}
    for resource, (column, scale) in columns.items():
        if resource in measured:
            record[column] = measured[resource] * scale
    return record


@dataclass
class CategoryStats:
    tasks: int = 0
    failed: int = 0
    exhausted: int = 0          # tasks that failed on a resource limit
    retried: int = 0            # tasks Work Queue had to run more than once
    wall_time: float = 0.0
    peak: Dict[str, float] = field(default_factory=dict)     # largest measured cores, memory, disk
    last_allocation: Dict[str, float] = field(default_factory=dict)


class UsageSummary:
    """Per-category totals of the tasks an executor ran."""

    COLUMNS = ("category", "tasks", "failed", "exhausted", "retried", "mean wall", "peak cores",
               "peak memory", "peak disk", "last allocation")

    def __init__(self):
        self.categories: Dict[str, CategoryStats] = {}

    def add(self, usage: TaskUsage, succeeded: bool, exhausted: bool) -> None:
        stats = self.categories.setdefault(usage.category, CategoryStats())
        stats.tasks += 1
        stats.failed += not succeeded
        stats.exhausted += exhausted
        stats.retried += usage.attempts > 1
        stats.wall_time += usage.measured.get("wall_time", 0.0) / usage.bundled    # a bundle's time, shared
        for resource in ("cores", "memory", "disk"):
            if resource in usage.measured:
                stats.peak[resource] = max(stats.peak.get(resource, 0.0), usage.measured[resource])
        if usage.allocated:
            stats.last_allocation = dict(usage.allocated)

    def rows(self) -> List[List[str]]:
        rows = []
        for name, s in sorted(self.categories.items()):
            peaks = [amount(r, s.peak[r]) if r in s.peak else "-" for r in ("cores", "memory", "disk")]
            mean_wall = amount("wall_time", s.wall_time / s.tasks) if s.wall_time else "-"
            rows.append([name, str(s.tasks), str(s.failed), str(s.exhausted), str(s.retried), mean_wall,
                         *peaks, amounts(s.last_allocation)])
        return rows

    def table(self) -> str:
        """A plain-text table, one line per category."""
        rows = [list(self.COLUMNS)] + self.rows()
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.COLUMNS))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)
