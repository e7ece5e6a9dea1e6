"""How one app invocation becomes a Work Queue task: its files on the submit side and what the worker runs.

Submit side, per run (``TaskFiles``)::

    DATA_DIR/functions/pwq_fn_DIGEST.pkl   the app's function, once per content, cached on workers
    DATA_DIR/tasks/N.calls, N.results      the runner's files of Work Queue task N (``parsl_wq.manager``)

Each app becomes a ``SubmitTask`` whose ``Call`` carries its pickled
arguments; the manager writes it with those of the other apps of its task
(one, or a bundle) into the task's calls file. A cold task runs a shell
command that starts a Python with the worker program's runner
(``parsl_wq.worker.runner``); a warm task (``coprocess=True``) hands its call
to the worker's warm Python, which runs the same runner in a fork
(``parsl_wq.protocol.warm``, ``parsl_wq.worker.host``).
"""

import hashlib
import json
import os
import shlex
import threading
from dataclasses import dataclass
from pickle import PickleBuffer
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from parsl_wq.client import serialize
from parsl_wq.client.files import Staging
from parsl_wq.client.resources import Resources
from parsl_wq.errors import SerializationFailed
from parsl_wq.protocol.messages import FileTransfer, SubmitTask
from parsl_wq.protocol.sandbox import (CALLS, EXIT_UNPACK_FAILED, NODE_TMPDIR, PROXY, RESULTS, UNPACK_FAILED,
                                       UNPACKER, WORKER_PROGRAM, Call)
from parsl_wq.protocol.warm import CALLER, HOST_PYTHON, WarmCall, host_folder, task_command

if TYPE_CHECKING:       # the packers are imported with pack=True only
    from parsl_wq.pack import PackedEnvironment

WORKER_FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "worker")
UNPACK_SCRIPT = os.path.join(WORKER_FOLDER, "unpack.sh")
CALL_SCRIPT = os.path.join(WORKER_FOLDER, "call.sh")
REQUESTS = ("cores", "memory", "disk", "gpus", "priority", "running_time_min")


@dataclass(frozen=True)
class TaskOptions:
    """The executor's settings that shape every task."""
    python: str                 # the submit side's interpreter, tried first on the worker
    monitored: bool             # autolabel: cold tasks run under Work Queue's resource monitor
    shared_fs: bool
    init_command: str
    env: Dict[str, str]
    max_retries: Optional[int]
    warm: bool                  # coprocess=True
    monitor_interval: Optional[int]
    extra_inputs: Tuple[Tuple[str, str], ...] = ()     # extra_input_files: (submit-side path, name in the sandbox)
    proxy: Optional[str] = None     # the grid proxy shipped with every task, as PROXY


