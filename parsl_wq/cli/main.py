"""``parsl-wq``: look at a run from another terminal (status, report, plot, workers); check this machine (doctor).

Every verb but ``doctor`` reads the files the run writes (``parsl_wq.client.run_status``),
never the network, so it works while a password-protected run is going, and after it.

Exit codes: 0 done; 1 ``doctor`` found a problem, or ``plot`` lacks matplotlib; 2 bad command line;
3 no run found in RUN_DIR.
"""

import argparse
import csv
import datetime
import os
import shlex
import sys
import time
from typing import Any, Dict, List, Optional

from parsl_wq.client import joining, run_status
from parsl_wq.protocol.messages import amount, amounts

EXIT_OK, EXIT_PROBLEM, EXIT_NO_RUN = 0, 1, 3      # and argparse's 2 for a bad command line
DEFAULT_RUN_DIR = "runinfo"
# The factory's scratch folder, in the printed command: made fresh and private where the command runs (the
# factory copies the password file and the worker into it), never a fixed path that another user could make first.
SCRATCH = "SCRATCH"
SCRATCH_DIR = '"$(mktemp -d -t parsl_wq-factory.XXXXXX)"'


class NoRun(Exception):
    pass


# ----------------------------------------------------------------- finding runs

def executor_folders(path: str, label: Optional[str] = None) -> List[str]:
    """The executor folders (``RUN_DIR/LABEL``, holding run.json) that ``path`` names.

    ``path`` can be such a folder, a Parsl run directory (``runinfo/003``), or a
    folder of run directories (``runinfo``: its newest run).
    """
    path = os.path.abspath(path)
    if os.path.isfile(os.path.join(path, run_status.RUN)):
        return [path]
    if not os.path.isdir(path):
        raise NoRun(f"{path} is not a folder")
    children = sorted(os.path.join(path, c) for c in os.listdir(path) if os.path.isdir(os.path.join(path, c)))
    found = [c for c in children if os.path.isfile(os.path.join(c, run_status.RUN))
             and (label is None or os.path.basename(c) == label)]
    if found:
        return found
    runs = [c for c in children if any(os.path.isfile(os.path.join(c, g, run_status.RUN))
                                       for g in os.listdir(c) if os.path.isdir(os.path.join(c, g)))]
    if runs:
        return executor_folders(max(runs, key=os.path.getmtime), label)
    raise NoRun(f"no parsl_wq run in {path} (looked for {run_status.RUN} in LABEL folders of run directories)")


# ----------------------------------------------------------------------- status

def render_status(folder: str, now: Optional[float] = None) -> str:
    now = time.time() if now is None else now
    run = run_status.load_json(os.path.join(folder, run_status.RUN)) or {}
    status = run_status.load_json(os.path.join(folder, run_status.STATUS))
    lines = [f"Run {folder}"]
    if status is None:
        lines.append(f"  started {clock(run.get('started'))}; no status written yet")
        return "\n".join(lines)
    lines.append("  " + state_line(status, now))
    lines += ["", "Apps"] + table(["category", "apps", "waiting", "running", "done", "failed"], [
        [name, ", ".join(c["apps"]), c["waiting"], c["running"], c["done"], c["failed"]]
        for name, c in sorted(status["apps"].items())])
    totals = [sum(c[k] for c in status["apps"].values()) for k in ("waiting", "running", "done", "failed")]
    lines.append("  total: %d waiting, %d running, %d done, %d failed" % tuple(totals))
    workers = status["workers"]
    until = status["ended"] or now
    lines += ["", f"Workers: {len(workers)} connected" + (" when the run ended" if status["ended"] else "")]
    if workers:
        lines += table(["address", "cores", "memory", "disk", "wq tasks", "connected for"], [
            [w["address"], w.get("cores", "?"), size(w.get("memory")), size(w.get("disk")), w.get("tasks", 0),
             duration(until - w["connected"])] for w in sorted(workers, key=lambda w: w["address"])])
    elif status["ended"] is None:
        lines.append(f"  none: `parsl-wq workers {shlex.quote(folder)}` prints how to start some")
    if status["categories"]:
        lines += ["", "Resources (last allocation; measured peak, with autolabel)"]
        lines += table(["category", "allocated", "measured peak"], [
            [name, amounts(c["allocation"]), amounts(c["peak"])]
            for name, c in sorted(status["categories"].items())])
    if status["failures"]:
        lines += ["", "Last failures"]
        for f in status["failures"]:
            where = f" on {f['host']}" if f.get("host") else ""
            lines.append(f"  {clock(f['finished'])}  task {f['task']} {f['app']}{where}: "
                         f"{f['result']}: {f.get('error') or ''}".rstrip())
    return "\n".join(lines)


