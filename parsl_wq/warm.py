"""Worker side of warm execution: a Work Queue coprocess that runs apps in forks of a warm Python.

Started by ``work_queue_worker --coprocess LAUNCHER`` (cctools 7.x), once per
coprocess slot (one per core by default), in the worker's workspace::

    worker ──(stdin/stdout pipes)── supervisor ──fork──> host ──fork per app──> app process
                                      binds the port,      serves calls,        waits for its call, runs
                                      restarts the host    learns imports       the runner in the sandbox

1. The supervisor binds 127.0.0.1:PORT and announces ``{"name", "port"}`` to the
   worker (a length line, then JSON, as Work Queue's coprocess protocol asks).
2. For each task, a worker process connects and sends ``run TASK_ID SIZE`` and
   the task's call as JSON (``parsl_wq.tasks`` builds it).
3. The host has forked the app process ahead of the call (a spare, so the
   fork is off the call's path) and hands it the call. The app process moves
   into ``t.TASK_ID``, sends its output to ``pwq_output``, sets the task's
   environment and runs the runner (``parsl_wq.runner``) there on the task's
   calls file: one app, or a bundle of apps run one after the other, reading
   and writing the same files as in a cold task. The host waits for it, measures
   it, and stops it past a declared memory or time limit, or when the worker
   gives up the call.
4. The host answers ``{"exit_code", "output", "usage", "exceeded"}``; an app
   killed by signal N gives exit code 128 + N, as in cold tasks.
5. While an app runs, the host imports each module the app imports, as the
   app reports it (an audit hook writes each name to a pipe): on a worker with
   a spare core both imports run at once. After a call whose apps loaded
   their functions without trouble, the host loads them too. Then it forks the next
   spare, which has both.

Isolation: each call runs in a fork of the host, so what its apps change (module
globals, ``os.environ``, ``sys.path``, the working directory) ends with it. The
apps of one call (a bundle) share the fork; the runner resets the environment,
``sys.path`` and the working directory between them.
What carries over is what the host imported: a module's import-time work runs
once per host, not once per app.

Packed environments (``pack=True``): a call that names one is handed, with
the worker's connection, to a host of its own started with that environment's
Python (unpacked once per worker, as cold tasks do, by ``pwq_unpack.sh``). That
host serves every call of the environment as above and answers the worker
itself; it is started again if it has died. The supervisor and the first host
still need a Python 3 on the node (any, standard library only)::

    host ──socketpair: the worker's connection──> packed host (ENV/bin/python) ──fork per app──> ...

A host that dies (killed, out of memory) is replaced by the supervisor; the
call it was serving gets no answer, which the manager reports as a lost warm
process. Work Queue 7.17 never restarts a coprocess itself. Each process here
is killed when its parent dies (``PR_SET_PDEATHSIG``), and the supervisor also
stops its host when the worker closes its stdin or is gone: nothing outlives
the worker.

Standard library only: this runs with any Python 3 on the worker.
"""

import array
import faulthandler
import importlib
import importlib.util
import json
import os
import select
import signal
import socket
import sys
import time

NAME = "parsl_wq"            # the coprocess name tasks ask for
FUNCTION = "run"             # the one function the coprocess serves
OUTPUT = "pwq_output"        # the app's stdout and stderr, in its sandbox
OUTPUT_TAIL = 4000           # characters of output sent back
RESTART_PAUSE = 0.5          # seconds between a host's death and its replacement
RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner.py")
PR_SET_PDEATHSIG = 1
PACKED = "--packed"          # the command-line flag of a packed environment's host
HANDED_MAX = 1 << 20         # the largest call handed to a packed environment's host


# ---------------------------------------------------------------- supervisor

def main():
    if sys.argv[1:2] == [PACKED]:
        return serve_packed(int(sys.argv[2]))
    die_with_parent()
    parent = os.getppid()
    listener = socket.create_server(("127.0.0.1", 0))
    announce(listener.getsockname()[1])
    host = None
    while True:
        if host is None:
            host = start_host(listener)
        readable, _, _ = select.select([sys.stdin.fileno()], [], [], 1.0)
        if (readable and not os.read(sys.stdin.fileno(), 1)) or os.getppid() != parent:     # the worker is gone
            stop_host(host)
            return 0
        ended, status = os.waitpid(host, os.WNOHANG)
        if ended:
            sys.stderr.write("parsl_wq warm host %d ended (status %d); starting another\n" % (host, status))
            host = None
            time.sleep(RESTART_PAUSE)


