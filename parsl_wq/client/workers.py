"""Workers and the run's secrets: how workers reach the manager, prove they may join, and are started.

Runs in the user's process, at ``start()``. The password file and the TLS
certificate are made for the run (``parsl_wq.client.security``) unless the
user gives them; the worker command and the factory's command name the
manager the same way ``parsl-wq workers`` does (``parsl_wq.client.joining``).
"""

import logging
import os
import shlex
import shutil
import socket
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from parsl.providers import LocalProvider

from parsl_wq.client import joining, security
from parsl_wq.client.config import Settings
from parsl_wq.client.factory import FactoryProcess
from parsl_wq.protocol.sandbox import NODE_TMPDIR
from parsl_wq.engine import Features
from parsl_wq.errors import ConfigurationError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Secrets:
    """What workers must have to join: the password file and the TLS files, if the run uses them."""
    password_file: Optional[str]
    tls_files: Optional[Tuple[str, str]]     # (key, certificate)

    @classmethod
    def choose(cls, settings: Settings, engine: Features, log_dir: str) -> "Secrets":
        return cls(password_file(settings, log_dir), tls_files(settings, engine, log_dir))


def password_file(settings: Settings, log_dir: str) -> Optional[str]:
    """The user's password file, else one made for the run (None with ``require_password=False``)."""
    if settings.project_password_file is not None:
        if security.readable_by_others(settings.project_password_file):
            logger.warning("WorkQueueExecutor %s: %s can be read by other users; chmod 600 it",
                           settings.label, settings.project_password_file)
        return os.path.abspath(settings.project_password_file)
    if not settings.require_password:
        logger.warning("WorkQueueExecutor %s: require_password=False: any process that reaches "
                       "the manager's port can join as a worker", settings.label)
        return None
    return security.create_password_file(log_dir)


def tls_files(settings: Settings, engine: Features, log_dir: str) -> Optional[Tuple[str, str]]:
    """The TLS key and certificate: the user's, else made for the run where the engine has TLS."""
    if settings.ssl is False or not engine.tls:
        return None
    if isinstance(settings.ssl, tuple):
        return (os.path.abspath(settings.ssl[0]), os.path.abspath(settings.ssl[1]))
    try:
        return security.create_certificate(log_dir)
    except OSError as e:
        if settings.ssl is True:
            raise ConfigurationError("ssl", True, f"the run's certificate could not be made: {e}") from e
        logger.warning("WorkQueueExecutor %s: workers connect without TLS: %s", settings.label, e)
        return None


def grid_proxy(settings: Settings, secrets: Secrets) -> Optional[str]:
    """The grid proxy file shipped with every task, if any.

    ``x509_proxy=PATH`` ships that file, with a warning when workers connect
    without TLS. By default ``$X509_USER_PROXY`` is shipped only over TLS: a
    proxy is a credential, and without TLS anyone who watches the network
    between the manager and its workers reads it.
    """
    if settings.x509_proxy is False:
        return None
    tls = secrets.tls_files is not None
    if isinstance(settings.x509_proxy, str):
        if not tls:
            logger.warning("WorkQueueExecutor %s: x509_proxy=%s travels to the workers unencrypted (no TLS): anyone "
                           "who can watch the network between the manager and its workers can read the "
                           "credential", settings.label, settings.x509_proxy)
        return os.path.abspath(settings.x509_proxy)
    path = os.environ.get("X509_USER_PROXY")
    if not path:
        return None
    if not os.path.isfile(path):
        logger.warning("WorkQueueExecutor %s: X509_USER_PROXY=%s is not a file; tasks get no proxy",
                       settings.label, path)
        return None
    if not tls:
        logger.warning("WorkQueueExecutor %s: X509_USER_PROXY=%s is not sent to the workers: they connect without "
                       "TLS, and the credential would cross the network in the clear; give "
                       "x509_proxy=%r to send it anyway", settings.label, path, path)
        return None
    return os.path.abspath(path)


def worker_address(settings: Settings) -> str:
    """Where workers connect: ``address``, else 127.0.0.1 for workers on this machine, else this host's name."""
    if settings.address:
        return settings.address
    if isinstance(settings.provider, LocalProvider) or (settings.factory and settings.factory.batch_type == "local"):
        return "127.0.0.1"
    return socket.gethostname()


