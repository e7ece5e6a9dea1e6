"""WorkQueueExecutor: Parsl apps as Work Queue tasks. The Parsl-facing shell of the user's process.

Data flow::

    Parsl DFK                executor (this process)            manager process              workers
    ---------                -----------------------            ---------------              -------
    1. submit(fn, spec,  --> check spec; write function file
       args, kwargs)         (once per content), pickle the
                             arguments; SubmitTask over   -->  2. queue.submit(Task),  -->  3. pwq_worker.pyz runs
                             the channel                          alone or bundled             the task's apps,
                                                                                               writes their outcomes
                                                               4. queue.wait returns;  <--    (Work Queue fetches them)
                             5. collector thread takes   <--      one TaskDone per app
                                the TaskDone, loads the
    6. future resolves  <--     outcome

Step 1 is ``parsl_wq.client.tasks`` (the task's files and command). In step 2 the
manager submits each app alone while Work Queue has room, and holds it for a
bundle otherwise (``parsl_wq.manager.bundles``). Step 3 runs a new Python per task, or,
with ``coprocess=True``, a fork of the worker's warm Python (``parsl_wq.worker.host``,
docs/warm.md). The manager's wait ends as soon as a message arrives
(``parsl_wq.manager.waiting``); step 5 is ``parsl_wq.client.collector``.

With ``pack=True``, step 1 asks the packer (``parsl_wq.pack``) for the app's
environment; the SubmitTask is sent when it is built (at once when cached),
and the worker runs the app with that environment's python (docs/pack.md).

One broken state: if the manager process exits unexpectedly, every pending
future fails with the same ``ExecutorBroken`` and later ``submit`` calls raise it.

The rest of the user's process has a module each: the configuration
(``config``), workers and secrets (``workers``), collecting results
(``collector``), the manager process (``manager_process``). This module is
over 400 lines, and ``WorkQueueExecutor`` over 300, because the class
docstring documents each of the 42 parameters, as Parsl's own executors do
(175 lines), and the signature lists them (44): the class has 238 lines of code.
"""

import functools
import logging
import os
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import typeguard
from parsl.data_provider.staging import Staging
from parsl.executors.status_handling import BlockProviderExecutor
from parsl.jobs.states import TERMINAL_STATES
from parsl.monitoring.radios.base import RadioConfig
from parsl.monitoring.radios.filesystem import FilesystemRadio
from parsl.providers import LocalProvider
from parsl.providers.base import ExecutionProvider
from parsl.utils import RepresentationMixin

from parsl_wq.client import files, joining, serialize, worker_program, workers
from parsl_wq.client.collector import Collector, Pending, Submitted, TaskFuture
from parsl_wq.client.config import Settings, manager_config, parameters, task_options
from parsl_wq.client.factory import FactoryProcess, WorkerFactory
from parsl_wq.client.files import FilePlanner
from parsl_wq.client.manager_process import STOP_TIMEOUT, ManagerProcess
from parsl_wq.client.progress import ProgressBar
from parsl_wq.client.progress import wanted as progress_wanted
from parsl_wq.client.resources import Resources, parse_resource_specification
from parsl_wq.client.run_status import RunStatus
from parsl_wq.client.tasks import TaskFiles, app_name, check_sandbox_names
from parsl_wq.client.usage import UsageSummary
from parsl_wq.engine import features, load_work_queue
from parsl_wq.errors import ConfigurationError, ExecutorBroken, ExecutorShutdown, PackError
from parsl_wq.protocol.messages import FactoryStarted, SubmitTask
from parsl_wq.protocol.sandbox import WORKER_PROGRAM

logger = logging.getLogger(__name__)

WORK_QUEUE_DEFAULT_PORT = 9123
DEFAULT_CATEGORY = "parsl-default"
DEFAULT_MONITOR_INTERVAL = 1    # seconds: resource_monitor's shortest (parsl_wq.manager.monitor)

