"""pack=True for real: workers whose Python lacks the apps' packages, or that have no Python at all.

Workers run in network namespaces (hosts.py) with the submit side's
interpreter and venv hidden under empty tmpfs mounts, so an app can only
import what its packed environment brought.
"""

import os
import shutil
import subprocess
import sys
import tarfile

import pytest
from parsl import bash_app, python_app

import pack_apps
from parsl_wq import resource_usage
from parsl_wq.client import serialize
from parsl_wq.errors import TaskFailure
from parsl_wq.client.tasks import UNPACK_SCRIPT as UNPACKER
from parsl_wq.pack import Packer, conda
from parsl_wq.pack.elf import runpath
from parsl_wq.pack.resolve import LocalSource, Requirements

TIMEOUT = 120
SUBMIT_SIDE_PYTHON = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)})
SYSTEM_PYTHON = "/usr/bin/python3"

sorted_in_env = python_app(pack_apps.sorted_in_env)
unpacks = python_app(pack_apps.unpacks)
python_on_path = bash_app(pack_apps.python_on_path)
warm_identity = python_app(pack_apps.warm_identity)
kill_own_host = python_app(pack_apps.kill_own_host)


def system_python_lacks_sortedcontainers():
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip(f"the test needs a system Python at {SYSTEM_PYTHON}")
    if subprocess.run([SYSTEM_PYTHON, "-c", "import sortedcontainers"], capture_output=True).returncode == 0:
        pytest.skip(f"{SYSTEM_PYTHON} has sortedcontainers: it cannot stand for a worker that lacks it")


def test_without_pack_the_workers_python_lacks_the_package(hosts, load_without_workers):
    system_python_lacks_sortedcontainers()
    executor = load_without_workers()
    hosts.start_worker(1, executor, hide=SUBMIT_SIDE_PYTHON)
    with pytest.raises(ModuleNotFoundError, match="sortedcontainers"):
        sorted_in_env([3, 1, 2]).result(timeout=TIMEOUT)


def test_with_pack_apps_run_on_workers_without_their_packages_or_without_python(hosts, load_without_workers,
                                                                                tmp_path):
    system_python_lacks_sortedcontainers()
    executor = load_without_workers(pack=True, pack_cache_dir=str(tmp_path / "envs"))
    # h1: a Python without the package; h2: no Python at all
    hosts.start_worker(1, executor, "--cores 2", hide=SUBMIT_SIDE_PYTHON)
    no_python = SUBMIT_SIDE_PYTHON + [os.path.realpath(SYSTEM_PYTHON)]
    hosts.start_worker(2, executor, "--cores 2", hide=no_python)

    values, prefix, module_file = sorted_in_env([3, 1, 2]).result(timeout=TIMEOUT)
    assert values == [1, 2, 3]
    assert module_file.startswith(prefix + os.sep) and "/pwq-envs/" in prefix

    # Many tasks at once on two 2-core workers: each worker unpacks each environment once, and the apps
    # that wait for a slot share tasks (bundles) in the packed environment.
    futures = [unpacks() for _ in range(24)]
    results = [f.result(timeout=TIMEOUT) for f in futures]
    assert max(resource_usage(f).bundled for f in futures) > 1
    lines = {line for _, log in results for line in log}
    by_host = {}
    for line in lines:
        by_host.setdefault(line.split()[1], []).append(line)
    assert sorted(by_host) == ["h1", "h2"], lines
    assert all(len(entries) == 1 for entries in by_host.values()), by_host
    assert executor._packer.builds == 1     # the two apps share a module, so one environment

    out = tmp_path / "bash.out"
    assert python_on_path(stdout=str(out)).result(timeout=TIMEOUT) == 0
    assert "/pwq-envs/" in out.read_text()


