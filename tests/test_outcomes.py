"""Unit tests: how failures are described on the worker and explained on the submit side."""

import os
import pickle
import threading

import pytest

from parsl_wq import errors
from parsl_wq.client import outcomes, serialize, worker_program
from parsl_wq.client.collector import TaskFuture
from parsl_wq.protocol import sandbox
from parsl_wq.protocol.messages import TaskDone
from parsl_wq.protocol.sandbox import Call
from parsl_wq.worker import runner


def described(exc_factory):
    try:
        exc_factory()
    except BaseException as e:
        return runner.failure(e)
    raise AssertionError("did not raise")


def reloaded(failure):
    """What the submit side makes of a runner's failure description, after a real pickle round trip."""
    data = runner.serialize_outcome(failure)
    ok, exc = serialize.load_outcome(data, task_id=1)
    assert not ok
    return exc


def test_deep_recursion_arrives_as_itself_with_a_shortened_traceback():
    def recurse(n):
        return recurse(n + 1)
    exc = reloaded(described(lambda: recurse(0)))
    assert isinstance(exc, RecursionError)
    import traceback
    frames = traceback.extract_tb(exc.__traceback__)
    assert len(frames) == runner.TRACEBACK_HEAD + runner.TRACEBACK_TAIL
    assert any("frames in the middle of the remote traceback were left out" in n for n in exc.__notes__)


def test_a_short_traceback_is_kept_whole():
    def inner():
        raise KeyError("k")
    failure = described(inner)
    assert failure["frames_omitted"] == 0 and "inner" in failure["traceback_text"]


@pytest.mark.parametrize("exc, shown", [
    (SystemExit(7), "SystemExit(7)"),
    (KeyboardInterrupt(), "KeyboardInterrupt()"),
    (GeneratorExit(), "GeneratorExit()"),
])
def test_base_exceptions_arrive_wrapped_in_an_exception(exc, shown):
    def raise_it():
        raise exc
    wrapped = reloaded(described(raise_it))
    assert isinstance(wrapped, errors.AppBaseException) and isinstance(wrapped, Exception)
    assert type(wrapped.exception) is type(exc) and wrapped.__cause__ is wrapped.exception
    assert shown in str(wrapped)


def test_an_exception_whose_str_raises_is_still_described():
    class Nasty(Exception):
        def __str__(self):
            raise SystemExit("no")
    failure = described(lambda: (_ for _ in ()).throw(Nasty()))
    assert "str() of the exception raised SystemExit" in failure["message"]


class NeedsTwoArguments(Exception):
    """A classic: pickles, but its unpickling calls NeedsTwoArguments(a) and fails."""

    def __init__(self, a, b):
        super().__init__(a)


def test_an_exception_that_cannot_be_rebuilt_becomes_remote_exception_with_its_text():
    def raise_it():
        raise NeedsTwoArguments("first", "second")
    exc = reloaded(described(raise_it))
    assert isinstance(exc, errors.RemoteException)
    assert "NeedsTwoArguments: first" in str(exc) and "raise_it" in str(exc)


def raise_system_exit_on_load():
    raise SystemExit(3)


class ExitsWhenLoaded:
    def __reduce__(self):
        return raise_system_exit_on_load, ()


def test_a_result_whose_loading_raises_system_exit_is_unreadable_not_fatal():
    ok, exc = serialize.load_outcome(pickle.dumps({"ok": True, "value": ExitsWhenLoaded()}), task_id=4)
    assert not ok and isinstance(exc, errors.ResultUnreadable) and "SystemExit(3)" in str(exc)


def test_an_unpicklable_exception_is_sent_as_its_description():
    class Local(Exception):   # a local class: neither pickle nor cloudpickle-by-reference can load it here
        pass
    failure = described(lambda: (_ for _ in ()).throw(Local("x", threading.Lock())))
    assert failure["exception"] is None
    exc = reloaded(failure)
    assert isinstance(exc, errors.RemoteException) and exc.type_name.endswith(".Local") and "'x'" in exc.message


def done(result_name="OUTPUT_MISSING", exit_code=0, output=""):
    return TaskDone(task_id=5, result=0, result_name=result_name, exit_code=exit_code, output=output)


@pytest.mark.parametrize("code, signal, words", [
    (139, 11, "killed by signal 11 (SIGSEGV)"),
    (137, 9, "killed by signal 9 (SIGKILL): out of memory, a time limit, or a kill"),
    (134, 6, "signal 6 (SIGABRT)"),
    (3, None, "exited with code 3 before writing its result (os._exit, or a crash in C code)"),
    (127, None, "command not found"),
    (0, None, "exited without writing its result file"),
])
def test_a_task_without_result_says_how_its_python_ended(code, signal, words):
    exc = outcomes.failure_without_result(done(exit_code=code, output="last words"), ())
    assert isinstance(exc, errors.AppCrashed) and exc.signal == signal
    assert words in str(exc) and "last words" in str(exc) and exc.exit_code == code


