"""Where a link of a chain of dependent apps spends its time: each executor side by side in one run.

    P=~/.cache/parsl_wq/cctools-7.17.1
    PATH=$P/bin:$PATH PYTHONPATH=$(echo $P/lib/python3*/site-packages) \\
        .venv/bin/python benchmarks/chain_stages.py [--chain 50] [--rounds 3] [--only htex,parsl_wq-warm,work-queue]

The chain of ``benchmarks/warm.py`` (each app imports pandas and sums a
100-row DataFrame plus its input), run once to load the imports and then
``--rounds`` times more; the table gives medians over the links of those
rounds, so it shows the cost of a link once everything is warm, which the
chain workload of ``warm.py`` mixes with the cost of the first imports.

Each link is cut at four instants: the executor's ``submit`` is called (the
DataFlowKernel resolved the previous app), the app's first statement, its
last statement, and the executor's future resolves (clocks of the same
machine)::

    to app     submit -> the app's first statement
    app        the app's own run
    back       the app's last statement -> the executor's future resolves
    parsl      the future resolves -> the next submit (the DataFlowKernel)

For Work Queue rows the manager's transactions log splits the two trips:
``to worker`` (submit -> the manager starts sending the task), ``worker to
app`` (the task on the worker until the app's first statement: the sandbox,
the task's shell, the warm process, the fork), ``app to manager`` (the app's
last statement -> the manager has the result) and ``manager to future``.
Rows are those of ``warm.py``: the executors, workers and resources are the same.
One more row, ``work-queue``, is the floor under every Work Queue row: Work
Queue alone (its Python module, no Parsl), one task after the other on a
2-core worker of its own, each running ``true`` with a small input and output
file, as a warm task has; its link is from ``submit`` to ``wait`` returning it.
"""

import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time

import warm     # prepares PATH and PYTHONPATH for the workers before Parsl is imported
from parsl_wq.engine import describe_engine, load_work_queue

import parsl
from parsl import python_app
from parsl.config import Config

STAGES = ("to app", "app", "back", "parsl")
WQ_STAGES = ("to worker", "worker to app", "app to manager", "manager to future")


@python_app
def timed_step(previous, parsl_resource_specification={}):
    import time
    first = time.time()
    import pandas
    frame = pandas.DataFrame({"x": range(100)})
    total = int(frame["x"].sum()) + (previous[0] if previous else 0)
    return total, first, time.time()


def watch_submits(executor):
    """Wrap ``executor.submit``: the list it fills with (submit time, time its future resolved)."""
    times = []
    submit = executor.submit

    def timed_submit(*args, **kwargs):
        record = [time.time(), None]
        times.append(record)
        future = submit(*args, **kwargs)
        future.add_done_callback(lambda _: record.__setitem__(1, time.time()))
        return future
    executor.submit = timed_submit
    return times


def run_chain(length, spec, timeout):
    futures = [timed_step(None, parsl_resource_specification=spec)]
    for _ in range(length - 1):
        futures.append(timed_step(futures[-1], parsl_resource_specification=spec))
    futures[-1].result(timeout=timeout)
    return [f.result() for f in futures]


def task_events(run_dir):
    """{Work Queue task id: {state: time}} from the manager's transactions log, if the executor keeps one."""
    events = {}
    for log in glob.glob(os.path.join(run_dir, "*", "*", "transactions.log")):
        with open(log) as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[2] == "TASK" and fields[3].isdigit():
                    events.setdefault(int(fields[3]), {}).setdefault(fields[4], int(fields[0]) / 1e6)
    return events


def link_stages(times, apps):
    """Per link: the STAGES in seconds (the last link has no ``parsl``)."""
    links = []
    for i, ((submitted, resolved), (_, first, last)) in enumerate(zip(times, apps)):
        stages = {"to app": first - submitted, "app": last - first, "back": resolved - last}
        if i + 1 < len(times):
            stages["parsl"] = times[i + 1][0] - resolved
        links.append(stages)
    return links


def split_trips(links, times, apps, events):
    """Add the WQ_STAGES to each link, matching the chain's tasks to the last Work Queue tasks, in order."""
    tasks = [events[t] for t in sorted(events) if "RUNNING" in events[t] and "WAITING_RETRIEVAL" in events[t]]
    tasks = tasks[-len(links):]
    if len(tasks) != len(links):
        return
    for stages, (submitted, resolved), (_, first, last), task in zip(links, times, apps, tasks):
        stages.update({"to worker": task["RUNNING"] - submitted, "worker to app": first - task["RUNNING"],
                       "app to manager": task["WAITING_RETRIEVAL"] - last,
                       "manager to future": resolved - task["WAITING_RETRIEVAL"]})


