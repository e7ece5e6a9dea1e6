"""Large results and arguments: seconds for one app, and peak memory, parsl_wq against HTEX.

    python benchmarks/large_data.py [--sizes 16 256 1024] [--rounds 1]

For each size (MiB) and direction, one app either returns that many bytes
(``result``) or takes them as its argument and returns their length
(``argument``), on one local worker, after a small app has warmed the run
up. Each row runs in a fresh process per executor, so peaks are the row's
own: the user's process (``ru_maxrss``) and the process between it and the
workers (parsl_wq's manager, HTEX's interchange), read from ``VmHWM`` just
before shutdown; each peak is shown as the growth over the process's size
before the app, in multiples of the payload.
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
    import json, os, resource, sys, time
    import psutil
    import parsl
    from parsl import python_app
    from parsl.config import Config

    name, direction, size, run_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

    @python_app
    def produce(size):
        return b"\\x01" * size

    @python_app
    def consume(data):
        return len(data)

    def kib(field, pid):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])

    if name == "HTEX":
        from parsl.executors import HighThroughputExecutor
        from parsl.providers import LocalProvider
        executor = HighThroughputExecutor(label="htex", max_workers_per_node=1,
                                          provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1))
    else:
        from parsl_wq import WorkQueueExecutor
        executor = WorkQueueExecutor(port=0)
    kernel = parsl.load(Config(executors=[executor], run_dir=run_dir, strategy="none"))
    try:
        assert consume(b"warm up").result(timeout=300) == 7
        if name == "HTEX":
            middle = next(p.pid for p in psutil.Process().children(recursive=True)
                          if "interchange" in " ".join(p.cmdline()))
        else:
            middle = executor._manager.process.pid
        user_before = kib("VmRSS", os.getpid())
        middle_before = kib("VmRSS", middle)
        started = time.perf_counter()
        if direction == "result":
            value = produce(size).result(timeout=3600)
            ok = len(value) == size
        else:
            data = b"\\x01" * size
            started = time.perf_counter()       # the argument exists before the app is submitted
            ok = consume(data).result(timeout=3600) == size
        seconds = time.perf_counter() - started
        user_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        middle_peak = kib("VmHWM", middle)
        print(json.dumps({"ok": ok, "seconds": seconds, "user": (user_peak - user_before) * 1024 / size,
                          "middle": (middle_peak - middle_before) * 1024 / size}))
    finally:
        kernel.cleanup()
''')

EXECUTORS = ("HTEX", "parsl_wq")


def run(name: str, direction: str, size: int) -> dict:
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    with tempfile.TemporaryDirectory() as run_dir:     # HTEX starts interchange.py from PATH: the venv's bin
        done = subprocess.run([sys.executable, "-c", CHILD, name, direction, str(size), run_dir],
                              capture_output=True, text=True, timeout=7200, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"ok": False, "error": (done.stderr or done.stdout)[-400:]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 256, 1024], help="MiB")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(f"engine: {describe_engine()}")
    print("| payload | direction | HTEX s | parsl_wq s | parsl_wq / HTEX | user's process, HTEX / parsl_wq "
          "| interchange (HTEX) / manager (parsl_wq) |")
    print("|---|---|---|---|---|---|---|")
    for mib in args.sizes:
        for direction in ("result", "argument"):
            for _ in range(args.rounds):
                rows = {name: run(name, direction, mib << 20) for name in EXECUTORS}
                cells = []
                for name in EXECUTORS:
                    row = rows[name]
                    cells.append(f"{row['seconds']:.2f}" if row.get("ok") else "failed")
                ratio = (f"{rows['parsl_wq']['seconds'] / rows['HTEX']['seconds']:.2f}x"
                         if all(rows[n].get("ok") for n in EXECUTORS) else "-")

                def peaks(key):
                    return " / ".join(f"{rows[n][key]:.1f}x" if rows[n].get("ok") else "-" for n in EXECUTORS)
                print(f"| {mib} MiB | {direction} | {cells[0]} | {cells[1]} | {ratio} | {peaks('user')} "
                      f"| {peaks('middle')} |", flush=True)
                for name in EXECUTORS:
                    if not rows[name].get("ok"):
                        print(f"  {name}: {rows[name].get('error', 'wrong value')}", flush=True)


if __name__ == "__main__":
    main()
