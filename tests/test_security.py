"""Password authentication by default: only workers that know the run's password get tasks."""

import os
import socket
import subprocess
import threading
import time
import uuid

import pytest

import apps
from conftest import transactions, wait_until

TIMEOUT = 60


@pytest.fixture
def start(load_without_workers, no_leftover_workers):
    """Load an executor without provider blocks, and start workers by hand."""
    workers = []

    def worker(executor, *options, port=None):
        """A worker for ``executor`` (with --ssl where it uses TLS), connecting to ``port`` or its port."""
        tls = ["--ssl"] if executor._secrets.tls_files else []
        workers.append(subprocess.Popen(["work_queue_worker", "--connect-timeout", "60", *tls, *options,
                                         "127.0.0.1", str(port or executor.worker_port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    yield load_without_workers, worker
    for w in workers:
        w.kill()
        w.wait(timeout=10)


def test_a_worker_the_executor_starts_works_in_a_private_folder_of_its_own_removed_when_it_ends(fresh_dfk):
    """Not Work Queue's /tmp/worker-UID-PID, made with the umask's mode and taken as found: a folder made fresh
    for the worker (mode 0700, a new name), holding its workspace, and gone once the worker has left."""
    import stat

    from conftest import worker_processes, worker_workspace
    kernel, executor = fresh_dfk
    assert apps.add(1, 2).result(timeout=TIMEOUT) == 3
    (worker,) = [p for p in worker_processes() if p.info["name"] == "work_queue_worker"]
    workspace = worker_workspace(worker)
    folder = os.path.dirname(workspace)
    assert os.path.basename(folder).startswith("parsl_wq-worker.") and os.path.isdir(workspace)
    info = os.stat(folder)
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    kernel.cleanup()
    assert wait_until(lambda: not os.path.exists(folder), timeout=30), os.listdir(folder)


def debug_log(executor):
    with open(os.path.join(executor._log_dir, "debug.log")) as f:
        return f.read()


def test_the_run_gets_a_password_that_only_its_owner_can_read(fresh_dfk):
    _, executor = fresh_dfk
    assert os.stat(executor._secrets.password_file).st_mode & 0o777 == 0o600
    assert f"--password {executor._secrets.password_file}" in executor.worker_command
    assert apps.add(1, 2).result(timeout=TIMEOUT) == 3


def test_a_worker_without_the_password_gets_no_task_and_delivers_nothing(start, tmp_path):
    executor, worker = start
    ex = executor()
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not the password\n")
    worker(ex)
    worker(ex, "--password", str(wrong))
    future = apps.add(2, 2)
    assert wait_until(lambda: debug_log(ex).count("presented the wrong password") >= 2, timeout=TIMEOUT), \
        debug_log(ex)[-3000:]
    time.sleep(2)
    assert not future.done()
    assert not transactions(ex, "WORKER")
    worker(ex, "--password", ex._secrets.password_file)
    assert future.result(timeout=TIMEOUT) == 4


def test_without_require_password_any_worker_gets_tasks(start, caplog):
    executor, worker = start
    ex = executor(require_password=False)
    assert ex._secrets.password_file is None
    assert "require_password=False" in caplog.text
    worker(ex)
    assert apps.add(3, 3).result(timeout=TIMEOUT) == 6


def test_a_password_file_of_ones_own_is_used_as_is(start, tmp_path):
    executor, worker = start
    mine = tmp_path / "mine.password"
    mine.write_text("s3cret\n")
    mine.chmod(0o600)
    ex = executor(project_password_file=str(mine))
    assert ex._secrets.password_file == str(mine)
    assert not os.path.exists(os.path.join(ex._log_dir, "worker.password"))
    worker(ex, "--password", str(mine))
    assert apps.add(4, 4).result(timeout=TIMEOUT) == 8


class Relay:
    """A TCP relay on loopback that keeps every byte it forwards: what a listener on the wire would see."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.captured = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            upstream.settimeout(None)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.captured += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def saw(self, marker):
        with self.lock:
            return marker.encode() in self.captured

    def close(self):
        self.server.close()


def run_through_relay(start, **options):
    """Run one app whose argument and result carry a marker, through a recording relay; return (relay, marker)."""
    executor, worker = start
    ex = executor(**options)
    relay = Relay(ex.worker_port)
    worker(ex, "--password", ex._secrets.password_file, port=relay.port)
    marker = f"PWQ-MARKER-{uuid.uuid4().hex}"
    assert apps.add(marker, "!").result(timeout=TIMEOUT) == marker + "!"
    relay.close()
    assert len(relay.captured) > 1000    # the relay did see the task's traffic
    return ex, relay, marker


def engine_has_tls():
    from parsl_wq.engine import features, load_work_queue
    return features(load_work_queue()).tls


needs_tls = pytest.mark.skipif(not engine_has_tls(), reason="this Work Queue has no TLS (Debian's 9.9 build); "
                               "make test ENGINE=7.17.1 runs these")


def test_without_tls_a_payload_crosses_the_wire_in_clear(start):
    _, relay, marker = run_through_relay(start, ssl=False)
    assert relay.saw(marker)


@needs_tls
def test_with_tls_by_default_no_payload_crosses_the_wire_in_clear(start):
    ex, relay, marker = run_through_relay(start)
    assert not relay.saw(marker)
    key, certificate = ex._secrets.tls_files
    assert os.path.dirname(key) == ex._log_dir
    assert all(os.stat(path).st_mode & 0o777 == 0o600 for path in (key, certificate))
    assert "--ssl" in ex.worker_command.split()


@needs_tls
def test_tls_with_a_certificate_of_ones_own(start, tmp_path):
    from parsl_wq.client import security
    key, certificate = security.create_certificate(str(tmp_path))
    ex, relay, marker = run_through_relay(start, ssl=(key, certificate))
    assert ex._secrets.tls_files == (key, certificate) and not relay.saw(marker)


@pytest.mark.skipif(engine_has_tls(), reason="this Work Queue has TLS: ssl=True is accepted")
def test_tls_on_an_engine_without_it_fails_at_construction_naming_the_engine():
    from parsl_wq import ConfigurationError, WorkQueueExecutor
    with pytest.raises(ConfigurationError, match=r"ssl=True cannot be used: TLS needs .*the one found is a cctools"):
        WorkQueueExecutor(ssl=True)
