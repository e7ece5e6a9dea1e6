"""Bundling: many short apps, side by side with HTEX and with bundling off, in one run.

    make bench                            # with the other benchmarks (Debian's 9.9)
    make bench ENGINE=7.17.1
    .venv/bin/python benchmarks/bundling.py [--only perf,short,long,first,priority,hung,scale] [--scale 100000]
                                            [--scale-modes warm,cold]

Workers run on this machine (2 cores, with a fixed ``--disk``: see
``warm.worker_options``), connected to 127.0.0.1; no project name: nothing
leaves it. Each measurement is its own ``parsl.load`` cycle.

    perf    ``parsl-perf --config FILE --time 10`` (ships with Parsl; apps
            declare nothing, so a Work Queue app takes the whole worker), for
            HTEX (2 workers) and parsl_wq with and without bundling; the
            apps/s of its last iteration.
    short   --short apps of 10 ms (``time.sleep(0.01)``) declaring 1 core on one
            2-core worker: apps/s, and the share of the ideal 200 apps/s.
    long    --long apps of 2 s declaring 1 core: wall time with bundling and
            without; nothing may delay a long app.
    first   seconds from just before ``parsl.load`` to the first result.
    priority  --held apps of 10 ms, then, once Parsl has handed them all to the
            executor, one app of higher priority: seconds from its submission
            to its result, parsl_wq and HTEX (2 workers; HTEX
            runs lower values first and unset last, so there the urgent app
            declares 0 and the others nothing).
    hung    1,000 apps of 10 ms declaring 1 core on one 2-core worker, with and
            without one app among them that sleeps for an hour: seconds until
            the others have resolved.
    scale   --scale no-op apps declaring 1 core, at most --window in flight:
            the rate per 10,000 results, the peak RSS of this process and of
            the manager process per 10,000, and the files left in the run's
            task folder at the end; with the default (warm) and, with
            ``--scale-modes warm,cold``, with ``coprocess=False`` in turn.

Targets, printed after the tables: perf >= 1.0x HTEX, short >= 80% of 200
apps/s, long within 5% of the wall time without bundling, first <= 0.3 s,
the urgent app within 1 s, the 999 apps beside a hung one within 1.5x.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PERF_CONFIGS = os.path.join(HERE, "perf_configs")
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

import parsl  # noqa: E402
import psutil  # noqa: E402
from parsl import python_app  # noqa: E402
from parsl.config import Config  # noqa: E402
from parsl.dataflow.states import States  # noqa: E402

from parsl_wq import WorkQueueExecutor  # noqa: E402
from parsl_wq.engine import describe_engine  # noqa: E402
from warm import worker_options  # noqa: E402  (--cores 2 and a fixed --disk: see there)

ONE_CORE = {"cores": 1}


@python_app
def sleep_for(seconds, parsl_resource_specification={}):
    import time
    time.sleep(seconds)


@python_app
def noop(parsl_resource_specification={}):
    return None


@python_app
def hang_if(hang, parsl_resource_specification={}):
    import time
    time.sleep(3600 if hang else 0.01)


# ---------------------------------------------------------------- parsl-perf

def parsl_perf(config_name: str, seconds: int) -> float:
    """Apps/s of parsl-perf's last iteration with ``perf_configs/CONFIG_NAME.py``."""
    with tempfile.TemporaryDirectory() as folder:
        run = subprocess.run([sys.executable, "-m", "parsl.benchmark.perf", "--config",
                              os.path.join(PERF_CONFIGS, config_name + ".py"), "--time", str(seconds)],
                             cwd=folder, capture_output=True, text=True, timeout=40 * seconds + 300)
    rates = re.findall(r"Tasks per second: ([0-9.]+)", run.stdout)
    if run.returncode != 0 or not rates:
        raise RuntimeError(f"parsl-perf with {config_name} failed: {(run.stdout + run.stderr)[-600:]}")
    return float(rates[-1])


# ---------------------------------------------------------------- parsl_wq runs

def loaded(folder: str, **options):
    executor = WorkQueueExecutor(port=0, worker_options=worker_options(), **options)
    return parsl.load(Config(executors=[executor], run_dir=os.path.join(folder, "runinfo"), strategy="none"))


def short_apps(count: int, **options) -> float:
    with tempfile.TemporaryDirectory() as folder:
        dfk = loaded(folder, **options)
        try:
            sleep_for(0.01, parsl_resource_specification=ONE_CORE).result()     # the worker is up
            start = time.perf_counter()
            futures = [sleep_for(0.01, parsl_resource_specification=ONE_CORE) for _ in range(count)]
            for f in futures:
                f.result()
            return count / (time.perf_counter() - start)
        finally:
            dfk.cleanup()


