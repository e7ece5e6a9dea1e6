"""Pure logic: resource checks, serialization, the runner, file planning, the engine lookup, framing."""

import io
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import types
import time

import pytest
from parsl.app.errors import wrap_error
from parsl.data_provider.files import File

from parsl_wq import engine, errors
from parsl_wq.manager import allocation
from parsl_wq.client import serialize, worker_program
from parsl_wq.protocol import channel, messages, sandbox
from parsl_wq.protocol.sandbox import Call
from parsl_wq.worker import runner
from parsl_wq.client.files import FilePlanner, sandbox_name
from parsl_wq.client.resources import Resources, check_category_table, parse_resource_specification
from parsl_wq.client.usage import UsageSummary, monitoring_record, resource_usage
from parsl_wq.errors import describe_exhaustion



@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """The worker program, as tasks carry it."""
    return worker_program.build(str(tmp_path_factory.mktemp("program") / sandbox.WORKER_PROGRAM))


# ---------------------------------------------------------------- resources

def test_valid_specification_is_parsed():
    spec = {"cores": 2, "memory": 100, "disk": 0, "gpus": 0, "priority": -1.5,
            "running_time_min": 3, "category": "c"}
    assert parse_resource_specification(spec) == Resources(**spec)
    assert parse_resource_specification({}) == Resources()
    assert parse_resource_specification(None) == Resources()


@pytest.mark.parametrize("spec, key, accepted", [
    ({"cores": 0}, "cores", "int >= 1"),
    ({"cores": True}, "cores", "int >= 1"),
    ({"memory": 1.5}, "memory", "int >= 0"),
    ({"disk": -3}, "disk", "int >= 0"),
    ({"gpus": "1"}, "gpus", "int >= 0"),
    ({"running_time_min": -1}, "running_time_min", ">= 0"),
    ({"priority": "high"}, "priority", "int or float"),
    ({"category": ""}, "category", "non-empty str"),
    ({"mem": 10}, "mem", "accepted keys are cores, memory"),
])
def test_bad_specification_names_key_value_and_what_is_accepted(spec, key, accepted):
    with pytest.raises(errors.InvalidResourceSpecification) as info:
        parse_resource_specification(spec)
    message = str(info.value)
    assert repr(key) in message and repr(spec[key]) in message and accepted in message


def test_non_dict_specification_is_rejected():
    with pytest.raises(errors.InvalidResourceSpecification, match="a dict"):
        parse_resource_specification([("cores", 1)])


def test_slots_default_to_a_whole_worker():
    assert Resources().slots(4) == 4
    assert Resources(cores=1).slots(4) == 1


def test_category_table_is_checked_and_copied():
    table = {"sim": {"cores": 2, "memory": 4000}, "*": {"disk": 0}}
    assert check_category_table("category_max_resources", table) == table
    assert check_category_table("category_max_resources", None) == {}


@pytest.mark.parametrize("table, words", [
    ({"sim": {"cores": 0}}, ["'sim'", "cores must be an int >= 1", "got 0"]),
    ({"sim": {"ram": 1}}, ["resources are cores, memory, disk, gpus", "got 'ram'"]),
    ({"": {"cores": 1}}, ["non-empty str"]),
    ({"sim": 3}, ["dict of cores", "got 3"]),
])
def test_bad_category_table_names_entry_and_what_is_accepted(table, words):
    with pytest.raises(errors.ConfigurationError) as info:
        check_category_table("category_max_resources", table)
    message = str(info.value)
    assert message.startswith("category_max_resources=")
    assert all(w in message for w in words), message


# ------------------------------------------------------------ usage

def usage(category="sim", measured=None, exceeded=None, allocated=None, attempts=1):
    return messages.TaskUsage(category=category, allocated=allocated or {"cores": 1.0, "memory": 250.0},
                              measured=measured or {}, exceeded=exceeded or {}, attempts=attempts, host="h1")


def test_exhaustion_names_resource_use_and_limit():
    u = usage(measured={"memory": 812.0, "cores": 1.5}, exceeded={"memory": 400.0, "cores": 1.0})
    assert describe_exhaustion(u) == "cores: used 1.5, limit 1; memory: used 812 MB, limit 400 MB"
    assert describe_exhaustion(usage(exceeded={"disk": 10.0})) == "disk: used unknown, limit 10 MB"
    failure = errors.ResourceExhausted(7, u, 143, "killed")
    assert isinstance(failure, errors.TaskFailure) and failure.usage is u
    assert "memory: used 812 MB, limit 400 MB" in str(failure) and "'sim'" in str(failure)


def test_summary_table_folds_tasks_per_category():
    summary = UsageSummary()
    summary.add(usage(measured={"memory": 10.0, "wall_time": 1.0}), succeeded=True, exhausted=False)
    summary.add(usage(measured={"memory": 30.0, "wall_time": 3.0}, attempts=2), succeeded=True, exhausted=False)
    summary.add(usage("other", exceeded={"memory": 5.0}), succeeded=False, exhausted=True)
    stats = summary.categories["sim"]
    assert (stats.tasks, stats.failed, stats.retried, stats.peak["memory"]) == (2, 0, 1, 30.0)
    lines = summary.table().splitlines()
    assert lines[0].split()[:2] == ["category", "tasks"]
    assert lines[2].split() == ["other", "1", "1", "1", "0", "-", "-", "-", "-", "cores", "1,", "memory", "250", "MB"]
    assert lines[3].split()[:8] == ["sim", "2", "0", "0", "1", "2", "s", "-"]


def test_monitoring_record_uses_parsls_resource_columns():
    u = usage(measured={"memory": 2.0, "cpu_time": 0.5, "bytes_written": 10.0})
    record = monitoring_record(u, "run", 3, 1)
    assert (record["run_id"], record["task_id"], record["try_id"], record["hostname"]) == ("run", 3, 1, "h1")
    assert record["psutil_process_memory_resident"] == 2 * 1024 * 1024
    assert record["psutil_process_time_user"] == 0.5 and record["psutil_process_disk_write"] == 10.0
    assert "psutil_process_disk_read" not in record


def test_resource_usage_of_an_executor_future_and_of_nothing():
    from concurrent.futures import Future
    future = Future()
    assert resource_usage(future) is None
    future.resource_usage = usage()
    assert resource_usage(future).category == "sim"


class RecordingQueue:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name,) + args)


FAKE_ENGINE = types.SimpleNamespace(**{name: name for name in allocation.MODES.values()})


@pytest.mark.parametrize("mode", ["fixed", "max-seen"])
def test_category_gets_mode_maximum_and_first_guess(mode):
    queue = RecordingQueue()
    allocation.configure_category(FAKE_ENGINE, queue, "sim", mode,
                                  {"*": {"memory": 1000}}, {"sim": {"cores": 1}, "*": {"cores": 2}})
    learning = [("specify_category_min_resources", "sim", {"cores": 1})] if mode != "fixed" else []
    assert queue.calls == [("specify_category_mode", "sim", allocation.MODES[mode]), *learning,
                           ("specify_category_max_resources", "sim", {"memory": 1000}),
                           ("specify_category_first_allocation_guess", "sim", {"cores": 1})]


