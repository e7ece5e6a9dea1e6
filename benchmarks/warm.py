"""Warm workers against cold ones, coprocesses and HTEX, side by side in one run.

    make bench ENGINE=7.17.1            # with the other benchmarks
    P=~/.cache/parsl_wq/cctools-7.17.1
    PATH=$P/bin:$PATH PYTHONPATH=$(echo $P/lib/python3*/site-packages) \\
        .venv/bin/python benchmarks/warm.py [--tasks 1000] [--only parsl_wq-warm,htex] [--workloads chain,noop]
        [--repeat 5]

Rows (executors), each in its own ``parsl.load``/``parsl.dfk().cleanup()``
cycle with a fresh run directory under a temporary folder; workers run on this
machine (2 cores), Work Queue workers with ``--cores 2`` (Parsl's executor
also with a fixed ``--disk``, see ``worker_options``; parsl_wq's workers have
one of their own), no project name: nothing leaves it:

    htex                Parsl's HighThroughputExecutor, one pool of 2 workers
    parsl-wq-cold       Parsl's WorkQueueExecutor, coprocess=False
    parsl-wq-coprocess  Parsl's WorkQueueExecutor, coprocess=True
    parsl_wq-cold       parsl_wq.WorkQueueExecutor(coprocess=False)
    parsl_wq-warm       parsl_wq.WorkQueueExecutor(), the default config: warm workers

Workloads (columns), in this order after ``parsl.load``:

    first    seconds from just before ``parsl.load`` to the result of one no-op
             app (always run: it also makes sure a worker is up). Parsl's own
             executors start their block at the first strategy poll
             (``Config.strategy_period``, 5 s); parsl_wq's ``start`` does it
    chain    seconds for --chain dependent apps, each importing pandas and
             summing a 100-row DataFrame plus its input, from the first submit
             to the last result; also the ratio to HTEX
    noop     apps/s for --tasks no-op apps submitted at once (--cold-tasks at
             most for parsl-wq-cold, which does about 2 apps/s)
    latency  p50/p99 ms from just before submitting a short app to its first
             statement (``time.time()`` on the same machine), for --latency
             apps one after another, while one long app holds one core

Work Queue rows declare 1 core for every app: ``{"cores": 1, "memory": 100,
"disk": 100}`` for no-op apps, 500 MB of memory and disk for the others (Parsl's
WorkQueueExecutor refuses a specification without all three keys). HTEX
accepts only an empty specification (or "priority"), so its apps get ``{}``.

With ``--repeat N`` the rows run N times, in turn (htex, then each other row,
then htex again, ...), and the table gives each figure's median over the N
runs, each ratio taken within its own round.

Targets for parsl_wq-warm, printed after the table: chain <= 1.0x HTEX, noop
>= 2x parsl-wq-coprocess, first result <= 0.3 s, latency p99 < 50 ms. A missed
target or a failed row does not change the exit status; only a crash of this
script does.

Parsl's WorkQueueExecutor starts ``python3`` (coprocess=False) or
``parsl_coprocess.py`` (coprocess=True, found by the worker on PATH) on the
worker, and HTEX starts ``process_worker_pool.py``: all in this interpreter's
folder, which is therefore put first on PATH. Where only Debian's Work Queue
is installed, Parsl's executor gets ``ndcctools.work_queue`` from the shim of
``throughput.py``.
"""

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from parsl_wq.engine import describe_engine
from throughput import shim_folder


def prepare_environment() -> None:
    """PATH and PYTHONPATH for the workers; must run before Parsl is imported (see the docstring)."""
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    shim = shim_folder()
    if shim:
        sys.path.insert(0, shim)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (shim, os.environ.get("PYTHONPATH")) if p)


prepare_environment()

import parsl  # noqa: E402
from parsl import python_app  # noqa: E402
from parsl.config import Config  # noqa: E402
from parsl.providers import LocalProvider  # noqa: E402

WORKLOADS = ("chain", "noop", "first", "latency")
ONE_CORE = {"cores": 1, "memory": 500, "disk": 500}     # memory for pandas
NOOP_SPEC = {"cores": 1, "memory": 100, "disk": 100}
HOLD_LIMIT_S = 900          # the long app of the latency workload ends by then at the latest


# ---------------------------------------------------------------- apps

@python_app
def noop(parsl_resource_specification={}):
    return None


