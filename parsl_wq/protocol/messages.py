"""Messages between the executor and its manager process (``parsl_wq.protocol.channel`` carries them).

The conversation::

    executor                          manager
    ManagerConfig  ------------->
                   <-------------  Ready | StartFailed
    SubmitTask     ------------->  (one per app)
                   <-------------  TaskDone (one per app)
                   <-------------  QueueState (about once a second)
    FactoryStarted ------------->  (with a factory)
    Stop           ------------->

Standard library only: the manager process imports it and must start fast.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .sandbox import Call
from .warm import WarmCall

ALLOCATION_MODES = ("fixed", "max-seen", "max-throughput")     # ManagerConfig.allocation_mode
RESOURCES = ("cores", "memory", "disk", "gpus")     # what a category table (category_max_resources) may set


@dataclass(frozen=True)
class ManagerConfig:
    """Everything the manager process needs to create its queue."""
    port: int
    log_dir: str
    project_name: Optional[str] = None
    password_file: Optional[str] = None
    debug_log: bool = True
    monitor: bool = False                 # measure each task: Work Queue's resource monitor, or the warm host
    warm: bool = False                    # tasks go to the workers' warm hosts, which measure them themselves
    monitor_interval: Optional[int] = None  # its seconds between samples; None: Work Queue's own (5)
    allocation_mode: str = "fixed"        # one of ALLOCATION_MODES
    autolabel_window: Optional[int] = None
    category_max_resources: Dict[str, Dict[str, int]] = field(default_factory=dict)
    category_first_allocation: Dict[str, Dict[str, int]] = field(default_factory=dict)
    shutdown_workers: bool = False
    catalog: Optional[str] = None         # "host:port" of the catalog server, for project_name
    keepalive_interval: Optional[int] = None    # seconds; None keeps Work Queue's default
    keepalive_timeout: Optional[int] = None
    ssl: Optional[Tuple[str, str]] = None       # (key, certificate) files: TLS between manager and workers
    max_bundle: int = 1                   # most apps in one Work Queue task; 1: no bundling
    task_dir: str = ""                    # where the manager keeps each task's calls and results files
    fast_abort: Optional[float] = None    # Work Queue's fast abort multiplier; None: off


@dataclass(frozen=True)
class Ready:
    """The manager's queue listens on ``port``."""
    port: int


@dataclass(frozen=True)
class StartFailed:
    """The manager could not create its queue, for ``reason``."""
    reason: str


@dataclass(frozen=True)
class FileTransfer:
    """A file sent with a task (an input) or brought back (an output)."""
    local: str      # its path on the submit side
    remote: str     # its name in the task's sandbox
    cache: bool     # kept on the worker for later tasks


@dataclass(frozen=True)
class SubmitTask:
    """One app invocation. Apps whose messages agree on everything but ``task_id``,
    ``call`` and the files can travel in one task (``parsl_wq.manager.bundles``)."""
    task_id: int
    command: str            # what the task runs: the runner (cold), or its call to the warm host
    category: str
    inputs: Tuple[FileTransfer, ...]    # the function file, the worker program, and the app's own files
    outputs: Tuple[FileTransfer, ...]   # the app's own files
    call: Call              # the app's entry in the task's calls file, its arguments included
    resources: Dict[str, Any] = field(default_factory=dict)
    env: Dict[str, str] = field(default_factory=dict)
    max_retries: Optional[int] = None
    warm: Optional[WarmCall] = None     # a warm task: what its command tells the warm host


@dataclass(frozen=True)
class TaskUsage:
    """What one task was given and what it used, as Work Queue reports them.

    Memory and disk are in MB, times in seconds. ``measured`` is empty unless the
    resource monitor ran (``autolabel=True``); ``exceeded`` maps each resource the
    task went past to the limit it had; ``attempts`` counts Work Queue's tries,
    including retries at a larger allocation after an exhaustion. An app that
    ran in a bundle (``bundled`` apps in one task, one after the other in one
    Python) gets the bundle's usage: its allocation, and what the whole bundle used.
    """
    category: str
    allocated: Dict[str, float]
    measured: Dict[str, float]
    exceeded: Dict[str, float]
    attempts: int
    host: str = ""
    bundled: int = 1
    started: float = 0.0    # when the worker started the task's command, epoch seconds (0: unknown)
    ended: float = 0.0      # when it ended


# The unit of each resource of a TaskUsage, as the user reads it.
UNITS = {"cores": "", "gpus": "", "memory": " MB", "disk": " MB", "virtual_memory": " MB",
         "wall_time": " s", "cpu_time": " s", "bytes_read": " B", "bytes_written": " B"}


def amount(resource: str, value: float) -> str:
    """``value`` with its unit: ``amount("memory", 812) == "812 MB"``."""
    number = f"{value:.2f}".rstrip("0").rstrip(".") if resource in ("cores", "wall_time", "cpu_time") \
        else f"{value:.0f}"
    return number + UNITS.get(resource, "")


def amounts(values: Dict[str, float]) -> str:
    """For example ``cores 1, memory 250 MB``, by resource name; "-" for none."""
    return ", ".join(f"{r} {amount(r, v)}" for r, v in sorted(values.items())) or "-"


@dataclass(frozen=True)
class TaskDone:
    task_id: int
    result: int          # Work Queue's result code
    result_name: str     # its name (``parsl_wq.protocol.results``), for example "RESOURCE_EXHAUSTION"
    exit_code: int
    output: str          # the end of the task's stdout/stderr
    usage: Optional[TaskUsage] = None
    outcome: Optional[bytes] = None     # the runner's pickle of the app's outcome, if it wrote one
    seconds: Optional[float] = None     # how long the app's function ran, measured by the runner
    lost: Tuple[str, ...] = ()          # tries that ended with their worker's disconnection: "ADDRESS (REASON)"
    disks: Tuple[Tuple[str, int], ...] = ()     # (folder, bytes free) of each disk that receives its outputs


@dataclass(frozen=True)
class QueueState:
    """Apps running now, by category, and the workers connected (``parsl_wq.manager.queue_state``).

    Each worker is a dict: id, address, connected (epoch seconds), cores,
    memory, disk, gpus, tasks (running now); ``left`` adds left (epoch seconds).
    """
    time: float
    running: Dict[str, int]     # apps in Work Queue tasks that workers have
    workers: List[Dict[str, Any]]
    joined: List[Dict[str, Any]] = field(default_factory=list)     # since the last QueueState
    left: List[Dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class FactoryStarted:
    """The executor started ``work_queue_factory`` in a process group of its own: if the executor's process
    dies, the manager stops that group (the factory would notice only at its next 30 s cycle)."""
    process_group: int


@dataclass(frozen=True)
class Stop:
    """The executor is shutting down: cancel what runs, tell the executor's workers to leave, exit."""
