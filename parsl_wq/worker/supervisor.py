"""The warm host of a worker: started by its first warm task, it serves the worker's warm tasks until the
worker ends.

The first warm task on a worker forks it from its own Python (``caller``), into
a folder of its own in the worker's workspace, ``pwq_warm.KEY`` (mode 0700),
and a session of its own; ``ps`` shows it as that task's command::

    python pwq_worker.pyz warm ../pwq_warm.KEY

    pwq_call.sh ──TCP──> supervisor ──socketpair: the connection──> host ──fork per call──> app process

1. It binds 127.0.0.1:PORT and writes ``PORT TOKEN`` to ``port`` in its folder
   (``read_port``). Every warm task's ``pwq_call.sh`` reads it, connects, and
   checks that the host greets with the token: nobody else can read it.
2. It accepts each connection, refuses another user's (``from_this_user``),
   and hands it (``SCM_RIGHTS``) to an idle host, the one that answered last:
   a chain of apps stays on one host, whose imports are the warmest. While
   every host is busy it forks one more (``host.Host``), so the worker runs as
   many warm calls at once as Work Queue gives it.
3. A host that dies (killed, out of memory) is forgotten; the call it was
   serving gets no answer, which the manager reports as a lost warm process.
4. When the worker process ends, it stops the hosts and their apps, removes
   ``port`` and exits: nothing outlives the worker.

Work Queue knows nothing of it: it works on any engine, with workers from any
launcher, and needs no option on the worker's command line.
"""

import os
import secrets
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass

from .host import IDLE, Host, from_this_user
from .packed import send_connection
from .processes import die_with_parent, kill_group

PORT = "port"               # the host's port and token, in its folder
LOG = "log"                 # what the supervisor and its hosts write
READY = b"ready\n"          # said on stdout once the port is announced
RESTART_PAUSE = 0.5         # seconds between a host that died young and its replacement
STOP_GRACE = 2              # seconds a host has to stop its app on SIGTERM


@dataclass
class Hosted:
    channel: socket.socket  # where the host gets connections and says IDLE
    started: float
    busy: bool = False
    last_idle: float = 0.0


def read_port(folder):
    """(port, token) that the folder's host wrote, or (None, None)."""
    try:
        with open(os.path.join(folder, PORT)) as f:
            port, token = f.read().split()
        return int(port), token
    except (OSError, ValueError):
        return None, None


class Supervisor:
    def __init__(self, program, worker_pid):
        self.program = program
        self.worker_pid = worker_pid
        self.folder = os.getcwd()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.token = secrets.token_hex(16)
        self.hosts = {}         # pid -> Hosted

    def serve(self):
        watch = worker_watch(self.worker_pid)
        announce(self.folder, self.listener.getsockname()[1], self.token)
        os.write(sys.stdout.fileno(), READY)
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())      # the caller reads nothing more
        try:
            while True:
                waitables = [self.listener] + [h.channel for h in self.hosts.values()]
                readable, _, _ = select.select(waitables + ([watch] if watch is not None else []), [], [], 1.0)
                if watch in readable if watch is not None else not alive(self.worker_pid):
                    return 0
                for pid, hosted in list(self.hosts.items()):
                    if hosted.channel in readable:
                        self.heard(pid, hosted)
                if self.listener in readable:
                    self.dispatch()
        finally:
            self.stop()

    def dispatch(self):
        """Hand a new connection to the idle host that answered last, or to a new host.

        The host is chosen, and forked if need be, before the connection is
        accepted: a host forked while the supervisor holds a connection would
        hold it too, and the task would never see its end.
        """
        idle = [(hosted.last_idle, pid) for pid, hosted in self.hosts.items() if not hosted.busy]
        pid = max(idle)[1] if idle else self.start_host()
        connection, peer = self.listener.accept()
        with connection:
            if not from_this_user(connection):
                sys.stderr.write("parsl_wq warm host: refused a connection from %s: another user's\n" % (peer,))
                return
            try:
                send_connection(self.hosts[pid].channel, b"c", connection)
            except OSError as e:    # it has just died: the task's command sees no answer
                sys.stderr.write("parsl_wq warm host %d: the call could not be handed over: %s\n" % (pid, e))
                self.forget(pid)
                return
            self.hosts[pid].busy = True

    def start_host(self):
        if any(time.monotonic() - hosted.started < RESTART_PAUSE and not hosted.busy
               for hosted in self.hosts.values()):
            time.sleep(RESTART_PAUSE)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                self.listener.close()
                for hosted in self.hosts.values():
                    hosted.channel.close()
                os.setpgid(0, 0)
                die_with_parent()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                Host(self.folder, self.program, self.token).serve_supervised(theirs)
            finally:
                os._exit(1)
        theirs.close()
        self.hosts[pid] = Hosted(ours, time.monotonic())
        return pid

    def heard(self, pid, hosted):
        try:
            said = hosted.channel.recv(64)
        except OSError:
            said = b""
        if said == IDLE:
            hosted.busy, hosted.last_idle = False, time.monotonic()
        else:
            self.forget(pid)

    def forget(self, pid):
        """A host that ended: reap it."""
        self.hosts.pop(pid).channel.close()
        _, status = os.waitpid(pid, 0)
        sys.stderr.write("parsl_wq warm host %d ended (status %d)\n" % (pid, status))

    def stop(self):
        try:
            os.remove(os.path.join(self.folder, PORT))
        except OSError:
            pass
        for pid in self.hosts:
            try:
                os.kill(pid, signal.SIGTERM)    # it stops its app's process group, then exits
            except OSError:
                pass
        deadline = time.monotonic() + STOP_GRACE
        while self.hosts and time.monotonic() < deadline:
            for pid in list(self.hosts):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    del self.hosts[pid]
            time.sleep(0.01)
        for pid in self.hosts:
            kill_group(pid)


def announce(folder, port, token):
    os.umask(0o077)
    path = os.path.join(folder, PORT)
    with open(path + ".tmp", "w") as f:
        f.write("%d %s\n" % (port, token))
    os.replace(path + ".tmp", path)


def worker_watch(pid):
    """A descriptor that becomes readable when the worker process ends (Linux 5.3); None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def main(program, worker_pid):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))     # stop the hosts on the way out
    return Supervisor(program, worker_pid).serve()
