"""The pack module's pure logic: import scan, resolution, cache names, atomic builds, RUNPATH rewriting."""

import functools
import json
import os
import sys
import threading

import pytest

from parsl_wq import WorkQueueExecutor
from parsl_wq.client import serialize
from parsl_wq.errors import ConfigurationError, PackError
from parsl_wq.pack import cache
from parsl_wq.pack.elf import rewrite_runpath, runpath
from parsl_wq.pack.resolve import Resolver, dependency_closure
from parsl_wq.pack.scan import modules_in_function_file, modules_of_app


def scan(function):
    return modules_of_app(function, serialize.serialize_function(function))


def test_scan_finds_imports_in_the_body_and_in_nested_functions():
    def app():
        import json as j
        from email import message          # noqa: F401

        def inner():
            import csv
            return csv
        return j, inner
    found = scan(app)
    assert {"json", "email", "email.message", "csv"} <= found


def test_scan_follows_globals_defaults_and_closures():
    import xml.dom

    def helper():
        import zipfile
        return zipfile
    limit = functools.partial(max, 3)

    def app(path=xml.dom):
        return os.path.join(limit(1), helper())
    found = scan(app)
    assert "os" in found or "posixpath" in found
    assert "xml.dom" in found
    assert "zipfile" in found                  # imported by a helper that travels by value
    assert "functools" in found                # the partial, as the pickle refers to it


def test_scan_reads_the_modules_a_pickle_imports():
    data = b"P" + serialize.dumps(json.dumps)
    assert "json" in modules_in_function_file(data)


def test_resolve_skips_the_standard_library_and_follows_requires_dist():
    requirements = Resolver().resolve({"os", "json", "requests.adapters"})
    assert "requests" in requirements.distributions
    assert {"urllib3", "idna", "certifi", "charset-normalizer"} <= set(requirements.distributions)
    assert "cloudpickle" in requirements.distributions      # the runner's fallback, always
    assert not any(name in requirements.distributions for name in ("os", "json"))


def test_dependency_closure_leaves_out_extras_nobody_asked_for():
    # requests has extras (socks, use_chardet_on_py3) whose packages must not come along
    assert "pysocks" not in dependency_closure(["requests"])


def test_a_local_module_is_shipped_with_what_it_imports(tmp_path, monkeypatch):
    (tmp_path / "mylocal.py").write_text("import sortedcontainers\nfrom . import nothing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    requirements = Resolver().resolve({"mylocal"})
    assert [(s.module, s.path) for s in requirements.local] == [("mylocal", str(tmp_path / "mylocal.py"))]
    assert "sortedcontainers" in requirements.distributions


def test_a_module_that_is_nowhere_is_left_out_with_a_warning(caplog):
    requirements = Resolver().resolve({"surely_not_installed_anywhere"})
    assert requirements.local == ()
    assert "surely_not_installed_anywhere" in caplog.text


def test_a_namespace_package_spread_over_folders_is_refused_by_name(tmp_path, monkeypatch):
    for part in ("one", "two"):
        (tmp_path / part / "splitpkg").mkdir(parents=True)
        (tmp_path / part / "splitpkg" / f"{part}.py").write_text("")
        monkeypatch.syspath_prepend(str(tmp_path / part))
    with pytest.raises(PackError, match="'splitpkg' is a namespace package"):
        Resolver().resolve({"splitpkg"})


def test_extra_pkgs_accepts_distribution_or_module_names_and_names_a_bad_one():
    resolver = Resolver()
    assert "sortedcontainers" in resolver.resolve(set(), ["sortedcontainers"]).distributions
    assert "pyzmq" in resolver.resolve(set(), ["zmq"]).distributions        # a module name
    with pytest.raises(PackError, match="'no-such-dist'"):
        resolver.resolve(set(), ["no-such-dist"])


def test_the_environment_name_changes_with_a_local_source_and_only_then(tmp_path, monkeypatch):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("A = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    resolver = Resolver()
    first = cache.environment_key(resolver.resolve({"mypkg"}), "interpreter")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert cache.environment_key(resolver.resolve({"mypkg"}), "interpreter") == first
    (package / "data.txt").write_text("new")
    assert cache.environment_key(resolver.resolve({"mypkg"}), "interpreter") != first


def test_build_once_is_atomic_when_two_builders_race(tmp_path):
    path = str(tmp_path / "env.tar.gz")
    started = threading.Barrier(2)

    def build(temporary):
        started.wait(timeout=10)
        with open(temporary, "w") as f:
            f.write("whole")
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.build_once(path, build))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results == [True, True]      # both built; the rename makes either one the file
    assert open(path).read() == "whole"
    assert os.listdir(tmp_path) == ["env.tar.gz"]
    assert cache.build_once(path, build) is False


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def build(temporary):
        open(temporary, "w").write("half")
        raise OSError("disk full")
    with pytest.raises(OSError):
        cache.build_once(str(tmp_path / "env.tar.gz"), build)
    assert os.listdir(tmp_path) == []


def test_runpath_is_rewritten_in_place_and_never_grown():
    executable = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    with open(executable, "rb") as f:
        data = f.read()
    old = runpath(data)
    if old is None:
        pytest.skip(f"{executable} has no RUNPATH")
    patched = rewrite_runpath(data, lambda _: "$ORIGIN/../lib")
    assert len(patched) == len(data) and runpath(patched) == "$ORIGIN/../lib"
    with pytest.raises(ValueError, match="longer"):
        rewrite_runpath(data, lambda value: value + "/more")
    assert rewrite_runpath(b"#!/bin/sh\n" * 10, lambda _: "x") == b"#!/bin/sh\n" * 10


def test_scripts_of_distributions_find_python_on_path(tmp_path):
    import io
    import tarfile

    from parsl_wq.pack.interpreter import _add
    script = tmp_path / "tool"
    script.write_text("#!/home/me/venv/bin/python3.11\nprint('hi')\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, str(script), "bin/tool", patch=False)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as tar:
        assert tar.extractfile("bin/tool").read() == b"#!/usr/bin/env python3\nprint('hi')\n"


def test_pack_options_without_pack_are_refused():
    with pytest.raises(ConfigurationError, match="pack"):
        WorkQueueExecutor(extra_pkgs=["numpy"])


def test_a_test_file_in_an_editable_projects_folder_does_not_bring_that_project():
    resolver = Resolver()
    if "parsl-wq" not in resolver._editables:
        pytest.skip("parsl_wq is not installed editable here")
    requirements = resolver.resolve({"pack_apps"})       # tests/pack_apps.py, inside this project's folder
    assert [s.module for s in requirements.local] == ["pack_apps"]
    assert "parsl-wq" not in requirements.distributions and "parsl" not in requirements.distributions
