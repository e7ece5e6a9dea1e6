"""How often the resource monitor sees a short memory peak: parsl_wq's 1 s sampling against Work Queue's 5 s.

    python benchmarks/peaks.py [--apps 10] [--holds 0.3 0.6 1 2 3]

Each app touches 400 MB, holds it for a while, frees it and returns; it
declares 1 core and no memory, so nothing stops it. With ``autolabel=True``
the monitor measures each one; a peak counts as seen when the measured memory
is at least 300 MB. Both configurations run in one run, each in a fresh
process, on one 2-core worker; the anchor turns parsl_wq's 1 s sampling off
(``monitor_interval=None``: Work Queue's own monitor, every 5 s).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap

from parsl_wq.engine import describe_engine

CHILD = textwrap.dedent('''
    import json, sys
    import parsl
    from parsl import python_app
    from parsl.config import Config
    from parsl_wq import WorkQueueExecutor, resource_usage

    mode, apps, run_dir, holds = sys.argv[1], int(sys.argv[2]), sys.argv[3], [float(h) for h in sys.argv[4:]]
    interval = None if mode == "every 5 s (Work Queue's own)" else 1

    @python_app
    def peak(megabytes, seconds, parsl_resource_specification={}):
        import time
        block = bytearray(megabytes * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(seconds)
        del block
        return megabytes

    executor = WorkQueueExecutor(port=0, autolabel=True, allocation_mode="fixed", monitor_interval=interval,
                                 worker_options="--cores 2 --memory 4000 --disk 4000")
    seen = {}
    with parsl.load(Config(executors=[executor], run_dir=run_dir, strategy="none")):
        for hold in holds:
            futures = [peak(400, hold, parsl_resource_specification={"cores": 1}) for _ in range(apps)]
            measured = [resource_usage(f).measured.get("memory", 0) for f in futures if f.result() == 400]
            seen[hold] = sum(m >= 300 for m in measured)
    print(json.dumps(seen))
''')

MODES = ("every 1 s (parsl_wq)", "every 5 s (Work Queue's own)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=10, help="apps per hold time")
    parser.add_argument("--holds", type=float, nargs="+", default=[0.3, 0.6, 1, 2, 3], help="seconds")
    options = parser.parse_args()
    options.holds = [float(h) for h in options.holds]     # the defaults skip argparse's type
    print(f"Work Queue engine: {describe_engine()}")
    results = {}
    for mode in MODES:
        with tempfile.TemporaryDirectory(prefix="pwq-bench-peaks-") as run_dir:
            proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(options.apps), run_dir,
                                   *map(str, options.holds)], capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n400 MB peaks seen by the resource monitor, of {options.apps} apps per hold time\n")
    print("| held for | " + " | ".join(MODES) + " |")
    print("|---|" + "---:|" * len(MODES))
    for hold in options.holds:
        print(f"| {hold:g} s | " + " | ".join(str(results[mode][str(hold)]) for mode in MODES) + " |")


if __name__ == "__main__":
    main()
