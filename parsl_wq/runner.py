"""Worker-side runner: run one Parsl app invocation inside a Work Queue task.

Usage (in the task's sandbox, where Work Queue placed the three files)::

    python pwq_runner.py FUNCTION_FILE TASK_FILE RESULT_FILE

FUNCTION_FILE  the app's function, cached on the worker across tasks:
               b"P" + a pickle (plain or cloudpickle; plain ``pickle.loads``
               reads both), or b"F" + a pickled dict describing a plain
               function (see ``parsl_wq.serialize``), rebuilt without cloudpickle.
TASK_FILE      a pickle of ``(args, kwargs)``.
RESULT_FILE    written by this runner: a pickle of ``{"ok": True, "value": v}``
               or ``{"ok": False, ...}`` describing the exception (see ``failure``).

Exit codes:
  0  RESULT_FILE was written, with the app's value or with the exception it
     raised (a failure to load the function or its arguments counts as one).
  4  RESULT_FILE could not be written.
  anything else: the interpreter itself died (a signal, out of memory, ...).

This file runs on every task, so it imports only what every task needs:
no Parsl, and cloudpickle only when a payload or a result requires it.
Python start-up is most of the cost of a short task.
"""

import sys
from _pickle import dumps, loads

EXIT_OK = 0
EXIT_CANNOT_WRITE_RESULT = 4


def main(argv):
    function_file, task_file, result_file = argv[1:4]
    try:
        function = load_function(function_file)
        args, kwargs = load_pickle(task_file)
    except BaseException as e:
        outcome = failure(e)
    else:
        try:
            outcome = {"ok": True, "value": function(*args, **kwargs)}
        except BaseException as e:
            outcome = failure(e)
    return write_result(result_file, outcome)


def load_pickle(path):
    with open(path, "rb") as f:
        return loads(f.read())


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


def failure(exc, depth=0):
    """Describe an exception so the submit side can re-raise it as its own type."""
    import traceback

    return {
        "ok": False,
        "exception": exc,
        "type_name": type(exc).__module__ + "." + type(exc).__qualname__,
        "message": str(exc),
        "traceback": traceback_dict(exc.__traceback__),
        "traceback_text": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "cause": failure(exc.__cause__, depth + 1) if exc.__cause__ is not None and depth < 8 else None,
    }


def traceback_dict(tb):
    """The traceback in tblib's dict form, built without importing tblib."""
    if tb is None:
        return None
    code = tb.tb_frame.f_code
    return {
        "tb_frame": {
            "f_globals": {"__name__": tb.tb_frame.f_globals.get("__name__"),
                          "__file__": tb.tb_frame.f_globals.get("__file__")},
            "f_locals": {},
            "f_code": {"co_filename": code.co_filename, "co_name": code.co_name},
            "f_lineno": tb.tb_frame.f_lineno,
        },
        "tb_lineno": tb.tb_lineno,
        "tb_next": traceback_dict(tb.tb_next),
    }


def serialize_outcome(outcome):
    """Pickle the outcome: plain pickle, else cloudpickle, else a description of what failed."""
    try:
        return dumps(outcome, protocol=5)
    except Exception:
        pass
    try:
        import cloudpickle
        return cloudpickle.dumps(outcome, protocol=5)
    except Exception as e:
        if outcome["ok"]:
            problem = TypeError("the app's return value of type %s could not be pickled: %r"
                                % (type(outcome["value"]).__qualname__, e))
            return serialize_outcome(failure(problem))
        outcome = dict(outcome, exception=None, cause=None)
        return dumps(outcome, protocol=5)


def write_result(path, outcome):
    data = serialize_outcome(outcome)
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        sys.stderr.write("parsl_wq runner: cannot write %s: %s\n" % (path, e))
        return EXIT_CANNOT_WRITE_RESULT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv))
