"""Worker-side runner: run Parsl app invocations inside a Work Queue task.

In the task's sandbox, where Work Queue placed the files
(``parsl_wq.protocol.sandbox`` names them and gives their formats)::

    python pwq_worker.pyz run pwq_calls.pkl pwq_results.pkl

runs each ``Call`` of the calls file in turn in this Python (one app, or a
bundle), and writes each app's outcome to the results file as it ends. A warm
host runs ``run`` in a fork of itself instead (``parsl_wq.worker.app_process``).

Whatever an app raises (any BaseException, SystemExit included) is written as
its outcome, and so is a failure to load its function or its arguments, or to
pickle its result.

In a bundle, an app that runs past the calls file's ``overdue`` seconds (the
manager sets them from what its category's apps take) ends the bundle: a
SIGALRM handler says so in the output and exits (``EXIT_OVERDUE``). The apps
that ended have their outcomes in the results file; the manager runs the
overdue app again alone, with no such limit, and bundles the apps after it
again. So an app that hangs holds up only itself. The runner exits with ``os._exit`` once the results are
written, so threads an app left running cannot keep the task alive. Its exit
codes are ``parsl_wq.protocol.sandbox.EXIT_*``.

This file runs on every task, so it imports only what every task needs:
no Parsl, and cloudpickle only when a payload or a result requires it.
Python start-up is most of the cost of a short task.
"""

import os
import sys
from _pickle import dumps, loads
from time import perf_counter

from ..protocol.sandbox import (CANNOT_WRITE_RESULT, EXIT_CANNOT_WRITE_RESULT, EXIT_NOT_OURS, EXIT_OK, EXIT_OVERDUE,
                                NOT_OURS, OVERDUE, PROXY, calls_of, frame)

TRACEBACK_HEAD = 10     # frames kept from the start of a very deep traceback
TRACEBACK_TAIL = 30     # and from its end
MAX_CAUSES = 8          # links of a __cause__ chain sent back


def main(calls_file, results_file, identity, functions=None):
    """Run the calls file's apps if it is the one with id ``identity``; else refuse it, nothing run."""
    loaded = load_calls(calls_file, identity)
    if loaded is None:
        sys.stderr.write("%s: %s is not the calls file of task %s: a sandbox left by a killed worker? "
                         "Nothing ran.\n" % (NOT_OURS, calls_file, identity))
        return EXIT_NOT_OURS
    calls, overdue = loaded
    return run(calls, results_file, {} if functions is None else functions, overdue)