def announce(port):
    message = json.dumps({"name": NAME, "port": port})
    sys.stdout.write("%d\n%s" % (len(message), message))
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())       # the worker reads nothing more from this pipe
    os.close(devnull)


def start_host(listener):
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setpgid(0, 0)
        die_with_parent()
        prepare_host()
        Host(listener, os.getcwd()).serve_forever()
    finally:
        os._exit(1)


def prepare_host():
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(RUNNER):
        del sys.path[0]     # this package's folder: its modules must not shadow the apps'
    faulthandler.enable()   # an app that crashes in C code leaves its Python stack in its output


def stop_host(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


# ---------------------------------------------------------------------- host

class Host:
    """Serves calls one at a time, each in an app process forked ahead of time (a spare)."""

    def __init__(self, listener, workspace):
        self.listener = listener
        self.workspace = workspace
        self.runner = load_runner()
        self.functions = {}     # function file name -> function, loaded after an app used it
        self.spare = None
        self.packed = PackedHosts(workspace, self.runner)
        self.channel = None     # a packed environment's host: where its calls come from

    def serve_forever(self):
        while True:
            if self.spare is None:      # forked while no call waits: off the next call's path
                self.spare = Spare.fork(self)
            connection, _ = self.listener.accept()
            with connection:
                try:
                    self.serve(connection)
                except OSError as e:    # the worker's side went away: nothing to answer
                    sys.stderr.write("parsl_wq warm host: %s\n" % e)

    def serve(self, connection):
        stream = connection.makefile("rb")
        while True:
            header = stream.readline()
            if not header:
                return
            _, task_id, size = header.split()
            call = json.loads(stream.read(int(size)))["fn_kwargs"]
            if call.get("environment"):
                answer = self.packed.hand(connection, int(task_id), call)
                if answer is None:      # the environment's host answers on this connection
                    return
            else:
                answer = self.run(int(task_id), call, connection)
            send_answer(connection, answer)

    def serve_handed(self, channel):
        """A packed environment's host: serve the calls that the first host hands over, with their connections."""
        self.channel = channel
        while True:
            if self.spare is None:
                self.spare = Spare.fork(self)
            message, fds, _, _ = socket.recv_fds(channel, HANDED_MAX, 1)    # Python 3.9: as the submit side's
            if not message:
                return
            with socket.socket(fileno=fds[0]) as connection:
                handed = json.loads(message)
                try:
                    send_answer(connection, self.run(handed["task_id"], handed["call"], connection))
                except OSError as e:
                    sys.stderr.write("parsl_wq warm host: %s\n" % e)

    def run(self, task_id, call, connection):
        sandbox = os.path.join(self.workspace, "t.%d" % task_id)
        spare, self.spare = self.spare or Spare.fork(self), None
        started = time.time()
        spare.start(sandbox, call)
        try:
            status, rusage, measured, exceeded = watch(spare.pid, connection, call.get("limits") or {},
                                                       call.get("interval") or 1, spare.reports)
        finally:
            spare.reports.close()
        wall = max(time.time() - started, 1e-6)
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if code == 0 and not exceeded:
            for function_name in spare.reports.functions_loaded:
                self.load_function(sandbox, function_name)
        cpu = rusage.ru_utime + rusage.ru_stime
        measured.update(wall_time=wall, cpu_time=cpu, cores=cpu / wall,
                        memory=max(measured.get("memory", 0), rusage.ru_maxrss / 1024))
        return {"exit_code": code, "output": tail(os.path.join(sandbox, OUTPUT)),
                "usage": measured, "exceeded": exceeded}

    def load_function(self, sandbox, function_name):
        """Keep a function that an app process loaded without trouble, for the next apps' forks."""
        if function_name not in self.functions:
            try:
                self.functions[function_name] = self.runner.load_function(os.path.join(sandbox, function_name))
            except BaseException:
                pass


def send_answer(connection, answer):
    data = json.dumps(answer).encode()
    connection.sendall(b"%d\n" % len(data) + data)


class PackedHosts:
    """The hosts of packed environments, one per environment, each started on the first call that names it."""

    def __init__(self, workspace, runner):
        self.workspace = workspace
        self.runner = runner
        self.hosts = {}     # environment name -> (its process, our end of its socketpair)

    def hand(self, connection, task_id, call):
        """Pass the call and its connection to its environment's host; None once passed, else the answer."""
        environment = call["environment"]
        name = environment["name"]
        if name not in self.hosts or self.hosts[name][0].poll() is not None:
            sandbox = os.path.join(self.workspace, "t.%d" % task_id)
            folder, output = unpack(sandbox, environment)
            if folder is None:
                return {"exit_code": self.runner.EXIT_UNPACK_FAILED, "usage": {}, "exceeded": {},
                        "output": output + "\n" + self.runner.UNPACK_FAILED + "\n"}
            self.stop(name)
            try:
                self.hosts[name] = start_packed_host(folder, self.workspace)
            except OSError as e:
                return {"exit_code": self.runner.EXIT_RUNNER_FAILED, "usage": {}, "exceeded": {},
                        "output": "parsl_wq warm host: the Python of environment %s did not start: %s\n"
                                  % (name, e)}
        message = json.dumps({"task_id": task_id, "call": call}).encode()
        try:
            self.hosts[name][1].sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                     array.array("i", [connection.fileno()]))])
        except OSError as e:
            self.stop(name)
            return {"exit_code": self.runner.EXIT_RUNNER_FAILED, "usage": {}, "exceeded": {},
                    "output": "parsl_wq warm host: the call could not be handed to the warm process of "
                              "environment %s: %s\n" % (name, e)}
        return None

    def stop(self, name):
        process, channel = self.hosts.pop(name, (None, None))
        if process is not None:
            channel.close()
            process.kill()
            process.wait()


