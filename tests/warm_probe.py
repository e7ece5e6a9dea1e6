"""Imported by warm apps: records each import, in PWQ_PROBE_LOG, and holds state an app may change."""

import os
import tempfile

IMPORTED_IN = os.getpid()
TEMPORARY_FOLDER_AT_IMPORT = tempfile.gettempdir()     # which the tempfile module keeps from then on
STATE = []

if os.environ.get("PWQ_PROBE_LOG"):
    with open(os.environ["PWQ_PROBE_LOG"], "a") as f:
        f.write(f"{IMPORTED_IN} {os.getppid()}\n")
