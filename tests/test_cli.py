"""``parsl-wq`` against a real password-protected run, from "another terminal" (a subprocess)."""

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import parsl
import pytest
from parsl import python_app
from parsl.config import Config
from parsl.providers import LocalProvider

import cli_apps
from conftest import wait_until
from parsl_wq import WorkQueueExecutor

TIMEOUT = 60
PARSL_WQ = os.path.join(os.path.dirname(sys.executable), "parsl-wq")

quick = python_app(cli_apps.quick)
bad_chunk = python_app(cli_apps.bad_chunk)
blocker = python_app(cli_apps.blocker)


def parsl_wq(*args, cwd=None):
    return subprocess.run([PARSL_WQ, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture
def run(tmp_path, no_leftover_workers):
    """A run with a password (the default) and no workers: the test starts them with ``parsl-wq workers``."""
    executor = WorkQueueExecutor(port=0, address="127.0.0.1", provider=LocalProvider(init_blocks=0))
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "runinfo"), strategy="none"))
    workers = []
    yield executor, workers
    if not kernel.cleanup_called:     # the test may have ended the run itself
        kernel.cleanup()
    for w in workers:       # the shell and its worker: TERM lets the shell remove the worker's folder
        stop_group(w)


def stop_group(process):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=10)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def start_printed_worker(text, workers, folder):
    """Start the worker command that ``parsl-wq workers`` printed, with 2 cores, as a shell runs it."""
    line = next(l.strip() for l in text.splitlines() if "work_queue_worker --workdir" in l)
    workers.append(subprocess.Popen(["sh", "-c", line + " --cores 2"], cwd=folder, start_new_session=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return line


def test_status_workers_and_report_of_a_password_protected_run(run, tmp_path):
    executor, workers = run
    assert executor._secrets.password_file and os.path.exists(executor._secrets.password_file)
    printed = parsl_wq("workers", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert f"--password {executor._secrets.password_file}" in printed.stdout
    assert f"slurm_submit_workers --password {executor._secrets.password_file}" in printed.stdout
    assert "work_queue_factory -T slurm" in printed.stdout
    factory = next(line for line in printed.stdout.splitlines() if "work_queue_factory -T" in line)
    assert '--scratch-dir "$(mktemp -d -t parsl_wq-factory.XXXXXX)"' in factory   # private, made where it runs
    assert "--catalog=127.0.0.1:9" in factory       # no project: nothing goes to the public catalog
    line = start_printed_worker(printed.stdout, workers, tmp_path)
    assert line.endswith(f"127.0.0.1 {executor.worker_port}")

    assert [quick(i).result(timeout=TIMEOUT) for i in range(5)] == [0, 2, 4, 6, 8]
    failed = bad_chunk(3)
    with pytest.raises(ValueError):
        failed.result(timeout=TIMEOUT)
    marker = tmp_path / "release"
    running = blocker(str(marker))

    # From another terminal, while the run goes on: the default RUN_DIR is ./runinfo (its newest run).
    def shows_blocker_running():
        shown = parsl_wq("status", cwd=tmp_path)
        return shown if re.search(r"blocker\s+blocker\s+0\s+1\s+0\s+0", shown.stdout) else None
    assert wait_until(shows_blocker_running, timeout=20), parsl_wq("status", cwd=tmp_path).stdout
    shown = shows_blocker_running().stdout
    assert "running for" in shown
    assert re.search(r"quick\s+quick\s+0\s+0\s+5\s+0", shown), shown
    assert re.search(r"bad_chunk\s+bad_chunk\s+0\s+0\s+0\s+1", shown), shown
    assert "Workers: 1 connected" in shown
    assert re.search(r"127\.0\.0\.1:\d+\s+2\s+\d+ MB\s+\d+ MB\s+1\s", shown), shown     # 2 cores, 1 task
    assert re.search(r"task \d+ bad_chunk on \S+: ValueError: bad chunk 3", shown), shown

    marker.touch()
    assert running.result(timeout=TIMEOUT) == "released"
    parsl.dfk().cleanup()

    finished = parsl_wq("status", str(tmp_path / "runinfo"))
    assert finished.returncode == 0 and "finished at" in finished.stdout, finished.stdout
    assert re.search(r"blocker\s+blocker\s+0\s+0\s+1\s+0", finished.stdout), finished.stdout

    watching = subprocess.Popen([PARSL_WQ, "status", "--watch", "0.2", str(tmp_path / "runinfo")],
                                stdout=subprocess.PIPE, text=True)
    clear, shown = "\033[H\033[2J", []        # each screen starts by clearing the terminal
    reader = threading.Thread(target=lambda: shown.extend(iter(watching.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        assert wait_until(lambda: "".join(shown).count(clear) >= 4, timeout=30), "".join(shown)
    finally:
        watching.terminate()
        watching.wait(timeout=10)
        reader.join(timeout=10)
    screens = "".join(shown).split(clear)[1:4]      # three whole screens; the last one may be cut short
    assert all("finished at" in s for s in screens), screens

    report = parsl_wq("report", str(tmp_path / "runinfo"), "-o", str(tmp_path / "tasks.csv"))
    assert report.returncode == 0, report.stderr
    with open(tmp_path / "tasks.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["app"] for r in rows) == ["bad_chunk", "blocker"] + ["quick"] * 5
    assert {r["result"] for r in rows if r["app"] == "quick"} == {"ok"}
    bad = next(r for r in rows if r["app"] == "bad_chunk")
    assert bad["result"] == "ValueError" and bad["error"] == "bad chunk 3"
    for r in rows:
        assert r["worker"] and r["attempts"] == "1" and r["allocated_cores"] == "2"
        assert r["submitted"] <= r["started"] <= r["ended"] <= r["finished"], r
    held = next(r for r in rows if r["app"] == "blocker")
    assert float(held["wall_time"]) > 0
    assert all(float(r["wall_time"]) < float(held["wall_time"]) for r in rows if r["app"] == "quick")

    picture = tmp_path / "run.png"
    drawn = parsl_wq("plot", str(tmp_path / "runinfo"), "-o", str(picture))
    assert drawn.returncode == 0 and "7 apps" in drawn.stderr, drawn.stderr
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 20000


def test_a_folder_without_a_run_exits_3_and_says_where_it_looked(tmp_path):
    done = parsl_wq("status", str(tmp_path))
    assert done.returncode == 3 and f"no parsl_wq run in {tmp_path}" in done.stderr


@pytest.mark.parametrize("verb", ["status", "report", "plot", "workers", "doctor"])
def test_every_verb_has_help(verb):
    done = parsl_wq(verb, "--help")
    assert done.returncode == 0 and done.stdout.startswith(f"usage: parsl-wq {verb}")


def test_progress_true_shows_in_a_notebook_and_a_terminal_only(monkeypatch):
    from parsl_wq.client import progress
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not progress.wanted(True) and progress.wanted("always") and not progress.wanted(False)
    monkeypatch.setitem(sys.modules, "ipykernel", object())      # as in a Jupyter kernel
    assert progress.wanted(True)


def test_a_bad_command_line_exits_2():
    assert parsl_wq("no-such-verb").returncode == 2


def test_doctor_finds_the_engine_and_runs_one_app(no_leftover_workers, tmp_path):
    done = parsl_wq("doctor", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ok       Work Queue: ")
    assert lines[1].startswith("ok       worker: ") and "work_queue_worker" in lines[1]
    assert lines[2].startswith("ok       pack=True: ")
    assert re.match(r"ok       self-test: one app on a local worker in \d+\.\d s", lines[3]), lines
    assert lines[-1] == "all checks passed"


def test_doctor_names_a_missing_worker_and_what_to_do(tmp_path):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))    # no cctools on PATH
    done = subprocess.run([PARSL_WQ, "doctor", "--no-self-test"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 1
    assert "PROBLEM  work_queue_worker is not on PATH: install cctools" in done.stdout


PROGRESS_SCRIPT = """
import sys
import parsl
from parsl import python_app
from parsl.config import Config
from parsl.providers import LocalProvider
sys.path.insert(0, {tests!r})
import cli_apps
from parsl_wq import WorkQueueExecutor
setting = {{"True": True, "always": "always"}}[sys.argv[1]]
executor = WorkQueueExecutor(port=0, progress=setting, worker_options="--cores 1",
                             provider=LocalProvider(init_blocks=1))
with parsl.load(Config(executors=[executor], run_dir=sys.argv[2], strategy="none")):
    futures = [python_app(cli_apps.quick)(i) for i in range(5)] + [python_app(cli_apps.bad_chunk)(1)]
    print([type(f.exception(timeout=60)).__name__ for f in futures])
"""


def progress_script(tmp_path):
    script = tmp_path / "progress_run.py"
    script.write_text(PROGRESS_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__))))
    return str(script)


def test_progress_always_draws_the_bar_on_stderr_even_in_a_file(tmp_path, no_leftover_workers):
    done = subprocess.run([sys.executable, progress_script(tmp_path), "always", str(tmp_path / "runinfo")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(["NoneType"] * 5 + ["ValueError"])
    last = done.stderr.replace("\r", "\n").strip().splitlines()
    bar = [line for line in last if "apps |" in line]
    assert bar, done.stderr[-3000:]
    assert re.search(r"WorkQueueExecutor: 6/6 apps \|.*\| .*running 0, waiting 0, failed 1, workers \d",
                     bar[-1]), bar[-1]


def test_progress_true_is_silent_when_stderr_is_not_a_terminal(tmp_path, no_leftover_workers):
    done = subprocess.run([sys.executable, progress_script(tmp_path), "True", str(tmp_path / "runinfo")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "apps |" not in done.stderr


def test_progress_true_draws_the_bar_in_a_terminal(tmp_path, no_leftover_workers):
    import fcntl
    import pty
    import struct
    import termios
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))    # a terminal's size
    process = subprocess.Popen([sys.executable, progress_script(tmp_path), "True", str(tmp_path / "runinfo")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:     # the terminal closed: the process ended
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=120) == 0
    os.close(main)
    assert b"6/6 apps |" in output, output[-2000:]


def test_doctor_names_a_worker_whose_version_differs_from_the_module():
    from parsl_wq.cli.doctor import module_cctools_version
    other = "/usr/bin/work_queue_worker"
    module = module_cctools_version()
    if not module or not os.path.exists(other) or other == shutil.which("work_queue_worker"):
        pytest.skip("needs a Work Queue module that reports its version and another worker in /usr/bin")
    env = dict(os.environ, PATH="/usr/bin:/bin")
    done = subprocess.run([PARSL_WQ, "doctor", "--no-self-test"], capture_output=True, text=True, env=env,
                          timeout=60)
    if f"version {module[:module.rindex('.')]}" in done.stdout:
        pytest.skip("the worker in /usr/bin has the module's version")
    assert done.returncode == 1
    assert f"the Python module is cctools {module}: use a worker of the same version" in done.stdout