def test_category_without_a_table_entry_gets_only_its_mode():
    queue = RecordingQueue()
    allocation.configure_category(FAKE_ENGINE, queue, "sim", "fixed", {}, {"other": {"cores": 1}})
    assert queue.calls == [("specify_category_mode", "sim", allocation.MODES["fixed"])]


def test_unset_work_queue_values_are_left_out():
    summary = types.SimpleNamespace(cores=1.0, memory=-1, disk=0.0, gpus=None)
    assert allocation.summary_to_dict(summary, ("cores", "memory", "disk", "gpus")) == {"cores": 1.0, "disk": 0.0}
    assert allocation.summary_to_dict(None, ("cores",)) == {}


# ------------------------------------------------------------ serialization

def main_function(source, name):
    namespace = {"__name__": "__main__"}
    exec(compile(source, "script.py", "exec"), namespace)
    return namespace[name]


def test_wrap_error_is_removed():
    def f(x):
        return x
    assert serialize.unwrap(wrap_error(f)) is f
    assert serialize.unwrap(f) is f


def test_plain_main_function_uses_the_fast_form_and_rebuilds():
    f = main_function("import os\nK = 3\ndef f(x, y=2, *, z=1):\n    return os.sep, x * K + y + z\n", "f")
    data = serialize.serialize_function(wrap_error(f))
    assert data[:1] == b"F"
    rebuilt = runner.build_function(pickle.loads(data[1:]))
    assert rebuilt(1) == (os.sep, 6) and rebuilt(1, 0, z=0) == (os.sep, 3)


def test_recursive_and_closure_functions_rebuild():
    fact = main_function("def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n", "fact")
    assert runner.build_function(pickle.loads(serialize.serialize_function(fact)[1:]))(5) == 120
    outer = main_function("def outer(k):\n    def inner(x):\n        return x + k\n    return inner\n", "outer")
    inner = outer(10)
    inner.__module__ = "__main__"
    data = serialize.serialize_function(inner)
    assert data[:1] == b"F"
    assert runner.build_function(pickle.loads(data[1:]))(1) == 11


def test_functions_needing_cloudpickle_fall_back_to_it():
    f = main_function("def helper():\n    return 1\ndef f():\n    return helper()\n", "f")
    data = serialize.serialize_function(f)
    assert data[:1] == b"P" and b"cloudpickle" in data
    assert pickle.loads(data[1:])() == 1


def test_importable_functions_are_pickled_by_name():
    data = serialize.serialize_function(os.path.join)
    assert data[:1] == b"P" and b"cloudpickle" not in data


def test_plain_dumps_refuses_main_objects():
    cls = main_function("class C:\n    pass\n", "C")
    assert serialize.plain_dumps([1, "a"]) is not None
    assert serialize.plain_dumps(cls()) is None
    assert serialize.plain_dumps(lambda: 1) is None


def test_python_version_mismatch_is_reported_clearly():
    f = main_function("def f():\n    return 1\n", "f")
    info = pickle.loads(serialize.serialize_function(f)[1:])
    info["python"] = (2, 7)
    with pytest.raises(RuntimeError, match="Python 2.7 but the worker runs Python"):
        runner.build_function(info)


def test_rebuilt_exception_has_type_traceback_and_cause():
    def inner():
        raise KeyError("k")

    def outer():
        try:
            inner()
        except KeyError as e:
            raise ValueError("v") from e
    try:
        outer()
    except ValueError as e:
        described = runner.failure(e)
    ok, exc = serialize.load_outcome(pickle.dumps(described), task_id=1)
    assert not ok and isinstance(exc, ValueError) and isinstance(exc.__cause__, KeyError)
    import traceback
    assert "inner" in [f.name for f in traceback.extract_tb(exc.__cause__.__traceback__)]


def test_unpicklable_exception_becomes_remote_exception():
    described = {"ok": False, "exception": None, "type_name": "mod.Weird", "message": "m",
                 "traceback": None, "traceback_text": "Traceback ...", "cause": None}
    ok, exc = serialize.load_outcome(pickle.dumps(described), task_id=1)
    assert isinstance(exc, errors.RemoteException) and "mod.Weird: m" in str(exc)


def test_unreadable_result_is_reported():
    ok, exc = serialize.load_outcome(b"garbage", task_id=7)
    assert not ok and isinstance(exc, errors.ResultUnreadable) and "task 7" in str(exc)


# ------------------------------------------------------------------ runner

def run_program(program, folder, *arguments, identity="run.1"):
    """Run the worker program in ``folder`` as a cold task does, told that its calls file is ``identity``."""
    env = dict(os.environ, **{sandbox.CALLS_ID: identity})
    return subprocess.run([sys.executable, program, *arguments], cwd=folder, timeout=60, capture_output=True,
                          env=env, text=True)


def write_calls(folder, *calls, identity="run.1"):
    (folder / "calls").write_bytes(sandbox.calls_file(identity, calls, pickle.dumps))


def run_runner(program, tmp_path, function_bytes, *calls, results="results"):
    """Run the runner on ``calls`` ((args, kwargs) each) of one function; returns its exit code and outcomes."""
    (tmp_path / "fn").write_bytes(function_bytes)
    entries = [Call(i, "fn", pickle.dumps(call), [], []) for i, call in enumerate(calls or [((), {})])]
    write_calls(tmp_path, *entries)
    proc = run_program(program, tmp_path, "run", "calls", results)
    path = tmp_path / results
    outcomes = {}
    if path.exists():
        with open(path, "rb") as f:
            outcomes = sandbox.read_results(f)
    return proc.returncode, [pickle.loads(outcomes[i][0]) if i in outcomes else None for i in range(len(entries))]


def test_runner_writes_value(program, tmp_path):
    code, (outcome,) = run_runner(program, tmp_path, serialize.serialize_function(max), ((3, 9), {}))
    assert code == sandbox.EXIT_OK and outcome == {"ok": True, "value": 9}


def test_runner_writes_exception(program, tmp_path):
    code, (outcome,) = run_runner(program, tmp_path, serialize.serialize_function(int), (("x",), {}))
    assert code == sandbox.EXIT_OK and not outcome["ok"]
    ok, exc = serialize.load_outcome(pickle.dumps(outcome), task_id=1)
    assert isinstance(exc, ValueError) and "invalid literal" in str(exc)


def test_runner_reports_unloadable_function_as_exception(program, tmp_path):
    code, (outcome,) = run_runner(program, tmp_path, b"P" + pickle.dumps(os.path.join)[:-4])
    assert code == sandbox.EXIT_OK and not outcome["ok"]


