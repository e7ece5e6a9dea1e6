"""Worker side of warm execution: a Work Queue coprocess that runs apps in forks of a warm Python.

Started by ``work_queue_worker --coprocess LAUNCHER`` (cctools 7.x), once per
coprocess slot (one per core by default), in the worker's workspace::

    worker ──(stdin/stdout pipes)── supervisor ──fork──> host ──fork per app──> app process
                                      binds the port,      serves calls,        runs the runner
                                      restarts the host    learns imports       in the task's sandbox

1. The supervisor binds 127.0.0.1:PORT and announces ``{"name", "port"}`` to the
   worker (a length line, then JSON, as Work Queue's coprocess protocol asks).
2. For each task, a worker process connects and sends ``run TASK_ID SIZE`` and
   the task's call as JSON (``parsl_wq.warm_tasks`` builds it).
3. The host forks. The app process moves into ``t.TASK_ID``, sends its output
   to ``pwq_output``, sets the task's environment and runs the runner
   (``parsl_wq.runner``) there: the app reads and writes the same files as a
   cold task. The host waits for it, measures it, and stops it past a
   declared memory or time limit, or when the worker gives up the call.
4. The host answers ``{"exit_code", "output", "usage", "exceeded"}``; an app
   killed by signal N gives exit code 128 + N, as in cold tasks.
5. While an app runs, the host imports each module the app imports, as the
   app reports it (an audit hook writes each name to a pipe): on a worker with
   a spare core both imports run at once. After an app that succeeded, the host
   also loads its function. The next app's fork has both.

Isolation: each app runs in a fork of the host, so what an app changes (module
globals, ``os.environ``, ``sys.path``, its working directory) ends with it.
What carries over is what the host imported: a module's import-time work runs
once per host, not once per app.

A host that dies (killed, out of memory) is replaced by the supervisor; the
call it was serving gets no answer, which the manager reports as a lost warm
process. Work Queue 7.17 never restarts a coprocess itself. The worker closes
the supervisor's stdin when it exits: the supervisor then stops its host and
the app process with it.

Standard library only: this runs with any Python 3 on the worker.
"""

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
LEARNED = "pwq_learned.json"  # what an app imported, for its host to import too
OUTPUT_TAIL = 4000           # characters of output sent back
RESTART_PAUSE = 0.5          # seconds between a host's death and its replacement
RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner.py")
PR_SET_PDEATHSIG = 1


# ---------------------------------------------------------------- supervisor

def main():
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
        if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(RUNNER):
            del sys.path[0]     # this package's folder: its modules must not shadow the apps'
        faulthandler.enable()   # an app that crashes in C code leaves its Python stack in its output
        Host(listener, os.getcwd()).serve_forever()
    finally:
        os._exit(1)