def test_warm_packed_apps_run_in_a_warm_process_of_the_environments_python(hosts, load_without_workers, tmp_path):
    system_python_lacks_sortedcontainers()
    executor = load_without_workers(pack=True, coprocess=True, pack_cache_dir=str(tmp_path / "envs"))
    # The host shares nothing with this side: its tmpfs hides the run directory, and the submit side's Python
    # is hidden too. The first warm task starts the warm host with the system's python3; the apps run in
    # the packed environment's Python.
    hosts.start_worker(1, executor, "--cores 1", hide=SUBMIT_SIDE_PYTHON)

    calls = [warm_identity().result(timeout=TIMEOUT) for _ in range(6)]
    executables, prefixes, pids, parents, preloaded, values = zip(*calls)
    assert all(v == [1, 2] for v in values)
    assert len(set(prefixes)) == 1 and "/pwq-envs/" in prefixes[0]
    assert all(e.startswith(prefixes[0] + os.sep) for e in executables)     # the environment's interpreter
    assert len(set(pids)) == 6 and len(set(parents)) == 1                   # a fork per app, of one warm host
    assert preloaded[0] is False and preloaded[-1] is True                  # the host kept the import

    # A packed host that dies mid-app fails that app; the next app gets a new host of the environment.
    exc = kill_own_host().exception(timeout=TIMEOUT)
    assert type(exc) is TaskFailure and exc.result == "WARM_PROCESS_LOST", exc
    executable, prefix, _, parent, _, _ = warm_identity().result(timeout=TIMEOUT)
    assert (executable, prefix) == (executables[0], prefixes[0]) and parent != parents[0]

    out = tmp_path / "bash.out"
    assert python_on_path(stdout=str(out)).result(timeout=TIMEOUT) == 0
    assert "/pwq-envs/" in out.read_text()


def an_old_python(version):
    """This machine's interpreter of Python ``version`` (pyenv's or the system's), or skip."""
    import glob
    found = sorted(glob.glob(f"/root/.pyenv/versions/{version}.*/bin/python{version}")) + \
        [p for p in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}") if os.path.exists(p)]
    if not found:
        pytest.skip(f"no Python {version} on this machine to stand for a node's python3")
    return found[0]


def python3_on_path(hidden):
    """Each ``python3`` that PATH finds, but those in ``hidden`` folders (the node has none there)."""
    found = []
    for folder in os.environ["PATH"].split(os.pathsep):
        path = os.path.join(folder, "python3")
        if os.path.exists(path) and not any(os.path.realpath(path).startswith(h + os.sep) or
                                            path.startswith(h + os.sep) for h in hidden):
            found.append(path)
    return found


@pytest.mark.parametrize("version, host_runs_on", [("3.6", "the environment's Python"), ("3.7", "python3")])
def test_warm_packed_apps_run_where_the_nodes_python3_is_old(hosts, load_without_workers, tmp_path, request,
                                                             version, host_runs_on):
    """A node whose python3 is older than the submit side's: 3.6, as on EL8, is older than the warm host runs
    on (``HOST_PYTHON``), so the environment's own Python starts the first warm host; 3.7 starts it."""
    import tempfile
    from conftest import worker_processes
    system_python_lacks_sortedcontainers()
    old = an_old_python(version)
    # Not in tmp_path: the worker's host hides it.
    wrapper_folder = tempfile.mkdtemp(prefix="pwq-old-python.")
    request.addfinalizer(lambda: shutil.rmtree(wrapper_folder))
    python3 = os.path.join(wrapper_folder, "python3")
    with open(python3, "w") as f:
        f.write(f"#!/bin/sh\nexec {old} \"$@\"\n")
    os.chmod(python3, 0o755)
    executor = load_without_workers(pack=True, coprocess=True, pack_cache_dir=str(tmp_path / "envs"))
    hosts.start_worker(1, executor, "--cores 1", hide=SUBMIT_SIDE_PYTHON,
                       replace={path: python3 for path in python3_on_path(SUBMIT_SIDE_PYTHON)})

    calls = [warm_identity().result(timeout=TIMEOUT) for _ in range(3)]
    executables, prefixes, pids, parents, _, values = zip(*calls)
    assert all(v == [1, 2] for v in values) and len(set(parents)) == 1
    assert "/pwq-envs/" in prefixes[0] and all(e.startswith(prefixes[0] + os.sep) for e in executables)
    # The first warm task's Python, forked as the supervisor and the host: all run on one interpreter.
    [runs_on] = {os.path.realpath(f"/proc/{p.pid}/exe") for p in worker_processes() if "warm" in p.info["cmdline"]}
    if host_runs_on == "python3":
        assert runs_on == os.path.realpath(old)
    else:
        assert runs_on.startswith(prefixes[0] + os.sep), runs_on


