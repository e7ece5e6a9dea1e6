"""Messages between the executor and its manager process, and how they travel.

Each message is a small dataclass, pickled and sent with a 4-byte length
prefix over a pipe. Only the standard library is imported here: the manager
process imports this module and must start fast.
"""

import os
import pickle
import select
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

_HEADER = struct.Struct("!I")


@dataclass(frozen=True)
class ManagerConfig:
    """Everything the manager process needs to create its queue."""
    port: int
    log_dir: str
    project_name: Optional[str] = None
    password_file: Optional[str] = None
    debug_log: bool = True
    monitor: bool = False                 # run each task under Work Queue's resource monitor
    monitor_interval: Optional[int] = None  # its seconds between samples; None: Work Queue's own (5)
    allocation_mode: str = "fixed"        # "fixed", "max-seen" or "max-throughput"
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
    port: int


@dataclass(frozen=True)
class StartFailed:
    reason: str


@dataclass(frozen=True)
class FileTransfer:
    local: str
    remote: str
    cache: bool


@dataclass(frozen=True)
class SubmitTask:
    """One app invocation. Apps whose messages agree on everything but ``task_id``,
    ``call``'s entry and the files can travel in one task (``parsl_wq.bundles``)."""
    task_id: int
    command: str            # what a cold task runs; "" for a warm one
    category: str
    inputs: Tuple[FileTransfer, ...]    # the function file, the runner, and the app's own files
    outputs: Tuple[FileTransfer, ...]   # the app's own files
    entry: Dict[str, Any]   # the app's entry in the runner's calls file (``parsl_wq.runner``), less its arguments
    arguments: bytes        # a pickle of (args, kwargs)
    resources: Dict[str, Any] = field(default_factory=dict)
    env: Dict[str, str] = field(default_factory=dict)
    max_retries: Optional[int] = None
    call: Optional[Dict[str, Any]] = None   # warm execution: what the coprocess is told (``command`` is unused)


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


@dataclass(frozen=True)
class TaskDone:
    task_id: int
    result: int          # Work Queue's result code
    result_name: str     # its name, for example "RESOURCE_EXHAUSTION"
    exit_code: int
    output: str          # the end of the task's stdout/stderr
    usage: Optional[TaskUsage] = None
    outcome: Optional[bytes] = None     # the runner's pickle of the app's outcome, if it wrote one
    seconds: Optional[float] = None     # how long the app's function ran, measured by the runner


@dataclass(frozen=True)
class QueueState:
    """Apps running now, by category, and the workers connected (``parsl_wq.queue_state``)."""
    time: float
    running: Dict[str, int]     # apps in Work Queue tasks that workers have
    workers: List[Dict[str, Any]]
    joined: List[Dict[str, Any]] = field(default_factory=list)     # since the last QueueState
    left: List[Dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Stop:
    pass


class Channel:
    """Framed pickles over a pair of file descriptors."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = b""

    def send(self, message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        _write_all(self.write_fd, _HEADER.pack(len(data)) + data)

    def receive(self, timeout: Optional[float] = None) -> List[Any]:
        """Messages that arrive within ``timeout`` seconds (None: wait for at least one).

        Raises EOFError when the other side has closed its end.
        """
        messages = self._parse()
        if messages:
            return messages
        while True:
            readable, _, _ = select.select([self.read_fd], [], [], timeout)
            if not readable:
                return []
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise EOFError("channel closed")
            self._buffer += chunk
            messages = self._parse()
            if messages:
                return messages

    def _parse(self) -> List[Any]:
        """The complete messages in the buffer; the buffer keeps the rest (cut once, not after each message)."""
        messages = []
        buffer, start = memoryview(self._buffer), 0
        while len(buffer) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, start)
            end = start + _HEADER.size + size
            if len(buffer) < end:
                break
            messages.append(pickle.loads(buffer[start + _HEADER.size:end]))
            start = end
        buffer.release()
        if start:
            self._buffer = self._buffer[start:]
        return messages

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
