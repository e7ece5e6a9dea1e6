"""The crash table: an app misbehaves at each stage of a task, on each side of the wire.

Modelled on loky's crash tests. Each case asserts the exception type, that its
text names the cause, that it arrives (no hang), and that the next app on the
same executor still works. Real work_queue_worker processes throughout.
"""

import functools
import os

import pytest
from parsl.data_provider.files import File

import crash_apps
from parsl_wq.errors import (AppBaseException, AppCrashed, InputMissing, RemoteException, ResultUnreadable,
                             SerializationFailed)

TIMEOUT = 60

# What the submit side gets when the worker side misbehaves in each way.
WORKER_SIDE = {
    "raise": (ValueError, "crash-table ValueError"),
    "exit": (AppBaseException, "SystemExit(7)"),
    "interrupt": (AppBaseException, "KeyboardInterrupt('crash-table interrupt')"),
    "generator-exit": (AppBaseException, "GeneratorExit('crash-table generator exit')"),
    "base-exception": (AppBaseException, "AppDefinedBaseException('crash-table base exception')"),
    "unloadable-exception": (RemoteException, "crash_apps.UnloadableError: crash-table unloadable"),
    "recursion": (RecursionError, "maximum recursion depth exceeded"),
    "os-exit": (AppCrashed, "the app's Python exited with code 3 before writing its result"),
    "os-exit-5": (AppCrashed, "the app's Python exited with code 5 before writing its result"),
    "segfault": (AppCrashed, "the app's Python was killed by signal 11 (SIGSEGV)"),
    "sigkill": (AppCrashed, "the app's Python was killed by signal 9 (SIGKILL): out of memory, a time limit, or a kill"),
}
CRASHES = ("os-exit", "os-exit-5", "segfault", "sigkill")   # the Python process dies; no exception to send
SUBMIT_SIDE = {   # a segfault here would end the test process itself, so only what Python can raise
    "raise": "ValueError",
    "exit": "SystemExit",
    "interrupt": "KeyboardInterrupt",
}


def result_pickling_expectation(kind):
    """A result whose pickling raises becomes a TypeError that names what was raised."""
    if kind in CRASHES:
        return WORKER_SIDE[kind]
    raised = {"exit": "SystemExit", "interrupt": "KeyboardInterrupt", "generator-exit": "GeneratorExit",
              "base-exception": "AppDefinedBaseException", "unloadable-exception": "UnloadableError",
              "recursion": "", "raise": "ValueError"}[kind]     # cloudpickle names a deep recursion its own way
    return TypeError, f"the app's return value of type CrashOnPickle could not be pickled: {raised}"


def launch(dfk, stage, kind):
    """Start a task that misbehaves with ``kind`` at ``stage``; return its future."""
    if stage == "app":
        return crash_apps.crash_app(kind)
    if stage == "argument unpickling (worker)":
        return crash_apps.identity_app(crash_apps.CrashOnLoad(kind))
    if stage == "function loading (worker)":    # not a Parsl app: a callable whose unpickling misbehaves
        executor = dfk.executors["WorkQueueExecutor"]
        return executor.submit(functools.partial(crash_apps.identity, crash_apps.CrashOnLoad(kind)), {})
    if stage == "result pickling (worker)":
        return crash_apps.return_crash_on_pickle(kind)
    if stage == "argument pickling (submit side)":
        return crash_apps.identity_app(crash_apps.CrashOnPickle(kind))
    if stage == "result loading (submit side)":
        return crash_apps.return_crash_on_load(kind)
    raise AssertionError(stage)


WORKER_STAGES = ("app", "argument unpickling (worker)", "function loading (worker)")
CASES = ([(stage, kind, *WORKER_SIDE[kind]) for stage in WORKER_STAGES for kind in WORKER_SIDE]
         + [("result pickling (worker)", kind, *result_pickling_expectation(kind)) for kind in WORKER_SIDE]
         + [("argument pickling (submit side)", kind, SerializationFailed,
             f"the arguments of app identity_app could not be pickled: {name}")
            for kind, name in SUBMIT_SIDE.items()]
         + [("result loading (submit side)", kind, ResultUnreadable, f"could not be loaded: {name}(")
            for kind, name in SUBMIT_SIDE.items()])


@pytest.mark.parametrize("stage, kind, expected_type, words", CASES,
                         ids=[f"{stage}-{kind}" for stage, kind, _, _ in CASES])
def test_crash_table(dfk, stage, kind, expected_type, words):
    future = launch(dfk, stage, kind)
    exc = future.exception(timeout=TIMEOUT)      # arrives: a hang fails here
    assert type(exc) is expected_type, repr(exc)
    assert words in str(exc), str(exc)
    assert isinstance(exc, Exception)            # what Parsl's DFK and concurrent.futures handle
    assert crash_apps.identity_app(f"after {stage} {kind}").result(timeout=TIMEOUT) == f"after {stage} {kind}"


def test_base_exceptions_keep_their_original(dfk):
    exc = crash_apps.crash_app("exit").exception(timeout=TIMEOUT)
    assert type(exc.exception) is SystemExit and exc.exception.code == 7 and exc.__cause__ is exc.exception


def test_a_crash_brings_the_end_of_the_task_output(dfk):
    exc = crash_apps.crash_app("segfault").exception(timeout=TIMEOUT)
    assert exc.signal == 11 and exc.exit_code == 139 and "Segmentation fault" in str(exc)


def test_a_recursion_error_keeps_the_app_frames_of_both_ends(dfk):
    import traceback
    exc = crash_apps.crash_app("recursion").exception(timeout=TIMEOUT)
    names = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
    assert names.index("run_call") < names.index("crash") < names.index("_recurse")
    assert names[-1] == "_recurse" and names.count("_recurse") < 40
    assert any("left out" in note for note in exc.__notes__)


def test_one_system_exit_does_not_stop_the_rest_of_the_run(dfk):
    futures = [crash_apps.identity_app(i) if i != 10 else crash_apps.crash_app("exit") for i in range(30)]
    results = [f.exception(timeout=TIMEOUT) or f.result() for f in futures]
    assert isinstance(results[10], AppBaseException)
    assert results[:10] + results[11:] == list(range(10)) + list(range(11, 30))


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit, ValueError])
def test_a_users_done_callback_that_raises_stops_nothing(dfk, raised):
    future = crash_apps.identity_app("first")
    calls = []

    def callback(f):
        calls.append(f.result())
        raise raised("from the user's callback")
    future.add_done_callback(callback)
    assert future.result(timeout=TIMEOUT) == "first"
    assert crash_apps.identity_app("next").result(timeout=TIMEOUT) == "next"
    assert calls == ["first"] and dfk.executors["WorkQueueExecutor"]._collector_thread.is_alive()


def test_an_app_that_leaves_a_thread_running_still_returns(dfk):
    assert crash_apps.leave_a_thread_running().result(timeout=TIMEOUT) == "returned"


def test_an_app_that_changes_directory_still_returns(dfk, tmp_path):
    assert crash_apps.change_directory_and_return(str(tmp_path)).result(timeout=TIMEOUT) == str(tmp_path)


def test_a_missing_input_file_is_named_by_its_submit_side_path(dfk, tmp_path):
    missing = tmp_path / "data" / "absent.txt"
    exc = crash_apps.identity_app(File(str(missing))).exception(timeout=TIMEOUT)
    assert isinstance(exc, InputMissing) and exc.paths == [str(missing)]
    assert f"input file {missing} does not exist" in str(exc)
    assert os.path.basename(str(missing)) in str(exc)
