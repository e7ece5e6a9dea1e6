"""Start-up, broken state and shutdown of the executor, with real workers."""

import os
import signal
import time

import parsl
import pytest
from parsl.config import Config

import apps
from conftest import wait_until, worker_processes, workers
from parsl_wq import ConfigurationError, ExecutorBroken, ExecutorShutdown, WorkQueueExecutor

SCRIPT_APPS = '''
import sys
from parsl import python_app

@python_app
def square(x):
    return x * x

@python_app
def worker_modules():
    return sorted(m for m in ("parsl", "cloudpickle") if m in sys.modules)

def helper(x):
    return x + 1

@python_app
def uses_helper(x):
    return helper(x)
'''


def script_apps():
    """Apps defined the way a user's script defines them: in ``__main__``."""
    namespace = {"__name__": "__main__"}
    exec(compile(SCRIPT_APPS, "user_script.py", "exec"), namespace)
    return namespace


def test_script_apps_run_without_parsl_or_cloudpickle_on_the_worker(fresh_dfk):
    ns = script_apps()
    assert ns["square"](9).result(timeout=60) == 81
    assert ns["worker_modules"]().result(timeout=60) == []
    assert ns["uses_helper"](1).result(timeout=60) == 2   # needs cloudpickle: still works


def test_an_app_runs_though_its_worker_lost_a_cached_input(fresh_dfk):
    """cctools 7.17's worker does not start a task whose cached input is gone from its cache: the task goes
    again, its inputs sent anew, and the app runs. Debian's 9.9 worker reconnects with an empty cache instead."""
    import glob

    from conftest import engine_has_coprocesses, worker_workspace
    _, executor = fresh_dfk
    assert apps.add(1, 2).result(timeout=60) == 3        # the worker now holds the worker program in its cache
    (worker,) = workers()
    cached = glob.glob(os.path.join(worker_workspace(worker), "cache", "*pwq_worker.pyz"))
    assert len(cached) == 1, cached
    os.remove(cached[0])
    assert apps.add(2, 3).result(timeout=60) == 5
    with open(os.path.join(executor._log_dir, "manager.log")) as f:
        restarted = "could not set up its sandbox, so no app ran; submitted again" in f.read()
    assert restarted == engine_has_coprocesses()         # cctools 7.x; Debian's worker reconnected


def test_an_app_runs_though_its_worker_got_the_workspace_of_a_killed_one(load_without_workers, tmp_path):
    """A worker killed by SIGKILL leaves /tmp/worker-UID-PID behind; a new worker that gets the same process id
    uses it, stale sandboxes included. The first task's sandbox is in the way here, as such a leftover would be,
    with the calls file of another run in it: a pickle that leaves a mark if anything loads it.

    cctools 7.17's worker does not start the task. Debian's 9.9 worker runs it with the stale file in place of
    the task's own (docs/engines.md), and the runner refuses that file, loading nothing of it. On both, the task
    goes again in a new sandbox and the app runs."""
    import pickle

    from conftest import Planted, engine_has_coprocesses, start_worker, worker_workspace
    from parsl_wq.protocol import sandbox
    executor = load_without_workers()
    worker = start_worker(executor, 1, tmp_path)
    mark = tmp_path / "loaded"
    try:
        assert wait_until(lambda: len(workers()) == 1, timeout=10)
        (process,) = workers()
        workspace = worker_workspace(process)
        assert wait_until(lambda: os.path.isdir(workspace), timeout=10)
        os.makedirs(os.path.join(workspace, "t.1"))
        with open(os.path.join(workspace, "t.1", sandbox.CALLS), "wb") as f:
            f.write(sandbox.calls_file("0123456789abcdef.0", [(Planted(str(mark)),)], pickle.dumps))
        assert apps.add(2, 3).result(timeout=60) == 5
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    assert not mark.exists()
    with open(os.path.join(executor._log_dir, "manager.log")) as f:
        log = f.read()
    why = "could not set up its sandbox" if engine_has_coprocesses() else "a calls file that was not its own"
    assert f"{why}, so no app ran; submitted again" in log, log


