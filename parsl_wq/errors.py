"""Every exception that parsl_wq raises, in one place.

Each message says what happened and what to check. Exceptions that reach a
Parsl user through a future derive from Parsl's own classes, so code that
catches Parsl's exceptions keeps working.
"""

from typing import Any, Iterable, Optional

from parsl.errors import ParslError
from parsl.executors.errors import InvalidResourceSpecification as _ParslInvalidResourceSpecification

from parsl_wq.protocol import results
from parsl_wq.protocol.messages import TaskUsage, amount


class EngineNotFound(ImportError):
    """No Work Queue Python module could be loaded."""

    def __init__(self, tried: Iterable[str]):
        self.tried = list(tried)
        super().__init__(
            "Work Queue (cctools) was not found. Install it with conda "
            "('conda install -c conda-forge ndcctools') or, on Debian/Ubuntu, with apt "
            "('apt-get install coop-computing-tools python3-workqueue'). Tried: "
            + "; ".join(self.tried))


class ConfigurationError(ParslError, ValueError):
    """An executor parameter has a value this executor cannot honour."""

    def __init__(self, parameter: str, value: Any, accepted: str):
        self.parameter = parameter
        self.value = value
        self.accepted = accepted

    def __str__(self) -> str:
        return f"{self.parameter}={self.value!r} cannot be used: {self.accepted}"


class InvalidResourceSpecification(_ParslInvalidResourceSpecification):
    """A ``parsl_resource_specification`` key or value is not accepted."""

    def __init__(self, key: str, value: Any, accepted: str):
        super().__init__({key}, accepted)
        self.key = key
        self.value = value
        self.accepted = accepted

    def __str__(self) -> str:
        return f"parsl_resource_specification[{self.key!r}] = {self.value!r} is not accepted: {self.accepted}"


class ExecutorBroken(ParslError):
    """The executor cannot run tasks any more; every pending and later task fails with this."""

    def __init__(self, label: str, reason: str):
        self.label = label
        self.reason = reason

    def __str__(self) -> str:
        return f"WorkQueueExecutor {self.label!r} is broken: {self.reason}"


class ExecutorShutdown(ParslError):
    """The task was still outstanding when the executor shut down."""

    def __init__(self, label: str, task_id: int):
        self.label = label
        self.task_id = task_id

    def __str__(self) -> str:
        return (f"task {self.task_id} was still outstanding when WorkQueueExecutor "
                f"{self.label!r} shut down; it did not run to completion")


class TaskFailure(ParslError):
    """Work Queue could not run the task to a result.

    ``result`` is Work Queue's result name (for example ``RESOURCE_EXHAUSTION``),
    ``exit_code`` the runner's exit code, ``output`` the end of the task's output.
    """

    def __init__(self, task_id: int, result: str, explanation: str,
                 exit_code: Optional[int] = None, output: str = ""):
        self.task_id = task_id
        self.result = result
        self.explanation = explanation
        self.exit_code = exit_code
        self.output = output

    def __str__(self) -> str:
        text = self._headline()
        if self.exit_code is not None:
            text += f" [exit code {self.exit_code}]"
        if self.output:
            text += f"\n--- end of task output ---\n{self.output}"
        return text


    def _headline(self) -> str:
        return f"task {self.task_id} failed in Work Queue ({self.result}): {self.explanation}"


def describe_exhaustion(usage: TaskUsage) -> str:
    """For example ``memory: used 812 MB, limit 400 MB``; one entry per resource exceeded."""
    parts = []
    for resource, limit in sorted(usage.exceeded.items()):
        used = usage.measured.get(resource)
        used_text = amount(resource, used) if used is not None else "unknown"
        parts.append(f"{resource}: used {used_text}, limit {amount(resource, limit)}")
    return "; ".join(parts) or "Work Queue did not say which resource"


class ResourceExhausted(TaskFailure):
    """The task used more of a resource than its allocation allowed, and was stopped.

    ``usage`` is the task's :class:`~parsl_wq.protocol.messages.TaskUsage`: ``usage.exceeded``
    maps each resource to the limit it went past, ``usage.measured`` what was used.
    """

    def __init__(self, task_id: int, usage, exit_code: Optional[int] = None, output: str = ""):
        explanation = (f"it went past its allocation in category {usage.category!r} "
                       f"({describe_exhaustion(usage)}). Declare more in parsl_resource_specification, "
                       "or raise the category's maximum with category_max_resources")
        super().__init__(task_id, results.RESOURCE_EXHAUSTION, explanation, exit_code, output)
        self.usage = usage


class AppCrashed(TaskFailure):
    """The app's Python ended before writing its result: a signal, ``os._exit``, a crash in C code.

    ``signal`` is the signal number that killed it, or None if it exited with
    ``exit_code``.
    """

    def __init__(self, task_id: int, result: str, explanation: str, exit_code: Optional[int],
                 output: str, signal: Optional[int]):
        super().__init__(task_id, result, explanation, exit_code, output)
        self.signal = signal

    def _headline(self) -> str:
        return f"task {self.task_id} failed: {self.explanation}"


