"""A warm host: serves warm calls one at a time, each in an app process forked from a warm Python.

The supervisor (``supervisor.py``) forks hosts in the host folder of the
worker's workspace, as many as the worker runs warm calls at once::

    task's shell ──its pid and sandbox──> supervisor ──the call──> host ──fork per call──> app process
    (pwq_call.sh, door.py)                hands it over        serves calls,       waits for its call, runs
                                          (supervisor.py)      learns imports      the runner in the sandbox
                                                               (this module)       (app_process.py)

1. A task's shell sends its pid and sandbox through the supervisor's door;
   the supervisor hands them to this host, which reads the task's
   ``WarmCall`` (``parsl_wq.protocol.warm``) that the shell wrote in the
   sandbox (``door.Call``).
2. The host has forked the app process ahead of the call (a spare, so the
   fork is off the call's path; while it waits, it has the kernel copy the
   pages that an earlier app process wrote, ``pages.py``) and hands it the call. The app process runs
   the task's calls file in its sandbox: one app, or a bundle of apps run one
   after the other, reading and writing the same files as in a cold task.
   The host waits for it, measures it, and stops it past a declared memory or
   time limit, or when the task's command ends first (``watch``: Work Queue
   cancelled the task, or the worker is stopping).
3. The host answers a ``WarmAnswer``, one line, in the task's output, and
   wakes the task's shell; an app killed by signal N
   gives exit code 128 + N, as in cold tasks. The app process reports its
   exit code and usage as it ends (``app_process.report_done``), so the
   answer does not wait for its exit (a millisecond with pandas loaded); it
   is reaped once the answer is sent.
4. While an app runs, the host imports each module the app imports, as the
   app reports it: on a worker with a spare core both imports run at once.
   After a call whose apps loaded their functions without trouble, the host
   loads them too. Then it forks the next spare, which has both.
5. Where the last app ran longer than the last fork took, the next spare is
   forked while the app runs, on another core: the fork then holds no answer
   back and is off the busy moments after it, and the spare has the whole app
   to copy its pages. A spare forked before the host loaded more (step 4, or
   the pages learned) is replaced once the call is answered.

Isolation: each call runs in a fork of the host, so what its apps change (module
globals, ``os.environ``, ``sys.path``, the working directory) ends with it. The
apps of one call (a bundle) share the fork; the runner resets the environment,
``sys.path`` and the working directory between them. What carries over is what
the host imported: a module's import-time work runs once per host, not once per app.

Packed environments (``pack=True``): a call that names one is handed to a
host of its own, started with that environment's Python (``packed.py``)::

    host ──socketpair: the call──> packed host (ENV/bin/python) ──fork per app──> ...

Each process here is killed when its parent dies (``PR_SET_PDEATHSIG``).
Standard library only: this runs with the worker's Python, 3.7 or later (``protocol.warm.HOST_PYTHON``).
"""

import faulthandler
import os
import select
import signal
import sys
import time
from collections import namedtuple

from ..protocol.warm import WarmAnswer, WarmCall
from . import pages, runner
from .app_process import OUTPUT, Spare
from .door import Call, parse_request
from .packed import PackedHosts, receive_handed
from .processes import die_with_parent, folder_size, group_memory, kill_group, tail

OUTPUT_TAIL = 4000           # characters of output sent back
IDLE = b"-"                  # what a host tells whoever hands it calls, once it has answered one
PAGES_TIMEOUT = 0.5          # seconds a learning app process has, after its answer, to say what pages it wrote