def state_line(status: Dict[str, Any], now: float) -> str:
    started = status["started"]
    if status["ended"] is not None:
        return f"finished at {clock(status['ended'])}, after {duration(status['ended'] - started)}"
    age = now - status["updated"]
    if not process_alive(status["pid"]) or age > 60:
        return (f"not running: last update {duration(age)} ago, at {clock(status['updated'])}; "
                f"the process ended without shutting the executor down")
    return f"running for {duration(now - started)} (updated {age:.1f} s ago)"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def table(header: List[str], rows: List[List[Any]]) -> List[str]:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]


def clock(epoch: Optional[float]) -> str:
    return datetime.datetime.fromtimestamp(epoch).strftime("%H:%M:%S") if epoch else "-"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def size(mb: Optional[float]) -> str:
    return "?" if mb is None else amount("memory", mb)


def status_command(args: argparse.Namespace) -> int:
    while True:
        text = "\n\n".join(render_status(f) for f in executor_folders(args.run_dir, args.label))
        if not args.watch:
            print(text)
            return EXIT_OK
        sys.stdout.write("\033[H\033[2J" + text + f"\n\n(every {args.watch:g} s; Ctrl-C to stop)\n")
        sys.stdout.flush()
        time.sleep(args.watch)


# ----------------------------------------------------------------------- report

REPORT_COLUMNS = ["task", "app", "category", "worker", "submitted", "started", "ended", "finished",
                  "wall_time", "cores", "memory", "disk", "allocated_cores", "allocated_memory",
                  "allocated_disk", "attempts", "bundled", "result", "error"]


def report_rows(folder: str) -> List[Dict[str, Any]]:
    rows = []
    for task in run_status.read_tasks(folder):
        measured, allocated = task.get("measured") or {}, task.get("allocated") or {}
        wall = task.get("seconds")      # the app's own time; a bundle's measurements are the bundle's
        if wall is None:
            wall = measured.get("wall_time")
        if wall is None and task.get("started") and task.get("ended"):
            wall = task["ended"] - task["started"]
        rows.append({"task": task["task"], "app": task["app"], "category": task["category"],
                     "worker": task.get("host", ""), "submitted": iso(task["submitted"]),
                     "started": iso(task.get("started")), "ended": iso(task.get("ended")),
                     "finished": iso(task["finished"]), "wall_time": rounded(wall),
                     "cores": rounded(measured.get("cores")), "memory": rounded(measured.get("memory")),
                     "disk": rounded(measured.get("disk")), "allocated_cores": rounded(allocated.get("cores")),
                     "allocated_memory": rounded(allocated.get("memory")),
                     "allocated_disk": rounded(allocated.get("disk")), "attempts": task.get("attempts", ""),
                     "bundled": task.get("bundled", ""), "result": task["result"], "error": task.get("error", "")})
    return rows


def iso(epoch: Optional[float]) -> str:
    return datetime.datetime.fromtimestamp(epoch).isoformat(timespec="milliseconds") if epoch else ""


def rounded(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.3f}".rstrip("0").rstrip(".")


