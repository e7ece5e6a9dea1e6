"""Shared fixtures. Integration tests run real work_queue_worker processes on this machine."""

import glob
import os
import shutil
import tempfile
import time

import psutil
import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
# Apps defined in test modules are pickled by reference: workers must import them.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH")) if p)


def pytest_terminal_summary(terminalreporter):
    """Say which Work Queue engine the tests ran on: its Python module and its worker binary."""
    import shutil
    import subprocess

    from parsl_wq.engine import describe_engine
    worker = shutil.which("work_queue_worker")
    version = "no work_queue_worker on PATH"
    if worker:
        version = subprocess.run([worker, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.splitlines()[0]
    terminalreporter.write_line(f"Work Queue module: {describe_engine()}")
    terminalreporter.write_line(f"Work Queue worker: {version}")


def worker_processes():
    """work_queue_worker processes, and their warm hosts, that this test run started."""
    return [p for p in psutil.process_iter(["name", "cmdline"])
            if (p.info["name"] == "work_queue_worker" or _is_warm_host(p.info["cmdline"])) and _started_by_us(p)]


def workers():
    """The work_queue_worker processes of ``worker_processes()``, without their warm hosts."""
    return [p for p in worker_processes() if p.info["name"] == "work_queue_worker"]


def _is_warm_host(cmdline):
    """The worker program run as a warm host (``pwq_worker.pyz warm FOLDER`` or ``packed FD``)."""
    return (bool(cmdline) and any(part.endswith("pwq_worker.pyz") for part in cmdline)
            and any(part in ("warm", "packed") for part in cmdline))


def engine_has_coprocesses():
    from parsl_wq.engine import features, load_work_queue
    return features(load_work_queue()).coprocess


# Tests that use the dfk fixture run with cold workers and with warm ones (coprocess=True), on either engine.
MODES = ["cold", "warm"]


def _started_by_us(process):
    try:
        return process.environ().get("PARSL_WQ_TEST_RUN") == str(os.getpid())
    except (psutil.Error, OSError):
        return False


os.environ["PARSL_WQ_TEST_RUN"] = str(os.getpid())


def wait_until(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def worker_workspace(process):
    """The workspace of a running work_queue_worker: ``worker-UID-PID`` in its ``--workdir``, else in the first
    usable folder of its environment, in cctools' order (``system_tmp_dir``)."""
    cmdline = process.cmdline()
    given = [cmdline[i + 1] for i, word in enumerate(cmdline[:-1]) if word in ("--workdir", "-s")]
    given += [word.split("=", 1)[1] for word in cmdline if word.startswith("--workdir=")]
    if given:
        return os.path.join(given[-1], f"worker-{os.getuid()}-{process.pid}")
    env = process.environ()
    names = ("CCTOOLS_TEMP", "_CONDOR_SCRATCH_DIR", "TMPDIR", "TEMP", "TMP")
    folder = next((env[n] for n in names if env.get(n) and os.access(env[n], os.R_OK | os.W_OK | os.X_OK)), "/tmp")
    return os.path.join(folder, f"worker-{os.getuid()}-{process.pid}")


def remove_stale_workspaces():
    """Remove the workspaces (``worker-UID-PID``) that killed workers left behind, where no such process runs.

    A new worker that got a dead one's process id would use its folder, stale
    sandboxes included (docs/usage.md, "When workers fail"); many tests kill workers.
    """
    folders = {tempfile.gettempdir(), "/tmp"}
    for path in (p for folder in folders for p in glob.glob(os.path.join(folder, f"worker-{os.getuid()}-*"))):
        pid = path.rsplit("-", 1)[1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
    # The executor's workers have folders of their own, removed when they end, unless killed with their shell:
    # one whose workers are all gone, or one without a worker yet that is not new (its worker is not starting).
    for path in (p for folder in folders for p in glob.glob(os.path.join(folder, "parsl_wq-worker.*"))):
        pids = [w.rsplit("-", 1)[1] for w in glob.glob(os.path.join(path, f"worker-{os.getuid()}-*"))]
        if not any(pid.isdigit() and psutil.pid_exists(int(pid)) for pid in pids) and \
                (pids or time.time() - os.stat(path).st_mtime > 60):
            shutil.rmtree(path, ignore_errors=True)


def pytest_sessionstart(session):
    remove_stale_workspaces()


@pytest.fixture
def no_leftover_workers():
    yield
    assert wait_until(lambda: not worker_processes(), timeout=10), \
        f"work_queue_worker processes left behind: {worker_processes()}"
    remove_stale_workspaces()


@pytest.fixture
def hosts(tmp_path, no_leftover_workers):
    """Three worker hosts h1..h3 (network namespaces, see hosts.py); skipped where they cannot be made."""
    from hosts import Hosts, skip_unless_namespaces_work
    skip_unless_namespaces_work()
    h = Hosts(3, str(tmp_path)).up()
    yield h
    h.down()


@pytest.fixture(scope="module", params=MODES)
def dfk(request, tmp_path_factory):
    """A Parsl DataFlowKernel with one parsl_wq executor and one local worker, cold or warm (coprocess=True)."""
    import parsl
    from parsl.config import Config

    from parsl_wq import WorkQueueExecutor

    run_dir = tmp_path_factory.mktemp("runinfo")
    executor = WorkQueueExecutor(port=0, env={"PARSL_WQ_TEST_VAR": "from-env"}, coprocess=request.param == "warm")
    kernel = parsl.load(Config(executors=[executor], run_dir=str(run_dir), strategy="none"))
    yield kernel
    kernel.cleanup()
    assert wait_until(lambda: not worker_processes(), timeout=10), worker_processes()
    remove_stale_workspaces()


@pytest.fixture
def fresh_dfk(tmp_path, no_leftover_workers):
    """A DataFlowKernel of its own for one test, with one local worker."""
    import parsl
    from parsl.config import Config

    from parsl_wq import WorkQueueExecutor

    executor = WorkQueueExecutor(port=0)
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path), strategy="none"))
    yield kernel, executor
    if not kernel.cleanup_called:     # the test may have ended the run itself
        kernel.cleanup()


@pytest.fixture
def load_without_workers(tmp_path):
    """Load executors whose provider starts no worker: the test starts its own."""
    import parsl
    from parsl.config import Config
    from parsl.providers import LocalProvider

    from parsl_wq import WorkQueueExecutor

    kernels = []

    def load(**options):
        executor = WorkQueueExecutor(port=0, provider=LocalProvider(init_blocks=0), **options)
        kernels.append(parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none")))
        return executor
    yield load
    for kernel in kernels:
        kernel.cleanup()


def start_worker(executor, cores, folder):
    """A worker started by hand with the executor's command, in a session of its own."""
    import subprocess
    return subprocess.Popen(f"{executor.worker_command} --cores {cores}", shell=True, cwd=folder,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def transactions(executor, word):
    """Lines of Work Queue's transactions log that carry ``word`` (comments left out)."""
    with open(os.path.join(executor._log_dir, "transactions.log")) as f:
        return [line for line in f if f" {word} " in line and not line.startswith("#")]


class Planted:
    """A pickle that, once loaded, leaves a mark: what someone could plant in a sandbox."""

    def __init__(self, mark):
        self.mark = mark

    def __reduce__(self):
        return (open, (self.mark, "w"))


@pytest.fixture
def neighbour():
    """A throwaway Unix account on this node: another user's processes, beside the worker's (as root may)."""
    import secrets
    import subprocess
    name = "pwqn" + secrets.token_hex(4)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True, timeout=60)
    try:
        yield name
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], timeout=30)
        subprocess.run(["userdel", name], check=True, timeout=60)


def as_neighbour(name, script, *args, **popen):
    """Run the Python ``script`` as the account ``name``, with the system's python3 (one it may run)."""
    import shutil
    import subprocess
    python = shutil.which("python3", path="/usr/bin:/bin")
    return subprocess.Popen(["runuser", "-u", name, "--", python, "-I", "-c", script, *map(str, args)],
                            stdout=subprocess.PIPE, text=True, cwd="/", **popen)
