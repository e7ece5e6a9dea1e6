"""What measuring costs, and what learning allocations buys, side by side in one run.

    python benchmarks/resources.py [--noop-tasks 200] [--one-core 12] [--two-core 4] [--seconds 1]

One worker with 2 cores on this machine; each configuration runs in a fresh
Parsl DataFlowKernel, one after the other.

1. Cost of the resource monitor: no-op apps declaring 1 core, so two run at a
   time either way, with ``autolabel`` off and on (``allocation_mode="fixed"``:
   measured, nothing learned).
2. A mixed workload the user knows nothing about: apps that keep one core busy
   and apps that keep two cores busy, interleaved, with no resource
   specification. Without learning every task takes the whole worker; with
   ``autolabel`` Work Queue learns 1 and 2 cores and runs one-core tasks two at
   a time. The last row declares the right cores by hand: the best possible.
"""

import argparse
import tempfile
import time

import parsl
from parsl import python_app
from parsl.config import Config

from parsl_wq import WorkQueueExecutor
from parsl_wq.engine import describe_engine

WORKER = "--cores 2 --memory 4000 --disk 4000"


@python_app
def noop(parsl_resource_specification={}):
    return None


def _burn(seconds):
    end = __import__("time").time() + seconds
    while __import__("time").time() < end:
        pass


@python_app
def one_core(seconds, parsl_resource_specification={}):
    _burn(seconds)


@python_app
def two_cores(seconds, parsl_resource_specification={}):
    import multiprocessing
    helper = multiprocessing.get_context("fork").Process(target=_burn, args=(seconds,))
    helper.start()
    _burn(seconds)
    helper.join()


def run(run_dir, workload, **options):
    executor = WorkQueueExecutor(port=0, worker_options=WORKER, **options)
    with parsl.load(Config(executors=[executor], run_dir=run_dir, strategy="none")):
        noop().result()      # the worker is connected
        start = time.perf_counter()
        futures = workload()
        for f in futures:
            f.result()
        return time.perf_counter() - start


def monitor_cost(run_dir, n):
    workload = lambda: [noop(parsl_resource_specification={"cores": 1}) for _ in range(n)]
    rows = []
    for name, options in [("autolabel=False", {}),
                          ("autolabel=True, allocation_mode='fixed'", {"autolabel": True, "allocation_mode": "fixed"})]:
        elapsed = run(run_dir, workload, **options)
        rows.append((name, n, elapsed, n / elapsed))
    return rows


def mixed(run_dir, ones, twos, seconds):
    def workload(declared=False):
        futures = []
        for i in range(max(ones, twos)):
            if i < ones:
                futures.append(one_core(seconds, parsl_resource_specification={"cores": 1} if declared else {}))
            if i < twos:
                futures.append(two_cores(seconds, parsl_resource_specification={"cores": 2} if declared else {}))
        return futures

    configurations = [
        ("whole worker (autolabel=False)", workload, {}),
        ("autolabel, max-seen", workload, {"autolabel": True, "autolabel_window": 1}),
        ("autolabel, max-throughput", workload, {"autolabel": True, "autolabel_window": 1,
                                                 "allocation_mode": "max-throughput"}),
        ("cores declared by hand", lambda: workload(declared=True), {}),
    ]
    return [(name, run(run_dir, work, **options)) for name, work, options in configurations]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noop-tasks", type=int, default=200)
    parser.add_argument("--one-core", type=int, default=12)
    parser.add_argument("--two-core", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    print(f"Work Queue engine: {describe_engine()}")
    run_dir = tempfile.mkdtemp(prefix="parsl_wq_bench_")

    cost = monitor_cost(run_dir, args.noop_tasks)
    print(f"\n1. Resource monitor cost: {args.noop_tasks} no-op apps declaring 1 core, 2-core worker\n")
    print("| configuration | tasks | time (s) | tasks/s |")
    print("|---|---|---|---|")
    for name, n, elapsed, rate in cost:
        print(f"| {name} | {n} | {elapsed:.2f} | {rate:.1f} |")
    extra_ms = (cost[1][2] - cost[0][2]) / args.noop_tasks * 1000
    print(f"\nmonitor cost: {extra_ms:.1f} ms of wall time per task (2 tasks at a time); "
          f"throughput ratio {cost[1][3] / cost[0][3]:.2f}")

    total = args.one_core + args.two_core
    print(f"\n2. Mixed workload: {args.one_core} apps busy on 1 core and {args.two_core} busy on 2 cores, "
          f"{args.seconds:g} s each, no resource specification, 2-core worker\n")
    rows = mixed(run_dir, args.one_core, args.two_core, args.seconds)
    baseline = rows[0][1]
    print("| configuration | tasks | time (s) | speed-up over whole worker |")
    print("|---|---|---|---|")
    for name, elapsed in rows:
        print(f"| {name} | {total} | {elapsed:.2f} | {baseline / elapsed:.2f}x |")
    print(f"\nrun directories under {run_dir} (resources.txt per run has the per-category table)")


if __name__ == "__main__":
    main()
