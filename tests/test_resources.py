"""Allocations learned from measurements, and exhaustion explained, on a real 2-core worker.

parsl_wq runs Work Queue's resource monitor with a 1 s interval (its own is 5 s),
so apps that must be caught using too much memory hold it for 3 s or more.
"""

import contextlib
import os
import re
import signal
import sqlite3

import parsl
import pytest
from parsl.config import Config
from parsl.monitoring import MonitoringHub
from parsl.providers import LocalProvider

import apps
from conftest import start_worker, wait_until
from parsl_wq import ResourceExhausted, WorkQueueExecutor, resource_usage
from parsl_wq.client.run_status import STATUS, load_json

WORKER_2_CORES = "--cores 2 --memory 2000 --disk 4000"


@contextlib.contextmanager
def running(tmp_path, monitoring=None, coprocess=False, **options):
    """A DFK with one parsl_wq executor and one 2-core worker; cold unless asked (these tests are about Work
    Queue's resource monitor; the ones that run warm too say so)."""
    executor = WorkQueueExecutor(port=0, worker_options=WORKER_2_CORES, coprocess=coprocess, **options)
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path), strategy="none",
                               monitoring=monitoring))
    try:
        yield executor
    finally:
        kernel.cleanup()


def intervals(futures):
    return sorted(f.result(timeout=120) for f in futures)


def overlaps(a, b):
    return a[0] < b[1] and b[0] < a[1]


def most_at_once(spans):
    """The largest number of spans running at one instant."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, change in events:   # at equal times, an end (-1) sorts before a start
        running += change
        most = max(most, running)
    return most


def test_without_learning_each_task_takes_the_whole_worker(tmp_path, no_leftover_workers):
    with running(tmp_path):
        spans = intervals([apps.timed_sleep(0.5) for _ in range(4)])
    assert most_at_once(spans) == 1, spans


def test_one_core_apps_run_side_by_side_on_the_executors_own_worker_without_a_disk_by_hand(tmp_path,
                                                                                          no_leftover_workers):
    """The executor's worker gets a fixed --disk (half the workspace disk's free space), so two 1-core apps on
    a 2-core worker keep fitting: cctools 7.x sized each one's disk from the worker's shrinking free space."""
    executor = WorkQueueExecutor(port=0, worker_options="--cores 2")
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path), strategy="none"))
    try:
        assert re.search(r"\$\{PWQ_DISK:\+--disk=\$PWQ_DISK\}", executor.worker_command)
        spans = intervals([apps.timed_sleep(1, parsl_resource_specification={"cores": 1}) for _ in range(8)])
    finally:
        kernel.cleanup()
    assert all(any(overlaps(a, b) for b in spans if b is not a) for a in spans), spans


def test_undeclared_resources_are_given_in_proportion_to_declared_ones(tmp_path, no_leftover_workers):
    with running(tmp_path):
        half = apps.timed_sleep(0, parsl_resource_specification={"cores": 1})
        whole = apps.timed_sleep(0)
        half.result(timeout=60), whole.result(timeout=60)
    assert resource_usage(half).allocated == {"cores": 1.0, "memory": 1000.0, "disk": 2000.0, "gpus": 0.0}
    assert resource_usage(whole).allocated == {"cores": 2.0, "memory": 2000.0, "disk": 4000.0, "gpus": 0.0}
    assert resource_usage(half).measured == {}      # nothing is measured without autolabel


@pytest.mark.parametrize("coprocess", [False, True], ids=["cold", "warm"])
def test_learning_raises_concurrency_from_one_to_two(tmp_path, no_leftover_workers, coprocess):
    """Cold, Work Queue learns from its monitor; warm, the manager learns from the warm host's measurements."""
    with running(tmp_path, autolabel=True, autolabel_window=1, coprocess=coprocess) as executor:
        futures = [apps.timed_sleep(1) for _ in range(10)]
        spans = intervals(futures)
        usages = [resource_usage(f) for f in futures]
        # Before anything is measured, a task takes the whole worker: the first runs alone.
        first = spans[0]
        assert not any(overlaps(first, other) for other in spans[1:]), spans
        # Once the category has measurements, two run at once on 2 cores.
        assert most_at_once(spans) == 2, spans
        assert {u.allocated["cores"] for u in usages} == {1.0, 2.0}
        assert all(u.category == "timed_sleep" and u.measured["wall_time"] >= 1 for u in usages)
        assert executor.outstanding() == 0
        assert executor._learned_cores == {"timed_sleep": 1}
        # A later task of the category counts as the 1 core it will be given, not a whole worker.
        later = apps.timed_sleep(3)
        assert wait_until(lambda: executor.outstanding() == 1, timeout=2), executor.outstanding()
        later.result(timeout=60)
    table = open(os.path.join(executor._log_dir, "resources.txt")).read()
    assert re.search(r"^timed_sleep\s+11\s+0\s+0\s+0\s", table, re.M), table


