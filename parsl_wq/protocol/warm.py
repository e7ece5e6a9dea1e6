"""What a warm task carries to the worker's warm host (a Work Queue coprocess), and what the host answers.

The manager submits a warm task as a Work Queue ``RemoteTask`` of the
coprocess ``NAME``'s function ``FUNCTION``, whose keyword arguments are a
``WarmCall``; Work Queue hands them to the host as JSON. The host runs the
task's calls file as a cold task would (``parsl_wq.protocol.sandbox``) and
answers with a ``WarmAnswer``, which comes back as the task's output.

Standard library only: the warm host imports it on the worker.
"""

import json
from collections import namedtuple

NAME = "parsl_wq"       # the coprocess name warm tasks ask for
FUNCTION = "run"        # the one function the coprocess serves

WarmCall = namedtuple("WarmCall", ["env", "limits", "interval", "node_tmpdir", "environment", "calls_id"],
                      defaults=(None,))
WarmCall.__doc__ = """What the warm host needs to run a task's apps (JSON-able: it travels as the call's arguments).

env          environment variables set for the apps (``env``, the proxy, CORES, MEMORY, ...)
limits       {"memory": MB, "wall_time": s} the host enforces, with ``autolabel``; may be empty
interval     seconds between two samples of the apps' memory
node_tmpdir  with ``shared_fs=True``, the variable that holds the node's TMPDIR; else None
environment  with ``pack=True``, {"tarball": name in the sandbox, "name": environment's name}; else None
calls_id     the id of the task's calls file (``parsl_wq.protocol.sandbox``), set by the manager
"""

WarmAnswer = namedtuple("WarmAnswer", ["exit_code", "output", "usage", "exceeded"])
WarmAnswer.__doc__ = """What the warm host answers for a call: the task's output, as Work Queue returns it.

exit_code  the runner's exit code (``parsl_wq.protocol.sandbox``); 128 + N for a death by signal N
output     the end of the apps' stdout and stderr
usage      what was measured: wall_time, cpu_time (s), cores, memory (MB)
exceeded   each limit the apps went past, and its value
"""


def call_arguments(call):
    """A ``WarmCall`` as the keyword arguments of a ``RemoteTask``."""
    return call._asdict()


def encode_answer(answer):
    return json.dumps(answer._asdict())


def decode_answer(output):
    """The ``WarmAnswer`` in a warm task's output, or None if there is none (the host died, or gave up)."""
    try:
        answer = json.loads(output)
        return WarmAnswer(exit_code=int(answer["exit_code"]), output=str(answer["output"]),
                          usage={str(k): float(v) for k, v in answer["usage"].items()},
                          exceeded={str(k): float(v) for k, v in answer["exceeded"].items()})
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
