"""Where packed environments live on disk, and what names them.

An environment is named by a hash of everything that goes into it: the
interpreter, each distribution's name, version and RECORD (which lists a hash
of every installed file), and the content of every local source, which covers
the source trees of editable installs, tracked by git or not. Two runs that
need the same environment find the same file; an edit anywhere in a shipped
source tree gives a new name.
"""

import hashlib
import os
import sys
import sysconfig
import threading
import uuid
from importlib import metadata
from typing import Callable

from parsl_wq.pack.resolve import Requirements

FORMAT = "parsl_wq-env-1"


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "parsl_wq", "envs")


def environment_key(requirements: Requirements, kind: str) -> str:
    """A name for the environment holding ``requirements``, built the ``kind`` way."""
    digest = hashlib.sha256()
    for part in (FORMAT, kind, sys.version, sys.base_prefix, sys.prefix, sysconfig.get_platform()):
        digest.update(part.encode() + b"\0")
    for name in requirements.distributions:
        distribution = metadata.distribution(name)
        digest.update(f"{name}\0{distribution.version}\0".encode())
        digest.update((distribution.read_text("RECORD") or "").encode())
    for local in requirements.local:
        digest.update(local.module.encode() + b"\0")
        for path, target in local.files():
            digest.update(target.encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:24]


def build_once(path: str, build: Callable[[str], None]) -> bool:
    """Make ``path`` with ``build(temporary_path)`` unless it exists; True if this call built it.

    The file appears whole or not at all: it is written under a temporary name
    and renamed into place, so two runs building at once never read half a file.
    """
    if os.path.exists(path):
        return False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        build(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return True

