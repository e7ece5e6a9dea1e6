"""How a worker joins a run: the arguments that name the manager and prove the worker may join.

Used for the workers the executor starts (``WorkQueueExecutor.worker_command``,
the factory) and printed by ``parsl-wq workers`` for workers started elsewhere,
so both say the same.
"""

import shlex
from typing import List, Optional


def worker_options(password_file: Optional[str], tls: bool, coprocess: Optional[str]) -> List[str]:
    """``work_queue_worker`` options, shell-quoted: the password file, TLS, the warm launcher."""
    options = []
    if password_file:
        options += ["--password", shlex.quote(password_file)]
    if tls:
        options.append("--ssl")
    if coprocess:
        options += ["--coprocess", shlex.quote(coprocess)]
    return options


def manager_arguments(project_name: Optional[str], catalog: Optional[str], address: str, port: int) -> List[str]:
    """The manager, shell-quoted, for ``work_queue_worker`` and cctools' submit scripts: ``[-C CATALOG] -M PROJECT``
    when the run has a project name, else ``ADDRESS PORT``."""
    if project_name:
        return (["-C", shlex.quote(catalog)] if catalog else []) + ["-M", shlex.quote(project_name)]
    return [address, str(port)]


def factory_manager(project_name: Optional[str], address: str, port: int) -> List[str]:
    """The manager for ``work_queue_factory`` (its catalog is an option of its own), as command-line words."""
    return ["-M", project_name] if project_name else [address, str(port)]