def test_a_package_that_cannot_be_found_fails_the_task_with_the_name(load_without_workers, tmp_path):
    executor = load_without_workers(pack=True, pack_cache_dir=str(tmp_path / "envs"), extra_pkgs=["no-such-dist"])
    future = sorted_in_env([1])
    with pytest.raises(Exception, match="no-such-dist"):
        future.result(timeout=TIMEOUT)
    assert executor.outstanding() == 0


@pytest.mark.parametrize("coprocess", [False, True])
def test_an_environment_that_cannot_be_unpacked_fails_the_task_and_says_so(no_leftover_workers, tmp_path,
                                                                           coprocess):
    import parsl
    from parsl.config import Config

    from parsl_wq import WorkQueueExecutor

    cache = tmp_path / "envs"
    built = Packer(str(cache)).prepare(pack_apps.sorted_in_env, serialize.serialize_function(pack_apps.sorted_in_env))
    with open(built.tarball, "r+b") as f:
        f.truncate(1000)            # a damaged cache entry
    executor = WorkQueueExecutor(port=0, pack=True, pack_cache_dir=str(cache), coprocess=coprocess)
    with parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "run"), strategy="none")):
        with pytest.raises(TaskFailure, match="could not be unpacked") as failure:
            sorted_in_env([2, 1]).result(timeout=TIMEOUT)
    assert failure.value.exit_code == 3 and "gzip" in failure.value.output


def skip_unless_unshare_works():
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -m is not available here")


def hidden(paths, command):
    """``command`` (a shell line) run with an empty tmpfs over each of ``paths``."""
    mounts = "; ".join(f"mount -t tmpfs tmpfs {p}" for p in paths)
    return subprocess.run(["unshare", "-m", "sh", "-c", f"{mounts}; {command}"],
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})


def test_the_unpacked_environment_runs_with_the_original_interpreter_hidden(tmp_path):
    skip_unless_unshare_works()
    packer = Packer(str(tmp_path / "envs"))
    function = pack_apps.sorted_in_env
    built = packer.prepare(function, serialize.serialize_function(function))
    target = tmp_path / "elsewhere"
    target.mkdir()
    with tarfile.open(built.tarball) as tar:
        tar.extractall(target)
        python = tar.extractfile(tar.getmember(f"bin/python{sys.version_info[0]}.{sys.version_info[1]}")).read()
    assert runpath(python) in (None, "$ORIGIN/../lib")
    check = ("import sys, sortedcontainers, ssl, sqlite3, pack_apps; "
             "maps = open('/proc/self/maps').read(); "
             "print(sys.prefix); print([l.split()[-1] for l in maps.splitlines() if 'libpython' in l][:1])")
    done = hidden(SUBMIT_SIDE_PYTHON, f"exec {target}/bin/python -c \"{check}\"")
    assert done.returncode == 0, done.stderr
    prefix, libpython = done.stdout.splitlines()
    assert prefix == str(target)
    if libpython != "[]":       # a statically linked interpreter has no libpython to load
        assert str(target) in libpython, f"the copy loaded another interpreter's library: {libpython}"


