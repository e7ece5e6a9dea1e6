"""The executor's configuration, built once per use: its parameters checked, and what each part of the run gets.

Parsl keeps an executor's parameters as attributes of the same names, and a
Parsl config may change them between construction and ``start()`` (Parsl's
own tests do so for HTEX). ``Settings.of`` reads them all from there, checks
them (``parsl_wq.client.checks``) and adds what the checks derive; the
executor does this at construction, so that a bad value fails at once, and
again at ``start()``, and passes the result on. The parts of the run get
their view of it here: the manager process its ``ManagerConfig``, each task
its ``TaskOptions``.
"""

import dataclasses
import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from parsl_wq.client.checks import check_options
from parsl_wq.client.tasks import TaskOptions
from parsl_wq.engine import Features
from parsl_wq.protocol.messages import ManagerConfig

DERIVED = ("mode", "category_max", "category_first")


@dataclass(frozen=True)
class Settings:
    """The executor's parameters (``WorkQueueExecutor`` documents each), checked, and what the checks derive."""
    label: str
    provider: Any
    factory: Any
    working_dir: str
    project_name: Optional[str]
    catalog: Optional[str]
    project_password_file: Optional[str]
    require_password: bool
    ssl: Union[bool, Tuple[str, str], None]
    address: Optional[str]
    port: int
    env: Optional[Dict[str, str]]
    shared_fs: bool
    storage_access: Any
    use_cache: bool
    source: bool
    pack: bool
    extra_pkgs: Optional[List[str]]
    pack_cache_dir: Optional[str]
    autolabel: bool
    autolabel_window: int
    monitor_interval: Optional[int]
    autocategory: bool
    allocation_mode: Optional[str]
    category_max_resources: Optional[Dict[str, Dict[str, int]]]
    category_first_allocation: Optional[Dict[str, Dict[str, int]]]
    keepalive_interval: Optional[int]
    keepalive_timeout: Optional[int]
    max_retries: Optional[int]
    init_command: str
    worker_options: str
    full_debug: bool
    worker_executable: str
    function_dir: Optional[str]
    max_bundle: int
    coprocess: bool
    progress: Union[bool, str]
    extra_input_files: Sequence[str]
    x509_proxy: Union[str, bool, None]
    fast_abort: Optional[float]
    scaling_cores_per_worker: int
    remote_monitoring_radio: Any
    # derived by the checks
    mode: str = "fixed"                                 # the allocation mode in effect
    category_max: Dict[str, Dict[str, int]] = dataclasses.field(default_factory=dict)     # checked
    category_first: Dict[str, Dict[str, int]] = dataclasses.field(default_factory=dict)   # checked

    @classmethod
    def of(cls, executor: Any, engine: Features) -> "Settings":
        """The executor's parameters, read from its attributes and checked against ``engine``.

        Raises ConfigurationError naming the first bad value and what would be accepted.
        """
        given = cls(**{f.name: getattr(executor, f.name) for f in dataclasses.fields(cls) if f.name not in DERIVED})
        checked = check_options(given, engine)
        return dataclasses.replace(given, mode=checked.mode, category_max=checked.max, category_first=checked.first)


def parameters(init: Callable, values: Dict[str, Any]) -> Dict[str, Any]:
    """The parameters of ``init`` by name, from ``values`` (its ``locals()`` before anything else ran)."""
    return {name: values[name] for name in list(inspect.signature(init).parameters)[1:]}


def manager_config(settings: Settings, log_dir: str, task_dir: str, password_file: Optional[str],
                   tls_files: Optional[Tuple[str, str]]) -> ManagerConfig:
    """What the manager process is told: its queue's settings, and where the run's files are."""
    return ManagerConfig(
        port=settings.port, log_dir=log_dir, project_name=settings.project_name, password_file=password_file,
        debug_log=settings.full_debug, monitor=settings.autolabel, warm=settings.coprocess,
        monitor_interval=settings.monitor_interval,
        allocation_mode=settings.mode, autolabel_window=settings.autolabel_window,
        category_max_resources=settings.category_max, category_first_allocation=settings.category_first,
        shutdown_workers=settings.provider is not None or settings.factory is not None,
        catalog=settings.catalog, keepalive_interval=settings.keepalive_interval,
        keepalive_timeout=settings.keepalive_timeout, ssl=tls_files, max_bundle=settings.max_bundle,
        task_dir=task_dir, fast_abort=settings.fast_abort)


def task_options(settings: Settings, python: str, proxy: Optional[str]) -> TaskOptions:
    """What shapes every task: ``python`` is the submit side's interpreter, ``proxy`` the grid proxy shipped."""
    return TaskOptions(python=python, monitored=settings.autolabel, shared_fs=settings.shared_fs,
                       init_command=settings.init_command, env=dict(settings.env or {}),
                       max_retries=settings.max_retries, warm=settings.coprocess,
                       monitor_interval=settings.monitor_interval,
                       extra_inputs=tuple((os.path.abspath(p), os.path.basename(p)) for p in settings.extra_input_files),
                       proxy=proxy)
