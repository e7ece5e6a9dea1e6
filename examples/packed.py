"""pack=True: each app travels with a packed Python environment that holds what it imports.

The executor scans the app's imports, builds a relocatable environment of the
distributions they come from (with conda-pack in a conda environment, else from
this interpreter), caches it, and sends it with the app's tasks; each worker
unpacks it once. Workers then need neither the packages nor Python itself.
Here the local worker would have them anyway: ``sys.prefix`` shows the app ran
in the unpacked environment. The first build takes a while; later runs reuse it.

    python examples/packed.py
"""

import parsl
from parsl import python_app
from parsl.config import Config

from parsl_wq import WorkQueueExecutor


@python_app
def describe(values):
    import sys
    import psutil      # a third-party package: it goes into the environment
    return sorted(values), sys.prefix, psutil.__version__


def main():
    executor = WorkQueueExecutor(port=0, pack=True)
    with parsl.load(Config(executors=[executor], run_dir="runinfo")):
        values, prefix, version = describe([3, 1, 2]).result()
        print(f"sorted {values} in {prefix} with psutil {version}")


if __name__ == "__main__":
    main()
