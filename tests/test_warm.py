"""Warm workers (coprocess=True): imports paid once per warm process, apps kept apart, crashes contained.

Real work_queue_worker processes, each with the warm host that its first warm
task starts, on either engine. The crash table and the integration tests also
run warm (conftest's ``dfk``).
"""

import os
import signal

import parsl
import psutil
import pytest
from parsl.config import Config
from parsl.providers import LocalProvider

import apps
import warm_apps
from conftest import start_worker, wait_until, worker_processes
from parsl_wq import WorkQueueExecutor, resource_usage
from parsl_wq.errors import ResourceExhausted, TaskFailure

TIMEOUT = 60


@pytest.fixture
def warm(tmp_path, no_leftover_workers, monkeypatch):
    """Load a warm executor whose one local worker has ``cores`` cores."""
    kernels = []

    def load(cores=1, **options):
        monkeypatch.setenv("PWQ_PROBE_LOG", str(tmp_path / "imports.log"))   # the worker inherits it
        executor = WorkQueueExecutor(port=0, coprocess=True, worker_options=f"--cores {cores}", **options)
        kernels.append(parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none")))
        return executor
    yield load
    for kernel in kernels:
        kernel.cleanup()


def imports_logged(tmp_path):
    """Each import of warm_probe: (its process, that process's parent)."""
    with open(tmp_path / "imports.log") as f:
        return [tuple(int(pid) for pid in line.split()) for line in f]


def test_an_import_is_paid_once_per_warm_process(warm, tmp_path):
    warm(cores=1)
    calls = [warm_apps.use_probe().result(timeout=TIMEOUT) for _ in range(8)]
    app_pids = {pid for pid, _ in calls}
    # The first app imports the module in its fork; its warm process then imports it once, for good.
    assert len(imports_logged(tmp_path)) == 2, (imports_logged(tmp_path), calls)
    assert len(app_pids) == 8                                   # each app ran in a process of its own
    host = calls[1][1]
    assert all(imported_in == host and pid != host for pid, imported_in in calls[1:])


def test_an_import_is_paid_once_per_warm_process_when_the_next_fork_is_made_during_the_app(warm, tmp_path):
    """Apps that outlast a fork have the next call's app process forked while they run, before the warm process
    imports what they import: that fork is made again once it has, so the import is still paid once."""
    warm(cores=1)
    before = [warm_apps.use_probe_after(0.3, probe=False).result(timeout=TIMEOUT) for _ in range(3)]
    calls = [warm_apps.use_probe_after(0.3).result(timeout=TIMEOUT) for _ in range(4)]
    # From the 2nd call on, the next app process is forked while the call runs (its clock: 10 ms), and forked
    # again after it where the warm process loaded more: an import, the pages learned after calls 1, 2, 4, ...
    runs = before + calls
    forked_early = [later[2] < earlier[3] - 0.1 for earlier, later in zip(runs[1:], runs[2:])]
    assert sum(forked_early) >= 2, (forked_early, runs)
    assert len(imports_logged(tmp_path)) == 2, (imports_logged(tmp_path), calls)
    host = calls[1][1]
    assert all(imported_in == host and pid != host for pid, imported_in, _, _ in calls[1:])


def test_a_chain_of_apps_on_a_two_core_worker_stays_on_one_warm_process(warm):
    """Each call goes to the warm process that answered last, which says it is idle as soon as it has answered,
    before it reaps its app process and learns the pages that app wrote: a call handed to another warm process
    would pay the chain's imports again."""
    warm(cores=2)
    hosts = [warm_apps.parent_pid().result(timeout=TIMEOUT) for _ in range(20)]
    assert len(set(hosts)) == 1, hosts


def test_apps_do_not_see_what_earlier_apps_changed(warm):
    warm(cores=1)
    assert warm_apps.change_everything().result(timeout=TIMEOUT) == "changed"
    assert warm_apps.look_for_changes().result(timeout=TIMEOUT) == {
        "state": [], "env": None, "path": False, "cwd_is_sandbox": True}


def test_warm_apps_get_the_variables_of_what_they_declare(warm):
    warm(cores=1)
    assert warm_apps.task_environment().result(timeout=TIMEOUT) == {
        "CORES": "1", "OMP_NUM_THREADS": "1", "MEMORY": "200", "DISK": "100"}


def test_an_app_gets_its_own_temporary_folder_though_its_warm_process_chose_one(warm):
    warm(cores=1)
    for _ in range(3):      # the first teaches the warm process the probe, which asks tempfile for its folder
        folder, sandbox = warm_apps.temporary_folder_and_sandbox().result(timeout=TIMEOUT)
        assert os.path.dirname(folder) == sandbox and os.path.basename(folder).startswith("cctools-temp-t.")


def test_a_warm_process_killed_mid_app_fails_that_app_and_is_replaced(warm, tmp_path):
    warm(cores=1)
    marker = str(tmp_path / "started")
    future = warm_apps.report_then_sleep(marker, 120)
    assert wait_until(lambda: os.path.exists(marker), timeout=TIMEOUT)
    app, host = map(int, open(marker).read().split())
    os.kill(host, signal.SIGKILL)
    exc = future.exception(timeout=TIMEOUT)
    assert type(exc) is TaskFailure and exc.result == "WARM_PROCESS_LOST", exc
    assert "gave no answer: it was killed or died while running the app" in str(exc)
    assert wait_until(lambda: not psutil.pid_exists(app), timeout=10)       # the app went with its host
    later = [warm_apps.use_probe().result(timeout=TIMEOUT) for _ in range(3)]
    new_host = warm_apps.parent_pid().result(timeout=TIMEOUT)
    assert new_host != host and later[-1][1] == new_host                    # warm again, in a new process


def test_a_supervisor_killed_mid_app_fails_that_app_and_a_new_one_serves(warm, tmp_path):
    """SIGKILL to the supervisor: its warm processes go with it, the waiting task's shell sees the door close (it
    does not wait for ever), and the next task finds the dead supervisor's door (its pid, no descriptor that reads
    the token) and starts a new one."""
    from parsl_wq.worker.door import DOOR, read_door
    warm(cores=1)
    marker = str(tmp_path / "started")
    future = warm_apps.report_then_sleep(marker, 120)
    assert wait_until(lambda: os.path.exists(marker), timeout=TIMEOUT)
    app, host = map(int, open(marker).read().split())
    supervisor = psutil.Process(host).ppid()
    folder = os.readlink(f"/proc/{host}/cwd")
    os.kill(supervisor, signal.SIGKILL)
    exc = future.exception(timeout=TIMEOUT)
    assert type(exc) is TaskFailure and exc.result == "WARM_PROCESS_LOST", exc
    assert wait_until(lambda: not psutil.pid_exists(host) and not psutil.pid_exists(app), timeout=10)
    assert read_door(folder)[0] == supervisor          # left behind: SIGKILL gave it no time to remove it
    _, new_host, cmdline, cwd = warm_apps.host_identity().result(timeout=TIMEOUT)
    assert new_host != host and cmdline[-2] == "warm" and cwd == folder
    assert read_door(folder)[0] == psutil.Process(new_host).ppid() != supervisor
    assert os.path.exists(os.path.join(folder, DOOR))


def test_a_worker_killed_mid_app_loses_no_app(tmp_path, no_leftover_workers, monkeypatch):
    executor = WorkQueueExecutor(port=0, coprocess=True, provider=LocalProvider(init_blocks=0))
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none"))
    first = second = None
    try:
        first = start_worker(executor, 1, tmp_path)
        marker = str(tmp_path / "started")
        futures = [warm_apps.report_then_sleep(marker, 5)] + [warm_apps.parent_pid() for _ in range(5)]
        assert wait_until(lambda: os.path.exists(marker), timeout=TIMEOUT)
        app, host = map(int, open(marker).read().split())
        os.killpg(first.pid, signal.SIGKILL)      # the worker, as a node failure would
        first.wait()
        assert wait_until(lambda: not psutil.pid_exists(host) and not psutil.pid_exists(app), timeout=10)
        os.remove(marker)
        second = start_worker(executor, 2, tmp_path)
        assert futures[0].result(timeout=TIMEOUT) == "slept"               # run again on the second worker
        assert all(isinstance(f.result(timeout=TIMEOUT), int) for f in futures[1:])
    finally:
        kernel.cleanup()
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
    assert wait_until(lambda: not worker_processes(), timeout=10), worker_processes()


def test_a_worker_killed_while_its_first_warm_task_starts_leaves_no_warm_host(tmp_path, no_leftover_workers):
    """The task's shell outlives its worker (init, or a subreaper, takes it over) and goes on to start the
    worker's warm host: the host must not start, since nothing is left for it to serve or end with."""
    marker = tmp_path / "starting"
    executor = WorkQueueExecutor(port=0, coprocess=True, provider=LocalProvider(init_blocks=0),
                                 init_command=f"touch {marker}; sleep 3")    # runs where the host is started
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none"))
    started = []
    try:
        started.append(start_worker(executor, 1, tmp_path))
        future = warm_apps.parent_pid()
        assert wait_until(lambda: marker.exists(), timeout=TIMEOUT)
        shell = psutil.Process(started[0].pid)
        worker = next(p for p in [shell] + shell.children(recursive=True) if p.name() == "work_queue_worker")
        task = worker.children(recursive=True)
        assert task, "the task's shell is not running"
        os.killpg(started[0].pid, signal.SIGKILL)  # the worker and its launcher, which would remove the workspace;
        started[0].wait()                          # its task's shell, in a process group of its own, goes on
        assert wait_until(lambda: not any(alive(p) for p in task), timeout=TIMEOUT)
        workspace = f"/worker-{os.getuid()}-{worker.pid}/"
        hosts_left = [p for p in worker_processes() if workspace in _cwd(p) + "/"]
        for host in hosts_left:
            host.kill()
        assert not hosts_left, f"warm hosts of the dead worker: {hosts_left}"
        marker.unlink()
        started.append(start_worker(executor, 1, tmp_path))
        assert isinstance(future.result(timeout=TIMEOUT), int)      # run again, warm, on the next worker
    finally:
        kernel.cleanup()
        for shell in started:
            if shell.poll() is None:
                os.killpg(shell.pid, signal.SIGKILL)
                shell.wait()
    assert wait_until(lambda: not worker_processes(), timeout=10), worker_processes()


def alive(process):
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cwd(process):
    try:
        return process.cwd()
    except psutil.Error:
        return ""


def test_autolabel_measures_each_warm_app_and_stops_one_past_its_declared_memory(warm):
    warm(cores=1, autolabel=True)
    held = apps.hold_memory(300, 2, parsl_resource_specification={"cores": 1, "memory": 600, "disk": 100})
    assert held.result(timeout=TIMEOUT) == 300
    assert resource_usage(held).measured["memory"] >= 300
    assert resource_usage(held).measured["wall_time"] >= 2
    over = apps.hold_memory(400, 5, parsl_resource_specification={"cores": 1, "memory": 150, "disk": 100})
    exc = over.exception(timeout=TIMEOUT)
    assert type(exc) is ResourceExhausted and exc.usage.exceeded == {"memory": 150}, exc
    assert "memory" in str(exc) and exc.usage.measured["memory"] > 150


@pytest.mark.parametrize("coprocess", [False, True], ids=["cold", "warm"])
def test_running_time_min_is_a_hint_not_a_limit_cold_and_warm(tmp_path, no_leftover_workers, coprocess):
    """Work Queue's running_time_min: the seconds a task needs at least. An app that runs longer succeeds."""
    executor = WorkQueueExecutor(port=0, coprocess=coprocess, autolabel=True, worker_options="--cores 1")
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none"))
    try:
        spec = {"cores": 1, "memory": 600, "disk": 100, "running_time_min": 0.02}
        assert apps.hold_memory(10, 2, parsl_resource_specification=spec).result(timeout=TIMEOUT) == 10
    finally:
        kernel.cleanup()


def test_files_an_app_makes_get_the_same_mode_cold_and_warm(tmp_path, no_leftover_workers):
    """The warm processes keep the task's umask: an app's files are no more private warm than cold."""
    modes = {}
    for coprocess in (False, True):
        executor = WorkQueueExecutor(port=0, coprocess=coprocess, worker_options="--cores 1")
        kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none"))
        try:
            modes[coprocess] = [warm_apps.file_mode().result(timeout=TIMEOUT) for _ in range(2)]
        finally:
            kernel.cleanup()
    assert modes[True] == modes[False] == [0o666 & ~current_umask()] * 2, modes


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("coprocess", [False, True], ids=["cold", "warm"])
def test_env_pythonpath_reaches_the_apps_imports_cold_and_warm(tmp_path, no_leftover_workers, coprocess):
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / "pwq_pythonpath_probe.py").write_text("VALUE = 42\n")
    executor = WorkQueueExecutor(port=0, coprocess=coprocess, env={"PYTHONPATH": str(folder)})
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none"))
    try:
        assert apps.import_value("pwq_pythonpath_probe").result(timeout=TIMEOUT) == 42
    finally:
        kernel.cleanup()


