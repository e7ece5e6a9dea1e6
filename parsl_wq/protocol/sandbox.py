"""What the manager and the worker-side runner share: the files in a task's sandbox, and the runner's exit codes.

A task's sandbox on the worker holds, besides the app's own files::

    pwq_worker.pyz     the worker program (``parsl_wq.client.worker_program``); a cold
                       task runs ``python pwq_worker.pyz run pwq_calls.pkl pwq_results.pkl``
    pwq_fn_DIGEST.pkl  each app's function file (``parsl_wq.client.serialize``)
    pwq_calls.pkl      CALLS: a line with the id of the task it was written for, then a
                       pickle of ``(overdue, calls)``: a list of ``Call`` tuples, one per
                       app, run in turn (one app, or a bundle: ``parsl_wq.manager.bundles``),
                       and for a bundle the seconds after which an app is overdue (else None)
    pwq_results.pkl    RESULTS: written by the runner, one frame per app as it ends
    pwq_unpack.sh      with ``pack=True``: unpacks the environment's tarball
    pwq_x509_proxy     PROXY: the grid proxy, when the executor ships one

The results file holds, for each app as it ends, ``FRAME`` (its id, the size
of its outcome's pickle, the seconds its function ran) then the outcome: a
pickle of ``{"ok": True, "value": v}``, or of ``{"ok": False, ...}``
describing what it raised (``parsl_wq.worker.runner.failure``: ``exception``,
``type_name``, ``message``, ``traceback``, ``traceback_text``,
``frames_omitted``, ``cause``). Both files travel as builtin types (tuples,
dicts), never as classes of this package: the worker program's modules have
other names than the installed package's.

Standard library only (``struct`` and ``collections``): the cold runner
imports this module on every task.
"""

import struct
from collections import namedtuple

CALLS = "pwq_calls.pkl"
CALLS_ID = "PWQ_CALLS_ID"   # the variable that tells a cold task's runner which calls file is its own
RESULTS = "pwq_results.pkl"
PROXY = "pwq_x509_proxy"
UNPACKER = "pwq_unpack.sh"
WORKER_PROGRAM = "pwq_worker.pyz"
NODE_TMPDIR = "PARSL_WQ_NODE_TMPDIR"    # the worker's own TMPDIR, kept by the executor's worker commands
PREFIX = "pwq_"         # names of this package's files in a sandbox; a user's files may not start with it
# Characters Work Queue carries in a file's name unchanged. It URL-encodes names on the wire, and on both
# engines loses an output file whose name in the sandbox, or whose name on the submit side, has a space or a
# '%': the worker keeps it under one name and looks for it under another, and the task is a success.
CARRIED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+,@-/")

Call = namedtuple("Call", ["id", "function", "arguments", "output_dirs", "renames"])
Call.__doc__ = """One app in a task's calls file.

id           the executor's task id of the app
function     the name of the app's function file in the sandbox
arguments    a pickle of ``(args, kwargs)``
output_dirs  folders of its output files, which the runner creates first
renames      (sent, final) names of files it appends to, which the runner moves first
"""

FRAME = struct.Struct("!QQd")   # an app's id, the size of its outcome's pickle, the seconds its function ran

# A calls file belongs to one task of one run: its id is "RUN.TASK", the run's random token and the manager's
# number for the task. The runner runs only the calls file whose id it was given (CALLS_ID, or the warm call's
# ``calls_id``), and reads the id before any pickle. Another file (left in a recycled sandbox by a killed worker,
# of this run or an earlier one, or planted) is refused with nothing run or unpickled (EXIT_NOT_OURS, with
# NOT_OURS in the output), and the manager sends the task again in a new sandbox.

# The runner's exit codes. Any other code: the app's Python ended before writing every outcome
# (os._exit, a signal, a crash in C code); a cold task turns a death by signal N into 128 + N.
EXIT_OK = 0                     # every app's outcome was written
EXIT_RUNNER_FAILED = 1          # the runner itself failed (its traceback is in the output)
EXIT_UNPACK_FAILED = 3          # the packed environment could not be unpacked (with UNPACK_FAILED)
EXIT_CANNOT_WRITE_RESULT = 4    # RESULTS could not be written (with CANNOT_WRITE_RESULT)
EXIT_NOT_OURS = 5               # the calls file is not the task's own: nothing ran (with NOT_OURS)
EXIT_OVERDUE = 6                # an app of a bundle ran past its overdue seconds: the bundle ended there (OVERDUE)

# Said in the task's output, and looked for there by the executor.
CANNOT_WRITE_RESULT = "parsl_wq runner: cannot write"
UNPACK_FAILED = "parsl_wq: the packed environment could not be unpacked"
NOT_OURS = "parsl_wq runner: not this task's calls file"
OVERDUE = "parsl_wq runner: overdue in a bundle"


def calls_id(run, task):
    """The id of the calls file of the manager's task number ``task`` in run ``run``."""
    return "%s.%d" % (run, task)


def calls_file(identity, calls, dumps, overdue=None):
    """The calls file's bytes: its id on the first line, then ``dumps`` of the overdue seconds (or None) and
    each ``Call`` as a plain tuple."""
    return identity.encode() + b"\n" + dumps((overdue, [tuple(call) for call in calls]))


def write_calls_file(f, identity, calls, dump, overdue=None):
    """``calls_file`` written to the open file ``f`` with ``dump(obj, f)``: a large argument is not copied first."""
    f.write(identity.encode() + b"\n")
    dump((overdue, [tuple(call) for call in calls]), f)


def calls_of(data, identity, loads):
    """``(calls, overdue)`` from a calls file's bytes, if it is the file with id ``identity``; else None.

    ``calls`` holds the ``Call`` of each app. The id is compared before anything is unpickled.
    """
    first, newline, rest = data.partition(b"\n")
    if not identity or not newline or first != identity.encode():
        return None
    overdue, calls = loads(rest)
    return [Call._make(call) for call in calls], overdue


def frame(call_id, outcome, seconds):
    """One app's frame in the results file, written with one ``write``: if the runner dies, the frames before are whole."""
    return FRAME.pack(call_id, len(outcome), seconds) + outcome


def read_results(f):
    """``{id: (outcome pickle, seconds)}`` from a results file open for reading; a cut last frame is left out.

    Each outcome is read into its own bytes, so a large one is held once.
    """
    results = {}
    while True:
        head = f.read(FRAME.size)
        if len(head) < FRAME.size:
            return results
        call_id, size, seconds = FRAME.unpack(head)
        outcome = f.read(size)
        if len(outcome) < size:
            return results
        results[call_id] = (outcome, seconds)
