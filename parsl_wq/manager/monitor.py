"""Work Queue's resource monitor, sampling every second (``monitor_interval``) instead of every five.

Runs inside the manager process: standard library only.

``resource_monitor`` samples a task every 5 s by default
(``resource_monitor.c``: ``DEFAULT_INTERVAL 5``), so a peak shorter than
that, freed before the task ends, is never seen: a 400 MB peak held for 3 s
was measured at 11 MB and not stopped, and the learned allocation of such an
app was far too small. Neither engine lets the manager pass ``--interval``:
Debian's 9.9 build has no such option, and in cctools 7.17.1 the documented
``tune("monitor-interval")`` is not implemented. What both do is take the
monitor binary from ``CCTOOLS_RESOURCE_MONITOR`` and ship it to the workers
as ``./cctools-monitor``; so that variable names a two-line wrapper, and each
task carries the real binary (cached on the worker) under ``MONITOR_NAME``.

``benchmarks/peaks.py``, both engines: a 400 MB peak held 1 s or longer is
seen 10 times in 10 (0 in 10 at the default interval, even held 3 s); one held
0.6 s, 0 to 3 times in 10. One second is the monitor's shortest interval.
"""

import os
import shutil
from typing import Optional

MONITOR_NAME = "pwq-resource-monitor"


def sample_every(seconds: int, folder: str) -> Optional[str]:
    """Make Work Queue run ``resource_monitor --interval SECONDS``; return the binary each task must carry.

    Call before ``enable_monitoring``. Returns None (and leaves Work Queue's
    own monitor, 5 s) when ``resource_monitor`` is not on PATH.
    """
    binary = shutil.which("resource_monitor")
    if binary is None:
        return None
    wrapper = os.path.join(folder, "cctools-monitor.sh")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec ./{MONITOR_NAME} --interval {seconds} "$@"\n')
    os.chmod(wrapper, 0o700)
    os.environ["CCTOOLS_RESOURCE_MONITOR"] = wrapper
    return binary