def test_options_read_when_python_starts_act_the_same_cold_and_warm(tmp_path, no_leftover_workers):
    """init_command, and variables that only a program's start reads, act on warm apps as on cold ones: the
    warm host's Python starts in the shell of the task that starts it, after init_command, with the env."""
    env = {"PYTHONHASHSEED": "7", "PYTHONDONTWRITEBYTECODE": "1", "LD_LIBRARY_PATH": str(tmp_path)}
    seen = {}
    for mode in ("cold", "warm"):
        executor = WorkQueueExecutor(port=0, coprocess=mode == "warm", env=env, label=f"start_{mode}",
                                     init_command="export PWQ_INIT_MARK=ran")
        kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path / mode), strategy="none"))
        try:
            seen[mode] = [warm_apps.start_state().result(timeout=TIMEOUT) for _ in range(3)]
        finally:
            kernel.cleanup()
    import subprocess
    import sys
    expected = int(subprocess.run([sys.executable, "-c", "print(hash('parsl_wq'))"], env=dict(os.environ, **env),
                                  capture_output=True, text=True, check=True).stdout)
    shell_level = seen["cold"][0]["shlvl"]        # whatever the worker's launcher left: the same warm
    assert seen["warm"] == seen["cold"] == [{"hash": expected, "dont_write_bytecode": 1,
                                             "ld_library_path": str(tmp_path), "init_mark": "ran",
                                             "shlvl": shell_level}] * 3


