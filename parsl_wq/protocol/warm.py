"""What a warm task carries to the worker's warm host, and what the host answers.

A warm task is an ordinary Work Queue task whose command hands the task to
the warm host of its worker (``parsl_wq.worker.supervisor``), on any engine
(``task_command``)::

    pwq_folder=../pwq_warm.KEY; . ./pwq_call.sh; START exec "$PY" pwq_worker.pyz warm ../pwq_warm.KEY

The manager puts the task's ``WarmCall`` in the task's environment, as JSON
(``CALL_VARIABLE``), with the id of its calls file and the limits it learned.
The task's own shell sources ``pwq_call.sh`` (``CALLER``): it reads the
supervisor's door in its folder in the worker's workspace (``host_folder``),
writes the call to ``CALL_FILE`` in the sandbox and sends its pid and
sandbox; the host answers a ``WarmAnswer`` as JSON, one line, in the task's
output (or in ``ANSWER_FILE``, which the shell prints), and sends
``ANSWERED``. No program starts for the call, not even a second shell. Where
no host answers, the shell goes on with the steps ``START`` (the executor's
``init_command``, the choice of Python), and the task's Python becomes the
host (``parsl_wq.worker.caller``), then makes the call.

Standard library only: the warm host imports it on the worker.
"""

import json
import signal
from collections import namedtuple

CALLER = "pwq_call.sh"          # the warm task's call, in its sandbox: the task's shell sources it
CALL_VARIABLE = "PWQ_CALL"      # the task's variable that holds its WarmCall
CALL_FILE = "pwq_call"          # the WarmCall, as the task's shell wrote it into the sandbox for the host
ANSWER_FILE = "pwq_answer"      # the host's answer, in the sandbox, where it cannot write to the task's output
ANSWERED = signal.SIGUSR1       # what the host sends the task's shell once it has answered
FOLDER_PREFIX = "pwq_warm."     # the warm host's folder in the worker's workspace: FOLDER_PREFIX + key
HOST_PYTHON = (3, 7)            # the oldest Python the warm host runs on (namedtuple's defaults, 3.7); EL8's
                                # python3 is 3.6

WarmCall = namedtuple("WarmCall", ["env", "limits", "interval", "node_tmpdir", "environment", "calls_id",
                                   "measure_disk"], defaults=(None, False))
WarmCall.__doc__ = """What the warm host needs to run a task's apps (JSON, in the task's CALL_VARIABLE).

env           environment variables set for the apps (``env``, the proxy, CORES, MEMORY, ...)
limits        {"memory": MB, "wall_time": s} the host enforces, with ``autolabel``: what the app
              declared, or what the manager learned for its category; may be empty
interval      seconds between two samples of the apps' memory
node_tmpdir   with ``shared_fs=True``, the variable that holds the node's TMPDIR; else None
environment   with ``pack=True``, {"tarball": name in the sandbox, "name": environment's name}; else None
calls_id      the id of the task's calls file (``parsl_wq.protocol.sandbox``), set by the manager
measure_disk  with ``autolabel``: measure the sandbox's size once the apps end, as Work Queue's monitor does
"""

WarmAnswer = namedtuple("WarmAnswer", ["exit_code", "output", "usage", "exceeded"])
WarmAnswer.__doc__ = """What the warm host answers for a call: the task's output, as Work Queue returns it.

exit_code  the runner's exit code (``parsl_wq.protocol.sandbox``); 128 + N for a death by signal N
output     the end of the apps' stdout and stderr
usage      what was measured: wall_time, cpu_time (s), cores, memory (MB)
exceeded   each limit the apps went past, and its value
"""


def host_folder(key: str) -> str:
    """The warm host's folder as a task's sandbox sees it: beside the sandbox, in the worker's workspace."""
    return "../" + FOLDER_PREFIX + key


def task_command(folder: str, start: str, program: str) -> str:
    """A warm task's shell command: the call through ``CALLER``; where no host answers, ``start`` (shell steps
    that set PY) and the worker ``program`` started with it, to start a host and make the call."""
    return f"pwq_folder={folder}; . ./{CALLER}; {start}exec \"$PY\" {program} warm {folder}"


def encode_call(call: WarmCall) -> str:
    """A ``WarmCall`` as one line of JSON."""
    return json.dumps(call._asdict(), separators=(",", ":"), sort_keys=True)


def decode_call(text):
    return WarmCall(**json.loads(text))


def encode_answer(answer):
    return json.dumps(answer._asdict())


def decode_answer(output):
    """The ``WarmAnswer`` on the last line of a warm task's output, or None if there is none (the host died,
    or no host could start; what the task's shell said is then the output)."""
    lines = (output or "").rstrip("\n").rsplit("\n", 1)
    try:
        answer = json.loads(lines[-1])
        return WarmAnswer(exit_code=int(answer["exit_code"]), output=str(answer["output"]),
                          usage={str(k): float(v) for k, v in answer["usage"].items()},
                          exceeded={str(k): float(v) for k, v in answer["exceeded"].items()})
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
