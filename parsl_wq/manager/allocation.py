"""How Work Queue sizes each category's allocations, and what it reports back.

Runs inside the manager process: standard library and Work Queue only.

Allocation modes (``allocation_mode``), as Coffea names them:

==================  ===================================  ==========================================
mode                Work Queue mode                      a task that declares nothing gets
==================  ===================================  ==========================================
fixed               WORK_QUEUE_ALLOCATION_MODE_FIXED     a whole worker, always
max-seen            WORK_QUEUE_ALLOCATION_MODE_MAX       a whole worker until ``autolabel_window``
                                                         tasks were measured, then the largest use
                                                         seen so far in its category
max-throughput      ..._MAX_THROUGHPUT                   the same, with the label Work Queue
                                                         computes to maximise tasks per second
==================  ===================================  ==========================================

In both learning modes a task that outgrows its learned label is retried by
Work Queue at the category's maximum (``category_max_resources``, else a whole
worker); these retries do not count against ``max_retries``. A task that goes
past what it declared, or past the maximum, fails with RESOURCE_EXHAUSTION.

Work Queue labels cores, memory and disk of a learning category by default
(mode MAX learns 1 core for a task that sleeps: ``tests/test_resources.py``), so nothing
needs turning on per resource.
"""

from types import ModuleType
from typing import Dict, Mapping, Optional

from parsl_wq.protocol.messages import ALLOCATION_MODES, RESOURCES

MODES = dict(zip(ALLOCATION_MODES, ("WORK_QUEUE_ALLOCATION_MODE_FIXED", "WORK_QUEUE_ALLOCATION_MODE_MAX",
                                    "WORK_QUEUE_ALLOCATION_MODE_MAX_THROUGHPUT")))
ALLOCATED = RESOURCES
MEASURED = ("cores", "memory", "disk", "gpus", "wall_time", "cpu_time", "virtual_memory",
            "bytes_read", "bytes_written", "max_concurrent_processes")
ANY_CATEGORY = "*"


def configure_category(wq: ModuleType, queue, category: str, mode: str,
                       max_resources: Mapping[str, Mapping[str, int]],
                       first_allocation: Mapping[str, Mapping[str, int]]) -> None:
    """Give a new category its allocation mode, maximum and first guess."""
    queue.specify_category_mode(category, getattr(wq, MODES[mode]))
    if mode != "fixed":
        # cctools 7.x measures a mostly idle task's cores as 0, and a label of 0 cores
        # means a whole worker (see manager.create_queue): learn at least one core.
        queue.specify_category_min_resources(category, {"cores": 1})
    maximum = _for_category(max_resources, category)
    if maximum:
        queue.specify_category_max_resources(category, dict(maximum))
    guess = _for_category(first_allocation, category)
    if guess:
        queue.specify_category_first_allocation_guess(category, dict(guess))


def _for_category(table: Mapping[str, Mapping[str, int]], category: str) -> Optional[Mapping[str, int]]:
    return table.get(category, table.get(ANY_CATEGORY))


def summary_to_dict(summary, fields) -> Dict[str, float]:
    """The fields of a Work Queue rmsummary that are set (Work Queue marks unset ones with -1)."""
    if summary is None:
        return {}
    values = {}
    for name in fields:
        value = getattr(summary, name, None)
        if value is not None and value >= 0:
            values[name] = float(value)
    return values
