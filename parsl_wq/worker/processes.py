"""Process mechanics of the warm host: dying with the parent, killing a process group, its memory, its output,
the size of its sandbox.

Standard library only.
"""

import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent():
    """Be killed when the parent process ends (Linux), so that no process outlives its worker."""
    if LIBC is not None:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def load_libc():
    try:
        import ctypes
        return ctypes.CDLL(None)
    except (ImportError, OSError):
        return None


def stop_group(pid):
    """Kill the process group that ``pid`` leads, and reap ``pid``."""
    try:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


def kill_group(pid):
    """Kill the app process and what it started; one just forked may not lead its group yet."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def group_memory(pgid):
    """Resident memory in MB of every process in the process group ``pgid``."""
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:      # fields after the command: state, ppid, pgrp, ..., rss is the 22nd
            total += int(fields[21]) * page_mb
    return total


def folder_size(path):
    """MB that the files under ``path`` take on disk, as Work Queue's monitor counts a sandbox."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                pass
    return total / 2 ** 20


def read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def tail(path, size):
    """The last ``size`` bytes of a file, as text; "" if it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


LIBC = load_libc()
