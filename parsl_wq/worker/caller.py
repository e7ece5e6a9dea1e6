"""A warm task where no warm host answers: start the worker's warm host, then make the call.

Run by the warm task's command when ``pwq_call.sh`` fails (exit code 3)
(no host yet, one that died, or a node without bash)::

    python -S pwq_worker.pyz call FOLDER        (in the task's sandbox)

1. Make the host's folder in the worker's workspace (``FOLDER``, mode 0700) or
   check that the one there is this user's own and private.
2. Under a lock on the folder, look for a host that answers its port; if none
   does, start one (``supervisor``) in a session of its own, with this Python
   and this environment: the task's shell has run the executor's
   ``init_command``, and the task has the executor's ``env``, so the host's
   Python starts as a cold task's would.
3. Make the call as ``pwq_call.sh`` does, and print the answer.

Standard library only.
"""

import fcntl
import os
import shutil
import socket
import stat
import subprocess
import sys

from ..protocol.sandbox import CALLS_ID, NODE_TMPDIR, WORKER_PROGRAM
from ..protocol.warm import CALL_VARIABLE
from .processes import tail
from .supervisor import LOG, PORT, READY, read_port

CALL_TIMEOUT = 10           # seconds a host may take to greet
# Variables Work Queue sets for the one task that starts the host: the host's apps get their own.
TASK_VARIABLES = ("CORES", "MEMORY", "DISK", "GPUS", "OMP_NUM_THREADS", "CCTOOLS_DISK_ALLOC", CALLS_ID,
                  CALL_VARIABLE, "TMPDIR", "TMP", "TEMP", "OLDPWD")


class NoHost(Exception):
    """The warm host could not be started, or did not answer."""


def main(folder):
    try:
        make_private_folder(folder)
        with locked(folder):
            connection = connect(folder)
            if connection is None:
                start(folder)
                connection = connect(folder)
            if connection is None:
                raise NoHost("the warm host started in %s does not answer (its log: %s)"
                             % (os.path.abspath(folder), tail(os.path.join(folder, LOG), 2000).strip()))
        with connection:
            answer = call(connection)
    except (NoHost, OSError) as e:
        sys.stdout.write("parsl_wq: no warm host on this worker: %s\n" % e)
        return 1
    sys.stdout.write(answer)
    return 0


def make_private_folder(folder):
    """The host's folder, new with mode 0700, or an existing one that is ours, private and not a link."""
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise NoHost("%s is not a private folder of this user's (owner %d, mode %o): another process made it"
                     % (os.path.abspath(folder), info.st_uid, stat.S_IMODE(info.st_mode)))


class locked:
    """An exclusive lock on the host's folder: one task starts the host, the others wait for it."""

    def __init__(self, folder):
        self.fd = os.open(os.path.join(folder, "lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)

    def __enter__(self):
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        os.close(self.fd)


def connect(folder):
    """A connection to the host that announced itself in ``folder``, once it greeted with its token; else None."""
    port, token = read_port(folder)
    if port is None:
        return None
    try:
        connection = socket.create_connection(("127.0.0.1", port), timeout=CALL_TIMEOUT)
    except OSError:
        return None
    try:
        with connection.makefile("rb") as stream:
            greeting = stream.readline().decode().strip()
    except OSError:
        greeting = None
    if greeting != token:
        connection.close()
        return None
    connection.settimeout(None)
    return connection


def start(folder):
    """Start the host: the worker program copied into its folder, run in a session of its own; wait until it
    listens (it says so on its stdout, then closes it)."""
    program = os.path.join(folder, WORKER_PROGRAM)
    shutil.copyfile(WORKER_PROGRAM, program + ".tmp")       # the sandbox goes when this task ends
    os.replace(program + ".tmp", program)
    try:
        os.remove(os.path.join(folder, PORT))
    except FileNotFoundError:
        pass
    env = {k: v for k, v in os.environ.items() if k not in TASK_VARIABLES}
    if os.environ.get(NODE_TMPDIR):
        env["TMPDIR"] = os.environ[NODE_TMPDIR]
    with open(os.path.join(folder, LOG), "ab") as log:
        host = subprocess.Popen([sys.executable, WORKER_PROGRAM, "warm", str(os.getppid())], cwd=folder, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                start_new_session=True)
    with host.stdout:
        ready = host.stdout.readline()
    if ready != READY:
        raise NoHost("the warm host did not start (status %s): %s"
                     % (host.poll(), tail(os.path.join(folder, LOG), 2000).strip()))


def call(connection):
    """Send the call as ``pwq_call.sh`` does; the host's answer line."""
    connection.sendall(("%s\n%s\n" % (os.getcwd(), os.environ.get(CALL_VARIABLE, ""))).encode())
    chunks = []
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(chunk)