def test_a_runner_that_cannot_write_its_result_says_so(tmp_path):
    import subprocess
    import sys
    (tmp_path / "fn").write_bytes(serialize.serialize_function(max))
    (tmp_path / "calls").write_bytes(sandbox.calls_file("run.1", [Call(1, "fn", pickle.dumps(((1, 2), {})), [], [])],
                                                        pickle.dumps))
    program = worker_program.build(str(tmp_path / sandbox.WORKER_PROGRAM))
    real = subprocess.run([sys.executable, program, "run", "calls", "missing/dir/results"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, PWQ_CALLS_ID="run.1"))
    exc = outcomes.failure_without_result(done(exit_code=real.returncode, output=real.stderr), ())
    assert "could not write its result file" in str(exc) and "missing/dir/results" in str(exc)


def test_work_queue_results_other_than_a_finished_run_keep_their_meaning():
    exc = outcomes.failure_without_result(done("TASK_MAX_RUN_TIME", exit_code=137), ())
    assert not isinstance(exc, errors.AppCrashed) and "maximum running time" in str(exc)


@pytest.mark.parametrize("result, exit_status, output, seconds, started", [
    ("OUTPUT_MISSING", 1, "", 0, False),    # cctools 7.17: INPUT_MISSING on the worker, then no results file
    ("INPUT_MISSING", 1, "", 0, False),     # the same with no output file to look for
    ("INPUT_MISSING", -1, "", 0, True),     # missing on the submit side: never sent, not a worker's fault
    ("OUTPUT_MISSING", 1, "", 2351, True),  # an app that ran, then exited 1 without a word
    ("OUTPUT_MISSING", 1, "Traceback", 0, True),
    ("SUCCESS", 0, "", 0, True),
])
def test_a_task_its_worker_did_not_start_is_told_from_one_that_ran(result, exit_status, output, seconds, started):
    import types

    from parsl_wq.manager.queue import not_started
    wq = types.SimpleNamespace(WORK_QUEUE_RESULT_SUCCESS=0, WORK_QUEUE_RESULT_INPUT_MISSING=1,
                               WORK_QUEUE_RESULT_OUTPUT_MISSING=2)
    task = types.SimpleNamespace(result=getattr(wq, "WORK_QUEUE_RESULT_" + result), return_status=exit_status,
                                 output=output, _task=types.SimpleNamespace(time_workers_execute_last=seconds))
    assert not_started(wq, task) is not started


def test_a_task_no_worker_could_start_says_the_app_never_ran():
    failure = outcomes.failure_without_result(TaskDone(5, 2, "NOT_STARTED", 1, ""), inputs=[])
    assert "could not set up the task's sandbox" in str(failure) and "never ran" in str(failure)


def test_a_missing_input_is_named_with_its_submit_side_path(tmp_path):
    present = tmp_path / "here.txt"
    present.write_text("x")
    absent = str(tmp_path / "data" / "absent.txt")
    exc = outcomes.failure_without_result(done("INPUT_MISSING", exit_code=-1), [str(present), absent])
    assert isinstance(exc, errors.InputMissing) and exc.paths == [absent]
    assert absent in str(exc) and str(present) not in str(exc)


def test_an_unpack_failure_is_named_whatever_the_exit_code():
    exc = outcomes.failure_without_result(done(exit_code=3, output=outcomes.UNPACK_FAILED + "\n"), ())
    assert "could not be unpacked" in str(exc)


@pytest.mark.parametrize("raised", [SystemExit(1), KeyboardInterrupt(), ValueError("v")])
def test_a_raising_done_callback_neither_escapes_nor_skips_the_next(raised):
    future = TaskFuture()
    seen = []

    def bad(f):
        raise raised
    future.add_done_callback(bad)
    future.add_done_callback(lambda f: seen.append(f.result()))
    future.set_result(42)
    assert seen == [42]


def test_submit_side_pickling_failure_names_the_app_and_never_raises_a_base_exception():
    from parsl_wq.client.tasks import pickle_or_fail as _pickle

    class ExitsWhenPickled:
        def __reduce__(self):
            raise SystemExit("from __reduce__")
    with pytest.raises(errors.SerializationFailed, match="the arguments of app f could not be pickled: SystemExit"):
        _pickle("the arguments of app f", ExitsWhenPickled())