def stop_host(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


# ---------------------------------------------------------------------- host

class Host:
    def __init__(self, listener, workspace):
        self.listener = listener
        self.workspace = workspace
        self.runner = load_runner()
        self.functions = {}     # function file name -> function, loaded after an app used it

    def serve_forever(self):
        while True:
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
            answer = json.dumps(self.run(int(task_id), call, connection)).encode()
            connection.sendall(b"%d\n" % len(answer) + answer)

    def run(self, task_id, call, connection):
        sandbox = os.path.join(self.workspace, "t.%d" % task_id)
        imports_r, imports_w = os.pipe()
        started = time.time()
        pid = os.fork()
        if pid == 0:
            self.listener.close()
            connection.close()
            os.close(imports_r)
            run_app(self.runner, self.functions, sandbox, call, imports_w)
        os.close(imports_w)
        try:
            status, rusage, measured, exceeded = watch(pid, connection, call.get("limits") or {},
                                                       call.get("interval") or 1, Imports(imports_r))
        finally:
            os.close(imports_r)
        wall = max(time.time() - started, 1e-6)
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if code == 0 and not exceeded:
            self.learn(sandbox, call["function"])
        cpu = rusage.ru_utime + rusage.ru_stime
        measured.update(wall_time=wall, cpu_time=cpu, cores=cpu / wall,
                        memory=max(measured.get("memory", 0), rusage.ru_maxrss / 1024))
        return {"exit_code": code, "output": tail(os.path.join(sandbox, OUTPUT)),
                "usage": measured, "exceeded": exceeded}

    def learn(self, sandbox, function_name):
        """Import what the app imported and load its function, for the next apps' forks."""
        try:
            with open(os.path.join(sandbox, LEARNED)) as f:
                learned = json.load(f)
        except (OSError, ValueError):
            return
        for name in learned.get("modules", ()):
            try:
                importlib.import_module(name)
            except BaseException:
                pass
        if function_name not in self.functions and learned.get("function_loaded"):
            try:
                self.functions[function_name] = self.runner.load_function(os.path.join(sandbox, function_name))
            except BaseException:
                pass


class Imports:
    """The names of the modules an app process imports, as it reports them on a pipe; imported here too."""

    def __init__(self, fd):
        self.fd = fd
        self.partial = b""

    def fileno(self):
        return self.fd

    def import_reported(self):
        """Import what the app reported; returns False once the app has closed its end."""
        chunk = os.read(self.fd, 65536)
        names = (self.partial + chunk).split(b"\n")
        self.partial = names.pop()
        for name in names:
            try:
                importlib.import_module(name.decode())
            except BaseException:      # a module the host cannot import stays the app's own
                pass
        return bool(chunk)


def watch(pid, connection, limits, interval, imports):
    """Wait for the app process; learn its imports; stop it past its limits or when the worker gives up the call.

    Returns its wait status, its rusage, what was measured while it ran, and
    the limits it went past.
    """
    measured, exceeded = {}, {}
    pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    waitables = [connection, imports] + ([pidfd] if pidfd is not None else [])
    timeout = interval if limits or pidfd is None else None
    deadline = time.time() + limits["wall_time"] if limits.get("wall_time") else None
    try:
        while True:
            ended, status, rusage = os.wait4(pid, os.WNOHANG)
            if ended:
                return status, rusage, measured, exceeded
            readable, _, _ = select.select(waitables, [], [], min(timeout, 0.05) if pidfd is None else timeout)
            if connection in readable:      # the worker cancelled the task or is stopping
                kill_group(pid)
                waitables.remove(connection)
            if imports in readable and not imports.import_reported():
                waitables.remove(imports)
            if limits.get("memory"):
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
    try:
        os.killpg(pid, signal.SIGKILL)
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

def run_app(runner, functions, sandbox, call, imports_w):
    """In the forked app process: run the runner in the task's sandbox, as a cold task would. Never returns."""
    status = runner.EXIT_RUNNER_FAILED
    try:
        os.setpgid(0, 0)        # the host stops the app and everything it started together
        die_with_parent()
        os.chdir(sandbox)
        sys.path.insert(0, sandbox)     # as for ``python pwq_runner.py`` in a cold task
        report_imports(imports_w)
        redirect_output(os.path.join(sandbox, OUTPUT))
        set_environment(sandbox, call)
        place_files(call)
        before, known = set(sys.modules), call["function"] in functions
        status = runner.main(["pwq_runner.py", call["function"], "pwq_task.pkl", "pwq_result.pkl"],
                             functions=functions)
        if status == runner.EXIT_OK:
            write_learned(sandbox, before, not known and call["function"] in functions)
    except BaseException:
        import traceback
        traceback.print_exc()
    runner.finish(status)


def report_imports(fd):
    """Write the name of each module this process imports to ``fd``, for the host to import too.

    Best effort: a name that does not fit in the pipe is left out (the host
    learns it after the app from ``LEARNED``), so the app never waits for it.
    """
    os.set_blocking(fd, False)

    def hook(event, args):
        if event == "import" and args[0] not in sys.modules:
            try:
                os.write(fd, args[0].encode() + b"\n")
            except OSError:
                pass
    sys.addaudithook(hook)


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


def place_files(call):
    """What a cold task's shell does first: create the output folders, move files to append to into place."""
    for folder in call.get("output_dirs") or ():
        os.makedirs(folder, exist_ok=True)
    for sent, final in call.get("renames") or ():
        os.replace(sent, final)


def write_learned(sandbox, before, function_loaded):
    """Record the modules this app imported from outside its sandbox, in import order."""
    modules = []
    for name, module in list(sys.modules.items()):
        if name in before or name == "__main__":
            continue
        path = getattr(module, "__file__", None) or ""
        if path and os.path.abspath(path).startswith(sandbox + os.sep):
            continue    # shipped with this task: gone with its sandbox
        modules.append(name)
    if not modules and not function_loaded:
        return
    try:
        with open(os.path.join(sandbox, LEARNED), "w") as f:
            json.dump({"modules": modules, "function_loaded": function_loaded}, f)
    except OSError:
        pass


def load_runner():
    spec = importlib.util.spec_from_file_location("pwq_runner", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LIBC = load_libc()

if __name__ == "__main__":
    sys.exit(main())