NEIGHBOUR = '''
import os, signal, sys
folder, pid, calls, block, door = sys.argv[1], *map(int, sys.argv[2:6])
attempts = {
    "list the host's folder": lambda: os.listdir(folder),
    "read the door": lambda: open(os.path.join(folder, "door")).read(),
    "send a call": lambda: open("/proc/%d/fd/%d" % (pid, calls), "wb").write(b"%d 1 /tmp\\n" % os.getpid()),
    "wait on the door": lambda: open("/proc/%d/fd/%d" % (pid, block), "rb").close(),
    "read the token": lambda: open("/proc/%d/fd/%d" % (pid, door)).read(),
}
for other in map(int, sys.argv[6:]):
    attempts["signal %d" % other] = lambda other=other: os.kill(other, signal.SIGUSR1)
for name, attempt in attempts.items():
    try:
        attempt()
        print(name, ": allowed", flush=True)
    except PermissionError:
        print(name, ": refused", flush=True)
    except OSError as e:
        print(name, ": failed", e, flush=True)
'''


def listening_ports():
    """The TCP ports that this test run's warm processes listen on."""
    ports = set()
    for process in worker_processes():
        if process.info["name"] == "work_queue_worker":
            continue
        try:
            ports.update(c.laddr.port for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN)
        except psutil.Error:
            pass
    return sorted(ports)