def test_killed_manager_fails_every_pending_future_and_later_submits(fresh_dfk):
    kernel, executor = fresh_dfk
    assert apps.add(1, 1).result(timeout=60) == 2
    pending = [apps.sleep_for(30) for _ in range(3)]
    assert wait_until(lambda: executor.outstanding() == 3, timeout=30)
    killed_at = time.monotonic()
    os.kill(executor._manager.process.pid, signal.SIGKILL)
    for future in pending:
        exc = future.exception(timeout=10)
        assert isinstance(exc, ExecutorBroken), exc
        assert "exited unexpectedly" in str(exc)
    assert time.monotonic() - killed_at < 10
    with pytest.raises(ExecutorBroken):
        executor.submit(len, {}, [1])
    assert isinstance(apps.add(1, 2).exception(timeout=10), ExecutorBroken)


@pytest.mark.parametrize("pack", [False, True], ids=["plain", "pack"])
def test_a_manager_killed_during_a_busy_submit_loop_leaves_no_future_pending(tmp_path, pack):
    """Each submit either raises ExecutorBroken or returns a future that resolves, whenever the manager dies."""
    import threading

    from parsl.providers import LocalProvider
    for round_number, delay in enumerate((0.0, 0.002, 0.01, 0.05, 0.2)):
        packing = {"pack": True, "pack_cache_dir": str(tmp_path / "envs")} if pack else {}
        executor = WorkQueueExecutor(port=0, provider=LocalProvider(init_blocks=0), **packing)
        kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path / str(round_number)),
                                   strategy="none"))
        try:
            manager = executor._manager.process.pid
            futures, refused = [], 0
            threading.Timer(delay, os.kill, (manager, signal.SIGKILL)).start()
            deadline = time.monotonic() + delay + 0.5
            while time.monotonic() < deadline:
                try:
                    futures.append(executor.submit(apps.add, {}, 1, len(futures)))
                except ExecutorBroken:
                    refused += 1
            assert refused, "the manager was killed, yet every submit was accepted"
            assert wait_until(lambda: all(f.done() for f in futures), timeout=15), \
                f"{sum(not f.done() for f in futures)} of {len(futures)} futures still pending (killed at {delay} s)"
            assert all(isinstance(f.exception(), ExecutorBroken) for f in futures)
        finally:
            kernel.cleanup()
            parsl.clear()


def test_shutdown_is_quick_fails_outstanding_and_leaves_no_worker(tmp_path):
    executor = WorkQueueExecutor(port=0)
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path), strategy="none"))
    assert apps.add(2, 2).result(timeout=60) == 4
    assert worker_processes(), "the executor should have started a worker"
    future = executor.submit(time.sleep, {}, 60)
    started = time.monotonic()
    kernel.cleanup()
    assert time.monotonic() - started < 15
    exc = future.exception(timeout=1)
    assert isinstance(exc, ExecutorShutdown) and "still outstanding" in str(exc)
    assert wait_until(lambda: not worker_processes(), timeout=10), worker_processes()
    assert executor._manager.process.poll() is not None


@pytest.mark.parametrize("strategy", ["none", "simple"])
def test_initial_blocks_are_started_once(tmp_path, no_leftover_workers, strategy):
    executor = WorkQueueExecutor(port=0)
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path), strategy=strategy,
                               strategy_period=0.2))
    try:
        assert apps.add(1, 2).result(timeout=60) == 3     # runs before the strategy's first period
        time.sleep(1.5)                                  # several strategy periods
        assert len(executor.blocks_to_job_id) == 1, executor.blocks_to_job_id
        assert len(workers()) == 1, worker_processes()
    finally:
        kernel.cleanup()


@pytest.mark.parametrize("kwargs, name", [
    ({"env": {"A": 1}}, "env"),
    ({"port": 70000}, "port"),
    ({"max_retries": -2}, "max_retries"),
    ({"project_password_file": "/nonexistent/pw"}, "project_password_file"),
    ({"autolabel_window": 0}, "autolabel_window"),
    ({"allocation_mode": "max"}, "allocation_mode"),
    ({"allocation_mode": "max-seen"}, "allocation_mode"),     # learning without autolabel
    ({"category_max_resources": {"sim": {"memory": -1}}}, "category_max_resources"),
    ({"category_max_resources": {"sim": {"ram": 100}}}, "category_max_resources"),
    ({"category_first_allocation": {"": {"cores": 1}}}, "category_first_allocation"),
    ({"category_first_allocation": {"sim": {"cores": 0}}}, "category_first_allocation"),
])
def test_bad_parameters_fail_at_construction(kwargs, name):
    with pytest.raises(ConfigurationError) as info:
        WorkQueueExecutor(**kwargs)
    assert name in str(info.value)


