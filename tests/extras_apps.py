"""Apps for the Coffea-style options' tests (extra_input_files, the grid proxy, fast abort)."""

import os
import time


def read_shipped(name):
    """The content of a file shipped with every task, found by name in the task's folder."""
    with open(name) as f:
        return f.read(), os.getcwd(), os.stat(os.path.realpath(name)).st_ino


def proxy_seen(move_away):
    """What X509_USER_PROXY names, read after the app changed its working directory."""
    path = os.environ["X509_USER_PROXY"]
    if move_away:
        os.chdir("/")
    with open(path) as f:
        return path, f.read()


def short(x, parsl_resource_specification={}):
    time.sleep(0.2)
    return x


def straggler(marker, parsl_resource_specification={}):
    """Slow the first time (it leaves ``marker``), fast when run again."""
    if os.path.exists(marker):
        return "second try"
    with open(marker, "w"):
        pass
    time.sleep(30)
    return "first try"


def read_inputs(inputs=()):
    """The text of each input file, read where the app finds it, and that path."""
    found = []
    for f in inputs:
        with open(f.filepath) as handle:
            found.append((handle.read(), f.filepath))
    return found


def random_bytes(size):
    return os.urandom(size)


def tiny(x, parsl_resource_specification={}):
    time.sleep(0.01)
    return x


def sleep_then(seconds, parsl_resource_specification={}):
    time.sleep(seconds)
    return seconds
