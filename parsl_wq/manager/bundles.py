"""Bundling: apps that wait for a slot travel several to one Work Queue task.

Each Work Queue task costs a few milliseconds of the manager's and the
worker's time, files, a round trip and (cold) a Python's start. When apps
wait anyway because every slot is busy, the manager holds them here instead
of in Work Queue, and when room frees it sends the apps of the group with
the highest ``priority`` (the longest-waiting of those) as one task (a
*bundle*). The runner runs them one after the other in
one Python and writes one outcome per app (``parsl_wq.worker.runner.run``).

- Room: the manager keeps at most ``TASKS_PER_SLOT * slots`` tasks in Work
  Queue, where ``slots`` is what runs now plus the workers that are idle
  (``room``). While there is room nothing waits here, so no app is bundled
  while slots are free.
- Order: held apps leave highest ``priority`` first (Work Queue's order:
  higher runs first; an app that declares none has 0), oldest first within
  one priority. The manager sends an app past the held ones to Work Queue at
  once when its priority is above every held app's and every waiting task's
  (``parsl_wq.manager.manager.Manager.arrive``), so it waits only for a slot.
- Groups: apps are bundled only with apps of the same category, resource
  request (priority included), environment and command (``key``), and never with an app
  whose files in the sandbox would collide with theirs (``SandboxNames``).
- Size: ``min(max_bundle, ceil(waiting in the group / (TASKS_PER_SLOT * slots)),
  BUNDLE_SECONDS / seconds per app)``. Seconds per app are the time the
  runner measured around each call of the category's apps (not the Python's
  start, nor loading the function and arguments, paid once per task). Until
  one finished, and for apps of BUNDLE_SECONDS or more, each app goes alone.
  So bundles grow with the backlog, shrink as it drains, and long apps are
  never bundled.
- Overdue: an app of a bundle that runs ``OVERDUE_FACTOR`` times what its
  category's apps take (at least ``OVERDUE_FLOOR`` seconds) ends its bundle
  (``parsl_wq.worker.runner.Overdue``). The manager then runs that app again
  alone, with no such limit, and puts the apps after it back here, first in
  line: an app that hangs holds up only itself.

Standard library only: the manager process imports it.
"""

import functools
import itertools
import json
import math
import pickle
from collections import deque
from typing import BinaryIO, Deque, Dict, Hashable, List, Optional, Tuple

from parsl_wq.protocol.messages import SubmitTask
from parsl_wq.protocol.sandbox import write_calls_file

BUNDLE_SECONDS = 1.0    # a bundle's aimed-for running time
SCAN_FACTOR = 4         # apps looked at per place in a bundle, past ones whose files collide
TASKS_PER_SLOT = 2      # tasks kept in Work Queue per slot: one running, one ready to start when it ends
OVERDUE_FACTOR = 10     # an app of a bundle is overdue after this many times its category's seconds per app
OVERDUE_FLOOR = 1.0     # and never before this many seconds


def room(slots: int, in_queue: int) -> int:
    """How many more tasks Work Queue should get, with ``slots`` slots and ``in_queue`` tasks it has."""
    return TASKS_PER_SLOT * slots - in_queue


def priority(message: SubmitTask) -> float:
    """An app's Work Queue priority: higher runs first, 0 when it declares none."""
    return message.resources.get("priority", 0)


def key(message: SubmitTask) -> Hashable:
    """What must be equal for two apps to share a task."""
    warm = None
    if message.warm is not None:
        warm = json.dumps(message.warm._asdict(), sort_keys=True)
    return (message.category, tuple(sorted(message.resources.items())), tuple(sorted(message.env.items())),
            message.max_retries, message.command, warm)


class SandboxNames:
    """The file names that the apps of one bundle use in its sandbox.

    Two apps may share an input with the same name only if it is the same
    file (the function file, the runner); any other name used twice collides.
    """

    def __init__(self):
        self.inputs: Dict[str, Tuple[str, bool]] = {}
        self.outputs: set = set()

    def fits(self, message: SubmitTask) -> bool:
        for f in message.inputs:
            if f.remote in self.outputs or self.inputs.get(f.remote, (f.local, f.cache)) != (f.local, f.cache):
                return False
        return not any(f.remote in self.outputs or f.remote in self.inputs for f in message.outputs)

    def add(self, message: SubmitTask) -> None:
        for f in message.inputs:
            self.inputs[f.remote] = (f.local, f.cache)
        self.outputs.update(f.remote for f in message.outputs)


