"""How messages travel between the executor and the manager process: framed pickles over a pair of descriptors.

Each message (``parsl_wq.protocol.messages``) is pickled and sent after an
8-byte length, so a message's size has no limit below what memory allows.
Receiving is linear in a message's size: the bytes read go into one growing
buffer, and a frame is unpickled where it lies. Standard library only.
"""

import os
import pickle
import select
import struct
from typing import Any, List, Optional

_HEADER = struct.Struct("!Q")
CHUNK = 1 << 20         # bytes read at a time, at most (a pipe holds 64 KiB unless it was made larger)


class Channel:
    """Framed pickles over a pair of file descriptors."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = bytearray()      # bytes read, not yet unpickled

    def send(self, message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        _write_all(self.write_fd, _HEADER.pack(len(data)), data)

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
            chunk = os.read(self.read_fd, CHUNK)
            if not chunk:
                raise EOFError("channel closed")
            self._buffer += chunk       # a bytearray grows in place: linear in all that is read
            messages = self._parse()
            if messages:
                return messages

    def _parse(self) -> List[Any]:
        """The complete messages in the buffer; the buffer keeps the rest (cut once, not after each message)."""
        messages = []
        start = 0
        with memoryview(self._buffer) as buffer:    # released before the buffer is cut
            while len(buffer) - start >= _HEADER.size:
                (size,) = _HEADER.unpack_from(buffer, start)
                end = start + _HEADER.size + size
                if len(buffer) < end:
                    break
                messages.append(pickle.loads(buffer[start + _HEADER.size:end]))
                start = end
        if start:
            del self._buffer[:start]
        return messages

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def _write_all(fd: int, *parts: bytes) -> None:
    """Write ``parts`` in order, without joining them (one system call when the pipe takes them)."""
    views = [memoryview(p) for p in parts if len(p)]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]