def test_runner_reports_unpicklable_result(program, tmp_path):
    f = main_function("import threading\ndef f():\n    return threading.Lock()\n", "f")
    code, (outcome,) = run_runner(program, tmp_path, serialize.serialize_function(f))
    assert code == sandbox.EXIT_OK and not outcome["ok"]
    assert "could not be pickled" in outcome["message"]


def test_runner_exit_code_when_result_cannot_be_written(program, tmp_path):
    code, _ = run_runner(program, tmp_path, serialize.serialize_function(max), ((1, 2), {}), results="missing/dir/results")
    assert code == sandbox.EXIT_CANNOT_WRITE_RESULT


def test_runner_gives_each_call_of_a_bundle_its_own_outcome(program, tmp_path):
    code, outcomes = run_runner(program, tmp_path, serialize.serialize_function(int), (("1",), {}), (("x",), {}),
                                (("3",), {}))
    assert code == sandbox.EXIT_OK
    assert outcomes[0] == {"ok": True, "value": 1} and outcomes[2] == {"ok": True, "value": 3}
    assert not outcomes[1]["ok"] and "invalid literal" in outcomes[1]["message"]


def test_each_call_of_a_bundle_starts_in_the_sandbox_with_the_tasks_environment(program, tmp_path):
    f = main_function("import os, sys\n"
                      "def f(folder):\n"
                      "    seen = (os.getcwd(), os.environ.get('PWQ_SEEN'), sys.path[0])\n"
                      "    os.makedirs(folder)\n"
                      "    os.chdir(folder)\n"
                      "    os.environ['PWQ_SEEN'] = folder\n"
                      "    sys.path.insert(0, folder)\n"
                      "    return seen\n", "f")
    code, outcomes = run_runner(program, tmp_path, serialize.serialize_function(f), (("a",), {}), (("b",), {}))
    assert code == sandbox.EXIT_OK
    assert outcomes[0]["value"] == outcomes[1]["value"]
    assert outcomes[1]["value"][:2] == (str(tmp_path), None)


@pytest.mark.parametrize("planted", ["another run's", "another task's", "no id at all", "not a calls file"])
def test_the_runner_refuses_a_calls_file_that_is_not_its_tasks_and_loads_nothing_of_it(program, tmp_path, planted):
    from conftest import Planted
    mark = tmp_path / "loaded"
    calls = [(Planted(str(mark)),)]
    data = {"another run's": sandbox.calls_file("other.1", calls, pickle.dumps),
            "another task's": sandbox.calls_file("run.2", calls, pickle.dumps),
            "no id at all": pickle.dumps(calls),
            "not a calls file": b"left by a killed worker"}[planted]
    (tmp_path / "calls").write_bytes(data)
    done = run_program(program, tmp_path, "run", "calls", "results", identity="run.1")
    assert done.returncode == sandbox.EXIT_NOT_OURS
    assert sandbox.NOT_OURS in done.stderr and "not the calls file of task run.1" in done.stderr
    assert not mark.exists() and not (tmp_path / "results").exists()


def test_a_cut_last_frame_is_left_out():
    whole = sandbox.frame(7, b"abc", 0.5)
    cut = sandbox.FRAME.pack(8, 5, 0.5) + b"ab"
    assert sandbox.read_results(io.BytesIO(whole + cut)) == {7: (b"abc", 0.5)}
    assert sandbox.read_results(io.BytesIO(whole[:10])) == {}


# ------------------------------------------------------------------- files

def test_sandbox_names():
    assert sandbox_name("a/b.txt") == "a/b.txt"
    assert sandbox_name("/x/y.txt") == "abs/x/y.txt"
    assert sandbox_name("../up.txt").startswith("abs/")
    # What Work Queue cannot carry is escaped, one to one, folders kept
    assert sandbox_name("/my data/out 100%.txt") == "abs/my=20data/out=20100=25.txt"
    assert sandbox_name("a=b/é.txt") == "a=3Db/=C3=A9.txt"
    names = ["a b", "a=20b", "a_b", "a%20b", "a\nb", "a=b"]
    assert len({sandbox_name(n) for n in names}) == len(names)


def test_planner_rewrites_copies_and_collects_transfers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    original = File("in.txt")
    out = File(str(tmp_path / "o" / "out.txt"))
    args, kwargs, staging = FilePlanner(shared_fs=False, use_cache=True).plan(
        (original, 5), {"inputs": [File("/data/x")], "outputs": [out], "stdout": ("log.txt", "w"), "n": 1})
    assert original.local_path is None and out.local_path is None   # caller's objects untouched
    assert args[0].filepath == "in.txt" and args[1] == 5
    assert kwargs["inputs"][0].filepath == "abs/data/x"
    assert kwargs["stdout"] == ("log.txt", "w")
    assert [(f.local, f.remote, f.cache) for f in staging.inputs] == [
        (str(tmp_path / "in.txt"), "in.txt", True), ("/data/x", "abs/data/x", True)]
    assert [f.remote for f in staging.outputs] == [sandbox_name(str(tmp_path / "o" / "out.txt")), "log.txt"]
    assert (tmp_path / "o").is_dir()


def test_planner_appending_stream_sends_previous_content(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "log.txt").write_text("before")
    _, kwargs, staging = FilePlanner(shared_fs=False, use_cache=False).plan((), {"stdout": "log.txt"})
    assert staging.renames == [("log.txt.previous", "log.txt")]
    assert [f.remote for f in staging.inputs] == ["log.txt.previous"]
    assert staging.output_dirs() == []


def test_output_folders_are_listed_for_the_runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, _, staging = FilePlanner(shared_fs=False, use_cache=False).plan(
        (), {"outputs": [File("a/b/c.txt"), File("d.txt")]})
    assert staging.output_dirs() == ["a/b"]


def test_planner_shared_fs_uses_absolute_paths_and_transfers_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, kwargs, staging = FilePlanner(shared_fs=True, use_cache=False).plan(
        (File("in.txt"),), {"stderr": "err.txt"})
    assert args[0].filepath == str(tmp_path / "in.txt")
    assert kwargs["stderr"] == str(tmp_path / "err.txt")
    assert staging.inputs == [] and staging.outputs == []


def test_non_file_urls_are_left_to_parsl_staging():
    url = File("https://example.org/data.csv")
    args, _, staging = FilePlanner(shared_fs=False, use_cache=False).plan((url,), {})
    assert args[0] is url and staging.inputs == []


# ------------------------------------------------------------------ engine

def test_engine_lookup_order_and_error_message(tmp_path):
    seen = []

    def importer(name):
        seen.append(name)
        raise ImportError(f"no {name}")
    with pytest.raises(errors.EngineNotFound) as info:
        engine._find([str(tmp_path)], importer)
    assert seen == ["ndcctools.work_queue", "work_queue"]
    assert "conda install -c conda-forge ndcctools" in str(info.value)
    assert "apt-get install coop-computing-tools python3-workqueue" in str(info.value)


def test_engine_prefers_ndcctools():
    fake = types.ModuleType("ndcctools.work_queue")
    assert engine._find([], lambda name: fake) is fake