class TaskFiles:
    """The submit side's function files, and the SubmitTask of each app."""

    def __init__(self, data_dir: str, options: TaskOptions, worker_program: str):
        self.data_dir = data_dir
        self.function_dir = os.path.join(data_dir, "functions")
        self.task_dir = os.path.join(data_dir, "tasks")
        self.worker_program = worker_program    # the worker program's path (``parsl_wq.client.worker_program``)
        self.options = options
        self._written_functions: set = set()
        self.host_folder = host_folder(self.host_key())     # the same for every warm task of the run

    def create_folders(self) -> None:
        for folder in (self.data_dir, self.function_dir, self.task_dir):
            os.makedirs(folder, mode=0o700, exist_ok=True)

    def function_path(self, function_name: str) -> str:
        return os.path.join(self.function_dir, function_name)

    def write_function(self, func: Callable) -> Tuple[str, bytes]:
        """The function file's name (from its content) and content, written once per content."""
        data = pickle_or_fail(f"the function of app {app_name(func)}", func, serialize.serialize_function)
        name = f"pwq_fn_{serialize.function_digest(data)}.pkl"
        if name not in self._written_functions:
            path = self.function_path(name)
            temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(temporary, "wb") as f:
                f.write(data)
            os.replace(temporary, path)
            self._written_functions.add(name)
        return name, data

    def arguments(self, func: Callable, args: Any, kwargs: Any) -> bytes:
        return pickle_or_fail(f"the arguments of app {app_name(func)}", (args, kwargs))

    def inputs(self, function_name: str) -> Tuple[str, ...]:
        """Submit-side paths of the files every task of this kind carries."""
        files = (self.worker_program, self.function_path(function_name))
        return files + (CALL_SCRIPT,) if self.options.warm else files

    def message(self, task_id: int, function_name: str, arguments: bytes, category: str, resources: Resources,
                staging: Staging, environment: Optional["PackedEnvironment"]) -> SubmitTask:
        inputs = [FileTransfer(self.worker_program, WORKER_PROGRAM, cache=True),
                  FileTransfer(self.function_path(function_name), function_name, cache=True)]
        requested = {k: getattr(resources, k) for k in REQUESTS if getattr(resources, k) is not None}
        if self.options.warm:
            inputs.append(FileTransfer(CALL_SCRIPT, CALLER, cache=True))
            warm = self.warm_call(requested, ship_environment(environment, inputs))
            command = self.warm_command(warm.environment)
        else:
            prefix, python = self.prefix(environment, inputs)
            command, warm = prefix + runner_command(python, self.options.monitored), None
        inputs += [FileTransfer(local, remote, cache=True) for local, remote in self.options.extra_inputs]
        if self.options.proxy:      # renewed while runs go: sent afresh, not cached
            inputs.append(FileTransfer(self.options.proxy, PROXY, cache=False))
        inputs += [FileTransfer(f.local, f.remote, f.cache) for f in staging.inputs]
        outputs = [FileTransfer(f.local, f.remote, f.cache) for f in staging.outputs]
        call = Call(id=task_id, function=function_name, arguments=PickleBuffer(arguments),    # sent as it lies
                    output_dirs=staging.output_dirs(),
                    renames=[tuple(r) for r in staging.renames])
        return SubmitTask(task_id=task_id, command=command, category=category, inputs=tuple(unique(inputs)),
                          outputs=tuple(unique(outputs)), call=call, resources=requested,
                          env=self.task_env(), max_retries=self.options.max_retries, warm=warm)

    def prefix(self, environment: Optional["PackedEnvironment"], inputs: List[FileTransfer]) -> Tuple[str, str]:
        """A cold task's shell steps before the runner, and the Python they choose (``inputs`` grows by
        what a packed environment needs). Apps with the same prefix can share a bundle."""
        if environment is None:
            prefix = self.choose_python()
            python = '"$PY"'
        else:
            tarball = ship_environment(environment, inputs)["tarball"]
            prefix = (f"ENV=$(sh {UNPACKER} {tarball} {environment.name}) || "
                      f"{{ echo '{UNPACK_FAILED}' >&2; exit {EXIT_UNPACK_FAILED}; }}; "
                      f"PATH=\"$ENV/bin:$PATH\"; export PATH; ")
            python = '"$ENV/bin/python"'
        if self.options.shared_fs:      # the node's temporary folder, as with HTEX, not the task's sandbox
            prefix = (f"TMPDIR=\"${{{NODE_TMPDIR}:-/tmp}}\"; TMP=\"$TMPDIR\"; TEMP=\"$TMPDIR\"; "
                      f"export TMPDIR TMP TEMP; {prefix}")
        if self.options.init_command:
            prefix = f"{self.options.init_command}; {prefix}"
        return prefix, python

    def choose_python(self) -> str:
        """Shell steps that set PY to the submit side's Python if the node has it, else to python3."""
        return f"PY={shlex.quote(self.options.python)}; [ -x \"$PY\" ] || PY=python3; "

    def warm_command(self, environment: Optional[Dict[str, str]]) -> str:
        """A warm task's command: its call to the worker's warm host (``parsl_wq.protocol.warm``).

        Where no host answers yet, the task's shell runs what a cold task's runs
        before Python (``init_command``) and starts the host with the Python a
        cold task would use, with the executor's ``env`` (the task's variables):
        the warm Python starts as a cold one does. Executors that differ in
        any of these get hosts of their own (the folder's key). On a node
        without that Python, or whose Python is older than the host runs on
        (``HOST_PYTHON``), a packed ``environment`` brings one: it is unpacked
        (once per worker, as a cold task does) and its Python starts the host.
        """
        start = (f"{self.options.init_command}; " if self.options.init_command else "") + self.choose_python()
        if environment is not None:
            runs_host = f"import sys; sys.exit(sys.version_info < {HOST_PYTHON!r})"
            start += (f"\"$PY\" -S -c '{runs_host}' 2>/dev/null || {{ ENV=$(sh {UNPACKER} {environment['tarball']} "
                      f"{environment['name']}) || {{ echo '{UNPACK_FAILED}' >&2; exit {EXIT_UNPACK_FAILED}; }}; "
                      f"PY=\"$ENV/bin/python\"; }}; ")
        return task_command(self.host_folder, start, WORKER_PROGRAM)

    def host_key(self) -> str:
        """What names the warm host's folder on a worker: a digest of what shapes the host's Python."""
        shape = json.dumps([self.options.python, self.options.init_command, sorted(self.task_env().items())])
        return hashlib.sha256(shape.encode()).hexdigest()[:16]

    def task_env(self) -> Dict[str, str]:
        """``env``, and ``X509_USER_PROXY`` naming the shipped proxy (the runner makes it absolute)."""
        env = dict(self.options.env)
        if self.options.proxy:
            env["X509_USER_PROXY"] = PROXY
        return env

    def warm_call(self, requested: Dict[str, Any], environment: Optional[Dict[str, str]]) -> WarmCall:
        """What the warm host on the worker needs to run the app.

        ``environment`` names a packed environment's tarball in the sandbox: the
        app then runs in a warm host started with that environment's Python.
        """
        env = self.task_env()
        if requested.get("cores"):      # as Work Queue sets them for a cold task
            env.update(CORES=str(requested["cores"]), OMP_NUM_THREADS=str(requested["cores"]))
        for name in ("memory", "disk", "gpus"):
            if requested.get(name):
                env[name.upper()] = str(requested[name])
        # As cold: a declared memory is a limit under the monitor; running_time_min is Work Queue's
        # scheduling hint (the manager gives it to the task), never a limit.
        limits = {"memory": requested["memory"]} if self.options.monitored and requested.get("memory") else {}
        return WarmCall(env=env, limits=limits, interval=self.options.monitor_interval or 1,
                        node_tmpdir=NODE_TMPDIR if self.options.shared_fs else None, environment=environment,
                        measure_disk=self.options.monitored)


