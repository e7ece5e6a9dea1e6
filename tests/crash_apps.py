"""Apps and payloads that misbehave on purpose, for the crash table (test_crashes.py).

Importable by workers through PYTHONPATH. ``crash(kind)`` misbehaves in one of
the ways real apps do; the payload classes call it while being pickled or
unpickled, so the same misbehaviour can be placed at each stage of a task.
"""

import os
import signal

from parsl import python_app


class UnloadableError(Exception):
    """Pickles on the worker, but cannot be unpickled anywhere."""

    def __reduce__(self):
        return _refuse_to_load, self.args


def _refuse_to_load(*args):
    raise TypeError("UnloadableError cannot be unpickled")


class AppDefinedBaseException(BaseException):
    pass


def crash(kind):
    if kind == "raise":
        raise ValueError("crash-table ValueError")
    if kind == "exit":
        raise SystemExit(7)
    if kind == "interrupt":
        raise KeyboardInterrupt("crash-table interrupt")
    if kind == "generator-exit":
        raise GeneratorExit("crash-table generator exit")
    if kind == "base-exception":
        raise AppDefinedBaseException("crash-table base exception")
    if kind == "unloadable-exception":
        raise UnloadableError("crash-table unloadable")
    if kind == "recursion":
        return _recurse(0)
    if kind == "os-exit":
        os._exit(3)
    if kind == "os-exit-5":     # the code of the runner's refusal of a calls file: still the app's crash
        os._exit(5)
    if kind == "segfault":
        import ctypes
        ctypes.string_at(0)
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError(f"unknown crash kind {kind!r}")


def _recurse(n):
    return _recurse(n + 1)


class CrashOnLoad:
    """Misbehaves where it is unpickled."""

    def __init__(self, kind):
        self.kind = kind

    def __reduce__(self):
        return crash, (self.kind,)


class CrashOnPickle:
    """Misbehaves where it is pickled."""

    def __init__(self, kind):
        self.kind = kind

    def __reduce__(self):
        crash(self.kind)


def identity(value):
    return value


@python_app
def crash_app(kind):
    return crash(kind)


@python_app
def identity_app(value):
    return value


@python_app
def return_crash_on_pickle(kind):
    return CrashOnPickle(kind)


@python_app
def return_crash_on_load(kind):
    return CrashOnLoad(kind)


@python_app
def leave_a_thread_running():
    import threading
    import time
    threading.Thread(target=time.sleep, args=(3600,)).start()    # not a daemon: it would hold a normal exit
    return "returned"


@python_app
def change_directory_and_return(path):
    import os
    os.chdir(path)
    return os.getcwd()


@python_app
def make_temporary_folder():
    import tempfile
    return tempfile.mkdtemp(prefix="pwq-test-")


@python_app
def write_into(folder, name):
    import os
    with open(os.path.join(folder, name), "w") as f:
        f.write(name)
    return os.listdir(folder)


@python_app
def temporary_folder():
    import tempfile
    return tempfile.gettempdir()


