"""Workers from ``work_queue_factory``: it keeps their number between a minimum and a maximum.

Here the factory starts workers on this machine (``batch_type="local"``); on a
cluster, ``batch_type="slurm"`` (or "condor", "uge", ...) submits them as jobs,
with the run's password. See also ``parsl-wq workers``, which prints the same
factory command for a run that is going.

    python examples/factory.py
"""

import parsl
from parsl import python_app
from parsl.config import Config

from parsl_wq import WorkerFactory, WorkQueueExecutor


@python_app
def cube(x):
    return x ** 3


def main():
    factory = WorkerFactory(batch_type="local", min_workers=1, max_workers=2, cores=1)
    with parsl.load(Config(executors=[WorkQueueExecutor(port=0, factory=factory)], run_dir="runinfo")):
        print("cubes:", [f.result() for f in [cube(i) for i in range(10)]])


if __name__ == "__main__":
    main()
