"""Apps used by the integration tests, importable by workers through PYTHONPATH."""

import os
import sys

from parsl import bash_app, python_app


@python_app
def add(a, b):
    return a + b


@python_app
def raise_value_error(message):
    raise ValueError(message)


def _inner_failure():
    raise KeyError("inner")


@python_app
def raise_with_cause():
    try:
        _inner_failure()
    except KeyError as e:
        raise RuntimeError("outer") from e


@python_app
def read_env(name):
    return os.environ.get(name)


@python_app
def modules_loaded():
    return {"parsl": "parsl" in sys.modules, "cloudpickle": "cloudpickle" in sys.modules}


@python_app
def fail_until(counter_path, successes_after):
    """Fail while the counter file holds fewer than successes_after marks."""
    with open(counter_path, "a+") as f:
        f.seek(0)
        count = len(f.read())
        f.write("x")
    if count < successes_after:
        raise OSError(f"attempt {count} fails")
    return count


@python_app
def concatenate(inputs=(), outputs=()):
    text = "".join(open(f.filepath).read() for f in inputs)
    with open(outputs[0].filepath, "w") as out:
        out.write(text.upper())
    return text


@python_app
def read_positional(f, other=None):
    return open(f.filepath).read() + (open(other.filepath).read() if other is not None else "")


@bash_app
def echo(message, stdout=None, stderr=None):
    return f"echo {message}; echo {message} >&2"


@bash_app
def exit_with(code):
    return f"exit {code}"


@python_app
def sleep_for(seconds):
    import time
    time.sleep(seconds)
    return seconds


@python_app
def cores_spec_app(parsl_resource_specification={}):
    return "ran"


@python_app
def timed_sleep(seconds, parsl_resource_specification={}):
    """Sleep; return when the task started and ended, by the worker's clock."""
    import time
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


@python_app
def hold_memory(megabytes, seconds, parsl_resource_specification={}):
    """Touch megabytes of memory and hold them for seconds."""
    import time
    block = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(seconds)
    return megabytes


@python_app
def hostname_after(seconds, token=None):
    """The worker host's name, after ``seconds``; ``token`` makes each call distinct."""
    import socket
    import time
    time.sleep(seconds)
    return socket.gethostname()


@python_app
def sees_path(path):
    import os
    return os.path.exists(path)


@python_app
def kill_my_worker():
    """SIGKILL the work_queue_worker this app runs under: its worker is lost."""
    import os
    import signal

    import psutil
    for process in psutil.Process(os.getpid()).parents():
        if process.name() == "work_queue_worker":
            os.kill(process.pid, signal.SIGKILL)
            break
    return "worker not found"


@python_app
def digest_and_echo(data, size):
    """The SHA-256 of ``data`` as the worker got it, and ``size`` bytes of a pattern to send back."""
    import hashlib
    return hashlib.sha256(data).hexdigest(), bytes(range(256)) * (size // 256)


@python_app
def import_value(module):
    """``VALUE`` of the module ``module``, imported by the app."""
    import importlib
    return importlib.import_module(module).VALUE


@python_app
def parent_command():
    """The command line of the app's parent process: a warm host, or the task's shell."""
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()
