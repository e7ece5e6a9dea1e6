"""Another user on the same node: what it makes ahead of a run holds nothing of the run, and what the run makes
it cannot read. A throwaway Unix account runs the neighbour's side (conftest's ``neighbour``, as root may)."""

import os
import pickle

import parsl
import pytest
from parsl.config import Config

import apps
from conftest import Planted, as_neighbour, worker_processes, worker_workspace
from parsl_wq import WorkerFactory, WorkQueueExecutor

TIMEOUT = 120
PIDS_AHEAD = 3000       # workspaces planted for the next process ids

PLANT = '''
import os, shutil, sys
first, count, calls, uid = (int(a) if a.isdigit() else a for a in sys.argv[1:5])
for pid in range(first, first + count):         # Work Queue's default workspace of each pid to come, as found
    sandbox = "/tmp/worker-%d-%d/t.1" % (uid, pid)
    os.makedirs(sandbox, exist_ok=True)
    shutil.copy(calls, os.path.join(sandbox, "pwq_calls.pkl"))
    os.chmod("/tmp/worker-%d-%d" % (uid, pid), 0o777)
os.makedirs("/tmp/parsl_wq-factory", exist_ok=True)      # the factory's old scratch folder
with open("/tmp/parsl_wq-factory/work_queue_worker", "w") as f:
    f.write("#!/bin/sh\\ntouch %s.factory\\n" % calls)
os.chmod("/tmp/parsl_wq-factory/work_queue_worker", 0o777)
os.chmod("/tmp/parsl_wq-factory", 0o777)
print("planted", flush=True)
'''

READ = '''
import os, sys
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read(1)
        print("read", path, flush=True)
    except PermissionError:
        print("denied", path, flush=True)
'''


@pytest.fixture
def planted(neighbour):
    """The neighbour's folders for the workspaces of the next PIDS_AHEAD process ids, each with a calls file that
    leaves a mark if anything loads it, and the factory's old scratch folder with a worker of its own."""
    import shutil
    mark = f"/tmp/pwq-planted-mark-{os.getpid()}"
    calls = f"/tmp/pwq-planted-calls-{os.getpid()}"      # where the neighbour can read it
    with open(calls, "wb") as f:
        f.write(b"\n" + pickle.dumps([(Planted(mark),)]))     # what a runner that checks nothing would load
    os.chmod(calls, 0o644)
    with open("/proc/sys/kernel/ns_last_pid") as f:
        first = int(f.read()) + 1
    plant = as_neighbour(neighbour, PLANT, first, PIDS_AHEAD, calls, os.getuid())
    assert plant.stdout.readline().strip() == "planted"
    plant.wait(timeout=120)
    yield range(first, first + PIDS_AHEAD), mark
    for pid in range(first, first + PIDS_AHEAD):
        shutil.rmtree(f"/tmp/worker-{os.getuid()}-{pid}", ignore_errors=True)
    shutil.rmtree("/tmp/parsl_wq-factory", ignore_errors=True)
    os.remove(calls)
    for leftover in (mark, calls + ".factory"):
        assert not os.path.exists(leftover), f"{leftover}: something of the neighbour's ran"


@pytest.mark.parametrize("start", ["provider", "factory"])
def test_what_a_neighbour_made_ahead_of_the_workers_holds_nothing_of_the_run(planted, tmp_path, start,
                                                                         no_leftover_workers):
    pids, mark = planted
    options = {"factory": WorkerFactory(min_workers=1, max_workers=1, cores=1)} if start == "factory" else {}
    executor = WorkQueueExecutor(port=0, **options)
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path), strategy="none"))
    try:
        assert [apps.add(i, 1).result(timeout=TIMEOUT) for i in range(4)] == [1, 2, 3, 4]
        (worker,) = [p for p in worker_processes() if p.info["name"] == "work_queue_worker"]
        assert worker.pid in pids           # Work Queue's default workspace would have been the neighbour's
        assert not worker_workspace(worker).startswith("/tmp/worker-")
    finally:
        kernel.cleanup()
    assert not os.path.exists(mark)


def test_what_the_run_makes_the_neighbour_cannot_read(neighbour, no_leftover_workers):
    """The run's folder (in a folder others may list: /tmp here), its secrets, the worker's folder and its
    workspace and cache: the neighbour reads none of them."""
    import shutil
    import tempfile
    run_dir = tempfile.mkdtemp(prefix="pwq-run-", dir="/tmp")
    os.chmod(run_dir, 0o755)
    executor = WorkQueueExecutor(port=0)
    kernel = parsl.load(Config(executors=[executor], run_dir=run_dir, strategy="none"))
    try:
        assert apps.add(1, 2).result(timeout=TIMEOUT) == 3
        (worker,) = [p for p in worker_processes() if p.info["name"] == "work_queue_worker"]
        workspace = worker_workspace(worker)
        secrets = [executor._secrets.password_file] + list(executor._secrets.tls_files or ())
        paths = [executor._log_dir, os.path.dirname(workspace), workspace, os.path.join(workspace, "cache")]
        reader = as_neighbour(neighbour, READ, *paths, *secrets)
        said = [reader.stdout.readline().split() for _ in paths + secrets]
        reader.wait(timeout=60)
        assert said == [["denied", path] for path in paths + secrets], said
    finally:
        kernel.cleanup()
        shutil.rmtree(run_dir, ignore_errors=True)