def run(calls, results_file, functions, overdue=None):
    """Run each call in turn and write its outcome to ``results_file``; returns the exit code.

    Each call starts as it would alone: in the sandbox, with the task's
    environment variables and ``sys.path``, whatever the calls before it did to
    them. Modules and their globals stay as the calls before left them, as in
    an HTEX worker. ``functions`` maps function file names to functions already
    loaded (warm execution keeps it across tasks); a function loaded here is added.
    """
    results_file = os.path.abspath(results_file)    # an app may change the working directory
    try:
        fd = os.open(results_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as e:
        sys.stderr.write("%s %s: %s\n" % (CANNOT_WRITE_RESULT, results_file, e))
        return EXIT_CANNOT_WRITE_RESULT
    if os.environ.get("X509_USER_PROXY") == PROXY:     # a name in the sandbox: valid wherever the app goes
        os.environ["X509_USER_PROXY"] = os.path.abspath(PROXY)
    sandbox, environ, path = os.getcwd(), dict(os.environ), list(sys.path)
    watch = Overdue(overdue, len(calls)) if overdue and len(calls) > 1 else None
    try:
        for position, call in enumerate(calls):
            os.chdir(sandbox)
            if os.environ != environ:
                os.environ.clear()
                os.environ.update(environ)
            sys.path[:] = path
            if watch is not None:
                watch.position = position
            outcome, seconds = run_call(call, functions, watch)
            try:
                write_all(fd, frame(call.id, serialize_outcome(outcome), seconds))
            except OSError as e:
                sys.stderr.write("%s %s: %s\n" % (CANNOT_WRITE_RESULT, results_file, e))
                return EXIT_CANNOT_WRITE_RESULT
    finally:
        if watch is not None:
            watch.stop()
        os.close(fd)
    return EXIT_OK


def run_call(call, functions, watch=None):
    """The outcome of one call (its value, or a description of what it raised), and the seconds its function ran.

    ``watch`` (an ``Overdue``), if given, is armed while the function runs.
    """
    try:
        place_files(call)
        function = functions.get(call.function)
        if function is None:
            function = functions[call.function] = load_function(call.function)
        args, kwargs = loads(call.arguments)
    except BaseException as e:
        return failure(e), 0.0
    started = perf_counter()
    try:
        if watch is not None:
            watch.arm(call.id)
        try:
            outcome = {"ok": True, "value": function(*args, **kwargs)}
        finally:
            if watch is not None:
                watch.disarm()
    except BaseException as e:
        outcome = failure(e)
    return outcome, perf_counter() - started


class Overdue:
    """Ends a bundle whose app has run ``seconds`` (SIGALRM): the app cannot catch it, and the rest leave.

    The handler is set again before each app, so an app that set its own does
    not take it from the next one. An app that blocks signals, or that holds
    the interpreter in C code, is ended only when it lets the handler run.
    """

    def __init__(self, seconds, apps):
        import signal
        self.signal = signal
        self.seconds = seconds
        self.apps = apps
        self.position = 0
        self.app = None

    def arm(self, app):
        self.app = app
        self.signal.signal(self.signal.SIGALRM, self.expired)
        self.signal.setitimer(self.signal.ITIMER_REAL, self.seconds)

    def disarm(self):
        self.signal.setitimer(self.signal.ITIMER_REAL, 0)

    def stop(self):
        self.disarm()
        self.signal.signal(self.signal.SIGALRM, self.signal.SIG_DFL)

    def expired(self, signum, frame):
        sys.stderr.write("%s: app %s ran past %g s (app %d of %d); it runs again alone, and the %d after it "
                         "in other tasks\n" % (OVERDUE, self.app, self.seconds, self.position + 1, self.apps,
                                                self.apps - self.position - 1))
        finish(EXIT_OVERDUE)


def place_files(call):
    """Create the folders of the call's output files (Work Queue creates those of inputs only), and move
    files it appends to into place (Work Queue refuses one name as both input and output)."""
    for folder in call.output_dirs:
        os.makedirs(folder, exist_ok=True)
    for sent, final in call.renames:
        os.replace(sent, final)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def load_calls(path, identity):
    """``(calls, overdue)`` of the calls file (``calls_of``), if it is the one with id ``identity``; else None."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return calls_of(data, identity, loads)


def load_function(path):
    with open(path, "rb") as f:
        data = f.read()
    tag, body = data[:1], data[1:]
    if tag == b"P":
        return loads(body)
    if tag == b"F":
        return build_function(loads(body))
    raise ValueError(f"{path} is not a parsl_wq function file (tag {tag!r})")


def build_function(info):
    """Rebuild a plain function from its code, globals, defaults and closure."""
    import builtins
    import marshal

    if tuple(info["python"]) != sys.version_info[:2]:
        raise RuntimeError(
            "this function was serialized by Python %d.%d but the worker runs Python %d.%d; "
            "run workers with the submit side's Python version" % (tuple(info["python"]) + sys.version_info[:2]))
    namespace = {"__builtins__": builtins, "__name__": info["module"]}
    for name, module in info["modules"].items():
        __import__(module)
        namespace[name] = sys.modules[module]
    namespace.update(info["globals"])
    closure = None
    if info["closure"] is not None:
        closure = tuple(make_cell(value) for value in info["closure"])
    function = type(main)(marshal.loads(info["code"]), namespace, info["name"], info["defaults"], closure)
    function.__kwdefaults__ = info["kwdefaults"]
    function.__qualname__ = info["qualname"]
    for name in info["self_names"]:
        namespace[name] = function
    return function


def make_cell(value):
    return (lambda: value).__closure__[0]


def failure(exc):
    """Describe an exception and its __cause__ chain so the submit side can re-raise it.

    Describing must not fail: an exception whose ``str()`` raises, or whose
    traceback is thousands of frames deep (a RecursionError), still arrives.
    """
    chain = []
    while exc is not None and len(chain) <= MAX_CAUSES:
        chain.append(describe(exc))
        exc = exc.__cause__
    for outer, inner in zip(chain, chain[1:]):
        outer["cause"] = inner
    return chain[0]


def describe(exc):
    frames = kept_frames(exc.__traceback__)
    return {
        "ok": False,
        "exception": pickled_exception(exc),
        "type_name": "%s.%s" % (type(exc).__module__, type(exc).__qualname__),
        "message": safe_str(exc),
        "traceback": traceback_dict(frames),
        "traceback_text": traceback_text(exc, frames),
        "frames_omitted": sum(f for f in frames if isinstance(f, int)),
        "cause": None,
    }


def safe_str(exc):
    try:
        return str(exc)
    except BaseException as e:
        return "<str() of the exception raised %s>" % type(e).__name__


def pickled_exception(exc):
    """The exception alone (class, arguments, attributes), pickled on its own.

    The empty dispatch table skips reducers registered with copyreg, such as
    tblib's (Parsl installs them): those would pickle the whole traceback, which
    fails for a deep one, and lose attributes like ``SystemExit.code``. On its
    own, an exception that cannot be rebuilt on the submit side leaves the rest
    of the description readable.
    """
    import io
    from _pickle import Pickler

    try:
        buffer = io.BytesIO()
        pickler = Pickler(buffer, protocol=5)
        pickler.dispatch_table = {}
        pickler.dump(exc)
        return buffer.getvalue()
    except BaseException:
        pass
    try:
        import cloudpickle
        return cloudpickle.dumps(exc.with_traceback(None), protocol=5)
    except BaseException:
        return None


def kept_frames(tb):
    """The traceback's entries, without the middle of a very deep one."""
    frames = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    if len(frames) > TRACEBACK_HEAD + TRACEBACK_TAIL:
        omitted = len(frames) - TRACEBACK_HEAD - TRACEBACK_TAIL
        frames = frames[:TRACEBACK_HEAD] + [omitted] + frames[-TRACEBACK_TAIL:]
    return frames


def traceback_dict(frames):
    """The kept frames in tblib's dict form, built without importing tblib."""
    node = None
    for tb in reversed(frames):
        if isinstance(tb, int):
            continue
        code = tb.tb_frame.f_code
        node = {
            "tb_frame": {
                "f_globals": {"__name__": tb.tb_frame.f_globals.get("__name__"),
                              "__file__": tb.tb_frame.f_globals.get("__file__")},
                "f_locals": {},
                "f_code": {"co_filename": code.co_filename, "co_name": code.co_name},
                "f_lineno": tb.tb_frame.f_lineno,
            },
            "tb_lineno": tb.tb_lineno,
            "tb_next": node,
        }
    return node


def traceback_text(exc, frames):
    import traceback

    lines = ["Traceback (most recent call last):\n"]
    for tb in frames:
        if isinstance(tb, int):
            lines.append("  ... %d frames omitted ...\n" % tb)
        else:
            lines += traceback.format_list(traceback.extract_tb(tb, limit=1))
    try:
        lines += traceback.format_exception_only(type(exc), exc)
    except BaseException:
        lines.append("%s: %s\n" % (type(exc).__qualname__, safe_str(exc)))
    return "".join(lines)


def serialize_outcome(outcome):
    """Pickle the outcome: plain pickle, else cloudpickle, else a description of what failed."""
    try:
        return dumps(outcome, protocol=5)
    except BaseException:
        pass
    try:
        import cloudpickle
        return cloudpickle.dumps(outcome, protocol=5)
    except BaseException as e:
        if outcome["ok"]:
            problem = TypeError("the app's return value of type %s could not be pickled: %s: %s"
                                % (type(outcome["value"]).__qualname__, type(e).__qualname__, safe_str(e)))
            return serialize_outcome(failure(problem))
        return dumps({key: outcome[key] for key in ("ok", "type_name", "message", "traceback_text")}, protocol=5)


def finish(code):
    """Exit at once: non-daemon threads or atexit handlers of the app cannot hold the task."""
    flush_output()
    os._exit(code)


def flush_output():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
