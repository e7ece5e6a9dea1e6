"""Password authentication by default: only workers that know the run's password get tasks."""

import os
import subprocess
import time

import pytest

import apps
from conftest import transactions, wait_until

TIMEOUT = 60


@pytest.fixture
def start(load_without_workers, no_leftover_workers):
    """Load an executor without provider blocks, and start workers by hand."""
    workers = []

    def worker(port, *options):
        workers.append(subprocess.Popen(["work_queue_worker", "--connect-timeout", "60", *options,
                                         "127.0.0.1", str(port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    yield load_without_workers, worker
    for w in workers:
        w.kill()
        w.wait(timeout=10)


def debug_log(executor):
    with open(os.path.join(executor._log_dir, "debug.log")) as f:
        return f.read()


def test_the_run_gets_a_password_that_only_its_owner_can_read(fresh_dfk):
    _, executor = fresh_dfk
    assert os.stat(executor._password_file).st_mode & 0o777 == 0o600
    assert f"--password {executor._password_file}" in executor.worker_command
    assert apps.add(1, 2).result(timeout=TIMEOUT) == 3


def test_a_worker_without_the_password_gets_no_task_and_delivers_nothing(start, tmp_path):
    executor, worker = start
    ex = executor()
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not the password\n")
    worker(ex.worker_port)
    worker(ex.worker_port, "--password", str(wrong))
    future = apps.add(2, 2)
    assert wait_until(lambda: debug_log(ex).count("presented the wrong password") >= 2, timeout=TIMEOUT), \
        debug_log(ex)[-3000:]
    time.sleep(2)
    assert not future.done()
    assert not transactions(ex, "WORKER")
    worker(ex.worker_port, "--password", ex._password_file)
    assert future.result(timeout=TIMEOUT) == 4


def test_without_require_password_any_worker_gets_tasks(start, caplog):
    executor, worker = start
    ex = executor(require_password=False)
    assert ex._password_file is None
    assert "require_password=False" in caplog.text
    worker(ex.worker_port)
    assert apps.add(3, 3).result(timeout=TIMEOUT) == 6


def test_a_password_file_of_ones_own_is_used_as_is(start, tmp_path):
    executor, worker = start
    mine = tmp_path / "mine.password"
    mine.write_text("s3cret\n")
    mine.chmod(0o600)
    ex = executor(project_password_file=str(mine))
    assert ex._password_file == str(mine)
    assert not os.path.exists(os.path.join(ex._log_dir, "worker.password"))
    worker(ex.worker_port, "--password", str(mine))
    assert apps.add(4, 4).result(timeout=TIMEOUT) == 8