class Host:
    """Serves calls one at a time, each in an app process forked ahead of time (a spare)."""

    def __init__(self, folder, program):
        faulthandler.enable()   # an app that crashes in C code leaves its Python stack in its output
        self.functions = {}     # function file name -> function, loaded after an app used it
        self.spare = None
        self.spare_warmth = None  # what the host had loaded when it forked the spare (``warmth``)
        self.fork_seconds = 0.0   # how long the last fork of a spare took
        self.app_seconds = 0.0    # how long the last call's app process ran
        self.running = None     # the app process of the call being served
        self.exiting = None     # the Spare of the call just answered, until its process is reaped
        self.calls = 0          # calls served; the spares of the 1st, 2nd, 4th, ... learn what pages they write
        self.ahead = []         # the runs of pages that the last learning spare wrote (``pages``)
        self.packed = PackedHosts(folder, program)
        self.copies_ahead = pages.prepare() is not None     # else no spare learns what pages it wrote
        self.channel = None     # where calls come from: the supervisor, or (packed) the first host
        signal.signal(signal.SIGTERM, self.stop)

    def stop(self, *_):
        """SIGTERM: the worker is gone; stop the app that runs, and with it what it started."""
        if self.running is not None:
            kill_group(self.running)
        os._exit(0)

    def fork_spare(self):
        """The next call's app process, forked now; the ``pages`` it copies ahead are the last ones learned."""
        number = self.calls + 1
        self.spare_warmth = self.warmth()
        started = time.perf_counter()
        spare = Spare.fork(self.functions, (self.channel,), self.ahead,
                           learning=self.copies_ahead and number & (number - 1) == 0)
        self.fork_seconds = time.perf_counter() - started
        return spare

    def warmth(self):
        """What a spare takes from the host when it is forked: its modules, its functions, the pages to copy."""
        return len(sys.modules), len(self.functions), id(self.ahead)

    def renew_stale_spare(self):
        """Replace a spare forked before the host loaded more (an app's imports or function, pages learned):
        the next call gets the warmest fork. The spare is forked at the loop's top, before the next call comes."""
        if self.spare is not None and self.spare_warmth != self.warmth():
            self.spare.discard()
            self.spare = None

    def serve_supervised(self, channel):
        """Serve the calls that the supervisor hands over ("PID FD SANDBOX"), one at a time; say IDLE after each."""
        self.channel = channel
        while True:
            if self.spare is None:      # forked while no call waits: off the next call's path
                self.spare = self.fork_spare()
            try:
                request = parse_request(channel.recv(65536))
            except OSError:
                request = None
            if request is None:         # the supervisor is gone (it sends only well-formed requests)
                return
            try:
                self.serve(Call(*request))
            except OSError as e:        # the task's shell has ended already
                sys.stderr.write("parsl_wq warm host: %s\n" % e)
            channel.send(IDLE)
            self.reap()     # after IDLE: a call that comes meanwhile waits for this host, not for a cold one
            self.renew_stale_spare()

    def serve(self, caller):
        """One call: read it in the task's sandbox, run it, answer. A call that cannot be read or run gets no
        answer: its shell is woken all the same (``Call.close``), and the manager reports a lost warm process."""
        try:
            try:
                call = caller.read()
            except (OSError, ValueError, TypeError) as e:
                sys.stderr.write("parsl_wq warm host: refused a call in %r: %s\n" % (caller.sandbox[:200], e))
                return
            if call.environment:
                answer = self.packed.hand(caller, call)
                if answer is None:      # the environment's host answers and wakes the shell, then says IDLE
                    caller.woken = self.packed.wait(call.environment["name"])
                    return
            else:
                answer = self.run(caller.sandbox, call, caller)
            caller.answer(answer)
        finally:
            caller.close()

    def serve_handed(self, channel):
        """A packed environment's host: serve the calls that the first host hands over."""
        self.channel = channel
        while True:
            if self.spare is None:
                self.spare = self.fork_spare()
            handed = receive_handed(channel)
            if handed is None:
                return
            try:
                caller = Call(handed.pid, handed.fd, handed.sandbox, handed.tmpdir)
            except OSError as e:
                sys.stderr.write("parsl_wq warm host: %s\n" % e)
            else:
                try:
                    caller.answer(self.run(handed.sandbox, WarmCall(**handed.call), caller))
                finally:
                    caller.close()
            channel.send(IDLE)
            self.reap()
            self.renew_stale_spare()

    def run(self, sandbox, call, caller):
        spare, self.spare = self.spare or self.fork_spare(), None
        self.calls += 1
        started = time.time()
        self.running = spare.pid
        spare.start(sandbox, call, caller.tmpdir)
        if self.app_seconds > self.fork_seconds:
            # The next call's spare, forked while this app runs (on another core) where the last app outlasted
            # the last fork: the fork does not hold the answer back, it is off the busy moments after the
            # answer, and the spare has until its call to copy its pages ahead.
            self.spare = self.fork_spare()
        try:
            ended = watch(spare.pid, caller, call.limits or {}, call.interval or 1, spare.reports)
        except BaseException:
            spare.reports.close()
            raise
        finally:
            self.running = None
        wall = max(time.time() - started, 1e-6)
        # As the app process counted it: the host's own clock would count the early fork of the next spare too.
        self.app_seconds = spare.reports.ran or 0.0
        if ended.reaped:
            self.learned(spare, spare.reports.pages)
            spare.reports.close()
        else:
            self.exiting = spare
        code, measured, exceeded = ended.code, ended.measured, ended.exceeded
        if code == 0 and not exceeded:
            for function_name in spare.reports.functions_loaded:
                self.load_function(sandbox, function_name)
        measured.update(wall_time=wall, cpu_time=ended.cpu, cores=ended.cpu / wall,
                        memory=max(measured.get("memory", 0), ended.peak_kb / 1024))
        if call.measure_disk:
            measured["disk"] = folder_size(sandbox)
        return WarmAnswer(code, tail(os.path.join(sandbox, OUTPUT), OUTPUT_TAIL), measured, exceeded)

    def reap(self):
        """Once the task has its answer: reap the app process that reported its end before it exited (a
        learning one once it has said what pages it wrote)."""
        if self.exiting is not None:
            spare, self.exiting = self.exiting, None
            if not spare.learning and self.spare is None:
                self.spare = self.fork_spare()      # while the last app process's memory is still being freed
            try:
                if spare.learning:
                    self.learned(spare, spare.reports.wait_for_pages(PAGES_TIMEOUT))
            finally:
                reap_exiting(spare.pid)
                spare.reports.close()

    def learned(self, spare, runs):
        if spare.learning and runs:     # none: the app failed, or its pages could not be read; keep the last
            self.ahead = runs

    def load_function(self, sandbox, function_name):
        """Keep a function that an app process loaded without trouble, for the next apps' forks."""
        if function_name not in self.functions:
            try:
                self.functions[function_name] = runner.load_function(os.path.join(sandbox, function_name))
            except BaseException:
                pass