class Backlog:
    """Apps held by the manager until Work Queue has room, grouped by ``key``; highest priority, then oldest, first."""

    def __init__(self, max_bundle: int, bundle_seconds: float = BUNDLE_SECONDS):
        self.max_bundle = max_bundle
        self.bundle_seconds = bundle_seconds
        self.groups: Dict[Hashable, Deque[Tuple[int, SubmitTask]]] = {}
        self.seconds_per_app: Dict[str, float] = {}    # by category, from finished tasks
        self._arrivals = itertools.count()
        self._returns = itertools.count(-1, -1)     # apps put back go before every app that arrived
        self._held = 0

    def __len__(self) -> int:
        return self._held

    def add(self, message: SubmitTask) -> None:
        self.groups.setdefault(key(message), deque()).append((next(self._arrivals), message))
        self._held += 1

    def put_back(self, messages: List[SubmitTask]) -> None:
        """Hold again apps that left in a bundle but did not start: ahead of the apps of their priority."""
        for message in reversed(messages):
            self.groups.setdefault(key(message), deque()).appendleft((next(self._returns), message))
            self._held += 1

    def highest_priority(self) -> float:
        """The highest priority of a held app (minus infinity when none is held)."""
        return max((priority(group[0][1]) for group in self.groups.values()), default=-math.inf)

    def measured(self, category: str, seconds: float, apps: int) -> None:
        """``apps`` apps of ``category`` ran for ``seconds`` in all.

        A longer time counts at once, a shorter one a third at a time: a
        category that turns slow stops being bundled without delay.
        """
        per_app = seconds / apps
        old = self.seconds_per_app.get(category)
        self.seconds_per_app[category] = per_app if old is None else max(per_app, (2 * old + per_app) / 3)

    def bundle_size(self, category: str, waiting: int, slots: int) -> int:
        per_app = self.seconds_per_app.get(category)
        if per_app is None:
            return 1
        by_time = int(self.bundle_seconds / per_app) if per_app > 0 else self.max_bundle
        return max(1, min(self.max_bundle, math.ceil(waiting / (TASKS_PER_SLOT * max(1, slots))), by_time))

    def overdue(self, category: str) -> float:
        """Seconds after which an app of ``category`` in a bundle is overdue."""
        return max(OVERDUE_FLOOR, OVERDUE_FACTOR * self.seconds_per_app.get(category, 0.0))

    def take(self, slots: int) -> List[SubmitTask]:
        """The next task's apps: from the groups of the highest priority, the one whose oldest app waited longest."""
        group_key = min(self.groups, key=lambda k: (-priority(self.groups[k][0][1]), self.groups[k][0][0]))
        group = self.groups[group_key]
        size = self.bundle_size(group[0][1].category, len(group), slots)
        taken: List[Tuple[int, SubmitTask]] = []
        skipped: List[Tuple[int, SubmitTask]] = []
        names = SandboxNames()
        while group and len(taken) < size and len(taken) + len(skipped) < SCAN_FACTOR * size:
            item = group.popleft()
            if names.fits(item[1]):
                names.add(item[1])
                taken.append(item)
            else:
                skipped.append(item)
        group.extendleft(reversed(skipped))
        if not group:
            del self.groups[group_key]
        self._held -= len(taken)
        return [message for _, message in taken]


def write_calls(f: BinaryIO, identity: str, messages: List[SubmitTask], overdue: Optional[float] = None) -> None:
    """Write to ``f`` the calls file, with id ``identity``, of a task that runs ``messages``
    (``parsl_wq.protocol.sandbox``)."""
    dump = functools.partial(pickle.dump, protocol=pickle.HIGHEST_PROTOCOL)
    write_calls_file(f, identity, (m.call._replace(arguments=payload(m.call.arguments)) for m in messages), dump,
                     overdue)


def payload(data):
    """Bytes that came through the channel out of band arrive as a read-only memoryview of a bytearray: the
    bytearray (which pickles, where a memoryview does not)."""
    return data.obj if isinstance(data, memoryview) else data
