"""Allocations learned for warm tasks, from what the warm hosts measured, as Work Queue learns them for cold ones.

Runs inside the manager process: standard library only.

Work Queue learns a category's allocation from its resource monitor, which
wraps each cold task (``autolabel``). A warm task's apps run in the worker's
warm host, outside the monitor, and the host measures them instead (cores as
CPU time over wall time, peak memory, the sandbox's disk). For a category in a
learning mode the manager keeps those measurements and sizes each warm task
itself, by Work Queue's own rules (cctools ``dttools/src/category.c``):

- until ``window`` tasks of the category have succeeded (``autolabel_window``),
  a task gets what it declares, else the whole worker;
- then each of cores, memory and disk it does not declare gets a label:
  "max-seen" (Work Queue's MAX) the largest value seen, plus a third of a
  bucket, rounded up to a bucket (1 core, 250 MB); "max-throughput" the
  bucket that maximises the tasks finished per unit of time, counting the
  tasks that outgrow it and run again at the maximum;
- labels never pass the category's maximum (``category_max_resources``), nor
  the largest worker seen (Work Queue's ``current_max_worker``): a label no
  worker can take would leave its tasks waiting for ever;
- a task whose apps outgrow their learned memory is stopped by its host and
  runs again with the category's maximum, else the whole worker, without
  counting against ``max_retries`` (Work Queue's retry at MAX_RESOURCES).
"""

import math
from typing import Dict, List, Mapping, Optional, Tuple

LABELLED = ("cores", "memory", "disk")
BUCKETS = {"cores": 1, "memory": 250, "disk": 250}     # Work Queue's bucket sizes (category.c)


def round_up(value: float, bucket: int) -> int:
    """The end of the bucket ``value`` falls in: buckets are (start, end] (histogram.c)."""
    return int(math.ceil(value / bucket) * bucket)


def measured_cores(cores: float) -> float:
    """Work Queue's reading of measured cores: 1.05 cores counts as 1 (work_queue.c)."""
    return min(cores, math.ceil(cores - 0.1)) if cores > 0 else cores


def max_seen(values: List[Tuple[float, float]], bucket: int) -> int:
    """``category_first_allocation_max_seen``: the largest value, plus a third of a bucket, rounded up."""
    return round_up(max(v for v, _ in values) + bucket // 3, bucket)


def max_throughput(values: List[Tuple[float, float]], bucket: int, top: float) -> int:
    """``category_first_allocation_max_throughput``: the bucket ``a`` that maximises

        ((top / a) * P(r <= a) + P(r > a)) / (mean time + sum over r > a of mean time(r) p(r))

    over the (value, wall time) pairs seen, ``top`` being what a retried task gets.
    """
    buckets: Dict[int, List[float]] = {}
    for value, seconds in values:
        entry = buckets.setdefault(round_up(value, bucket), [0, 0.0])
        entry[0] += 1
        entry[1] += seconds
    keys = sorted(buckets)
    total = len(values)
    counts_accum, running = [], 0
    for key in keys:
        running += buckets[key][0]
        counts_accum.append(running)
    times_accum = [0.0] * len(keys)     # the mean time of the tasks above each bucket, weighted
    for i in range(len(keys) - 2, -1, -1):
        times_accum[i] = times_accum[i + 1] + buckets[keys[i + 1]][1] / total
    tau_mean = times_accum[0] + buckets[keys[0]][1] / total
    best, best_rate = top, 0.0
    for i, a in enumerate(keys):
        if a < 1:
            continue
        before = counts_accum[i]
        rate = ((before * top) / a + (total - before)) / max(tau_mean + times_accum[i], 1e-9)
        if rate > best_rate:
            best, best_rate = a, rate
    return round_up(min(best, top), bucket)


class Labels:
    """What the warm hosts measured per category, and the allocation a new task of it gets."""

    def __init__(self, mode: str, window: int, maximum: Mapping[str, Mapping[str, int]] = None,
                 largest: Mapping[str, float] = None):
        self.mode = mode
        self.window = window
        self.maximum = maximum or {}
        self.seen: Dict[str, Dict[str, List[Tuple[float, float]]]] = {}     # category -> resource -> [(v, s)]
        self.largest = largest if largest is not None else {}   # resource -> the most a worker seen had of it

    def learning(self) -> bool:
        return self.mode in ("max-seen", "max-throughput")

    def measured(self, category: str, usage: Mapping[str, float]) -> None:
        """A task of ``category`` succeeded, using ``usage`` (cores, memory MB, disk MB, wall_time s)."""
        seconds = usage.get("wall_time", 0.0)
        per_resource = self.seen.setdefault(category, {r: [] for r in LABELLED})
        for resource in LABELLED:
            if resource in usage:
                value = measured_cores(usage[resource]) if resource == "cores" else usage[resource]
                per_resource[resource].append((value, seconds))

    def label(self, category: str, declared: Mapping[str, float]) -> Dict[str, int]:
        """The learned allocation of the resources a task does not declare; empty until the window is full."""
        if not self.learning():
            return {}
        seen = self.seen.get(category, {})
        if min((len(seen.get(r, ())) for r in LABELLED), default=0) < self.window:
            return {}
        maximum = self.maximum.get(category, self.maximum.get("*", {}))
        label = {}
        for resource in LABELLED:
            if resource in declared:
                continue
            values, bucket = seen[resource], BUCKETS[resource]
            top = maximum.get(resource) or max(v for v, _ in values)
            value = max_seen(values, bucket) if self.mode == "max-seen" else max_throughput(values, bucket, top)
            if maximum.get(resource):
                value = min(value, maximum[resource])
            if self.largest.get(resource):
                value = min(value, int(self.largest[resource]))
            label[resource] = max(value, 1)
        return label

    def retry_allocation(self, category: str) -> Optional[Dict[str, int]]:
        """What a task that outgrew its label gets: the category's maximum, or None for the whole worker."""
        maximum = self.maximum.get(category, self.maximum.get("*"))
        return dict(maximum) if maximum else None