def long_apps(count: int, **options) -> float:
    with tempfile.TemporaryDirectory() as folder:
        dfk = loaded(folder, **options)
        try:
            start = time.perf_counter()
            futures = [sleep_for(2, parsl_resource_specification=ONE_CORE) for _ in range(count)]
            for f in futures:
                f.result()
            return time.perf_counter() - start
        finally:
            dfk.cleanup()


def first_result() -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        dfk = loaded(folder)
        try:
            noop(parsl_resource_specification=ONE_CORE).result()
            return time.perf_counter() - start
        finally:
            dfk.cleanup()


def urgent_app(executor: str, held: int) -> float:
    """Seconds from the submission of an urgent app, behind ``held`` apps of 10 ms, to its result."""
    with tempfile.TemporaryDirectory() as folder:
        if executor == "HTEX":
            from parsl.executors import HighThroughputExecutor
            from parsl.providers import LocalProvider
            dfk = parsl.load(Config(executors=[HighThroughputExecutor(max_workers_per_node=2, provider=LocalProvider())],
                                    run_dir=os.path.join(folder, "runinfo"), strategy="none"))
            usual, urgent = {}, {"priority": 0}
        else:
            dfk = loaded(folder)
            usual, urgent = ONE_CORE, dict(ONE_CORE, priority=100)
        try:
            sleep_for(0.01, parsl_resource_specification=usual).result()     # the workers are up
            backlog = [sleep_for(0.01, parsl_resource_specification=usual) for _ in range(held)]
            # Parsl's DataFlowKernel hands apps to the executor from one thread, in order: an app submitted
            # now would wait there for the backlog's hand-over first, whatever its priority (HTEX alike).
            while any(f.task_record["status"] == States.pending for f in backlog):
                time.sleep(0.05)
            start = time.perf_counter()
            sleep_for(0.01, parsl_resource_specification=urgent).result()
            seconds = time.perf_counter() - start
            waiting = sum(not f.done() for f in backlog)
            for f in backlog:
                f.result()
            return seconds, waiting
        finally:
            dfk.cleanup()


