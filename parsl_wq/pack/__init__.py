"""pack=True: give each app a packed Python environment that holds what it imports.

Steps, each in its own module:

1. ``scan``     the modules an app may import (bytecode, source, globals, closures, its pickle);
2. ``resolve``  those modules -> installed distributions and their dependency closure, plus
                local sources (files that no distribution provides, editable installs);
3. ``cache``    a name for the environment from a hash of all its contents; one tarball per name;
4. ``conda`` or ``interpreter``: build the tarball, with conda-pack from a conda environment,
                else from the running interpreter itself.

``Packer`` runs these steps on a thread of its own, so ``submit()`` never waits
for a build: a task is sent to Work Queue when its environment is ready.
"""

import logging
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional

from parsl_wq.pack import cache, conda, interpreter
from parsl_wq.pack.resolve import Requirements, Resolver
from parsl_wq.pack.scan import modules_of_app

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackedEnvironment:
    name: str           # the content hash
    tarball: str        # absolute path of the cached tarball


class Packer:
    """Builds and caches one environment per distinct package set.

    Parameters
    ----------
    cache_dir : str
        Folder of the tarballs; shared safely by runs that build at once.
    extra_pkgs : iterable of str
        Distributions added to every environment.
    prefix : str
        The environment whose packages are packed: a conda environment is packed
        with conda-pack, anything else from the running interpreter.
    """

    def __init__(self, cache_dir: str, extra_pkgs: Iterable[str] = (), prefix: str = sys.prefix):
        self.cache_dir = os.path.abspath(cache_dir)
        self.extra_pkgs = tuple(extra_pkgs)
        self.prefix = prefix
        self.kind = "conda" if conda.is_conda_environment(prefix) else "interpreter"
        self.builds = 0
        self._resolver: Optional[Resolver] = None
        self._by_function: Dict[str, Future] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parsl_wq-pack")

    def environment(self, function: Any, function_file: bytes, function_name: str) -> "Future[PackedEnvironment]":
        """The environment for an app, as a future; built at most once per function file."""
        with self._lock:
            future = self._by_function.get(function_name)
            if future is None:
                future = self._pool.submit(self.prepare, function, function_file)
                self._by_function[function_name] = future
            return future

    def prepare(self, function: Any, function_file: bytes) -> PackedEnvironment:
        """Scan, resolve, and build unless cached (runs on the packer's thread)."""
        if self._resolver is None:
            self._resolver = Resolver()
        requirements = self._resolver.resolve(modules_of_app(function, function_file), self.extra_pkgs)
        return self.package(requirements)

    def package(self, requirements: Requirements) -> PackedEnvironment:
        name = cache.environment_key(requirements, f"{self.kind}:{self.prefix}")
        tarball = os.path.join(self.cache_dir, f"pwq-env-{name}.tar.gz")
        started = time.monotonic()
        if cache.build_once(tarball, lambda path: self._build(requirements, path)):
            self.builds += 1
            logger.info("pack: built %s in %.1f s (%.1f MB): %s", tarball, time.monotonic() - started,
                        os.path.getsize(tarball) / 1e6, ", ".join(requirements.distributions))
        return PackedEnvironment(name, tarball)

    def _build(self, requirements: Requirements, output: str) -> None:
        if self.kind == "conda":
            conda.pack(self.prefix, requirements, output)
        else:
            interpreter.pack(requirements, output)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
