"""Bundling: apps that wait for a slot share a Work Queue task, each with its own outcome, and nothing is lost.

Real work_queue_worker processes, cold and (where the engine has coprocesses)
warm. The apps declare nothing, so each takes the worker's only slot. Each test
first lets one app of a kind finish, so that the manager knows how long such
apps take, then occupies the slot so that the apps submitted next wait and
leave in bundles. The apps of one bundle run in one Python: they report one pid.
"""

import collections
import os
import signal
import tempfile

import parsl
import pytest
from parsl.config import Config
from parsl.data_provider.files import File
from parsl.providers import LocalProvider

import bundle_apps
from conftest import MODES, start_worker, wait_until, worker_processes
from parsl_wq import WorkQueueExecutor, resource_usage
from parsl_wq.errors import AppCrashed

TIMEOUT = 120


@pytest.fixture(params=MODES)
def load(request, tmp_path, no_leftover_workers):
    """Load an executor, cold or warm; ``deliveries`` counts the outcomes it received per task."""
    kernels = []

    def load(retries=0, **options):
        executor = WorkQueueExecutor(port=0, coprocess=request.param == "warm", **options)
        kernels.append(parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none",
                                         retries=retries)))
        collector = executor._collector
        deliver = collector.deliver
        executor.deliveries = collections.Counter()

        def counted(done):
            executor.deliveries[done.task_id] += 1
            deliver(done)
        collector.deliver = counted
        return executor
    yield load
    for kernel in kernels:
        kernel.cleanup()


def behind_occupied_slot(submit, seconds=1.0):
    """Occupy the slot, then ``submit()``: those apps wait, and leave in bundles once the slot frees.

    The apps are submitted once the blocker runs: Work Queue need not start tasks in the order they came.
    """
    with tempfile.TemporaryDirectory() as folder:
        started = os.path.join(folder, "started")
        blocker = bundle_apps.occupy(seconds, started)
        assert wait_until(lambda: os.path.exists(started) or blocker.done(), timeout=TIMEOUT)
        if blocker.done():
            blocker.result()        # it failed before it started sleeping: its error
    futures = submit()
    blocker.result(timeout=TIMEOUT)
    return futures


def log_lines(log):
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [tuple(map(int, line.split())) for line in f if line.strip()]


def each_delivered_once(executor):
    return set(executor.deliveries.values()) == {1}


def test_each_app_of_a_bundle_gets_its_own_result_or_exception(load):
    executor = load()
    bundle_apps.numbered(0).result(timeout=TIMEOUT)
    futures = behind_occupied_slot(lambda: [bundle_apps.numbered(i) for i in range(1, 41)])
    pids = collections.Counter()
    for i, future in enumerate(futures, start=1):
        if i % 7 == 3:
            exc = future.exception(timeout=TIMEOUT)
            assert isinstance(exc, ValueError) and str(exc) == f"app {i} fails"
        else:
            value, pid = future.result(timeout=TIMEOUT)
            assert value == i
            pids[pid] += 1
    assert max(pids.values()) > 1                                   # apps shared a Python: they were bundled
    assert max(resource_usage(f).bundled for f in futures) > 1
    assert each_delivered_once(executor)


def test_an_app_that_ends_its_python_fails_alone_and_the_rest_of_its_bundle_runs(load, tmp_path):
    executor = load()
    log = str(tmp_path / "log")
    bundle_apps.exit_if(0, log, victim=-1).result(timeout=TIMEOUT)
    futures = behind_occupied_slot(lambda: [bundle_apps.exit_if(i, log, victim=20) for i in range(1, 41)])
    exc = futures[19].exception(timeout=TIMEOUT)
    assert isinstance(exc, AppCrashed) and "exited with code 3" in str(exc), exc
    others = [f.result(timeout=TIMEOUT) for i, f in enumerate(futures, start=1) if i != 20]
    assert [value for value, _ in others] == [i for i in range(1, 41) if i != 20]
    runs = collections.Counter(i for i, _ in log_lines(log))
    victim_pids = [pid for i, pid in log_lines(log) if i == 20]
    assert runs[20] == 2                                    # in its bundle, then alone
    assert sum(1 for i, pid in log_lines(log) if pid == victim_pids[0]) > 1     # the first time, in a bundle
    assert all(runs[i] == 1 for i in range(1, 41) if i != 20)    # the others ran exactly once
    assert each_delivered_once(executor)


