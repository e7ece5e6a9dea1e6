"""Imported by warm apps: records each import, in PWQ_PROBE_LOG, and holds state an app may change."""

import os

IMPORTED_IN = os.getpid()
STATE = []

if os.environ.get("PWQ_PROBE_LOG"):
    with open(os.environ["PWQ_PROBE_LOG"], "a") as f:
        f.write(f"{IMPORTED_IN}\n")
