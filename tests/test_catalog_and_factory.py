"""project_name with a catalog server, and workers from work_queue_factory.

Every catalog here is a ``catalog_server`` the test starts on loopback (or
inside a network namespace that has nothing but loopback), never Work
Queue's public default.
"""

import os
import socket
import subprocess
import sys
import textwrap

import parsl
import psutil
import pytest
from parsl.config import Config

import apps
from conftest import MODES, TESTS, wait_until, worker_processes, worker_workspace, workers
from hosts import skip_unless_namespaces_work
from parsl_wq import WorkerFactory, WorkQueueExecutor

TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def catalog(tmp_path):
    port = free_port()
    server = subprocess.Popen(["catalog_server", "-p", str(port), "-I", "127.0.0.1", "-u", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    yield f"127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


def catalogs_on_9097():
    """catalog_server processes the scripts below started (in namespaces of their own, on port 9097)."""
    return [p for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "catalog_server" and "9097" in (p.info["cmdline"] or [])]


def factories():
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == "work_queue_factory"]


def test_factory_workers_run_the_apps_and_leave_with_it(tmp_path, catalog, no_leftover_workers):
    factory = WorkerFactory(min_workers=2, max_workers=2, cores=1)
    executor = WorkQueueExecutor(port=0, factory=factory, catalog=catalog)
    assert executor.provider is None
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path), strategy="none"))
    folders = []
    try:
        assert [apps.add(i, 1).result(timeout=TIMEOUT) for i in range(4)] == [1, 2, 3, 4]
        assert wait_until(lambda: len(workers()) == 2, timeout=TIMEOUT)
        command = " ".join(executor._factory.command)
        assert f"--password {executor._secrets.password_file}" in command and f"--catalog={catalog}" in command
        scratch = executor._factory.command[executor._factory.command.index("--scratch-dir") + 1]
        assert os.path.basename(scratch).startswith("factory.") and os.stat(scratch).st_mode & 0o777 == 0o700
        folders = [os.path.dirname(worker_workspace(w)) for w in workers()]
        for folder in folders:      # each worker has a private folder of its own, made by the wrapper
            assert os.path.basename(folder).startswith("parsl_wq-worker.") and os.stat(folder).st_mode & 0o777 == 0o700
        assert len(set(folders)) == 2
    finally:
        kernel.cleanup()
    assert wait_until(lambda: not worker_processes(), timeout=10) and not factories(), worker_processes()
    assert wait_until(lambda: not any(os.path.exists(f) for f in folders), timeout=10), folders


@pytest.mark.parametrize("mode", MODES)
def test_factory_workers_get_the_executors_worker_options_and_run_warm_apps(tmp_path, no_leftover_workers, mode):
    """The executor's worker_options reach the factory's workers as a provider's; warm, each worker's first
    warm task starts its warm host in the worker's workspace, with nothing on the worker's command line."""
    executor = WorkQueueExecutor(port=0, coprocess=mode == "warm", worker_options="--cores 1 --memory 1234",
                                 factory=WorkerFactory(min_workers=1, max_workers=1))
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path), strategy="none"))
    try:
        assert [apps.add(i, 1).result(timeout=TIMEOUT) for i in range(3)] == [1, 2, 3]
        (worker,) = workers()
        command = " ".join(worker.cmdline())
        assert "--cores 1 --memory 1234" in command, command
        hosts = [p for p in worker_processes() if p.name() != "work_queue_worker"]
        assert bool(hosts) == (mode == "warm"), hosts
        for host in hosts:      # in the factory's worker's own workspace, serving that worker
            assert os.path.dirname(host.cwd()) == worker_workspace(worker), (host.cwd(), worker_workspace(worker))
            assert host.cmdline()[-2:] == ["warm", "../" + os.path.basename(host.cwd())], host.cmdline()
    finally:
        kernel.cleanup()