def kill_a_running_bundle(log, kill):
    """Wait until a bundle has ended two apps and is still running; ``kill(pid)`` it. Returns that pid."""
    killed = []

    def attempt():
        for pid, count in collections.Counter(pid for _, pid in log_lines(log)).items():
            if count >= 2 and pid not in killed:
                killed.append(pid)
                try:
                    kill(pid)
                    return True
                except ProcessLookupError:      # that bundle had just ended: wait for the next
                    pass
        return False
    assert wait_until(attempt, timeout=TIMEOUT, interval=0.02), "no bundle ran long enough to be killed"
    return killed[-1]


def test_a_runner_killed_mid_bundle_loses_no_app(load, tmp_path):
    executor = load()
    log = str(tmp_path / "log")
    bundle_apps.logged(0, log, 0.2).result(timeout=TIMEOUT)
    futures = behind_occupied_slot(lambda: [bundle_apps.logged(i, log, 0.2) for i in range(1, 25)])
    killed = kill_a_running_bundle(log, lambda pid: os.kill(pid, signal.SIGKILL))
    assert [f.result(timeout=TIMEOUT)[0] for f in futures] == list(range(1, 25))
    kept = [f for f in futures if f.result()[1] == killed]      # apps that had ended in the killed bundle
    assert kept and all(resource_usage(f).bundled > 1 for f in kept)
    assert each_delivered_once(executor)
    runs = collections.Counter(i for i, _ in log_lines(log))
    assert all(1 <= runs[i] <= 2 for i in range(1, 25))     # twice only if killed between its end and its outcome


def test_a_worker_killed_mid_bundle_loses_no_app(load, tmp_path):
    executor = load(provider=LocalProvider(init_blocks=0))
    log = str(tmp_path / "log")
    workers = [start_worker(executor, 1, tmp_path)]
    try:
        bundle_apps.logged(0, log, 0.2).result(timeout=TIMEOUT)
        futures = behind_occupied_slot(lambda: [bundle_apps.logged(i, log, 0.2) for i in range(1, 25)])

        def kill_worker(pid):
            os.kill(pid, 0)                                 # still running, or ProcessLookupError
            os.killpg(workers[0].pid, signal.SIGKILL)       # the worker and its apps, as a node failure would
            workers[0].wait()
        kill_a_running_bundle(log, kill_worker)
        workers.append(start_worker(executor, 1, tmp_path))
        assert [f.result(timeout=TIMEOUT)[0] for f in futures] == list(range(1, 25))
        assert each_delivered_once(executor)
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
    assert wait_until(lambda: not worker_processes(), timeout=10), worker_processes()


def test_apps_whose_outputs_would_collide_are_never_bundled_together(load, tmp_path):
    executor = load()
    source = tmp_path / "in.txt"
    source.write_text("shared input")
    same = str(tmp_path / "same.txt")

    def submit(i, output):
        return bundle_apps.upper(inputs=[File(str(source))], outputs=[File(output)])
    submit(0, str(tmp_path / "out0.txt")).result(timeout=TIMEOUT)
    outputs = [same if i % 2 else str(tmp_path / f"out{i}.txt") for i in range(1, 31)]
    futures = behind_occupied_slot(lambda: [submit(i, output) for i, output in enumerate(outputs, start=1)])
    results = [f.result(timeout=TIMEOUT) for f in futures]
    assert all(text == "shared input" for text, _ in results)
    pids_of_same = [pid for (_, pid), output in zip(results, outputs) if output == same]
    pids_of_own = [pid for (_, pid), output in zip(results, outputs) if output != same]
    assert len(set(pids_of_same)) == len(pids_of_same)      # no two writers of same.txt in one bundle
    assert len(set(pids_of_own)) < len(pids_of_own)         # while the others were bundled
    assert all(open(o).read() == "SHARED INPUT" for o in outputs)
    assert each_delivered_once(executor)


