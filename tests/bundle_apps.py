"""Apps of the bundling tests (test_bundles.py), importable by workers through PYTHONPATH."""

import os
import time

from parsl import bash_app, python_app


@python_app
def numbered(i):
    """``(i, pid)``, or a ValueError naming ``i`` for every seventh; apps of one bundle share the pid."""
    if i % 7 == 3:
        raise ValueError(f"app {i} fails")
    return i, os.getpid()


@python_app
def occupy(seconds, started):
    """Hold the worker's only slot, so that the apps submitted next wait and can be bundled; create the file
    ``started`` once running."""
    open(started, "w").close()
    time.sleep(seconds)
    return os.getpid()


@python_app
def exit_if(i, log, victim):
    """Append ``i pid`` to ``log``; then end this Python if ``i`` is the victim, else return ``(i, pid)``."""
    with open(log, "a") as f:
        f.write(f"{i} {os.getpid()}\n")
    if i == victim:
        os._exit(3)
    return i, os.getpid()


@python_app
def logged(i, log, seconds):
    """Sleep, then append ``i pid`` to ``log``: the log shows which apps had ended and in which process."""
    time.sleep(seconds)
    with open(log, "a") as f:
        f.write(f"{i} {os.getpid()}\n")
    return i, os.getpid()


@python_app
def ranked(i, log, parsl_resource_specification={}):
    """Append ``i pid`` to ``log`` and return ``i``: the log shows the order in which apps ran."""
    with open(log, "a") as f:
        f.write(f"{i} {os.getpid()}\n")
    return i


@python_app
def hang_if(i, log, victim, parsl_resource_specification={}):
    """Append ``i pid`` to ``log`` as it starts; then hang for an hour if ``i`` is the victim, else return ``i``."""
    with open(log, "a") as f:
        f.write(f"{i} {os.getpid()}\n")
    if i == victim:
        time.sleep(3600)
    return i


@python_app
def hold_slot(seconds, parsl_resource_specification={}):
    """Sleep: holds a slot while the apps submitted next wait, and leave in bundles."""
    time.sleep(seconds)


@python_app
def upper(inputs=(), outputs=()):
    """Read the one input, write it in capitals to the one output; return what was read and the pid."""
    with open(inputs[0].filepath) as f:
        text = f.read()
    with open(outputs[0].filepath, "w") as f:
        f.write(text.upper())
    return text, os.getpid()


@python_app
def slow(seconds):
    time.sleep(seconds)
    return os.getpid()


@bash_app
def echo_variable(i, stdout=None):
    """Print the run's PWQ_BUNDLE_VAR and ``i`` to this app's own stdout file."""
    return f"echo $PWQ_BUNDLE_VAR {i}"


@python_app
def fail_once(i, marks):
    """Fail the first time it runs for ``i`` (a mark file remembers), succeed the second: for Parsl's retries."""
    mark = os.path.join(marks, str(i))
    if not os.path.exists(mark):
        open(mark, "w").close()
        raise RuntimeError(f"first try of {i}")
    return i, os.getpid()