def check_sandbox_names(staging: Staging, extra_inputs: Sequence[Tuple[str, str]]) -> None:
    """Refuse an app whose own File would land on the name of a file in ``extra_input_files``.

    Both go to the sandbox under their names; one would silently replace the other.
    """
    extra = {remote: local for local, remote in extra_inputs}
    for f in staging.inputs + staging.outputs:
        if f.remote in extra and (f.local != extra[f.remote] or f in staging.outputs):
            raise ValueError(f"the app's file {f.local} and extra_input_files' {extra[f.remote]} would both be "
                             f"{f.remote!r} in the task's sandbox: rename one of them")


def ship_environment(environment: Optional["PackedEnvironment"], inputs: List[FileTransfer]) -> Optional[Dict[str, str]]:
    """Add a packed environment's tarball and its unpacker to a task's ``inputs``; their names in the sandbox."""
    if environment is None:
        return None
    tarball = f"pwq_env_{environment.name}.tar.gz"
    inputs += [FileTransfer(UNPACK_SCRIPT, UNPACKER, cache=True),
               FileTransfer(environment.tarball, tarball, cache=True)]
    return {"tarball": tarball, "name": environment.name}


def runner_command(python: str, monitored: bool) -> str:
    """The shell command that runs the runner, such that a death by signal N ends the task with exit code 128 + N.

    Under the resource monitor (autolabel) both engines report that for an
    exec'd Python; without it they report a bare N, so there the shell
    outlives Python and turns N into 128 + N. (A shell between the monitor
    and Python halved monitored throughput: 23 -> 12 no-op tasks/s in the monitored row of
    ``benchmarks/resources.py`` on Debian's 9.9.)
    """
    run = f"{python} {WORKER_PROGRAM} run {CALLS} {RESULTS}"
    return f"exec {run}" if monitored else f"{run}; exit $?"


def pickle_or_fail(what: str, obj: Any, dumps: Callable[[Any], bytes] = serialize.dumps) -> bytes:
    """``dumps(obj)``; any failure, SystemExit from a ``__reduce__`` included, is a SerializationFailed."""
    try:
        return dumps(obj)
    except BaseException as e:
        raise SerializationFailed(what, e) from e


def app_name(func: Callable) -> str:
    return getattr(serialize.unwrap(func), "__name__", repr(func))


def unique(transfers: List[FileTransfer]) -> List[FileTransfer]:
    seen: Dict[str, FileTransfer] = {}
    for t in transfers:
        seen.setdefault(t.remote, t)
    return list(seen.values())