def test_going_past_a_declared_limit_fails_with_resource_use_and_limit(tmp_path, no_leftover_workers):
    with running(tmp_path, autolabel=True) as executor:
        future = apps.hold_memory(400, 8, parsl_resource_specification={"memory": 100})
        with pytest.raises(ResourceExhausted) as caught:
            future.result(timeout=120)
    message = str(caught.value)
    assert re.search(r"memory: used \d+ MB, limit 100 MB", message), message
    # Stopped at the first sample past the limit: with 1 s sampling that can be while
    # the app is still touching its 400 MB (279 MB once), so only "past 100" is certain.
    assert caught.value.usage.measured["memory"] > 100
    assert caught.value.usage.exceeded == {"memory": 100.0}
    assert executor.usage_summary.categories["hold_memory"].exhausted == 1


def test_warm_max_throughput_learns_one_core_for_apps_that_use_one(tmp_path, no_leftover_workers):
    with running(tmp_path, autolabel=True, autolabel_window=1, coprocess=True,
                 allocation_mode="max-throughput") as executor:
        futures = [apps.timed_sleep(1) for _ in range(10)]
        spans = intervals(futures)
        assert most_at_once(spans) == 2, spans
        assert {resource_usage(f).allocated["cores"] for f in futures} == {1.0, 2.0}
        assert executor._learned_cores == {"timed_sleep": 1}


@pytest.mark.parametrize("coprocess", [False, True], ids=["cold", "warm"])
def test_an_outlier_past_the_learned_allocation_is_retried_at_the_maximum(tmp_path, no_leftover_workers, coprocess):
    with running(tmp_path, autolabel=True, autolabel_window=1, coprocess=coprocess,
                 category_max_resources={"*": {"memory": 1000}}) as executor:
        # Small tasks, one after the other, until Work Queue trusts its measurements (a few tasks).
        allocated = []
        while len(allocated) < 20 and (not allocated or allocated[-1] >= 400):
            small = apps.hold_memory(1, 0.1)
            assert small.result(timeout=60) == 1
            allocated.append(resource_usage(small).allocated["memory"])
        assert allocated[0] == 1000 and allocated[-1] < 400, allocated    # the maximum, then a label

        outlier = apps.hold_memory(400, 7)
        assert outlier.result(timeout=120) == 400
        usage = resource_usage(outlier)
        assert usage.attempts == 2
        assert usage.measured["memory"] >= 400
    assert executor.usage_summary.categories["hold_memory"].retried == 1


def test_measurements_reach_parsl_monitoring(tmp_path, no_leftover_workers):
    database = tmp_path / "monitoring.db"
    hub = MonitoringHub(logging_endpoint=f"sqlite:///{database}", resource_monitoring_interval=0.1)
    with running(tmp_path, monitoring=hub, autolabel=True):
        futures = [apps.hold_memory(50, 0.2) for _ in range(2)]
        assert [f.result(timeout=120) for f in futures] == [50, 50]
        measured = {f.tid: resource_usage(f).measured for f in futures}
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT task_id, try_id, psutil_process_memory_resident, psutil_process_time_user, "
                          "psutil_process_status FROM resource ORDER BY task_id").fetchall()
    # One row per task, from Work Queue's measurements; Parsl's own per-task monitor did not run.
    assert [row[0] for row in rows] == sorted(measured), rows
    for task_id, try_id, resident, cpu_time, status in rows:
        assert try_id == 0 and status == "measured by Work Queue"
        assert resident == measured[task_id]["memory"] * 1024 * 1024
        assert cpu_time == measured[task_id]["cpu_time"]


