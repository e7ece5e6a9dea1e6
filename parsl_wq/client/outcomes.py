"""What a finished task's future gets: the app's value, or an exception that says what happened.

Submit side. The facts come from the app's outcome when the runner wrote one,
and otherwise from Work Queue: its result name, the task's exit code (the
task command turns a death by signal N into 128 + N, as shells do) and the
end of the task's output.
"""

import os
import signal
from typing import Any, Optional, Sequence, Tuple

from parsl_wq.client import serialize
from parsl_wq.errors import AppCrashed, InputMissing, ResourceExhausted, TaskFailure, explain_result
from parsl_wq.protocol import results
from parsl_wq.protocol.messages import TaskDone, amount
from parsl_wq.protocol.sandbox import CANNOT_WRITE_RESULT, UNPACK_FAILED

SIGNAL_HINTS = {
    signal.SIGKILL: "out of memory, a time limit, or a kill",
    signal.SIGSEGV: "a crash in C code (an extension module, ctypes) or a C stack overflow",
    signal.SIGBUS: "a crash in C code (an extension module, ctypes), or a memory-mapped file that went away",
    signal.SIGABRT: "abort() in C code, for example a failed assertion in a C library",
    signal.SIGFPE: "an arithmetic fault in C code",
    signal.SIGILL: "an illegal instruction: C code built for another CPU",
    signal.SIGTERM: "asked to stop, by the worker, the batch system or a kill",
    signal.SIGXCPU: "a CPU time limit",
}


def task_outcome(done: TaskDone, inputs: Sequence[str]) -> Tuple[bool, Any]:
    """``(True, value)`` or ``(False, exception)`` for a finished task.

    ``inputs`` are the submit-side paths of every file sent with the task.
    """
    if done.result_name == results.RESOURCE_EXHAUSTION and done.usage is not None:
        return False, ResourceExhausted(done.task_id, done.usage, done.exit_code, done.output)
    if done.outcome is None:
        return False, failure_without_result(done, inputs)
    return serialize.load_outcome(done.outcome, done.task_id)


def failure_without_result(done: TaskDone, inputs: Sequence[str]) -> TaskFailure:
    """The exception for an app whose runner wrote no outcome."""
    if done.result_name == results.INPUT_MISSING:
        return input_missing(done, inputs)
    full = [(folder, free) for folder, free in done.disks if free < LOW_DISK]
    if full and done.result_name in (results.MAX_RETRIES, results.OUTPUT_MISSING):
        folders = ", ".join(f"{folder} ({amount('disk', free / 1e6)} free)" for folder, free in full)
        return TaskFailure(done.task_id, done.result_name,
                           f"the submit side's disk is full where the task's outputs and result are written: "
                           f"{folders}. Work Queue takes an output it cannot write for its worker's failure: it "
                           f"removes the worker and tries again elsewhere, while max_retries allows. Free space "
                           f"there, or give the run_dir another disk", done.exit_code, done.output)
    if UNPACK_FAILED in done.output:
        return TaskFailure(done.task_id, done.result_name,
                           "the packed environment could not be unpacked on the worker (unpack.sh needs "
                           "sh, tar, gzip and flock, and room in the worker's folder); see the output",
                           done.exit_code, done.output)
    if done.result_name in results.RAN_TO_END and done.exit_code is not None and done.exit_code >= 0:
        return crash(done)
    if done.result_name == results.MAX_RETRIES:
        return TaskFailure(done.task_id, done.result_name, retries_used(done), done.exit_code, done.output)
    return TaskFailure(done.task_id, done.result_name, explain_result(done.result_name),
                       done.exit_code, done.output)


def crash(done: TaskDone) -> TaskFailure:
    """The app's Python ended without a result: say how, from its exit code."""
    code = done.exit_code
    killer = signal_of(code)
    if killer is not None:
        name = signal.Signals(killer).name
        hint = SIGNAL_HINTS.get(killer)
        explanation = f"the app's Python was killed by signal {killer} ({name})" + (f": {hint}" if hint else "")
    elif CANNOT_WRITE_RESULT in done.output:
        explanation = "the runner could not write its result file (see the output)"
    elif code == 127:
        explanation = "the worker could not start the app's Python: command not found (see the output)"
    elif code == 0:
        explanation = "the runner exited without writing its result file"
    else:
        explanation = (f"the app's Python exited with code {code} before writing its result "
                       "(os._exit, or a crash in C code)")
    return AppCrashed(done.task_id, done.result_name, explanation, code, done.output, killer)


def signal_of(exit_code: int) -> Optional[int]:
    """The signal number behind a shell's exit code 128 + N, if N is a signal."""
    number = exit_code - 128
    if number <= 0:
        return None
    try:
        signal.Signals(number)
    except ValueError:
        return None
    return number


LOW_DISK = 100 * 1000 * 1000   # bytes free under which a disk that receives outputs is called full


def retries_used(done: TaskDone) -> str:
    """Why Work Queue gave up a task: each try ended before the app had a result (an app's exception is its
    result, so not the app)."""
    tries = f" ({done.usage.attempts} tries)" if done.usage is not None and done.usage.attempts else ""
    if done.lost:
        times = "once" if len(done.lost) == 1 else f"{len(done.lost)} times"
        return (f"the worker running it was lost {times}: {', '.join(done.lost)}, and max_retries allows no "
                f"more tries{tries}. The app raised nothing; a worker is lost when it is killed, runs out of "
                "memory, is cut from the network or is stopped by its batch system")
    return (f"Work Queue took the task back from its worker on every try that max_retries allows{tries}, "
            "before the app had a result: its worker was removed as too slow (fast_abort), or gave the task "
            "back. The app raised nothing")


def input_missing(done: TaskDone, inputs: Sequence[str]) -> InputMissing:
    missing = [path for path in inputs if not os.access(path, os.R_OK)]
    if missing:
        explanation = ("input file " + ", ".join(missing) + (" does" if len(missing) == 1 else " do")
                       + " not exist or cannot be read on the submit side")
    else:
        explanation = ("an input file could not be sent to the worker, though each one exists now "
                       "(was one written after the task was sent, or is the worker's disk full?): "
                       + ", ".join(inputs))
    return InputMissing(done.task_id, missing, explanation, done.output)
