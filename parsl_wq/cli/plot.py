"""``parsl-wq plot``: one PNG of a run (matplotlib, the ``plot`` extra).

Four panels, read from the run's files:

- apps waiting and running over time, from ``tasks.jsonl`` (finished apps: submitted,
  started, ended), with the apps finished so far;
- workers connected over time, from Work Queue's ``stats.log``;
- per category, memory and cores: what each app was allocated beside what it used
  (measured with ``autolabel``), one dot per app.
"""

import os
from typing import Any, Dict, List, Tuple

from parsl_wq.client import run_status

STATS_LOG = "stats.log"


def app_series(tasks: List[Dict[str, Any]], start: float) -> Dict[str, Tuple[List[float], List[int]]]:
    """Step series (seconds from ``start``, count) of apps waiting, running and finished."""
    events: Dict[str, List[Tuple[float, int]]] = {"waiting": [], "running": [], "finished": []}
    for t in tasks:
        began = t.get("started") or t["finished"]
        ended = t.get("ended") or t["finished"]
        events["waiting"] += [(t["submitted"], 1), (max(began, t["submitted"]), -1)]
        if t.get("started"):
            events["running"] += [(t["started"], 1), (max(ended, t["started"]), -1)]
        events["finished"].append((t["finished"], 1))
    series = {}
    for name, changes in events.items():
        times, counts, level = [0.0], [0], 0
        for when, change in sorted(changes):
            level += change
            times.append(when - start)
            counts.append(level)
        series[name] = (times, counts)
    return series


def workers_series(folder: str, start: float) -> Tuple[List[float], List[int]]:
    """Workers connected over time, from Work Queue's stats log (its header names the columns)."""
    times, counts = [], []
    try:
        with open(os.path.join(folder, STATS_LOG)) as f:
            columns: List[str] = []
            for line in f:
                if line.startswith("#"):
                    columns = line[1:].split()
                    continue
                fields = line.split()
                if not columns or len(fields) < len(columns):
                    continue
                row = dict(zip(columns, fields))
                times.append(int(row["timestamp"]) / 1e6 - start)
                counts.append(int(row["workers_connected"]))
    except OSError:
        pass
    return times, counts


def per_category(tasks: List[Dict[str, Any]], resource: str) -> Dict[str, Tuple[List[float], List[float]]]:
    """Allocated and measured amounts of ``resource``, per category, one entry per app that has one."""
    found: Dict[str, Tuple[List[float], List[float]]] = {}
    for t in tasks:
        allocated, measured = (t.get("allocated") or {}).get(resource), (t.get("measured") or {}).get(resource)
        lists = found.setdefault(t["category"], ([], []))
        if allocated is not None:
            lists[0].append(allocated)
        if measured is not None:
            lists[1].append(measured)
    return found


def plot(folder: str, output: str) -> int:
    """Draw the run in ``folder`` to ``output`` (PNG); returns the number of apps drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = run_status.read_tasks(folder)
    run = run_status.load_json(os.path.join(folder, run_status.RUN)) or {}
    start = run.get("started") or min((t["submitted"] for t in tasks), default=0.0)
    figure, axes = plt.subplots(2, 2, figsize=(12, 8))
    figure.suptitle(f"{os.path.basename(folder)}: {len(tasks)} apps finished  ({folder})", fontsize=10)

    apps_axis = axes[0][0]
    series = app_series(tasks, start)
    for name, color in (("waiting", "tab:orange"), ("running", "tab:blue")):
        apps_axis.step(*series[name], where="post", label=name, color=color)
    apps_axis.set(title="Apps waiting and running", xlabel="seconds since start", ylabel="apps")
    finished_axis = apps_axis.twinx()
    finished_axis.step(*series["finished"], where="post", label="finished (right axis)", color="tab:green",
                       linestyle="--")
    finished_axis.set_ylabel("apps finished")
    handles = apps_axis.get_legend_handles_labels()[0] + finished_axis.get_legend_handles_labels()[0]
    apps_axis.legend(handles=handles, loc="upper left", fontsize=8)

    workers_axis = axes[0][1]
    times, counts = workers_series(folder, start)
    workers_axis.step(times, counts, where="post", color="tab:purple")
    workers_axis.set(title="Workers connected", xlabel="seconds since start", ylabel="workers")
    workers_axis.set_ylim(bottom=0, top=max(counts, default=0) + 1)
    workers_axis.yaxis.get_major_locator().set_params(integer=True)

    for axis, resource, unit in ((axes[1][0], "memory", "MB"), (axes[1][1], "cores", "cores")):
        found = per_category(tasks, resource)
        names = sorted(found)
        for i, name in enumerate(names):
            allocated, measured = found[name]
            axis.scatter([i - 0.15] * len(allocated), allocated, marker="_", s=300, color="tab:gray",
                         label="allocated" if i == 0 else None)
            axis.scatter([i + 0.15] * len(measured), measured, s=12, color="tab:red", alpha=0.6,
                         label="measured" if i == 0 else None)
        axis.set_xticks(range(len(names)))
        axis.set_xticklabels(names, rotation=20, fontsize=8)
        axis.set(title=f"{resource.capitalize()} per app: allocated and measured", ylabel=unit)
        values = [v for n in names for v in found[n][0] + found[n][1] if v > 0]
        if values and max(values) / min(values) > 20:     # a whole worker's memory beside a few MB used
            axis.set_yscale("log")
        else:
            axis.set_ylim(bottom=0)
        if names:
            axis.legend(fontsize=8)
        if not any(found[n][1] for n in names):
            axis.text(0.5, 0.5, "nothing measured: run with autolabel=True", transform=axis.transAxes,
                      ha="center", color="tab:gray")
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return len(tasks)