@python_app
def chain_step(previous, parsl_resource_specification={}):
    import pandas
    frame = pandas.DataFrame({"x": range(100)})
    return int(frame["x"].sum()) + previous


@python_app
def stamp(parsl_resource_specification={}):
    import time     # already imported in the worker: a dictionary lookup
    return time.time()


@python_app
def hold(started, stop, limit, parsl_resource_specification={}):
    """Sleep until the file ``stop`` exists (or ``limit`` s passed), after creating ``started``."""
    import os
    import time
    open(started, "w").close()
    deadline = time.time() + limit
    while not os.path.exists(stop) and time.time() < deadline:
        time.sleep(0.05)


# ---------------------------------------------------------------- rows

def worker_options() -> str:
    """``--cores 2``, and a fixed ``--disk``: half of the free space where workers make their workspace.

    cctools 7.x gives a task that declares 1 of 2 cores half of the worker's
    disk ("proportional-resources"), and the worker measures its disk as the
    free space, again and again: once other files take a few MB, two such
    tasks no longer fit at once, and the latency workload's short apps wait
    for the long one. A fixed --disk below the free space does not move.
    """
    free_mb = shutil.disk_usage(tempfile.gettempdir()).free // 2**20
    return f"--cores 2 --disk {free_mb // 2}"


def make_htex():
    from parsl.executors import HighThroughputExecutor
    return HighThroughputExecutor(address="127.0.0.1", max_workers_per_node=2,
                                  provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1))


def make_parsl_workqueue(coprocess: bool):
    from parsl.executors import WorkQueueExecutor
    return WorkQueueExecutor(port=0, address="127.0.0.1", coprocess=coprocess, worker_options=worker_options(),
                             provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1))


def make_parsl_wq(coprocess: bool):
    import parsl_wq
    return parsl_wq.WorkQueueExecutor(port=0, coprocess=coprocess, worker_options="--cores 2")


@dataclass
class Row:
    name: str                       # for --only
    title: str
    make: Callable[[], object]      # the executor
    work_queue: bool                # apps declare resources
    cold: bool = False              # --cold-tasks caps the noop workload


ROWS = [
    Row("htex", "parsl HighThroughputExecutor", make_htex, work_queue=False),
    Row("parsl-wq-cold", "parsl WorkQueueExecutor", lambda: make_parsl_workqueue(False), work_queue=True, cold=True),
    Row("parsl-wq-coprocess", "parsl WorkQueueExecutor coprocess", lambda: make_parsl_workqueue(True), work_queue=True),
    Row("parsl_wq-cold", "parsl_wq.WorkQueueExecutor", lambda: make_parsl_wq(False), work_queue=True),
    Row("parsl_wq-warm", "parsl_wq.WorkQueueExecutor (default: warm)", lambda: make_parsl_wq(True),
        work_queue=True),
]


@dataclass
class Result:
    row: Row
    values: Dict[str, float] = field(default_factory=dict)
    noop_tasks: int = 0
    stage: str = "setup"            # what was running when the row failed
    error: Optional[str] = None


# ---------------------------------------------------------------- workloads

def measure_chain(length: int, spec: dict, timeout: float) -> float:
    start = time.perf_counter()
    future = chain_step(0, parsl_resource_specification=spec)
    for _ in range(length - 1):
        future = chain_step(future, parsl_resource_specification=spec)
    future.result(timeout=timeout)
    return time.perf_counter() - start


def measure_noop(tasks: int, spec: dict, timeout: float) -> float:
    start = time.perf_counter()
    futures = [noop(parsl_resource_specification=spec) for _ in range(tasks)]
    deadline = time.monotonic() + timeout
    for f in futures:
        f.result(timeout=max(0.0, deadline - time.monotonic()))
    return tasks / (time.perf_counter() - start)


def measure_latency(count: int, spec: dict, timeout: float, folder: str) -> List[float]:
    """Seconds from just before each submit to the app's first statement, while ``hold`` runs."""
    started, stop = os.path.join(folder, "hold.started"), os.path.join(folder, "hold.stop")
    long_app = hold(started, stop, HOLD_LIMIT_S, parsl_resource_specification=spec)
    try:
        wait_for_file(started, long_app, timeout)
        latencies = []
        for _ in range(count):
            before = time.time()
            latencies.append(stamp(parsl_resource_specification=spec).result(timeout=timeout) - before)
    finally:
        open(stop, "w").close()
    long_app.result(timeout=timeout)
    return latencies