@pytest.mark.parametrize("mode", MODES)
def test_one_core_apps_run_side_by_side_on_a_factory_worker_without_a_disk_by_hand(tmp_path, no_leftover_workers,
                                                                                   mode):
    """The factory's workers get the fixed --disk that the executor's own get (half the workspace disk's free
    space, from the wrapper the factory ships): on cctools 7.x, two 1-core apps on a 2-core worker keep fitting."""
    executor = WorkQueueExecutor(port=0, coprocess=mode == "warm", worker_options="--cores 2",
                                 factory=WorkerFactory(min_workers=1, max_workers=1))
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path), strategy="none"))
    try:
        futures = [apps.timed_sleep(1, parsl_resource_specification={"cores": 1}) for _ in range(8)]
        spans = sorted(f.result(timeout=TIMEOUT) for f in futures)
        (worker,) = workers()
        assert any(part.startswith("--disk=") for part in worker.cmdline()), worker.cmdline()
    finally:
        kernel.cleanup()
    assert all(any(a[0] < b[1] and b[0] < a[1] for b in spans if b is not a) for a in spans), spans


def test_a_factory_takes_one_worker_program():
    from parsl_wq import ConfigurationError
    with pytest.raises(ConfigurationError, match="worker_executable.*with a factory, one program"):
        WorkQueueExecutor(factory=WorkerFactory(), worker_executable="singularity exec img work_queue_worker")


def test_a_provider_and_a_factory_together_are_refused():
    from parsl.providers import LocalProvider

    from parsl_wq import ConfigurationError
    with pytest.raises(ConfigurationError, match="either a provider or a factory"):
        WorkQueueExecutor(provider=LocalProvider(), factory=WorkerFactory())


@pytest.mark.parametrize("options, problem", [
    ({"min_workers": 3, "max_workers": 2}, "min_workers <= max_workers"),
    ({"cores": 0}, "cores must be an int >= 1"),
])
def test_bad_factory_settings_are_named(options, problem):
    from parsl_wq import ConfigurationError
    with pytest.raises(ConfigurationError, match=problem):
        WorkerFactory(**options)


PROJECT_SCRIPT = '''
import sys
sys.path.insert(0, {tests!r})
import parsl
from parsl.config import Config
import apps
from local_catalog import running_catalog
from parsl_wq import WorkerFactory, WorkQueueExecutor

with running_catalog(9097) as catalog:
    executor = WorkQueueExecutor(port=0, project_name="pwq-test", catalog=catalog, **{options})
    kernel = parsl.load(Config(executors=[executor], run_dir={run_dir!r}, strategy="none"))
    print("COMMAND", executor.worker_command, flush=True)
    print("RESULTS", [apps.add(i, i).result(timeout=120) for i in range(3)], flush=True)
    kernel.cleanup()
'''


@pytest.fixture
def loopback_only_namespace():
    """A network namespace with nothing but loopback: no traffic can leave it."""
    skip_unless_namespaces_work()
    name = f"pwq{os.getpid() % 10000}-cat"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name])


@pytest.mark.parametrize("options", ["{}", "{'factory': WorkerFactory(min_workers=0, max_workers=1)}"],
                         ids=["provider", "factory-on-demand"])
def test_workers_find_the_manager_by_project_name(tmp_path, loopback_only_namespace, no_leftover_workers,
                                                  options):
    script = textwrap.dedent(PROJECT_SCRIPT).format(tests=TESTS, run_dir=str(tmp_path), options=options)
    run = subprocess.run(["ip", "netns", "exec", loopback_only_namespace, sys.executable, "-c", script],
                         capture_output=True, text=True, timeout=TIMEOUT * 2, cwd=tmp_path)
    assert "RESULTS [0, 2, 4]" in run.stdout, run.stdout + run.stderr[-3000:]
    command = next(line for line in run.stdout.splitlines() if line.startswith("COMMAND"))
    assert "-C 127.0.0.1:9097 -M pwq-test" in command and "--password" in command
    assert not catalogs_on_9097()


ORPHAN_SCRIPT = '''
import sys, time
sys.path.insert(0, {tests!r})
import parsl
from parsl.config import Config
from parsl_wq import WorkerFactory, WorkQueueExecutor
import apps
executor = WorkQueueExecutor(port=0, factory=WorkerFactory(min_workers=1, max_workers=1, cores=1))
parsl.load(Config(executors=[executor], run_dir={run_dir!r}, strategy="none"))
assert apps.add(1, 2).result(timeout=120) == 3
print(" ".join(executor._factory.command), flush=True)
time.sleep(600)
'''


