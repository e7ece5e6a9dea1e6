"""From module names to what an environment must hold: installed distributions and local sources.

- A module that an installed distribution provides maps to it through
  ``importlib.metadata.packages_distributions()``; nothing is imported to find out.
- The standard library is skipped.
- Distributions bring their dependency closure (``Requires-Dist``, with markers and extras).
- A module that no distribution lists is a local source: a file or package directory found
  through ``importlib.util.find_spec`` on its top-level name. It is shipped as is and its own
  imports are followed. If it lies in the source tree of an editable install, that
  distribution's dependencies come along too.
"""

import importlib.metadata as metadata
import importlib.util
import json
import logging
import os
import sys
import sysconfig
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from parsl_wq.errors import PackError
from parsl_wq.pack.scan import modules_in_source

logger = logging.getLogger(__name__)

ALWAYS = ("cloudpickle",)       # the runner's fallback for functions plain pickle cannot load


@dataclass(frozen=True)
class LocalSource:
    """A module shipped from its files: ``path`` is a ``.py`` file, an extension or a package directory."""
    module: str
    path: str

    def files(self) -> Iterator[Tuple[str, str]]:
        """(absolute path, path in the site folder) of each file shipped, in a fixed order; no caches."""
        top = os.path.basename(self.path)
        if not os.path.isdir(self.path):
            yield self.path, top
            return
        for folder, dirs, files in os.walk(self.path):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if not name.endswith((".pyc", ".pyo")):
                    path = os.path.join(folder, name)
                    yield path, os.path.join(top, os.path.relpath(path, self.path))


@dataclass(frozen=True)
class Requirements:
    """What a packed environment holds besides the interpreter."""
    distributions: Tuple[str, ...]          # canonical names, sorted
    local: Tuple[LocalSource, ...]          # sorted by module


class Resolver:
    """Maps module names to ``Requirements`` for the running interpreter.

    The distribution index is read once per ``Resolver``; create a new one to see
    packages installed since.
    """

    def __init__(self):
        self._by_module = {name: [canonicalize_name(d) for d in dists]
                           for name, dists in metadata.packages_distributions().items()}
        self._editable_roots = _editable_roots()
        self._editables = set(self._editable_roots.values())
        self._declaring_editables = {d for dists in self._by_module.values() for d in dists} & self._editables
        self._stdlib = getattr(sys, "stdlib_module_names", None)     # Python >= 3.10

    def resolve(self, modules: Iterable[str], extra_pkgs: Iterable[str] = ()) -> Requirements:
        distributions: Set[str] = {canonicalize_name(name) for name in ALWAYS}
        distributions |= {self._extra_distribution(name) for name in extra_pkgs}
        local: Dict[str, LocalSource] = {}
        todo = sorted({m.split(".")[0] for m in modules if m})
        done: Set[str] = set()
        while todo:
            top = todo.pop()
            if top in done or self._is_stdlib(top):
                continue
            done.add(top)
            provided_by = self._by_module.get(top, [])
            if provided_by and not set(provided_by) & self._editables:
                distributions.update(provided_by)
                continue
            source = self._local_source(top)
            if source is None:
                continue
            local[top] = source
            editable = self._editable_owner(top, source.path)
            if editable:
                distributions.add(editable)
            todo.extend(sorted({m.split(".")[0] for m in _imports_of(source)} - done))
        closure = dependency_closure(distributions)
        return Requirements(tuple(sorted(closure)), tuple(local[name] for name in sorted(local)))

    def _is_stdlib(self, name: str) -> bool:
        if name in sys.builtin_module_names:
            return True
        if self._stdlib is not None:
            return name in self._stdlib
        spec = _find_spec(name)
        return spec is not None and _in_stdlib(spec.origin)

    def _local_source(self, name: str) -> Optional[LocalSource]:
        spec = _find_spec(name)
        if spec is None:
            logger.warning("pack: module %r is imported by an app but cannot be found here; "
                           "it is left out of the environment", name)
            return None
        if spec.origin in ("built-in", "frozen"):
            return None
        locations = list(spec.submodule_search_locations or [])
        if len(locations) > 1:
            raise PackError(f"module {name!r} is a namespace package spread over {locations}; "
                            "install it as a distribution or name its parts in extra_pkgs")
        path = locations[0] if locations else spec.origin
        if path is None or not os.path.exists(path):
            raise PackError(f"module {name!r} has no file to ship (its loader is {spec.loader!r}); "
                            "install it as a distribution")
        return LocalSource(name, os.path.abspath(path))

    def _editable_owner(self, top: str, path: str) -> Optional[str]:
        """The editable install that ``top`` belongs to: the one declaring it, else the one whose
        source tree holds it, unless that one declares its modules (then ``top`` is merely a file
        in its project folder, such as a test)."""
        declared = set(self._by_module.get(top, [])) & self._editables
        if declared:
            return sorted(declared)[0]
        for root, distribution in self._editable_roots.items():
            if (path == root or path.startswith(root + os.sep)) and distribution not in self._declaring_editables:
                return distribution
        return None

    def _extra_distribution(self, name: str) -> str:
        try:
            return canonicalize_name(metadata.distribution(name).metadata["Name"])
        except metadata.PackageNotFoundError:
            pass
        if name in self._by_module and len(self._by_module[name]) == 1:
            return self._by_module[name][0]
        raise PackError(f"extra_pkgs entry {name!r} is neither an installed distribution nor a module "
                        "that one provides; give the name pip lists it under")


