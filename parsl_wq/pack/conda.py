"""Pack a subset of a conda environment with conda-pack: no solve, no channel.

The subset is ``python`` plus the conda packages that provide the wanted
distributions, with their ``depends`` closure read from ``conda-meta``.
Distributions that pip installed into the environment come as conda-pack's
unmanaged files, taken from their RECORD; local sources are added under
site-packages. The tarball carries conda-pack's ``conda-unpack``, which the
worker runs with the environment's own python after unpacking.
"""

import json
import os
from importlib import metadata
from typing import Dict, Iterable, Set

from packaging.utils import canonicalize_name

from parsl_wq.errors import PackError
from parsl_wq.pack.resolve import Requirements

COMPRESS_LEVEL = 1


def is_conda_environment(prefix: str) -> bool:
    return os.path.isdir(os.path.join(prefix, "conda-meta"))


def pack(prefix: str, requirements: Requirements, output: str) -> None:
    """Write the subset of the conda environment ``prefix`` that ``requirements`` needs to ``output``."""
    import conda_pack
    from conda_pack.core import File

    records = _records(prefix)
    site_dir = _site_dir(records)
    owners = _distribution_owners(records)
    wanted_packages: Set[str] = {"python"}
    wanted_files: Set[str] = set()
    for name in requirements.distributions:
        if name in owners:
            wanted_packages.add(owners[name])
            continue
        distribution = _find(name, [os.path.join(prefix, site_dir)])
        if distribution is not None:    # installed by pip: conda-pack packs its files as unmanaged
            wanted_files |= {os.path.normpath(os.path.relpath(str(f.locate()), prefix))
                             for f in distribution.files or ()}
    for package in _closure(wanted_packages, records):
        wanted_files |= set(records[package]["files"])
        wanted_files.add(os.path.join("conda-meta", records[package]["_file"]))
    try:
        environment = conda_pack.CondaEnv.from_prefix(prefix, ignore_editable_packages=True)
    except conda_pack.CondaPackException as e:
        raise PackError(f"conda-pack cannot read the environment {prefix}: {e}") from None
    files = [f for f in environment.files if f.target in wanted_files]
    for local in requirements.local:
        files += [File(source, os.path.join(site_dir, target), is_conda=False, file_mode="unknown")
                  for source, target in local.files()]
    conda_pack.CondaEnv(prefix, files).pack(output=output, format="tar.gz", compress_level=COMPRESS_LEVEL,
                                            n_threads=min(4, os.cpu_count() or 1), force=True)


def _records(prefix: str) -> Dict[str, dict]:
    """conda-meta records by package name."""
    records = {}
    folder = os.path.join(prefix, "conda-meta")
    for entry in os.listdir(folder):
        if entry.endswith(".json"):
            with open(os.path.join(folder, entry)) as f:
                record = json.load(f)
            record["_file"] = entry
            records[record["name"]] = record
    if "python" not in records:
        raise PackError(f"the conda environment {prefix} has no python package")
    return records


def _site_dir(records: Dict[str, dict]) -> str:
    for path in records["python"]["files"]:
        parts = path.split("/")
        if len(parts) > 2 and parts[0] == "lib" and parts[1].startswith("python"):
            return f"lib/{parts[1]}/site-packages"
    raise PackError("the conda python package has no lib/pythonX.Y folder")


def _find(name: str, paths):
    for distribution in metadata.distributions(path=paths):
        if canonicalize_name(distribution.metadata["Name"] or "") == name:
            return distribution
    return None


def _distribution_owners(records: Dict[str, dict]) -> Dict[str, str]:
    """Python distribution name -> the conda package that installed it (from its .dist-info folder)."""
    owners = {}
    for package, record in records.items():
        for path in record["files"]:
            folder = path.split("/")[-2:-1]
            if folder and folder[0].endswith((".dist-info", ".egg-info")) and path.endswith(("/METADATA", "/PKG-INFO")):
                name = folder[0].rsplit(".", 1)[0].split("-")[0]     # NAME-VERSION.dist-info
                owners[canonicalize_name(name)] = package
    return owners


def _closure(packages: Iterable[str], records: Dict[str, dict]) -> Set[str]:
    wanted: Set[str] = set()
    todo = list(packages)
    while todo:
        package = todo.pop()
        if package in wanted or package not in records:     # virtual packages such as __glibc
            continue
        wanted.add(package)
        todo += [spec.split()[0] for spec in records[package].get("depends", ())]
    return wanted