def test_another_user_cannot_reach_the_warm_host_and_holds_up_no_app(warm, neighbour):
    """The warm host listens on no port: a task's shell reaches it through the supervisor's descriptors in
    /proc, which the kernel opens for the worker's user alone. Another user's process can neither list the host's
    folder, read its door, send a call, wait on the door, read the token nor signal the warm processes; every
    app runs, and nothing of the attempts did."""
    from conftest import as_neighbour
    from parsl_wq.worker.door import read_door
    warm(cores=2)
    _, host, _, folder = warm_apps.host_identity().result(timeout=TIMEOUT)
    pid, calls, block, door, _ = read_door(folder)
    assert listening_ports() == []
    warm_processes = [p.pid for p in worker_processes() if p.info["name"] != "work_queue_worker"]
    attacker = as_neighbour(neighbour, NEIGHBOUR, folder, pid, calls, block, door, *warm_processes)
    said, _ = attacker.communicate(timeout=60)
    lines = said.splitlines()
    assert len(lines) == 5 + len(warm_processes) and all(line.endswith(": refused") for line in lines), said
    futures = [apps.add(i, 1) for i in range(3)]
    assert [f.result(timeout=45) for f in futures] == [1, 2, 3]
    assert warm_apps.host_identity().result(timeout=TIMEOUT)[1] == host     # the same warm host serves
    assert "refused" not in open(os.path.join(folder, "log")).read()        # nothing reached it


