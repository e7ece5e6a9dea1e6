"""Which Parsl files a task reads and writes, and where they live in its sandbox.

With ``shared_fs=False`` nothing is assumed to be shared between the submit
side and the workers: every local ``File`` argument (``inputs``, ``outputs``,
positional and keyword Files) and the ``stdout``/``stderr`` files of bash apps
are transferred by Work Queue. The task receives copies of its File objects
whose ``local_path`` names the file inside its sandbox, so the worker needs no
remapping step. With ``shared_fs=True`` no file is transferred and the copies
point at absolute paths on the shared filesystem.

The caller's File objects are never modified.

Files Parsl stages from elsewhere (``http``, ``https``, ``ftp``) are fetched by
its staging providers (``storage_access``). Without a shared filesystem the
default is Parsl's in-task providers: the app's own task downloads the file
into its sandbox before the app starts. Parsl's default providers for these
schemes download in a task of their own, into a sandbox the app never sees,
so they are refused with ``shared_fs=False``.
"""

import copy
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

from parsl.data_provider.file_noop import NoOpFileStaging
from parsl.data_provider.files import File
from parsl.data_provider.ftp import FTPInTaskStaging, FTPSeparateTaskStaging
from parsl.data_provider.http import HTTPInTaskStaging, HTTPSeparateTaskStaging
from parsl.data_provider.staging import Staging as ParslStaging
from parsl.data_provider.zip import ZipFileStaging
from parsl.utils import get_std_fname_mode

from parsl_wq.errors import ConfigurationError
from parsl_wq.protocol.sandbox import CARRIED

NEEDS_SHARED_FS = (HTTPSeparateTaskStaging, FTPSeparateTaskStaging, ZipFileStaging)


def default_staging(shared_fs: bool) -> List[ParslStaging]:
    """Parsl's staging providers that work with or without a shared filesystem."""
    if shared_fs:
        return [NoOpFileStaging(), FTPSeparateTaskStaging(), HTTPSeparateTaskStaging(), ZipFileStaging()]
    return [NoOpFileStaging(), FTPInTaskStaging(), HTTPInTaskStaging()]


def check_staging(storage_access: List[ParslStaging], shared_fs: bool) -> None:
    """Refuse, without a shared filesystem, a provider that puts files where the app's task cannot see them."""
    if shared_fs:
        return
    for provider in storage_access:
        if isinstance(provider, NEEDS_SHARED_FS):
            raise ConfigurationError(
                "storage_access", storage_access,
                f"with shared_fs=False, providers that fetch files inside the app's own task, such as "
                f"HTTPInTaskStaging and FTPInTaskStaging (the default): {type(provider).__name__} writes its "
                f"files outside the app's sandbox, which only a shared filesystem would show to the app")


@dataclass(frozen=True)
class StagedFile:
    local: str    # absolute path on the submit side
    remote: str   # path inside the task's sandbox
    cache: bool   # keep on the worker for later tasks


@dataclass
class Staging:
    inputs: List[StagedFile] = field(default_factory=list)
    outputs: List[StagedFile] = field(default_factory=list)
    # (sent name, final name): Work Queue refuses one name as both input and
    # output, so a file the task appends to is sent under another name and moved.
    renames: List[Tuple[str, str]] = field(default_factory=list)

    def output_dirs(self) -> List[str]:
        """Folders in the sandbox that the app's output files go to."""
        return sorted({os.path.dirname(f.remote) for f in self.outputs} - {""})


ESCAPE = "="    # not in CARRIED


def sandbox_name(path: str) -> str:
    """A relative path stays as it is; anything else moves under ``abs/``. Each character that Work Queue does
    not carry (not in ``CARRIED``, ``ESCAPE`` included) is escaped: distinct paths keep distinct names, and
    folders stay folders."""
    normal = os.path.normpath(path)
    name = "abs" + os.path.abspath(path) if os.path.isabs(normal) or normal.startswith("..") else normal
    return "".join(c if c in CARRIED else escaped(c) for c in name)


def escaped(character: str) -> str:
    """``=XX`` for each byte of the character's UTF-8 (``é`` is ``=C3=A9``)."""
    return "".join(f"{ESCAPE}{byte:02X}" for byte in character.encode("utf-8", "surrogateescape"))


class FilePlanner:
    """Rewrites one task's arguments and collects the files to transfer."""

    def __init__(self, shared_fs: bool, use_cache: bool):
        self.shared_fs = shared_fs
        self.use_cache = use_cache

    def plan(self, args: Tuple, kwargs: Dict[str, Any]) -> Tuple[Tuple, Dict[str, Any], Staging]:
        staging = Staging()
        args = tuple(self._input(a, staging) for a in args)
        kwargs = dict(kwargs)
        for key, value in kwargs.items():
            if key == "inputs" and isinstance(value, (list, tuple)):
                kwargs[key] = [self._input(f, staging) for f in value]
            elif key == "outputs" and isinstance(value, (list, tuple)):
                kwargs[key] = [self._output(f, staging) for f in value]
            elif key in ("stdout", "stderr") and value:
                kwargs[key] = self._std_stream(value, staging)
            else:
                kwargs[key] = self._input(value, staging)
        return args, kwargs, staging

    def _absolute(self, path: str) -> str:
        return os.path.abspath(os.fspath(path))  # relative to the submit side's current directory

    def _rewrite(self, f: File) -> Tuple[File, str, str]:
        local = self._absolute(f.filepath)
        remote = local if self.shared_fs else sandbox_name(f.filepath)
        task_copy = copy.copy(f)
        task_copy.local_path = remote
        return task_copy, local, remote

    def _input(self, value: Any, staging: Staging) -> Any:
        if not _is_local_file(value):
            return value
        task_copy, local, remote = self._rewrite(value)
        if not self.shared_fs:
            staging.inputs.append(StagedFile(local, remote, cache=self.use_cache))
        return task_copy

    def _output(self, value: Any, staging: Staging) -> Any:
        if not _is_local_file(value):
            return value
        task_copy, local, remote = self._rewrite(value)
        if not self.shared_fs:
            os.makedirs(os.path.dirname(local), exist_ok=True)
            staging.outputs.append(StagedFile(local, remote, cache=False))
        return task_copy

    def _std_stream(self, spec: Any, staging: Staging) -> Any:
        path, mode = get_std_fname_mode("stdout/stderr", spec)  # Parsl's own check of the spec
        local = self._absolute(path)
        remote = local if self.shared_fs else sandbox_name(path)
        if not self.shared_fs:
            os.makedirs(os.path.dirname(local), exist_ok=True)
            if mode.startswith("a") and os.path.exists(local):
                staging.inputs.append(StagedFile(local, remote + ".previous", cache=False))
                staging.renames.append((remote + ".previous", remote))
            staging.outputs.append(StagedFile(local, remote, cache=False))
        return (remote, spec[1]) if isinstance(spec, tuple) else remote


def _is_local_file(value: Any) -> bool:
    return isinstance(value, File) and value.scheme == "file"
