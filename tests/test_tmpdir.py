"""Where an app's temporary files go: the task's sandbox, or with shared_fs=True the node's TMPDIR."""

import os

import pytest

import crash_apps
from conftest import MODES, wait_until, worker_processes

TIMEOUT = 60


@pytest.fixture(params=MODES)
def load_with_node_tmpdir(request, tmp_path, monkeypatch, no_leftover_workers):
    """Load an executor, cold or warm, whose local worker has its own TMPDIR, as a batch job on a node would."""
    import parsl
    from parsl.config import Config

    from parsl_wq import WorkQueueExecutor

    node_tmp = tmp_path / "node-tmp"
    node_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(node_tmp))
    kernels = []

    def load(**options):
        executor = WorkQueueExecutor(port=0, coprocess=request.param == "warm", **options)
        kernels.append(parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none")))
        return str(node_tmp)
    yield load
    for kernel in kernels:
        kernel.cleanup()
    assert wait_until(lambda: not worker_processes(), timeout=10)


def test_with_shared_fs_a_temporary_folder_outlives_its_app(load_with_node_tmpdir):
    node_tmp = load_with_node_tmpdir(shared_fs=True)
    assert crash_apps.temporary_folder().result(timeout=TIMEOUT) == node_tmp
    folder = crash_apps.make_temporary_folder().result(timeout=TIMEOUT)
    assert os.path.dirname(folder) == node_tmp
    assert crash_apps.write_into(folder, "later").result(timeout=TIMEOUT) == ["later"]
    assert os.listdir(folder) == ["later"]


def test_by_default_a_temporary_folder_lives_in_the_task_sandbox_and_goes_with_it(load_with_node_tmpdir):
    node_tmp = load_with_node_tmpdir()
    folder = crash_apps.make_temporary_folder().result(timeout=TIMEOUT)
    assert os.path.dirname(folder) != node_tmp       # inside the worker's folder for that one task
    # the folder Work Queue made for the task in its sandbox, cold and warm (both engines make one)
    assert os.path.basename(os.path.dirname(folder)).startswith("cctools-temp-t."), folder
    assert wait_until(lambda: not os.path.exists(folder), timeout=10)
    with pytest.raises(FileNotFoundError):
        crash_apps.write_into(folder, "later").result(timeout=TIMEOUT)