__all__ = ["WorkQueueExecutor", "TaskFuture"]


class WorkQueueExecutor(BlockProviderExecutor, RepresentationMixin):
    """Run Parsl apps as Work Queue tasks on ``work_queue_worker`` processes.

    A drop-in replacement for ``parsl.executors.WorkQueueExecutor``: every
    parameter has the same name and meaning. By default a ``LocalProvider``
    starts one worker on this machine, connecting to 127.0.0.1.

    Parameters
    ----------
    label : str
        Name of the executor in the Parsl config. Default "WorkQueueExecutor".
    provider : ExecutionProvider, optional
        Where workers are started. Default: a ``LocalProvider`` (one block),
        unless ``factory`` is given.
    factory : WorkerFactory, optional
        Start workers with ``work_queue_factory`` instead of a Parsl provider,
        for example ``WorkerFactory(batch_type="slurm", max_workers=50, cores=8)``.
        The factory runs as long as the executor, with the run's password.
    working_dir : str
        Kept for compatibility; the run's files live in the run directory.
    project_name : str, optional
        Work Queue project name: workers find the manager by this name through
        a catalog server instead of its address.
    catalog : str, optional
        "host:port" of the catalog server that the manager reports to and that
        workers and the factory ask. Default: ``CATALOG_HOST``/``CATALOG_PORT``,
        else Work Queue's public catalog, for runs with a ``project_name``; the
        factory of a run without either reports to 127.0.0.1:9, where nothing
        listens, since it reports to a catalog in any case.
    project_password_file : str, optional
        Password file shared by the manager and the workers. Default: a new
        random password for the run, written to ``RUN_DIR/LABEL/worker.password``
        (mode 0600); workers the executor starts use it (see ``require_password``).
    ssl : bool or (str, str), optional
        TLS between the manager and its workers. Default None: on where the
        Work Queue found supports it (cctools 7.x), with a certificate made for
        the run (``RUN_DIR/LABEL/tls.crt``, key 0600), and workers the executor
        starts use ``--ssl``; off on engines without TLS. True: on, or an
        error at construction on an engine without it. ``(key, cert)``: these
        PEM files. False: off. See docs/security.md for what TLS protects.
    require_password : bool
        Refuse workers that do not know the password. Default True: without a
        ``project_password_file`` the executor makes one for the run. False
        lets any process that reaches the manager's port join as a worker and
        receive tasks; see docs/security.md before choosing it.
    address : str, optional
        Address workers connect to. Default: 127.0.0.1 for a ``LocalProvider``,
        this host's name otherwise.
    port : int
        Port the manager listens on; 0 picks a free one (see ``worker_port``).
    env : dict of str to str, optional
        Environment variables set for every task on the worker.
    shared_fs : bool
        True if workers see the submit side's files at the same paths; then no
        Parsl File is transferred. Default False: every File is transferred.
    storage_access : list of Staging, optional
        Parsl staging providers for non-local files. Default: with
        ``shared_fs=False``, Parsl's in-task providers for http, https and ftp
        (the app's task downloads its files into its own sandbox); with
        ``shared_fs=True``, Parsl's defaults. A provider that stages in a task
        of its own (``HTTPSeparateTaskStaging``, ``FTPSeparateTaskStaging``,
        ``ZipFileStaging``) needs ``shared_fs=True``.
    use_cache : bool
        Keep input Files on the workers for later tasks, matched by path.
    source : bool
        Accepted for compatibility: functions are always shipped serialized.
    pack : bool
        Ship each app with a packed Python environment that holds the
        interpreter and the packages the app imports, so workers need neither
        (see docs/pack.md). Environments are built off the submit path, cached
        in ``pack_cache_dir`` and unpacked once per worker.
    extra_pkgs : list of str, optional
        Distributions added to every packed environment, for imports that
        the scan cannot see (a module name built at run time, for example).
    pack_cache_dir : str, optional
        Folder of packed environments. Default ``~/.cache/parsl_wq/envs``
        (``$XDG_CACHE_HOME/parsl_wq/envs``).
    autolabel : bool
        Run every task under Work Queue's resource monitor: what it uses is
        measured (see ``parsl_wq.resource_usage``), its limits are enforced,
        and with a learning ``allocation_mode`` each category's allocations
        come from the measurements. The monitor costs 23 ms per task on Debian's
        9.9 and 51 ms on cctools 7.17.1 (``benchmarks/resources.py``, README).
    autolabel_window : int
        Tasks of a category measured before its learned allocation is used.
    monitor_interval : int, optional
        Seconds between the resource monitor's samples of a task, with
        ``autolabel``. Default 1, the monitor's shortest: a peak held that long
        is measured, enforced and learned. None keeps Work Queue's own 5 s.
    autocategory : bool
        Put each app in a Work Queue category of its own name, so each app
        learns its own allocation. A ``category`` key in
        ``parsl_resource_specification`` overrides it.
    allocation_mode : str, optional
        How allocations are chosen for resources a task does not declare:
        "fixed" (a whole worker; nothing learned), "max-seen" (the largest use
        seen in the category) or "max-throughput" (Work Queue's
        throughput-optimal label). Default "max-seen" with ``autolabel``,
        "fixed" without; the learning modes need ``autolabel=True``.
    category_max_resources : dict, optional
        Largest allocation per category, for example
        ``{"simulate": {"cores": 2, "memory": 4000}}``; the key "*" applies to
        every category without an entry. A task that outgrows a learned
        allocation is retried at this maximum (default: a whole worker).
    category_first_allocation : dict, optional
        First allocation per category, used until ``autolabel_window`` tasks
        were measured (default: a whole worker). Same form as ``category_max_resources``.
    keepalive_interval, keepalive_timeout : int, optional
        Seconds between the manager's checks on an idle-looking worker, and
        seconds without an answer before the worker counts as lost and its
        tasks run elsewhere. Default: Work Queue's (120 and 30 here).
    max_retries : int, optional
        Work Queue's own retries of a failed task (None: no limit). Default 1,
        so that retries are left to Parsl's ``retries``.
    init_command : str
        Shell command run before each task on the worker (cold tasks only:
        with ``coprocess=True`` it fails at construction).
    worker_options : str
        Extra options for ``work_queue_worker``. With a provider that sets
        ``cores_per_node`` or ``mem_per_node`` (GB), as Slurm's does, workers
        also get ``--cores`` and ``--memory`` from them, unless these options
        name their own. Each worker runs in a folder made for it (mode 0700,
        removed when it ends, docs/security.md); a ``--workdir`` here
        replaces it.
    full_debug : bool
        Write Work Queue's full debug log to the run directory.
    worker_executable : str
        Command that starts a worker. Default "work_queue_worker".
    function_dir : str, optional
        Where function files and the runner's files of each task are written.
        Default: under the run directory.
    max_bundle : int
        Most apps sent as one Work Queue task. While every slot is busy, apps
        that wait with the same category and resources leave together as a
        bundle, run one after the other in one Python, each with its own
        result (see docs/bundling.md). Bundles grow with the backlog and stay
        under about a second of measured running time: no bundling while slots
        are free, and apps of a second or more always go alone. Default 1000;
        1 turns bundling off.
    coprocess : bool
        Warm workers: run each task's apps in a fork of a warm Python that the
        worker's first warm task starts, on any engine and any node with a
        Python 3 and ``/bin/sh`` (not a Work Queue coprocess: nothing on the
        worker's command line). An app's imports and its function stay loaded for the
        next apps, and no Python starts per task; what an app changes ends
        with its fork; ``init_command`` runs once per warm Python (see
        docs/warm.md). Default True; False starts a fresh Python for each task.
        With ``pack=True`` the warm Python of each packed environment is that
        environment's interpreter, started on a worker at its first app.
    progress : bool or "always"
        A live progress bar on stderr: apps finished out of those submitted,
        running, waiting, failed, workers connected; about once a second.
        True shows it in a terminal or a notebook only; "always" also when
        stderr is a file. Default False. Without it, ``parsl-wq status`` shows
        the same from another terminal (docs/cli.md).
    extra_input_files : list of str
        Files sent with every task, each under its own name in the task's
        folder on the worker, and cached there for the next tasks (Coffea's
        option of the same name: a processor module, a corrections file).
    x509_proxy : str or bool, optional
        A grid proxy file sent with every task (not cached: proxies are
        renewed), with ``X509_USER_PROXY`` set to its path on the worker; sent
        without TLS, with a warning that names the risk. Default None:
        ``$X509_USER_PROXY`` when it names a file, as Coffea does, but only
        when workers connect with TLS (cctools 7.x): a proxy is a credential.
        False: no proxy.
    fast_abort : float, optional
        Fast abort, for stragglers on slow or broken nodes: once 10 tasks of
        a category have succeeded, a task that runs longer than this many
        times what its apps should take (the category's measured seconds per
        app times its apps, plus the tasks' overhead) is taken back and
        submitted again, with one more multiple each time. A bundle is judged
        by its apps together. At least 1. Default None: off. Each abort
        counts against ``max_retries``.
    scaling_cores_per_worker : int
        Cores a worker is expected to have, for Parsl's scaling.
    remote_monitoring_radio : RadioConfig, optional
        How tasks report to Parsl monitoring. Default: a ``FilesystemRadio``.
    """

    @typeguard.typechecked
    def __init__(self,
                 label: str = "WorkQueueExecutor",
                 provider: Optional[ExecutionProvider] = None,
                 factory: Optional[WorkerFactory] = None,
                 working_dir: str = ".",
                 project_name: Optional[str] = None,
                 catalog: Optional[str] = None,
                 project_password_file: Optional[str] = None,
                 require_password: bool = True,
                 ssl: Union[bool, Tuple[str, str], None] = None,
                 address: Optional[str] = None,
                 port: int = WORK_QUEUE_DEFAULT_PORT,
                 env: Optional[Dict] = None,
                 shared_fs: bool = False,
                 storage_access: Optional[List[Staging]] = None,
                 use_cache: bool = False,
                 source: bool = False,
                 pack: bool = False,
                 extra_pkgs: Optional[List[str]] = None,
                 pack_cache_dir: Optional[str] = None,
                 autolabel: bool = False,
                 autolabel_window: int = 1,
                 monitor_interval: Optional[int] = DEFAULT_MONITOR_INTERVAL,
                 autocategory: bool = True,
                 allocation_mode: Optional[str] = None,
                 category_max_resources: Optional[Dict[str, Dict[str, int]]] = None,
                 category_first_allocation: Optional[Dict[str, Dict[str, int]]] = None,
                 keepalive_interval: Optional[int] = None,
                 keepalive_timeout: Optional[int] = None,
                 max_retries: Optional[int] = 1,
                 init_command: str = "",
                 worker_options: str = "",
                 full_debug: bool = True,
                 worker_executable: str = "work_queue_worker",
                 function_dir: Optional[str] = None,
                 max_bundle: int = 1000,
                 coprocess: bool = True,
                 progress: Union[bool, str] = False,
                 extra_input_files: Sequence[str] = (),
                 x509_proxy: Union[str, bool, None] = None,
                 fast_abort: Optional[float] = None,
                 scaling_cores_per_worker: int = 1,
                 remote_monitoring_radio: Optional[RadioConfig] = None):
        given = parameters(WorkQueueExecutor.__init__, locals())
        if provider is not None and factory is not None:
            raise ConfigurationError("factory", factory, "either a provider or a factory starts the "
                                     "workers, not both: leave provider unset")
        if provider is None and factory is None:
            provider = LocalProvider()
        BlockProviderExecutor.__init__(self, provider=provider, block_error_handler=True)
        given.update(extra_input_files=list(extra_input_files),
                     remote_monitoring_radio=remote_monitoring_radio or FilesystemRadio())
        for name, value in given.items():   # Parsl reads each parameter as an attribute of its name
            if name != "provider":          # BlockProviderExecutor's property
                setattr(self, name, value)
        self._engine = features(load_work_queue())
        self._settings = Settings.of(self, self._engine)     # a bad value fails here, not at start()
        self._chosen_staging: Optional[List[Staging]] = None
        self._choose_staging()

        self._pending = Pending()
        self._learned_cores: Dict[str, int] = {}
        self.usage_summary = UsageSummary()
        self._manager: Optional[ManagerProcess] = None
        self._collector: Optional[Collector] = None
        self._collector_thread: Optional[threading.Thread] = None
        self._factory: Optional[FactoryProcess] = None
        self._packer = None
        self._run_status: Optional[RunStatus] = None
        self._stopping = False
        self._early_blocks = 0
        self.worker_port: Optional[int] = None
        self.worker_command = ""
        self._launch_command = ""

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Create the run directory, start the manager process and the first blocks of workers."""
        super().start()
        self._settings = settings = Settings.of(self, self._engine)   # as the config left the attributes
        self._choose_staging()
        self._log_dir = os.path.join(self.run_dir, self.label)
        if settings.function_dir is None:
            self._data_dir = os.path.join(self._log_dir, "function_data")
        else:
            self._data_dir = os.path.join(settings.function_dir, self.run_id or str(time.time()), self.label)
        os.makedirs(self._log_dir, mode=0o700, exist_ok=True)
        self._manager = ManagerProcess(self.label, self._log_dir)
        self._manager.spawn()       # it imports Work Queue while the rest is prepared
        try:
            self._run_status = RunStatus(self._log_dir, self.usage_summary,
                                         ProgressBar(self.label) if progress_wanted(settings.progress) else None)
            self._secrets = workers.Secrets.choose(settings, self._engine, self._log_dir)
            program = worker_program.build(os.path.join(self._log_dir, WORKER_PROGRAM))
            options = task_options(settings, sys.executable, workers.grid_proxy(settings, self._secrets))
            self._task_files = TaskFiles(self._data_dir, options, program)
            self._task_files.create_folders()
            self._files = FilePlanner(settings.shared_fs, settings.use_cache)
            joining.write_workspace_wrapper(self._log_dir)      # for the factory's workers
            if settings.pack:
                from parsl_wq.pack import Packer
                from parsl_wq.pack.cache import default_cache_dir
                self._packer = Packer(settings.pack_cache_dir or default_cache_dir(), settings.extra_pkgs or ())
            self.worker_port = self._manager.start(manager_config(settings, self._log_dir, self._task_files.task_dir,
                                                                  self._secrets.password_file, self._secrets.tls_files))
        except BaseException:
            self._manager.stop()
            raise
        self._collector = Collector(self, self._manager, self._pending, self._run_status, self.usage_summary,
                                    self._learned_cores, settings.mode, self._break)
        self._collector_thread = threading.Thread(target=self._collector.run, name=f"{self.label}-collector",
                                                  daemon=True)
        self._collector_thread.start()
        self.worker_command = workers.worker_command(settings, self._secrets, self.worker_port)
        self._launch_command = workers.worker_command(settings, self._secrets, self.worker_port, carry_password=True)
        workers.private_scripts(self.provider)
        logger.info("WorkQueueExecutor %s: manager listening on port %d; workers start with: %s",
                    self.label, self.worker_port, self.worker_command)
        self._run_status.write_run(workers.run_description(settings, self._secrets, self.run_id, self.worker_port,
                                                           self.worker_command, self._engine, self._log_dir))
        if self.provider is not None and self.provider.init_blocks > 0:
            self.scale_out_facade(self.provider.init_blocks)
            self._early_blocks = self.provider.init_blocks
        if settings.factory is not None:
            self._factory = workers.start_factory(settings, self._secrets, self.worker_port, self._log_dir)
            self._send(FactoryStarted(self._factory.process.pid))   # stopped by the manager if this process dies

    def scale_out_facade(self, n: int) -> List[str]:
        """Start ``n`` more blocks of workers.

        ``start()`` launches the provider's ``init_blocks`` at once, so that the
        first tasks need not wait for the scaling strategy's first period
        (5 s by default). The strategy's own first call asks for those same
        ``init_blocks``; they are subtracted from it, once.
        """
        if self._early_blocks:
            n, self._early_blocks = max(0, n - self._early_blocks), 0
        return super().scale_out_facade(n) if n > 0 else []

    def _get_launch_command(self, block_id: str) -> str:
        """What a provider's block runs: the worker command with the password in it (written to its script)."""
        return f"export PARSL_WORKER_BLOCK_ID={block_id}; {self._launch_command}"

    # ----------------------------------------------------------------- submit

    def submit(self, func: Callable, resource_specification: Dict[str, Any], *args: Any, **kwargs: Any) -> Future:
        """Send one app invocation to Work Queue; returns its future.

        Raises
        ------
        InvalidResourceSpecification
            If ``resource_specification`` has an unknown key or a bad value.
        ExecutorBroken
            If the manager process has died.
        """
        resources = parse_resource_specification(resource_specification)
        if self.bad_state_is_set:
            raise self.executor_exception
        if self._manager is None:
            raise ExecutorBroken(self.label, "submit() was called before start()")
        task_id = self._pending.new_id()
        task_args, task_kwargs, staging = self._files.plan(args, kwargs)
        check_sandbox_names(staging, self._task_files.options.extra_inputs)
        function_name, function_file = self._task_files.write_function(func)
        arguments = self._task_files.arguments(func, task_args, task_kwargs)

        future = TaskFuture()
        future.parsl_executor_task_id = task_id  # type: ignore[attr-defined]
        category = self._category(func, resources)
        inputs = self._task_files.inputs(function_name)
        record = Submitted(slots=self._slots(category, resources), category=category,
                           declares_cores=resources.cores is not None, monitoring_ids=_monitoring_ids(kwargs),
                           inputs=inputs + tuple(f.local for f in staging.inputs),
                           app=app_name(func), submitted_at=time.time())
        self._pending.add(task_id, future, record)
        self._run_status.submitted(category, record.app)
        message = functools.partial(self._task_files.message, task_id, function_name, arguments, category,
                                    resources, staging)
        if self._packer is None:
            self._send(message(None))
        else:       # sent when the environment is ready; submit() never waits for a build
            self._packer.environment(serialize.unwrap(func), function_file, function_name).add_done_callback(
                lambda built: self._send_packed(task_id, message, built))
        return future

    def _send(self, message: SubmitTask) -> None:
        try:
            self._manager.send(message)
        except OSError as e:
            self._break(f"the manager process cannot be reached ({e})")

    def _send_packed(self, task_id: int, message: Callable, built: Future) -> None:
        """Send a task whose environment ``built`` has finished, or fail it with the build's error."""
        if self._stopping or built.cancelled():
            return      # shutdown() fails the task
        error = built.exception()
        if error is None:
            self._send(message(built.result()))
            return
        if not isinstance(error, PackError):
            error = PackError(f"building the environment failed: {type(error).__name__}: {error}")
        future, record = self._pending.pop(task_id)
        self._collector.finished(task_id, record, None, error)
        if future is not None and not future.done():
            future.set_exception(error)

    def _choose_staging(self) -> None:
        """Parsl's staging providers for the run: the user's, checked, or those that fit ``shared_fs``."""
        if self.storage_access is None or self.storage_access is self._chosen_staging:
            self.storage_access = self._chosen_staging = files.default_staging(self._settings.shared_fs)
        else:
            files.check_staging(self.storage_access, self._settings.shared_fs)

    def _category(self, func: Callable, resources: Resources) -> str:
        if resources.category is not None:
            return resources.category
        if self._settings.autocategory:
            return getattr(serialize.unwrap(func), "__name__", DEFAULT_CATEGORY)
        return DEFAULT_CATEGORY

    def _slots(self, category: str, resources: Resources) -> int:
        """Cores the task will hold: declared, else learned for its category, else a whole worker."""
        if resources.cores is None and category in self._learned_cores:
            return self._learned_cores[category]
        return resources.slots(self._settings.scaling_cores_per_worker)

    # ------------------------------------------------------------ broken state

    def _break(self, reason: str) -> None:
        """Enter the broken state: fail every pending future with one exception."""
        exception = ExecutorBroken(self.label, reason)
        pending = self._pending.break_all(exception)    # a submit() after this fails at once
        if pending is None:
            return
        self._executor_exception = exception
        self._executor_bad_state.set()
        logger.error("%s", exception)
        for future in pending:
            if not future.done():
                future.set_exception(exception)

    def set_bad_state_and_fail_all(self, exception: Exception) -> None:
        """Called by Parsl's block error handler, for example when every block failed."""
        self._break(str(exception))

    # ----------------------------------------------------------------- scaling

    def outstanding(self) -> int:
        """Cores held by tasks not yet finished.

        A task holds the cores it declares; one that declares none holds what
        its category learned (with a learning ``allocation_mode``), else a whole worker.
        """
        return self._pending.slots

    def monitor_resources(self) -> bool:
        """Whether Parsl's own per-task resource monitor should run on the workers.

        With ``autolabel``, Work Queue's resource monitor already measures every
        task and the executor sends those measurements to Parsl monitoring;
        a second monitor process per task would only add cost.
        """
        return not self._settings.autolabel

    @property
    def workers_per_node(self) -> int:
        return self._settings.scaling_cores_per_worker

    # ---------------------------------------------------------------- shutdown

    def shutdown(self) -> None:
        """Stop the manager and the workers this executor started; fail what is still outstanding.

        Writes the per-category usage table to ``resources.txt`` in the run
        directory and logs it.
        """
        self._stopping = True
        if self._collector is not None:
            self._collector.stopping = True
        if self._manager is not None:
            self._manager.stop()
        if self._collector_thread is not None:
            self._collector_thread.join(timeout=STOP_TIMEOUT)
        self._write_usage_summary()
        if self._packer is not None:
            self._packer.shutdown()
        self._cancel_blocks()
        if self._factory is not None:
            self._factory.stop()
        for task_id, (future, record) in self._pending.pop_all().items():
            error = ExecutorShutdown(self.label, task_id)
            if self._collector is not None:
                self._collector.finished(task_id, record, None, error)
            if not future.done():
                future.set_exception(error)
        if self._run_status is not None:
            self._run_status.close()
        super().shutdown()

    def _write_usage_summary(self) -> None:
        if not self.usage_summary.categories:      # no task finished, or start() never ran
            return
        table = self.usage_summary.table()
        path = os.path.join(self._log_dir, "resources.txt")
        try:
            with open(path, "w") as f:
                f.write(table + "\n")
        except OSError as e:
            logger.warning("WorkQueueExecutor %s: could not write %s: %s", self.label, path, e)
        logger.info("WorkQueueExecutor %s: resources by category\n%s", self.label, table)

    def _cancel_blocks(self) -> None:
        if self.provider is None:
            return
        active = [job for block, job in self.blocks_to_job_id.items()
                  if block not in self._status or self._status[block].state not in TERMINAL_STATES]
        if active:
            self.provider.cancel(active)


def _monitoring_ids(kwargs: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    """Parsl's task and try ids, which its monitoring wrapper passes in the kwargs."""
    if "_parsl_monitoring_task_id" not in kwargs:
        return None
    return kwargs["_parsl_monitoring_task_id"], kwargs["_parsl_monitoring_try_id"]