def dependency_closure(names: Iterable[str]) -> Set[str]:
    """``names`` and every distribution they require, following markers and extras."""
    wanted: Dict[str, Set[str]] = {}
    todo: List[Tuple[str, Set[str]]] = [(canonicalize_name(n), set()) for n in names]
    while todo:
        name, extras = todo.pop()
        if name in wanted and extras <= wanted[name]:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            logger.debug("pack: required distribution %r is not installed; left out", name)
            continue
        wanted.setdefault(name, set()).update(extras)
        for line in distribution.requires or ():
            requirement = _requirement(line)
            if requirement is not None and _applies(requirement, wanted[name]):
                todo.append((canonicalize_name(requirement.name), set(requirement.extras)))
    return set(wanted)


def _requirement(line: str) -> Optional[Requirement]:
    try:
        return Requirement(line)
    except InvalidRequirement:
        logger.debug("pack: ignoring unreadable requirement %r", line)
        return None


def _applies(requirement: Requirement, extras: Set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in {""} | extras)


def _editable_roots() -> Dict[str, str]:
    """Source folders of editable installs -> distribution name."""
    roots = {}
    for distribution in metadata.distributions():
        root = editable_root(distribution)
        if root is not None:
            roots[root] = canonicalize_name(distribution.metadata["Name"])
    return roots


def editable_root(distribution) -> Optional[str]:
    """The source folder of an editable install (PEP 610 ``direct_url.json``), else None."""
    try:
        info = json.loads(distribution.read_text("direct_url.json") or "{}")
    except ValueError:
        return None
    url = info.get("url", "")
    if info.get("dir_info", {}).get("editable") and url.startswith("file://"):
        return os.path.abspath(url[len("file://"):])
    return None


def _imports_of(source: LocalSource) -> Set[str]:
    """Absolute imports of every Python file of a local source."""
    found: Set[str] = set()
    for file, _ in source.files():
        if not file.endswith(".py"):
            continue
        try:
            with open(file, encoding="utf-8") as f:
                found |= modules_in_source(f.read())
        except (OSError, UnicodeDecodeError):
            continue
    return found


def _find_spec(name: str):
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def _in_stdlib(origin: Optional[str]) -> bool:
    if origin in ("built-in", "frozen"):
        return True
    if origin is None:
        return False
    paths = sysconfig.get_paths()
    stdlib = (paths["stdlib"], paths["platstdlib"])
    return origin.startswith(stdlib) and "site-packages" not in origin and "dist-packages" not in origin