def test_debian_folder_is_not_put_on_sys_path():
    # In a process of its own: two Work Queue builds in one process share SWIG's type table, and the
    # in-process manager of test_waiting.py then crashes reading a task's resource summary (cctools 7.17.1).
    check = ("import sys; from parsl_wq import engine; before = list(sys.path); "
             "module = engine._load_from_folder('/usr/lib/python3/dist-packages'); "
             "assert module is not None and hasattr(module, 'WorkQueue'); "
             "assert sys.path == before and '/usr/lib/python3/dist-packages' not in sys.path")
    subprocess.run([sys.executable, "-P", "-c", check], check=True, timeout=60)


# ----------------------------------------------------------------- framing

def test_channel_round_trip_and_partial_frames():
    r1, w1 = os.pipe()
    sender, receiver = channel.Channel(-1, w1), channel.Channel(r1, -1)
    done = messages.TaskDone(1, 0, "SUCCESS", 0, "out")
    sender.send(done)
    sender.send(messages.Stop())
    assert receiver.receive(timeout=5) == [done, messages.Stop()]
    data = pickle.dumps(done)
    os.write(w1, channel._HEADER.pack(len(data), 0) + data[:5])
    assert receiver.receive(timeout=0.1) == []
    os.write(w1, data[5:])
    assert receiver.receive(timeout=5) == [done]
    os.close(w1)
    with pytest.raises(EOFError):
        receiver.receive(timeout=5)
    os.close(r1)


def test_a_large_message_arrives_whole_and_a_length_past_4_gib_is_a_length():
    import threading
    r1, w1 = os.pipe()
    sender, receiver = channel.Channel(-1, w1), channel.Channel(r1, -1)
    big = messages.TaskDone(1, 0, "SUCCESS", 0, "", outcome=os.urandom(1 << 20) * 48)   # 48 MiB
    writer = threading.Thread(target=lambda: (sender.send(big), sender.send(messages.Stop())))
    writer.start()
    got = []
    while len(got) < 2:
        got += receiver.receive(timeout=60)
    writer.join(timeout=60)
    assert got == [big, messages.Stop()]
    os.write(w1, channel._HEADER.pack(5 << 30, 0) + b"start of a 5 GiB message")   # no limit below memory's
    assert receiver.receive(timeout=0.1) == []
    os.close(w1)
    os.close(r1)


def test_payloads_travel_out_of_band_into_buffers_of_their_own_split_at_any_point():
    """A PickleBuffer of bytes arrives as a read-only view of a bytearray of its own; frames cut anywhere parse."""
    import fcntl
    import pickle as pickle_module
    import tempfile
    payloads = [os.urandom(3000), b"", os.urandom(70_000)]
    sent = [messages.TaskDone(i, 0, "SUCCESS", 0, "", outcome=pickle_module.PickleBuffer(p))
            for i, p in enumerate(payloads)] + [messages.Stop()]
    with tempfile.TemporaryFile() as f:
        sender = channel.Channel(-1, f.fileno())
        for message in sent:
            sender.send(message)
        f.seek(0)
        wire = f.read()
    for cut in (1, 7, 13, 100, 3050, len(wire) - 1):      # the same bytes, arriving in two pieces
        r2, w2 = os.pipe()
        fcntl.fcntl(w2, 1031, 1 << 20)      # F_SETPIPE_SZ: the whole frame fits, no reader needed
        receiver = channel.Channel(r2, -1)
        got = []
        for piece in (wire[:cut], wire[cut:]):
            os.write(w2, piece)
            while True:
                arrived = receiver.receive(timeout=0.1)
                if not arrived:
                    break
                got += arrived
        os.close(w2)
        os.close(r2)
        assert [type(m) for m in got] == [messages.TaskDone] * 3 + [messages.Stop], cut
        assert [bytes(m.outcome) for m in got[:3]] == payloads, cut
        assert all(isinstance(m.outcome, memoryview) and type(m.outcome.obj) is bytearray for m in got[:3])


def test_a_held_send_never_waits_for_the_reader_and_keeps_the_order():
    import pickle as pickle_module
    r1, w1 = os.pipe()
    sender, receiver = channel.Channel(-1, w1), channel.Channel(r1, -1)
    sender.hold_output()
    payload = os.urandom(300_000)       # more than a pipe holds
    sender.send(messages.TaskDone(1, 0, "SUCCESS", 0, "", outcome=pickle_module.PickleBuffer(payload)))
    sender.send(messages.Stop())        # returns at once, though nobody reads yet
    assert sender.pending()
    got = []
    while len(got) < 2:
        sender.flush()
        got += receiver.receive(timeout=0.05)
    assert bytes(got[0].outcome) == payload and got[1] == messages.Stop() and not sender.pending()
    os.close(w1)
    os.close(r1)


def test_bad_std_stream_spec_is_rejected_at_submit():
    import typeguard
    with pytest.raises(typeguard.TypeCheckError):
        FilePlanner(shared_fs=False, use_cache=False).plan((), {"stdout": ("out.txt", None)})


def test_factory_command_carries_password_catalog_and_slurm_memory():
    from parsl_wq.client.factory import WorkerFactory
    command = WorkerFactory(batch_type="slurm", min_workers=0, max_workers=3, cores=4, memory=8000).command(
        ["-M", "proj"], "/scratch", "/run/pw", "127.0.0.1:9097")
    assert command[:3] == ["work_queue_factory", "-T", "slurm"]
    assert "--cores=4" in command and not any(c.startswith("--memory=") for c in command)
    assert command[command.index("--batch-options") + 1] == "--mem=8000"
    assert command[command.index("--extra-options") + 1] == "--memory 8000"
    assert command[command.index("--password") + 1] == "/run/pw"
    assert "--catalog=127.0.0.1:9097" in command and command[-2:] == ["-M", "proj"]
    local = WorkerFactory(memory=500).command(["127.0.0.1", "1024"], "/s", None, None)
    assert "--memory=500" in local and "--password" not in local and local[-2:] == ["127.0.0.1", "1024"]


def test_password_file_is_new_random_and_owner_only(tmp_path):
    from parsl_wq.client.security import create_password_file, readable_by_others
    first = create_password_file(str(tmp_path))
    content = open(first).read()
    os.chmod(first, 0o644)
    second = create_password_file(str(tmp_path))
    assert second == first and os.path.isabs(second)
    assert os.stat(second).st_mode & 0o777 == 0o600 and not readable_by_others(second)
    assert open(second).read() != content and len(content.strip()) == 64


# ------------------------------------------------------------- warm host's watch

def _sleeping_group_leader():
    """A child process that leads its own process group and sleeps, as a warm app process does."""
    import time
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        time.sleep(60)
        os._exit(0)
    return pid