def wait_for_file(path: str, future, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if future.done():
            future.result()     # raises the app's error
            raise RuntimeError("the long app ended before it started")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the long app did not start within {timeout:.0f} s")
        time.sleep(0.01)


def percentile(values: List[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# ---------------------------------------------------------------- one row

def run_row(row: Row, args, folder: str) -> Result:
    result = Result(row)
    try:
        config = Config(executors=[row.make()], run_dir=os.path.join(folder, "runinfo"), strategy="none")
        result.stage = "first"
        start = time.perf_counter()
        dfk = load(config)
        try:
            noop(parsl_resource_specification=NOOP_SPEC if row.work_queue else {}).result(timeout=args.timeout)
            result.values["first"] = time.perf_counter() - start
            run_workloads(row, args, folder, result)
            result.stage = "cleanup"
        finally:
            dfk.cleanup()
    except Exception as e:
        result.error = f"{type(e).__name__}: {e}".splitlines()[0][:160]
        if args.traceback:
            traceback.print_exc()
    return result


def load(config: Config):
    """``parsl.load``, shutting the executor down if the DataFlowKernel could not be made."""
    try:
        return parsl.load(config)
    except BaseException:
        for executor in config.executors:
            try:
                executor.shutdown()
            except Exception:
                pass
        raise


def run_workloads(row: Row, args, folder: str, result: Result) -> None:
    core = ONE_CORE if row.work_queue else {}
    if "chain" in args.workloads:
        result.stage = "chain"
        result.values["chain"] = measure_chain(args.chain, core, args.timeout)
    if "noop" in args.workloads:
        result.stage = "noop"
        result.noop_tasks = min(args.tasks, args.cold_tasks) if row.cold else args.tasks
        spec = NOOP_SPEC if row.work_queue else {}
        result.values["noop"] = measure_noop(result.noop_tasks, spec, args.timeout)
    if "latency" in args.workloads:
        result.stage = "latency"
        latencies = measure_latency(args.latency, core, args.timeout, folder)
        result.values["p50"] = percentile(latencies, 50) * 1000
        result.values["p99"] = percentile(latencies, 99) * 1000


# ---------------------------------------------------------------- report

COLUMNS = [("chain", "chain s", "{:.2f}"), ("chain/htex", "chain/HTEX", "{:.2f}x"),
           ("noop", "noop apps/s", "{:.1f}"), ("first", "first result s", "{:.2f}"),
           ("p50", "latency p50 ms", "{:.1f}"), ("p99", "latency p99 ms", "{:.1f}")]


def add_ratios(results: List[Result]) -> None:
    base = next((r.values.get("chain") for r in results if r.row.name == "htex"), None)
    for r in results:
        if base and "chain" in r.values:
            r.values["chain/htex"] = r.values["chain"] / base


def cells(result: Result) -> List[str]:
    """The row's numbers, or for a failed row its error (and what was measured before it)."""
    if result.error is None:
        return [fmt.format(result.values[key]) if key in result.values else "-" for key, _, fmt in COLUMNS]
    before = ", ".join(f"{title} {fmt.format(result.values[key])}"
                       for key, title, fmt in COLUMNS if key in result.values)
    return [f"ERROR in {result.stage}: {result.error}" + (f" (measured before: {before})" if before else "")]


def print_table(results: List[Result]) -> None:
    header = ["executor"] + [title for _, title, _ in COLUMNS]
    rows = [[r.row.title] + cells(r) for r in results]
    full = [header] + [line for line in rows if len(line) == len(header)]
    widths = [max(len(line[i]) for line in full) for i in range(len(header))]
    widths[0] = max(len(line[0]) for line in [header] + rows)
    print_line(header, widths)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in rows:
        print_line(line, widths)


def print_line(line: List[str], widths: List[int]) -> None:
    if len(line) < len(widths):     # a failed row: its error, unpadded
        print(f"| {line[0].ljust(widths[0])} | " + " | ".join(line[1:]) + " |")
        return
    padded = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
    print("| " + " | ".join(padded) + " |")


def print_notes(results: List[Result]) -> None:
    tasks = {r.row.title: r.noop_tasks for r in results if r.noop_tasks}
    if tasks:
        print("noop apps per row: " + ", ".join(f"{title} {n}" for title, n in tasks.items()))
    by_name = {r.row.name: r for r in results}
    warm, copro = by_name.get("parsl_wq-warm"), by_name.get("parsl-wq-coprocess")
    noop_ratio = None
    if warm and copro and "noop" in warm.values and "noop" in copro.values:
        noop_ratio = warm.values["noop"] / copro.values["noop"]
    value = (lambda key: warm.values.get(key)) if warm else (lambda key: None)
    print_target("parsl_wq warm chain / HTEX chain", value("chain/htex"), "{:.2f}x", "<=", 1.0, warm)
    print_target("parsl_wq warm noop / parsl WQ coprocess noop", noop_ratio, "{:.2f}x", ">=", 2.0, warm)
    print_target("parsl_wq warm first result", value("first"), "{:.2f} s", "<=", 0.3, warm)
    print_target("parsl_wq warm latency p99", value("p99"), "{:.1f} ms", "<", 50.0, warm)


def print_target(what: str, value: Optional[float], fmt: str, op: str, target: float, warm) -> None:
    goal = f"target {op} {fmt.format(target)}"
    if value is None:
        why = "parsl_wq warm failed, see the table" if warm and warm.error else "not measured"
        print(f"{what}: n/a ({goal}; {why})")
        return
    met = value <= target if op == "<=" else value >= target if op == ">=" else value < target
    print(f"{what}: {fmt.format(value)} ({goal}): {'met' if met else 'MISSED'}")


# ---------------------------------------------------------------- main

def names(text: str, allowed) -> List[str]:
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return chosen


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000, help="no-op apps per row (default 1000)")
    parser.add_argument("--cold-tasks", type=int, default=200,
                        help="at most this many no-op apps for parsl-wq-cold (default 200)")
    parser.add_argument("--chain", type=int, default=50, help="dependent apps in the chain (default 50)")
    parser.add_argument("--latency", type=int, default=100, help="short apps timed for latency (default 100)")
    parser.add_argument("--only", action="append", type=lambda t: names(t, [r.name for r in ROWS]),
                        help="rows to run, comma-separated: " + ", ".join(r.name for r in ROWS))
    parser.add_argument("--workloads", action="append", type=lambda t: names(t, WORKLOADS),
                        help="workloads to run, comma-separated: " + ", ".join(WORKLOADS) +
                             " (first is always measured)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds each workload may take (default 600)")
    parser.add_argument("--traceback", action="store_true", help="print the traceback of a failed row")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of all rows; the table gives medians")
    args = parser.parse_args(argv)
    args.only = [n for group in args.only for n in group] if args.only else [r.name for r in ROWS]
    args.workloads = [w for group in args.workloads for w in group] if args.workloads else list(WORKLOADS)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    print(f"Work Queue engine: {describe_engine()}", flush=True)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="parsl_wq-warm-") as folder:
        for round_number in range(args.repeat):
            results = []
            for row in (r for r in ROWS if r.name in args.only):
                print(f"running {row.name} (round {round_number + 1} of {args.repeat}) ...", file=sys.stderr,
                      flush=True)
                row_folder = os.path.join(folder, f"{row.name}-{round_number}")
                os.makedirs(row_folder)
                results.append(run_row(row, args, row_folder))
            add_ratios(results)
            rounds.append(results)
    if args.repeat > 1:
        for result in rounds[0]:
            runs = [r for one in rounds for r in one if r.row.name == result.row.name]
            print(f"{result.row.name}: " + "; ".join(
                ", ".join(f"{key} {fmt.format(r.values[key])}" for key, _, fmt in COLUMNS if key in r.values)
                for r in runs))
    results = medians(rounds)
    print_table(results)
    print_notes(results)


def medians(rounds: List[List[Result]]) -> List[Result]:
    """Each row's figures, the median over the rounds it did not fail in (a failed round's error otherwise)."""
    merged = []
    for first in rounds[0]:
        runs = [r for one in rounds for r in one if r.row.name == first.row.name]
        good = [r for r in runs if r.error is None] or runs[:1]
        keys = {k for r in good for k in r.values}
        values = {k: statistics.median(r.values[k] for r in good if k in r.values) for k in keys}
        merged.append(Result(first.row, values, good[0].noop_tasks, good[0].stage, good[0].error))
    return merged


if __name__ == "__main__":
    main()