def test_a_factory_without_a_catalog_sends_nothing_to_the_public_one_and_ends_with_the_users_process(tmp_path):
    """No project_name and no catalog: the factory reports to loopback's discard port and passes it to its
    workers, never Work Queue's public catalog. SIGKILL of the user's process (no shutdown runs): the manager
    process sees its channel close and stops the factory, which removes its workers and exits."""
    script = ORPHAN_SCRIPT.format(tests=TESTS, run_dir=str(tmp_path))
    user = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        command = user.stdout.readline()
        assert "--catalog=127.0.0.1:9" in command and "--parent-death" in command, command
        (worker,) = workers()
        assert "-C 127.0.0.1:9" in " ".join(worker.cmdline()), worker.cmdline()
        assert factories()
    finally:
        user.kill()
        user.wait(timeout=10)
    assert wait_until(lambda: not factories() and not worker_processes(), timeout=30), \
        (factories(), worker_processes())


DEMAND_SCRIPT = '''
import json, sys, time, urllib.request
sys.path.insert(0, {tests!r})
import parsl, psutil
from parsl.config import Config
import apps
from local_catalog import running_catalog
from parsl_wq import WorkerFactory, WorkQueueExecutor

def workers():
    """This run's workers: the factory's, which find the manager by its project name."""
    return sum(1 for p in psutil.process_iter(["name", "cmdline"])
               if p.info["name"] == "work_queue_worker" and "pwq-demand" in (p.info["cmdline"] or []))

def tasks_left():
    with urllib.request.urlopen("http://127.0.0.1:9097/query.json", timeout=5) as answer:
        records = json.load(answer)
    return max((r.get("tasks_left", 0) for r in records if r.get("project") == "pwq-demand"), default=None)

with running_catalog(9097) as catalog:
    factory = WorkerFactory(min_workers=1, max_workers=4, workers_per_cycle=4, cores=1)
    executor = WorkQueueExecutor(port=0, project_name="pwq-demand", catalog=catalog, factory=factory)
    kernel = parsl.load(Config(executors=[executor], run_dir={run_dir!r}, strategy="none"))
    futures = [apps.sleep_for(1) for _ in range(300)]
    start = time.monotonic()
    deadline, left, most, seen = start + 200, 0, 0, None
    while time.monotonic() < deadline and not (most >= 4 and left):
        time.sleep(1)
        left, most = max(left, tasks_left() or 0), max(most, workers())
        if left and seen is None:
            seen = time.monotonic() - start
    print("DEMAND", left, most, seen, flush=True)
    kernel.cleanup()
'''


def test_a_factory_sees_the_held_apps_as_demand_and_starts_more_workers(tmp_path, loopback_only_namespace,
                                                                         no_leftover_workers):
    """300 apps of 1 s on one 1-core worker: the manager holds most of them; it tells Work Queue how many
    (tasks left), the catalog shows them within seconds (Work Queue's own reports come a minute apart), and the
    factory raises its workers to its maximum."""
    script = textwrap.dedent(DEMAND_SCRIPT).format(tests=TESTS, run_dir=str(tmp_path))
    run = subprocess.run(["ip", "netns", "exec", loopback_only_namespace, sys.executable, "-c", script],
                         capture_output=True, text=True, timeout=400, cwd=tmp_path)
    line = next((line for line in run.stdout.splitlines() if line.startswith("DEMAND")), None)
    assert line is not None, run.stdout + run.stderr[-3000:]
    _, left, most, seen = line.split()
    # Held apps, as tasks left (at most, in the catalog's reports); the first bundles, one per slot of the first
    # worker, have taken some out of the backlog by then.
    assert int(left) >= 150, line
    assert seen != "None" and float(seen) < 20, line
    assert int(most) == 4, line
    assert not catalogs_on_9097()