def test_the_warm_host_stops_an_app_past_its_declared_time_and_names_the_limit():
    import signal
    import socket

    from parsl_wq.worker import app_process, host
    pid = _sleeping_group_leader()
    worker_side, host_side = socket.socketpair()
    reports_r, reports_w = os.pipe()
    os.close(reports_w)
    ended = host.watch(pid, host_side, {"wall_time": 0.3}, 0.1, app_process.Reports(reports_r))
    assert ended.code == 128 + signal.SIGKILL and ended.reaped
    assert ended.exceeded == {"wall_time": 0.3}
    worker_side.close()


def test_the_warm_host_stops_an_app_whose_worker_gave_up_the_call():
    import signal
    import socket

    from parsl_wq.worker import app_process, host
    pid = _sleeping_group_leader()
    worker_side, host_side = socket.socketpair()
    worker_side.close()         # the worker cancelled the task, or is stopping
    reports_r, reports_w = os.pipe()
    os.close(reports_w)
    ended = host.watch(pid, host_side, {}, 1, app_process.Reports(reports_r))
    assert ended.code == 128 + signal.SIGKILL and ended.exceeded == {}


def test_the_warm_host_acts_on_what_an_app_reported_though_it_ended_before_anything_was_read():
    import socket

    from parsl_wq.worker import app_process, host
    reports_r, reports_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(reports_w, app_process.Reports.FUNCTION_LOADED + b"pwq_fn_1.pkl\n")
        os._exit(0)
    os.close(reports_w)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)     # ended, and left for watch to reap
    worker_side, host_side = socket.socketpair()
    reports = app_process.Reports(reports_r)
    ended = host.watch(pid, host_side, {}, 1, reports)
    assert ended.code == 0 and ended.reaped and reports.functions_loaded == ["pwq_fn_1.pkl"]
    worker_side.close()


def test_the_warm_host_answers_when_the_app_process_reports_its_end_and_reaps_it_after():
    """The app process says how it ended (``report_done``) before it exits; the host takes that as the end, with
    the CPU time and peak memory the app process measured, and reaps it once the task has its answer."""
    import socket
    import time

    from parsl_wq.worker import app_process, host
    reports_r, reports_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        deadline = time.process_time() + 0.2
        while time.process_time() < deadline:   # CPU time to report
            pass
        app_process.report_done(reports_w, 7)
        time.sleep(60)                          # as if its exit took long: the host does not wait for it
        os._exit(0)
    os.close(reports_w)
    worker_side, host_side = socket.socketpair()
    started = time.monotonic()
    ended = host.watch(pid, host_side, {}, 1, app_process.Reports(reports_r))
    assert time.monotonic() - started < 10
    assert ended.code == 7 and not ended.reaped and ended.cpu >= 0.2 and ended.peak_kb > 1000
    host.reap_exiting(pid)
    assert not os.path.exists(f"/proc/{pid}")      # killed and reaped: no zombie
    worker_side.close()


def test_a_done_line_of_the_wrong_shape_is_ignored_and_the_host_waits_for_the_exit():
    from parsl_wq.worker import app_process
    reports_r, reports_w = os.pipe()
    os.write(reports_w, app_process.Reports.DONE + b"not numbers\n" + app_process.Reports.DONE + b"0 1.5\n")
    os.close(reports_w)
    reports = app_process.Reports(reports_r)
    assert reports.read() and reports.done is None
    reports.close()


def test_the_door_takes_pid_and_sandbox_lines_and_refuses_the_rest(tmp_path):
    from parsl_wq.worker import door
    assert door.parse_request(b"123 4 /a b/c") == (123, 4, "/a b/c")
    for line in (b"", b"123", b"123 4", b"123 /tmp", b"123 4 relative", b"1 4 /tmp", b"x 4 /tmp", b"-5 4 /tmp",
                 b"12 x /tmp", b"12 4 /a\0b"):
        assert door.parse_request(line) is None, line
    opened = door.Door(str(tmp_path))
    try:
        pid, calls, block, fd, token = door.read_door(str(tmp_path))
        assert pid == os.getpid() and (calls, block, fd) == (opened.calls_w, opened.block_r, opened.door_fd)
        assert door.door_open(str(tmp_path)) == (pid, calls, block)
        assert os.stat(tmp_path / door.DOOR).st_mode & 0o777 == 0o600
        with open("/proc/%d/fd/%d" % (pid, calls), "wb", buffering=0) as f:     # as pwq_call.sh sends
            f.write(b"77 4 /x/y\nnot a request\n88 4 /z")
        assert opened.requests() == [(77, 4, "/x/y")]   # and the line that has not ended waits for its end
        with open("/proc/%d/fd/%d" % (pid, calls), "wb", buffering=0) as f:
            f.write(b"9\n")
        assert opened.requests() == [(88, 4, "/z9")]
    finally:
        opened.close()
    assert not (tmp_path / door.DOOR).exists()
    assert door.door_open(str(tmp_path)) is None


def test_a_door_whose_pid_another_process_took_is_no_door(tmp_path):
    """A supervisor killed without removing its door: a process that has its pid since holds no descriptor that
    reads the token."""
    from parsl_wq.worker import door
    (tmp_path / door.DOOR).write_text("%d 0 1 2 %s\n" % (os.getpid(), "f" * 32))
    assert door.read_door(str(tmp_path)) is not None and door.door_open(str(tmp_path)) is None


def _sandbox_beside_a_host_folder(tmp_path):
    """A task's sandbox with ``pwq_call.sh``, beside an empty host folder, as on a worker."""
    from parsl_wq.worker import door
    folder, sandbox = tmp_path / "pwq_warm.k", tmp_path / "t.1"
    folder.mkdir(mode=0o700)
    sandbox.mkdir()
    shutil.copy(os.path.join(os.path.dirname(door.__file__), "call.sh"), sandbox / "pwq_call.sh")
    return str(folder), str(sandbox)


