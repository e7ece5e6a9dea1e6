"""Plain functions for the pack tests. No Parsl import: a worker whose Python lacks Parsl can load them."""

import os
import sys


def sorted_in_env(values):
    """Sort with sortedcontainers, a package that the workers' own Python lacks."""
    import sortedcontainers
    return list(sortedcontainers.SortedList(values)), sys.prefix, sortedcontainers.__file__


def unpacks():
    """The unpack log of the environment this task runs in: one line per unpack."""
    with open(os.path.join(sys.prefix, ".pwq-unpacks")) as f:
        return sys.prefix, f.read().splitlines()


def python_on_path(stdout=None):
    """A bash app: the python on PATH is the environment's, with its packages."""
    return 'python -c "import sys, sortedcontainers; print(sys.prefix)"'


def warm_identity():
    """Which Python runs this app, in which process, and whether sortedcontainers was imported before it asked."""
    preloaded = "sortedcontainers" in sys.modules
    import sortedcontainers
    return (sys.executable, sys.prefix, os.getpid(), os.getppid(), preloaded,
            list(sortedcontainers.SortedList([2, 1])))


def kill_own_host():
    """Kill the warm process this app was forked from, then wait to be killed with it."""
    import signal
    import time
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(60)