class InputMissing(TaskFailure):
    """An input file of the task could not be sent to the worker; ``paths`` are the missing ones."""

    def __init__(self, task_id: int, paths: Iterable[str], explanation: str, output: str = ""):
        super().__init__(task_id, results.INPUT_MISSING, explanation, None, output)
        self.paths = list(paths)


class AppBaseException(ParslError):
    """The app raised a ``BaseException`` that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``, ...).

    It ended only that app. It arrives wrapped, because Parsl and
    ``concurrent.futures`` handle only ``Exception``s; the original is
    ``.exception`` and ``__cause__``.
    """

    def __init__(self, exception: BaseException):
        self.exception = exception
        self.__cause__ = exception

    def __str__(self) -> str:
        what = f"{type(self.exception).__name__}({', '.join(map(repr, self.exception.args))})"
        if isinstance(self.exception, SystemExit):
            return (f"the app raised {what} (sys.exit() inside an app ends only that app, "
                    "as a failure); the original exception is .exception")
        return f"the app raised {what}, a BaseException that ended only that app; the original exception is .exception"


class SerializationFailed(ParslError):
    """An app's function or arguments could not be pickled on the submit side."""

    def __init__(self, what: str, cause: BaseException):
        self.what = what
        self.cause = cause
        self.__cause__ = cause

    def __str__(self) -> str:
        return f"{self.what} could not be pickled: {type(self.cause).__name__}: {self.cause}"


class DeliveryFailed(ParslError):
    """parsl_wq failed while delivering a finished task's outcome: a bug in parsl_wq."""

    def __init__(self, task_id: int, cause: BaseException):
        self.task_id = task_id
        self.cause = cause
        self.__cause__ = cause

    def __str__(self) -> str:
        return (f"the outcome of task {self.task_id} could not be delivered: {type(self.cause).__name__}: "
                f"{self.cause}. This is a bug in parsl_wq; the executor's log has the traceback")


class RemoteException(ParslError):
    """An app raised an exception that could not be sent back as its own type."""

    def __init__(self, type_name: str, message: str, traceback_text: str):
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}\n--- remote traceback ---\n{self.traceback_text}"


class ResultUnreadable(ParslError):
    """The task's result file exists but cannot be loaded on the submit side."""

    def __init__(self, task_id: int, cause: BaseException):
        self.task_id = task_id
        self.cause = cause

    def __str__(self) -> str:
        return (f"the result of task {self.task_id} could not be loaded: {self.cause!r}. "
                "Check that the classes in the result are importable on the submit side.")


RESULT_EXPLANATIONS = {
    results.SUCCESS: "the runner exited without writing its result file",
    results.INPUT_MISSING: "an input file could not be sent to the worker; check that every input File exists on the submit side",
    results.OUTPUT_MISSING: "the result file or an output file did not come back from the worker; "
                      "check that the worker's Python can run the runner (see the task output)",
    "STDOUT_MISSING": "the task's standard output was lost",
    results.SIGNAL: "the task was killed by a signal",
    results.RESOURCE_EXHAUSTION: "the task used more resources than it was allocated",
    "TASK_TIMEOUT": "the task ran past its end time",
    "UNKNOWN": "Work Queue could not classify the failure",
    "FORSAKEN": "the task was abandoned by its worker and not retried",
    results.MAX_RETRIES: "Work Queue took the task back from its worker on every try that max_retries allows, "
                         "before the app had a result",
    "TASK_MAX_RUN_TIME": "the task ran longer than its maximum running time",
    "DISK_ALLOC_FULL": "the task filled the disk allocated to its sandbox",
    "RMONITOR_ERROR": "the resource monitor wrapping the task failed",
    results.NOT_SUBMITTED: "Work Queue refused to accept the task",
    results.NOT_STARTED: "the worker could not set up the task's sandbox on any of its tries, its inputs sent anew "
                   "each time (it could not link its input files into it, or found another task's calls file "
                   "there), so the app never ran; manager.log and the worker's log say why (start it with -d all). "
                   "One cause: folders left in /tmp by killed workers (docs/usage.md, \"When workers fail\")",
    results.WARM_PROCESS_LOST: "the worker's warm Python gave no answer: it was killed or died while running the "
                         "app, or it could not start on the worker (the task's output says why); later apps run "
                         "in a new warm process",
}


def explain_result(result_name: str) -> str:
    return RESULT_EXPLANATIONS.get(result_name, f"Work Queue reported result {result_name}")


class PackError(ParslError):
    """An app's environment cannot be packed; the message names the module or package and why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"pack=True: {self.reason}"
