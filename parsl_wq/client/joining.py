"""How a worker joins a run: the arguments that name the manager and prove the worker may join.

Used for the workers the executor starts (``WorkQueueExecutor.worker_command``,
the factory) and printed by ``parsl-wq workers`` for workers started elsewhere,
so both say the same.
"""

import os
import shlex
from typing import List, Optional

# Where the factory reports when the run has no catalog of its own. work_queue_factory reports its status to a
# catalog on every cycle and passes it to its workers (-C), whether or not the run has a project name
# (cctools 7.17.1, work_queue_factory.c), and its default is the public catalog: this is loopback's discard
# port: nothing leaves the node.
NO_CATALOG = "127.0.0.1:9"

# A workspace of the worker's own: Work Queue's default, /tmp/worker-UID-PID, is made with the umask's mode (other
# users read the tasks' files) and taken as it is if it already exists, whoever made it (cctools 7.17.1,
# work_queue_worker.c). The shell that starts the worker makes a new folder, mode 0700 (mktemp -d), gives it to
# the worker (WORKDIR_OPTION) and removes it when the worker ends.
MAKE_WORKDIR = 'PWQ_WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/parsl_wq-worker.XXXXXXXX") || exit 1'
PRIVATE_WORKDIR = f"{MAKE_WORKDIR}; trap 'rm -rf \"$PWQ_WORKDIR\"' EXIT; trap 'exit 143' HUP INT TERM; "
WORKDIR_OPTION = ["--workdir", '"$PWQ_WORKDIR"']
# A fixed --disk: half the free space of the workspace's disk when the worker starts. cctools 7.x measures a
# worker's disk as its free space, again and again, and gives a task that declares 1 of 2 cores half of it
# ("proportional-resources"): once the sandboxes take a few MB, two such tasks no longer fit at once, and
# 1-core apps on a 2-core worker run one at a time (tests/test_resources.py). A fixed value does not move.
FIXED_DISK = ('PWQ_DISK=$(df -Pm "$PWQ_WORKDIR" 2>/dev/null | awk \'NR == 2 {print int($4 / 2)}\'); ',
              '${PWQ_DISK:+--disk=$PWQ_DISK}')
# The same for the factory's workers, whose command the factory writes: a wrapper it ships with each worker
# (--wrapper, --wrapper-input), which runs the worker command it is given in a workspace of its own, with the
# fixed --disk unless the command has one (WorkerFactory.disk, worker_options, HTCondor's slot size). The
# factory signals the job's process alone (-T local: SIGQUIT, then SIGKILL; SIGTERM when the factory dies), so
# the wrapper passes that on to the worker, waits for it and then removes the folder.
WORKSPACE_WRAPPER = "pwq_private_workspace.sh"
WRAPPER_SCRIPT = f"""#!/bin/sh
{MAKE_WORKDIR}
PWQ_DISK=
case " $* " in *" --disk="* | *" --disk "*) ;; *) {FIXED_DISK[0]};; esac
trap 'kill -TERM "$worker" 2>/dev/null' HUP INT QUIT TERM
"$@" {" ".join(WORKDIR_OPTION)} {FIXED_DISK[1]} &
worker=$!
status=0
while kill -0 "$worker" 2>/dev/null; do wait "$worker"; status=$?; done
rm -rf "$PWQ_WORKDIR"
exit $status
"""


# A provider's workers get the password in their command's text, which the provider writes into the block's
# submit script (its script_dir, made private by the executor) and runs from there: the node needs no copy of
# the password file at the submit side's path, and the secret is in no process's arguments (printf is the
# shell's own). The shell writes it into the worker's private workspace.
PASSWORD_COPY = '"$PWQ_WORKDIR/pwq_password"'


def write_password(secret: str) -> str:
    """Shell steps that write ``secret``, as it is, to PASSWORD_COPY (mode 0600)."""
    return f"(umask 077; printf '%s' {shlex.quote(secret)} > {PASSWORD_COPY}) || exit 1; "


def worker_options(password_file: Optional[str], tls: bool) -> List[str]:
    """``work_queue_worker`` options, shell-quoted: the password file, TLS."""
    options = []
    if password_file:
        options += ["--password", shlex.quote(password_file)]
    if tls:
        options.append("--ssl")
    return options


def manager_arguments(project_name: Optional[str], catalog: Optional[str], address: str, port: int) -> List[str]:
    """The manager, shell-quoted, for ``work_queue_worker`` and cctools' submit scripts: ``[-C CATALOG] -M PROJECT``
    when the run has a project name, else ``ADDRESS PORT``."""
    if project_name:
        return (["-C", shlex.quote(catalog)] if catalog else []) + ["-M", shlex.quote(project_name)]
    return [address, str(port)]


def factory_catalog(project_name: Optional[str], catalog: Optional[str]) -> Optional[str]:
    """The catalog for ``work_queue_factory``: the run's; for a run that names a project without a catalog,
    None (the factory's default, as the manager's: ``CATALOG_HOST``, else the public catalog); else ``NO_CATALOG``."""
    if catalog or project_name:
        return catalog
    return NO_CATALOG


def write_workspace_wrapper(folder: str) -> str:
    """Write ``WORKSPACE_WRAPPER`` into ``folder``; returns its path."""
    path = os.path.join(folder, WORKSPACE_WRAPPER)
    with open(path, "w") as f:
        f.write(WRAPPER_SCRIPT)
    os.chmod(path, 0o700)
    return path


def factory_manager(project_name: Optional[str], address: str, port: int) -> List[str]:
    """The manager for ``work_queue_factory`` (its catalog is an option of its own), as command-line words."""
    return ["-M", project_name] if project_name else [address, str(port)]
