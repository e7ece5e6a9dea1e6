"""Who may connect as a worker: the run's password file.

Without a password, anyone who can reach the manager's port can join as a
worker, receive the pickled functions and arguments, and send back result
pickles that the submit side loads. Work Queue's password authentication
(a shared secret, challenge-response; the secret never crosses the network)
closes that: the manager refuses a worker that does not know the secret.
docs/security.md has the threat model.
"""

import os
import secrets
import stat

PASSWORD_FILE = "worker.password"
PASSWORD_BYTES = 32


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


def readable_by_others(path: str) -> bool:
    """True if users other than the owner may read ``path``."""
    return bool(os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH))
