"""No-op apps through three executors, side by side in one run.

    python benchmarks/throughput.py [--tasks-parsl-wq 3000] [--tasks-parsl-workqueue 40] [--tasks-htex 3000]

For each executor, in a fresh process: the time from calling ``parsl.load`` to
the first result of one no-op app, then the throughput of N no-op apps
submitted at once. Workers run on this machine (2 cores here).

Parsl's own WorkQueueExecutor imports ``ndcctools.work_queue``; where only
Debian's Work Queue is installed, this script provides that name through a
small shim package on PYTHONPATH. Parsl's own runs ``python3`` on the worker,
so this interpreter's folder is put first on PATH.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

from parsl_wq.engine import describe_engine

CHILD = textwrap.dedent('''
    import json, sys, time
    import parsl
    from parsl import python_app
    from parsl.config import Config
    from parsl.providers import LocalProvider

    kind, n, run_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    @python_app
    def noop():
        return None

    def executor():
        if kind == "parsl_wq":
            from parsl_wq import WorkQueueExecutor
            return WorkQueueExecutor(port=0)
        if kind == "parsl-workqueue":
            from parsl.executors import WorkQueueExecutor
            return WorkQueueExecutor(port=0, address="127.0.0.1", provider=LocalProvider(init_blocks=1))
        from parsl.executors import HighThroughputExecutor
        return HighThroughputExecutor(address="127.0.0.1", provider=LocalProvider(init_blocks=1))

    config = Config(executors=[executor()], run_dir=run_dir, strategy="simple")
    start = time.perf_counter()
    with parsl.load(config):
        noop().result()
        first = time.perf_counter() - start
        start = time.perf_counter()
        futures = [noop() for _ in range(n)]
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - start
    print(json.dumps({"first_result_s": first, "tasks": n, "tasks_per_s": n / elapsed}))
''')

SHIM = '''
import sys
from parsl_wq.engine import SYSTEM_DIRS, _load_from_folder
sys.modules[__name__] = _load_from_folder(SYSTEM_DIRS[0])
'''


def shim_folder():
    """A folder holding an ``ndcctools.work_queue`` that is Debian's work_queue, or None if not needed."""
    try:
        import ndcctools.work_queue  # noqa: F401
        return None
    except ImportError:
        pass
    folder = tempfile.mkdtemp(prefix="ndcctools-shim-")
    os.makedirs(os.path.join(folder, "ndcctools"))
    open(os.path.join(folder, "ndcctools", "__init__.py"), "w").close()
    with open(os.path.join(folder, "ndcctools", "work_queue.py"), "w") as f:
        f.write(SHIM)
    return folder


def run(kind, tasks, shim):
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    if shim and kind == "parsl-workqueue":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (shim, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as run_dir:
        proc = subprocess.run([sys.executable, "-c", CHILD, kind, str(tasks), run_dir], env=env,
                              capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks-parsl-wq", type=int, default=3000, help="no-op apps for parsl_wq")
    parser.add_argument("--tasks-parsl-workqueue", type=int, default=40, help="for Parsl's own WorkQueueExecutor")
    parser.add_argument("--tasks-htex", type=int, default=3000, help="for Parsl's HighThroughputExecutor")
    args = parser.parse_args()
    shim = shim_folder()
    print(f"Work Queue engine: {describe_engine()}")
    rows = [("parsl_wq.WorkQueueExecutor", run("parsl_wq", args.tasks_parsl_wq, shim)),
            ("parsl WorkQueueExecutor", run("parsl-workqueue", args.tasks_parsl_workqueue, shim)),
            ("parsl HighThroughputExecutor", run("htex", args.tasks_htex, shim))]
    anchor = rows[1][1]["tasks_per_s"]
    print(f"{'executor':<30} {'tasks':>6} {'tasks/s':>9} {'vs parsl WQ':>12} {'first result (s)':>17}")
    for name, r in rows:
        print(f"{name:<30} {r['tasks']:>6} {r['tasks_per_s']:>9.1f} {r['tasks_per_s'] / anchor:>11.1f}x "
              f"{r['first_result_s']:>17.2f}")


if __name__ == "__main__":
    main()
