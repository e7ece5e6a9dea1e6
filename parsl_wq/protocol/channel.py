"""How messages travel between the executor and the manager process: framed pickles over a pair of descriptors.

Each message (``parsl_wq.protocol.messages``) is pickled with protocol 5, and
every ``pickle.PickleBuffer`` in it travels out of band, after the pickle, as
its raw bytes: an app's arguments and its outcome, which may be gigabytes,
are wrapped so by their senders. A frame is::

    HEADER (size of the pickle, number of buffers)  then  a !Q size per buffer
    the pickle
    each buffer's bytes

so a message's size has no limit below what memory allows. A side that
must not wait for the reader (the manager, which serves workers meanwhile)
calls ``hold_output``: then ``send`` writes what the pipe takes and keeps the
rest, in order, for ``flush``. The sender
writes the buffers from where they lie (``writev``), without joining them;
the receiver reads each buffer straight into a ``bytearray`` of its own,
which the unpickled message then holds in place of the ``PickleBuffer``: a
payload is never copied on its way, and receiving is linear in its size.
Standard library only.
"""

import itertools
import os
import pickle
import select
import struct
from collections import deque
from typing import Any, Deque, List, Optional

_HEADER = struct.Struct("!QI")
_SIZE = struct.Struct("!Q")
CHUNK = 1 << 20         # bytes read at a time into the buffer, at most (a pipe holds 64 KiB unless made larger)


class _Incoming:
    """A message whose pickle has arrived, while its out-of-band buffers fill."""

    def __init__(self, pickled: bytes, sizes: List[int]):
        self.pickled = pickled
        self.buffers = [bytearray(size) for size in sizes]
        self.index = 0          # the buffer being filled
        self.filled = 0         # bytes of it filled

    def space(self) -> memoryview:
        """The rest of the buffer being filled (empty once every buffer is full)."""
        while self.index < len(self.buffers) and self.filled == len(self.buffers[self.index]):
            self.index, self.filled = self.index + 1, 0
        if self.index == len(self.buffers):
            return memoryview(b"")
        return memoryview(self.buffers[self.index])[self.filled:]

    def took(self, count: int) -> None:
        self.filled += count

    def message(self) -> Any:
        return pickle.loads(self.pickled, buffers=self.buffers)


class Channel:
    """Framed pickles over a pair of file descriptors."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = bytearray()      # bytes read, not yet taken
        self._incoming: Optional[_Incoming] = None
        self._outbox: Optional[Deque[memoryview]] = None    # with hold_output: what the pipe has not taken yet

    def send(self, message: Any) -> None:
        buffers: List[pickle.PickleBuffer] = []
        data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
        raws = [b.raw() for b in buffers]
        header = _HEADER.pack(len(data), len(raws)) + b"".join(_SIZE.pack(r.nbytes) for r in raws)
        if self._outbox is None:
            _write_all(self.write_fd, header, data, *raws)
            return
        self._outbox.extend(memoryview(p).cast("B") for p in (header, data, *raws) if len(p))
        self.flush()

    def hold_output(self) -> None:
        """From now on ``send`` never waits for the reader: what the pipe does not take waits for ``flush``."""
        os.set_blocking(self.write_fd, False)
        self._outbox = deque()

    def pending(self) -> bool:
        """Whether sent messages wait for the reader (only with ``hold_output``)."""
        return bool(self._outbox)

    def flush(self, timeout: float = 0) -> None:
        """Write what the pipe takes of the messages waiting, waiting up to ``timeout`` seconds for room."""
        while self._outbox:
            if timeout:
                select.select([], [self.write_fd], [], timeout)
                timeout = 0
            try:
                written = os.writev(self.write_fd, list(itertools.islice(self._outbox, 1024)))
            except BlockingIOError:
                return
            while written and written >= len(self._outbox[0]):
                written -= len(self._outbox.popleft())
            if written:
                self._outbox[0] = self._outbox[0][written:]

    def drain(self) -> None:
        """Write every message waiting, however long the reader takes."""
        if self._outbox:
            os.set_blocking(self.write_fd, True)
            _write_all(self.write_fd, *self._outbox)
            self._outbox.clear()

    def receive(self, timeout: Optional[float] = None) -> List[Any]:
        """Messages that arrive within ``timeout`` seconds (None: wait for at least one).

        Raises EOFError when the other side has closed its end.
        """
        messages = self._parse()
        if messages:
            return messages
        while True:
            readable, _, _ = select.select([self.read_fd], [], [], timeout)
            if not readable:
                return []
            if self._incoming is not None:      # the buffer is empty: read into the payload's own bytearray
                with self._incoming.space() as space:
                    count = os.readv(self.read_fd, [space])
                if not count:
                    raise EOFError("channel closed")
                self._incoming.took(count)
            else:
                chunk = os.read(self.read_fd, CHUNK)
                if not chunk:
                    raise EOFError("channel closed")
                self._buffer += chunk       # a bytearray grows in place: linear in all that is read
            messages = self._parse()
            if messages:
                return messages

    def _parse(self) -> List[Any]:
        """The complete messages; the buffer keeps the rest (cut once, not after each message)."""
        messages = []
        start = 0
        with memoryview(self._buffer) as buffer:    # released before the buffer is cut
            while True:
                if self._incoming is not None:
                    start += self._fill(buffer[start:])
                    with self._incoming.space() as space:
                        if len(space):
                            break
                    messages.append(self._incoming.message())
                    self._incoming = None
                    continue
                if len(buffer) - start < _HEADER.size:
                    break
                size, count = _HEADER.unpack_from(buffer, start)
                sizes_end = start + _HEADER.size + count * _SIZE.size
                end = sizes_end + size
                if len(buffer) < end:
                    break
                if count == 0:
                    messages.append(pickle.loads(buffer[sizes_end:end]))
                else:
                    sizes = [_SIZE.unpack_from(buffer, start + _HEADER.size + i * _SIZE.size)[0]
                             for i in range(count)]
                    self._incoming = _Incoming(bytes(buffer[sizes_end:end]), sizes)
                start = end
        if start:
            del self._buffer[:start]
        return messages

    def _fill(self, data: memoryview) -> int:
        """Copy what was read past a pickle into its buffers; returns how many bytes it took."""
        taken = 0
        while taken < len(data):
            with self._incoming.space() as space:
                count = min(len(space), len(data) - taken)
                if not count:
                    break
                space[:count] = data[taken:taken + count]
            self._incoming.took(count)
            taken += count
        return taken

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def _write_all(fd: int, *parts) -> None:
    """Write ``parts`` in order, without joining them (one system call when the pipe takes them)."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        written = os.writev(fd, views[:1024])       # IOV_MAX
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]
