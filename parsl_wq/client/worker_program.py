"""The worker program: ``parsl_wq.worker`` and ``parsl_wq.protocol`` in one zip file that Python 3.7 or later runs.

A worker node needs neither Parsl nor this package: each cold task carries
the program (cached on the worker) and runs ``python pwq_worker.pyz run ...``;
warm workers run ``python pwq_worker.pyz warm`` (``parsl_wq.worker``). In the
zip the two packages live under the name ``pwq_worker``, so that they never
stand in for an installed ``parsl_wq`` that an app imports; their imports of
each other are relative. Each module is stored with its source and with
bytecode of the submit side's Python (unchecked hash-based ``.pyc``): a
worker with the same Python skips compiling it, any other compiles the source.
"""

import importlib.util
import marshal
import os
import zipfile

PACKAGE = "pwq_worker"
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))     # the parsl_wq folder
SHIPPED = ("protocol", "worker")
MAIN = f"import sys\nfrom {PACKAGE}.worker.__main__ import main\nsys.exit(main(sys.argv))\n"


def build(path: str) -> str:
    """Write the worker program to ``path`` (atomically); returns ``path``."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED) as archive:
            add(archive, "__main__.py", MAIN.encode())
            add(archive, f"{PACKAGE}/__init__.py", b"")
            for package in SHIPPED:
                folder = os.path.join(HERE, package)
                for name in sorted(n for n in os.listdir(folder) if n.endswith(".py")):
                    with open(os.path.join(folder, name), "rb") as f:
                        source = f.read()
                    add(archive, f"{PACKAGE}/{package}/{name}", source)
                    add(archive, f"{PACKAGE}/{package}/{name}c", bytecode(source, f"{PACKAGE}/{package}/{name}"))
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):   # no half-written program left in the run's folder
            os.remove(temporary)
        raise
    return path


def add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))   # the same bytes for the same sources
    info.external_attr = 0o600 << 16
    archive.writestr(info, data)


def bytecode(source: bytes, filename: str) -> bytes:
    """An unchecked hash-based ``.pyc`` (PEP 552): zipimport loads it without comparing it to the source."""
    code = compile(source, filename, "exec", dont_inherit=True)
    flags = (0b01).to_bytes(4, "little")
    return importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(source) + marshal.dumps(code)