@pytest.fixture(scope="module")
def conda_environment(tmp_path_factory):
    """A conda environment with python, sortedcontainers and cloudpickle, built offline (tests/conda_env.py)."""
    pytest.importorskip("rattler")
    workdir = tmp_path_factory.mktemp("conda")
    tests = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run([sys.executable, os.path.join(tests, "conda_env.py"), str(workdir),
                           "sortedcontainers", "cloudpickle"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_conda_environment_is_packed_by_conda_pack_and_unpacked_once_elsewhere(conda_environment, tmp_path):
    skip_unless_unshare_works()
    tarball = str(tmp_path / "env.tar.gz")
    local = LocalSource("pack_apps", pack_apps.__file__)
    conda.pack(conda_environment, Requirements(("sortedcontainers",), (local,)), tarball)
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    assert "bin/conda-unpack" in names                                  # conda-pack made it
    assert any("site-packages/sortedcontainers/" in n for n in names)
    assert "lib/python3.11/site-packages/pack_apps.py".replace("3.11", "%d.%d" % sys.version_info[:2]) in names
    assert not any("cloudpickle" in n for n in names)                   # in the environment, not needed

    # unpack.sh as a task runs it (in worker/t.1), twice; conda-unpack must run with the env's python
    worker = tmp_path / "worker"
    (worker / "t.1").mkdir(parents=True)
    unpack = f"cd {worker}/t.1 && ENV=$(sh {UNPACKER} {tarball} demo) && ENV=$(sh {UNPACKER} {tarball} demo)"
    check = "import sys, sortedcontainers, pack_apps; print(sys.prefix)"
    done = hidden(SUBMIT_SIDE_PYTHON + [conda_environment],
                  f"{unpack} && exec \"$ENV/bin/python\" -c \"{check}\"")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(worker / "pwq-envs" / "demo")
    assert len((worker / "pwq-envs" / "demo" / ".pwq-unpacks").read_text().splitlines()) == 1


def test_editing_an_editable_install_gives_a_new_build_and_no_edit_reuses_it(tmp_path, editable_package):
    source = editable_package
    cache = str(tmp_path / "envs")

    def environment():
        def uses_it():
            import demo_editable
            return demo_editable.VALUE
        return Packer(cache).prepare(uses_it, serialize.serialize_function(uses_it))

    first = environment()
    assert environment() == first
    with tarfile.open(first.tarball) as tar:
        names = tar.getnames()
    assert any(n.endswith("site-packages/demo_editable/__init__.py") for n in names)
    assert any(n.endswith("site-packages/sortedcontainers/__init__.py") for n in names)  # its dependency
    assert not any("__editable__" in n for n in names)

    (source / "helpers.py").write_text("HELP = 1\n")    # a new, untracked file
    second = environment()
    assert second.name != first.name
    (source / "__init__.py").write_text("VALUE = 2\n")
    third = environment()
    assert third.name not in (first.name, second.name)
    assert environment() == third
    assert sorted(os.listdir(cache)) == sorted(os.path.basename(e.tarball) for e in (first, second, third))


@pytest.fixture
def editable_package(tmp_path):
    """A real editable install (pip install -e, offline) of demo-editable, visible to this process."""
    import importlib
    import site

    project = tmp_path / "project"
    package = project / "demo_editable"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "demo-editable"\nversion = "0.1"\ndependencies = ["sortedcontainers"]\n'
        '[tool.setuptools]\npackages = ["demo_editable"]\n')
    prefix = tmp_path / "prefix"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--no-build-isolation", "-e", str(project), "--prefix", str(prefix)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    saved_path, saved_meta_path = list(sys.path), list(sys.meta_path)
    site.addsitedir(next(str(p) for p in prefix.glob("lib/python*/site-packages")))
    importlib.invalidate_caches()
    yield package
    sys.path[:], sys.meta_path[:] = saved_path, saved_meta_path
    sys.modules.pop("demo_editable", None)
    importlib.invalidate_caches()
