"""``parsl-wq doctor``: what this machine offers parsl_wq, each problem named with what to do.

Checks, in order: the Work Queue Python module and its features, the
``work_queue_worker`` on PATH and its version, whether ``pack=True`` can build
environments here, and (unless skipped) one app run on a local worker within
SELF_TEST_SECONDS. Prints one line per check; ``run`` returns whether all passed.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, List, Tuple

SELF_TEST_SECONDS = 10
Check = Tuple[bool, str]    # passed, what was found or what to do


def engine() -> Check:
    from parsl_wq.engine import features, load_work_queue
    try:
        wq = load_work_queue()
    except ImportError as e:
        return False, (f"no Work Queue Python module: {e}. Install cctools: `conda install -c conda-forge "
                       "ndcctools`, or on Debian/Ubuntu `apt install python3-workqueue coop-computing-tools`")
    found = features(wq)
    text = f"Work Queue: {found.description}; "
    if found.tls:
        text += "has TLS"
    else:
        text += "lacks TLS (ssl needs cctools 7.x, as conda-forge's ndcctools ships it)"
    return True, text + "; warm workers run on any engine"


def worker() -> Check:
    path = shutil.which("work_queue_worker")
    if path is None:
        return False, ("work_queue_worker is not on PATH: install cctools (conda-forge's ndcctools, or Debian's "
                       "coop-computing-tools) where the workers run, and put its bin folder on PATH")
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        version = (done.stdout or done.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as e:
        return False, f"{path} does not run: {e}"
    text = f"worker: {path} ({version})"
    module_version = module_cctools_version()
    match = re.search(r"version (\d+\.\d+)", version)
    if module_version and match and not module_version.startswith(match.group(1)):
        return False, (text + f"; the Python module is cctools {module_version}: use a worker of the same "
                       "version, or put the matching cctools first on PATH")
    return True, text


def module_cctools_version() -> str:
    try:
        from parsl_wq.engine import load_work_queue
        wq = load_work_queue()
        return wq.cctools_version_string() if hasattr(wq, "cctools_version_string") else ""
    except Exception:
        return ""


def packing() -> Check:
    from parsl_wq.pack import conda
    if conda.is_conda_environment(sys.prefix):
        if importlib.util.find_spec("conda_pack") is None:
            return False, (f"pack=True: {sys.prefix} is a conda environment, and conda-pack is missing: "
                           "`pip install conda-pack`")
        return True, f"pack=True: builds from the conda environment {sys.prefix} with conda-pack"
    from parsl_wq.pack import interpreter
    try:
        files = list(interpreter.interpreter_files())
        missing = [source for source, _ in files if not os.access(source, os.R_OK)]
    except OSError as e:
        return False, f"pack=True: this interpreter's files cannot be listed ({e}); use a conda environment"
    if missing:
        return False, (f"pack=True: {len(missing)} files of this interpreter cannot be read, for example "
                       f"{missing[0]}; use a conda environment, or an interpreter you can read")
    return True, (f"pack=True: builds from this interpreter ({sys.executable}, Python {sys.version.split()[0]}; "
                  f"{len(files)} files of it go into each environment)")


def self_test() -> Check:
    """One app on one local worker, through a real executor, within SELF_TEST_SECONDS."""
    import parsl
    from parsl.config import Config
    from parsl.providers import LocalProvider

    from parsl_wq import WorkQueueExecutor

    with tempfile.TemporaryDirectory(prefix="parsl_wq-doctor-") as folder:
        started = time.monotonic()
        executor = WorkQueueExecutor(port=0, provider=LocalProvider(init_blocks=1, max_blocks=1),
                                     worker_options="--cores 1")
        try:
            with parsl.load(Config(executors=[executor], run_dir=folder, strategy="none")):
                answer = parsl.python_app(_answer)().result(timeout=SELF_TEST_SECONDS)
        except Exception as e:
            return False, (f"self-test: one app on a local worker failed: {type(e).__name__}: {e}. "
                           f"Its logs were in {folder}; run with `--no-self-test` to see the other checks")
        if answer != 42:
            return False, f"self-test: the app returned {answer!r} instead of 42"
        return True, f"self-test: one app on a local worker in {time.monotonic() - started:.1f} s"


def _answer():
    return 42


def run(self_test_on: bool = True, out=None) -> bool:
    out = out or sys.stdout
    checks: List[Callable[[], Check]] = [engine, worker, packing] + ([self_test] if self_test_on else [])
    passed = True
    for check in checks:
        try:
            ok, text = check()
        except Exception as e:      # a check that breaks is a problem to report, not a crash of the doctor
            ok, text = False, f"{check.__name__}: {type(e).__name__}: {e}"
        passed &= ok
        print(("ok       " if ok else "PROBLEM  ") + text, file=out, flush=True)
    print("all checks passed" if passed else "see PROBLEM lines above", file=out)
    return passed
