"""The executor against real work_queue_worker processes."""

import os
import traceback

import pytest
from parsl.data_provider.files import File
from parsl.executors.errors import InvalidResourceSpecification as ParslInvalidResourceSpecification

import apps
from conftest import wait_until
from parsl_wq import InvalidResourceSpecification

TIMEOUT = 60


def executor_of(dfk):
    return dfk.executors["WorkQueueExecutor"]


def test_python_app_returns_value(dfk):
    assert apps.add(2, 3).result(timeout=TIMEOUT) == 5


def test_many_tasks_all_complete(dfk):
    futures = [apps.add(i, i) for i in range(50)]
    assert [f.result(timeout=TIMEOUT) for f in futures] == [2 * i for i in range(50)]


def test_chosen_port_is_reported(dfk):
    port = executor_of(dfk).worker_port
    assert isinstance(port, int) and port > 0
    assert str(port) in executor_of(dfk).worker_command


def test_exception_keeps_its_type_and_remote_traceback(dfk):
    with pytest.raises(ValueError, match="boom") as info:
        apps.raise_value_error("boom").result(timeout=TIMEOUT)
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "raise_value_error" in frames


def test_exception_cause_chain_survives(dfk):
    with pytest.raises(RuntimeError, match="outer") as info:
        apps.raise_with_cause().result(timeout=TIMEOUT)
    assert isinstance(info.value.__cause__, KeyError)
    frames = [frame.name for frame in traceback.extract_tb(info.value.__cause__.__traceback__)]
    assert "_inner_failure" in frames


def test_env_is_applied_to_tasks(dfk):
    assert apps.read_env("PARSL_WQ_TEST_VAR").result(timeout=TIMEOUT) == "from-env"


def test_parsl_retries_rerun_a_failed_app(dfk, tmp_path):
    counter = tmp_path / "counter"
    dfk.config.retries = 2
    try:
        assert apps.fail_until(str(counter), 2).result(timeout=TIMEOUT) == 2
    finally:
        dfk.config.retries = 0
    assert counter.read_text() == "xxx"