def measure(row, args, folder):
    executor = row.make()
    times = watch_submits(executor)
    spec = warm.ONE_CORE if row.work_queue else {}
    run_dir = os.path.join(folder, "runinfo")
    dfk = warm.load(Config(executors=[executor], run_dir=run_dir, strategy="none"))
    links, walls = [], []
    try:
        run_chain(args.chain, spec, args.timeout)       # imports loaded, workers up
        for _ in range(args.rounds):
            del times[:]
            start = time.perf_counter()
            apps = run_chain(args.chain, spec, args.timeout)
            walls.append(time.perf_counter() - start)
            round_links = link_stages(list(times), apps)
            if row.work_queue:
                split_trips(round_links, times, apps, task_events(run_dir))
            links += round_links
    finally:
        dfk.cleanup()
    return statistics.median(walls), links


def work_queue_floor(args, folder):
    """Seconds per task of ``args.chain`` Work Queue tasks run one after the other, ``--rounds`` times."""
    wq = load_work_queue()
    queue = wq.WorkQueue(0)
    worker = subprocess.Popen(["work_queue_worker", "--cores", "2", "--workdir", folder, "--timeout", "60",
                               "127.0.0.1", str(queue.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    source = os.path.join(folder, "input")
    with open(source, "w") as f:
        f.write("x" * 200)
    try:
        walls = []
        for round_number in range(args.rounds + 1):     # the first round waits for the worker
            start = time.perf_counter()
            for _ in range(args.chain):
                task = wq.Task("true > output")
                task.specify_cores(1)
                task.specify_memory(100)
                task.specify_disk(100)
                task.specify_input_file(source, "input", cache=False)
                task.specify_output_file(os.path.join(folder, "output"), "output", cache=False)
                queue.submit(task)
                deadline = time.monotonic() + args.timeout
                while queue.wait(1) is None:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"a Work Queue task took over {args.timeout:.0f} s")
            if round_number:
                walls.append(time.perf_counter() - start)
        return statistics.median(walls)
    finally:
        worker.kill()
        worker.wait()


def median_ms(links, stage):
    values = [link[stage] for link in links if stage in link]
    return f"{statistics.median(values) * 1000:.2f}" if values else "-"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chain", type=int, default=50, help="dependent apps in a chain (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="chains timed after the first (default 3)")
    rows = [r.name for r in warm.ROWS] + ["work-queue"]
    parser.add_argument("--only", default="htex,parsl_wq-warm,work-queue", type=lambda t: warm.names(t, rows),
                        help="rows, comma-separated (default htex,parsl_wq-warm,work-queue): " + ", ".join(rows))
    parser.add_argument("--timeout", type=float, default=600, help="seconds a chain may take (default 600)")
    args = parser.parse_args(argv)
    print(f"Work Queue engine: {describe_engine()}", flush=True)
    header = ["executor", "chain s", "link ms"] + [f"{s} ms" for s in STAGES + WQ_STAGES]
    lines = []
    with tempfile.TemporaryDirectory(prefix="parsl_wq-stages-") as folder:
        for row in (r for r in warm.ROWS if r.name in args.only):
            print(f"running {row.name} ...", file=sys.stderr, flush=True)
            row_folder = os.path.join(folder, row.name)
            os.makedirs(row_folder)
            try:
                wall, links = measure(row, args, row_folder)
            except Exception as e:
                lines.append([row.title, f"ERROR: {type(e).__name__}: {e}".splitlines()[0][:160]])
                continue
            lines.append([row.title, f"{wall:.3f}", f"{wall / args.chain * 1000:.2f}"]
                         + [median_ms(links, s) for s in STAGES + WQ_STAGES])
        if "work-queue" in args.only:
            print("running work-queue ...", file=sys.stderr, flush=True)
            floor_folder = os.path.join(folder, "work-queue")
            os.makedirs(floor_folder)
            title = "Work Queue alone: `true`, one input, one output"
            try:
                wall = work_queue_floor(args, floor_folder)
            except Exception as e:
                lines.append([title, f"ERROR: {type(e).__name__}: {e}".splitlines()[0][:160]])
            else:
                lines.append([title, f"{wall:.3f}", f"{wall / args.chain * 1000:.2f}"]
                             + ["-"] * (len(STAGES) + len(WQ_STAGES)))
    widths = [max(len(line[i]) for line in [header] + lines if i < len(line)) for i in range(len(header))]
    for line in [header, ["-" * w for w in widths]] + lines:
        print("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(line, widths))) + " |")
    print(f"medians over the links of {args.rounds} chains of {args.chain} apps, once their imports were loaded")


if __name__ == "__main__":
    main()
