"""Quick start: a few Parsl apps on Work Queue workers started on this machine.

Run with ``make demo`` (or ``python examples/quickstart.py`` inside the project's
virtual environment). The executor starts one local ``work_queue_worker`` that
connects to 127.0.0.1; nothing leaves this machine.
"""

import time

import parsl
from parsl import bash_app, python_app
from parsl.config import Config

from parsl_wq import WorkQueueExecutor


@python_app
def square(x):
    return x * x


@python_app
def fail(message):
    raise ValueError(message)


@bash_app
def hello(name, stdout=None):
    return f"echo hello from the worker, {name}"


def main():
    config = Config(executors=[WorkQueueExecutor(port=0)], run_dir="runinfo")
    start = time.monotonic()
    with parsl.load(config):
        first = square(7).result()
        print(f"square(7) = {first}  ({time.monotonic() - start:.2f} s after parsl.load)")
        squares = [square(i) for i in range(10)]
        print("squares:", [f.result() for f in squares])
        hello("quickstart", stdout="runinfo/hello.out").result()
        with open("runinfo/hello.out") as f:
            print("bash app wrote:", f.read().strip())
        try:
            fail("this error was raised on the worker").result()
        except ValueError as e:
            print(f"the app's exception came back as {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
