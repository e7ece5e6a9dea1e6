"""The warm host of a worker: started by its first warm task, it serves the worker's warm tasks until the
worker ends.

The first warm task on a worker forks it from its own Python (``caller``), into
a folder of its own in the worker's workspace, ``pwq_warm.KEY`` (mode 0700),
and a session of its own; ``ps`` shows it as that task's command::

    python pwq_worker.pyz warm ../pwq_warm.KEY

    task's shell ──"PID FD SANDBOX" on a pipe──> supervisor ──socketpair──> host ──fork per call──> app process
    (pwq_call.sh)         (its door: door.py)

1. It opens its door (``door.Door``): two pipes and the file ``door`` in its
   folder, which names them. Each warm task's shell opens the pipes through
   ``/proc``, which no other user may, and sends its pid, the descriptor of
   its output, and its sandbox.
2. It hands each call to an idle host, the one that answered last: a chain of
   apps stays on one host, whose imports are the warmest. While every host is
   busy it forks one more (``host.Host``), so the worker runs as many warm
   calls at once as Work Queue gives it.
3. A host that dies (killed, out of memory) is forgotten, and the shell of the
   call it was serving is woken without an answer, which the manager reports as
   a lost warm process.
4. When the worker process ends, it stops the hosts and their apps, removes
   its door and exits: nothing outlives the worker, and every shell still
   waiting sees the door close.

Work Queue knows nothing of it: it works on any engine, with workers from any
launcher, and needs no option on the worker's command line.
"""

import os
import select
import signal
import socket
import sys
import time

from ..protocol.warm import ANSWERED
from .door import Door
from .host import IDLE, Host
from .processes import die_with_parent, kill_group

LOG = "log"                 # what the supervisor and its hosts write
READY = b"ready\n"          # said on stdout once the door is open
RESTART_PAUSE = 0.5         # seconds between a host that died young and its replacement
STOP_GRACE = 2              # seconds a host has to stop its app on SIGTERM


class Hosted:
    """A host the supervisor forked. A plain class: ``dataclasses`` would add 20 ms to a warm worker's first task."""

    def __init__(self, channel, started):
        self.channel = channel  # where the host gets calls and says IDLE (a socket)
        self.started = started
        self.serving = None     # the pid of the shell whose call it serves; None while idle
        self.last_idle = 0.0


class Supervisor:
    def __init__(self, program, worker_pid):
        self.program = program
        self.worker_pid = worker_pid
        self.folder = os.getcwd()
        self.door = None
        self.hosts = {}         # pid -> Hosted

    def serve(self):
        watch = worker_watch(self.worker_pid)
        self.door = Door(self.folder)
        os.write(sys.stdout.fileno(), READY)
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())      # the caller reads nothing more
        try:
            while True:
                waitables = [self.door] + [h.channel for h in self.hosts.values()]
                readable, _, _ = select.select(waitables + ([watch] if watch is not None else []), [], [], 1.0)
                if watch in readable if watch is not None else not alive(self.worker_pid):
                    return 0
                for pid, hosted in list(self.hosts.items()):
                    if hosted.channel in readable:
                        self.heard(pid, hosted)
                if self.door in readable:
                    for request in self.door.requests():
                        self.dispatch(*request)
        finally:
            self.stop()

    def dispatch(self, caller, fd, sandbox):
        """Hand a call to the idle host that answered last, or to a new host."""
        idle = [(hosted.last_idle, pid) for pid, hosted in self.hosts.items() if hosted.serving is None]
        pid = max(idle)[1] if idle else self.start_host()
        try:
            self.hosts[pid].channel.send(b"%d %d %s" % (caller, fd, sandbox.encode()))
        except OSError as e:    # it has just died
            sys.stderr.write("parsl_wq warm host %d: the call could not be handed over: %s\n" % (pid, e))
            self.forget(pid)
            wake(caller)
            return
        self.hosts[pid].serving = caller

    def start_host(self):
        if any(time.monotonic() - hosted.started < RESTART_PAUSE and hosted.serving is None
               for hosted in self.hosts.values()):
            time.sleep(RESTART_PAUSE)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                self.door.close_in_fork()
                for hosted in self.hosts.values():
                    hosted.channel.close()
                os.setpgid(0, 0)
                die_with_parent()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                Host(self.folder, self.program).serve_supervised(theirs)
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
            hosted.serving, hosted.last_idle = None, time.monotonic()
        else:
            self.forget(pid)

    def forget(self, pid):
        """A host that ended: reap it, and wake the shell of the call it was serving, which gets no answer."""
        hosted = self.hosts.pop(pid)
        hosted.channel.close()
        _, status = os.waitpid(pid, 0)
        sys.stderr.write("parsl_wq warm host %d ended (status %d)\n" % (pid, status))
        if hosted.serving is not None:
            wake(hosted.serving)

    def stop(self):
        if self.door is not None:
            self.door.close()
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


def wake(pid):
    """Wake a task's shell that will get no answer: it prints none, and the manager reports a lost warm process."""
    try:
        os.kill(pid, ANSWERED)
    except OSError:
        pass


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