def test_input_and_output_files_are_staged(dfk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("ab")
    absolute = tmp_path / "sub" / "b.txt"
    absolute.parent.mkdir()
    absolute.write_text("cd")
    future = apps.concatenate(inputs=[File("a.txt"), File(str(absolute))], outputs=[File("out/upper.txt")])
    assert future.result(timeout=TIMEOUT) == "abcd"
    future.outputs[0].result(timeout=TIMEOUT)
    assert (tmp_path / "out" / "upper.txt").read_text() == "ABCD"


def test_positional_and_keyword_files_are_inputs(dfk, tmp_path):
    (tmp_path / "p.txt").write_text("pos")
    (tmp_path / "k.txt").write_text("kw")
    result = apps.read_positional(File(str(tmp_path / "p.txt")), other=File(str(tmp_path / "k.txt")))
    assert result.result(timeout=TIMEOUT) == "poskw"


def test_bash_app_stdout_and_stderr_come_back(dfk, tmp_path):
    out, err = tmp_path / "echo.out", tmp_path / "echo.err"
    apps.echo("hi", stdout=str(out), stderr=(str(err), "w")).result(timeout=TIMEOUT)
    assert out.read_text() == "hi\n"
    assert err.read_text().endswith("hi\n")   # after Parsl's own header
    apps.echo("again", stdout=str(out)).result(timeout=TIMEOUT)
    assert out.read_text() == "hi\nagain\n"   # the default mode appends


def test_files_whose_names_work_queue_cannot_carry_come_back(dfk, tmp_path, monkeypatch):
    """A space, a '%', an '=' and a non-ASCII letter in the names of inputs, outputs and a bash app's stdout,
    absolute and relative: Work Queue loses such an output file (the app succeeds, the file never comes), so
    each travels under an escaped name."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "my data %"
    folder.mkdir()
    (folder / "in put=1 100%é.txt").write_text("ab")
    (tmp_path / "rel in.txt").write_text("cd")
    out, relative = folder / "out é 100%.txt", tmp_path / "rel out" / "x y.txt"
    future = apps.concatenate(inputs=[File(str(folder / "in put=1 100%é.txt")), File("rel in.txt")],
                              outputs=[File(str(out))])
    assert future.result(timeout=TIMEOUT) == "abcd"
    future.outputs[0].result(timeout=TIMEOUT)
    assert out.read_text() == "ABCD"
    assert apps.concatenate(inputs=[File("rel in.txt")], outputs=[File(str(folder / "plain.txt"))]).result(
        timeout=TIMEOUT) == "cd"
    assert (folder / "plain.txt").read_text() == "CD"
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".pwq-")]    # each moved into place
    assert apps.concatenate(inputs=[File("rel in.txt")], outputs=[File("rel out/x y.txt")]).result(timeout=TIMEOUT)
    assert relative.read_text() == "CD"
    log = folder / "echo out.txt"
    apps.echo("hi", stdout=str(log)).result(timeout=TIMEOUT)
    assert log.read_text() == "hi\n"
    apps.echo("again", stdout=str(log)).result(timeout=TIMEOUT)     # appends: the file is sent, then moved
    assert log.read_text() == "hi\nagain\n"


def test_bash_app_exit_code_is_parsl_bash_exit_failure(dfk):
    from parsl.app.errors import BashExitFailure
    with pytest.raises(BashExitFailure) as info:
        apps.exit_with(3).result(timeout=TIMEOUT)
    assert info.value.exitcode == 3


@pytest.mark.parametrize("spec, key", [
    ({"cores": 0}, "cores"),
    ({"cores": 1.5}, "cores"),
    ({"memory": -1}, "memory"),
    ({"disk": "10"}, "disk"),
    ({"walltime": 3}, "walltime"),
])
def test_bad_resource_specification_fails_the_app(dfk, spec, key):
    future = apps.cores_spec_app(parsl_resource_specification=spec)
    exc = future.exception(timeout=TIMEOUT)
    assert isinstance(exc, InvalidResourceSpecification)
    assert isinstance(exc, ParslInvalidResourceSpecification)
    assert key in str(exc) and repr(spec[key]) in str(exc)


def test_partial_resource_specification_runs(dfk):
    assert apps.cores_spec_app(parsl_resource_specification={"cores": 1}).result(timeout=TIMEOUT) == "ran"
    spec = {"cores": 1, "memory": 100, "disk": 100, "priority": 5, "category": "special"}
    assert apps.cores_spec_app(parsl_resource_specification=spec).result(timeout=TIMEOUT) == "ran"


def test_task_files_are_removed_after_delivery(dfk):
    executor = executor_of(dfk)
    [f.result(timeout=TIMEOUT) for f in [apps.add(1, i) for i in range(5)]]
    leftovers = [n for n in os.listdir(executor._data_dir) if n not in ("functions", "tasks", "pwq_worker.pyz")]
    assert leftovers + os.listdir(executor._task_files.task_dir) == []


def test_function_is_written_once_for_many_tasks(dfk):
    executor = executor_of(dfk)
    before = set(os.listdir(executor._task_files.function_dir))
    [f.result(timeout=TIMEOUT) for f in [apps.add(i, 1) for i in range(5)]]
    assert len(set(os.listdir(executor._task_files.function_dir)) - before) <= 1


def test_work_queue_logs_land_in_the_run_directory(dfk):
    log_dir = executor_of(dfk)._log_dir
    assert log_dir.startswith(dfk.run_dir)
    for name in ("debug.log", "transactions.log", "stats.log"):
        assert os.path.getsize(os.path.join(log_dir, name)) > 0, name


def test_outstanding_counts_pending_slots(dfk):
    executor = executor_of(dfk)
    futures = [apps.sleep_for(1) for _ in range(3)]
    assert wait_until(lambda: executor.outstanding() == 3, timeout=TIMEOUT)
    [f.result(timeout=TIMEOUT) for f in futures]
    assert executor.outstanding() == 0


def test_a_large_argument_and_a_large_result_arrive_whole_and_small_apps_go_on(dfk):
    """200 MB each way (the sizes and the speed against HTEX are in benchmarks/large_data.py)."""
    import hashlib
    size = 200 << 20
    data = os.urandom(1 << 20) * 200
    big = apps.digest_and_echo(data, size)
    small = [apps.add(i, 1) for i in range(5)]
    assert [f.result(timeout=TIMEOUT) for f in small] == [1, 2, 3, 4, 5]
    digest, echoed = big.result(timeout=TIMEOUT * 2)
    assert digest == hashlib.sha256(data).hexdigest()
    assert len(echoed) == size and echoed == bytes(range(256)) * (size // 256)
