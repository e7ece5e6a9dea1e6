"""Apps for the parsl-wq command's tests: plain functions, turned into apps by the tests."""

import os
import time


def quick(x):
    return x * 2


def bad_chunk(n):
    raise ValueError(f"bad chunk {n}")


def blocker(marker, timeout=60):
    """Run until ``marker`` exists: an app that is running while the test looks at the run."""
    deadline = time.time() + timeout
    while not os.path.exists(marker) and time.time() < deadline:
        time.sleep(0.05)
    return "released"
