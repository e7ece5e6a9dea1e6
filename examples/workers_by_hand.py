"""Workers started by hand, with the run's password: the way to add machines that no provider reaches.

The executor starts no worker (``LocalProvider(init_blocks=0)``) and makes a
password for the run (the default). ``parsl-wq workers`` prints the commands
that join it; run one in another terminal, here or on another machine that
can reach this one (copy the password file there first):

    python examples/workers_by_hand.py            # then, in another terminal:
    parsl-wq workers                              # prints: ... work_queue_worker --workdir ... --password ... HOST PORT
    parsl-wq status --watch                       # how far along, and which workers joined

With ``--start-worker`` the script runs the printed command itself, on this
machine (how the test suite runs it).
"""

import os
import signal
import subprocess
import sys

import parsl
from parsl import python_app
from parsl.config import Config
from parsl.providers import LocalProvider

from parsl_wq import WorkQueueExecutor
from parsl_wq.cli.main import executor_folders, worker_commands


@python_app
def where(x):
    import socket
    return x * x, socket.gethostname()


def main():
    executor = WorkQueueExecutor(port=0, address="127.0.0.1", provider=LocalProvider(init_blocks=0))
    worker = None
    with parsl.load(Config(executors=[executor], run_dir="runinfo", strategy="none")) as dfk:
        folder = executor_folders(dfk.run_dir, executor.label)[0]
        print(f"Waiting for workers. In another terminal:  parsl-wq workers {folder}\n", flush=True)
        if "--start-worker" in sys.argv:
            import json
            with open(os.path.join(folder, "run.json")) as f:
                text = worker_commands(json.load(f), "127.0.0.1")
            line = next(l.strip() for l in text.splitlines() if "work_queue_worker --workdir" in l)
            print(f"starting: {line}", flush=True)
            worker = subprocess.Popen(["sh", "-c", line], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
        try:
            results = [f.result() for f in [where(i) for i in range(5)]]
            print("results:", [value for value, _ in results], "from", sorted({host for _, host in results}))
        finally:
            if worker is not None:      # the shell and its worker; the shell then removes the worker's folder
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait()


if __name__ == "__main__":
    main()
