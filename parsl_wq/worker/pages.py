"""Copies ahead of the call: a spare has the kernel copy, while it waits, the pages that an earlier app wrote.

An app process is a fork of the warm host. Its first write to a page of the
host's memory (a reference count, a pool of the allocator) makes the kernel
copy that page: some 600 pages, about 3 ms, for an app that sums a small
pandas DataFrame, against 0.3 ms for the same app in a process of its own.
One call's app process writes much the same pages as the next one's. So:

1. The app process of a learning call (``Host``: the first, second, fourth,
   ... call of a host) reads ``/proc/self/maps`` while it waits for its call,
   and once it has reported its end, sends the pages of those mappings that
   it alone holds (``written``: bit 56 of ``/proc/self/pagemap``), as runs of
   pages (``encode``).
2. The host keeps the last such list; each spare forked after it has the
   kernel copy those pages while no call has come (``copy_ahead``:
   ``madvise(MADV_POPULATE_WRITE)``, Linux 5.14), a few runs at a time, and
   stops as soon as its call comes. The contents do not change; a page no
   longer mapped, or not writable, is skipped by the kernel.

The copies are the same the app would have made; they are made before the
call instead of on its path. Resident memory (what the host measures) is the
same either way for a copy; the pages an earlier app allocated in the host's
mappings (at most MOST_PAGES in all) are resident in each spare before its call. Where there is no pagemap or the kernel refuses the advice,
nothing is learned or copied and apps run as before.

Standard library only.
"""

import os
import re
import select
import sys

MADV_POPULATE_WRITE = 23        # linux/mman.h (Linux 5.14)
PAGE = os.sysconf("SC_PAGE_SIZE")
# A pagemap entry is 64 bits; bit 63: the page is present, bit 56: this process alone maps it
# (Documentation/admin-guide/mm/pagemap.rst). Both are in the entry's top byte: 0x80 and 0x01.
TOP_BYTE = 7 if sys.byteorder == "little" else 0
BOTH_SET = bytes(b"1"[0] if byte & 0x81 == 0x81 else b"0"[0] for byte in range(256))
MOST_PAGES = 1 << 13            # pages learned at most (32 MB of 4 KB pages): past it, an app rewrote the host's
                                # memory, and copying that much ahead for every spare would only burn the node's CPU
RUNS_AT_A_TIME = 16             # runs copied between two looks at the call pipe


def writable_mappings():
    """(start, end) of this process's private, writable mappings of memory: its heap, anonymous memory, and
    the writable data of the libraries it loaded; not its stack, nor a device's memory."""
    ranges = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split(None, 5)
                path = fields[5].strip() if len(fields) > 5 else ""
                if fields[1][:2] != "rw" or fields[1][3] != "p" or path.startswith(("[stack", "[v", "/dev/")):
                    continue
                start, end = fields[0].split("-")
                ranges.append((int(start, 16), int(end, 16)))
    except OSError:
        return []
    return ranges


def written(mappings):
    """Runs ``(first page address, pages)`` of the pages in ``mappings`` that this process alone holds: a
    fork's copies, and what it allocated there itself. [] where pagemap cannot be read, or past MOST_PAGES."""
    runs, pages = [], 0
    try:
        with open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
            for start, end in mappings:
                pagemap.seek(start // PAGE * 8)
                entries = pagemap.read((end - start) // PAGE * 8)
                # The byte of each entry that holds bits 63 and 56, as b"1" where both are set.
                flags = entries[TOP_BYTE::8].translate(BOTH_SET)
                for run in re.finditer(b"1+", flags):
                    runs.append((start + run.start() * PAGE, run.end() - run.start()))
                    pages += run.end() - run.start()
                if pages > MOST_PAGES:
                    return []
    except (OSError, ValueError):
        return []
    return runs


def encode(runs):
    return b" ".join(b"%x:%x" % run for run in runs)


def decode(text):
    runs = []
    for item in text.split():
        start, count = item.split(b":")
        runs.append((int(start, 16), int(count, 16)))
    return runs


_madvise = None


def prepare():
    """Load ``madvise`` in the host, once, so that its spares do not import ctypes each; None where it cannot,
    or where the kernel does not know the advice (before Linux 5.14: then nothing is worth learning)."""
    global _madvise
    if _madvise is None:
        try:
            import ctypes
            madvise = ctypes.CDLL(None, use_errno=True).madvise
            madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            _madvise = madvise if knows_populate_write(madvise) else False
        except (ImportError, OSError, AttributeError):
            _madvise = False
    return _madvise or None


def knows_populate_write(madvise):
    """Whether the kernel takes the advice: asked for one page of this process's own memory."""
    import ctypes
    buffer = bytearray(2 * PAGE)
    start = ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
    return madvise(-(-start // PAGE) * PAGE, PAGE, MADV_POPULATE_WRITE) == 0


def copy_ahead(runs, call_fd):
    """Have the kernel copy the pages of ``runs`` for this process, until a call is readable on ``call_fd``.
    Returns the number of runs copied."""
    madvise = prepare() if runs else None
    if madvise is None:
        return 0
    import ctypes
    for done in range(0, len(runs), RUNS_AT_A_TIME):
        if select.select([call_fd], [], [], 0)[0]:
            return done
        for start, count in runs[done:done + RUNS_AT_A_TIME]:
            if madvise(start, count * PAGE, MADV_POPULATE_WRITE) != 0 and ctypes.get_errno() == 22:
                return done         # EINVAL: a kernel without the advice; ENOMEM, EFAULT: a run not mapped now
    return len(runs)
