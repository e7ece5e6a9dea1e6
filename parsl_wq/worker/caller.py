"""A warm task where no warm host answers: become the worker's warm host, then make the call.

Run by the warm task's command where ``pwq_call.sh`` finds no host that
answers (no host yet, one that died)::

    python pwq_worker.pyz warm FOLDER        (in the task's sandbox)

1. Make the host's folder in the worker's workspace (``FOLDER``, mode 0700) or
   check that the one there is this user's own and private.
2. Under a lock on the folder, look for a supervisor that holds its door
   open; if none does, fork one (``start``): the fork leaves the task's session and sandbox
   for the folder, with a copy of the worker program there, and serves as the
   ``supervisor``. It is this Python, started as a cold task's is: the task's
   shell has run the executor's ``init_command``, and the task has the
   executor's ``env``; the variables Work Queue set for this one task are
   taken out of its environment.
3. Make the call as ``pwq_call.sh`` does: the host writes its answer to this
   process's output.

Standard library only.
"""

import fcntl
import os
import re
import select
import signal
import stat
import sys

from ..protocol.sandbox import CALLS_ID, NODE_TMPDIR, WORKER_PROGRAM
from ..protocol.warm import ANSWER_FILE, ANSWERED, CALL_FILE, CALL_VARIABLE
from . import supervisor
from .door import DOOR, door_open
from .processes import tail
from .supervisor import LOG, READY
# Variables Work Queue sets for the one task that starts the host: the host's apps get their own.
TASK_VARIABLES = ("CORES", "MEMORY", "DISK", "GPUS", "OMP_NUM_THREADS", "CCTOOLS_DISK_ALLOC", CALLS_ID,
                  CALL_VARIABLE, "TMPDIR", "TMP", "TEMP", "OLDPWD")


class NoHost(Exception):
    """The warm host could not be started, or did not answer."""


def main(folder):
    try:
        make_private_folder(folder)
        with locked(folder) as lock:
            door = door_open(folder)
            if door is None:
                start(folder, lock)
                door = door_open(folder)
            if door is None:
                raise NoHost("the warm host started in %s does not answer (its log: %s)"
                             % (os.path.abspath(folder), tail(os.path.join(folder, LOG), 2000).strip()))
        call(door)
    except (NoHost, OSError) as e:
        sys.stdout.write("parsl_wq: no warm host on this worker: %s\n" % e)
        return 1
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
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def copy_file(source, target):
    """``shutil.copyfile``, without the 5 ms its imports add to a warm worker's first task."""
    with open(source, "rb") as f, open(target, "wb") as out:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            out.write(chunk)


def start(folder, lock):
    """Fork the host, with a copy of the worker program in ``folder`` (the sandbox goes when this task ends);
    wait until its door is open (it says so on a pipe, then closes it)."""
    program = os.path.join(os.path.abspath(folder), WORKER_PROGRAM)
    copy_file(WORKER_PROGRAM, program + ".tmp")
    os.replace(program + ".tmp", program)
    try:
        os.remove(os.path.join(folder, DOOR))
    except FileNotFoundError:
        pass
    worker_pid, this_program = running_worker(folder), os.path.abspath(WORKER_PROGRAM)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(ready_r)
            lock.close()        # the other tasks wait for the host's door, not for the host
            become_host(folder, ready_w)
            move_program(this_program, program)
            status = supervisor.main(program, worker_pid)
        except SystemExit as e:     # SIGTERM: the supervisor stopped its hosts on the way out
            status = e.code if isinstance(e.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()       # into the folder's log, once become_host has run
        finally:
            os._exit(status)
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        said = ready.readline()
    if said != READY:
        ended, status = os.waitpid(pid, os.WNOHANG)
        raise NoHost("the warm host did not start (%s): %s"
                     % ("exit status %d" % os.waitstatus_to_exitcode(status) if ended else "it did not say ready",
                        tail(os.path.join(folder, LOG), 2000).strip()))


def running_worker(folder):
    """The pid of the worker that runs this task, which the host is to outlive by no more than a second.

    Both engines name the workspace (where ``folder`` is) ``worker-UID-PID``
    after the worker. If the worker died while this task started, the task's
    shell went to init, or to a subreaper: the worker is no longer among this
    process's ancestors, and a host started now would watch the wrong process.
    """
    named = re.fullmatch(r"worker-\d+-(\d+)", os.path.basename(os.path.dirname(os.path.abspath(folder))))
    if named is None or not os.path.exists("/proc/self/stat"):
        # A workspace of another shape, or no /proc to follow: the parent is the worker, while it lives.
        if os.getppid() == 1:
            raise NoHost("the worker that ran this task is gone")
        return os.getppid()
    worker, pid = int(named.group(1)), os.getppid()
    while pid > 1 and pid != worker:
        pid = parent_of(pid)
    if pid != worker:
        raise NoHost("the worker that ran this task (pid %d) is gone" % worker)
    return worker


def parent_of(pid):
    """The parent of process ``pid`` (0 once it is gone, or where /proc cannot tell)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def become_host(folder, ready_w):
    """In the fork: a session of its own in ``folder``, without this task's variables or descriptors, its
    output to the folder's log, and ``ready_w`` as its stdout, where the supervisor says its door is open."""
    os.setsid()
    os.chdir(folder)
    for name in TASK_VARIABLES:
        os.environ.pop(name, None)
    if os.environ.get(NODE_TMPDIR):
        os.environ["TMPDIR"] = os.environ[NODE_TMPDIR]
    log = os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    devnull = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((devnull, 0), (ready_w, 1), (log, 2)):
        os.dup2(fd, target)
        os.close(fd)
    # Nothing else the task inherited: Debian's 9.9 worker leaves its connection to the manager open in its
    # tasks, and a host holding it would keep a worker that reconnects connected twice.
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))


def move_program(old, new):
    """Read the worker program's modules from ``new`` from now on, not from ``old`` (in the task's sandbox): the
    packages' search paths move to it, and ``old`` leaves ``sys.path``, where its names must not shadow the
    apps'. Modules already loaded keep their code."""
    prefix = old + os.sep
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__path__", None)
        if path is not None and name.split(".")[0] == __name__.split(".")[0]:
            module.__path__ = [new + p[len(old):] if p.startswith(prefix) else p for p in path]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p) != old]


def call(door):
    """Make the call as ``pwq_call.sh`` does, through the ``door`` (pid, calls, block) of a supervisor that runs:
    the host writes its answer to this process's output (or to ANSWER_FILE, printed here) and wakes it."""
    pid, calls, block = door
    with open(CALL_FILE, "w") as f:
        f.write("%s\n%s\n" % (os.environ.get(CALL_VARIABLE, ""), os.environ.get("TMPDIR", "")))
    woken_r, woken_w = os.pipe()
    os.set_blocking(woken_w, False)
    signal.set_wakeup_fd(woken_w)
    signal.signal(ANSWERED, lambda *_: None)
    blocked = os.open("/proc/%d/fd/%d" % (pid, block), os.O_RDONLY)     # ends with the supervisor
    sys.stdout.flush()      # nothing of this process's may follow the answer in its output
    with open("/proc/%d/fd/%d" % (pid, calls), "wb", buffering=0) as door_calls:
        door_calls.write(b"%d %d %s\n" % (os.getpid(), sys.stdout.fileno(), os.getcwd().encode()))
    select.select([woken_r, blocked], [], [])
    try:
        with open(ANSWER_FILE) as f:
            sys.stdout.write(f.readline())
    except FileNotFoundError:
        pass