def test_bundled_bash_apps_get_their_env_and_stdout_files_and_autolabel_measures_their_bundle(load, tmp_path):
    load(env={"PWQ_BUNDLE_VAR": "from-env"}, autolabel=True)
    outputs = [str(tmp_path / f"out{i}.txt") for i in range(21)]
    bundle_apps.echo_variable(0, stdout=outputs[0]).result(timeout=TIMEOUT)
    futures = behind_occupied_slot(lambda: [bundle_apps.echo_variable(i, stdout=outputs[i]) for i in range(1, 21)])
    assert [f.result(timeout=TIMEOUT) for f in futures] == [0] * 20
    assert [open(o).read() for o in outputs[1:]] == [f"from-env {i}\n" for i in range(1, 21)]
    bundled = [resource_usage(f) for f in futures if resource_usage(f).bundled > 1]
    assert bundled and all(usage.measured.get("wall_time", 0) > 0 for usage in bundled)


def test_parsl_retries_rerun_an_app_that_failed_in_a_bundle(load, tmp_path):
    load(retries=1)
    marks = tmp_path / "marks"
    marks.mkdir()
    bundle_apps.fail_once(0, str(marks)).result(timeout=TIMEOUT)
    futures = behind_occupied_slot(lambda: [bundle_apps.fail_once(i, str(marks)) for i in range(1, 21)])
    results = [f.result(timeout=TIMEOUT) for f in futures]
    assert [i for i, _ in results] == list(range(1, 21))
    assert len({pid for _, pid in results}) < 20           # the second tries were bundled too


def test_max_bundle_1_sends_each_app_alone(load):
    load(max_bundle=1)
    bundle_apps.numbered(0).result(timeout=TIMEOUT)
    futures = behind_occupied_slot(lambda: [bundle_apps.numbered(i) for i in range(1, 15) if i % 7 != 3])
    pids = [f.result(timeout=TIMEOUT)[1] for f in futures]
    assert len(set(pids)) == len(pids)
    assert all(resource_usage(f).bundled == 1 for f in futures)


def test_apps_go_alone_while_the_worker_has_room(load):
    load()
    bundle_apps.numbered(0).result(timeout=TIMEOUT)
    futures = [bundle_apps.numbered(i) for i in (1, 2)]     # room for two tasks per slot
    assert [f.result(timeout=TIMEOUT)[0] for f in futures] == [1, 2]
    assert [resource_usage(f).bundled for f in futures] == [1, 1]


def test_apps_of_a_second_or_more_are_never_bundled(load):
    load()
    bundle_apps.slow(1.1).result(timeout=TIMEOUT)
    futures = behind_occupied_slot(lambda: [bundle_apps.slow(1.1) for _ in range(3)])
    pids = [f.result(timeout=TIMEOUT) for f in futures]
    assert len(set(pids)) == 3 and all(resource_usage(f).bundled == 1 for f in futures)


def run_order(log):
    return [i for i, _ in log_lines(log)]


