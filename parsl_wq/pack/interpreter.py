"""Pack a relocatable environment from the running interpreter and installed distributions.

Used outside conda (a venv, or a plain install). The tarball holds a whole
Python, so nodes without one run it:

    bin/pythonX.Y, bin/python3, bin/python      the interpreter (RUNPATH made $ORIGIN-relative)
    lib/libpythonX.Y.so*                         when the interpreter is built shared
    lib/pythonX.Y/                               the standard library, without its test suite,
                                                 IDLE, tkinter and the build configuration
    SITE/                                        the distributions' files and the local sources,
                                                 where the copied interpreter's ``site`` looks

Python finds its prefix from the executable's location (the landmark
``lib/pythonX.Y/os.py``), so the unpacked tree works wherever it lands; no
conda-unpack step is needed.
"""

import io
import os
import site
import sys
import sysconfig
import tarfile
from importlib import metadata
from typing import Iterator, List, Optional, Tuple

from parsl_wq.errors import PackError
from parsl_wq.pack.elf import rewrite_runpath
from parsl_wq.pack.resolve import Requirements, editable_root

VERSION = f"python{sys.version_info[0]}.{sys.version_info[1]}"
LEFT_OUT_OF_STDLIB = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "site-packages", "dist-packages",
                      "__phello__"}
COMPRESS_LEVEL = 1      # gzip -1: about as small as -6 for this content, several times faster than -9


def site_directory() -> str:
    """Where the copied interpreter's ``site`` looks for packages, relative to the environment root."""
    marker = os.path.join(os.sep, "pwq-prefix")
    return os.path.relpath(site.getsitepackages([marker])[0], marker)


def pack(requirements: Requirements, output: str) -> None:
    """Write the environment for ``requirements`` to the tarball ``output`` (gzip)."""
    with tarfile.open(output, "w:gz", compresslevel=COMPRESS_LEVEL) as tar:
        for source, target in interpreter_files():
            _add(tar, source, target, patch=True)
        for link, target in (("bin/python3", VERSION), ("bin/python", VERSION)):
            _add_symlink(tar, link, target)
        site_dir = site_directory()
        for source, target in distribution_files(requirements.distributions, site_dir):
            _add(tar, source, target, patch=False)
        for local in requirements.local:
            for source, target in local.files():
                _add(tar, source, os.path.join(site_dir, target), patch=False)


def interpreter_files() -> Iterator[Tuple[str, str]]:
    """(source, target) of the interpreter, its shared library and its standard library."""
    executable = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    yield executable, f"bin/{VERSION}"
    library = _shared_library()
    if library is not None:
        folder, name = os.path.split(library)
        for entry in sorted(os.listdir(folder)):
            if entry.startswith(name.split(".so")[0] + ".so"):
                yield os.path.join(folder, entry), f"lib/{entry}"
    stdlib = sysconfig.get_paths()["stdlib"]
    for source, target in _tree(stdlib, f"lib/{VERSION}"):
        first = os.path.relpath(source, stdlib).split(os.sep)[0]
        if first in LEFT_OUT_OF_STDLIB or first.startswith("config-"):
            continue
        yield source, target
    dynload = os.path.join(sysconfig.get_paths()["platstdlib"], "lib-dynload")
    if os.path.dirname(dynload) != stdlib and os.path.isdir(dynload):
        yield from _tree(dynload, f"lib/{VERSION}/lib-dynload")


def distribution_files(names, site_dir: str) -> Iterator[Tuple[str, str]]:
    """(source, target) of each installed file of the distributions ``names``.

    Files inside the distribution's site folder keep their place under ``site_dir``;
    its scripts go to ``bin/``; anything else it installed (data files) is left out.
    Of an editable install only the metadata is taken: its sources come as local sources.
    """
    for name in names:
        distribution = metadata.distribution(name)
        if distribution.files is None:
            raise PackError(f"distribution {name!r} has no RECORD of its files, so they cannot be packed; "
                            "reinstall it with pip")
        root = os.path.realpath(str(distribution.locate_file("")))
        editable = editable_root(distribution) is not None
        for file in distribution.files:
            source = os.path.realpath(str(file.locate()))
            relative = os.path.relpath(source, root)
            if not os.path.isfile(source):
                continue
            if not relative.startswith(".."):
                if editable and ".dist-info" not in relative.split(os.sep)[0]:
                    continue
                yield source, os.path.join(site_dir, relative)
            elif os.path.basename(os.path.dirname(source)) == "bin":
                yield source, "bin/" + os.path.basename(source)


def _shared_library() -> Optional[str]:
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    name = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    folder = sysconfig.get_config_var("LIBDIR")
    path = os.path.join(folder or "", name or "")
    return path if os.path.isfile(path) else None


def _tree(path: str, target: str) -> Iterator[Tuple[str, str]]:
    """Every file under ``path`` (or ``path`` itself), with optimized .pyc files left out."""
    if not os.path.isdir(path):
        yield path, target
        return
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        relative = os.path.relpath(folder, path)
        for name in sorted(files):
            if ".opt-" in name and name.endswith(".pyc"):
                continue
            yield os.path.join(folder, name), os.path.normpath(os.path.join(target, relative, name))


def _add(tar: tarfile.TarFile, source: str, target: str, patch: bool) -> None:
    info = tar.gettarinfo(source, arcname=target)
    if info.isreg():
        with open(source, "rb") as f:
            data = f.read()
        if patch:
            data = _relocatable(data, source, target)
        elif target.startswith("bin/") and data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
            data = b"#!/usr/bin/env python3\n" + data.split(b"\n", 1)[1]
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def _add_symlink(tar: tarfile.TarFile, link: str, target: str) -> None:
    info = tarfile.TarInfo(link)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    info.mode = 0o777
    tar.addfile(info)


def _relocatable(data: bytes, source: str, target: str) -> bytes:
    """Make RUNPATH entries that point into the interpreter's prefix relative to $ORIGIN."""
    prefixes = _prefixes()
    target_dir = os.path.dirname(target)

    def rewrite(old: str) -> str:
        parts: List[str] = []
        for entry in old.split(":"):
            real = os.path.realpath(entry) if entry.startswith("/") else entry
            inside = [p for p in prefixes if real == p or real.startswith(p + os.sep)]
            if inside:
                # where that folder lands in the environment: lib/ for the interpreter's libraries
                landed = "lib" if os.path.basename(real) == "lib" else os.path.relpath(real, inside[0])
                entry = "$ORIGIN/" + os.path.relpath(landed, target_dir)
            parts.append(entry)
        return ":".join(parts)

    try:
        return rewrite_runpath(data, rewrite)
    except ValueError as e:
        raise PackError(f"cannot make {source} relocatable: {e}") from None


def _prefixes() -> List[str]:
    return sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)})