class _ChannelThatFails:
    """Stands in for the manager process: its channel raises what no real channel should."""

    def receive(self):
        raise RuntimeError("a bug in reading the channel")


def collector_of(executor, manager=None):
    """The executor's collector, as ``start()`` makes it, for a stand-in of the manager process."""
    from parsl_wq.client.collector import Collector
    return Collector(executor, manager, executor._pending, None, executor.usage_summary, {}, "fixed",
                     executor._break)


def test_a_collector_that_cannot_go_on_breaks_the_executor_and_fails_every_pending_future():
    from parsl_wq import ExecutorBroken, WorkQueueExecutor
    executor = WorkQueueExecutor(port=0)
    pending = [TaskFuture() for _ in range(3)]
    executor._pending.futures.update(enumerate(pending))
    collector_of(executor, _ChannelThatFails()).run()
    for future in pending:
        exc = future.exception(timeout=0)
        assert isinstance(exc, ExecutorBroken) and "RuntimeError: a bug in reading the channel" in str(exc)
    assert executor.bad_state_is_set


def test_a_failure_while_resolving_one_task_fails_that_task_only():
    from parsl_wq import WorkQueueExecutor
    executor = WorkQueueExecutor(port=0)
    first, second = TaskFuture(), TaskFuture()
    executor._pending.futures.update({1: first, 2: second})
    collector = collector_of(executor)

    def resolve_badly(done, future, record):    # a bug of ours, for task 1 only
        if done.task_id == 1:
            raise KeyError("bug")
        return original(done, future, record)
    original, collector.resolve = collector.resolve, resolve_badly
    for task_id in (1, 2):
        collector.deliver(TaskDone(task_id=task_id, result=0, result_name="SUCCESS", exit_code=0, output="",
                                   outcome=pickle.dumps({"ok": True, "value": "two"})))
    assert isinstance(first.exception(timeout=0), errors.DeliveryFailed) and "KeyError: 'bug'" in str(first.exception())
    assert second.result(timeout=0) == "two"


# ------------------------------------------------------------- engines and TLS

def test_engine_features_come_from_the_api():
    import types

    from parsl_wq.engine import features

    class Queue2021:
        def __init__(self, port=9123, name=None):
            pass

    class Queue717:
        def __init__(self, port=9123, name=None, ssl=None):
            pass
    old = types.SimpleNamespace(WorkQueue=Queue2021, __file__="/usr/lib/python3/dist-packages/work_queue.py")
    new = types.SimpleNamespace(WorkQueue=Queue717, RemoteTask=object, cctools_version_string=lambda: "7.17.1",
                                __file__="/x/ndcctools/work_queue.py")
    assert (features(old).tls, features(old).coprocess) == (False, False)
    assert "reports no version" in features(old).description
    assert (features(new).tls, features(new).coprocess) == (True, True)
    assert features(new).description.startswith("cctools 7.17.1 ")


def test_the_runs_certificate_is_readable_by_its_owner_only_and_valid(tmp_path):
    import subprocess

    from parsl_wq.client import security
    key, certificate = security.create_certificate(str(tmp_path))
    assert all(os.stat(path).st_mode & 0o777 == 0o600 for path in (key, certificate))
    shown = subprocess.run(["openssl", "x509", "-in", certificate, "-noout", "-subject"],
                           capture_output=True, text=True, check=True).stdout
    assert "parsl_wq manager" in shown
    assert "PRIVATE KEY" in open(key).read()


def test_the_factory_gives_its_workers_tls_when_the_run_uses_it():
    from parsl_wq import WorkerFactory
    assert "--ssl" in WorkerFactory().command(["127.0.0.1", "1024"], "/s", None, None, tls=True)
    assert "--ssl" not in WorkerFactory().command(["127.0.0.1", "1024"], "/s", None, None)


def test_tls_files_that_do_not_exist_fail_at_construction(tmp_path):
    from parsl_wq import ConfigurationError, WorkQueueExecutor
    with pytest.raises(ConfigurationError, match=r"ssl=\(.*cannot be used"):
        WorkQueueExecutor(ssl=(str(tmp_path / "no.key"), str(tmp_path / "no.crt")))


@pytest.mark.parametrize("value", [0, -5])
def test_a_monitor_interval_below_one_second_fails_at_construction(value):
    from parsl_wq import ConfigurationError, WorkQueueExecutor
    with pytest.raises(ConfigurationError, match=rf"monitor_interval={value} cannot be used: None .* or an int >= 1"):
        WorkQueueExecutor(monitor_interval=value)