def worker_command(settings: Settings, secrets: Secrets, port: int, carry_password: bool = False) -> str:
    """The shell command that starts one worker of this run, in a workspace made for it
    (``joining.PRIVATE_WORKDIR``).

    It names the password file by its path here; with ``carry_password`` (what
    a provider's block runs) it carries the password itself and writes it into
    the workspace (``joining.write_password``), for nodes that share no
    filesystem with this one.
    """
    # Work Queue points a task's TMPDIR at its sandbox; keep the node's for shared_fs apps.
    parts = [f'{NODE_TMPDIR}="${{TMPDIR:-/tmp}}"', settings.worker_executable, *joining.WORKDIR_OPTION]
    password = ""
    if carry_password and secrets.password_file:
        with open(secrets.password_file) as f:
            password = joining.write_password(f.read())
        parts += ["--password", joining.PASSWORD_COPY] + joining.worker_options(None, secrets.tls_files is not None)
    else:
        parts += joining.worker_options(secrets.password_file, secrets.tls_files is not None)
    resources = worker_resources(settings.provider, settings.worker_options)
    if resources:
        parts.append(resources)
    if settings.worker_options:
        parts.append(settings.worker_options)
    disk = ""
    if not any(o == "--disk" or o.startswith("--disk=") for o in shlex.split(settings.worker_options or "")):
        disk, option = joining.FIXED_DISK
        parts.append(option)
    parts += joining.manager_arguments(settings.project_name, settings.catalog, worker_address(settings), port)
    return joining.PRIVATE_WORKDIR + password + disk + " ".join(parts)


def private_scripts(provider: Any) -> None:
    """Make the provider's script folder private (0700): the submit scripts of its blocks carry the run's
    password (``worker_command(carry_password=True)``). Parsl makes it in the run directory, with the umask's mode."""
    folder = getattr(provider, "script_dir", None)
    if folder and os.path.isdir(folder) and os.stat(folder).st_uid == os.getuid():
        os.chmod(folder, 0o700)


def worker_resources(provider: Any, worker_options: str) -> str:
    """``--cores``/``--memory`` options from the provider's ``cores_per_node``/``mem_per_node`` (GB), if set
    and not already in ``worker_options``: a worker then offers what the batch system gave its job."""
    options = []
    cores = getattr(provider, "cores_per_node", None)
    memory = getattr(provider, "mem_per_node", None)
    given = shlex.split(worker_options or "")
    if cores and not any(o == "--cores" or o.startswith("--cores=") for o in given):
        options.append(f"--cores {int(cores)}")
    if memory and not any(o == "--memory" or o.startswith("--memory=") for o in given):
        options.append(f"--memory {int(memory * 1024)}")
    return " ".join(options)


def start_factory(settings: Settings, secrets: Secrets, port: int, log_dir: str) -> FactoryProcess:
    """Start ``work_queue_factory`` for ``settings.factory``, with a scratch folder made for it in the run's folder.

    Its workers get what a provider's workers get: the executor's
    ``worker_options`` and ``worker_executable``.
    """
    manager = joining.factory_manager(settings.project_name, worker_address(settings), port)
    scratch = tempfile.mkdtemp(prefix="factory.", dir=log_dir)     # new, 0700: it gets the password file
    options = settings.worker_options.strip()
    binary = None
    if settings.worker_executable != "work_queue_worker":
        binary = shutil.which(settings.worker_executable) or settings.worker_executable
    command = settings.factory.command(manager, scratch, secrets.password_file,
                                       joining.factory_catalog(settings.project_name, settings.catalog),
                                       tls=secrets.tls_files is not None, parent_death=True,
                                       wrapper=os.path.join(log_dir, joining.WORKSPACE_WRAPPER),
                                       executor_worker_options=options, worker_binary=binary)
    factory = FactoryProcess(command, log_dir)
    factory.start()
    logger.info("WorkQueueExecutor %s: work_queue_factory started: %s", settings.label, " ".join(factory.command))
    return factory


def run_description(settings: Settings, secrets: Secrets, run_id: Optional[str], port: int,
                    command: str, engine: Features, log_dir: str) -> Dict[str, Any]:
    """What ``parsl-wq workers`` needs to tell how to join this run (run.json)."""
    return {"label": settings.label, "run_id": run_id, "address": worker_address(settings),
            "address_given": settings.address is not None, "port": port,
            "project_name": settings.project_name, "catalog": settings.catalog,
            "password_file": secrets.password_file, "tls": secrets.tls_files is not None,
            "worker_command": command, "engine": engine.description,
            "workspace_wrapper": os.path.join(log_dir, joining.WORKSPACE_WRAPPER)}
