"""What Coffea users reach for: extra_input_files, the grid proxy, provider-sized workers, fast abort."""

import os
import signal

import parsl
import pytest
from parsl import bash_app, python_app
from parsl.config import Config
from parsl.providers import LocalProvider, SlurmProvider

import apps
import extras_apps
from conftest import engine_has_coprocesses, start_worker, transactions
from parsl_wq import WorkQueueExecutor, resource_usage
from parsl_wq.errors import ConfigurationError, ExecutorBroken, TaskFailure
from parsl_wq.client.workers import worker_resources

TIMEOUT = 60
read_shipped = python_app(extras_apps.read_shipped)
proxy_seen = python_app(extras_apps.proxy_seen)
short = python_app(extras_apps.short)
straggler = python_app(extras_apps.straggler)
tiny = python_app(extras_apps.tiny)
read_inputs = python_app(extras_apps.read_inputs)
random_bytes = python_app(extras_apps.random_bytes)


@bash_app
def cat_proxy(stdout=None):
    return 'cat "$X509_USER_PROXY"'


@pytest.fixture
def load(tmp_path, no_leftover_workers):
    """Load an executor and start ``workers`` 1-core workers by hand; all of them are killed at the end.

    The executor tells its workers to leave at shutdown, but a worker that Work
    Queue removed (fast abort) keeps trying to reconnect: it is killed here.
    """
    kernels, processes = [], []

    def load(workers=1, **options):
        executor = WorkQueueExecutor(port=0, provider=LocalProvider(init_blocks=0), **options)
        kernels.append(parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none")))
        started = [start_worker(executor, 1, tmp_path) for _ in range(workers)]
        processes.extend(started)
        return executor, started
    yield load
    for kernel in kernels:
        kernel.cleanup()
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def test_extra_input_files_reach_every_task_and_are_sent_once_per_worker(load, tmp_path):
    shipped = tmp_path / "corrections.json"
    shipped.write_text('{"scale": 1.02}')
    executor, _ = load(extra_input_files=[str(shipped)])
    results = [read_shipped("corrections.json").result(timeout=TIMEOUT) for _ in range(3)]
    assert {content for content, _, _ in results} == {'{"scale": 1.02}'}
    assert len({folder for _, folder, _ in results}) == 3            # each task in its own folder
    assert len({inode for _, _, inode in results}) == 1              # one copy, cached on the worker


@pytest.mark.parametrize("paths, words", [
    (["/no/such/file"], "a list of paths of existing files ('/no/such/file' is not one)"),
    (["SAME", "SAME"], "as is"),
])
def test_bad_extra_input_files_fail_at_construction(tmp_path, paths, words):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    same = [str(tmp_path / "a" / "x.py"), str(tmp_path / "b" / "x.py")]
    for path in same:
        open(path, "w").close()
    paths = same if paths[0] == "SAME" else paths
    with pytest.raises(ConfigurationError, match="extra_input_files") as caught:
        WorkQueueExecutor(extra_input_files=paths)
    assert words in str(caught.value)


def engine_has_tls():
    from parsl_wq.engine import features, load_work_queue
    return features(load_work_queue()).tls


def assert_shipped(tmp_path):
    path, content = proxy_seen(move_away=True).result(timeout=TIMEOUT)
    assert content == "-----BEGIN CERTIFICATE----- test proxy"
    assert os.path.isabs(path) and path.endswith("/pwq_x509_proxy")
    out = tmp_path / "proxy.out"
    assert cat_proxy(stdout=str(out)).result(timeout=TIMEOUT) == 0
    assert out.read_text() == "-----BEGIN CERTIFICATE----- test proxy"


def test_the_grid_proxy_in_x509_user_proxy_is_shipped_over_tls_only(load, tmp_path, monkeypatch, caplog):
    proxy = tmp_path / "x509up_u1000"
    proxy.write_text("-----BEGIN CERTIFICATE----- test proxy")
    monkeypatch.setenv("X509_USER_PROXY", str(proxy))
    load()
    if engine_has_tls():        # cctools 7.x: TLS is on by default, and the proxy goes
        assert_shipped(tmp_path)
    else:                       # the worker, started here, inherited the variable: nothing was shipped
        assert proxy_seen(move_away=False).result(timeout=TIMEOUT) == (str(proxy), proxy.read_text())
        assert f"X509_USER_PROXY={proxy} is not sent to the workers: they connect without TLS" in caplog.text


def test_a_proxy_named_by_hand_is_shipped_and_without_tls_the_risk_is_named(load, tmp_path, monkeypatch, caplog):
    proxy = tmp_path / "x509up_u1000"
    proxy.write_text("-----BEGIN CERTIFICATE----- test proxy")
    monkeypatch.delenv("X509_USER_PROXY", raising=False)
    load(x509_proxy=str(proxy), ssl=False)
    assert_shipped(tmp_path)
    assert "travels to the workers unencrypted (no TLS)" in caplog.text


def test_x509_proxy_false_ships_none(load, tmp_path, monkeypatch):
    proxy = tmp_path / "x509up"
    proxy.write_text("secret")
    monkeypatch.setenv("X509_USER_PROXY", str(proxy))
    load(x509_proxy=False)
    # The worker, started here, inherited the variable; nothing was shipped and it names the original.
    assert proxy_seen(move_away=False).result(timeout=TIMEOUT) == (str(proxy), "secret")


def test_workers_offer_what_the_provider_gives_a_node():
    slurm = SlurmProvider(cores_per_node=8, mem_per_node=16)
    assert worker_resources(slurm, "") == "--cores 8 --memory 16384"
    assert worker_resources(slurm, "--cores 4") == "--memory 16384"
    assert worker_resources(slurm, "--memory=1000 --cores=2") == ""
    assert worker_resources(LocalProvider(), "") == ""
    assert worker_resources(SlurmProvider(), "") == ""


def manager_log(executor):
    with open(os.path.join(executor._log_dir, "manager.log")) as f:
        return f.read()


def test_fast_abort_stops_a_straggler_and_runs_it_again(load, tmp_path):
    executor, _ = load(workers=2, fast_abort=5, max_retries=None)
    # Tasks are judged once 10 tasks of the category are done; one after the other, none is bundled.
    assert [short(i).result(timeout=TIMEOUT) for i in range(12)] == list(range(12))
    late = straggler(str(tmp_path / "marker"), parsl_resource_specification={"category": "short"})
    # Stopped after about 5 times the category's 0.2 s apps (and their tasks' overhead), and run again,
    # when it returns at once.
    assert late.result(timeout=TIMEOUT) == "second try"
    assert "(1 app) on" in manager_log(executor) and "past" in manager_log(executor)


def test_fast_abort_judges_a_bundle_by_its_apps(load):
    """Single apps of 10 ms make a category's tasks short; bundles of many such apps take a second, and are
    judged by what their apps take together: none is aborted (Work Queue's own fast abort aborted them)."""
    executor, _ = load(workers=1, fast_abort=3, max_retries=None)
    assert [tiny(i, parsl_resource_specification={"category": "tiny"}).result(timeout=TIMEOUT)
            for i in range(12)] == list(range(12))
    futures = [tiny(i, parsl_resource_specification={"category": "tiny"}) for i in range(400)]
    assert [f.result(timeout=TIMEOUT) for f in futures] == list(range(400))
    assert max(resource_usage(f).bundled for f in futures) >= 50
    assert "fast abort" not in manager_log(executor)
    # No task was taken back from its worker after running a while (a worker may give a task back at
    # once, before it starts: that is not an abort).
    started, taken_back = {}, []
    for line in transactions(executor, "TASK"):
        when, _, _, task, state = line.split()[:5]
        if state == "RUNNING":
            started[task] = int(when)
        elif state == "WAITING" and task in started and int(when) - started[task] > 100_000:
            taken_back.append(task)
    assert not taken_back, taken_back


def test_fast_abort_below_1_fails_at_construction():
    with pytest.raises(ConfigurationError, match=r"fast_abort=0\.5.*a number >= 1"):
        WorkQueueExecutor(fast_abort=0.5, max_retries=None)


def test_fast_abort_counts_its_aborts_against_max_retries(load, tmp_path):
    """With max_retries=1 a straggler is aborted once and run again; aborted a second time, it fails."""
    executor, _ = load(workers=1, fast_abort=2, max_retries=1)
    assert [short(i).result(timeout=TIMEOUT) for i in range(12)] == list(range(12))
    always_late = python_app(extras_apps.sleep_then)(30, parsl_resource_specification={"category": "short"})
    exc = always_late.exception(timeout=TIMEOUT)
    assert isinstance(exc, TaskFailure) and exc.result == "MAX_RETRIES", exc
    assert "fast abort: task" in str(exc) and "aborted 2 times" in str(exc), exc


def test_a_task_whose_workers_were_lost_says_so(load):
    """Work Queue's default max_retries of 1 gives a task two tries; the app kills its worker on both."""
    load(workers=3)
    exc = apps.kill_my_worker().exception(timeout=TIMEOUT)
    assert isinstance(exc, TaskFailure) and exc.result == "MAX_RETRIES", exc
    assert "the worker running it was lost 2 times: 127.0.0.1:" in str(exc), exc
    assert "max_retries allows no more tries (2 tries)" in str(exc), exc


@pytest.fixture
def web_server(tmp_path):
    """An HTTP server on loopback serving the folder ``tmp_path / "site"``."""
    import functools
    import http.server
    import threading
    site = tmp_path / "site"
    site.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_inputs_are_fetched_into_the_apps_own_sandbox_without_a_shared_filesystem(load, web_server):
    from parsl.data_provider.files import File
    site, address = web_server
    (site / "data.txt").write_text("served over http")
    load()
    [(text, path)] = read_inputs(inputs=[File(f"{address}/data.txt")]).result(timeout=TIMEOUT)
    assert text == "served over http"
    assert not os.path.isabs(path), path        # in the sandbox, not at a path of the submit side


def test_staging_in_a_task_of_its_own_needs_a_shared_filesystem():
    from parsl.data_provider.http import HTTPSeparateTaskStaging
    with pytest.raises(ConfigurationError, match="HTTPSeparateTaskStaging writes its files outside the app's sandbox"):
        WorkQueueExecutor(storage_access=[HTTPSeparateTaskStaging()])
    WorkQueueExecutor(storage_access=[HTTPSeparateTaskStaging()], shared_fs=True)


def test_an_app_file_named_as_an_extra_input_file_fails_at_submit_naming_both(load, tmp_path, monkeypatch):
    from parsl.data_provider.files import File
    shipped = tmp_path / "data.txt"
    shipped.write_text("shipped to every task")
    here = tmp_path / "here"
    here.mkdir()
    (here / "data.txt").write_text("the app's own")
    monkeypatch.chdir(here)
    load(extra_input_files=[str(shipped)])
    exc = read_inputs(inputs=[File("data.txt")]).exception(timeout=TIMEOUT)
    assert isinstance(exc, ValueError), exc
    assert str(here / "data.txt") in str(exc) and str(shipped) in str(exc) and "'data.txt'" in str(exc), exc
    [(text, _)] = read_inputs(inputs=[File(str(shipped))]).result(timeout=TIMEOUT)    # elsewhere in the sandbox (abs/...): no clash
    assert text == "shipped to every task"


@pytest.fixture
def small_run_disk(tmp_path):
    """The run directory (``tmp_path / "run"``) on a tmpfs of 4 MB."""
    import subprocess
    run = tmp_path / "run"
    run.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(run)]).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield run
    subprocess.run(["umount", "-l", str(run)])


def test_a_full_disk_on_the_submit_side_is_named_with_its_path(small_run_disk, load):
    """A 10 MB result cannot be written to the run's 4 MB disk: Work Queue removes the worker each time."""
    load(workers=3)
    exc = random_bytes(10 * 1000 * 1000).exception(timeout=TIMEOUT)
    assert f"submit side's disk is full where the task's outputs and result are written: {small_run_disk}/" \
           in str(exc), exc
    if engine_has_coprocesses():    # cctools 7.17.1: its manager dies of SIGSEGV, and the executor breaks
        assert isinstance(exc, ExecutorBroken) and "exit code -11" in str(exc), exc
        return
    assert isinstance(exc, TaskFailure), exc
    assert len(random_bytes(1000).result(timeout=TIMEOUT)) == 1000      # a result that fits still comes back
