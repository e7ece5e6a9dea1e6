"""Find and load the Work Queue Python module.

Work Queue (cctools) is not on PyPI. It is looked up in this order:

1. ``ndcctools.work_queue``: conda-forge's ``ndcctools`` package;
2. ``work_queue``: older cctools installs that put the module on ``sys.path``;
3. Debian's ``python3-workqueue`` package, in the system ``dist-packages``.

The Debian folder also holds old copies of unrelated packages, so it is never
put on ``sys.path``: only the two Work Queue files are loaded from it.
"""

import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Optional, Sequence

SYSTEM_DIRS = ("/usr/lib/python3/dist-packages",)

_loaded: Optional[ModuleType] = None


def load_work_queue(system_dirs: Sequence[str] = SYSTEM_DIRS,
                    importer: Callable[[str], ModuleType] = importlib.import_module) -> ModuleType:
    """Return the Work Queue module, loading it on first use.

    Raises
    ------
    EngineNotFound
        If no Work Queue module can be found, with both ways to install one.
    """
    global _loaded
    if _loaded is None:
        _loaded = _find(system_dirs, importer)
    return _loaded


@dataclass(frozen=True)
class Features:
    """What the Work Queue module found can do, detected from its API rather than its version."""
    description: str    # version and place, for messages
    coprocess: bool     # RemoteTask: serverless functions in a coprocess
    tls: bool           # WorkQueue(ssl=(key, cert)) and work_queue_worker --ssl


def features(wq: ModuleType) -> Features:
    version = getattr(wq, "cctools_version_string", None)
    if version is not None:
        description = f"cctools {version()} ({wq.__file__})"
    else:   # Debian's coop-computing-tools 9.9 (upstream code of 2021) has no version call
        description = f"a cctools build that reports no version, like Debian's coop-computing-tools 9.9 ({wq.__file__})"
    try:
        tls = "ssl" in inspect.signature(wq.WorkQueue.__init__).parameters
    except (TypeError, ValueError):
        tls = False
    return Features(description=description, coprocess=hasattr(wq, "RemoteTask"), tls=tls)


def describe_engine() -> str:
    """The Work Queue that this process uses, for benchmark tables and test summaries."""
    return features(load_work_queue()).description


def _find(system_dirs: Sequence[str], importer: Callable[[str], ModuleType]) -> ModuleType:
    tried = []
    for name in ("ndcctools.work_queue", "work_queue"):
        try:
            return importer(name)
        except ImportError as e:
            tried.append(f"{name}: {e}")
    for folder in system_dirs:
        module = _load_from_folder(folder)
        if module is not None:
            return module
        tried.append(f"{folder}: no work_queue.py with a matching _work_queue extension")
    from parsl_wq.errors import EngineNotFound  # imports Parsl: only on this error path
    raise EngineNotFound(tried)


def _load_from_folder(folder: str) -> Optional[ModuleType]:
    """Load ``_work_queue`` (the C extension) and ``work_queue`` from ``folder`` alone."""
    source = os.path.join(folder, "work_queue.py")
    extension = _extension_path(folder, "_work_queue")
    if not (os.path.isfile(source) and extension):
        return None
    _exec_module("_work_queue", extension)
    return _exec_module("work_queue", source)


def _extension_path(folder: str, name: str) -> Optional[str]:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, name + suffix)
        if os.path.isfile(path):
            return path
    return None


def _exec_module(name: str, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
