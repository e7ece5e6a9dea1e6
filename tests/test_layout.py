"""What runs where is checked, not just said: the manager and the worker import neither Parsl nor the client,
the worker program runs without this package installed, and the packers load only with ``pack=True``."""

import json
import os
import subprocess
import sys

import pytest

from parsl_wq.client import worker_program
from parsl_wq.protocol.sandbox import WORKER_PROGRAM

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(worker_program.__file__)))
MODULES_OF = {place: sorted(f"parsl_wq.{place}.{name[:-3]}" for name in os.listdir(os.path.join(PACKAGE, place))
                            if name.endswith(".py") and name != "__init__.py")
              for place in ("manager", "worker", "protocol")}


def imported_after(statements: str, *args: str) -> set:
    """The modules a fresh interpreter has loaded after running ``statements``."""
    script = statements + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def foreign(modules: set) -> list:
    """Modules of the user's process: Parsl, and this package's client, command line and packers. (cctools 7.x's
    own Work Queue module imports cloudpickle: that is the engine's, not ours.)"""
    return sorted(m for m in modules if m == "parsl" or m.startswith(("parsl.", "parsl_wq.client", "parsl_wq.pack",
                                                                        "parsl_wq.cli")))


@pytest.mark.parametrize("place", ["manager", "worker", "protocol"])
def test_the_manager_and_the_worker_import_neither_parsl_nor_the_client(place):
    modules = imported_after("\n".join(f"import {m}" for m in MODULES_OF[place]))
    assert set(MODULES_OF[place]) <= modules            # each module was imported: the check saw them all
    assert foreign(modules) == []


def test_the_manager_process_starts_without_parsl():
    """The manager's own entry point, with Work Queue loaded as the process loads it."""
    modules = imported_after("import parsl_wq.manager.__main__\nfrom parsl_wq.engine import load_work_queue\n"
                             "load_work_queue()")
    assert "parsl_wq.manager.manager" in modules and foreign(modules) == []


def test_the_worker_program_runs_where_neither_this_package_nor_parsl_is_installed(tmp_path):
    """``python -I -S``: no site-packages, no PYTHONPATH, no current folder: only the standard library and the
    program itself. Each of its modules imports; nothing but the program's own modules and the standard
    library is loaded."""
    program = worker_program.build(str(tmp_path / WORKER_PROGRAM))
    names = [m.replace("parsl_wq.", "pwq_worker.") for place in ("worker", "protocol") for m in MODULES_OF[place]]
    script = (f"import sys; sys.path.insert(0, {program!r})\n" + "\n".join(f"import {n}" for n in names)
              + "\nimport json; print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    modules = set(json.loads(done.stdout))
    assert set(names) <= modules and not any(m.startswith("parsl") for m in modules)
    usage = subprocess.run([sys.executable, "-I", "-S", program], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "run CALLS RESULTS" in usage.stderr


def test_an_executor_without_pack_does_not_load_the_packers():
    modules = imported_after("import parsl_wq\nexecutor = parsl_wq.WorkQueueExecutor(port=0)\n"
                             "assert executor.pack is False")
    assert "parsl_wq.client.executor" in modules
    assert sorted(m for m in modules if m.startswith("parsl_wq.pack")) == []


def test_a_cold_task_loads_no_more_than_the_runner_needs(tmp_path):
    """The modules of the worker program that a cold task imports: the runner and the sandbox's protocol."""
    program = worker_program.build(str(tmp_path / WORKER_PROGRAM))
    script = (f"import sys; sys.path.insert(0, {program!r})\nimport pwq_worker.worker.runner\n"
              "import json; print(json.dumps(sorted(m for m in sys.modules if m.startswith('pwq_worker'))))")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["pwq_worker", "pwq_worker.protocol", "pwq_worker.protocol.sandbox",
                                       "pwq_worker.worker", "pwq_worker.worker.runner"]
