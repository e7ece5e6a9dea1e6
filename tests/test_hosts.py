"""Workers on other hosts (network namespaces), with no shared filesystem, and the faults they meet.

Each test builds its hosts on a bridge private to this machine (see hosts.py)
and starts the workers itself; the executor has no provider blocks, so only
those workers serve it.
"""

import time

import pytest
from parsl.data_provider.files import File

import apps
from conftest import transactions, wait_until

TIMEOUT = 120


@pytest.fixture
def load(load_without_workers):
    return load_without_workers


def test_workers_on_two_hosts_share_nothing_but_the_network(hosts, load, tmp_path):
    executor = load()
    for host in (1, 2):
        hosts.start_worker(host, executor, "--cores 1")
    (tmp_path / "in.txt").write_text("abc")
    where = [apps.hostname_after(1, i) for i in range(6)]
    assert sorted(set(f.result(timeout=TIMEOUT) for f in where)) == ["h1", "h2"]
    assert apps.sees_path(str(tmp_path / "in.txt")).result(timeout=TIMEOUT) is False
    future = apps.concatenate(inputs=[File(str(tmp_path / "in.txt"))], outputs=[File(str(tmp_path / "out.txt"))])
    assert future.result(timeout=TIMEOUT) == "abc"
    future.outputs[0].result(timeout=TIMEOUT)
    assert (tmp_path / "out.txt").read_text() == "ABC"


def test_a_killed_worker_loses_no_task_and_no_result_is_delivered_twice(hosts, load):
    executor = load()
    for host in (1, 2):
        hosts.start_worker(host, executor, "--cores 1")
    futures = [apps.hostname_after(3, i) for i in range(4)]
    on_h1 = lambda: [line for line in transactions(executor, "RUNNING") if hosts.address(1) in line]  # noqa: E731
    assert wait_until(lambda: on_h1() and len(transactions(executor, "RUNNING")) >= 2, timeout=60)
    hosts.kill_worker(1)
    assert [f.result(timeout=TIMEOUT) for f in futures] == ["h2"] * 4
    done = [line.split()[3] for line in transactions(executor, "DONE")]
    assert sorted(done) == ["1", "2", "3", "4"], done
    assert len(on_h1()) == 1


def test_chaos_of_workers_that_come_and_go_loses_nothing(hosts, load):
    """Work Queue's --volatility: a worker rolls the dice once a minute and leaves on a hit.

    With 100 each of the three leaves, mid-task, about a minute after it joined,
    then comes back; the run lasts longer than that. A task can lose its worker
    more than once, so Work Queue may retry it without limit (max_retries=None):
    with the default of 1, a task whose worker left twice fails with MAX_RETRIES.
    """
    executor = load(max_retries=None)
    for host in (1, 2, 3):
        hosts.start_worker(host, executor, "--cores 1 --volatility 100")
    futures = [apps.hostname_after(2, i) for i in range(100)]
    assert all(f.result(timeout=TIMEOUT * 2) in ("h1", "h2", "h3") for f in futures)
    lines = transactions(executor, "WORKER")
    assert len([line for line in lines if line.split()[-1] == "CONNECTION"]) > 3, "no worker came back"
    assert [line for line in lines if "DISCONNECTION" in line], "no worker left during the run"
    done = [line.split()[3] for line in transactions(executor, "DONE")]
    assert len(done) == len(set(done)) == 100


def test_a_partitioned_worker_is_noticed_and_its_task_runs_elsewhere(hosts, load):
    executor = load(keepalive_interval=2, keepalive_timeout=4)
    hosts.start_worker(1, executor, "--cores 1")
    first = apps.hostname_after(30, "long")
    assert wait_until(lambda: len(transactions(executor, "RUNNING")) == 1, timeout=60)
    cut_at = time.monotonic()
    hosts.cut(1)
    hosts.start_worker(2, executor, "--cores 1")
    assert first.result(timeout=TIMEOUT) == "h2"
    assert time.monotonic() - cut_at < 45