def report_command(args: argparse.Namespace) -> int:
    rows = [row for folder in executor_folders(args.run_dir, args.label) for row in report_rows(folder)]
    out = open(args.output, "w", newline="") if args.output and args.output != "-" else sys.stdout
    try:
        writer = csv.DictWriter(out, REPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    finally:
        if out is not sys.stdout:
            out.close()
    if out is not sys.stdout:
        print(f"{len(rows)} tasks written to {args.output}", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------------- workers

def worker_commands(run: Dict[str, Any], hostname: str, count: int = 10) -> str:
    """How to join the run from elsewhere: a worker by hand, and through cctools' batch tools."""
    from parsl_wq.client.factory import WorkerFactory
    password, tls, project = run.get("password_file"), bool(run.get("tls")), run.get("project_name")
    local = run["address"] in ("127.0.0.1", "localhost") and not run.get("address_given")
    address = hostname if local else run["address"]     # workers elsewhere cannot use loopback
    manager = joining.manager_arguments(project, run.get("catalog"), address, run["port"])
    lines = [f"Run {run.get('label')} (manager port {run.get('port')}; {run.get('engine', 'engine unknown')})", ""]
    if password:
        lines += [f"The workers need the run's password file. Copy {password} to each node (or use a shared",
                  "file system), keep it private (chmod 600), and give its path on that node.", ""]
    worker = ["work_queue_worker"] + joining.WORKDIR_OPTION + joining.worker_options(password, tls) + manager
    lines += ["A worker by hand, in a workspace of its own (private, removed when it ends):",
              "  " + joining.PRIVATE_WORKDIR + " ".join(worker), ""]
    lines += [f"{count} workers through a batch system (cctools' submit scripts):"]
    for tool in ("slurm_submit_workers", "condor_submit_workers"):
        lines.append("  " + " ".join([tool] + joining.worker_options(password, tls) + manager + [str(count)]))
    factory = WorkerFactory(batch_type="slurm", min_workers=0, max_workers=count)
    command = factory.command(joining.factory_manager(project, address, run["port"]), SCRATCH,
                              password, joining.factory_catalog(project, run.get("catalog")), tls=tls,
                              wrapper=run.get("workspace_wrapper"))
    lines += ["", "Workers kept in step with the run's demand (work_queue_factory; -T condor, uge, ... also work),",
              "with a scratch folder made for it, private (mktemp -d):",
              "  " + " ".join(SCRATCH_DIR if c == SCRATCH else shlex.quote(c) for c in command)]
    if not project:
        lines.append("  (without a project_name the factory cannot read the demand of a password-protected "
                     "manager and keeps --min-workers running)")
    return "\n".join(lines)


def workers_command(args: argparse.Namespace) -> int:
    import socket
    texts = []
    for folder in executor_folders(args.run_dir, args.label):
        run = run_status.load_json(os.path.join(folder, run_status.RUN)) or {}
        texts.append(worker_commands(run, socket.getfqdn(), args.count))
    print("\n\n".join(texts))
    return EXIT_OK


# ------------------------------------------------------------------------- plot

def plot_command(args: argparse.Namespace) -> int:
    try:
        from parsl_wq.cli.plot import plot
    except ImportError as e:
        print(f"parsl-wq plot needs matplotlib ({e}): pip install 'parsl_wq[plot]'", file=sys.stderr)
        return EXIT_PROBLEM
    folders = executor_folders(args.run_dir, args.label)
    for i, folder in enumerate(folders):
        output = args.output if len(folders) == 1 else f"{os.path.splitext(args.output)[0]}-{i}.png"
        drawn = plot(folder, output)
        print(f"{output}: {drawn} apps of {folder}", file=sys.stderr)
    return EXIT_OK


# ----------------------------------------------------------------------- parser

def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="parsl-wq", description=__doc__.split("\n\n")[0],
                                  epilog="Exit codes: 0 done; 1 doctor found a problem, or plot lacks "
                                         "matplotlib; 2 bad command line; 3 no run found.")
    verbs = top.add_subparsers(dest="verb", metavar="VERB", required=True)

    def with_run(name: str, help: str) -> argparse.ArgumentParser:
        verb = verbs.add_parser(name, help=help, description=help)
        verb.add_argument("run_dir", nargs="?", default=DEFAULT_RUN_DIR, metavar="RUN_DIR",
                          help="a run directory, an executor's folder in it, or a folder of runs "
                               "(its newest run); default: ./runinfo")
        verb.add_argument("--label", help="only the executor with this label")
        return verb

    status = with_run("status", "apps waiting, running, done and failed; workers; allocations; last failures")
    status.add_argument("--watch", nargs="?", type=float, const=2.0, default=0, metavar="SECONDS",
                        help="refresh every SECONDS (default 2) until Ctrl-C")
    status.set_defaults(run=status_command)
    report = with_run("report", "one CSV row per finished app: times, worker, resources, attempts, result")
    report.add_argument("-o", "--output", default="-", help="the CSV file (default: standard output)")
    report.set_defaults(run=report_command)
    plot = with_run("plot", "one PNG: apps waiting and running, workers, and per category the memory and "
                            "cores each app was allocated and used")
    plot.add_argument("-o", "--output", default="run.png", help="the PNG file (default run.png)")
    plot.set_defaults(run=plot_command)
    workers = with_run("workers", "the commands that start workers for this run, here or elsewhere")
    workers.add_argument("--count", type=int, default=10, help="workers in the batch commands (default 10)")
    workers.set_defaults(run=workers_command)
    doctor = verbs.add_parser("doctor", help="check the Work Queue engine, the worker, packing, and run one app",
                              description="Check the Work Queue engine, the worker, packing, and run one app "
                                          "on a local worker; each problem is named with what to do.")
    doctor.add_argument("--no-self-test", action="store_true", help="skip the app run on a local worker")
    doctor.set_defaults(run=doctor_command)
    return top


def doctor_command(args: argparse.Namespace) -> int:
    from parsl_wq.cli import doctor
    return EXIT_OK if doctor.run(self_test_on=not args.no_self_test) else EXIT_PROBLEM


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except NoRun as e:
        print(f"parsl-wq {args.verb}: {e}", file=sys.stderr)
        return EXIT_NO_RUN
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
