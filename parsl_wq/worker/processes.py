"""Process mechanics of the warm host: dying with the parent, killing a process group, its memory, its output,
the size of its sandbox.

Standard library only.
"""

import os
import signal
import socket
import struct
import sys

PR_SET_PDEATHSIG = 1
TCP_TABLES = {socket.AF_INET: "/proc/net/tcp", socket.AF_INET6: "/proc/net/tcp6"}
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST = 4, 20, 1     # linux/netlink.h, linux/sock_diag.h


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


def peer_uid(connection):
    """The user id that owns the other end of a TCP connection on this node.

    Asked of the kernel for that one socket (netlink ``sock_diag``: 20 us
    a connection, 300 timed on a 2-core test machine); where that fails, read
    from ``/proc/net/tcp``, which walks the whole socket table (4.2 ms there).
    None if neither can be read (not Linux); -1 if no socket is that other end.
    """
    try:
        return diag_uid(connection)
    except (OSError, AttributeError):    # no netlink, or not Linux (no AF_NETLINK)
        return table_uid(connection)


def diag_uid(connection):
    """``peer_uid`` by netlink's SOCK_DIAG_BY_FAMILY, for the one socket whose addresses are ours reversed."""
    family, peer, ours = connection.family, connection.getpeername(), connection.getsockname()

    def address(a):
        packed = socket.inet_pton(family, a[0])
        return packed + b"\0" * (16 - len(packed))
    socket_id = (struct.pack("!HH", peer[1], ours[1]) + address(peer) + address(ours)
                 + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF))     # any interface, no cookie
    request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + socket_id   # every state
    message = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0) + request
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as netlink:
        netlink.settimeout(5)
        netlink.sendto(message, (0, 0))
        answer = netlink.recv(8192)
    _, kind = struct.unpack_from("=IH", answer, 0)
    if kind != SOCK_DIAG_BY_FAMILY:     # an error message: no such socket
        return -1
    return struct.unpack_from("=I", answer, 16 + 64)[0]    # after the header: inet_diag_msg's idiag_uid


def table_uid(connection):
    """``peer_uid`` from the kernel's socket table in ``/proc/net/tcp``."""
    table = TCP_TABLES.get(connection.family)
    try:
        with open(table) as f:
            lines = f.read().splitlines()[1:]
    except (OSError, TypeError):
        return None
    theirs = tcp_address(connection.family, connection.getpeername())
    ours = tcp_address(connection.family, connection.getsockname())
    for line in lines:
        fields = line.split()   # sl local_address rem_address st queues timer retransmits uid ...
        if len(fields) > 7 and fields[1] == theirs and fields[2] == ours:
            return int(fields[7])
    return -1


def tcp_address(family, address):
    """An address as ``/proc/net/tcp`` writes it: the address's 32-bit words in host order, in hex, and the port."""
    packed = socket.inet_pton(family, address[0])
    words = "".join("%08X" % int.from_bytes(packed[i:i + 4], sys.byteorder) for i in range(0, len(packed), 4))
    return "%s:%04X" % (words, address[1])


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
