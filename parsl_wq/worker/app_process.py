"""The app process: forked from the warm host ahead of its call (a spare), it runs one task's apps.

While it waits, it copies the pages that an earlier app process wrote
(``pages``). The host hands it an ``AppCall`` on a pipe. It moves into the task's sandbox,
sends its output to ``pwq_output``, sets the task's environment and runs the
runner there on the task's calls file, as a cold task would. While it runs it
reports, on a second pipe, each module it imports and each function file it
loaded (``Reports``), so that the host can have them for the next spares.

Standard library only.
"""

import importlib
import json
import os
import resource
import select
import signal
import sys
import time
from collections import namedtuple

from ..protocol.sandbox import CALLS, EXIT_RUNNER_FAILED, RESULTS
from ..protocol.warm import WarmCall
from . import pages, runner
from .processes import die_with_parent, read_all

OUTPUT = "pwq_output"        # the apps' stdout and stderr, in the task's sandbox

AppCall = namedtuple("AppCall", ["sandbox", "call", "tmpdir"])
AppCall.__doc__ = """What the host tells an app process (JSON on a pipe): the task's sandbox, its ``WarmCall``, and
the task's TMPDIR as Work Queue set it ("" if none)."""


class Spare:
    """An app process forked ahead of its call: it waits on a pipe for the call, then runs it."""

    def __init__(self, pid, call_w, reports, learning):
        self.pid = pid
        self.call_w = call_w
        self.reports = reports
        self.learning = learning    # it reports the pages it wrote, once it has reported its end

    @classmethod
    def fork(cls, functions, inherited, ahead=(), learning=False):
        """Fork a spare that knows ``functions`` and copies the pages of ``ahead`` while it waits (``pages``);
        it closes the host's ``inherited`` sockets."""
        call_r, call_w = os.pipe()
        reports_r, reports_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            for sock in inherited:
                if sock is not None:
                    sock.close()
            os.close(call_w)
            os.close(reports_r)
            app_process(functions, call_r, reports_w, ahead, learning)
        os.close(call_r)
        os.close(reports_w)
        return cls(pid, call_w, Reports(reports_r), learning)

    def discard(self):
        """Stop and reap a spare that will get no call."""
        os.close(self.call_w)
        self.reports.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass

    def start(self, sandbox, call, tmpdir=""):
        message = json.dumps(AppCall(sandbox, call._asdict(), tmpdir)._asdict()).encode()
        try:
            os.write(self.call_w, message)      # the spare is reading it
        finally:
            os.close(self.call_w)


class Reports:
    """What an app process reports while it runs, on a pipe: each module it imports, which is imported here
    too, and each function file it loaded."""

    FUNCTION_LOADED = b"=function-loaded "
    DONE = b"=done "
    CALLED = b"=called "
    PAGES = b"=pages "

    def __init__(self, fd):
        self.fd = fd
        self.partial = b""
        self.functions_loaded = []
        self.done = None    # (exit code, CPU seconds, peak resident KB) that the app process reported as it ended
        self.ran = None     # the seconds it reported it ran, from its call to its end
        self.cpu_before_call = 0.0  # CPU seconds it had used when its call came, which are not the app's
        self.pages = None   # the runs of pages it wrote (``pages.written``), if it was a learning spare

    def fileno(self):
        return self.fd

    def read(self):
        """Act on what the app reported; returns False once the app has closed its end."""
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:     # only after ``drain``: nothing more for now
            return False
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if line.startswith(self.FUNCTION_LOADED):
                self.functions_loaded.append(line[len(self.FUNCTION_LOADED):].decode())
                continue
            if line.startswith(self.DONE):
                try:
                    code, cpu, peak, ran = line[len(self.DONE):].split()
                    self.done, self.ran = (int(code), float(cpu), int(peak)), float(ran)
                except ValueError:      # not the app process's own line: wait for its exit
                    pass
                continue
            if line.startswith(self.CALLED):
                try:
                    self.cpu_before_call = float(line[len(self.CALLED):])
                except ValueError:
                    pass
                continue
            if line.startswith(self.PAGES):
                try:
                    self.pages = pages.decode(line[len(self.PAGES):])
                except ValueError:
                    self.pages = []
                continue
            try:
                importlib.import_module(line.decode())
            except BaseException:      # a module the host cannot import stays the app's own
                pass
        return bool(chunk)

    def drain(self):
        """Act on what is left once the app has ended: a fast app may end before anything was read."""
        os.set_blocking(self.fd, False)     # a process the app started may still hold the other end
        while self.read():
            pass

    def wait_for_pages(self, seconds):
        """The runs of pages a learning app process sends after its end (None if it sends none in time)."""
        os.set_blocking(self.fd, False)
        deadline = time.monotonic() + seconds
        while self.pages is None and time.monotonic() < deadline:
            readable, _, _ = select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))
            if readable and not self.read():
                break
        return self.pages

    def close(self):
        os.close(self.fd)