@pytest.mark.parametrize("coprocess", [False, True], ids=["cold", "warm"])
def test_a_providers_block_runs_apps_on_a_node_that_shares_nothing(hosts, tmp_path, coprocess):
    """A provider's block on a node that sees neither the run directory nor this side's /tmp nor this package:
    its command carries the password (in no process's arguments), and the first warm task starts the warm host
    in the worker's workspace on that node, which then serves the apps."""
    import sys

    import parsl_wq
    from conftest import TESTS
    # The node gets a /tmp of its own; a checkout under /tmp stays in sight: its Python and the apps' modules.
    keep = sorted({os.path.realpath(p) for p in (os.path.dirname(TESTS), sys.prefix)
                   if os.path.realpath(p).startswith("/tmp/")})
    keep = [p for p in keep if not any(p.startswith(k + "/") for k in keep)]
    executor = WorkQueueExecutor(port=0, coprocess=coprocess, address=hosts.manager_address,
                                 provider=LocalProvider(init_blocks=0), worker_options="--cores 1")
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none"))
    try:
        with open(executor._secrets.password_file) as f:
            secret = f.read().strip()
        command = executor._get_launch_command("1")
        assert secret in command and executor._secrets.password_file not in command
        hosts.run_block(1, command, hide=[os.path.dirname(parsl_wq.__file__)], keep=keep)
        calls = [warm_apps.host_identity().result(timeout=TIMEOUT) for _ in range(4)]
        parents = {parent for _, parent, _, _ in calls}
        if coprocess:       # forks of one warm host, which runs in the node's workspace of that worker
            (pid, parent, cmdline, cwd) = calls[-1]
            assert len(parents) == 1 and cmdline[-2] == "warm" and "/pwq_warm." in cwd, calls
            assert len({pid for pid, _, _, _ in calls}) == 4
        else:               # each app in a Python of its own, started by the task's shell
            assert len({pid for pid, _, _, _ in calls}) == 4, calls
            assert all("pwq_worker.pyz run" in " ".join(cmdline) for _, _, cmdline, _ in calls), calls
        listing = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])]
        assert not [line for line in listing if secret in line]
    finally:
        kernel.cleanup()


@pytest.mark.parametrize("delay", [0, 0.05, 0.1, 0.2, 0.3, 0.5])
def test_a_warm_run_stopped_at_any_moment_leaves_no_worker_and_no_warm_host(tmp_path, no_leftover_workers, delay):
    """Stopped while the worker starts, while the first warm task starts the warm host, or while apps run."""
    import time
    executor = WorkQueueExecutor(port=0, coprocess=True, worker_options="--cores 2")
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none"))
    futures = [warm_apps.parent_pid() for _ in range(4)]
    time.sleep(delay)
    kernel.cleanup()
    assert all(f.done() for f in futures)       # each has its result or the executor's shutdown
    assert wait_until(lambda: not worker_processes(), timeout=10), worker_processes()


def test_a_call_that_is_not_a_warm_call_leaves_the_warm_host_serving(warm, tmp_path):
    """A process of the worker's own user that sends lines of the wrong shape on the door, and a call whose
    sandbox holds no call: the supervisor drops the lines, the host that got the call wakes its shell without an
    answer (no shell is left waiting), and the same host goes on serving."""
    import subprocess

    from parsl_wq.worker.door import read_door
    warm(cores=1)
    _, host, _, folder = warm_apps.host_identity().result(timeout=TIMEOUT)
    pid, calls, _, _, _ = read_door(folder)
    shell = subprocess.Popen(["/bin/sh", "-c", 'trap "echo woken; exit 0" USR1; echo waiting; read x'],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert shell.stdout.readline() == "waiting\n"     # its trap is set
    with open("/proc/%d/fd/%d" % (pid, calls), "wb", buffering=0) as door_calls:
        for line in (b"garbage\x00\xff\n", b"\n", b"12 1 relative/path\n", b"%d 1 %s\n" % (shell.pid, bytes(tmp_path))):
            door_calls.write(line)
    try:
        assert shell.stdout.readline() == "woken\n"
    finally:
        shell.kill()
        shell.wait()
    _, parent, cmdline, _ = warm_apps.host_identity().result(timeout=TIMEOUT)
    assert parent == host and cmdline[-2] == "warm", (host, parent, cmdline)
    log = open(os.path.join(folder, "log")).read()
    assert "ended" not in log and log.count("refused a request") == 3 and "refused a call" in log, log


def test_the_warm_host_holds_no_connection_to_the_manager(warm):
    """The host is forked from the worker's first warm task, which may inherit the worker's descriptors (Debian's
    9.9 worker leaves its connection to the manager open in its tasks). A host that kept it would keep that
    connection alive after the worker closed it, and a worker that reconnects would be connected twice, its
    tasks sent down the dead one (``test_lifecycle``'s lost cached input)."""
    executor = warm(cores=1)
    warm_apps.host_identity().result(timeout=TIMEOUT)
    hosts = [p for p in worker_processes() if p.info["name"] != "work_queue_worker"]
    assert hosts
    for host in hosts:
        remote_ports = [c.raddr.port for c in host.net_connections(kind="tcp") if c.raddr]
        assert executor.worker_port not in remote_ports, (host.cmdline(), host.net_connections(kind="tcp"))
