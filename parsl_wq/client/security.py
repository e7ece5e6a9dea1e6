"""Who may connect as a worker: the run's password file.

Without a password, anyone who can reach the manager's port can join as a
worker, receive the pickled functions and arguments, and send back result
pickles that the submit side loads. Work Queue's password authentication
(a shared secret, challenge-response; the secret never crosses the network)
closes that: the manager refuses a worker that does not know the secret.
Where the engine has TLS, the connection is also encrypted, with a
certificate made for the run. docs/security.md has the threat model.
"""

import os
import secrets
import stat
import subprocess
from typing import Tuple

PASSWORD_FILE = "worker.password"
PASSWORD_BYTES = 32
TLS_KEY, TLS_CERTIFICATE = "tls.key", "tls.crt"
CERTIFICATE_DAYS = 365


def create_password_file(folder: str) -> str:
    """Write a new random password to ``folder/worker.password``, readable by its owner only.

    The file is created afresh with mode 0600 (never widened by the umask);
    its absolute path is returned, for workers that start in other directories.
    """
    path = os.path.abspath(os.path.join(folder, PASSWORD_FILE))
    if os.path.lexists(path):       # an executor restarted in the same run directory
        os.remove(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(PASSWORD_BYTES) + "\n")
    return path


def create_certificate(folder: str) -> Tuple[str, str]:
    """Make a self-signed certificate and its key for the run's manager: ``(key, certificate)`` paths, mode 0600.

    An EC P-256 key: openssl makes one in milliseconds (an RSA 4096 key, what
    Work Queue's own ``ssl=True`` makes, takes seconds). Raises OSError if
    openssl is missing or fails.
    """
    key = os.path.abspath(os.path.join(folder, TLS_KEY))
    certificate = os.path.abspath(os.path.join(folder, TLS_CERTIFICATE))
    for path in (key, certificate):
        if os.path.lexists(path):
            os.remove(path)
    previous = os.umask(0o077)      # the key is never readable by others, not even for a moment
    try:
        result = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", certificate, "-days", str(CERTIFICATE_DAYS),
             "-subj", "/CN=parsl_wq manager", "-batch"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    finally:
        os.umask(previous)
    if result.returncode != 0:
        raise OSError(f"openssl could not make the run's certificate: {result.stderr.strip()}")
    return key, certificate


def readable_by_others(path: str) -> bool:
    """True if users other than the owner may read ``path``."""
    return bool(os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH))