def reap_exiting(pid):
    """Reap an app process that reported its end: it is exiting already (an app that wrote the line itself and
    went on is stopped here)."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


Ended = namedtuple("Ended", ["code", "cpu", "peak_kb", "measured", "exceeded", "reaped"])
Ended.__doc__ = """How an app process ended: its exit code (128 + N for a death by signal N), its CPU seconds and
peak resident KB (``getrusage``), what was measured while it ran, the limits it went past, and whether it
was reaped (else it reported its end, and is still exiting)."""


def watch(pid, caller, limits, interval, reports):
    """Wait for the app process to end, or to report its end; learn its imports; stop it past its limits or when
    the task's shell ends (``caller``). Returns how it ``Ended``."""
    measured, exceeded = {}, {}
    pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    shell = caller.fileno()     # readable once the task's shell has ended; None: ask ``caller.ended()``
    shell_ended = False
    waitables = [reports] + [fd for fd in (shell, pidfd) if fd is not None]
    polling = pidfd is None or shell is None
    timeout = interval if limits or polling else None
    deadline = time.time() + limits["wall_time"] if limits.get("wall_time") else None
    next_sample = 0.0
    try:
        while True:
            ended, status, rusage = os.wait4(pid, os.WNOHANG)
            if ended:
                reports.drain()
                code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                cpu = rusage.ru_utime + rusage.ru_stime - reports.cpu_before_call
                return Ended(code, max(cpu, 0.0), rusage.ru_maxrss, measured, exceeded, True)
            readable, _, _ = select.select(waitables, [], [], min(timeout, 0.05) if polling else timeout)
            if not shell_ended and (shell in readable if shell is not None else caller.ended()):
                shell_ended = True      # Work Queue cancelled the task
                kill_group(pid)
                if shell is not None:
                    waitables.remove(shell)
            if reports in readable and not reports.read():
                waitables.remove(reports)
            if reports.done is not None and not exceeded:
                code, cpu, peak = reports.done
                return Ended(code, max(cpu - reports.cpu_before_call, 0.0), peak, measured, exceeded, False)
            if limits.get("memory") and time.time() >= next_sample:    # not at each import the app reports
                next_sample = time.time() + interval
                memory = group_memory(pid)
                measured["memory"] = max(measured.get("memory", 0), memory)
                if memory > limits["memory"]:
                    exceeded["memory"] = limits["memory"]
                    kill_group(pid)
            if deadline is not None and time.time() > deadline:
                exceeded["wall_time"] = limits["wall_time"]
                kill_group(pid)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def serve_handed(fd, program):
    """Main of a packed environment's host (started by ``PackedHosts.start``): calls come on socket ``fd``."""
    import socket
    die_with_parent()
    Host(os.getcwd(), program).serve_handed(socket.socket(fileno=fd))
    return 0