def unpack(sandbox, environment):
    """Unpack a packed environment as a cold task does; its folder, or None and what the unpacker printed."""
    import subprocess       # here, not at the top: the supervisor starts faster without it
    done = subprocess.run(["sh", "pwq_unpack.sh", environment["tarball"], environment["name"]], cwd=sandbox,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        return None, "\n".join(lines)
    return lines[-1], ""


def start_packed_host(folder, workspace):
    """Start a host with the Python of the environment unpacked in ``folder``; it gets calls on a socketpair."""
    import subprocess
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = dict(os.environ, PATH=os.path.join(folder, "bin") + os.pathsep + os.environ.get("PATH", ""))
    process = subprocess.Popen([os.path.join(folder, "bin", "python"), os.path.abspath(__file__), PACKED,
                                str(theirs.fileno())], pass_fds=[theirs.fileno()], cwd=workspace, env=env,
                               stdin=subprocess.DEVNULL)
    theirs.close()
    return process, ours


def serve_packed(fd):
    """Main of a packed environment's host (started by ``start_packed_host``)."""
    die_with_parent()
    prepare_host()
    channel = socket.socket(fileno=fd)
    Host(None, os.getcwd()).serve_handed(channel)
    return 0


class Spare:
    """An app process forked ahead of its call: it waits on a pipe for the call, then runs it."""

    def __init__(self, pid, call_w, reports):
        self.pid = pid
        self.call_w = call_w
        self.reports = reports

    @classmethod
    def fork(cls, host):
        call_r, call_w = os.pipe()
        reports_r, reports_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            for inherited in (host.listener, host.channel):
                if inherited is not None:
                    inherited.close()
            os.close(call_w)
            os.close(reports_r)
            app_process(host.runner, host.functions, call_r, reports_w)
        os.close(call_r)
        os.close(reports_w)
        return cls(pid, call_w, Reports(reports_r))

    def start(self, sandbox, call):
        message = json.dumps({"sandbox": sandbox, "call": call}).encode()
        try:
            os.write(self.call_w, message)      # the spare is reading it
        finally:
            os.close(self.call_w)


class Reports:
    """What an app process reports while it runs, on a pipe: each module it imports, which is imported here
    too, and each function file it loaded."""

    FUNCTION_LOADED = b"=function-loaded "

    def __init__(self, fd):
        self.fd = fd
        self.partial = b""
        self.functions_loaded = []

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

    def close(self):
        os.close(self.fd)


def watch(pid, connection, limits, interval, reports):
    """Wait for the app process; learn its imports; stop it past its limits or when the worker gives up the call.

    Returns its wait status, its rusage, what was measured while it ran, and
    the limits it went past.
    """
    measured, exceeded = {}, {}
    pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    waitables = [connection, reports] + ([pidfd] if pidfd is not None else [])
    timeout = interval if limits or pidfd is None else None
    deadline = time.time() + limits["wall_time"] if limits.get("wall_time") else None
    next_sample = 0.0
    try:
        while True:
            ended, status, rusage = os.wait4(pid, os.WNOHANG)
            if ended:
                reports.drain()
                return status, rusage, measured, exceeded
            readable, _, _ = select.select(waitables, [], [], min(timeout, 0.05) if pidfd is None else timeout)
            if connection in readable:      # the worker cancelled the task or is stopping
                kill_group(pid)
                waitables.remove(connection)
            if reports in readable and not reports.read():
                waitables.remove(reports)
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


def kill_group(pid):
    """Kill the app process and what it started; one just forked may not lead its group yet."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def group_memory(pgid):
    """Resident memory in MB of every process in the process group ``pgid``."""
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:      # fields after the command: state, ppid, pgrp, ..., rss is the 22nd
            total += int(fields[21]) * page_mb
    return total


def tail(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - OUTPUT_TAIL))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def read_answer(output):
    """The host's answer in a warm task's output, or None if there is none (the host died, or gave up)."""
    try:
        answer = json.loads(output)
        answer["exit_code"] = int(answer["exit_code"])
        answer["output"] = str(answer["output"])
        answer["usage"] = {str(k): float(v) for k, v in answer["usage"].items()}
        answer["exceeded"] = {str(k): float(v) for k, v in answer["exceeded"].items()}
        return answer
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


# --------------------------------------------------------------- app process

def app_process(runner, functions, call_r, reports_w):
    """The forked app process: wait for the call, run the runner in the task's sandbox as a cold task would.

    Never returns. Without a call (the host is stopping), it exits.
    """
    status = runner.EXIT_RUNNER_FAILED
    try:
        os.setpgid(0, 0)        # the host stops the app and everything it started together
        die_with_parent()
        message = read_all(call_r)
        if not message:
            os._exit(0)
        message = json.loads(message)
        sandbox, call = message["sandbox"], message["call"]
        os.chdir(sandbox)
        sys.path.insert(0, sandbox)     # as for ``python pwq_runner.py`` in a cold task
        report = reporter(reports_w)
        redirect_output(os.path.join(sandbox, OUTPUT))
        set_environment(sandbox, call)
        known = set(functions)
        status = runner.run(runner.load_pickle(runner.CALLS), runner.RESULTS, functions)
        for name in set(functions) - known:
            report(Reports.FUNCTION_LOADED + name.encode())
    except BaseException:
        import traceback
        traceback.print_exc()
    runner.finish(status)


def read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def reporter(fd):
    """``report(line)`` for the host, and every module this process imports from now on reported as it starts.

    Best effort: a line that does not fit in the pipe is left out, so the app
    never waits for the host. A module left out is imported by the next app
    again, and reported then.
    """
    os.set_blocking(fd, False)

    def report(line):
        try:
            os.write(fd, line + b"\n")
        except OSError:
            pass

    def hook(event, args):
        if event == "import" and args[0] not in sys.modules:
            report(args[0].encode())
    sys.addaudithook(hook)
    return report


def die_with_parent():
    """Be killed when the parent process ends (Linux), so that no process outlives its worker."""
    if LIBC is not None:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def load_libc():
    try:
        import ctypes
        return ctypes.CDLL(None)
    except (ImportError, OSError):
        return None


def redirect_output(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(fd, stream.fileno())
    os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def set_environment(sandbox, call):
    """The task's variables, and a temporary folder as a cold task has one."""
    os.environ.update(call.get("env") or {})
    if call.get("node_tmpdir"):
        tmpdir = os.environ.get(call["node_tmpdir"]) or "/tmp"
    else:
        tmpdir = os.path.join(sandbox, "pwq_tmp")
        os.makedirs(tmpdir, exist_ok=True)
    for name in ("TMPDIR", "TMP", "TEMP"):
        os.environ[name] = tmpdir
    if "tempfile" in sys.modules:   # it keeps the folder it chose first, maybe in the warm process
        sys.modules["tempfile"].tempdir = None


def load_runner():
    spec = importlib.util.spec_from_file_location("pwq_runner", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LIBC = load_libc()

if __name__ == "__main__":
    sys.exit(main())
