"""Autolabel on a mixed workload: Work Queue measures each app and sizes the next ones by itself.

Two kinds of apps share one 2-core local worker: ``light`` uses a few MB, ``heavy``
holds about 200 MB for a second. Neither declares anything. With
``autolabel=True`` every task runs under Work Queue's resource monitor; once a
category has been measured, its apps get an allocation labelled from the
measurements (``allocation_mode="max-seen"``) instead of a whole worker, so
several run at once. The table at the end is what the executor also writes to
``RUN_DIR/LABEL/resources.txt``; ``parsl-wq report`` has the same per app.

    python examples/autolabel_mixed.py
"""

import parsl
from parsl import python_app
from parsl.config import Config

from parsl_wq import WorkQueueExecutor, resource_usage


@python_app
def light(x):
    return x + 1


@python_app
def heavy(megabytes, seconds):
    import time
    block = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(block), 4096):     # touch every page, so it is resident
        block[i] = 1
    time.sleep(seconds)
    return len(block) // (1024 * 1024)


def main():
    executor = WorkQueueExecutor(port=0, autolabel=True, autolabel_window=2, worker_options="--cores 2")
    with parsl.load(Config(executors=[executor], run_dir="runinfo")):
        futures = [light(i) for i in range(8)] + [heavy(200, 1) for _ in range(4)]
        for f in futures:
            f.result()
        last = resource_usage(futures[-1])
        print(f"the last heavy app used {last.measured.get('memory', 0):.0f} MB "
              f"and was allocated {last.allocated.get('memory', 0):.0f} MB")
        print(executor.usage_summary.table())


if __name__ == "__main__":
    main()
