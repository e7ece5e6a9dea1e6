"""Build a real conda environment offline: a local channel and py-rattler, no conda and no network.

- The running interpreter's ``sys.base_prefix`` becomes a conda ``python`` package
  (its RUNPATH made ``$ORIGIN``-relative, as conda-forge's python has it).
- Installed distributions become ``noarch: python`` packages, with their ``Requires-Dist``
  as conda ``depends``.
- The channel is indexed with ``rattler.index.index_fs``, solved and installed with
  py-rattler from a ``file://`` URL.

Run it as a script (``python conda_env.py WORKDIR DIST...``, printing the prefix):
py-rattler's threads can abort the interpreter that loaded it at exit
("PyGILState_Release: thread state must be current"), so the script leaves
without finalizing.
"""

import asyncio
import json
import os
import shutil
import sys
import sysconfig
import time
from importlib import metadata
from typing import Dict, List

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from parsl_wq.pack.elf import rewrite_runpath
from parsl_wq.pack.interpreter import interpreter_files

VERSION = ".".join(map(str, sys.version_info[:3]))


def build(workdir: str, distributions: List[str]) -> str:
    """A conda environment under ``workdir`` with python and ``distributions``; returns its prefix."""
    import rattler
    from rattler.index import index_fs

    channel = os.path.join(workdir, "channel")
    python_package(channel, os.path.join(workdir, "stage-python"))
    for name in distributions:
        noarch_package(channel, os.path.join(workdir, f"stage-{name}"), name)
    os.makedirs(os.path.join(channel, "linux-64"), exist_ok=True)
    asyncio.run(index_fs(channel))
    prefix = os.path.join(workdir, "env")

    async def install():
        records = await rattler.solve(sources=[f"file://{channel}"], specs=["python"] + distributions,
                                      platforms=["linux-64", "noarch"], virtual_packages=[])
        await rattler.install(records, target_prefix=prefix, cache_dir=os.path.join(workdir, "pkgs"),
                              show_progress=False, execute_link_scripts=False)
    asyncio.run(install())
    return prefix


def python_package(channel: str, stage: str) -> None:
    files = {}
    for source, target in interpreter_files():
        files[target] = source
    for link in ("bin/python3", "bin/python"):
        files[link] = ("symlink", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    _package(channel, stage, "python", VERSION, files, depends=[], noarch=False,
             patch=lambda target, data: _relative_runpath(target, data))


def noarch_package(channel: str, stage: str, name: str) -> None:
    distribution = metadata.distribution(name)
    root = str(distribution.locate_file(""))
    files = {}
    for file in distribution.files:
        source = str(file.locate())
        relative = os.path.relpath(source, root)
        if not relative.startswith("..") and "__pycache__" not in relative and os.path.isfile(source):
            files["site-packages/" + relative] = source
    depends = ["python"]
    for line in distribution.requires or ():
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            depends.append(canonicalize_name(requirement.name))
    _package(channel, stage, canonicalize_name(name), distribution.version, files, depends, noarch=True)


def _package(channel, stage, name, version, files: Dict, depends, noarch, patch=None) -> None:
    import conda_package_handling.api as cph

    shutil.rmtree(stage, ignore_errors=True)
    for target, source in files.items():
        path = os.path.join(stage, target)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(source, tuple):
            os.symlink(source[1], path)
            continue
        with open(source, "rb") as f:
            data = f.read()
        if patch is not None:
            data = patch(target, data)
        with open(path, "wb") as f:
            f.write(data)
        shutil.copymode(source, path)
    info = os.path.join(stage, "info")
    os.makedirs(info)
    index = {"name": name, "version": version, "build": "0", "build_number": 0, "depends": depends,
             "subdir": "noarch" if noarch else "linux-64", "timestamp": int(time.time() * 1000)}
    if noarch:
        index["noarch"] = "python"
        _write_json(os.path.join(info, "link.json"), {"noarch": {"type": "python"}, "package_metadata_version": 1})
    else:
        index.update(platform="linux", arch="x86_64")
    _write_json(os.path.join(info, "index.json"), index)
    with open(os.path.join(info, "files"), "w") as f:
        f.write("\n".join(sorted(files)) + "\n")
    paths = [{"_path": target, "path_type": "softlink" if isinstance(source, tuple) else "hardlink"}
             for target, source in sorted(files.items())]
    _write_json(os.path.join(info, "paths.json"), {"paths_version": 1, "paths": paths})
    listing = [os.path.relpath(os.path.join(d, n), stage) for d, _, names in os.walk(stage) for n in names]
    out = os.path.join(channel, index["subdir"])
    os.makedirs(out, exist_ok=True)
    cph.create(stage, sorted(listing), f"{name}-{version}-0.conda", out_folder=out, compression_level=1)


def _relative_runpath(target: str, data: bytes) -> bytes:
    if not (target.startswith("bin/") or ".so" in target):
        return data
    depth = target.count("/")
    return rewrite_runpath(data, lambda old: "$ORIGIN/" + "/".join([".."] * depth + ["lib"])
                           if old.startswith(sysconfig.get_config_var("LIBDIR") or "/") else old)


def _write_json(path, value) -> None:
    with open(path, "w") as f:
        json.dump(value, f)


if __name__ == "__main__":
    print(build(sys.argv[1], sys.argv[2:]), flush=True)
    os._exit(0)     # skip interpreter finalization, where py-rattler's threads can abort the process
