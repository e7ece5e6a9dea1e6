"""Fast abort judged per app: a task is a straggler when it runs far past what its apps should take together.

Work Queue's own fast abort compares a running task with the average time
of its category's tasks. A bundle of 100 apps of 10 ms is a task too, so
among single apps it looks like a straggler and is aborted again and again.
The manager judges instead: once ``MIN_TASKS`` tasks of a category have
succeeded, a task of ``n`` apps is expected to take ``overhead + n * per_app``
seconds, where ``overhead`` is what a task took beyond its apps' functions
(sending files, starting Python, loading the function) and ``per_app`` the
seconds the runner measured around each app's function, both averaged over
the category's successful tasks. A task running longer than
``(multiplier + aborts) * expected`` is aborted and submitted again; each
abort of the same apps gives them one more multiple, as in Work Queue.

Standard library only: the manager process imports it.
"""

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

MIN_TASKS = 10      # successful tasks of a category before its tasks are judged (Work Queue's number)


@dataclass
class Averages:
    tasks: int = 0
    overhead: float = 0.0     # seconds, summed over tasks
    apps: int = 0
    app_seconds: float = 0.0  # summed over apps


class FastAbort:
    def __init__(self, multiplier: float):
        self.multiplier = multiplier
        self.categories: Dict[str, Averages] = {}

    def succeeded(self, category: str, task_seconds: float, app_seconds: Sequence[float]) -> None:
        """A task of ``category`` ran ``task_seconds``, its apps' functions ``app_seconds`` each."""
        averages = self.categories.setdefault(category, Averages())
        averages.tasks += 1
        averages.overhead += max(0.0, task_seconds - sum(app_seconds))
        averages.apps += len(app_seconds)
        averages.app_seconds += sum(app_seconds)

    def expected(self, category: str, apps: int) -> Optional[float]:
        """Seconds a task of ``apps`` apps of ``category`` should take; None until MIN_TASKS succeeded."""
        averages = self.categories.get(category)
        if averages is None or averages.tasks < MIN_TASKS or averages.apps == 0:
            return None
        return averages.overhead / averages.tasks + apps * averages.app_seconds / averages.apps

    def limit(self, category: str, apps: int, aborts: int) -> Optional[float]:
        """Seconds after which such a task, aborted ``aborts`` times before, is a straggler (None: not judged)."""
        expected = self.expected(category, apps)
        if expected is None:
            return None
        return (self.multiplier + aborts) * expected
