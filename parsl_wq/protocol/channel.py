"""How messages travel between the executor and the manager process: framed pickles over a pair of descriptors.

Each message (``parsl_wq.protocol.messages``) is pickled and sent after a
4-byte length. Standard library only.
"""

import os
import pickle
import select
import struct
from typing import Any, List, Optional

_HEADER = struct.Struct("!I")


class Channel:
    """Framed pickles over a pair of file descriptors."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = b""

    def send(self, message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        _write_all(self.write_fd, _HEADER.pack(len(data)) + data)

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
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise EOFError("channel closed")
            self._buffer += chunk
            messages = self._parse()
            if messages:
                return messages

    def _parse(self) -> List[Any]:
        """The complete messages in the buffer; the buffer keeps the rest (cut once, not after each message)."""
        messages = []
        buffer, start = memoryview(self._buffer), 0
        while len(buffer) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, start)
            end = start + _HEADER.size + size
            if len(buffer) < end:
                break
            messages.append(pickle.loads(buffer[start + _HEADER.size:end]))
            start = end
        buffer.release()
        if start:
            self._buffer = self._buffer[start:]
        return messages

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