def test_a_call_is_answered_in_its_shells_output_and_the_shell_woken(tmp_path):
    """The host's side of ``pwq_call.sh``: a real shell that sources it, a stand-in supervisor (a door in this
    process) and a ``Call`` answered from here."""
    import select

    from parsl_wq.protocol.warm import CALL_VARIABLE, WarmAnswer, WarmCall, decode_answer, encode_call, task_command
    from parsl_wq.worker import door
    folder, sandbox = _sandbox_beside_a_host_folder(tmp_path)
    opened = door.Door(folder)
    try:
        command = task_command("../pwq_warm.k", "echo no host; ", "pwq_worker.pyz")
        shell = subprocess.Popen(["/bin/sh", "-c", command], cwd=sandbox, stdout=subprocess.PIPE, text=True,
                                 env={"PATH": "/nonexistent", "TMPDIR": "/the/task's tmp",
                                      CALL_VARIABLE: encode_call(WarmCall({}, {}, 1, None, None, "x"))})
        assert select.select([opened], [], [], 30)[0]
        [(pid, fd, where)] = opened.requests()
        assert pid == shell.pid and where == sandbox
        call = door.Call(pid, fd, where)
        assert call.read().calls_id == "x" and call.tmpdir == "/the/task's tmp"
        answer = WarmAnswer(0, "out", {"wall_time": 1.0}, {})
        call.answer(answer)
        call.close()
        output, _ = shell.communicate(timeout=30)
    finally:
        opened.close()
    assert shell.returncode == 0 and decode_answer(output) == answer, output
    assert output.count("\n") == 1         # the answer alone: the shell printed nothing of its own


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "no-pidfd"])
def test_a_call_sees_its_shell_end_and_wakes_a_shell_it_did_not_answer(pidfd):
    """With a pidfd (Linux 5.3), and without one (older kernels: /proc and kill): closing a call that was never
    answered wakes its shell, and the shell's end is seen, dead but not yet reaped included."""
    from conftest import wait_until
    from parsl_wq.worker import door
    shell = subprocess.Popen(["/bin/sh", "-c", 'trap "echo woken; exit 0" USR1; echo waiting; read x'],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert shell.stdout.readline() == "waiting\n"
        call, watcher = door.Call(shell.pid, 1, "/nonexistent"), door.Call(shell.pid, 1, "/nonexistent")
        for c in (call, watcher):
            if not pidfd and c.pidfd is not None:
                os.close(c.pidfd)
                c.pidfd = None
        assert (watcher.fileno() is not None) == pidfd and not watcher.ended()
        call.close()                                    # never answered
        assert shell.stdout.readline() == "woken\n"
        assert wait_until(watcher.ended, timeout=10)    # not reaped yet: this test has not waited for it
        watcher.woken = True
        watcher.close()
    finally:
        shell.kill()
        shell.wait()


@pytest.mark.parametrize("door_state", ["none", "stale", "closing"])
def test_a_warm_tasks_shell_runs_its_start_steps_intact_where_no_door_answers(tmp_path, door_state):
    """No door, a dead supervisor's door (this test's pid, descriptors it does not have): the task's shell runs
    START, quoting intact. A supervisor that ends after the call was sent: the shell ends, without an answer."""
    from parsl_wq.protocol.warm import task_command
    from parsl_wq.worker import door
    folder, sandbox = _sandbox_beside_a_host_folder(tmp_path)
    if door_state == "stale":
        with open(os.path.join(folder, door.DOOR), "w") as f:
            f.write("%d 900 901 902 %s\n" % (os.getpid(), "f" * 32))
    opened = door.Door(folder) if door_state == "closing" else None
    start = """X='it''s'; printf 'start ran: %s %s\\n' "$X" "$(printf '%s' 'a\\b')"; PY=/bin/echo; """
    command = task_command("../pwq_warm.k", start, "pwq_worker.pyz")
    shell = subprocess.Popen(["/bin/sh", "-c", command], cwd=sandbox, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin", "PWQ_CALL": "{}"})
    try:
        if opened is not None:
            import select
            assert select.select([opened], [], [], 30)[0] and opened.requests()[0][0] == shell.pid
            opened.close()              # the supervisor ends, with the call unanswered
        out, err = shell.communicate(timeout=30)
    finally:
        shell.kill()
    if door_state == "closing":
        assert (out, shell.returncode) == ("", 0)
    else:
        assert (out, err) == ("start ran: its a\\b\npwq_worker.pyz warm ../pwq_warm.k\n", "")


def test_a_packed_environment_named_with_a_path_is_refused():
    from parsl_wq.protocol.warm import WarmCall
    from parsl_wq.worker.packed import PackedHosts
    from parsl_wq.worker.door import Call
    hosts = PackedHosts("/nonexistent", "unused")
    for name, tarball in (("../../x", "pwq_env_x.tar.gz"), ("abc", "../abc.tar.gz"), ("a/b", "t.tar.gz")):
        call = WarmCall({}, {}, 1, None, {"name": name, "tarball": tarball})
        answer = hosts.hand(Call(os.getpid(), 1, "/nonexistent"), call)
        assert answer.exit_code != 0 and "a name may not hold a path" in answer.output
    assert hosts.hosts == {}


# ----------------------------------------------------------------- bundles

def held_app(task_id, category="c", inputs=(), outputs=(), cores=None):
    from parsl_wq.protocol.messages import FileTransfer, SubmitTask
    return SubmitTask(task_id=task_id, command="run", category=category,
                      inputs=tuple(FileTransfer(*f) for f in inputs), outputs=tuple(FileTransfer(*f) for f in outputs),
                      call=Call(task_id, "fn", b"", [], []), resources={"cores": cores} if cores else {})


def test_a_kind_of_app_not_yet_measured_goes_alone():
    from parsl_wq.manager.bundles import Backlog
    backlog = Backlog(max_bundle=100)
    for i in range(50):
        backlog.add(held_app(i))
    assert [m.task_id for m in backlog.take(slots=1)] == [0] and len(backlog) == 49


def test_bundles_grow_with_the_backlog_and_stay_under_the_time_and_size_caps():
    from parsl_wq.manager.bundles import Backlog
    backlog = Backlog(max_bundle=100, bundle_seconds=1.0)
    backlog.measured("c", seconds=0.5, apps=50)     # 10 ms per app: at most 100 per second
    for i in range(1000):
        backlog.add(held_app(i))
    assert len(backlog.take(slots=2)) == 100        # the size cap
    backlog.measured("c", seconds=0.05, apps=1)     # slower now: 50 ms per app counts at once
    assert len(backlog.take(slots=2)) == 20         # the time cap
    small = Backlog(max_bundle=100)
    small.measured("c", seconds=0.01, apps=10)
    for i in range(12):
        small.add(held_app(i))
    assert len(small.take(slots=2)) == 3            # a small backlog is shared among the slots
    assert [m.task_id for m in small.take(slots=2)] == [3, 4, 5]


def test_apps_of_a_second_or_more_always_go_alone():
    from parsl_wq.manager.bundles import Backlog
    backlog = Backlog(max_bundle=100)
    backlog.measured("c", seconds=1.2, apps=1)
    for i in range(10):
        backlog.add(held_app(i))
    assert len(backlog.take(slots=1)) == 1


def test_only_apps_of_one_kind_share_a_bundle_and_the_longest_waiting_kind_goes_first():
    from parsl_wq.manager.bundles import Backlog
    backlog = Backlog(max_bundle=100)
    for category in ("a", "b"):
        backlog.measured(category, seconds=0.01, apps=1)
    backlog.add(held_app(0, "b"))
    for i in range(1, 6):
        backlog.add(held_app(i, "a"))
    backlog.add(held_app(6, "b", cores=2))
    backlog.add(held_app(7, "b"))
    bundles = [[m.task_id for m in backlog.take(slots=1)] for _ in range(6)]
    assert bundles == [[0], [1, 2, 3], [4], [5], [6], [7]] and len(backlog) == 0


def test_apps_whose_sandbox_names_collide_are_left_for_a_later_bundle():
    from parsl_wq.manager.bundles import Backlog
    backlog = Backlog(max_bundle=100)
    backlog.measured("c", seconds=0.01, apps=1)
    function = ("/run/fn.pkl", "fn.pkl", True)
    backlog.add(held_app(0, inputs=[function, ("/a/in.txt", "in.txt", False)], outputs=[("/a/out", "out", False)]))
    backlog.add(held_app(1, inputs=[function, ("/b/in.txt", "in.txt", False)]))     # same name, other file
    backlog.add(held_app(2, inputs=[function], outputs=[("/a/out", "out", False)]))  # same output
    backlog.add(held_app(3, inputs=[function, ("/a/in.txt", "in.txt", False)]))     # the same input: shared
    backlog.add(held_app(4, inputs=[function, ("/x", "out", False)]))               # reads what 0 writes
    assert [m.task_id for m in backlog.take(slots=1)] == [0, 3]
    assert [m.task_id for m in backlog.take(slots=1)] == [1, 2]
    assert [m.task_id for m in backlog.take(slots=1)] == [4]


def test_the_runner_times_each_app_s_function_only(program, tmp_path):
    (tmp_path / "fn").write_bytes(serialize.serialize_function(time.sleep))
    write_calls(tmp_path, Call(5, "fn", pickle.dumps(((0.2,), {})), [], []))
    assert run_program(program, tmp_path, "run", "calls", "results").returncode == sandbox.EXIT_OK
    with open(tmp_path / "results", "rb") as f:
        (_, seconds), = sandbox.read_results(f).values()
    assert 0.2 <= seconds < 1.0


# ------------------------------------------------------- the manager's view of workers

TRANSACTIONS = """\
# time manager_pid WORKER worker_id host:port CONNECTION
1000000 7 WORKER w-1 10.0.0.5:4000  CONNECTION
1100000 7 WORKER w-1 RESOURCES {"memory":[2000,"MB"],"disk":[5000,"MB"],"cores":[2,"cores"]}
1200000 7 WORKER w-2 10.0.0.6:4001  CONNECTION
1300000 7 TASK 1 RUNNING 10.0.0.5:4000  FIRST_RESOURCES {"cores":[1,"cores"]}
1400000 7 TASK 2 RUNNING 10.0.0.5:4000  FIRST_RESOURCES {"cores":[1,"cores"]}
1500000 7 TASK 1 WAITING_RETRIEVAL 10.0.0.5:4000
"""


def test_the_worker_log_follows_joins_resources_tasks_and_departures(tmp_path):
    from parsl_wq.manager.queue_state import WorkerLog
    path = tmp_path / "transactions.log"
    path.write_text(TRANSACTIONS + "1600000 7 WORKER w-2 RESOU")      # a line still being written
    log = WorkerLog(str(path))
    log.update()
    assert log.connected() == [
        {"id": "w-1", "address": "10.0.0.5:4000", "connected": 1.0, "memory": 2000, "disk": 5000, "cores": 2,
         "tasks": 1},
        {"id": "w-2", "address": "10.0.0.6:4001", "connected": 1.2, "tasks": 0}]
    joined, left = log.take_changes()
    assert [w["id"] for w in joined] == ["w-1"] and left == []
    with open(path, "a") as f:
        f.write('RCES {"cores":[1,"cores"],"memory":[500,"MB"]}\n'
                "1700000 7 WORKER w-1 10.0.0.5:4000  DISCONNECTION FAILURE\n")
    log.update()
    assert [(w["id"], w["cores"]) for w in log.connected()] == [("w-2", 1)]
    joined, left = log.take_changes()
    assert [w["id"] for w in joined] == ["w-2"] and [(w["id"], w["left"]) for w in left] == [("w-1", 1.7)]
    assert log.take_changes() == ([], [])
    assert log.largest == {"cores": 2, "memory": 2000, "disk": 5000}     # w-1's, though it left


def test_the_run_status_counts_apps_and_keeps_the_last_failures(tmp_path):
    from parsl_wq.client.run_status import STATUS, RunStatus, load_json, read_tasks
    status = RunStatus(str(tmp_path), UsageSummary())
    for i in range(14):
        status.submitted("c", "app")
    usage = messages.TaskUsage("c", {"cores": 1.0}, {}, {}, 1, host="h", started=10.0, ended=11.0)
    for i in range(12):
        status.finished(i, "c", "app", 9.0, messages.TaskDone(i, 0, "SUCCESS", 0, "", usage, seconds=0.5),
                        ValueError(f"bad {i}\nsecond line") if i % 2 else None)
    status.queue_state(messages.QueueState(12.0, running={"c": 1}, workers=[]))
    status.close()
    written = load_json(str(tmp_path / STATUS))
    assert written["apps"]["c"] == {"apps": ["app"], "submitted": 14, "done": 6, "failed": 6, "running": 1,
                                    "waiting": 1}
    assert [f["error"] for f in written["failures"]] == [f"bad {i}" for i in (1, 3, 5, 7, 9, 11)]
    assert written["ended"] is not None
    rows = read_tasks(str(tmp_path))
    assert len(rows) == 12 and rows[1]["result"] == "ValueError" and rows[0]["seconds"] == 0.5


# ------------------------------------------------------------------ learned labels for warm tasks

def test_labels_round_up_as_work_queue_does():
    from parsl_wq.manager import learning
    assert [learning.round_up(v, 250) for v in (0, 12, 250, 251)] == [0, 250, 250, 500]
    assert learning.measured_cores(1.05) == 1 and learning.measured_cores(0.3) == 0.3
    assert learning.max_seen([(12, 1.0)], 250) == 250           # 12 + 83, rounded up
    assert learning.max_seen([(200, 1.0), (90, 1.0)], 250) == 500
    assert learning.max_seen([(0.3, 1.0)], 1) == 1


def test_max_throughput_takes_the_bucket_that_finishes_most_tasks_per_second():
    from parsl_wq.manager import learning
    # Nine tasks of 1 core and one of 2, a second each: 1 core each (the one that outgrows it runs again at 2)
    # finishes more per second than 2 cores each.
    assert learning.max_throughput([(1, 1.0)] * 9 + [(2, 1.0)], 1, top=2) == 1
    # Half and half: 2 cores each wins.
    assert learning.max_throughput([(1, 1.0)] * 5 + [(2, 10.0)] * 5, 1, top=2) == 2


def test_labels_wait_for_the_window_leave_declared_resources_and_keep_under_the_maximum():
    from parsl_wq.manager import learning
    labels = learning.Labels("max-seen", window=2, maximum={"*": {"memory": 400}})
    labels.measured("c", {"cores": 0.9, "memory": 380.0, "disk": 1.0, "wall_time": 1.0})
    assert labels.label("c", {}) == {}                          # one measurement, window 2
    labels.measured("c", {"cores": 0.2, "memory": 10.0, "disk": 1.0, "wall_time": 1.0})
    assert labels.label("c", {}) == {"cores": 1, "memory": 400, "disk": 250}
    assert labels.label("c", {"memory": 100}) == {"cores": 1, "disk": 250}
    assert labels.retry_allocation("c") == {"memory": 400}
    assert learning.Labels("fixed", 1).label("c", {}) == {}


@pytest.mark.parametrize("mode", ["max-seen", "max-throughput"])
def test_a_label_never_passes_the_largest_worker_seen(mode):
    """Measured cores can pass a worker's (an app that runs more threads than it declared): a label of 4 cores
    would leave the category's tasks waiting for ever on 2-core workers. Work Queue caps it at the largest
    worker seen (category.c, max_worker), and so does the manager."""
    from parsl_wq.manager import learning
    largest = {}        # the manager's WorkerLog.largest, filled as workers join
    labels = learning.Labels(mode, window=1, largest=largest)
    labels.measured("c", {"cores": 3.4, "memory": 700.0, "disk": 1.0, "wall_time": 1.0})
    assert labels.label("c", {})["cores"] == 4                 # no worker seen yet: nothing to cap by
    largest.update(cores=2, memory=800, disk=4000, gpus=0)
    # max-seen: 700 MB + a third of a bucket, rounded up, is 1000 MB: capped too; max-throughput: 750 MB
    assert labels.label("c", {}) == {"cores": 2, "memory": 800 if mode == "max-seen" else 750, "disk": 250}


@pytest.mark.parametrize("alive", [True, False], ids=["worker-is-an-ancestor", "worker-is-gone"])
def test_the_warm_caller_finds_its_worker_among_its_ancestors_by_the_workspace_name(tmp_path, alive):
    """The caller's worker is the one its workspace is named after (worker-UID-PID), while it is an ancestor;
    a process of that pid that is not one (the worker died, a subreaper took the task) is refused."""
    other = subprocess.Popen(["sleep", "30"])
    try:
        worker = os.getpid() if alive else other.pid
        sandbox = tmp_path / f"worker-{os.getuid()}-{worker}" / "t.1"
        sandbox.mkdir(parents=True)
        found = subprocess.run(
            [sys.executable, "-c", "from parsl_wq.worker.caller import NoHost, running_worker\n"
             "try: print(running_worker('../pwq_warm.k'))\nexcept NoHost as e: print(e)"],
            cwd=sandbox, capture_output=True, text=True, check=True).stdout.strip()
    finally:
        other.kill()
        other.wait()
    assert found == (str(worker) if alive else f"the worker that ran this task (pid {worker}) is gone")


def _in_a_fork(work):
    """Run ``work()`` in a fork of this process; what it returns (bytes)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.write(w, work())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


def test_a_spare_has_the_pages_an_earlier_fork_wrote_copied_before_its_call():
    import ctypes
    import resource
    from parsl_wq.worker import pages
    if pages.prepare() is None:
        pytest.skip("this kernel does not take madvise(MADV_POPULATE_WRITE) (Linux 5.14)")
    size = 256 * pages.PAGE
    buffer = bytearray(size)          # present in this process, shared with its forks until they write
    start = ctypes.addressof((ctypes.c_char * size).from_buffer(buffer))
    first_page = -(-start // pages.PAGE) * pages.PAGE
    pages_of_buffer = (start + size - first_page) // pages.PAGE

    def write_all():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for offset in range(first_page - start, size, pages.PAGE):
            buffer[offset] = 1
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    def learn():
        mappings = pages.writable_mappings()
        write_all()
        return pages.encode(pages.written(mappings))
    runs = pages.decode(_in_a_fork(learn))
    learned = {run_start + i * pages.PAGE for run_start, count in runs for i in range(count)}
    assert {first_page + i * pages.PAGE for i in range(pages_of_buffer)} <= learned

    idle_r, idle_w = os.pipe()      # no call comes
    try:
        def copied_then_written():
            copied = pages.copy_ahead([(pages.PAGE, 4)] + runs, idle_r)     # a run not mapped is skipped
            return b"%d %d" % (copied, write_all())
        copied, faults_after_copy = map(int, _in_a_fork(copied_then_written).split())
        faults_without = int(_in_a_fork(lambda: b"%d" % write_all()))
        os.write(idle_w, b"{}")     # a call came: nothing more is copied
        stopped = int(_in_a_fork(lambda: b"%d" % pages.copy_ahead(runs, idle_r)))
    finally:
        os.close(idle_r)
        os.close(idle_w)
    assert faults_without >= pages_of_buffer
    assert copied == len(runs) + 1 and faults_after_copy < pages_of_buffer // 8, (copied, faults_after_copy)
    assert stopped == 0


def test_pages_travel_as_runs_and_a_bad_line_is_refused():
    from parsl_wq.worker import pages
    runs = [(0x7f0000001000, 3), (0x55aa000, 1)]
    assert pages.decode(pages.encode(runs)) == runs
    assert pages.decode(b"") == []
    with pytest.raises(ValueError):
        pages.decode(b"7f00:zz")


def test_where_the_kernel_refuses_the_advice_nothing_is_copied_ahead(monkeypatch):
    from parsl_wq.worker import pages
    refuses = lambda *args: -1      # noqa: E731  (a kernel before 5.14: EINVAL)
    assert not pages.knows_populate_write(refuses)
    release = tuple(int(n) for n in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    if release >= (5, 14):      # the kernel that has the advice says so
        import ctypes
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        assert pages.knows_populate_write(madvise)
    monkeypatch.setattr(pages, "_madvise", False)   # what prepare() keeps after such an answer
    r, w = os.pipe()
    try:
        assert pages.prepare() is None
        assert pages.copy_ahead([(pages.PAGE, 4)], r) == 0
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("reports_its_end", [True, False])
def test_the_cpu_a_spare_used_before_its_call_is_not_counted_as_the_apps(reports_its_end):
    """A spare copies pages ahead while it waits (CPU time of its own); cores = CPU / wall must not count it,
    whether the app process reports its end or is reaped: a light app measured at 3 cores got a label no
    2-core worker could take, and waited for ever."""
    from parsl_wq.worker.app_process import Reports
    from parsl_wq.worker.host import watch
    reports_r, reports_w = os.pipe()
    task_side, host_side = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(reports_w, b"=called 0.5\n")
            if reports_its_end:
                os.write(reports_w, b"=done 0 0.75 1000 0.01\n")     # exit code, CPU, peak KB, seconds run
                time.sleep(5)       # still exiting when the host answers
            else:
                deadline = time.process_time() + 0.1    # CPU of its own, less than it said it had used before
                while time.process_time() < deadline:
                    pass
        finally:
            os._exit(0)
    os.close(reports_w)
    reports = Reports(reports_r)
    try:
        ended = watch(pid, host_side, {}, 1, reports)
    finally:
        if reports_its_end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        reports.close()
        task_side.close()
        host_side.close()
    assert ended.reaped is not reports_its_end
    if reports_its_end:
        assert ended.cpu == pytest.approx(0.25)
        assert reports.ran == 0.01
    else:
        assert ended.cpu == 0.0         # 0.1 s used in all, 0.5 s of it before the call