def test_a_high_priority_app_runs_next_though_hundreds_are_held(load, tmp_path):
    load()
    log = str(tmp_path / "log")
    bundle_apps.ranked(-1, log).result(timeout=TIMEOUT)
    urgent = {"priority": 100}

    def submit():
        held = [bundle_apps.ranked(i, log) for i in range(300)]
        return held + [bundle_apps.ranked(1000, log, parsl_resource_specification=urgent)]
    futures = behind_occupied_slot(submit)
    assert futures[-1].result(timeout=TIMEOUT) == 1000
    [f.result(timeout=TIMEOUT) for f in futures]
    order = run_order(log)[1:]
    # Behind the blocker, Work Queue had one app of priority 0 and the urgent one: the urgent one runs first
    # (before: after every held app).
    assert order.index(1000) == 0, order[:10]
    assert sorted(order) == list(range(300)) + [1000]


def test_held_apps_leave_highest_priority_first(load, tmp_path):
    load()
    log = str(tmp_path / "log")
    bundle_apps.ranked(-1, log).result(timeout=TIMEOUT)

    def submit():
        low = [bundle_apps.ranked(i, log) for i in range(100)]
        high = [bundle_apps.ranked(i, log, parsl_resource_specification={"priority": 5})
                for i in range(100, 200)]
        return low + high
    futures = behind_occupied_slot(submit)
    [f.result(timeout=TIMEOUT) for f in futures]
    order = run_order(log)[1:]
    last_high = max(position for position, i in enumerate(order) if i >= 100)
    low_before = [i for i in order[:last_high] if i < 100]
    # The one low app that Work Queue already had may start before them; no held low app does.
    assert len(low_before) <= 1, (low_before, order[:20])
    assert sorted(order) == list(range(200))


@pytest.mark.parametrize("mode", MODES)
def test_a_hung_app_holds_up_only_itself(no_leftover_workers, tmp_path, mode):
    import psutil
    executor = WorkQueueExecutor(port=0, coprocess=mode == "warm", provider=LocalProvider(init_blocks=0))
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none"))
    worker = start_worker(executor, "2 --memory 2000 --disk 4000", str(tmp_path))    # two 1-core slots
    try:
        hung_app_holds_up_only_itself(executor, tmp_path)
    finally:
        kernel.cleanup()
        # The hung app still runs when the run ends. The manager cancels it and tells the worker to leave,
        # yet in some runs here (2 of 3 in one series, 1 of 25 in another) the worker was still there 10 s
        # later, with the app's process; tests/test_lifecycle.py saw a worker wait for a canceled task's
        # time too. Not understood yet: whatever is left is stopped with the test.
        if not wait_until(lambda: worker.poll() is not None, timeout=10):
            for process in [psutil.Process(worker.pid)] + psutil.Process(worker.pid).children(recursive=True):
                process.kill()
            worker.wait()


def hung_app_holds_up_only_itself(executor, tmp_path):
    one_core = {"cores": 1}
    log = str(tmp_path / "log")
    assert bundle_apps.hang_if(-1, log, None, parsl_resource_specification=one_core).result(timeout=TIMEOUT) == -1
    blockers = [bundle_apps.hold_slot(1, parsl_resource_specification=one_core) for _ in range(2)]
    futures = [bundle_apps.hang_if(i, log, 30, parsl_resource_specification=one_core) for i in range(60)]
    [b.result(timeout=TIMEOUT) for b in blockers]     # the apps waited behind them: app 30 left in a bundle
    others = [f for i, f in enumerate(futures) if i != 30]
    assert wait_until(lambda: all(f.done() for f in others), timeout=60), \
        f"{sum(not f.done() for f in others)} apps behind the hung one did not resolve"
    assert [f.result() for f in others] == [i for i in range(60) if i != 30]
    assert not futures[30].done()
    # In its bundle, then alone: the run alone may start a moment after the others resolved.
    assert wait_until(lambda: collections.Counter(i for i, _ in log_lines(log))[30] == 2, timeout=30), \
        log_lines(log)
    runs = collections.Counter(i for i, _ in log_lines(log))
    assert all(runs[i] == 1 for i in range(60) if i != 30)
    with open(os.path.join(executor._log_dir, "manager.log")) as f:
        log_text = f.read()
    assert "which ran past 1 s: it runs again alone" in log_text, log_text
