"""pack=True: build and lookup times, tarball sizes, and the cost per task, in one run.

    python benchmarks/pack.py [--tasks 200]

Each row is measured in a fresh process:

- cold build: an empty cache; scan, resolve and build the environment of an app
  that imports only cloudpickle, and of one that imports numpy;
- cached lookup: the same app in a new process with the tarball already built
  (what every later run pays), and again in that process for another function
  with the same imports;
- per task: N no-op apps on one local worker with pack=True, against pack=False
  (the anchor), after one warm-up task (which builds, ships and unpacks);
  also the number of unpacks the worker made.

Parsl's own WorkQueueExecutor packs with cctools' python_package_create, which
runs ``conda create`` against remote channels; that cannot run on machines
without internet, so it has no row here.
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
    import json, os, sys, time
    from parsl_wq.client import serialize
    from parsl_wq.pack import Packer

    mode, app_name, cache = sys.argv[1], sys.argv[2], sys.argv[3]

    def only_cloudpickle():
        import cloudpickle
        return cloudpickle.__name__

    def with_numpy():
        import numpy
        return numpy.__version__

    def with_numpy_again():
        import numpy
        return numpy.pi

    app = {"cloudpickle": only_cloudpickle, "numpy": with_numpy}[app_name]
    start = time.perf_counter()
    built = Packer(cache).prepare(app, serialize.serialize_function(app))
    first = time.perf_counter() - start
    other = with_numpy_again if app_name == "numpy" else only_cloudpickle
    packer = Packer(cache)
    packer.prepare(app, serialize.serialize_function(app))
    start = time.perf_counter()
    packer.prepare(other, serialize.serialize_function(other))
    again = time.perf_counter() - start
    print(json.dumps({"seconds": first, "again_seconds": again, "mb": os.path.getsize(built.tarball) / 1e6}))
''')

TASKS = textwrap.dedent('''
    import json, os, sys, time
    import parsl
    from parsl import python_app
    from parsl.config import Config
    from parsl_wq import WorkQueueExecutor

    pack, n, run_dir, cache = sys.argv[1] == "pack", int(sys.argv[2]), sys.argv[3], sys.argv[4]

    @python_app
    def noop():
        import cloudpickle
        return None

    @python_app
    def unpacks():
        import os, sys
        path = os.path.join(sys.prefix, ".pwq-unpacks")
        return len(open(path).read().splitlines()) if os.path.exists(path) else None

    options = {"pack": True, "pack_cache_dir": cache} if pack else {}
    with parsl.load(Config(executors=[WorkQueueExecutor(port=0, **options)], run_dir=run_dir, strategy="none")):
        start = time.perf_counter()
        noop().result()
        first = time.perf_counter() - start
        start = time.perf_counter()
        futures = [noop() for _ in range(n)]
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - start
        count = unpacks().result()
    print(json.dumps({"first_s": first, "tasks_per_s": n / elapsed, "ms_per_task": 1000 * elapsed / n,
                      "unpacks": count}))
''')


def child(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    options = parser.parse_args()
    print(f"Work Queue engine: {describe_engine()}")
    with tempfile.TemporaryDirectory(prefix="pwq-bench-pack-") as folder:
        cache = os.path.join(folder, "envs")
        print("| app imports | cold build (s) | tarball (MB) | cached lookup, new process (ms) | "
              "cached lookup, same process (ms) |")
        print("|---|---|---|---|---|")
        for app in ("cloudpickle", "numpy"):
            cold = child(CHILD, "build", app, cache)
            warm = child(CHILD, "lookup", app, cache)
            print(f"| {app} | {cold['seconds']:.2f} | {cold['mb']:.1f} | {1000 * warm['seconds']:.1f} | "
                  f"{1000 * warm['again_seconds']:.1f} |")
        print()
        print(f"| {options.tasks} no-op apps, 1 local worker | first result (s) | tasks/s | ms per task | "
              "unpacks |")
        print("|---|---|---|---|---|")
        for mode in ("no pack (anchor)", "pack"):
            flag = "pack" if mode == "pack" else "nopack"
            r = child(TASKS, flag, str(options.tasks), os.path.join(folder, f"run-{flag}"), cache)
            print(f"| {mode} | {r['first_s']:.2f} | {r['tasks_per_s']:.1f} | {r['ms_per_task']:.1f} | "
                  f"{r['unpacks'] if r['unpacks'] is not None else '-'} |")


if __name__ == "__main__":
    main()