def test_workers_fill_parsl_monitorings_node_table(tmp_path, no_leftover_workers):
    database = tmp_path / "monitoring.db"
    hub = MonitoringHub(logging_endpoint=f"sqlite:///{database}")
    executor = WorkQueueExecutor(port=0, provider=LocalProvider(init_blocks=0))
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path), strategy="none", monitoring=hub))
    first = start_worker(executor, 2, tmp_path)
    try:
        assert apps.add(1, 2).result(timeout=60) == 3
        os.killpg(first.pid, signal.SIGKILL)    # the worker, not only the shell that started it
        first.wait()
        later = apps.add(3, 4)      # waits for a worker while the manager sees the first one leave
        second = start_worker(executor, 1, tmp_path)
        assert later.result(timeout=60) == 7
        # the next queue states: the second worker's resources, and the first one gone
        assert wait_until(lambda: [w.get("cores") for w in load_json(os.path.join(executor._log_dir, STATUS))
                                   ["workers"]] == [1], timeout=10)
    finally:
        kernel.cleanup()
        for w in (first, second):
            try:
                os.killpg(w.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            w.wait()
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT uid, hostname, cpu_count, worker_count, total_memory, active, run_id "
                          "FROM node ORDER BY timestamp").fetchall()
    first_rows = [r for r in rows if r[0] == rows[0][0]]
    assert [r[5] for r in first_rows] == [1, 0], rows      # joined, then left
    assert first_rows[0][1].startswith("127.0.0.1:") and first_rows[0][2:4] == (2, 2)
    assert first_rows[0][4] > 0 and first_rows[0][6] == kernel.run_id
    others = [r for r in rows if r[0] != rows[0][0]]
    assert [(r[2], r[5]) for r in others] == [(1, 1)], rows


@pytest.mark.parametrize("kind, expected_type, words", [
    ("segfault", "AppCrashed", "killed by signal 11 (SIGSEGV)"),
    ("sigkill", "AppCrashed", "killed by signal 9 (SIGKILL)"),
    ("os-exit", "AppCrashed", "exited with code 3 before writing its result"),
    ("exit", "AppBaseException", "SystemExit(7)"),
])
def test_crashes_say_what_happened_under_the_resource_monitor_too(tmp_path, kind, expected_type, words):
    import crash_apps
    with running(tmp_path, autolabel=True):
        exc = crash_apps.crash_app(kind).exception(timeout=60)
        assert type(exc).__name__ == expected_type and words in str(exc), str(exc)
        assert crash_apps.identity_app("next").result(timeout=60) == "next"


def test_a_short_peak_past_a_declared_limit_is_seen_and_stopped(tmp_path, no_leftover_workers):
    with running(tmp_path, autolabel=True):
        future = apps.hold_memory(400, 3, parsl_resource_specification={"memory": 100})
        with pytest.raises(ResourceExhausted, match=r"memory: used \d+ MB, limit 100 MB") as caught:
            future.result(timeout=120)
    assert caught.value.usage.measured["memory"] > 100 and caught.value.usage.exceeded == {"memory": 100.0}


@pytest.mark.parametrize("coprocess", [False, True], ids=["cold", "warm"])
def test_a_declared_limit_holds_after_the_category_learned(tmp_path, no_leftover_workers, coprocess):
    with running(tmp_path, autolabel=True, autolabel_window=1, coprocess=coprocess):
        for _ in range(4):
            assert apps.hold_memory(1, 0.1).result(timeout=60) == 1
        future = apps.hold_memory(400, 8, parsl_resource_specification={"memory": 100})
        with pytest.raises(ResourceExhausted) as caught:
            future.result(timeout=120)
    assert caught.value.usage.allocated["memory"] == 100, caught.value.usage


def test_the_learned_allocation_of_an_app_with_a_short_peak_covers_the_peak(tmp_path, no_leftover_workers):
    with running(tmp_path, autolabel=True, autolabel_window=1):
        peaks = [apps.hold_memory(300, 2) for _ in range(3)]
        assert [f.result(timeout=120) for f in peaks] == [300, 300, 300]
        assert all(resource_usage(f).measured["memory"] >= 300 for f in peaks), \
            [resource_usage(f).measured for f in peaks]
        later = apps.hold_memory(300, 2)
        assert later.result(timeout=120) == 300
    assert resource_usage(later).attempts == 1
    assert 300 <= resource_usage(later).allocated["memory"] < 2000, resource_usage(later)