def beside_a_hung_app(count: int, hung: bool) -> float:
    """Seconds until ``count`` apps of 10 ms resolve, with one more among them that hangs if ``hung``."""
    with tempfile.TemporaryDirectory() as folder:
        dfk = loaded(folder)
        try:
            sleep_for(0.01, parsl_resource_specification=ONE_CORE).result()
            start = time.perf_counter()
            futures = [hang_if(hung and i == count // 2, parsl_resource_specification=ONE_CORE)
                       for i in range(count + 1)]
            for i, f in enumerate(futures):
                if not (hung and i == count // 2):
                    f.result()
            return time.perf_counter() - start
        finally:
            dfk.cleanup()


class PeakRss:
    """The largest RSS, in MB, of each watched process since the last ``take``, sampled every 0.2 s."""

    def __init__(self, pids):
        self.processes = [psutil.Process(pid) for pid in pids]
        self.peaks = [0.0] * len(pids)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        threading.Thread(target=self.sample, daemon=True).start()

    def sample(self):
        while not self.stopped.wait(0.2):
            with self.lock:
                for i, process in enumerate(self.processes):
                    try:
                        self.peaks[i] = max(self.peaks[i], process.memory_info().rss / 2 ** 20)
                    except psutil.Error:
                        pass

    def take(self):
        with self.lock:
            peaks, self.peaks = self.peaks, [0.0] * len(self.peaks)
        return peaks


def scale(count: int, window: int, **options):
    """Rows of (results so far, apps/s over the last 10,000, peak RSS of this process, of the manager), and
    the names left in the task folder after the run."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        dfk = loaded(folder, **options)
        executor = dfk.executors["WorkQueueExecutor"]
        task_dir = executor._task_files.task_dir
        try:
            noop(parsl_resource_specification=ONE_CORE).result()
            peaks = PeakRss([os.getpid(), executor._manager.process.pid])
            done = threading.Semaphore(0)
            in_flight = threading.BoundedSemaphore(window)
            start = last = time.perf_counter()

            def finished(_):
                in_flight.release()
                done.release()
            submitter = threading.Thread(target=submit_all, args=(count, in_flight, finished), daemon=True)
            submitter.start()
            for n in range(1, count + 1):
                done.acquire()
                if n % 10000 == 0:
                    now = time.perf_counter()
                    rows.append((n, 10000 / (now - last), *peaks.take()))
                    last = now
            total = count / (time.perf_counter() - start)
            peaks.stopped.set()
        finally:
            dfk.cleanup()
        left = os.listdir(task_dir)
    return rows, total, left


def submit_all(count, in_flight, finished):
    for _ in range(count):
        in_flight.acquire()
        noop(parsl_resource_specification=ONE_CORE).add_done_callback(finished)


# ---------------------------------------------------------------- report

def table(header, rows):
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    for line in [header, ["-" * w for w in widths]] + rows:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(line, widths)) + " |")
    print()


def target(what, ok, detail):
    print(f"{'met   ' if ok else 'MISSED'} {what}: {detail}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="perf,short,long,first,priority,hung,scale")
    parser.add_argument("--held", type=int, default=10000)
    parser.add_argument("--perf-seconds", type=int, default=10)
    parser.add_argument("--short", type=int, default=10000)
    parser.add_argument("--long", type=int, default=100)
    parser.add_argument("--scale", type=int, default=100000)
    parser.add_argument("--window", type=int, default=20000)
    parser.add_argument("--scale-modes", default="warm", help="warm (the default config), cold, or both")
    args = parser.parse_args(argv)
    only = args.only.split(",")
    print(f"engine: {describe_engine()}\n")
    targets = []
    if "perf" in only:
        htex, bundled, alone = (parsl_perf(name, args.perf_seconds) for name in ("htex", "parsl_wq", "parsl_wq_alone"))
        table(["parsl-perf (apps declare nothing)", "apps/s", "vs HTEX"],
              [[name, f"{rate:.0f}", f"{rate / htex:.2f}x"] for name, rate in
               (("HTEX, 2 workers", htex), ("parsl_wq", bundled), ("parsl_wq, max_bundle=1", alone))])
        targets.append(("parsl-perf >= 1.0x HTEX", bundled >= htex, f"{bundled / htex:.2f}x"))
    if "short" in only:
        bundled, alone = short_apps(args.short), short_apps(min(args.short, 2000), max_bundle=1)
        table([f"{args.short} apps of 10 ms, 1 core each, one 2-core worker", "apps/s", "of ideal 200/s"],
              [["parsl_wq", f"{bundled:.0f}", f"{bundled / 2:.0f}%"],
               [f"parsl_wq, max_bundle=1 ({min(args.short, 2000)} apps)", f"{alone:.0f}", f"{alone / 2:.0f}%"]])
        targets.append(("10 ms apps >= 80% of 200/s", bundled >= 160, f"{bundled / 2:.0f}%"))
    if "long" in only:
        bundled, alone = long_apps(args.long), long_apps(args.long, max_bundle=1)
        table([f"{args.long} apps of 2 s, 1 core each", "wall s", "vs max_bundle=1"],
              [["parsl_wq", f"{bundled:.1f}", f"{bundled / alone:.3f}x"],
               ["parsl_wq, max_bundle=1", f"{alone:.1f}", "1x"]])
        targets.append(("2 s apps: the same wall time", bundled <= 1.05 * alone, f"{bundled / alone:.3f}x"))
    if "first" in only:
        first = first_result()
        print(f"first result after parsl.load: {first:.2f} s\n")
        targets.append(("first result <= 0.3 s", first <= 0.3, f"{first:.2f} s"))
    if "priority" in only:
        rows = []
        for name in ("HTEX", "parsl_wq"):
            seconds, waiting = urgent_app(name, args.held)
            rows.append([name, f"{seconds:.2f}", f"{waiting:,}"])
        table([f"an urgent app behind {args.held:,} apps of 10 ms", "seconds to its result",
               "apps still waiting then"], rows)
        targets.append(("urgent app within 1 s", seconds <= 1.0, f"{seconds:.2f} s"))
    if "hung" in only:
        alone, beside = beside_a_hung_app(999, False), beside_a_hung_app(999, True)
        table(["999 apps of 10 ms, 1 core each, one 2-core worker", "wall s", "vs without"],
              [["without a hung app", f"{alone:.2f}", "1x"],
               ["with one app that hangs among them", f"{beside:.2f}", f"{beside / alone:.2f}x"]])
        targets.append(("999 apps beside a hung one <= 1.5x", beside <= 1.5 * alone, f"{beside / alone:.2f}x"))
    modes = {"warm": {}, "cold": {"coprocess": False}}
    for mode in args.scale_modes.split(","):
        if mode not in modes:
            parser.error(f"--scale-modes: {mode!r} is not one of {', '.join(modes)}")
    for mode in args.scale_modes.split(",") if "scale" in only else []:
        rows, total, left = scale(args.scale, args.window, **modes[mode])
        table([f"results ({mode})", "apps/s (last 10,000)", "peak RSS, this process MB", "peak RSS, manager MB"],
              [[f"{n:,}", f"{rate:.0f}", f"{mine:.0f}", f"{manager:.0f}"] for n, rate, mine, manager in rows])
        print(f"{args.scale:,} apps ({mode}) at {total:.0f} apps/s; files left in the task folder: {len(left)}\n")
    for what, ok, detail in targets:
        target(what, ok, detail)


if __name__ == "__main__":
    main()
