"""A user's install, not this checkout: the package built as a wheel and installed from it (offline) has every
file it reads at run time, and runs apps cold and warm.

An editable install reads the checkout, so a file the wheel leaves out goes unseen by every other test (the
warm tasks' ``call.sh`` once did: every warm app of a ``pip install`` failed with INPUT_MISSING)."""

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

import parsl_wq

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(CHECKOUT, "parsl_wq")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel ``pip wheel`` builds from a copy of the checkout's package and packaging files."""
    root = tmp_path_factory.mktemp("build")
    source = root / "source"
    shutil.copytree(PACKAGE, source / "parsl_wq", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(CHECKOUT, name), source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                           "--no-build-isolation", "--wheel-dir", str(root / "wheels"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    [built] = (root / "wheels").glob("parsl_wq-*.whl")
    return built


def package_files():
    """The package's files in the checkout, as paths in a wheel: its modules and the files it ships."""
    files = set()
    for folder, subfolders, names in os.walk(PACKAGE):
        subfolders[:] = [s for s in subfolders if s != "__pycache__"]
        for name in names:
            if not name.endswith(".pyc"):
                files.add(os.path.relpath(os.path.join(folder, name), CHECKOUT).replace(os.sep, "/"))
    return files


def test_the_wheel_holds_every_file_of_the_package(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    files = package_files()
    assert "parsl_wq/worker/call.sh" in files and "parsl_wq/worker/unpack.sh" in files   # the walk saw them
    assert sorted(files - names) == []


def test_a_pip_install_runs_apps_cold_and_warm(wheel, tmp_path, no_leftover_workers):
    """The wheel installed with pip into a folder of its own, first on the path: the user's process, the
    manager and the workers run from it, not from the checkout."""
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    script = textwrap.dedent("""
        import sys
        import parsl
        from parsl import python_app
        from parsl.config import Config
        import parsl_wq

        @python_app
        def add(a, b):
            import os
            return a + b, os.getpid()

        print("from", parsl_wq.__file__)
        for coprocess in (False, True):
            executor = parsl_wq.WorkQueueExecutor(port=0, coprocess=coprocess)
            with parsl.load(Config(executors=[executor], run_dir=sys.argv[1], strategy="none")):
                print("coprocess", coprocess, add(1, 2).result(timeout=120)[0])
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "runinfo")], capture_output=True,
                          text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"from {target / 'parsl_wq' / '__init__.py'}", (lines, parsl_wq.__file__)
    assert lines[1:] == ["coprocess False 3", "coprocess True 3"], done.stdout + done.stderr
