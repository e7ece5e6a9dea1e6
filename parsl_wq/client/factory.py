"""Workers from ``work_queue_factory``, as an alternative to a Parsl provider.

The factory submits workers to a batch system (or starts them on this
machine with batch type "local") and keeps their number between
``min_workers`` and ``max_workers`` according to the manager's demand.
The executor runs one factory process for its lifetime; the factory and the
local workers it started share one process group, so stopping the factory
stops them too.
"""

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import List, Optional

from parsl_wq.errors import ConfigurationError

STOP_TIMEOUT = 10       # seconds for the factory and its local workers to exit on SIGTERM


@dataclass(frozen=True)
class WorkerFactory:
    """How ``work_queue_factory`` starts workers for the executor.

    Parameters
    ----------
    batch_type : str
        Where workers run: "local" (this machine), "slurm", "condor", "sge", ...
        (``work_queue_factory -T``).
    min_workers, max_workers : int
        Bounds on the number of workers. The factory reads the manager's demand
        from the catalog when the executor has a ``project_name``; otherwise a
        password-protected manager does not answer its status queries and the
        factory keeps ``min_workers`` running.
    workers_per_cycle : int
        Workers started at most per 30-second cycle.
    cores, memory, disk, gpus : int, optional
        What each worker offers (memory and disk in MB), also requested from
        the batch system. Default: what the node has. For Slurm, memory is
        requested with ``--mem``.
    worker_timeout : int
        Seconds a worker stays without work before it leaves.
    batch_options : str
        Extra options for the batch system (``-B``), for example "--mem=4000"
        for Slurm.
    worker_options : str
        Extra options for each worker (``-E``).
    executable : str
        Command that runs the factory.
    """
    batch_type: str = "local"
    min_workers: int = 1
    max_workers: int = 10
    workers_per_cycle: int = 5
    cores: Optional[int] = None
    memory: Optional[int] = None
    disk: Optional[int] = None
    gpus: Optional[int] = None
    worker_timeout: int = 300
    batch_options: str = ""
    worker_options: str = ""
    executable: str = "work_queue_factory"

    def __post_init__(self):
        if self.min_workers < 0 or self.max_workers < max(1, self.min_workers):
            raise ConfigurationError("factory", self, "0 <= min_workers <= max_workers and max_workers >= 1 "
                                     f"(got min_workers={self.min_workers}, max_workers={self.max_workers})")
        for name in ("workers_per_cycle", "cores", "memory", "disk", "worker_timeout"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigurationError("factory", self, f"{name} must be an int >= 1 (got {value})")
        if self.gpus is not None and self.gpus < 0:
            raise ConfigurationError("factory", self, f"gpus must be an int >= 0 (got {self.gpus})")

    def command(self, manager: List[str], scratch_dir: str, password_file: Optional[str],
                catalog: Optional[str], tls: bool = False, parent_death: bool = False,
                wrapper: Optional[str] = None, executor_worker_options: str = "",
                worker_binary: Optional[str] = None) -> List[str]:
        """The factory's command line; ``manager`` is ``[host, port]`` or ``["-M", project]``.

        ``parent_death``: the factory ends, and removes its workers, once the
        process that started it is gone (it looks every 30 s, its cycle).
        ``wrapper``: a shell script, shipped with each worker, that the
        worker's command is given to (``parsl_wq.client.joining.WORKSPACE_WRAPPER``).
        ``executor_worker_options``: the executor's own options for every
        worker (its ``worker_options``), given
        before this factory's ``worker_options``. ``worker_binary``: the
        executor's ``worker_executable``, which the factory copies and ships
        with each worker (None: ``work_queue_worker`` from the PATH).
        """
        command = [self.executable, "-T", self.batch_type,
                   "--min-workers", str(self.min_workers), "--max-workers", str(self.max_workers),
                   "--workers-per-cycle", str(self.workers_per_cycle),
                   "--timeout", str(self.worker_timeout), "--scratch-dir", scratch_dir]
        batch_options = self.batch_options
        worker_options = " ".join(o for o in (executor_worker_options, self.worker_options) if o)
        for name in ("cores", "memory", "disk", "gpus"):
            value = getattr(self, name)
            if value is None:
                continue
            if name == "memory" and self.batch_type == "slurm":
                # the factory's own --memory line for Slurm is broken in cctools 9.9
                batch_options = f"{batch_options} --mem={value}".strip()
                worker_options = f"{worker_options} --memory {value}".strip()
            else:
                command.append(f"--{name}={value}")
        if password_file:
            command += ["--password", password_file]
        if tls:
            command.append("--ssl")
        if catalog:
            command.append(f"--catalog={catalog}")
        if parent_death:
            command.append("--parent-death")
        if wrapper:
            command += ["--wrapper", f"sh {os.path.basename(wrapper)}", "--wrapper-input", wrapper]
        if worker_binary:
            command.append(f"--worker-binary={worker_binary}")
        if batch_options:
            command += ["--batch-options", batch_options]
        if worker_options:
            command += ["--extra-options", worker_options]
        return command + manager


class FactoryProcess:
    """One running ``work_queue_factory``, in a process group of its own."""

    def __init__(self, command: List[str], log_dir: str):
        self.command = command
        self.log_path = os.path.join(log_dir, "factory.log")
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(("$ " + " ".join(shlex.quote(c) for c in self.command) + "\n").encode())
            log.flush()
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        """SIGTERM the factory and the local workers in its group; SIGKILL what is left after STOP_TIMEOUT."""
        if self.process is None:
            return
        group = self.process.pid
        _signal_group(group, signal.SIGTERM)     # local workers outlive the factory otherwise
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and _signal_group(group, 0):
            self.process.poll()                  # reap the factory, so that the group can empty
            time.sleep(0.1)
        _signal_group(group, signal.SIGKILL)
        self.process.wait()


def _signal_group(group: int, sig: int) -> bool:
    """Send ``sig`` to the process group; False if no process is left in it."""
    try:
        os.killpg(group, sig)
        return True
    except ProcessLookupError:
        return False