def app_process(functions, call_r, reports_w, ahead=(), learning=False):
    """The forked app process: wait for the call, run the runner in the task's sandbox as a cold task would.

    Never returns. Without a call (the host is stopping), it exits.
    """
    status = EXIT_RUNNER_FAILED
    mappings = None
    called = None
    try:
        os.setpgid(0, 0)        # the host stops the app and everything it started together
        die_with_parent()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)      # the host's own handler is not the app's
        if learning:
            mappings = pages.writable_mappings()    # the host's, as forked: what a later spare has too
        pages.copy_ahead(ahead, call_r)
        message = read_all(call_r)
        if not message:
            os._exit(0)
        called = time.monotonic()
        # The CPU time spent so far (copying pages ahead) is not the app's: the host takes it off what it reports.
        report_line(reports_w, b"%s%r" % (Reports.CALLED, cpu_seconds()))
        app_call = AppCall(**json.loads(message))
        sandbox, call = app_call.sandbox, WarmCall(**app_call.call)
        os.chdir(sandbox)
        sys.path.insert(0, sandbox)     # as for a cold task, whose sys.path[0] is its sandbox
        report = reporter(reports_w)
        redirect_output(os.path.join(sandbox, OUTPUT))
        set_environment(sandbox, call, app_call.tmpdir)
        known = set(functions)
        status = runner.main(CALLS, RESULTS, call.calls_id, functions)
        for name in set(functions) - known:
            report(Reports.FUNCTION_LOADED + name.encode())
    except BaseException:
        import traceback
        traceback.print_exc()
    runner.flush_output()
    report_done(reports_w, status, called)
    if learning:        # after the end is reported: off the task's path
        written = pages.written(mappings) if mappings and status == 0 else []
        report_line(reports_w, Reports.PAGES + pages.encode(written))
    os._exit(status)


def report_done(fd, status, called=None):
    """Tell the host the exit code, what this process used and how long it ran since its call came (``called``,
    ``time.monotonic``), before it exits: the host answers the task without waiting for the kernel to take a
    large address space down (a millisecond, with pandas loaded). Where the line does not fit in the pipe, the
    host waits for the exit instead."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    ran = time.monotonic() - called if called is not None else 0.0
    line = b"%s%d %r %d %r\n" % (Reports.DONE, status, cpu_seconds(), max(me.ru_maxrss, children.ru_maxrss), ran)
    try:
        os.write(fd, line)
    except OSError:
        pass


def cpu_seconds():
    """CPU seconds this process and its reaped children used so far."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def reporter(fd):
    """``report(line)`` for the host, and every module this process imports from now on reported as it starts.

    Best effort: a line that does not fit in the pipe is left out, so the app
    never waits for the host. A module left out is imported by the next app
    again, and reported then.
    """
    os.set_blocking(fd, False)

    def report(line):
        report_line(fd, line)

    def hook(event, args):
        if event == "import" and args[0] not in sys.modules:
            report(args[0].encode())
    sys.addaudithook(hook)
    return report


def report_line(fd, line):
    """Best effort: a line that does not fit in the pipe at once is cut short, and the host ignores it."""
    try:
        os.write(fd, line + b"\n")
    except OSError:
        pass


def redirect_output(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(fd, stream.fileno())
    os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def set_environment(sandbox, call, task_tmpdir=""):
    """The task's variables, and its temporary folder, as a cold task has them.

    The executor's ``env`` is the warm host's own already: its Python started
    with it (``caller``), so PYTHONPATH, LD_LIBRARY_PATH and the like act as
    they do in a cold task. The temporary folder is the task's TMPDIR
    (``task_tmpdir``), which both engines make for each task in its sandbox,
    as a cold task's; with ``shared_fs=True`` the node's. Where the task has
    none, one is made in the sandbox.
    """
    os.environ.update(call.env or {})
    if call.node_tmpdir:
        tmpdir = os.environ.get(call.node_tmpdir) or "/tmp"
    elif task_tmpdir and os.path.isdir(task_tmpdir):
        tmpdir = task_tmpdir
    else:
        tmpdir = os.path.join(sandbox, "pwq_tmp")
        os.makedirs(tmpdir, exist_ok=True)
    for name in ("TMPDIR", "TMP", "TEMP"):
        os.environ[name] = tmpdir
    if "tempfile" in sys.modules:   # it keeps the folder it chose first, maybe in the warm process
        sys.modules["tempfile"].tempdir = None