def test_wrong_parameter_types_are_rejected():
    import typeguard
    with pytest.raises(typeguard.TypeCheckError, match="port"):
        WorkQueueExecutor(port="9123")


def test_accepts_every_parameter_of_parsls_own_executor():
    import inspect

    from parsl.executors.workqueue.executor import WorkQueueExecutor as ParslWorkQueueExecutor
    theirs = set(inspect.signature(ParslWorkQueueExecutor.__init__).parameters) - {"self"}
    ours = inspect.signature(WorkQueueExecutor.__init__).parameters
    assert theirs <= set(ours)
    executor = WorkQueueExecutor(label="x", shared_fs=True, use_cache=True, autolabel=True)
    for name in theirs:
        assert hasattr(executor, name), name
    assert "label='x'" in repr(executor)


@pytest.mark.parametrize("use_cache, transfers", [(True, 1), (False, 3)])
def test_use_cache_sends_a_shared_input_once_per_worker(tmp_path, no_leftover_workers, use_cache, transfers):
    from parsl.data_provider.files import File
    shared = tmp_path / "shared.txt"
    shared.write_text("data")
    executor = WorkQueueExecutor(port=0, use_cache=use_cache)
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none"))
    try:
        for _ in range(3):
            assert apps.read_positional(File(str(shared))).result(timeout=60) == "data"
    finally:
        kernel.cleanup()
    with open(os.path.join(executor._log_dir, "debug.log")) as log:
        sent = [line for line in log if f"needs file {shared}" in line]
    assert len(sent) == transfers, sent


def test_run_directories_are_readable_only_by_their_owner(fresh_dfk):
    _, executor = fresh_dfk
    for folder in (executor._log_dir, executor._data_dir, executor._task_files.function_dir):
        assert os.stat(folder).st_mode & 0o077 == 0, folder


KILLED_SCRIPT = '''
import sys, time, parsl
from parsl.config import Config
from parsl_wq import WorkQueueExecutor
sys.path.insert(0, {tests!r})
import apps
executor = WorkQueueExecutor(port=0, coprocess={coprocess})
parsl.load(Config(executors=[executor], run_dir={run_dir!r}, strategy="none"))
assert apps.add(1, 1).result(timeout=60) == 2
apps.sleep_for({TASK_SECONDS})
print(executor._manager.process.pid, flush=True)
time.sleep(300)
'''


TASK_SECONDS = 20


def _runner_processes(warm):
    """Cold, the runner's Python; warm, the warm hosts' forks (app processes: a warm host's, under the supervisor)."""
    import psutil

    def runs(process, verb):
        try:
            cmdline = process.cmdline()
        except psutil.Error:
            return False
        return any("pwq_worker.pyz" in part for part in cmdline) and verb in cmdline
    found = []
    for process in psutil.process_iter():
        if not warm and runs(process, "run"):
            found.append(process)
        elif warm and runs(process, "warm"):
            parent = process.parent()
            if parent is not None and runs(parent, "warm") and parent.parent() is not None \
                    and runs(parent.parent(), "warm"):
                found.append(process)
    return found


@pytest.mark.parametrize("coprocess", [False, True], ids=["cold", "warm"])
def test_manager_and_workers_leave_when_the_user_process_is_killed(tmp_path, coprocess):
    import subprocess
    import sys

    import psutil
    from conftest import TESTS
    script = KILLED_SCRIPT.format(tests=TESTS, run_dir=str(tmp_path), TASK_SECONDS=TASK_SECONDS, coprocess=coprocess)
    user = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        manager_pid = int(user.stdout.readline())
        assert wait_until(lambda: worker_processes(), timeout=30)
        assert wait_until(lambda: _runner_processes(coprocess), timeout=30)
    finally:
        user.kill()
        user.wait(timeout=10)
    assert wait_until(lambda: not psutil.pid_exists(manager_pid)
                      or psutil.Process(manager_pid).status() == psutil.STATUS_ZOMBIE, timeout=10)
    # The manager cancels the task and tells the worker to leave (its debug log shows "kill" then
    # "exit"). In two CI runs with a 120 s task the worker still stayed, and logged "stopping" when
    # those 120 s were up: it can wait for the canceled task's time, so that time bounds the wait.
    assert wait_until(lambda: not worker_processes(), timeout=TASK_SECONDS + 20), worker_processes()
